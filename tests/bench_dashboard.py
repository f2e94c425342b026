"""Planner time behind the dashboard's recompute: `python tests/bench_dashboard.py` (prints figures).

Not collected by pytest (bench_*). The target (issue 4): after a widget change, under 100 ms of
planner time for the fit matrix over all catalogue models. Measured here, per runtime:

- cold: a fresh process, the first matrix (memory models and weight tables built from nothing);
- warm: the same matrix again in the process (what a rerun costs when st.cache_data misses but the
  planner's own lru caches hold the memory models, e.g. in another browser session);
- margin change: a new margin every time (memory models cached, every binary search redone);
- KV-type change: each KV type for the first time (memory models rebuilt, weight tables cached);
- sequences change: 1, 2, 3, ... sequences, each for the first time;
- device change: another device, each for the first time (vLLM's defaults depend on the GPU).
The page wraps the matrix in st.cache_data, so a repeated view costs ~0 planner time.
"""
from __future__ import annotations

import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEVICE = "8gb-gpu"


GC_MS: list[float] = []      # time in Python's full (generation 2) garbage collections, per collection
_gc_start: list[float] = []


def _gc_timer(phase: str, info: dict) -> None:
    if info["generation"] != 2:
        return
    if phase == "start":
        _gc_start.append(time.perf_counter())
    elif _gc_start:
        GC_MS.append((time.perf_counter() - _gc_start.pop()) * 1000)


gc.callbacks.append(_gc_timer)


def ms(f, *a, **k) -> tuple[float, object]:
    t = time.perf_counter()
    out = f(*a, **k)
    return (time.perf_counter() - t) * 1000, out


def cold(runtime: str, all_formats: bool) -> dict:
    """Run in a fresh interpreter: import + first matrix."""
    t0 = time.perf_counter()
    from dashboard import compute as C

    imp = (time.perf_counter() - t0) * 1000
    fmts = C.formats_for([runtime]) if all_formats else C.common_formats(runtime)
    t, m = ms(C.fit_matrix_models, DEVICE, runtime, fmts)
    return {"import_ms": imp, "first_matrix_ms": t, "cells": len(m["rows"]) * len(m["columns"]),
            "errors": len(m["errors"])}


def warm(runtime: str, all_formats: bool) -> dict:
    from dashboard import compute as C
    from planner.model.kv import RUNTIME_KV_TYPES

    fmts = C.formats_for([runtime]) if all_formats else C.common_formats(runtime)
    C.fit_matrix_models(DEVICE, runtime, fmts)                       # build everything once
    same = [ms(C.fit_matrix_models, DEVICE, runtime, fmts)[0] for _ in range(5)]
    margin = [ms(C.fit_matrix_models, DEVICE, runtime, fmts, margin_mib=64.0 * (i + 1))[0] for i in range(5)]
    kv = [ms(C.fit_matrix_models, DEVICE, runtime, fmts, kv=k)[0] for k in RUNTIME_KV_TYPES[runtime]]
    seqs = [ms(C.fit_matrix_models, DEVICE, runtime, fmts, sequences=s)[0] for s in (2, 3, 4)]
    devs = [ms(C.fit_matrix_models, d, runtime, fmts)[0] for d in ("24gb-gpu", "80gb-gpu", "m-series-16gb")]
    t_dev, md = ms(C.fit_matrix_devices, "gemma-4-e4b", runtime, fmts)
    t_dev2 = ms(C.fit_matrix_devices, "gemma-4-e4b", runtime, fmts, margin_mib=128.0)[0]
    return {"warm_ms": statistics.median(same), "margin_change_ms": statistics.median(margin),
            "kv_change_ms_median": statistics.median(kv), "kv_change_ms_max": max(kv),
            "sequences_change_ms_max": max(seqs), "device_change_ms_max": max(devs), "all_devices_first_ms": t_dev,
            "all_devices_margin_change_ms": t_dev2,
            "device_cells": len(md["rows"]) * len(md["columns"])}


def page(runtime: str) -> dict:
    """Everything the page computes after a context change (table, bars, curve; matrices unchanged)."""
    from dashboard import compute as C

    fmt = C.DEFAULT_FORMAT[runtime]
    args = (["gemma-4-e4b"], [fmt], [runtime], ["default"], ["8gb-gpu", "24gb-gpu"])
    C.evaluate_table(*args, 8192)
    C.memory_curve("gemma-4-e4b", fmt, [runtime], "8gb-gpu")
    table = statistics.median(ms(C.evaluate_table, *args, c)[0] for c in (4096, 16384, 32768, 65536, 2048))
    curve = statistics.median(ms(C.memory_curve, "gemma-4-e4b", fmt, [runtime], "8gb-gpu", None, s)[0]
                              for s in (2, 3, 4))
    return {"table_context_change_ms": table, "curve_sequences_change_ms": curve}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--cold":
        print(json.dumps(cold(sys.argv[2], sys.argv[3] == "all")))
        return
    from dashboard import compute as C
    from planner.readers.catalogue import model_names

    print(f"fit matrix on {DEVICE}: {len(model_names())} catalogue models x weight formats; planner time in ms\n")
    head = ("runtime", "formats", "cells", "cold*", "warm", "margin Δ", "device Δ", "KV Δ med", "KV Δ max",
            "seqs Δ max", "devices 1st", "devices Δ")
    print("  ".join(f"{h:>11}" for h in head))
    worst = {"common": 0.0, "all": 0.0}
    for rt in C.available_runtimes():
        for which in ("common", "all"):
            out = subprocess.run([sys.executable, __file__, "--cold", rt, which], capture_output=True, text=True,
                                 check=True)
            c = json.loads(out.stdout.strip().splitlines()[-1])
            w = warm(rt, which == "all")
            changes = (w["margin_change_ms"], w["device_change_ms_max"], w["kv_change_ms_max"],
                       w["sequences_change_ms_max"])
            worst[which] = max(worst[which], *changes)
            row = (rt, which, c["cells"], c["first_matrix_ms"], w["warm_ms"], w["margin_change_ms"],
                   w["device_change_ms_max"],
                   w["kv_change_ms_median"], w["kv_change_ms_max"], w["sequences_change_ms_max"],
                   w["all_devices_first_ms"], w["all_devices_margin_change_ms"])
            print("  ".join(f"{v:>11.1f}" if isinstance(v, float) else f"{v!s:>11}" for v in row))
    print("\n* cold = a fresh process's first matrix (import of dashboard.compute not included).")
    print("  'devices' = one model (gemma-4-e4b) x formats on every catalogue device.")
    for rt in C.available_runtimes():
        p = page(rt)
        print(f"page, {rt}: results table + bars after a context change {p['table_context_change_ms']:.1f} ms; "
              f"memory-vs-context curve after a sequences change {p['curve_sequences_change_ms']:.1f} ms")
    print()
    for which, label in (("common", "the page's default matrix (the runtime's common formats)"),
                         ("all", "the 'every format the runtime loads' matrix")):
        verdict = "meets" if worst[which] < 100 else "MISSES"
        print(f"worst recompute after a widget change, {label}: {worst[which]:.1f} ms -> {verdict} the 100 ms target")
    # A full collection walks every object the planner's caches hold; one that lands inside a timed
    # recompute is part of what a user waits for then, so it stays in the figures, and is reported here.
    if GC_MS:
        print(f"full garbage collections during the run: {len(GC_MS)}, longest {max(GC_MS):.1f} ms, "
              f"median {statistics.median(GC_MS):.1f} ms (a worst figure above may include one)")


if __name__ == "__main__":
    main()
