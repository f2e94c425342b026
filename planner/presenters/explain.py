"""`planner explain LOGFILE`: reconcile a llama.cpp / llama-server / Ollama load log with the plan.

The log is parsed (planner.readers.llamacpp_log), the catalogue model is matched from the architecture
and dimensions the log prints (or given with --model), the planner is run for the same settings
(context, ubatch, sequences / slots, unified cache, cache types, flash attention, --swa-full)
and every buffer is compared: model buffers, each KV cache, the output buffer and the compute
buffer, with the difference and its likely cause. Exit 0 when every term agrees within its
tolerance, 1 otherwise; an unreadable log is an input error (exit 2).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from planner.errors import PlannerInputError

MIB = 1024 * 1024
KV_TOL_MIB = 0.011            # two printed decimals, and the rounding of a sum of two printed values
MODEL_TOL = 0.001             # model buffers: exact given the tensor types (0.1% allows a rounding)
COMPUTE_TOL = 0.05            # the compute-buffer model's accuracy on the CPU backend
OLLAMA_TOL = 0.06             # Ollama prints one decimal in GiB

GGUF_ARCH = {"gemma4": "gemma4", "gemma4_unified": "gemma4", "gemma3": "gemma3", "gemma3n": "gemma3n",
             "gemma4_assistant": "gemma4-assistant"}


@dataclass
class Row:
    term: str
    planned: float | None     # MiB
    logged: float | None      # MiB
    ok: bool
    cause: str = ""

    @property
    def diff(self) -> float | None:
        if self.planned is None or self.logged is None:
            return None
        return self.planned - self.logged


def match_model(log) -> str:
    """The catalogue model whose architecture and dimensions the log shows."""
    from planner.model.resolve import load_profile
    from planner.readers.catalogue import model_names

    arch = log.arch
    n_layer = log.int_info("n_layer") or log.int_info("block_count")
    n_embd = log.int_info("n_embd") or log.int_info("embedding_length")
    if not arch or not n_layer or not n_embd:
        raise PlannerInputError("explain: the log does not show the architecture, n_layer and n_embd "
                                "(print_info lines); name the model with --model")
    found = []
    for name in model_names():
        spec = load_profile(name)
        if GGUF_ARCH.get(spec.arch, spec.arch) == arch and spec.n_layers == n_layer and spec.hidden_size == n_embd:
            found.append(name)
    if not found:
        raise PlannerInputError(f"explain: no catalogue model has architecture {arch}, {n_layer} layers and "
                                f"n_embd {n_embd}; name one with --model")
    if len(found) > 1:
        # prefer the one whose name the log mentions
        text = f"{log.name or ''} {log.model_path or ''}".lower().replace("_", "-")
        named = [f for f in found if f.split("-", 1)[-1] in text]
        if len(named) == 1:
            return named[0]
    return found[0]


def reconcile(log, model: str | None = None) -> dict:
    from planner.model.formats import get_format
    from planner.model.resolve import load_profile, resolve_model
    from planner.runtimes import llamacpp
    from planner.runtimes.llamacpp import (
        cpu_model_buffers,
        plan_from_log_settings,
        predicted_kv_caches,
    )

    name = model or match_model(log)
    spec = resolve_model(name) if model else load_profile(name)
    weights = log.weights
    notes: list[str] = []
    if weights is None:
        weights = "q4_k_m"
        notes.append("the log does not show the file type; assumed Q4_K_M")
    n_ctx = log.n_ctx
    if n_ctx is None:
        raise PlannerInputError("explain: the log has no n_ctx (llama_context lines or --ctx-size)")
    n_seq = log.n_seq
    n_ubatch = log.n_ubatch or min(512, n_ctx)
    n_batch = int(log.context.get("n_batch") or 2048)
    unified = bool(log.kv_unified)
    type_k = log.type_k or "f16"
    type_v = log.type_v or type_k
    fa = log.flash_attn_resolved or log.flash_attn or "auto"
    if fa == "auto":
        # sched_reserve resolves auto: on where the backend runs FLASH_ATTN_EXT (CPU, CUDA, Metal, Vulkan)
        fa = "on"
        notes.append("flash attention 'auto' resolved as on (the backends that load Gemma support it)")
    n_ctx_seq = int(log.context.get("n_ctx_seq") or 0) or None
    plan, ctx = plan_from_log_settings(name, weights, n_ctx=n_ctx, n_ctx_seq=n_ctx_seq, n_seq=n_seq,
                                       n_ubatch=n_ubatch, n_batch=n_batch, type_k=type_k, type_v=type_v,
                                       flash_attn=fa, swa_full=log.swa_full, kv_unified=unified,
                                       n_outputs_max=int(log.context.get("n_outputs_max") or 0) or None)
    if plan.frontend == "server":
        notes.append(f"n_outputs_max {plan.n_outputs_max} in the log: a build with PR #23861 "
                     f"(llama-server's output limit), planned with llama.cpp {plan.build}'s rules")
    fmt = get_format(weights)
    mm = llamacpp.build(spec, plan, fmt)
    rows: list[Row] = []

    # model buffers
    backends = {b.name for b in log.model_buffers}
    cpu_only = bool(backends) and all(b.startswith("CPU") for b in backends)
    if log.model_buffers:
        if cpu_only:
            repack = any(b.name == "CPU_REPACK" for b in log.model_buffers)
            pred = sorted(cpu_model_buffers(spec, weights, repack=repack), key=lambda x: (x[0], -x[1]))
            logd = sorted(((b.name, b.mib) for b in log.model_buffers), key=lambda x: (x[0], -x[1]))
            seen: dict[str, int] = {}
            for bn, mib in logd:
                k = seen.get(bn, 0)
                seen[bn] = k + 1
                same = [v for name_, v in pred if name_ == bn]
                p = same[k] if k < len(same) else None
                ok = p is not None and abs(p / MIB - mib) <= max(0.011, MODEL_TOL * mib)
                cause = "" if ok else _model_cause(log, spec, weights, p, mib)
                rows.append(Row(f"model buffer {bn}", None if p is None else p / MIB, mib, ok, cause))
        else:
            total = sum(t.bytes_at(ctx) for t in mm.terms if t.category == "weights")
            host = sum(t.bytes_at(ctx) for t in mm.terms if t.category == "weights" and t.place != "device")
            dev = total - host
            if spec.tie_word_embeddings:
                emb = next((t.const for t in mm.terms if t.name.startswith("token embedding")), 0)
                dev += emb
            logged_dev = sum(b.mib for b in log.model_buffers if not b.name.startswith("CPU"))
            logged_host = sum(b.mib for b in log.model_buffers if b.name.startswith("CPU"))
            rows.append(Row("model buffers on the GPU (" + ", ".join(sorted(backends - {'CPU', 'CPU_Mapped', 'CPU_REPACK'})) + ")",
                            dev / MIB, logged_dev, abs(dev / MIB - logged_dev) <= 0.02 * max(logged_dev, 1),
                            "partial offload (-ngl below the layer count) moves layers to the host"
                            if abs(dev / MIB - logged_dev) > 0.02 * max(logged_dev, 1) else
                            "includes the tied output head loaded again on the GPU"))
            rows.append(Row("model buffers on the host (CPU_Mapped)", host / MIB, logged_host,
                            abs(host / MIB - logged_host) <= 0.02 * max(logged_host, 1),
                            "" if abs(host / MIB - logged_host) <= 0.02 * max(logged_host, 1) else
                            "the mapped span covers every tensor between the first and last host tensor in the "
                            "file; partial offload keeps more layers on the host"))

    # KV caches
    pred_kv = predicted_kv_caches(mm, ctx)
    for i, l in enumerate(log.kv_caches):
        label = f"KV cache {l.kind or ''}".strip() + (f" ({l.cells} cells, {l.layers} layers)" if l.cells else "")
        p = pred_kv[i] if i < len(pred_kv) else None
        if p is None:
            rows.append(Row(label, None, l.size_mib, False, "the planner has no such cache for this model"))
            continue
        pb = p["k_bytes"] + p["v_bytes"]
        ok = abs(pb / MIB - l.size_mib) <= KV_TOL_MIB and (l.cells is None or l.cells == p["cells"])
        cause = "" if ok else _kv_cause(log, l, p, n_seq, unified)
        rows.append(Row(label, pb / MIB, l.size_mib, ok, cause))
    if len(pred_kv) > len(log.kv_caches) and log.kv_caches:
        rows.append(Row("KV cache (planned, not in the log)", sum(p["k_bytes"] + p["v_bytes"] for p in pred_kv[len(log.kv_caches):]) / MIB,
                        None, False, "the log has fewer caches: an older llama.cpp without the sliding-window cache"))

    # output buffer
    out = next((t for t in mm.terms if t.name.startswith("output buffer")), None)
    for b in log.output_buffers:
        pb = out.bytes_at(ctx) / MIB if out else None
        ok = pb is not None and abs(pb - b.mib) <= 0.011
        rows.append(Row(f"output buffer {b.name}", pb, b.mib, ok,
                        "" if ok else "embeddings or backend sampling add to the logits buffer"))

    # compute buffers
    comp = [t for t in mm.terms if t.name.startswith("compute buffer")]    # a replayed buffer: several Terms
    if log.compute_buffers and comp:
        logged = sum(b.mib for b in log.compute_buffers)
        pc = sum(t.bytes_at(ctx) for t in comp) / MIB
        cpu = all(b.name.startswith("CPU") for b in log.compute_buffers)
        ok = abs(pc - logged) <= COMPUTE_TOL * logged if cpu else abs(pc - logged) <= 0.15 * logged
        names = ", ".join(b.name for b in log.compute_buffers)
        cause = ""
        if not ok:
            cause = ("the log's backend (" + names + ") reserves a different compute buffer than the CPU backend the "
                     "planner's model was measured on" if not cpu else
                     "ggml-alloc placed the logits above a live activation (allocator layout; the planner models "
                     "the usual layout)")
            if n_ubatch != 512 and abs(pc - logged) > 0.5 * logged:
                cause += f"; note n_ubatch {n_ubatch}: the logits scale with it"
        elif not cpu:
            cause = f"backend {names}: compared within 15% (the planner's figure is the CPU backend's)"
        rows.append(Row(f"compute buffer ({names})", pc, logged, ok, cause))

    # Ollama's summary lines
    for what, entries in log.ollama.items():
        if what not in ("model weights", "kv cache", "compute graph"):
            continue
        logged = sum(e["mib"] for e in entries)
        if what == "kv cache":
            p = sum(t.bytes_at(ctx) for t in mm.terms if t.category == "kv") / MIB
        elif what == "model weights":
            p = sum(t.bytes_at(ctx) for t in mm.terms if t.category == "weights") / MIB
        else:
            p = sum(t.bytes_at(ctx) for t in comp) / MIB if comp else None
        tol = OLLAMA_TOL if what != "compute graph" else 0.15
        ok = p is not None and abs(p - logged) <= tol * max(logged, 1)
        cause = "" if ok else ("Ollama's defaults differ: check OLLAMA_NUM_PARALLEL (slots multiply the context) "
                               "and OLLAMA_KV_CACHE_TYPE" if what == "kv cache" else
                               "Ollama's own graph estimate (not llama.cpp's reserve)" if what == "compute graph" else
                               "a different quantization mix or the vision projector in the same file")
        rows.append(Row(f"ollama {what}", p, logged, ok, cause))

    if not rows:
        raise PlannerInputError("explain: the log has no buffer lines to compare")
    if n_seq > 1 and unified and log.source == "llama.cpp":
        notes.append(f"{n_seq} slots sharing one unified cache of {n_ctx} cells (llama-server's default with "
                     "automatic slots is 4 slots, unified)")
    elif n_seq > 1:
        notes.append(f"{n_seq} sequences, one KV stream each of {n_ctx_seq or ctx} cells")
    return {
        "model": name, "weights": weights, "log_model": log.name, "log_path": log.model_path,
        "settings": {"n_ctx": n_ctx, "n_ctx_seq": n_ctx_seq, "context_per_sequence": ctx, "n_seq": n_seq,
                     "n_ubatch": n_ubatch, "kv_unified": unified, "type_k": type_k, "type_v": type_v,
                     "flash_attn": fa, "swa_full": log.swa_full},
        "backend": ", ".join(sorted({b.name for b in log.compute_buffers})) or None,
        "rows": rows, "notes": notes,
        "compute_note": ("compute buffers are modelled on the CPU backend (measured: llama-cpp-python 0.3.36's "
                         "library and llama-server b11549, within 5% on 95% of the measured loads); CUDA, Vulkan and Metal reserve the same graph with the "
                         "same allocator but split it by backend: ops on host tensors (the token and PLE embedding "
                         "lookups) get a separate host compute buffer (CUDA_Host, a few MiB per 512 tokens), and each "
                         "backend's kernels and buffer alignment differ, so their figures are compared within 15% and "
                         "are not measured here"),
        "ok": all(r.ok for r in rows),
    }


def _model_cause(log, spec, weights, planned, logged_mib) -> str:
    if planned is None:
        return "a buffer the planner does not expect (tensor overrides or another backend)"
    if log.type_counts:
        return ("the file's tensor types differ from llama-quantize's default " + weights.upper() +
                " mix (an imatrix, --tensor-type overrides, or a different converter): "
                + ", ".join(f"{k} x{v}" for k, v in sorted(log.type_counts.items())))
    return "a different quantization mix"


def _kv_cause(log, l, p, n_seq, unified) -> str:
    if l.cells is not None and l.cells != p["cells"]:
        if n_seq > 1 and not unified:
            return f"cells per stream differ ({l.cells} vs planned {p['cells']}): -c is divided among {n_seq} sequences"
        return f"cells differ ({l.cells} vs planned {p['cells']}): another --swa-full / ubatch / slots setting"
    if (l.type_k, l.type_v) != (p["type_k"], p["type_v"]):
        return f"cache types differ ({l.type_k}/{l.type_v})"
    return "per-layer widths differ: another model or a llama.cpp that pads V without flash attention"


def format_table(res: dict) -> str:
    lines = [f"model: {res['model']} ({res['weights']})" + (f"  [log: {res['log_model']}]" if res["log_model"] else "")]
    s = res["settings"]
    lines.append(f"settings: n_ctx {s['n_ctx']}, {s['n_seq']} seq{'s' if s['n_seq'] > 1 else ''}"
                 f"{' (unified)' if s['kv_unified'] else ''}, ubatch {s['n_ubatch']}, cache K {s['type_k']} / V {s['type_v']}, "
                 f"flash attention {s['flash_attn']}{', swa-full' if s['swa_full'] else ''}")
    if res.get("backend"):
        lines.append(f"backend: {res['backend']}")
    w = max(len(r.term) for r in res["rows"])
    lines.append(f"{'term':<{w}}  {'planned MiB':>12}  {'logged MiB':>11}  {'diff':>9}  ok   likely cause")
    for r in res["rows"]:
        pl = f"{r.planned:12.2f}" if r.planned is not None else f"{'-':>12}"
        lg = f"{r.logged:11.2f}" if r.logged is not None else f"{'-':>11}"
        df = f"{r.diff:+9.2f}" if r.diff is not None else f"{'-':>9}"
        lines.append(f"{r.term:<{w}}  {pl}  {lg}  {df}  {'yes' if r.ok else 'NO '}  {r.cause}")
    for n in res["notes"]:
        lines.append(f"note: {n}")
    lines.append(f"note: {res['compute_note']}")
    lines.append("all terms agree" if res["ok"] else "some terms differ (see the likely causes)")
    return "\n".join(lines)


def run_explain(logfile, model: str | None = None, as_json: bool = False) -> int:
    from planner.readers.llamacpp_log import parse_log_file

    log = parse_log_file(logfile)
    if log.refused:
        msg = f"llama.cpp refused this configuration: {log.refused}"
        if as_json:
            print(json.dumps({"refused": log.refused, "ok": False}))
        else:
            print(msg)
        return 1
    res = reconcile(log, model)
    if as_json:
        out = dict(res)
        out["rows"] = [{"term": r.term, "planned_mib": r.planned, "logged_mib": r.logged, "diff_mib": r.diff,
                        "ok": r.ok, "cause": r.cause} for r in res["rows"]]
        print(json.dumps(out, indent=1))
    else:
        print(format_table(res))
    return 0 if res["ok"] else 1
