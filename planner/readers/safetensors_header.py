"""Safetensors headers and Hugging Face model folders -> plain data, without reading any weights.

Format (safetensors' docs/README "Format", enforced by the Rust crate safetensors/src/tensor.rs
`Metadata::validate` / `SafeTensors::read_metadata`): the first 8 bytes are a little-endian u64 N,
then N bytes of UTF-8 JSON mapping each tensor name to {"dtype", "shape", "data_offsets": [begin,
end]} (offsets relative to the byte after the header), plus an optional "__metadata__" map of
strings. The crate refuses N above 100,000,000 bytes (MAX_HEADER_SIZE), offsets that do not tile
the buffer contiguously from 0, a tensor whose end - begin differs from numel x dtype size, and a
buffer whose length is not the last end. This reader applies the same checks, reading only the 8
bytes and the header (bounded), so a folder of 50 GB of shards is read in milliseconds and a
broken or lying file gives one line naming the file and the field.

A model folder holds `model.safetensors`, or shards listed by `model.safetensors.index.json`
(`weight_map`: tensor -> shard file), or (MLX, some exporters) other *.safetensors files.
A Hub id (`google/gemma-4-26B-A4B-it`) resolves to the snapshot the Hugging Face cache holds
(huggingface_hub's layout: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub;
models--org--name/refs/main names the snapshot), offline.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from planner.errors import PlannerInputError

# safetensors/src/tensor.rs: `const MAX_HEADER_SIZE: usize = 100_000_000;`
MAX_HEADER_BYTES = 100_000_000
# A config.json / index file above this is not a config (the largest real index, DeepSeek V3's
# 163 shards x 90k tensors, is ~9 MB).
MAX_JSON_BYTES = 64 << 20

# Bits per element of every safetensors dtype (safetensors/src/tensor.rs `Dtype::bitsize`).
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}


@dataclass(frozen=True, slots=True)
class STensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    file: str               # shard file name


@dataclass(frozen=True)
class SafetensorsFile:
    path: Path
    header_bytes: int       # N: the JSON header's length (the file also has the 8-byte prefix)
    file_bytes: int
    tensors: tuple[STensor, ...]
    metadata: dict = field(default_factory=dict)


def tensor_nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    bits = DTYPE_BITS[dtype] * n
    return (bits + 7) // 8


def read_safetensors_header(path: Path, *, max_header: int = MAX_HEADER_BYTES) -> SafetensorsFile:
    """Every tensor's dtype, shape and byte length from one .safetensors file's header."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < 8:
                raise PlannerInputError(f"{path}: truncated safetensors file ({size} bytes; the header length alone is 8)")
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > max_header:
                raise PlannerInputError(f"{path}: safetensors header length {n:,} bytes is above the "
                                        f"{max_header:,}-byte limit safetensors itself enforces (not a safetensors file?)")
            if 8 + n > size:
                raise PlannerInputError(f"{path}: truncated safetensors file: header says {n:,} bytes of JSON, "
                                        f"the file has {size - 8:,} after the length")
            raw = fh.read(n)
    except OSError as e:
        raise PlannerInputError(f"{path}: cannot read: {e.strerror}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else "not UTF-8" if isinstance(e, UnicodeDecodeError) \
            else "nested too deeply"
        raise PlannerInputError(f"{path}: safetensors header is not valid JSON ({msg})") from None
    if not isinstance(header, dict):
        raise PlannerInputError(f"{path}: safetensors header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise PlannerInputError(f"{path}: safetensors __metadata__ is not a JSON object")
    buffer = size - 8 - n
    spans: list[tuple[int, int, str]] = []
    tensors: list[STensor] = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise PlannerInputError(f"{path}: tensor '{name}': header entry is not an object")
        dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
            raise PlannerInputError(f"{path}: tensor '{name}': unknown dtype {dtype!r}; allowed: {', '.join(DTYPE_BITS)}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise PlannerInputError(f"{path}: tensor '{name}': shape must be a list of non-negative integers, got {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
                or not 0 <= offs[0] <= offs[1]):
            raise PlannerInputError(f"{path}: tensor '{name}': data_offsets must be [begin, end] with 0 <= begin <= end, got {offs!r}")
        nbytes = tensor_nbytes(dtype, tuple(shape))
        if offs[1] - offs[0] != nbytes:
            raise PlannerInputError(f"{path}: tensor '{name}': data_offsets span {offs[1] - offs[0]:,} bytes but "
                                    f"{dtype} {tuple(shape)} needs {nbytes:,}")
        spans.append((offs[0], offs[1], name))
        tensors.append(STensor(name, dtype, tuple(shape), nbytes, path.name))
    spans.sort()
    pos = 0
    for b, e, name in spans:
        if b != pos:
            raise PlannerInputError(f"{path}: tensor '{name}': data starts at byte {b:,}, expected {pos:,} "
                                    "(safetensors tensors tile the buffer without gaps or overlaps)")
        pos = e
    if pos != buffer:
        what = "truncated" if pos > buffer else "has trailing bytes"
        raise PlannerInputError(f"{path}: safetensors file {what}: tensors end at byte {pos:,} of the data buffer, "
                                f"the file holds {buffer:,}")
    return SafetensorsFile(path, n, size, tuple(tensors), {str(k): str(v) for k, v in meta.items()})


def read_json(path: Path, what: str) -> dict:
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise PlannerInputError(f"{path}: {size:,} bytes is too large for a {what}")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise PlannerInputError(f"{path}: cannot read {what}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise PlannerInputError(f"{path}: {what} is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise PlannerInputError(f"{path}:{e.lineno}: malformed JSON in {what}: {e.msg}") from None
    except RecursionError:
        raise PlannerInputError(f"{path}: malformed JSON in {what}: nested too deeply") from None
    if not isinstance(data, dict):
        raise PlannerInputError(f"{path}: {what} must be a JSON object")
    return data


@dataclass(frozen=True)
class CheckpointFiles:
    """A model folder's config and safetensors headers (plain data)."""
    folder: Path
    config: dict
    files: tuple[SafetensorsFile, ...]
    index: str | None = None            # the index file name when sharded

    @property
    def tensors(self) -> tuple[STensor, ...]:
        return tuple(t for f in self.files for t in f.tensors)

    @property
    def safetensors_bytes(self) -> int:
        return sum(f.file_bytes for f in self.files)


def shard_names(folder: Path) -> tuple[list[str], str | None, dict | None]:
    """The safetensors files of a model folder, the index naming them and its checked weight_map (if any)."""
    for index_name in ("model.safetensors.index.json", "diffusion_pytorch_model.safetensors.index.json"):
        index = folder / index_name
        if index.is_file():
            data = read_json(index, "safetensors index")
            wm = data.get("weight_map")
            if not isinstance(wm, dict) or not wm or not all(isinstance(v, str) for v in wm.values()):
                raise PlannerInputError(f"{index}: 'weight_map' must map tensor names to shard file names")
            shards = list(dict.fromkeys(wm.values()))
            for s in shards:
                if "/" in s or "\\" in s or s.startswith("."):
                    raise PlannerInputError(f"{index}: weight_map names shard {s!r} outside the folder")
                if not (folder / s).is_file():
                    raise PlannerInputError(f"{index}: shard {s} is listed in weight_map but missing from {folder}")
            return shards, index_name, wm
    if (folder / "model.safetensors").is_file():
        return ["model.safetensors"], None, None
    return sorted(p.name for p in folder.glob("*.safetensors") if p.is_file()), None, None


def read_checkpoint(folder: Path) -> CheckpointFiles:
    """config.json plus every safetensors header of a model folder."""
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise PlannerInputError(f"--model: {folder} has no config.json (a Hugging Face model folder needs one)")
    config = read_json(cfg_path, "config.json")
    shards, index, wm = shard_names(folder)
    files = [read_safetensors_header(folder / s) for s in shards]
    if wm:
        have = {t.name: t.file for f in files for t in f.tensors}
        missing = [k for k, v in wm.items() if have.get(k) != v]
        if missing:
            raise PlannerInputError(f"{folder / index}: weight_map lists '{missing[0]}' in {wm[missing[0]]}, "
                                    f"but that shard's header does not hold it ({len(missing)} such entries)")
    return CheckpointFiles(folder, config, tuple(files), index)


def hf_cache_dirs() -> list[Path]:
    """Where huggingface_hub keeps downloaded repos (huggingface_hub/constants.py: HF_HUB_CACHE,
    default $HF_HOME/hub, HF_HOME default $XDG_CACHE_HOME/huggingface or ~/.cache/huggingface)."""
    out: list[Path] = []
    if os.environ.get("HF_HUB_CACHE"):
        out.append(Path(os.environ["HF_HUB_CACHE"]).expanduser())
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        out.append(Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser())
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    out.append(Path(home).expanduser() / "hub")
    return list(dict.fromkeys(out))


def looks_like_hub_id(s: str) -> bool:
    parts = s.split("/")
    return (len(parts) == 2 and all(parts) and not s.startswith((".", "/", "~"))
            and not s.endswith((".json", ".gguf", ".safetensors")))


def resolve_hub_id(repo_id: str, revision: str = "main") -> Path:
    """The cached snapshot folder of a Hub model id, offline; one clear line when it is not cached."""
    looked = []
    for cache in hf_cache_dirs():
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        looked.append(str(repo))
        if not repo.is_dir():
            continue
        ref = repo / "refs" / revision
        snaps = repo / "snapshots"
        if ref.is_file():
            snap = snaps / ref.read_text().strip()
            if (snap / "config.json").is_file():
                return snap
        cands = sorted((p for p in snaps.glob("*") if (p / "config.json").is_file()),
                       key=lambda p: p.stat().st_mtime, reverse=True) if snaps.is_dir() else []
        if cands:
            return cands[0]
    raise PlannerInputError(f"--model: '{repo_id}' is not a catalogue name and is not in the local Hugging Face "
                            f"cache (looked in {', '.join(looked)}); download it (`hf download {repo_id}`) or pass "
                            "a model folder")
