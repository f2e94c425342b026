"""planner advise: the vectorized placement grid equals the solver, placements and speed figures
derived by hand, the public API, the CLI (exit 1 when nothing fits, exit 2 on bad input)."""
import json
import subprocess
import sys
from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from planner.errors import PlannerInputError
from planner.model.resolve import resolve_model
from planner.planning.advise import AdvisedPlan, advise, parse_device_spec
from planner.planning.placement_grid import needed_grid
from planner.planning.solver import evaluate
from planner.planning.throughput import speed_bound
from planner.readers.devices import get_device
from planner.runtimes.request import Plan

# 26B-A4B Q4_0 experts per layer: 128 experts x (1408 x 2816 gate_up + 2816 x 704 down) weights
# x 18 bytes per 32-weight Q4_0 block = 428,212,224 bytes; plus ffn_down_exps.scale (128 f32 = 512
# bytes), which llama.cpp's expert regex matches too
EXPERTS_PER_LAYER = 128 * (1408 * 2816 + 2816 * 704) * 18 // 32 + 512
# the largest of them, ffn_gate_up_exps: 128 x 1408 x 2816 x 18/32 = 285,474,816 bytes
GATE_UP_EXPS = 128 * 1408 * 2816 * 18 // 32


@pytest.mark.parametrize("model", ["gemma-4-26b-a4b", "gemma-4-31b", "gemma-4-e4b"])
@pytest.mark.parametrize("device", ["rtx-4090", "8gb-gpu"])
def test_grid_equals_the_solver_for_every_placement(model, device):
    dev = get_device(device)
    spec = resolve_model(model)
    ctx = np.array([4096, 32768])
    checked = 0
    for fmt, kv, ub in (("q4_k_m", "f16", 512), ("bf16", "q8_0", 256)):
        pl, need, _host = needed_grid(spec, fmt, kv, ub, dev, ctx)
        for i in range(0, len(pl.ngl), 5):
            for j, c in enumerate(ctx):
                r = evaluate(Plan(model=model, weights=fmt, kv_type_k=kv, kv_type_v=kv, flash_attn="on", ubatch=ub,
                                  context=int(c), n_gpu_layers=pl.ngl[i], n_cpu_moe=pl.n_cpu_moe[i]), dev)
                assert r.needed == need[i, j], (fmt, kv, ub, pl.ngl[i], pl.n_cpu_moe[i], int(c))
                checked += 1
    assert checked >= 20


def test_fewest_cpu_moe_layers_by_hand():
    dev = get_device("8gb-gpu")
    plan = Plan(model="gemma-4-26b-a4b", weights="q4_0", kv_type_k="f16", kv_type_v="f16", flash_attn="on",
                ubatch=512, context=8192)
    all_gpu = evaluate(plan, dev).needed
    # each layer whose experts go to the host frees EXPERTS_PER_LAYER; prompt processing copies one
    # expert tensor at a time back into the GPU's compute buffer (op offload, one copied weight per
    # split): needed(m) = all - m E + GATE_UP_EXPS
    for m in (1, 7, 30):
        r = evaluate(_with(plan, n_cpu_moe=m), dev)
        assert r.needed == all_gpu - m * EXPERTS_PER_LAYER + GATE_UP_EXPS
    budget = dev.usable_bytes
    m_min = -(-(all_gpu + GATE_UP_EXPS - budget) // EXPERTS_PER_LAYER)
    assert evaluate(_with(plan, n_cpu_moe=m_min), dev).fits and not evaluate(_with(plan, n_cpu_moe=m_min - 1), dev).fits
    pl, need, _ = needed_grid(resolve_model("gemma-4-26b-a4b"), "q4_0", "f16", 512, dev, np.array([8192]))
    fitting = [pl.n_cpu_moe[i] for i in range(len(pl.ngl)) if pl.n_cpu_moe[i] and need[i, 0] <= budget]
    assert min(fitting) == m_min


def _with(plan, **kw):
    from dataclasses import replace

    return replace(plan, **kw)


def test_speed_bound_reads_routed_experts_from_host_ram():
    dev = get_device("rtx-4090")
    r = evaluate(Plan(model="gemma-4-26b-a4b", weights="q4_0", context=8192, n_cpu_moe=30), dev)
    sp = speed_bound(r)
    # host RAM per token: top 8 of 128 experts of 30 layers + the 30 scale tensors (read whole)
    assert sp.host_bytes_per_token == 30 * (EXPERTS_PER_LAYER - 512) * 8 // 128 + 30 * 512
    # decode time = GPU bytes / 1008 GB/s + host bytes / 89.6 GB/s (devices.yaml; overheads.host_ram_bandwidth_gbps)
    t = sp.device_bytes_per_token / (dev.bandwidth_gbps * 1e9) + sp.host_bytes_per_token / 89.6e9
    assert sp.decode_tps == pytest.approx(1 / t)
    full = speed_bound(evaluate(Plan(model="gemma-4-26b-a4b", weights="q4_0", context=8192), dev))
    assert full.host_bytes_per_token == 0 and full.decode_tps > 2 * sp.decode_tps


def test_advise_api_is_frozen_data_with_a_command():
    plans = advise("8gb-gpu", ["gemma-4-26b-a4b"], context=8192, goal="speed", limit=3)
    assert 1 <= len(plans) <= 3 and all(isinstance(p, AdvisedPlan) and p.fits for p in plans)
    with pytest.raises(FrozenInstanceError):
        plans[0].fits = False
    d = plans[0].as_dict()
    for key in ("plan", "device", "runtime", "fits", "device_bytes", "host_bytes", "max_context", "decode_tps",
                "prefill_tps", "quality", "command"):
        assert hasattr(plans[0], key)
    assert d["command"].startswith("llama-server -m gemma-4-26b-a4b-")
    # the 26B's 16 GiB of Q4 experts cannot all stay on an 8 GB card at 8k: some go to the host
    assert any(p.plan.n_cpu_moe or p.plan.n_gpu_layers is not None for p in plans)
    assert all(p.device_bytes <= get_device("8gb-gpu").usable_bytes for p in plans)
    # goal speed: decode tokens/s first, plans within 10% tie (then weight quality decides)
    tps = [p.decode_tps for p in plans]
    assert all(later < earlier * 1.1 for earlier, later in zip(tps, tps[1:]))


def test_two_gpus_and_device_lists():
    dev, n = parse_device_spec("2x rtx-4090")
    assert (dev.name, n) == ("rtx-4090", 2)
    assert parse_device_spec("rtx-4090,rtx-4090")[1] == 2
    with pytest.raises(PlannerInputError, match="must be identical"):
        parse_device_spec("rtx-4090,l4")
    with pytest.raises(PlannerInputError, match="only for discrete GPUs"):
        parse_device_spec("2x m-series-16gb")
    plans = advise("2x rtx-4090", ["gemma-4-31b"], context=32768, runtime="vllm", limit=2)
    assert plans and plans[0].plan.tp == 2 and "--tensor-parallel-size 2" in plans[0].command


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True, text=True)


def test_unquoted_gpu_count_on_the_command_line():
    # `--device 2x rtx-4090` arrives as two words; the CLI joins a bare count with the next word
    r = _cli("fit", "--device", "2x", "rtx-4090", "-m", "gemma-4-31b", "-w", "q4_k_m", "-c", "32k", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)["results"][0]
    assert res["placement"]["gpus"] == 2 and len(res["placement"]["per_gpu_bytes"]) == 2


def test_cli_exit_codes_and_json():
    r = _cli("advise", "-d", "4gb-gpu", "-m", "gemma-4-31b", "-c", "128k", "-r", "vllm")
    assert r.returncode == 1 and "nothing fits" in r.stdout
    r = _cli("advise", "-d", "12gb-gpu", "-m", "gemma-4-12b", "--limit", "2", "--json")
    assert r.returncode == 0
    data = json.loads(r.stdout)
    assert data["schema"] == "planner.advise/1" and len(data["devices"]["12gb-gpu"]) == 2
    for args, msg in ((("fit", "-d", "rtx-4090", "-m", "gemma-4-31b", "-ngl", "62"), "--gpu-layers: 62 is above"),
                      (("fit", "-d", "3x rtx-4090", "-m", "gemma-4-31b", "-r", "vllm", "-w", "awq-int4"), "--tp 3"),
                      (("advise", "-d", "rtx-4090,rtx-3060-12gb"), "must be identical"),
                      (("fit", "-d", "2x rtx-4090", "-m", "gemma-4-e4b", "-r", "transformers"), "llama.cpp")):
        r = _cli(*args)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_check_yaml_asks_for_the_best_plan(tmp_path):
    req = tmp_path / "req.yaml"
    req.write_text("requirements:\n"
                   "  - {name: moe on 8gb, device: 8gb-gpu, model: gemma-4-26b-a4b, weights: best, goal: speed, context: 16k}\n"
                   "  - {name: 31b on a phone, device: android-8gb, model: gemma-4-31b, weights: best}\n")
    r = _cli("check", str(req), "--json")
    assert r.returncode == 1
    res = {x["name"]: x for x in json.loads(r.stdout)["results"]}
    best = res["moe on 8gb"]
    assert best["passed"] and best["command"].startswith("llama-server") and best["context"] == 16384
    assert best["placement"]["n_cpu_moe"] > 0 or best["placement"]["n_gpu_layers"] is not None or best["fits"]
    assert not res["31b on a phone"]["passed"] and "no plan fits" in res["31b on a phone"]["reason"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {device: 8gb-gpu, model: gemma-4-e2b, weights: best, goal: fastest}\n")
    r = _cli("check", str(bad))
    assert r.returncode == 2 and "goal: 'fastest' is not one of context, speed, quality" in r.stderr


def test_weights_filter_and_bad_weights():
    plans = advise("8gb-gpu", ["gemma-4-12b"], context=32768, weights=["qat-q4_0"], limit=3)
    assert plans and {p.plan.weights for p in plans} == {"qat-q4_0"}
    # MLX formats are loaded by no runtime of a CUDA GPU
    with pytest.raises(PlannerInputError, match="no runtime of this device loads it"):
        advise("8gb-gpu", ["gemma-4-12b"], weights=["mlx-4bit"])


def test_host_ram_is_a_32gb_desktop_unless_told():
    """Beside a discrete GPU the plans may keep at most a 32 GB desktop's usable RAM on the host
    (cpu-32gb: 32 GiB - 4 GiB OS reserve = 28 GiB = 30,064,771,072 bytes, profiles/devices.yaml)."""
    limit = 32 * 2**30 - 4 * 2**30
    assert get_device("cpu-32gb").usable_bytes == limit
    typical = advise("8gb-gpu", ["gemma-4-26b-a4b"], context=32768, limit=20)
    unlimited = advise("8gb-gpu", ["gemma-4-26b-a4b"], context=32768, limit=20, host_memory=None)
    assert typical and all(a.host_bytes <= limit for a in typical)
    # unchecked, the search parks BF16 experts in RAM: 26B-A4B's 30 layers x 128 experts x (1408 x 2816
    # gate_up + 2816 x 704 down) weights x 2 bytes = 45,675,970,560 bytes = 42.5 GiB of experts alone
    experts_bf16 = 30 * 128 * (1408 * 2816 + 2816 * 704) * 2
    assert experts_bf16 > limit
    assert any(a.plan.weights == "bf16" and a.host_bytes >= experts_bf16 for a in unlimited)
    assert not any(a.plan.weights == "bf16" for a in typical)
    # shared memory has no separate host: the limit does not apply (same plans with and without)
    mac = [a.command for a in advise("m-series-16gb", ["gemma-4-e4b"], limit=5)]
    assert mac == [a.command for a in advise("m-series-16gb", ["gemma-4-e4b"], limit=5, host_memory=None)]
    # the CLI: the limit is said, 'none' lifts it, a bad value names the flag and the allowed values
    r = _cli("advise", "-d", "8gb-gpu", "-m", "gemma-4-26b-a4b", "-c", "32k", "--json")
    assert json.loads(r.stdout)["host_memory_bytes"] == {"8gb-gpu": limit}
    r = _cli("advise", "-d", "8gb-gpu", "-m", "gemma-4-26b-a4b", "-c", "32k", "--limit", "20", "--host-memory", "none")
    assert r.returncode == 0 and "BF16.gguf" in r.stdout and "host RAM is not checked" in r.stdout
    r = _cli("advise", "-d", "8gb-gpu", "-m", "gemma-4-26b-a4b", "--host-memory", "lots")
    assert r.returncode == 2 and "--host-memory" in r.stderr and "'none'" in r.stderr


def test_fit_says_how_to_ask_what_to_change_and_that_answer_fits():
    """A `fit` that answers NO ends with the `planner advise` command for the plans that did not fit;
    run as printed, it finds plans that fit (26B-A4B Q4_K_M needs 17 GiB, an 8 GB GPU holds 7.5)."""
    import shlex

    r = _cli("fit", "-d", "8gb-gpu", "-m", "gemma-4-26b-a4b", "-m", "gemma-4-e2b", "-w", "q4_k_m", "-c", "32k")
    assert r.returncode == 1
    hints = [ln for ln in r.stdout.splitlines() if ln.startswith("next: ")]
    assert len(hints) == 1 and "gemma-4-e2b" not in hints[0]          # E2B fits: not in the hint
    cmd = shlex.split(hints[0].split(": ", 2)[2])
    assert cmd[:2] == ["planner", "advise"] and "-c" in cmd and "32k" in cmd
    r = _cli(*cmd[1:], "--json")
    assert r.returncode == 0
    plans = json.loads(r.stdout)["devices"]["8gb-gpu"]
    assert plans and all(p["fits"] and p["context"] >= 32768 and p["model"] == "gemma-4-26b-a4b" for p in plans)
    r = _cli("fit", "-d", "8gb-gpu", "-m", "gemma-4-e2b", "-w", "q4_k_m", "-c", "32k")
    assert r.returncode == 0 and "next:" not in r.stdout


def test_equal_weights_and_safety_rank_the_more_precise_kv_cache_first():
    """Goal quality, 12B on a 12 GB GPU: every plan is BF16 weights with a KV type not measured for the
    model, so the cache's bits per value decide: q8_0 8.5 (34 bytes / 32) > q5_1 6 (24 / 32) > q4_0 4.5
    (18 / 32); f16 (16, always safe) first."""
    plans = advise("12gb-gpu", ["gemma-4-12b"], goal="quality", limit=8)
    kvs = [p.plan.kv_type_k for p in plans if p.plan.weights == plans[0].plan.weights]
    bits = {"f16": 16, "q8_0": 8.5, "q5_1": 6, "q5_0": 5.5, "q4_1": 5, "q4_0": 4.5, "iq4_nl": 4.5}
    assert len(kvs) >= 3 and kvs[0] == "f16"
    assert [bits[k] for k in kvs] == sorted((bits[k] for k in kvs), reverse=True), kvs
