"""Writes the precomputed weight table that planner.readers.weights_table consults.

Rebuild after changing profiles or formats: `python -m planner.runtimes.weights_table_build`.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from planner.model.formats import format_names, get_format
from planner.model.resolve import load_profile
from planner.readers.catalogue import catalogue_files
from planner.readers.weights_table import (
    cache_path,
    layers_path,
    server_compute_path,
    clear,
    code_hash,
    profile_hash,
    table_key,
)
from planner.readers.yamlio import load_yaml


def compute_entry(spec, fmt, vision: bool, audio: bool) -> dict:
    from planner.runtimes.base import _weight_bytes_by_role_uncached
    from planner.runtimes.llamacpp import _alignment_padding_uncached

    from planner.runtimes.artifact import file_entry

    roles = _weight_bytes_by_role_uncached(spec, fmt, vision, audio)
    entry = {"roles": [list(r) for r in roles], "file": file_entry(spec, fmt, vision or audio)}
    if fmt.family in ("gguf", "float") and not (vision or audio):
        entry["padding"] = _alignment_padding_uncached(spec, fmt)
    if fmt.family in ("gguf", "float") and not (vision or audio):
        from planner.runtimes.llamacpp import _cpu_repack_bytes_uncached

        try:
            entry["repack"] = {isa: _cpu_repack_bytes_uncached(spec, fmt.name, isa) for isa in ("x86", "arm")}
        except (ValueError, KeyError):
            pass
    if fmt.family in ("gguf", "float") and not (vision or audio):
        # per-layer bytes for llama.cpp placement (-ngl, --n-cpu-moe, layer split)
        from planner.runtimes.placement import layer_bytes_uncached

        lb = layer_bytes_uncached(spec, fmt.name)
        entry["_layers"] = {"layers": {r: list(v) for r, v in lb.layers.items()},
                            "experts": {r: list(v) for r, v in lb.experts.items()},
                            "max_tensor": list(lb.max_tensor), "max_expert": list(lb.max_expert)}
    if fmt.family == "float" and not (vision or audio):
        # llama.cpp's F32/F16/BF16 GGUF keeps norms and the router in F32 (convert_hf_to_gguf)
        from planner.runtimes.llamacpp import _float_gguf_roles

        roles_g, types_g, pad_g = _float_gguf_roles(spec, fmt.name)
        entry["gguf_float"] = {"roles": roles_g, "types": {r: sorted(t) for r, t in types_g.items()}, "padding": pad_g}
    return entry


def server_compute_entries() -> dict:
    """llama-server's Gemma 4 target compute buffers, ggml-alloc replayed for every setting of
    llamacpp.replay_keys, as closed forms (llamacpp.replay_segments)."""
    from planner.runtimes.llamacpp import REPLAY_ARCHS, replay_keys, replay_segments

    out = {}
    for name, file in catalogue_files().items():
        spec = load_profile(name)
        if spec.arch not in REPLAY_ARCHS:
            continue
        out[name] = {"profile_hash": profile_hash(str(file)),
                     "keys": {k: replay_segments(spec, k) for k in replay_keys(spec)}}
    return out


def rebuild(path: Path | None = None) -> int:
    entries, layer_entries = {}, {}
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
                per_layer = e.pop("_layers", None)
                if per_layer is not None:
                    per_layer["profile_hash"] = e["profile_hash"]
                    layer_entries[table_key(spec.name, fmt_name, v, a)] = per_layer
                entries[table_key(spec.name, fmt_name, v, a)] = e
    out = path or cache_path()
    _write_json(out, {"code_hash": code_hash(), "entries": entries})
    _write_json(out.parent / layers_path().name, {"code_hash": code_hash(), "entries": layer_entries})
    _write_json(out.parent / server_compute_path().name, {"code_hash": code_hash(), "entries": server_compute_entries()})
    parsed = {name: {"hash": profile_hash(str(file)), "data": load_yaml(file, "model profile")}
              for name, file in catalogue_files().items()}
    _write_json(out.parent / "profiles.json", parsed)
    clear()
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
