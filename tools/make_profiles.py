"""Regenerate profiles/models/*.yaml from ../shared/reference/gemma_architectures.json.

Run once when the reference changes; the YAML files are the product's data and are committed.
A new checkpoint needs only a new YAML file (hand-written or from its config.json), not this script.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "gemma_architectures.json"
OUT = Path(__file__).resolve().parents[1] / "profiles" / "models"

NAMES = {
    "google/gemma-4-E2B(-it)": ("gemma-4-e2b", "google/gemma-4-E2B-it"),
    "google/gemma-4-E4B(-it)": ("gemma-4-e4b", "google/gemma-4-E4B-it"),
    "google/gemma-4-12B(-it)": ("gemma-4-12b", "google/gemma-4-12B-it"),
    "google/gemma-4-26B-A4B(-it)": ("gemma-4-26b-a4b", "google/gemma-4-26B-A4B-it"),
    "google/gemma-4-31B(-it)": ("gemma-4-31b", "google/gemma-4-31B-it"),
    "google/gemma-4-E2B-it-assistant": ("gemma-4-e2b-assistant", "google/gemma-4-E2B-it-assistant"),
    "google/gemma-4-E4B-it-assistant": ("gemma-4-e4b-assistant", "google/gemma-4-E4B-it-assistant"),
    "google/gemma-4-12B-it-assistant": ("gemma-4-12b-assistant", "google/gemma-4-12B-it-assistant"),
    "google/gemma-4-26B-A4B-it-assistant": ("gemma-4-26b-a4b-assistant", "google/gemma-4-26B-A4B-it-assistant"),
    "google/gemma-4-31B-it-assistant": ("gemma-4-31b-assistant", "google/gemma-4-31B-it-assistant"),
    "google/gemma-3-270m(-it)": ("gemma-3-270m", "google/gemma-3-270m-it"),
    "google/gemma-3-1b(-it)": ("gemma-3-1b", "google/gemma-3-1b-it"),
    "google/gemma-3-4b(-it|-pt)": ("gemma-3-4b", "google/gemma-3-4b-it"),
    "google/gemma-3-12b(-it|-pt)": ("gemma-3-12b", "google/gemma-3-12b-it"),
    "google/gemma-3-27b(-it|-pt)": ("gemma-3-27b", "google/gemma-3-27b-it"),
    "google/gemma-3n-E2B(-it)": ("gemma-3n-e2b", "google/gemma-3n-E2B-it"),
    "google/gemma-3n-E4B(-it)": ("gemma-3n-e4b", "google/gemma-3n-E4B-it"),
}

# Fields of the reference entry that describe, not configure.
NON_CONFIG = {
    "architecture", "model_type", "text_model_type", "intermediate_size_effective",
    "layer_types_pattern", "moe_note", "kv_cache", "param_count_check", "sources",
    "confidence", "vision_config", "audio_config", "notes", "context_length_published",
    "kv_cache_crosscheck", "extra_modules", "use_bidirectional_attention",
    "backbone_hidden_size", "use_ordered_embeddings", "num_centroids",
    "centroid_intermediate_top_k", "activation_sparsity_pattern", "doubts",
}
ENCODER_DESCRIPTIVE = {
    "published_params", "computed_params_incl_projector", "computed_params", "encoder",
    "note", "architecture", "default_output_length (soft tokens/image)",
}


def _gemma3_layer_types(n: int, pattern: int) -> list[str]:
    return ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n)]


def _clean(d: dict | None) -> dict | None:
    if not d:
        return None
    return {k: v for k, v in d.items() if k not in ENCODER_DESCRIPTIVE}


def build(key: str, e: dict, published: dict) -> dict:
    name, hf_id = NAMES[key]
    text = {k: v for k, v in e.items() if k not in NON_CONFIG and v is not None}
    mt = e["model_type"]
    text_mt = e.get("text_model_type", mt)
    if mt.startswith("gemma3") and not mt.startswith("gemma3n"):
        text["layer_types"] = _gemma3_layer_types(e["num_hidden_layers"], 6)
        for k in ("global_head_dim", "num_global_key_value_heads", "attention_k_eq_v"):
            text.pop(k, None)
    if mt == "gemma3n":
        n = e["num_hidden_layers"]
        inter = int(str(e["intermediate_size"]).split("[")[1].split("]")[0])
        text["intermediate_size"] = [inter] * n
        text["layer_types"] = _gemma3_layer_types(n, 5)
        sparse = 10
        text["activation_sparsity_pattern"] = [0.95] * sparse + [0.0] * (n - sparse)
    text["model_type"] = text_mt
    if mt == "gemma3_text":
        config = dict(text)
        config["architectures"] = [e["architecture"]]
    else:
        config = {"model_type": mt, "architectures": [e["architecture"]], "text_config": text}
        if mt.endswith("assistant"):
            for k in ("backbone_hidden_size", "use_ordered_embeddings", "num_centroids",
                      "centroid_intermediate_top_k"):
                config[k] = e[k]
            text["hidden_size_per_layer_input"] = 0
            text["vocab_size_per_layer_input"] = 0
        vc, ac = _clean(e.get("vision_config")), _clean(e.get("audio_config"))
        if vc:
            config["vision_config"] = vc
        if ac:
            config["audio_config"] = ac
        if mt == "gemma3":
            config["mm_tokens_per_image"] = 256
            if vc:
                vc.pop("mm_tokens_per_image", None)
                # Released config.json files set it false: no SigLIP pooling head (the tower is then
                # 416.9M parameters, Google's published 417M; transformers' default True adds 15.2M).
                vc["vision_use_head"] = False
    profile = {
        "name": name,
        "hf_id": hf_id,
        "family": mt.split("_")[0] if not mt.startswith("gemma3n") else "gemma3n",
        "max_context": int(e["max_position_embeddings"]),
        "config": config,
        "published": {k: v for k, v in (e.get("param_count_check") or {}).items()
                      if k in ("published", "match")},
        "sources": list(e.get("sources", [])) + [
            "shared/reference/gemma_architectures.json (entry '%s')" % key],
        "confidence": e.get("confidence", ""),
    }
    if "doubts" in e:
        profile["doubts"] = e["doubts"]
    enc_notes = {}
    for which in ("vision_config", "audio_config"):
        src = e.get(which) or {}
        keep = {k: v for k, v in src.items() if k in ENCODER_DESCRIPTIVE}
        if keep:
            enc_notes[which.split("_")[0]] = keep
    if enc_notes:
        profile["encoder_notes"] = enc_notes
    return profile


def main() -> int:
    ref = json.loads(REF.read_text())
    OUT.mkdir(parents=True, exist_ok=True)
    published = ref["_official_published_figures"]
    for key, e in ref.items():
        if key.startswith("_"):
            continue
        prof = build(key, e, published)
        path = OUT / f"{prof['name']}.yaml"
        header = f"# {prof['hf_id']}: generated by tools/make_profiles.py from the reference facts; sources below.\n"
        path.write_text(header + yaml.safe_dump(prof, sort_keys=False, width=100))
        print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
