"""Model folders read exactly: safetensors headers, quantization configs, byte-exact weights.

Every checkpoint here is a real safetensors file written by the `safetensors` package (the bf16
one by transformers' own save_pretrained of the Gemma 4 MoE class); expected bytes come from the
exporters' layouts derived by hand in tests/checkpoint_factory.py, and from the files' sizes.
"""
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import checkpoint_factory as cf
from planner.errors import PlannerInputError
from planner.presenters.cli import main

pytest.importorskip("torch")
pytest.importorskip("safetensors")

KINDS = ["awq", "gptq", "ct-w4a16", "ct-fp8", "fp8-block", "nf4", "mlx"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    cf.write_bf16(root / "bf16")
    expected = {k: cf.write_quantized(k, root / "bf16", root / k) for k in KINDS}
    return root, expected


def _load(path):
    from planner.model.resolve import load_checkpoint_folder

    load_checkpoint_folder.cache_clear()
    return load_checkpoint_folder(str(path))


def test_headers_match_the_safetensors_package(folders):
    """dtype and shape of every tensor as safetensors' own safe_open reports them; file bytes as
    the file system reports them."""
    from safetensors import safe_open

    from planner.readers.safetensors_header import read_checkpoint

    root, _ = folders
    for kind in ["bf16"] + KINDS:
        ck = read_checkpoint(root / kind)
        assert ck.files
        for f in ck.files:
            assert f.file_bytes == os.path.getsize(f.path)
            with safe_open(str(f.path), framework="pt") as h:
                names = set(h.keys())
                assert names == {t.name for t in f.tensors}
                for t in f.tensors:
                    sl = h.get_slice(t.name)
                    assert tuple(sl.get_shape()) == t.shape
                    assert sl.get_dtype() == t.dtype
            # the tensors tile the data buffer: file = 8 + header + tensor bytes
            assert f.file_bytes == 8 + f.header_bytes + sum(t.nbytes for t in f.tensors)


def test_sharded_bf16_equals_the_inventory(folders):
    """The real transformers save (14 shards + index) holds, role by role, what the planner's
    inventory derives from config.json alone in bf16 (norms' stored scalars included)."""
    from planner.model.formats import get_format
    from planner.runtimes.base import _weight_bytes_by_role_uncached

    root, _ = folders
    spec = _load(root / "bf16")
    ck = spec.extra["checkpoint"]
    assert ck.index == "model.safetensors.index.json" and len(ck.files) > 1
    stored = {r: b for r, b, _ in ck.by_role()}
    derived = {r: b for r, b, _ in _weight_bytes_by_role_uncached(spec, get_format("bf16"), True, False)}
    for role in ("token_embedding", "attention", "mlp", "moe_experts", "moe_router", "vision", "projector"):
        assert stored[role] == derived[role], role
    assert ck.unknown == ()


@pytest.mark.parametrize("kind", KINDS)
def test_quantized_modules_byte_exact(folders, kind):
    root, expected = folders
    ck = _load(root / kind).extra["checkpoint"]
    assert expected[kind], "the factory quantized nothing"
    for module, nbytes in expected[kind].items():
        m = ck.module(module)
        assert m is not None, module
        assert m.nbytes == nbytes, module
    # and the whole: every stored byte is accounted for, once
    assert sum(m.nbytes for m in ck.modules) == ck.file_bytes - sum(8 + h for _, _, h in ck.files)


@pytest.mark.parametrize("kind,method,bits,group", [
    ("awq", "awq", 4, 32), ("gptq", "gptq", 4, 32), ("ct-w4a16", "compressed-tensors", 4, 32),
    ("ct-fp8", "compressed-tensors", 8, 0), ("fp8-block", "fp8", 8, 0), ("nf4", "bitsandbytes", 4, 64),
    ("mlx", "mlx", 4, 32)])
def test_quantization_config_read(folders, kind, method, bits, group):
    root, _ = folders
    q = _load(root / kind).extra["checkpoint"].scheme
    assert (q.method, q.bits, q.group_size) == (method, bits, group)
    if kind == "mlx":
        # the per-module override (8-bit q_proj of layer 0) is read, and its bytes are 8-bit
        assert q.overrides["model.language_model.layers.0.self_attn.q_proj"]["bits"] == 8


@pytest.mark.parametrize("kind,runtime", [("bf16", "vllm"), ("awq", "vllm"), ("gptq", "transformers"),
                                          ("ct-w4a16", "vllm"), ("fp8-block", "vllm"), ("nf4", "transformers"),
                                          ("mlx", "mlx")])
def test_plan_weights_come_from_the_files(folders, kind, runtime, capsys):
    """fit --json: the weights are the stored tensor bytes, plus vLLM's second copy of the K=V
    layer's K weight (layer 5 is full attention with attention_k_eq_v; gemma4.py loads k_proj
    into the V shard too)."""
    root, _ = folders
    spec = _load(root / kind)
    ck = spec.extra["checkpoint"]
    rc = main(["fit", "-d", "24gb-gpu", "-m", str(root / kind), "-r", runtime, "-c", "1k", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    r = out["results"][0]
    assert r["weights"] == "checkpoint:" + {"none": "float", "awq": "awq", "gptq": "gptq", "compressed-tensors": "ct",
                                            "fp8": "fp8", "bitsandbytes": "nf4", "mlx": "mlx"}[ck.scheme.method]
    text_only = r["settings"]["text_only"]
    stored = sum(b for _, b, _ in ck.by_role(not text_only, not text_only))
    k_twice = ck.tensor_bytes(".layers.5.self_attn.k_proj") if runtime == "vllm" else 0
    assert k_twice > 0 or runtime != "vllm"
    weights = sum(c["bytes"] for c in r.get("components", []) if c["category"] == "weights") or r["bytes"]["weights"]
    # transformers adds RoPE inv_freq buffers computed at load (not in the file): compare the file part
    assert r["bytes"]["weights"] >= stored + k_twice
    assert r["bytes"]["weights"] - (stored + k_twice) < 64 * 1024, weights
    # the artifact on disk: the folder's safetensors files, exactly
    assert r["bytes"]["file"] == sum(os.path.getsize(root / kind / f) for f, _, _ in ck.files)
    assert all(f["exact"] for f in r["files"])


def test_runtime_that_cannot_load_the_checkpoint_is_one_line(folders, capsys):
    root, _ = folders
    assert main(["fit", "-d", "24gb-gpu", "-m", str(root / "mlx"), "-r", "vllm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vllm does not load mlx" in err[0]
    assert main(["fit", "-d", "24gb-gpu", "-m", str(root / "awq"), "-r", "vllm", "-w", "q4_k_m"]) == 2
    assert "drop --weights" in capsys.readouterr().err


def test_inspect_reports_roles_and_no_surprises(folders, capsys):
    root, expected = folders
    assert main(["inspect", str(root / "ct-w4a16"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["quantization"]["method"] == "compressed-tensors" and d["quantization"]["group_size"] == 32
    assert d["not_understood"] == []
    experts = [r for r in d["weights"] if r["role"] == "moe_experts"]
    # llm-compressor stores each expert's gate/up/down: 6 layers x 4 experts x 3 modules
    assert experts and experts[0]["modules"] == 6 * 4 * 3
    assert d["file_bytes"] == sum(os.path.getsize(root / "ct-w4a16" / f["name"]) for f in d["files"])
    # parameters recovered from packed shapes agree with config.json within the stored scalars
    assert abs(d["file_params"] - d["config_params"]) <= 6 * 2 + 64
    assert main(["inspect", str(root / "awq")]) == 0
    out = capsys.readouterr().out
    assert "awq 4-bit, group 32 (GEMM, zero points)" in out and "not understood: nothing" in out


# --- bad files: one clear line, exit 2 ---------------------------------------------------------

def _folder_with(tmp_path, payload: bytes, config: dict | None = None) -> Path:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config or cf.tiny_config()))
    (d / "model.safetensors").write_bytes(payload)
    return d


def _header(entries: dict) -> bytes:
    h = json.dumps(entries).encode()
    return struct.pack("<Q", len(h)) + h


@pytest.mark.parametrize("name,payload,needle", [
    ("short", b"\x01\x02", "truncated safetensors file"),
    ("header past end", struct.pack("<Q", 1000) + b"{}", "truncated safetensors file"),
    ("absurd header", struct.pack("<Q", 10**12) + b"{}", "above the 100,000,000-byte limit"),
    ("not json", struct.pack("<Q", 4) + b"{{{{", "not valid JSON"),
    ("lying length", _header({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}) + b"\0" * 8,
     "data_offsets span 8 bytes but F32 (4,) needs 16"),
    ("truncated data", _header({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}) + b"\0" * 8,
     "truncated"),
    ("overlap", _header({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                         "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}) + b"\0" * 6,
     "expected 4"),
    ("unknown dtype", _header({"a": {"dtype": "Q4", "shape": [4], "data_offsets": [0, 2]}}) + b"\0" * 2,
     "unknown dtype 'Q4'"),
    ("dtype not a string", _header({"a": {"dtype": ["F32"], "shape": [4], "data_offsets": [0, 16]}}) + b"\0" * 16,
     "unknown dtype"),
    ("deeply nested", struct.pack("<Q", 200_000) + b"[" * 200_000, "nested too deeply"),
])
def test_bad_safetensors_one_line_exit_2(tmp_path, name, payload, needle):
    d = _folder_with(tmp_path, payload)
    p = subprocess.run([sys.executable, "-m", "planner", "inspect", str(d)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, (name, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr
    assert "model.safetensors" in lines[0] and needle in lines[0], lines[0]


def test_unknown_quant_method_one_line(tmp_path, capsys):
    cfg = cf.tiny_config()
    cfg["quantization_config"] = {"quant_method": "hqq", "bits": 4}
    d = _folder_with(tmp_path, _header({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}) + b"\0\0", cfg)
    assert main(["fit", "-d", "24gb-gpu", "-m", str(d), "-r", "vllm"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "quant_method 'hqq' is not understood" in err and "allowed: awq" in err


def test_declared_method_without_its_tensors_is_refused(folders, tmp_path):
    """A config that says AWQ over plain bf16 tensors would be misread: refused, not guessed."""
    import shutil

    root, _ = folders
    d = tmp_path / "liar"
    shutil.copytree(root / "bf16", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128}
    (d / "config.json").write_text(json.dumps(cfg))
    from planner.model.resolve import load_checkpoint_folder

    with pytest.raises(PlannerInputError, match="declares awq quantization but"):
        load_checkpoint_folder(str(d))


def test_index_naming_a_missing_shard(folders, tmp_path, capsys):
    import shutil

    root, _ = folders
    d = tmp_path / "missing"
    shutil.copytree(root / "bf16", d)
    victim = sorted(d.glob("model-*.safetensors"))[0]
    victim.unlink()
    assert main(["inspect", str(d)]) == 2
    err = capsys.readouterr().err
    assert victim.name in err and "missing" in err


def test_hub_id_resolves_from_the_local_cache_offline(folders, tmp_path, monkeypatch, capsys):
    """huggingface_hub's cache layout: models--org--name/refs/main -> snapshots/<commit>/."""
    import shutil

    root, _ = folders
    cache = tmp_path / "hub"
    repo = cache / "models--acme--tiny-gemma"
    snap = repo / "snapshots" / "0123abcd"
    # as huggingface_hub stores them: snapshot entries are symlinks into blobs/
    (repo / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    for i, f in enumerate(sorted((root / "awq").iterdir())):
        blob = repo / "blobs" / f"blob{i}"
        shutil.copyfile(f, blob)
        (snap / f.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    (repo / "refs").mkdir()
    (cache / "models--acme--tiny-gemma" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert main(["inspect", "acme/tiny-gemma"]) == 0
    assert "awq 4-bit" in capsys.readouterr().out
    assert main(["inspect", "acme/not-there"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(cache / "models--acme--not-there") in err


def test_transformers_runs_compressed_tensors_decompressed(folders, capsys):
    """transformers 5.23 loads a compressed-tensors checkpoint packed and decompresses the whole
    model on its first forward (quantizer_compressed_tensors.py, compressed-tensors
    add_decompress_hook), keeping the scales: resident = the bf16 model + the stored scales. The
    bf16 folder (transformers' own save of the same model) is the independent reference."""
    root, _ = folders
    bf16 = _load(root / "bf16").extra["checkpoint"]
    ct = _load(root / "ct-w4a16").extra["checkpoint"]
    scales = sum(t.nbytes for m in ct.modules for t in m.tensors if t.name.endswith(".weight_scale"))
    assert scales > 0
    assert main(["breakdown", "-d", "24gb-gpu", "-m", str(root / "ct-w4a16"), "-r", "transformers", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)["results"][0]
    stored_model = sum(c["bytes"] for c in r["components"] if c["category"] == "weights" and "decompressed" in c["detail"])
    assert stored_model == sum(b for _, b, _ in bf16.by_role()) + scales
    assert any("decompresses" in n for n in r["notes"])


def test_bitsandbytes_folders_are_named_for_what_they_hold():
    """An LLM.int8 or FP4 bitsandbytes folder is not called NF4 (it used to be 'checkpoint:nf4'); it is
    planned by the runtimes that load bitsandbytes (the nf4 family: transformers, vLLM), not llama.cpp."""
    from planner.model.checkpoint import QuantScheme, checkpoint_format_name, quant_scheme
    from planner.model.formats import get_format
    from planner.runtimes import allowed_format_families

    int8 = quant_scheme({"quantization_config": {"quant_method": "bitsandbytes", "load_in_8bit": True}},
                                    "config.json")
    fp4 = quant_scheme({"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True,
                                                            "bnb_4bit_quant_type": "fp4"}}, "config.json")
    nf4 = QuantScheme("bitsandbytes", 4, 64, "nf4 + double quant")
    assert [checkpoint_format_name(q) for q in (int8, fp4, nf4)] == \
        ["checkpoint:bnb-int8", "checkpoint:bnb-fp4", "checkpoint:nf4"]
    for name in ("checkpoint:bnb-int8", "checkpoint:bnb-fp4"):
        assert get_format(name).family == "nf4"
        assert "nf4" in allowed_format_families("transformers") and "nf4" not in allowed_format_families("llama.cpp")
