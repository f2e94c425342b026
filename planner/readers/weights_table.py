"""The precomputed table of catalogue weight bytes, consulted so `planner fit` starts fast.

Choosing llama.cpp's per-tensor types walks every tensor (about 5 ms per model and format);
listing the catalogue would spend a second on it. The table (profiles/derived/weight_bytes.json)
holds, per (profile, format, encoders), the bytes per role, the GGUF alignment padding and the
CPU_REPACK bytes, keyed by a hash of the profile file and of the code that computes them: an entry
whose profile or code changed is ignored and recomputed by the caller, so the table can be stale
only in speed, never in value. It is data: this module reads it and imports nothing above the
readers; `python -m planner.runtimes.weights_table_build` writes it, and tests/test_weights_cache.py
recomputes every entry and compares.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from planner.readers.catalogue import profile_digest
from planner.resources import profiles_dir

# The code whose results the table stores: a change to any of these files invalidates it.
CODE_FILES = ("model/formats.py", "model/gguf_mix.py", "model/inventory.py", "model/encoders.py", "model/spec.py",
              "model/tensors.py", "runtimes/llamacpp.py", "runtimes/placement.py", "runtimes/artifact.py",
              "runtimes/ggml_alloc.py")


def cache_path() -> Path:
    return profiles_dir() / "derived" / "weight_bytes.json"


@lru_cache(maxsize=1)
def code_hash() -> str:
    h = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent
    for name in CODE_FILES:
        h.update((package / name).read_bytes())
    return h.hexdigest()[:16]


def profile_hash(path: str) -> str:
    return profile_digest(path)


def layers_path() -> Path:
    """Per-layer bytes for llama.cpp placement, a separate file so `fit` does not parse it."""
    return profiles_dir() / "derived" / "layer_bytes.json"


def _table(layers: bool = False) -> dict:
    return _derived(layers_path() if layers else cache_path())


@lru_cache(maxsize=3)
def _derived(path: Path) -> dict:
    """The entries of a precomputed table in profiles/derived, {} when missing or made by other code."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if data.get("code_hash") != code_hash():
        return {}
    return data.get("entries", {})


def table_key(name: str, fmt: str, vision: bool, audio: bool) -> str:
    return f"{name}|{fmt}|{int(vision)}{int(audio)}"


def lookup(spec, fmt_name: str, vision: bool, audio: bool, layers: bool = False) -> dict | None:
    """The cached entry for a catalogue spec, or None (not a catalogue profile, or stale).
    layers=True: the per-layer entry (layer_bytes.json)."""
    entry = _table(layers).get(table_key(spec.name, fmt_name, vision, audio))
    return entry if _fresh(spec, entry) else None


def _fresh(spec, entry: dict | None) -> bool:
    """An entry made from this catalogue profile as it is now (a spec read from elsewhere has none)."""
    src = spec.source
    if not entry or not src or not src.endswith(".yaml"):
        return False
    try:
        return entry["profile_hash"] == profile_hash(src)
    except OSError:
        return False


def server_compute_path() -> Path:
    """llama-server's Gemma 4 target compute buffers, ggml-alloc replayed (planner/runtimes/ggml_alloc.py)
    and stored as closed forms per (profile, ubatch, outputs, flash attention, cache rotation,
    sliding cap): the replay is never run on the `fit` path."""
    return profiles_dir() / "derived" / "server_compute.json"


def server_compute_lookup(spec, key: str) -> list | None:
    """The stored closed form of a catalogue target's replayed compute buffer, or None (not a
    catalogue profile, a setting not in the table, or stale)."""
    entry = _derived(server_compute_path()).get(spec.name)
    return entry["keys"].get(key) if _fresh(spec, entry) else None


def clear() -> None:
    _derived.cache_clear()
