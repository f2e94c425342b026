"""`planner check`: a team's requirement matrix in one CI step, with JUnit XML output."""
from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from planner.errors import PlannerInputError, shorten
from planner.readers.yamlio import load_yaml

FIELDS = ("name", "device", "model", "weights", "kv_type", "kv_type_k", "kv_type_v", "context", "sequences",
          "runtime", "margin", "ubatch", "flash_attn", "swa_full", "kv_unified", "text_only",
          "goal", "gpu_layers", "n_cpu_moe", "tp", "pp", "draft")
# weights: best asks `planner advise` for the best plan that fits (by `goal`), instead of checking one
BEST = "best"
REQUIRED = ("device", "model", "weights")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Requirement:
    name: str
    device: str
    model: str
    weights: str
    kv_type_k: str | None
    kv_type_v: str | None
    context: int
    sequences: int
    runtime: str
    margin_mib: float
    ubatch: int | None
    flash_attn: str | None
    swa_full: bool
    kv_unified: bool | None
    text_only: bool | None
    goal: str = "context"
    gpu_layers: int | None = None
    n_cpu_moe: int = 0
    tp: int | None = None
    pp: int | None = None
    runtime_given: bool = True
    draft: str | None = None          # llama.cpp: a drafter planned with the target (llama-server -md)


@dataclass(frozen=True)
class Outcome:
    requirement: Requirement
    result: object
    passed: bool
    reason: str
    command: str | None = None      # the command line of the plan (weights: best)


MAX_REQUIREMENTS = 1000   # a team's matrix is tens of rows; each row is a full plan evaluation
_FLASH = {"on": "on", "off": "off", "auto": "auto", True: "on", False: "off"}


def _text(e: dict, key: str, required: bool = False) -> str | None:
    """A name-like field: a non-empty string (a number is taken as written: model: 8 is '8')."""
    v = e.get(key)
    if v is None:
        if required:
            raise PlannerInputError(f"missing field '{key}'")
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise PlannerInputError(f"field '{key}' must be a string, got {type(v).__name__} {shorten(repr(v), 40)}")
    if not str(v).strip():
        raise PlannerInputError(f"field '{key}' is empty" if not required else f"missing field '{key}' (empty)")
    return str(v).strip()


def _flag(e: dict, key: str) -> bool | None:
    v = e.get(key)
    if v is not None and not isinstance(v, bool):
        raise PlannerInputError(f"field '{key}' must be true or false, got {shorten(repr(v), 40)}")
    return v


def load_requirements(path: Path) -> list[Requirement]:
    from planner.model.resolve import resolve_model
    from planner.runtimes.request import (
        Plan,
        check_count,
        check_margin,
        foreign_setting_message,
        foreign_settings,
        normalize_runtime,
        parse_context,
    )

    data = load_yaml(Path(path), "requirements file")
    defaults: dict = {}
    if isinstance(data, dict):
        defaults = data.get("defaults") or {}
        entries = data.get("requirements")
        if not isinstance(defaults, dict):
            raise PlannerInputError(f"{path}: 'defaults' must be a mapping")
    else:
        entries = data
    if not isinstance(entries, list) or not entries:
        raise PlannerInputError(f"{path}: expected a non-empty list of requirements (top level or under 'requirements:')")
    if len(entries) > MAX_REQUIREMENTS:
        raise PlannerInputError(f"{path}: {len(entries):,} requirements, at most {MAX_REQUIREMENTS:,} in one file; "
                                "split the matrix into several files")
    reqs = []
    for i, raw in enumerate(entries):
        where = f"{path}: requirement {i + 1}"
        if not isinstance(raw, dict):
            raise PlannerInputError(f"{where}: must be a mapping with fields {', '.join(FIELDS)}")
        e = {**defaults, **raw}
        if isinstance(raw.get("name"), str) and raw["name"].strip():
            where = f"{path}: requirement '{shorten(raw['name'], 60)}'"
        for k in e:
            if k not in FIELDS:
                raise PlannerInputError(f"{where}: unknown field '{shorten(k, 40)}'; allowed: {', '.join(FIELDS)}")
        try:
            name = _text(e, "name")
            device, model, weights = (_text(e, k, required=True) for k in REQUIRED)
            kv = _text(e, "kv_type")
            k_type = _text(e, "kv_type_k") or kv
            v_type = _text(e, "kv_type_v") or kv or k_type
            runtime = normalize_runtime(_text(e, "runtime") or "llama.cpp")
            spec = resolve_model(model)
            from planner.planning.advise import GOALS, parse_device_spec

            parse_device_spec(device)
            goal = _text(e, "goal") or "context"
            if goal not in GOALS:
                raise PlannerInputError(f"goal: '{shorten(goal, 40)}' is not one of {', '.join(GOALS)}")
            for k in ("gpu_layers", "n_cpu_moe", "tp", "pp"):
                v = e.get(k)
                if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 1 << 16):
                    raise PlannerInputError(f"{k}: must be an integer from 0 to 65,536, got {shorten(repr(v), 30)}")
            if weights.lower() != BEST:
                from planner.model.formats import get_format

                get_format(weights)
            ctx = parse_context(e.get("context", 8192), flag="context")
            if ctx > spec.max_context:
                raise PlannerInputError(f"context: {ctx} is beyond {spec.name}'s maximum of {spec.max_context}")
            seqs = check_count("sequences", 1 if e.get("sequences") is None else e["sequences"], "sequences")
            margin = check_margin(e.get("margin", 0), "margin")
            ubatch = check_count("ubatch", e.get("ubatch"), "ubatch")
            flash = e.get("flash_attn")
            if flash is not None:
                key = flash.strip().lower() if isinstance(flash, str) else flash
                if not isinstance(key, (str, bool)) or key not in _FLASH:
                    raise PlannerInputError(f"flash_attn: must be on, off, auto, true or false, "
                                            f"got {shorten(repr(flash), 40)}")
                flash = _FLASH[key]
            swa_full, kv_unified, text_only = _flag(e, "swa_full"), _flag(e, "kv_unified"), _flag(e, "text_only")
            tp_pp = {"tp": e.get("tp") or 1, "pp": e.get("pp") or 1}
            draft = _text(e, "draft")
            if draft is not None:
                resolve_model(draft)
            plan = Plan(model=model, weights=weights, runtime=runtime, ubatch=ubatch, flash_attn=flash,
                        swa_full=bool(swa_full), kv_unified=kv_unified, n_gpu_layers=e.get("gpu_layers"),
                        n_cpu_moe=e.get("n_cpu_moe") or 0, draft=draft, **tp_pp)
            # weights: best without a runtime lets advise pick one; otherwise the runtime is known
            if weights.lower() != BEST or "runtime" in e:
                for setting in foreign_settings(plan):
                    raise PlannerInputError(foreign_setting_message(setting, runtime, f"field '{setting.key}'"))
        except PlannerInputError as err:
            raise PlannerInputError(f"{where}: {err}") from None
        reqs.append(Requirement(
            name=name or f"{model} {weights} on {device} @ {ctx}",
            device=device, model=model, weights=weights,
            kv_type_k=k_type, kv_type_v=v_type, context=ctx, sequences=seqs, runtime=runtime,
            margin_mib=margin, ubatch=ubatch, flash_attn=flash,
            swa_full=bool(swa_full), kv_unified=kv_unified, text_only=text_only,
            goal=goal, gpu_layers=e.get("gpu_layers"), n_cpu_moe=e.get("n_cpu_moe") or 0, tp=e.get("tp"), pp=e.get("pp"),
            runtime_given="runtime" in e, draft=draft))
    return reqs


def run_requirements(reqs: list[Requirement]) -> list[Outcome]:
    from planner.planning.solver import evaluate
    from planner.runtimes.request import Plan

    from planner.readers.device_list import parse_device_spec

    out = []
    gib = 1024 ** 3
    for r in reqs:
        flash = r.flash_attn
        if isinstance(flash, bool):
            flash = "on" if flash else "off"
        dev, n_gpus = parse_device_spec(r.device)
        try:
            if r.weights.lower() == BEST:
                out.append(_best(r, dev, n_gpus))
                continue
            tp_pp = {"tp": r.tp or 1, "pp": r.pp or 1} if (r.tp or r.pp) else {}
            plan = Plan(model=r.model, weights=r.weights, runtime=r.runtime, kv_type_k=r.kv_type_k,
                        kv_type_v=r.kv_type_v, context=r.context, sequences=r.sequences, ubatch=r.ubatch,
                        flash_attn=flash, swa_full=r.swa_full, kv_unified=r.kv_unified, text_only=r.text_only,
                        gpus=n_gpus, n_gpu_layers=r.gpu_layers, n_cpu_moe=r.n_cpu_moe, draft=r.draft, **tp_pp)
            res = evaluate(plan, dev, int(r.margin_mib * MIB))
        except PlannerInputError as err:
            raise PlannerInputError(f"requirement '{r.name}': {err}") from None
        reason = (f"needs {res.needed / gib:.2f} GiB, budget {res.budget / gib:.2f} GiB "
                  f"(usable {res.device.usable_bytes / gib:.2f} GiB - margin {r.margin_mib:g} MiB); "
                  f"largest context that fits: {res.max_context}")
        out.append(Outcome(r, res, res.fits, reason))
    return out


def _best(r: Requirement, dev, n_gpus: int) -> Outcome:
    """weights: best: the best plan that fits (planner advise, limit 1); a fail names the closest miss."""
    from planner.measurement.kv_safety import verdicts
    from planner.model.formats import COMMON_FORMATS
    from planner.planning.advise import advise
    from planner.planning.solver import evaluate
    from planner.runtimes.request import Plan

    found = advise(r.device, [r.model], context=r.context, sequences=r.sequences,
                   runtime=r.runtime if r.runtime_given else None, goal=r.goal, limit=1,
                   kv_verdict=lambda m, k: verdicts(m).get(k, {}).get("verdict"))
    if found:
        a = found[0]
        res = evaluate(a.plan, dev, int(r.margin_mib * MIB))
        if res.fits:
            return Outcome(r, res, True, f"best plan ({r.goal}): {a.quality}; largest context {res.max_context}; "
                                         f"$ {a.command}", a.command)
    # nothing fits: report the runtime's most compact common format at the requirement
    w = COMMON_FORMATS[r.runtime][-1]
    res = evaluate(Plan(model=r.model, weights=w, runtime=r.runtime, context=r.context, sequences=r.sequences,
                        gpus=n_gpus), dev, int(r.margin_mib * MIB))
    gib = 1024 ** 3
    return Outcome(r, res, False, f"no plan fits (searched formats, KV types, ubatch, offload, runtimes); "
                                  f"the smallest {r.runtime} format {w} needs {res.needed / gib:.2f} GiB of "
                                  f"{res.budget / gib:.2f} GiB")


def write_junit(outcomes: list[Outcome], path: Path, source: Path) -> None:
    suite = ET.Element("testsuite", name=f"planner check {source}", tests=str(len(outcomes)),
                       failures=str(sum(not o.passed for o in outcomes)), errors="0", skipped="0")
    for o in outcomes:
        r = o.result
        case = ET.SubElement(suite, "testcase", classname=f"planner.{r.model.runtime}.{r.device.name}",
                             name=o.requirement.name, time="0")
        props = ET.SubElement(case, "properties")
        for k, v in (("needed_bytes", r.needed), ("budget_bytes", r.budget), ("max_context", r.max_context),
                     ("context", r.context), ("sequences", r.plan.sequences)):
            ET.SubElement(props, "property", name=k, value=str(v))
        if not o.passed:
            f = ET.SubElement(case, "failure", message=f"does not fit: {o.reason}", type="DoesNotFit")
            f.text = o.reason
        else:
            ET.SubElement(case, "system-out").text = o.reason
    tree = ET.ElementTree(ET.Element("testsuites"))
    tree.getroot().append(suite)
    ET.indent(tree)
    path = Path(path)
    # atomic: a reader never sees a half-written report, and a failed write leaves the old one
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            tree.write(f, encoding="utf-8", xml_declaration=True)
        os.replace(tmp, path)
    except OSError as err:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
        raise PlannerInputError(f"--junit {path}: cannot write: {err.strerror}") from None
