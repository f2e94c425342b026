"""Where models come from: catalogue profiles, Hugging Face config.json files, GGUF files."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import yaml

from planner.errors import PlannerInputError, unknown_name
from planner.spec import ModelSpec, spec_from_hf_config


def profiles_dir() -> Path:
    """profiles/ beside the package in a checkout, or packaged inside it in a wheel."""
    here = Path(__file__).resolve().parent
    for cand in (here / "profiles", here.parent / "profiles"):
        if (cand / "models").is_dir():
            return cand
    raise PlannerInputError(f"profiles directory not found next to {here}")


_FAMILY_ORDER = ("gemma-4-", "gemma-3n-", "gemma-3-")


def _catalogue_order(p: Path) -> tuple:
    name = p.stem.lower()
    fam = next((i for i, f in enumerate(_FAMILY_ORDER) if name.startswith(f)), len(_FAMILY_ORDER))
    return (fam, name.endswith("-assistant"), name)


@lru_cache(maxsize=1)
def catalogue_files() -> dict[str, Path]:
    """Catalogue profiles, Gemma 4 first, drafters after their targets."""
    return {p.stem.lower(): p for p in sorted((profiles_dir() / "models").glob("*.yaml"), key=_catalogue_order)}


def model_names() -> list[str]:
    return list(catalogue_files())


def load_yaml(path: Path, what: str = "file") -> object:
    try:
        text = path.read_text()
    except OSError as e:
        raise PlannerInputError(f"{path}: cannot read {what}: {e.strerror}") from None
    try:
        # libyaml's C loader when present: the pure-Python scanner is most of a cold start
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise PlannerInputError(f"{where}: malformed YAML: {problem}") from None


@lru_cache(maxsize=1)
def _parsed_profiles() -> dict:
    """Profiles already parsed to JSON by `python -m planner.weights_cache` (json.loads is ~20x
    faster than YAML); each entry is used only if its file's hash still matches."""
    try:
        return json.loads((profiles_dir() / "derived" / "profiles.json").read_text())
    except (OSError, ValueError):
        return {}


@lru_cache(maxsize=64)
def profile_digest(path: str) -> str:
    """Content hash of a profile file: keys the parsed-profile and weight-bytes tables."""
    import hashlib

    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError as e:
        raise PlannerInputError(f"{path}: cannot read model profile: {e.strerror}") from None


def _profile_data(path: Path) -> object:
    cached = _parsed_profiles().get(path.stem.lower())
    if cached and cached.get("hash") == profile_digest(str(path)):
        return cached["data"]
    return load_yaml(path, "model profile")


@lru_cache(maxsize=64)
def load_profile(name: str) -> ModelSpec:
    files = catalogue_files()
    key = name.lower()
    if key not in files:
        raise unknown_name("model", name, list(files), flag="--model")
    path = files[key]
    data = _profile_data(path)
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise PlannerInputError(f"{path}: a model profile needs a 'config' mapping (the Hugging Face config)")
    for field in ("name", "max_context", "sources"):
        if field not in data:
            raise PlannerInputError(f"{path}: missing field '{field}'")
    return spec_from_hf_config(
        data["config"], name=str(data["name"]), source=str(path), max_context=int(data["max_context"]),
        published={"published": data.get("published", {}), "hf_id": data.get("hf_id"),
                   "sources": data.get("sources", [])},
    )


def load_config_json(path: Path) -> ModelSpec:
    cfg_path = path / "config.json" if path.is_dir() else path
    try:
        cfg = json.loads(cfg_path.read_text())
    except OSError as e:
        raise PlannerInputError(f"{cfg_path}: cannot read: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise PlannerInputError(f"{cfg_path}:{e.lineno}: malformed JSON: {e.msg}") from None
    name = path.name if path.is_dir() else (cfg_path.parent.name or cfg_path.stem)
    return spec_from_hf_config(cfg, name=name, source=str(cfg_path))


def resolve_model(name_or_path: str) -> ModelSpec:
    """A catalogue name (case-insensitive), a config.json / model folder, or a GGUF file."""
    key = name_or_path.strip()
    if key.lower() in catalogue_files():
        return load_profile(key.lower())
    p = Path(key).expanduser()
    if p.suffix.lower() == ".gguf" or (p.is_file() and _is_gguf(p)):
        from planner.gguf_file import load_gguf  # noqa: PLC0415 (gguf is only needed for GGUF input)

        return load_gguf(p)
    if p.is_dir() or p.suffix.lower() == ".json":
        if not p.exists():
            raise PlannerInputError(f"--model: file not found: {p}")
        return load_config_json(p)
    raise unknown_name("model", name_or_path, model_names() + ["<path to config.json, model folder or .gguf>"],
                       flag="--model")


def _is_gguf(p: Path) -> bool:
    try:
        with p.open("rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False
