"""A precomputed table of catalogue weight bytes, so `planner fit` starts fast.

Choosing llama.cpp's per-tensor types walks every tensor (about 5 ms per model and format);
listing the catalogue would spend a second on it. The table holds, per (profile, format,
encoders), the bytes per role and the GGUF alignment padding, keyed by a hash of the profile
file and of the code that computes them: an entry whose profile or code changed is ignored and
recomputed, so the table can be stale only in speed, never in value. tests/test_weights_cache.py
recomputes every entry and compares.

Rebuild after changing profiles or formats: `python -m planner.weights_cache`.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

_CODE_FILES = ("formats.py", "gguf_mix.py", "inventory.py", "encoders.py", "spec.py", "tensors.py",
               "runtimes/llamacpp.py")


def cache_path() -> Path:
    from planner.catalog import profiles_dir

    return profiles_dir() / "derived" / "weight_bytes.json"


@lru_cache(maxsize=1)
def code_hash() -> str:
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _CODE_FILES:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def profile_hash(path: str) -> str:
    from planner.catalog import profile_digest

    return profile_digest(path)


@lru_cache(maxsize=1)
def _table() -> dict:
    try:
        data = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    if data.get("code_hash") != code_hash():
        return {}
    return data.get("entries", {})


def _key(name: str, fmt: str, vision: bool, audio: bool) -> str:
    return f"{name}|{fmt}|{int(vision)}{int(audio)}"


def lookup(spec, fmt_name: str, vision: bool, audio: bool) -> dict | None:
    """The cached entry for a catalogue spec, or None (not a catalogue profile, or stale)."""
    src = spec.source
    if not src or not src.endswith(".yaml"):
        return None
    entry = _table().get(_key(spec.name, fmt_name, vision, audio))
    if not entry:
        return None
    try:
        if entry["profile_hash"] != profile_hash(src):
            return None
    except OSError:
        return None
    return entry


def compute_entry(spec, fmt, vision: bool, audio: bool) -> dict:
    from planner.runtimes.base import _weight_bytes_by_role_uncached
    from planner.runtimes.llamacpp import _alignment_padding_uncached

    roles = _weight_bytes_by_role_uncached(spec, fmt, vision, audio)
    entry = {"roles": [list(r) for r in roles]}
    if fmt.family in ("gguf", "float") and not (vision or audio):
        entry["padding"] = _alignment_padding_uncached(spec, fmt)
    if fmt.family in ("gguf", "float") and not (vision or audio):
        from planner.runtimes.llamacpp import _cpu_repack_bytes_uncached

        try:
            entry["repack"] = {isa: _cpu_repack_bytes_uncached(spec, fmt.name, isa) for isa in ("x86", "arm")}
        except (ValueError, KeyError):
            pass
    if fmt.family == "float" and not (vision or audio):
        # llama.cpp's F32/F16/BF16 GGUF keeps norms and the router in F32 (convert_hf_to_gguf)
        from planner.runtimes.llamacpp import _float_gguf_roles

        roles_g, types_g, pad_g = _float_gguf_roles(spec, fmt.name)
        entry["gguf_float"] = {"roles": roles_g, "types": {r: sorted(t) for r, t in types_g.items()}, "padding": pad_g}
    return entry


def rebuild(path: Path | None = None) -> int:
    from planner.catalog import catalogue_files, load_profile
    from planner.formats import format_names, get_format

    entries = {}
    for name, file in catalogue_files().items():
        spec = load_profile(name)
        has_v = bool(spec.config.get("vision_config"))
        has_a = bool(spec.config.get("audio_config"))
        variants = {(False, False), (has_v, has_a)}
        for fmt_name in format_names():
            fmt = get_format(fmt_name)
            for v, a in sorted(variants):
                try:
                    e = compute_entry(spec, fmt, v, a)
                except Exception:  # noqa: BLE001 (a format that cannot hold this model is left out)
                    continue
                e["profile_hash"] = profile_hash(str(file))
                entries[_key(spec.name, fmt_name, v, a)] = e
    out = path or cache_path()
    _write_json(out, {"code_hash": code_hash(), "entries": entries})
    from planner.catalog import load_yaml

    parsed = {name: {"hash": profile_hash(str(file)), "data": load_yaml(file, "model profile")}
              for name, file in catalogue_files().items()}
    _write_json(out.parent / "profiles.json", parsed)
    _table.cache_clear()
    return len(entries)


def _write_json(out: Path, data: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, separators=(",", ":"), sort_keys=True)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)


if __name__ == "__main__":
    n = rebuild(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    print(f"wrote {n} entries to {cache_path()}")
