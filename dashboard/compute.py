"""What the dashboard shows, computed with the planner's Python API only.

Every byte figure comes from `planner.planning.solver.evaluate`, `planner.planning.grid` or `planner.presenters.report`;
this module only picks combinations, catches the planner's errors per combination, groups the
planner's own components for the stacked bars and converts bytes to GiB for display. It does
not import streamlit (tests and tests/bench_dashboard.py call it directly); the page wraps
these functions in `st.cache_data`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

from planner.errors import PlannerInputError
from planner.model.formats import COMMON_FORMATS, format_names, get_format  # COMMON_FORMATS: `planner fit`'s list
from planner.model.inventory import ROLE_COMPONENT
from planner.model.kv import KV_TYPES, RUNTIME_KV_TYPES
from planner.model.resolve import resolve_model
from planner.planning.grid import evaluate_grid, max_context_matrix
from planner.planning.solver import UNIFIED_KINDS, evaluate
from planner.planning.throughput import decode_upper_bound
from planner.presenters.report import SCHEMA_FIT, result_dict
from planner.readers.catalogue import model_names
from planner.readers.devices import get_device, load_devices
from planner.runtimes import allowed_format_families
from planner.runtimes.request import RUNTIMES, Plan

from dashboard import decide

GIB = 1 << 30
MIB = 1 << 20
DEFAULT_KV = "default"            # the runtime's own default KV type (f16 for llama.cpp, bf16 elsewhere)
MIN_CONTEXT = 512
MAX_EVALUATIONS = 64              # configurations x devices evaluated for the table and the bars
SEGMENTS = ("weights", "PLE", "KV", "compute", "overhead")
_PLE = ROLE_COMPONENT["ple_table"]

ENCODERS = {"runtime default": None, "text only": True, "with encoders": False}   # -> Plan.text_only
DEFAULT_FORMAT = {"llama.cpp": "q4_k_m", "vllm": "bf16", "transformers": "bf16", "mlx": "mlx-4bit",
                  "litert-lm": "litert-mobile"}


# ---------------------------------------------------------------------------------------------
# Choices offered in the sidebar


@lru_cache(maxsize=1)
def available_runtimes() -> tuple[str, ...]:
    """Runtimes whose memory model imports in this checkout (all four once llama.cpp's exists)."""
    out = []
    for rt in RUNTIMES:
        try:
            allowed_format_families(rt)
        except ImportError:
            continue
        out.append(rt)
    return tuple(out)


def formats_for(runtimes: list[str] | tuple[str, ...]) -> list[str]:
    """Weight formats at least one of the runtimes loads, in the planner's order."""
    fams = set()
    for rt in runtimes:
        fams.update(allowed_format_families(rt))
    return [f for f in format_names() if get_format(f).family in fams]


def format_allowed(runtime: str, weights: str) -> bool:
    return get_format(weights).family in allowed_format_families(runtime)


def kv_options(runtimes: list[str] | tuple[str, ...]) -> list[str]:
    """'default' (the runtime's own) and every KV type at least one of the runtimes allocates."""
    allowed = {t for rt in runtimes for t in RUNTIME_KV_TYPES[rt]}
    return [DEFAULT_KV] + [t for t in KV_TYPES if t in allowed]


def common_formats(runtime: str) -> list[str]:
    return [f for f in COMMON_FORMATS.get(runtime, []) if format_allowed(runtime, f)] or \
        [f for f in formats_for([runtime])]


def context_options(max_context: int) -> list[int]:
    """Powers of two from 512 up to the model's maximum (the maximum itself last if it is not one)."""
    opts = []
    c = MIN_CONTEXT
    while c <= max_context:
        opts.append(c)
        c *= 2
    if not opts or opts[-1] != max_context:
        opts.append(max_context)
    return opts


def catalogue_devices() -> list[str]:
    return list(load_devices())


def catalogue_models() -> list[str]:
    return model_names()


def fmt_context(n: int | None) -> str:
    if n is None:
        return "error"
    if n <= 0:
        return "-"
    if n < 1024:
        return str(n)
    if n % 1024 == 0:
        return f"{n // 1024}k"
    return f"{n / 1024:.1f}k"


def error_text(e: BaseException) -> str:
    """The planner's one-line message; other exceptions are planner bugs, named as such (no traceback)."""
    if isinstance(e, PlannerInputError):
        return str(e)
    return f"the planner failed on this combination ({type(e).__name__}: {e})"


def model_label(model: str) -> str:
    return resolve_model(model).name


# ---------------------------------------------------------------------------------------------
# Configurations: model x weights x KV type x runtime


@dataclass(frozen=True)
class Config:
    model: str
    weights: str
    runtime: str
    kv: str                       # a KV type name, or DEFAULT_KV

    def plan(self, context: int | None, sequences: int = 1, ubatch: int | None = None,
             text_only: bool | None = None) -> Plan:
        kv = None if self.kv == DEFAULT_KV else self.kv
        return Plan(model=self.model, weights=self.weights, runtime=self.runtime, kv_type_k=kv, kv_type_v=kv,
                    context=context, sequences=sequences, ubatch=ubatch, text_only=text_only)


def expand_configs(models, weights, runtimes, kv_types) -> tuple[list[Config], list[str]]:
    """Every combination the runtimes can run; a runtime given no format or KV type it takes falls
    back to its default, and says so."""
    notes: list[str] = []
    configs: list[Config] = []
    kv_types = list(kv_types) or [DEFAULT_KV]
    for rt in runtimes:
        fmts = [w for w in weights if format_allowed(rt, w)]
        if not fmts:
            fmts = [DEFAULT_FORMAT[rt]]
            if weights:
                notes.append(f"{rt} loads none of the chosen weight formats ({', '.join(weights)}); "
                             f"showing {fmts[0]} for it")
        kvs = [k for k in kv_types if k == DEFAULT_KV or k in RUNTIME_KV_TYPES[rt]]
        skipped = [k for k in kv_types if k not in kvs]
        if skipped:
            notes.append(f"{rt} cannot allocate KV type(s) {', '.join(skipped)} "
                         f"(allowed: {', '.join(RUNTIME_KV_TYPES[rt])})")
        if not kvs:
            kvs = [DEFAULT_KV]
        for m in models:
            for w in fmts:
                for k in kvs:
                    configs.append(Config(m, w, rt, k))
    return configs, notes


def counted_place(place: str, unified: bool) -> bool:
    """Which bars stack against the budget: device bytes; host bytes too on a unified-memory device;
    never file-backed mapped pages (planner.planning.solver.needed_bytes; tests check the stack equals `needed`)."""
    return place == "device" or (place == "host" and unified)


def segments(result: dict) -> dict[tuple[str, str], int]:
    """The planner's components (report.result_dict) grouped as (segment, place) -> bytes."""
    seg = {"weights": "weights", "kv": "KV", "compute": "compute", "overhead": "overhead"}
    out: dict[tuple[str, str], int] = {}
    for c in result["components"]:
        s = "PLE" if c["category"] == "weights" and c["name"].startswith(_PLE) else seg[c["category"]]
        out[(s, c["place"])] = out.get((s, c["place"]), 0) + c["bytes"]
    return out


def evaluate_table(models, weights, runtimes, kv_types, devices, context: int, sequences: int = 1,
                   ubatch: int | None = None, margin_mib: float = 0.0, text_only: bool | None = None,
                   placement: tuple = ()) -> dict:
    """One row per configuration and device: the fit answer, bytes by kind, the decode upper bound.

    placement: llama.cpp Plan fields as (name, value) pairs (n_gpu_layers, n_cpu_moe, flash_attn),
    applied to the llama.cpp configurations only (what an advised plan's "apply" sets).

    Returns {rows, results (report.result_dict + decode bound: the JSON export), bars,
    details (verdict, budget rule, largest-context text: dashboard.decide), messages}; the lists are parallel.
    """
    margin = int(margin_mib * MIB)
    configs, notes = expand_configs(models, weights, runtimes, kv_types)
    messages = [("info", n) for n in notes]
    rows, results, bars, details = [], [], [], []
    devs = []
    for d in devices:
        try:
            devs.append(get_device(d))
        except Exception as e:  # noqa: BLE001
            messages.append(("error", error_text(e)))
    specs: dict[str, object] = {}
    for m in models:
        try:
            specs[m] = resolve_model(m)
        except Exception as e:  # noqa: BLE001
            messages.append(("error", error_text(e)))
    configs = [c for c in configs if c.model in specs]
    if len(configs) * len(devs) > MAX_EVALUATIONS:
        keep = max(1, MAX_EVALUATIONS // max(1, len(devs)))
        messages.append(("warning", f"{len(configs) * len(devs)} combinations chosen: showing the first "
                                    f"{keep * len(devs)}; narrow the selection to see the rest"))
        configs = configs[:keep]
    clamped = set()
    for cfg in configs:
        spec = specs[cfg.model]
        ctx = min(context, spec.max_context)
        if ctx < context and spec.name not in clamped:
            clamped.add(spec.name)
            messages.append(("info", f"{spec.name}: context {context:,} is beyond its maximum; "
                                     f"using {spec.max_context:,}"))
        plan = cfg.plan(ctx, sequences, ubatch, text_only)
        if placement and cfg.runtime == "llama.cpp":
            plan = replace(plan, **dict(placement))
        for dev in devs:
            try:
                r = evaluate(plan, dev, margin)
                d = result_dict(r)
                bound = decode_upper_bound(r.model, r.context, dev.bandwidth_gbps)
            except Exception as e:  # noqa: BLE001
                messages.append(("error", f"{cfg.model} {cfg.weights} {cfg.runtime} kv {cfg.kv} on {dev.name}: "
                                          f"{error_text(e)}"))
                continue
            per_seq = bound.tokens_per_s_per_sequence if dev.bandwidth_gbps > 0 else None
            total = bound.tokens_per_s_total if dev.bandwidth_gbps > 0 else None
            d["decode_upper_bound"] = {
                "tokens_per_s_per_sequence": per_seq, "tokens_per_s_total": total,
                "bandwidth_gbps": dev.bandwidth_gbps, "weight_bytes_per_token": bound.weight_bytes_per_token,
                "kv_bytes_per_token": bound.kv_bytes_per_token,
                "note": "upper bound: memory bandwidth / bytes read per generated token"}
            results.append(d)
            t = r.totals
            unified = dev.kind in UNIFIED_KINDS
            details.append({"verdict": decide.verdict(r.fits, r.headroom, r.budget), "unified": unified,
                            "budget_rule": decide.budget_rule(dev, r.model.runtime, r.budget, margin),
                            "max context text": decide.max_context_text(r.max_context, r.model.max_context)})
            rows.append({
                "device": dev.name, "model": r.model.spec.name, "weights": r.plan.weights, "runtime": r.model.runtime,
                "kv": d["kv_type"], "context": r.context, "sequences": r.plan.sequences, "fits": bool(r.fits),
                "verdict": details[-1]["verdict"], "max context": int(r.max_context),
                "model max context": int(r.model.max_context), "needed GiB": r.needed / GIB,
                "budget GiB": r.budget / GIB, "headroom GiB": r.headroom / GIB,
                "headroom %": decide.headroom_pct(r.headroom, r.budget), "device GiB": t.device / GIB, "host GiB": t.host / GIB,
                "mapped GiB": getattr(t, "mapped", 0) / GIB,
                "weights GiB": t.weights / GIB, "KV GiB": t.kv / GIB, "compute GiB": t.compute / GIB,
                "overhead GiB": t.overhead / GIB,
                "decode tok/s per seq (upper bound)": per_seq,
                "decode tok/s all seqs (upper bound)": total,
            })
            segs = segments(d)
            bars.append({
                "label": f"{r.model.spec.name} · {r.plan.weights} · KV {d['kv_type']} · {r.model.runtime} @ {dev.name}",
                "device": dev.name, "unified": unified, "usable": dev.usable_bytes,
                "budget": r.budget, "needed": r.needed, "headroom": r.headroom, "fits": bool(r.fits),
                "segments": segs,
                "counted": {k: v for k, v in segs.items() if counted_place(k[1], unified)},
                "aside": {k: v for k, v in segs.items() if not counted_place(k[1], unified)},
            })
            for n in r.notes:
                if ("info", n) not in messages:
                    messages.append(("info", n))
    return {"rows": rows, "results": results, "bars": bars, "details": details, "messages": messages}


def fit_json(results: list[dict]) -> dict:
    return {"schema": SCHEMA_FIT, "results": results}


# ---------------------------------------------------------------------------------------------
# Memory against context


def curve_contexts(max_context: int, per_octave: int = 4) -> list[int]:
    out = set()
    k = 0
    while True:
        c = int(round(MIN_CONTEXT * 2 ** (k / per_octave)))
        if c > max_context:
            break
        out.add(c)
        k += 1
    out.add(max_context)
    return sorted(out)


def memory_curve(model: str, weights: str, runtimes, device: str, kv_types=None, sequences: int = 1,
                 ubatch: int | None = None, margin_mib: float = 0.0, text_only: bool | None = None) -> dict:
    """Bytes counted against the device (planner.planning.grid) over context, one line per runtime x KV type.

    kv_types None: every KV type each runtime allocates. Returns {points, lines, messages}.
    """
    margin = int(margin_mib * MIB)
    messages: list[tuple[str, str]] = []
    try:
        spec = resolve_model(model)
        dev = get_device(device)
    except Exception as e:  # noqa: BLE001
        return {"points": [], "lines": [], "messages": [("error", error_text(e))]}
    plans, meta = [], []
    for rt in runtimes:
        w = weights if format_allowed(rt, weights) else DEFAULT_FORMAT[rt]
        kvs = [k for k in (kv_types or RUNTIME_KV_TYPES[rt]) if k in RUNTIME_KV_TYPES[rt]]
        for kv in kvs:
            plan = Plan(model=model, weights=w, runtime=rt, kv_type_k=kv, kv_type_v=kv, sequences=sequences,
                        ubatch=ubatch, text_only=text_only)
            try:
                mc = int(max_context_matrix([plan], [dev], margin)[0, 0])
            except Exception as e:  # noqa: BLE001
                messages.append(("info", f"{rt} KV {kv}: {error_text(e)}"))
                continue
            plans.append(plan)
            label = f"{rt} · KV {kv}" + (f" ({w})" if w != weights else "")
            meta.append({"label": label, "runtime": rt, "kv": kv, "weights": w, "max context": mc})
    if not plans:
        return {"points": [], "lines": [], "messages": messages}
    ctxs = sorted(set(curve_contexts(spec.max_context)) | {m["max context"] for m in meta if m["max context"] > 0})
    g = evaluate_grid(plans, [dev], ctxs, margin)
    points = []
    for p, m in enumerate(meta):
        m["budget GiB"] = int(g.budget[p, 0]) / GIB
        m["needed at max GiB"] = None
        for c, ctx in enumerate(ctxs):
            if not g.valid[p, c]:
                continue
            gib = int(g.needed[p, 0, c]) / GIB
            points.append({"line": m["label"], "runtime": m["runtime"], "kv": m["kv"], "context": int(ctx),
                           "needed GiB": gib})
            if ctx == m["max context"]:
                m["needed at max GiB"] = gib
    return {"points": points, "lines": meta, "messages": messages, "device": dev.name, "model": spec.name,
            "unified": dev.kind in UNIFIED_KINDS}


# ---------------------------------------------------------------------------------------------
# Fit matrices: the largest context that fits, per cell


def _plan(model, weights, runtime, kv, sequences, ubatch, text_only=None) -> Plan:
    return Config(model, weights, runtime, kv).plan(None, sequences, ubatch, text_only)


def _miss_gib(plans: list[Plan], devs: list, context: int, margin: int) -> list[list[float | None]]:
    """(P, D) GiB short of the budget at `context` (planner.planning.grid.evaluate_grid); None where it fits."""
    g = evaluate_grid(plans, devs, [context], margin)
    short = g.needed[:, :, 0] - g.budget
    return [[float(short[p, d]) / GIB if short[p, d] > 0 else None for d in range(len(devs))]
            for p in range(len(plans))]


def fit_matrix_models(device: str, runtime: str, formats, kv: str = DEFAULT_KV, sequences: int = 1,
                      ubatch: int | None = None, margin_mib: float = 0.0, models=None,
                      text_only: bool | None = None, context: int | None = None) -> dict:
    """One device: models x weight formats -> largest context that fits (0: none; None: error).

    With `context`: also "targets" (the context each row is judged at: the chosen one, or the
    model's maximum when smaller) and "miss GiB" (how far each cell is over the budget there)."""
    margin = int(margin_mib * MIB)
    models = list(models) if models is not None else model_names()
    formats = [f for f in formats if format_allowed(runtime, f)]
    if kv != DEFAULT_KV and kv not in RUNTIME_KV_TYPES[runtime]:
        kv = DEFAULT_KV
    dev = get_device(device)
    labels, values, errors, targets, misses = [], [], {}, [], []
    for m in models:
        try:
            spec = resolve_model(m)
        except Exception as e:  # noqa: BLE001
            errors[(m, "*")] = error_text(e)
            continue
        label = spec.name
        labels.append(label)
        target = min(context, spec.max_context) if context else spec.max_context
        targets.append(target)
        row, miss = [], []
        for f in formats:
            try:
                plan = _plan(m, f, runtime, kv, sequences, ubatch, text_only)
                row.append(int(max_context_matrix([plan], [dev], margin)[0, 0]))
                miss.append(_miss_gib([plan], [dev], target, margin)[0][0] if context else None)
            except Exception as e:  # noqa: BLE001
                row.append(None)
                miss.append(None)
                errors[(label, f)] = error_text(e)
        values.append(row)
        misses.append(miss)
    return {"rows": labels, "columns": formats, "values": values, "errors": errors, "device": dev.name,
            "runtime": runtime, "kv": kv, "row_title": "model", "targets": targets, "miss GiB": misses}


def fit_matrix_devices(model: str, runtime: str, formats, kv: str = DEFAULT_KV, sequences: int = 1,
                       ubatch: int | None = None, margin_mib: float = 0.0, devices=None,
                       text_only: bool | None = None, context: int | None = None) -> dict:
    """One model: devices x weight formats -> largest context that fits (0: none; None: error);
    with `context`, "targets" and "miss GiB" as in fit_matrix_models."""
    margin = int(margin_mib * MIB)
    names = list(devices) if devices is not None else catalogue_devices()
    devs = [get_device(d) for d in names]
    formats = [f for f in formats if format_allowed(runtime, f)]
    if kv != DEFAULT_KV and kv not in RUNTIME_KV_TYPES[runtime]:
        kv = DEFAULT_KV
    spec = resolve_model(model)
    target = min(context, spec.max_context) if context else spec.max_context
    cols: list[list[int | None]] = []
    miss_cols: list[list[float | None]] = []
    errors = {}
    for f in formats:
        plan = _plan(model, f, runtime, kv, sequences, ubatch, text_only)
        try:
            cols.append([int(v) for v in max_context_matrix([plan], devs, margin)[0]])
            miss_cols.append(_miss_gib([plan], devs, target, margin)[0] if context else [None] * len(devs))
        except Exception:  # noqa: BLE001 (isolate the failing device, if it is one)
            col, mcol = [], []
            for d in devs:
                try:
                    col.append(int(max_context_matrix([plan], [d], margin)[0, 0]))
                    mcol.append(_miss_gib([plan], [d], target, margin)[0][0] if context else None)
                except Exception as e:  # noqa: BLE001
                    col.append(None)
                    mcol.append(None)
                    errors[(d.name, f)] = error_text(e)
            cols.append(col)
            miss_cols.append(mcol)
    values = [[cols[j][i] for j in range(len(formats))] for i in range(len(devs))]
    misses = [[miss_cols[j][i] for j in range(len(formats))] for i in range(len(devs))]
    return {"rows": [d.name for d in devs], "columns": formats, "values": values, "errors": errors,
            "model": spec.name, "runtime": runtime, "kv": kv, "row_title": "device",
            "targets": [target] * len(devs), "miss GiB": misses}


def matrix_records(matrix: dict) -> list[dict]:
    """The matrix as table rows (for the CSV/JSON export): one row per model or device."""
    out = []
    for name, row in zip(matrix["rows"], matrix["values"]):
        rec = {matrix["row_title"]: name}
        rec.update({f: v for f, v in zip(matrix["columns"], row)})
        out.append(rec)
    return out


def log2_or_nan(v: int | None) -> float:
    return math.log2(v) if v else float("nan")
