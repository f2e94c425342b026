"""Devices: how much memory an inference process can really use, and how fast it reads it.

The catalogue lives in `profiles/devices.yaml` (packaged as `planner/profiles/devices.yaml` in a
wheel). Besides its names and aliases, `--device` takes `auto` (the first NVIDIA GPU, read through
NVML) and a bare size such as `12gb`, `10.5GiB` or `8192MiB`.

This module is on the CLI's fast path: it imports only the standard library and PyYAML. NVML
(`pynvml`, from the nvidia-ml-py package) is imported inside `detect_local_gpu()` only.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from planner.errors import PlannerInputError, shorten, unknown_name
from planner.readers.yamlio import parse_yaml, read_text

# Kinds a devices.yaml entry may have; "custom" is only made by get_device() for a bare size.
KINDS = ("gpu", "class", "unified", "phone", "sbc", "jetson", "cpu")
CUSTOM_KIND = "custom"

_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "aliases": (list,),
    "kind": (str,),
    "memory_bytes": (int,),
    "usable_bytes": (int,),
    "usable_why": (str,),
    "bandwidth_gbps": (int, float),
    "peak_dense_tflops_bf16": (int, float),
    "source": (str,),
    "notes": (str,),
}
# Optional entry fields: budget_rule names an entry of the catalogue's `budget_rules:` section (the platform
# rule that produced usable_bytes); without it the kind's default rule applies.
_OPTIONAL_FIELDS: dict[str, tuple[type, ...]] = {"budget_rule": (str,)}
DEFAULT_RULE_BY_KIND = {"gpu": "nvidia-driver-reserve", "class": "nvidia-driver-reserve", "unified": "metal-working-set",
                        "phone": "android-lmkd", "sbc": "os-reserve", "jetson": "jetson-carveout", "cpu": "os-reserve"}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
# A bare size: "12gb", "10.5 GiB", "8192MiB", "1tb". GB means GiB here: GPU memory sold as "12 GB" is 12 GiB.
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(t|tb|tib|g|gb|gib|m|mb|mib)\s*$", re.IGNORECASE)
_UNIT_BYTES = {"t": 2**40, "g": 2**30, "m": 2**20}
MAX_DEVICE_BYTES = 2**50   # 1 PiB: far above any single device or unified-memory machine


@dataclass(frozen=True)
class Device:
    name: str
    aliases: tuple[str, ...]
    kind: str
    memory_bytes: int
    usable_bytes: int
    usable_why: str
    bandwidth_gbps: float
    peak_dense_tflops_bf16: float
    source: str
    notes: str
    budget_rule: str = ""           # id of the platform rule behind usable_bytes (devices.yaml budget_rules)
    budget_rule_summary: str = ""   # that rule in one line, for the output

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["aliases"] = list(self.aliases)
        return d

    @property
    def budget_line(self) -> str:
        """'<rule>: <summary>' as fit/breakdown/devices print it."""
        return f"{self.budget_rule}: {self.budget_rule_summary}" if self.budget_rule_summary else self.budget_rule


@dataclass(frozen=True)
class BudgetRule:
    """One platform rule from the `budget_rules:` section of devices.yaml: what limits a process's memory."""

    name: str
    summary: str
    source: str


@dataclass(frozen=True)
class Overhead:
    """One documented constant from the `overheads:` section of devices.yaml."""

    name: str
    value: float | int
    source: str
    why: str


@dataclass(frozen=True)
class _Catalogue:
    path: Path
    devices: dict[str, Device]          # by name, in file order
    index: dict[str, str]               # lower-cased name or alias -> name
    overheads: dict[str, Overhead]
    rules: dict[str, BudgetRule]


def default_devices_path() -> Path:
    """profiles/devices.yaml as shipped (planner.resources)."""
    from planner.resources import profiles_dir

    return profiles_dir() / "devices.yaml"


def load_devices(path: Path | None = None) -> dict[str, Device]:
    """All catalogue devices by name (file order). The parse is cached per file."""
    return dict(_catalogue(path).devices)


def load_overheads(path: Path | None = None) -> dict[str, Overhead]:
    return dict(_catalogue(path).overheads)


def load_budget_rules(path: Path | None = None) -> dict[str, BudgetRule]:
    return dict(_catalogue(path).rules)


def device_names(path: Path | None = None) -> list[str]:
    return sorted(_catalogue(path).devices)


def cuda_context_bytes(path: Path | None = None) -> int:
    """Device memory a CUDA context takes before the first allocation (overheads.cuda_context_bytes)."""
    cat = _catalogue(path)
    oh = cat.overheads.get("cuda_context_bytes")
    if oh is None:
        raise PlannerInputError(f"{cat.path}: overheads: missing 'cuda_context_bytes'")
    return int(oh.value)


def get_device(name: str, path: Path | None = None) -> Device:
    """A catalogue device by name or alias (case-insensitive), `auto`, or a bare size such as `12gb`."""
    key = name.strip().lower()
    if key == "auto":
        return detect_local_gpu(path)
    cat = _catalogue(path)
    if key in cat.index:
        return cat.devices[cat.index[key]]
    size = parse_size(name)
    if size is not None:
        return _custom_device(name.strip(), size, cat)
    raise unknown_name("device", name, sorted(cat.devices), flag="--device")


def parse_size(text: str, flag: str = "--device") -> int | None:
    """Bytes of a bare size ("12gb", "10.5 GiB", "8192MiB", "1tb"; GB means GiB), None when the text
    is not one; one clear line naming `flag` for a size larger than any device."""
    m = _SIZE_RE.match(text.strip().lower())
    if not m:
        return None
    number, unit = m.group(1), m.group(2).lower()
    too_big = PlannerInputError(f"{flag}: size '{shorten(text.strip(), 40)}' is larger than {MAX_DEVICE_BYTES >> 40} "
                                "TiB; no device has that much memory (give e.g. 12gb, 80gb, 1.5tb)")
    if len(number) > 12:     # 10**12 GB: and int() refuses numbers of more than 4,300 digits
        raise too_big
    size = int(Fraction(number) * _UNIT_BYTES[unit[0]])
    if size > MAX_DEVICE_BYTES:
        raise too_big
    return size


def detect_local_gpu(path: Path | None = None) -> Device:
    """The first NVIDIA GPU as NVML sees it now; usable_bytes is its free memory at the time of the call."""
    def fail(reason: str) -> PlannerInputError:
        return PlannerInputError(
            f"--device auto: no NVIDIA GPU found (NVML: {reason}); name a device, e.g. --device 8gb-gpu")

    try:
        import pynvml  # noqa: PLC0415 (NVML is only needed for --device auto)
    except ImportError:
        raise fail("the nvidia-ml-py package (module pynvml) is not installed") from None
    try:
        pynvml.nvmlInit()
    except Exception as e:  # pynvml.NVMLError and its subclasses; also OSError from a broken driver
        raise fail(str(e) or type(e).__name__) from None
    try:
        count = pynvml.nvmlDeviceGetCount()
        if count < 1:
            raise fail("0 devices")
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        gpu_name = pynvml.nvmlDeviceGetName(handle)
        if isinstance(gpu_name, bytes):
            gpu_name = gpu_name.decode(errors="replace")
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
        total, free = int(mem.total), int(mem.free)
    except PlannerInputError:
        raise
    except Exception as e:
        raise fail(str(e) or type(e).__name__) from None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 (shutting NVML down must not hide the real result)
            pass
    if total <= 0:
        raise fail(f"GPU 0 ({gpu_name}) reports no memory")

    cat = _catalogue(path)
    match = cat.index.get(gpu_name.strip().lower())
    ref = cat.devices[match] if match else _nearest_class(cat, total)
    if match:
        perf_note = f"NVML name matches catalogue entry '{ref.name}'; bandwidth and FLOPs are taken from it."
    elif ref is not None:
        perf_note = (f"'{gpu_name}' is not in the catalogue: bandwidth and FLOPs are borrowed from "
                     f"'{ref.name}' (closest memory class), so treat speed estimates as rough.")
    else:
        perf_note = "No catalogue entry to borrow bandwidth and FLOPs from: they are unknown (0)."
    return Device(
        name="auto",
        aliases=(),
        kind="gpu",
        memory_bytes=total,
        usable_bytes=min(free, total),
        usable_why=(f"free memory NVML reported for GPU 0 ({gpu_name}) at the time of the call "
                    f"({free} of {total} bytes); other processes' use is already excluded, and the "
                    f"inference process's own CUDA context (~512 MiB) will still come out of it"),
        bandwidth_gbps=ref.bandwidth_gbps if ref else 0.0,
        peak_dense_tflops_bf16=ref.peak_dense_tflops_bf16 if ref else 0.0,
        source="NVML (nvidia-ml-py) on this machine",
        notes=f"Detected {gpu_name} ({count} NVIDIA GPU(s) present; the first is used). {perf_note}",
        budget_rule="nvml-free",
        budget_rule_summary="free memory NVML reports for GPU 0 now (other processes excluded)",
    )


# ---------------------------------------------------------------------------------------------
# Parsing


def _catalogue(path: Path | None) -> _Catalogue:
    p = Path(path).expanduser() if path is not None else default_devices_path()
    return _load_catalogue(str(p.resolve()) if p.exists() else str(p))


@lru_cache(maxsize=8)
def _load_catalogue(path_str: str) -> _Catalogue:
    path = Path(path_str)
    text = read_text(path, "device catalogue")
    data = parse_yaml(text, str(path))
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
        raise PlannerInputError(f"{path}: a device catalogue needs a top-level 'devices:' list")
    lines = _LineFinder(text, loader)
    rules = _parse_rules(data.get("budget_rules", {}), path)
    devices: dict[str, Device] = {}
    index: dict[str, str] = {}
    for i, entry in enumerate(data["devices"]):
        dev = _parse_entry(entry, i, path, lines, rules)
        for key in (dev.name, *dev.aliases):
            k = key.lower()
            if k in index:
                raise PlannerInputError(
                    f"{_where(path, lines, i)}: devices[{i}] ({dev.name}): name or alias '{key}' is already "
                    f"used by '{index[k]}'")
            if k == "auto" or _SIZE_RE.match(k):
                raise PlannerInputError(
                    f"{_where(path, lines, i)}: devices[{i}] ({dev.name}): '{key}' is reserved "
                    f"(auto and bare sizes such as 12gb have their own meaning)")
            index[k] = dev.name
        devices[dev.name] = dev
    overheads = _parse_overheads(data.get("overheads", {}), path)
    return _Catalogue(path=path, devices=devices, index=index, overheads=overheads, rules=rules)


class _LineFinder:
    """Line numbers of the devices[] entries, worked out only when an error needs one."""

    def __init__(self, text: str, loader: Any) -> None:
        self._text, self._loader, self._lines = text, loader, None

    def line(self, i: int) -> int | None:
        if self._lines is None:
            self._lines = []
            try:
                root = yaml.compose(self._text, Loader=self._loader)
            except yaml.YAMLError:
                root = None
            if isinstance(root, yaml.MappingNode):
                for k, v in root.value:
                    if getattr(k, "value", None) == "devices" and isinstance(v, yaml.SequenceNode):
                        self._lines = [item.start_mark.line + 1 for item in v.value]
        return self._lines[i] if i < len(self._lines) else None


def _where(path: Path, lines: _LineFinder, i: int) -> str:
    line = lines.line(i)
    return f"{path}:{line}" if line else str(path)


def _parse_entry(entry: object, i: int, path: Path, lines: _LineFinder, rules: dict[str, BudgetRule]) -> Device:
    if not isinstance(entry, dict):
        raise PlannerInputError(f"{_where(path, lines, i)}: devices[{i}]: expected a mapping of fields, "
                                f"got {type(entry).__name__}")
    label = f"devices[{i}] ({entry.get('name', '?')})"

    def bad(msg: str) -> PlannerInputError:
        return PlannerInputError(f"{_where(path, lines, i)}: {label}: {msg}")

    for field, types in _FIELDS.items():
        if field not in entry:
            raise bad(f"missing field '{field}'")
        val = entry[field]
        if isinstance(val, bool) or not isinstance(val, types):
            want = " or ".join(t.__name__ for t in types)
            raise bad(f"field '{field}' must be {want}, got {type(val).__name__} ({val!r})")
    for field, types in _OPTIONAL_FIELDS.items():
        if field in entry and (isinstance(entry[field], bool) or not isinstance(entry[field], types)):
            raise bad(f"field '{field}' must be {types[0].__name__}, got {type(entry[field]).__name__} ({entry[field]!r})")
    unknown = sorted(set(entry) - set(_FIELDS) - set(_OPTIONAL_FIELDS))
    if unknown:
        raise bad(f"unknown field(s): {', '.join(unknown)}")

    name = entry["name"].strip()
    if not _NAME_RE.match(name):
        raise bad(f"field 'name' must be a lower-case id (letters, digits, '-', '.'), got {name!r}")
    aliases: list[str] = []
    for a in entry["aliases"]:
        if isinstance(a, bool) or not isinstance(a, (str, int)):
            raise bad(f"field 'aliases' must hold strings, got {type(a).__name__} ({a!r})")
        a = str(a).strip()
        if not a:
            raise bad("field 'aliases' holds an empty string")
        aliases.append(a)
    if entry["kind"] not in KINDS:
        raise bad(f"field 'kind' must be one of {', '.join(KINDS)}, got {entry['kind']!r}")
    memory, usable = entry["memory_bytes"], entry["usable_bytes"]
    if memory <= 0:
        raise bad(f"field 'memory_bytes' must be positive, got {memory}")
    if not 0 < usable <= memory:
        raise bad(f"field 'usable_bytes' must be in (0, memory_bytes={memory}], got {usable}")
    for field in ("bandwidth_gbps", "peak_dense_tflops_bf16"):
        if not entry[field] > 0:
            raise bad(f"field '{field}' must be positive, got {entry[field]}")
    for field in ("usable_why", "source"):
        if not entry[field].strip():
            raise bad(f"field '{field}' is empty")
    return Device(
        name=name,
        aliases=tuple(aliases),
        kind=entry["kind"],
        memory_bytes=memory,
        usable_bytes=usable,
        usable_why=entry["usable_why"].strip(),
        bandwidth_gbps=float(entry["bandwidth_gbps"]),
        peak_dense_tflops_bf16=float(entry["peak_dense_tflops_bf16"]),
        source=entry["source"].strip(),
        notes=entry["notes"].strip(),
        **_rule_fields(entry.get("budget_rule") or DEFAULT_RULE_BY_KIND[entry["kind"]], rules, bad),
    )


def _rule_fields(rule: str, rules: dict[str, BudgetRule], bad) -> dict[str, str]:
    rule = rule.strip()
    if rules and rule not in rules:
        raise bad(f"field 'budget_rule' must name an entry of budget_rules ({', '.join(sorted(rules))}), got {rule!r}")
    return {"budget_rule": rule, "budget_rule_summary": rules[rule].summary if rule in rules else ""}


def _parse_rules(raw: object, path: Path) -> dict[str, BudgetRule]:
    if not isinstance(raw, dict):
        raise PlannerInputError(f"{path}: budget_rules: expected a mapping, got {type(raw).__name__}")
    out: dict[str, BudgetRule] = {}
    for name, item in raw.items():
        where = f"{path}: budget_rules.{name}"
        if not isinstance(item, dict) or not all(isinstance(item.get(f), str) and item[f].strip()
                                                 for f in ("summary", "source")):
            raise PlannerInputError(f"{where}: expected a mapping with non-empty 'summary' and 'source' strings")
        out[str(name)] = BudgetRule(str(name), " ".join(item["summary"].split()), " ".join(item["source"].split()))
    return out


def _parse_overheads(raw: object, path: Path) -> dict[str, Overhead]:
    if not isinstance(raw, dict):
        raise PlannerInputError(f"{path}: overheads: expected a mapping, got {type(raw).__name__}")
    out: dict[str, Overhead] = {}
    for name, item in raw.items():
        where = f"{path}: overheads.{name}"
        if not isinstance(item, dict):
            raise PlannerInputError(f"{where}: expected a mapping with value, source and why")
        for field in ("value", "source", "why"):
            if field not in item:
                raise PlannerInputError(f"{where}: missing field '{field}'")
        value = item["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PlannerInputError(f"{where}: field 'value' must be a number, got {type(value).__name__}")
        if not isinstance(item["source"], str) or not isinstance(item["why"], str):
            raise PlannerInputError(f"{where}: fields 'source' and 'why' must be strings")
        out[str(name)] = Overhead(name=str(name), value=value, source=item["source"], why=item["why"])
    return out


# ---------------------------------------------------------------------------------------------
# Custom sizes


def _nearest_class(cat: _Catalogue, size: int) -> Device | None:
    """The largest memory class no bigger than `size` (else the smallest class)."""
    classes = sorted((d for d in cat.devices.values() if d.kind == "class"), key=lambda d: d.memory_bytes)
    if not classes:
        return None
    fitting = [d for d in classes if d.memory_bytes <= size]
    return fitting[-1] if fitting else classes[0]


def _custom_device(given: str, size: int, cat: _Catalogue) -> Device:
    reserve_oh = cat.overheads.get("nvidia_driver_reserved_bytes")
    if reserve_oh is None:
        raise PlannerInputError(f"{cat.path}: overheads: missing 'nvidia_driver_reserved_bytes' (needed for --device {given})")
    ctx = int(reserve_oh.value)
    if size <= ctx:
        raise PlannerInputError(
            f"--device: size '{given}' ({size} bytes) is not larger than the driver-reserved memory alone ({ctx} bytes)")
    ref = _nearest_class(cat, size)
    return Device(
        name=given.lower().replace(" ", ""),
        aliases=(),
        kind=CUSTOM_KIND,
        memory_bytes=size,
        usable_bytes=size - ctx,
        usable_why=(f"custom size {given} = {size} bytes (GB and GiB both read as 2**30 bytes) minus "
                    f"driver-reserved memory overheads.nvidia_driver_reserved_bytes ({ctx} bytes), as the N GiB "
                    f"class entries; the runtime's CUDA context is counted per runtime"),
        bandwidth_gbps=ref.bandwidth_gbps if ref else 0.0,
        peak_dense_tflops_bf16=ref.peak_dense_tflops_bf16 if ref else 0.0,
        source=ref.source if ref else "user-supplied size",
        notes=(f"User-supplied size. Bandwidth and FLOPs are borrowed from '{ref.name}' ({ref.notes})"
               if ref else "User-supplied size; bandwidth and FLOPs unknown (0)."),
        budget_rule="custom-size",
        budget_rule_summary=f"the size given ({given}) minus {ctx} bytes of NVIDIA driver-reserved memory",
    )
