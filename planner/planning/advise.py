"""`planner advise`: search the knobs a user controls and rank the plans that fit.

For each model and runtime the search walks weight formats, KV-cache types, ubatch and, on a
discrete GPU, placement: the whole model on the GPU; for a MoE model the fewest `--n-cpu-moe`
layers whose experts go to the host; otherwise the most `-ngl` layers that fit. llama.cpp on one
GPU evaluates every placement, format, KV type and ubatch over a ladder of contexts at once
(planning/placement_grid.py, byte-identical to the solver); several GPUs, shared memory, vLLM and
MLX go through the solver (placements by binary search: memory grows with the layers on the GPU).
The candidates that lead on the goal are then evaluated exactly: largest context by the solver's
exact search, tokens/s by planning/throughput.speed_bound. Nothing is estimated twice.

Public API (the dashboard calls it; keep it stable):
    advise(device, models, *, context=None, sequences=1, runtime=None, goal="context", limit=5,
           kv_verdict=None, host_memory=TYPICAL_HOST, weights=None, stats=None) -> list[AdvisedPlan]
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from planner.errors import PlannerInputError
from planner.model.formats import COMMON_FORMATS, get_format
from planner.planning.solver import UNIFIED_KINDS, FitResult, budget_bytes, evaluate, fits_at
from planner.planning.throughput import speed_bound
from planner.readers.device_list import parse_device_spec
from planner.runtimes import device_terms, memory_model_for
from planner.runtimes.overhead import backend_of
from planner.runtimes.request import Plan, normalize_runtime

GOALS = ("context", "speed", "quality")

# Host RAM a plan may keep resident beside a discrete GPU when the user does not say: the
# catalogue's cpu-32gb (32 GiB minus the OS reserve, profiles/devices.yaml). Without a limit the
# search "fits" a 26B-A4B BF16 on an 8 GB GPU by parking 44 GiB of experts in RAM the machine
# rarely has; 32 GB is the common size of a desktop built around a consumer GPU. host_memory=None
# turns the check off (CLI: --host-memory none).
TYPICAL_HOST = "typical"
TYPICAL_HOST_DEVICE = "cpu-32gb"


def host_memory_limit(host_memory, device) -> int | None:
    """Bytes of host RAM the plans for `device` may use: TYPICAL_HOST -> the typical desktop's usable
    RAM, an int -> itself, None -> not checked. Shared memory (Macs, phones, Jetson) and CPU-only
    devices have no separate host: None."""
    if device.kind in UNIFIED_KINDS:
        return None
    if host_memory == TYPICAL_HOST:
        from planner.readers.devices import get_device

        return get_device(TYPICAL_HOST_DEVICE).usable_bytes
    return host_memory
DEFAULT_CONTEXT = 8192
# KV types the search tries per runtime, best quality first
KV_CANDIDATES = {
    "llama.cpp": ("f16", "q8_0", "q5_1", "q4_0"),
    "vllm": ("bf16", "fp8_e4m3"),
    "mlx": ("bf16", "q8_0", "q4_0"),
    "transformers": ("bf16",),
}
UBATCH_CANDIDATES = (512, 256)
FORMATS = {
    "llama.cpp": ("bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "qat-q4_0", "iq4_xs", "q3_k_m", "q2_k"),
    "vllm": ("bf16", "fp8", "awq-int4"),        # GPTQ int4 is AWQ's size to within g_idx
    "mlx": ("bf16", "mlx-8bit", "mlx-4bit"),
    "transformers": ("bf16", "nf4"),
}


@dataclass(frozen=True)
class AdvisedPlan:
    """One ranked plan: the runtime request, where its bytes live, how far it goes, how fast."""
    plan: Plan
    device: str
    runtime: str
    fits: bool
    device_bytes: int            # on the fullest GPU (or the shared pool)
    host_bytes: int              # resident host RAM (offloaded layers/experts, embeddings, buffers)
    max_context: int
    decode_tps: float            # upper bound, tokens/s per sequence
    prefill_tps: float           # upper bound, prompt tokens/s
    quality: str                 # the quality cost in words
    command: str                 # the exact command line to run it
    gpus: int = 1
    per_gpu_bytes: tuple[int, ...] = ()
    budget: int = 0              # bytes available per GPU (or in the shared pool)
    kv_verdict: str = "unknown"  # safe | risky | unknown (unsafe types are never advised)
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict:
        p = self.plan
        return {
            "model": p.model, "weights": p.weights, "runtime": self.runtime, "device": self.device, "gpus": self.gpus,
            "kv_type_k": p.kv_type_k, "kv_type_v": p.kv_type_v, "context": p.context, "sequences": p.sequences,
            "ubatch": p.ubatch, "flash_attn": p.flash_attn, "n_gpu_layers": p.n_gpu_layers, "n_cpu_moe": p.n_cpu_moe,
            "tp": p.tp, "pp": p.pp, "fits": self.fits, "device_bytes": self.device_bytes,
            "host_bytes": self.host_bytes, "per_gpu_bytes": list(self.per_gpu_bytes), "budget": self.budget,
            "max_context": self.max_context, "decode_tps": round(self.decode_tps, 2),
            "prefill_tps": round(self.prefill_tps, 1), "quality": self.quality, "kv_verdict": self.kv_verdict,
            "command": self.command, "notes": list(self.notes),
        }


def runtimes_for(device) -> tuple[str, ...]:
    backend = backend_of(device)
    if backend == "cuda":
        return ("llama.cpp", "vllm")
    if backend == "metal":
        return ("llama.cpp", "mlx")
    return ("llama.cpp",)


def _hf_id(spec) -> str:
    return (spec.published or {}).get("hf_id") or spec.name


def command_line(plan: Plan, spec, ctx: int) -> str:
    """The command that runs the plan (the planner's context is per sequence)."""
    rt = normalize_runtime(plan.runtime)
    if rt == "llama.cpp":
        quant = plan.weights.upper().replace("QAT-", "QAT-")
        parts = ["llama-server", "-m", f"{spec.name}-{quant}.gguf", "-c", str(ctx * plan.sequences)]
        if plan.sequences > 1:
            parts += ["-np", str(plan.sequences)]
        parts += ["-ngl", "all" if plan.n_gpu_layers is None else str(plan.n_gpu_layers)]
        if plan.n_cpu_moe:
            parts += ["--n-cpu-moe", str(plan.n_cpu_moe)]
        if plan.gpus > 1:
            parts += ["--split-mode", "layer", "--tensor-split", ",".join(["1"] * plan.gpus)]
        parts += ["-fa", plan.flash_attn or "auto"]
        k, v = plan.kv_type_k or "f16", plan.kv_type_v or plan.kv_type_k or "f16"
        if k != "f16" or v != "f16":
            parts += ["-ctk", k, "-ctv", v]
        if plan.ubatch and plan.ubatch != 512:
            parts += ["-ub", str(plan.ubatch)]
        return " ".join(parts)
    if rt == "vllm":
        parts = ["vllm", "serve", _hf_id(spec), "--max-model-len", str(ctx)]
        if plan.tp > 1:
            parts += ["--tensor-parallel-size", str(plan.tp)]
        if plan.pp > 1:
            parts += ["--pipeline-parallel-size", str(plan.pp)]
        if plan.weights in ("fp8",):
            parts += ["--quantization", "fp8"]          # vLLM quantizes the bf16 checkpoint on load
        elif plan.weights in ("awq-int4", "gptq-int4", "nf4"):
            # a pre-quantized checkpoint (vLLM reads its quantization_config); the folder name is the user's
            parts[2] = f"./{spec.name}-{plan.weights}"
        if plan.kv_type_k and plan.kv_type_k.startswith("fp8"):
            parts += ["--kv-cache-dtype", "fp8"]
        parts += ["--max-num-seqs", str(plan.sequences)]
        return " ".join(parts)
    if rt == "mlx":
        bits = {"mlx-4bit": "-4bit", "mlx-8bit": "-8bit", "bf16": "-bf16"}.get(plan.weights, "")
        return f"mlx_lm.server --model mlx-community/{spec.name}-it{bits}"
    return f"python -c 'transformers pipeline: {_hf_id(spec)}'"


def _bits_per_weight(mm) -> float:
    from planner.planning.throughput import active_matmul_params

    spec = mm.spec
    params, _ = active_matmul_params(spec)
    moe = [l for l in spec.layers if l.n_experts]
    if moe:   # all experts count for storage
        l = moe[0]
        params += 3 * spec.hidden_size * l.expert_ffn_dim * (l.n_experts - l.n_experts_used) * len(moe)
    w = sum(t.const for t in mm.terms if t.category == "weights" and not t.name.startswith(("token embedding",
            "per-layer embedding", "vision", "audio", "multimodal")))
    return 8 * w / params if params else 0.0


def quality_words(mm, kv_state: str) -> str:
    rp = mm.resolved
    kv = rp.kv_type_k if rp.kv_type_k == rp.kv_type_v else f"{rp.kv_type_k}/{rp.kv_type_v}"
    bits = _bits_per_weight(mm)
    w = mm.resolved.plan.weights
    wq = ("full precision" if w in ("bf16", "f16", "f32") else
          "QAT (trained for 4-bit)" if w.startswith("qat") else f"~{bits:.1f} bits/weight")
    kvq = ("full-precision KV" if kv in ("f16", "bf16", "f32") else
           f"KV {kv} ({'measured safe' if kv_state == 'safe' else 'measured risky' if kv_state == 'risky' else 'not measured for this model'})")
    return f"weights {w} ({wq}), {kvq}"


def _kv_state(model: str, kv: str, kv_verdict: Callable | None) -> str:
    if kv in ("f16", "bf16", "f32"):
        return "safe"
    if kv_verdict is None:
        return "unknown"
    v = kv_verdict(model, kv)
    return v if v in ("safe", "risky", "unsafe") else "unknown"


class _Counter:
    def __init__(self) -> None:
        self.n = 0


def _fits_ctx(plan: Plan, device, ctx: int, counter: _Counter) -> bool:
    plan, mm = memory_model_for(plan, device)
    terms = mm.terms + device_terms(mm, device)
    counter.n += 1
    return ctx <= mm.max_context and fits_at(terms, device, budget_bytes(device, 0, mm), ctx)


def _search_placement(plan: Plan, spec, device, ctx: int, counter: _Counter) -> Plan | None:
    """The plan with the least offload that fits at ctx (None when none does)."""
    if _fits_ctx(plan, device, ctx, counter):
        return plan
    if backend_of(device) != "cuda" or normalize_runtime(plan.runtime) != "llama.cpp":
        return None
    n = spec.n_layers
    if spec.is_moe:
        # fewest layers with their experts on the host
        lo, hi = 0, n            # lo does not fit, hi might
        if _fits_ctx(replace(plan, n_cpu_moe=n), device, ctx, counter):
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _fits_ctx(replace(plan, n_cpu_moe=mid), device, ctx, counter):
                    hi = mid
                else:
                    lo = mid
            return replace(plan, n_cpu_moe=hi)
    # most layers on the GPU (the output layer counts: -ngl n_layer + 1 is all)
    lo, hi = 0, n + 1            # lo fits?, hi does not
    if not _fits_ctx(replace(plan, n_gpu_layers=0), device, ctx, counter):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _fits_ctx(replace(plan, n_gpu_layers=mid), device, ctx, counter):
            lo = mid
        else:
            hi = mid
    return replace(plan, n_gpu_layers=lo)


def _advised(r: FitResult, device_label: str, kv_state: str) -> AdvisedPlan:
    sp = speed_bound(r)
    n_gpus = max(r.plan.gpus, 1)
    per_gpu = tuple(r.per_gpu()) if n_gpus > 1 else (r.totals.device,)
    dev_bytes = max(per_gpu) if r.device.kind not in UNIFIED_KINDS else r.needed
    plan = r.model.resolved.plan if r.model.runtime == "vllm" else r.plan
    plan = replace(plan, context=r.context)
    return AdvisedPlan(plan=plan, device=device_label, runtime=r.model.runtime, fits=r.fits, device_bytes=dev_bytes,
                       host_bytes=r.totals.host, max_context=r.max_context, decode_tps=sp.decode_tps,
                       prefill_tps=sp.prefill_tps, quality=quality_words(r.model, kv_state),
                       command=command_line(plan, r.model.spec, r.context), gpus=n_gpus, per_gpu_bytes=per_gpu,
                       budget=r.budget, kv_verdict=kv_state, notes=r.notes)


def context_ladder(target: int, max_context: int) -> list[int]:
    """Contexts each configuration is evaluated at: the target, powers of two from 4k, the maximum."""
    out = {min(target, max_context), max_context}
    c = 4096
    while c < max_context:
        out.add(c)
        c *= 2
    return sorted(out)


@dataclass
class _Candidate:
    model: str
    runtime: str
    weights: str
    kv: str
    ubatch: int | None
    n_gpu_layers: int | None
    n_cpu_moe: int
    ladder_context: int          # largest ladder context that fits (exact value comes later)
    host_bytes: int              # weight bytes offloaded to the host
    gpu_bytes: int               # GPU bytes at the target context
    kv_state: str


def _formats(rt: str, only) -> tuple[str, ...]:
    from planner.runtimes import allowed_format_families

    if only:
        fams = allowed_format_families(rt)
        return tuple(w for w in sorted(only) if get_format(w).family in fams)
    return FORMATS.get(rt, COMMON_FORMATS.get(rt, ()))


def _grid_candidates(spec, dev, rt, ctx: int, ladder: list[int], kv_verdict, counter: _Counter,
                     only=None) -> list[_Candidate]:
    """llama.cpp on one discrete GPU: every format x KV x ubatch x placement x ladder context at once."""
    import numpy as np

    from planner.planning.placement_grid import PlacementGrid

    ctxs = np.asarray(ladder, dtype=np.int64)
    jt = ladder.index(ctx)
    grid = PlacementGrid(spec, dev, ctxs)
    budget = dev.usable_bytes
    pl = grid.pl
    order = [0] + ([i for i, m in enumerate(pl.n_cpu_moe) if m] if spec.is_moe else []) + \
        [i for i in range(1, len(pl.ngl)) if not pl.n_cpu_moe[i]]
    out = []
    for w in _formats("llama.cpp", only):
        for kv in KV_CANDIDATES["llama.cpp"]:
            state = _kv_state(spec.name, kv, kv_verdict)
            if state == "unsafe":
                continue
            best = None
            for ub in UBATCH_CANDIDATES:
                need, host = grid.needed(w, kv, ub)
                counter.n += need.size
                fits = need <= budget
                row = next((i for i in order if fits[i, jt]), None)
                if row is None:
                    continue
                ok = np.nonzero(fits[row])[0]
                c = _Candidate(spec.name, rt, w, kv, ub, pl.ngl[row], pl.n_cpu_moe[row], int(ctxs[ok[-1]]),
                               int(host[row]), int(need[row, jt]), state)
                # a smaller ubatch only when it keeps more of the model on the GPU (it costs prefill speed)
                if best is None or c.host_bytes < best.host_bytes:
                    best = c
            if best is not None:
                out.append(best)
    return out


def _plan_of(c: _Candidate, ctx: int, sequences: int, n_gpus: int) -> Plan:
    return Plan(model=c.model, weights=c.weights, runtime=c.runtime, kv_type_k=c.kv, kv_type_v=c.kv, context=ctx,
                sequences=sequences, ubatch=c.ubatch, flash_attn="on" if c.runtime == "llama.cpp" else None,
                gpus=n_gpus, n_gpu_layers=c.n_gpu_layers, n_cpu_moe=c.n_cpu_moe)


def advise(device, models=None, *, context=None, sequences: int = 1, runtime=None, goal: str = "context",
           limit: int = 5, kv_verdict: Callable | None = None, host_memory: int | str | None = TYPICAL_HOST,
           weights=None, stats: dict | None = None) -> list[AdvisedPlan]:
    """Ranked plans that fit `device` ("rtx-4090", "2x rtx-4090" or a Device) for `models`
    (catalogue names; None: the whole catalogue), best first, at most `limit`.

    context: tokens per sequence the plan must hold (None: 8k, and the ranking then prefers the
    largest context); runtime: one runtime or None for every runtime the device runs; goal:
    "context" (largest context), "speed" (decode tokens/s) or "quality" (most weight bits, then
    full-precision KV). kv_verdict(model, kv_type) -> "safe" | "risky" | "unsafe" | None: the
    measured KV-type verdicts (planner.measurement.kv_safety); types measured unsafe are never
    advised, unmeasured ones are marked "unknown". host_memory: bytes of host RAM the plan may
    keep resident beside a discrete GPU (offloaded layers and experts, embeddings); TYPICAL_HOST
    (default): a 32 GB desktop (host_memory_limit); None: not checked. weights: only
    these formats (None: every format the runtime loads that the search knows). `stats`, when
    given, receives the number of configurations evaluated. An empty list means nothing fits.

    Search: llama.cpp on one discrete GPU evaluates every (format, KV type, ubatch, -ngl or
    --n-cpu-moe, ladder context) at once (planning/placement_grid.py); other runtimes and several
    GPUs evaluate each (format, KV type) on the same context ladder, placements by binary search.
    The best candidates by the goal are then evaluated exactly (largest context, speed bound)."""
    import numpy as np

    from planner.model.resolve import resolve_model
    from planner.planning.grid import term_bytes
    from planner.readers.catalogue import model_names

    if goal not in GOALS:
        raise PlannerInputError(f"--goal: '{goal}' is not one of {', '.join(GOALS)}")
    if sequences < 1:
        raise PlannerInputError(f"--sequences: must be >= 1, got {sequences}")
    if limit < 1:
        raise PlannerInputError(f"--limit: must be >= 1, got {limit}")
    if isinstance(device, str):
        dev, n_gpus = parse_device_spec(device)
        label = device.strip()
    else:
        dev, n_gpus = device, 1
        label = dev.name
    host_memory = host_memory_limit(host_memory, dev)
    runtimes = (normalize_runtime(runtime),) if runtime else runtimes_for(dev)
    only = None
    if weights:
        only = {get_format(w).name for w in weights}
        from planner.runtimes import allowed_format_families

        runtimes = tuple(rt for rt in runtimes
                         if any(get_format(w).family in allowed_format_families(rt) for w in only))
        if not runtimes:
            raise PlannerInputError(f"--weights {', '.join(sorted(only))}: no runtime of this device loads it")
    names = list(models) if models else model_names()
    target = context or DEFAULT_CONTEXT
    counter = _Counter()
    cands: list[_Candidate] = []
    cuda = backend_of(dev) == "cuda"
    for name in names:
        spec = resolve_model(name)
        if spec.arch == "gemma4_assistant" and not models:
            continue          # drafters run beside their target, not alone
        if context and context > spec.max_context:
            continue
        ctx = min(target, spec.max_context)
        ladder = context_ladder(ctx, spec.max_context)
        for rt in runtimes:
            if rt == "vllm" and not cuda:
                continue
            if rt == "llama.cpp" and cuda and n_gpus == 1 and sequences == 1:
                cands += _grid_candidates(spec, dev, rt, ctx, ladder, kv_verdict, counter, only)
                continue
            ctxs = np.asarray(ladder, dtype=np.int64)
            for w in _formats(rt, only):
                for kv in KV_CANDIDATES.get(rt, ("f16",)):
                    state = _kv_state(spec.name, kv, kv_verdict)
                    if state == "unsafe":
                        continue
                    ub = UBATCH_CANDIDATES[0] if rt == "llama.cpp" else None
                    base = Plan(model=name, weights=w, runtime=rt, kv_type_k=kv, kv_type_v=kv, context=ctx,
                                sequences=sequences, ubatch=ub, flash_attn="on" if rt == "llama.cpp" else None,
                                gpus=n_gpus)
                    try:
                        found = _search_placement(base, spec, dev, ctx, counter)
                    except PlannerInputError:
                        break      # this runtime cannot run this model (e.g. TP above the heads)
                    if found is None:
                        continue
                    p, mm = memory_model_for(found, dev)
                    terms = mm.terms + device_terms(mm, dev)
                    budget = budget_bytes(dev, 0, mm)
                    if n_gpus > 1 and dev.kind not in UNIFIED_KINDS:
                        fit_ok = [fits_at(terms, dev, budget, int(c)) for c in ctxs]
                    else:
                        tot = sum(term_bytes(t, ctxs) for t in terms
                                  if t.place == "device" or (t.place == "host" and dev.kind in UNIFIED_KINDS))
                        fit_ok = list(tot <= budget)
                    counter.n += len(ladder)
                    best = max((int(c) for c, ok in zip(ctxs, fit_ok) if ok), default=ctx)
                    host = sum(t.const for t in terms if t.category == "weights" and t.place == "host")
                    cands.append(_Candidate(name, rt, w, kv, ub, found.n_gpu_layers, found.n_cpu_moe, best, host, 0,
                                            state))
    if host_memory is not None and dev.kind not in UNIFIED_KINDS:
        # weights offloaded to the host must fit its RAM (embeddings and buffers are checked exactly below)
        cands = [c for c in cands if c.host_bytes <= host_memory]
    finalists = _shortlist(cands, goal, max(3 * limit, 12), dev)
    out = []
    for c in finalists:
        r = evaluate(_plan_of(c, min(target, resolve_model(c.model).max_context), sequences, n_gpus), dev)
        counter.n += 1
        if context is None and goal == "context" and r.fits and r.max_context > r.context:
            # no context asked: the plan (and its command line) runs at the largest context that fits
            r = evaluate(replace(r.plan, context=r.max_context), dev)
        if r.fits and (host_memory is None or dev.kind in UNIFIED_KINDS or r.totals.host <= host_memory):
            out.append(_advised(r, label, c.kv_state))
    if stats is not None:
        stats["configurations"] = counter.n
        stats["candidates"] = len(cands)
    return _rank(out, goal)[:limit]


_KV_RANK = {"safe": 0, "unknown": 1, "risky": 2}


def _shortlist(cands: list[_Candidate], goal: str, k: int, dev) -> list[_Candidate]:
    """The k most promising candidates for the goal, by the grid's figures (exact ones come after)."""
    bw = max(dev.bandwidth_gbps, 1e-9)
    from planner.planning.throughput import host_link

    host_bw = max(host_link(dev)[0], 1e-9)

    def decode_time(c: _Candidate) -> float:
        return c.host_bytes / host_bw + c.gpu_bytes / bw

    def q(c: _Candidate) -> int:
        return _QUALITY.get(c.weights, len(_QUALITY))

    if goal == "speed":
        key = lambda c: (-_bucket(1 / max(decode_time(c), 1e-12), 1.1), q(c), _KV_RANK.get(c.kv_state, 3),
                         -_kv_bits(c.kv))
    elif goal == "quality":
        key = lambda c: (q(c), _KV_RANK.get(c.kv_state, 3), -_kv_bits(c.kv), -_bucket(c.ladder_context, 2),
                         c.host_bytes)
    else:
        key = lambda c: (-_bucket(c.ladder_context, 2), q(c), _KV_RANK.get(c.kv_state, 3), -_kv_bits(c.kv),
                         c.host_bytes)
    seen, out = set(), []
    for c in sorted(cands, key=key):
        ident = (c.model, c.runtime, c.weights, c.kv)
        if ident in seen:
            continue
        seen.add(ident)
        out.append(c)
        if len(out) >= k:
            break
    return out


# Weight formats from least to most quality loss. Google's QAT Q4_0 checkpoints were trained for
# Q4_0, so they rank above post-training 4-bit quantization and below 5-bit; no perplexity was
# measured here, the order is the formats' bits per weight otherwise.
QUALITY_ORDER = ("bf16", "f16", "q8_0", "fp8", "mlx-8bit", "q6_k", "q5_k_m", "qat-q4_0", "q4_k_m", "awq-int4",
                 "gptq-int4", "mlx-4bit", "nf4", "iq4_xs", "q4_0", "q3_k_m", "q2_k")
_QUALITY = {w: i for i, w in enumerate(QUALITY_ORDER)}


def _kv_bits(kv_type: str | None) -> float:
    """Bits per cached element (f16 16, q8_0 8.5, q5_1 6, q4_0 4.5): among KV types equally safe, the one
    that keeps more of each K and V value is the better cache. None: the runtime's own (full precision)."""
    from planner.model.kv import KV_TYPES

    return KV_TYPES[kv_type].bits_per_element if kv_type in KV_TYPES else 16.0


def _bucket(x: float, step: float) -> int:
    """Values within a factor `step` of each other tie on the goal; the next criteria decide."""
    import math

    return int(math.floor(math.log(max(x, 1e-9)) / math.log(step)))


def _rank(plans: list[AdvisedPlan], goal: str) -> list[AdvisedPlan]:
    """Goal first (speed within 10%, context within a factor 2 tie), then weight quality, KV
    safety, KV precision (bits per cached value), the other figure."""
    def q(p: AdvisedPlan) -> int:
        return _QUALITY.get(p.plan.weights, len(_QUALITY))

    def kv(p: AdvisedPlan) -> float:
        return min(_kv_bits(p.plan.kv_type_k), _kv_bits(p.plan.kv_type_v))

    if goal == "speed":
        key = lambda p: (-_bucket(p.decode_tps, 1.1), q(p), _KV_RANK.get(p.kv_verdict, 3), -kv(p), -p.max_context)
    elif goal == "quality":
        key = lambda p: (q(p), _KV_RANK.get(p.kv_verdict, 3), -kv(p), -_bucket(p.max_context, 2), -p.decode_tps)
    else:
        key = lambda p: (-_bucket(p.max_context, 2), q(p), _KV_RANK.get(p.kv_verdict, 3), -kv(p), -p.decode_tps)
    return sorted(plans, key=key)
