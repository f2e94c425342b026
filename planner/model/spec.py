"""The model spec: one normalized description of a decoder, whatever it was read from.

Profiles, Hugging Face `config.json` files and GGUF headers all become a `ModelSpec`; everything
downstream (tensor inventory, KV cache, compute buffers) reads only this. Per-layer fields are
explicit because Gemma 4 varies them per layer: sliding layers and full layers differ in head
size and KV heads, KV-shared layers own no cache, K=V layers store no V projection, and the
MLP is double-wide on KV-shared layers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from planner.errors import PlannerInputError, shorten


@dataclass(frozen=True, slots=True)
class LayerSpec:
    index: int
    sliding: bool                 # sliding-window attention layer (else full/global attention)
    n_heads: int
    n_kv_heads: int
    head_dim: int                 # K and V head size on this layer
    window: int | None            # sliding window in tokens (None on full layers)
    k_eq_v: bool                  # the layer has no v_proj: V is derived from K's projection
    kv_source: int | None         # None: owns its KV cache; else the index of the layer it reads
    ffn_dim: int                  # dense MLP intermediate size on this layer (0 if none)
    n_experts: int = 0            # routed experts on this layer (0 = dense only)
    n_experts_used: int = 0
    expert_ffn_dim: int = 0
    ple_dim: int = 0              # per-layer-embedding width feeding this layer (Gemma 3n/4)
    has_qk_norm: bool = False

    @property
    def owns_kv(self) -> bool:
        return self.kv_source is None

    @property
    def kv_width(self) -> int:
        """Elements per token of K (and of V) on this layer."""
        return self.n_kv_heads * self.head_dim


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    arch: str                     # normalized family: gemma4, gemma4_unified, gemma4_assistant, gemma3, gemma3n, llama, ...
    vocab_size: int
    hidden_size: int
    layers: tuple[LayerSpec, ...]
    max_context: int
    tie_word_embeddings: bool = True
    ple_dim: int = 0
    ple_vocab: int = 0
    attention_bias: bool = False
    config: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)  # raw HF config for encoders
    source: str = ""
    published: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)  # arch-specific (altup, drafter)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def sliding_window(self) -> int | None:
        w = [l.window for l in self.layers if l.sliding and l.window]
        return max(w) if w else None

    @property
    def is_moe(self) -> bool:
        return any(l.n_experts for l in self.layers)

    @property
    def has_encoders(self) -> bool:
        return bool(self.config.get("vision_config") or self.config.get("audio_config"))

    @property
    def cache_layers(self) -> tuple[LayerSpec, ...]:
        return tuple(l for l in self.layers if l.owns_kv)


def _req(cfg: dict, key: str, where: str) -> Any:
    if key not in cfg or cfg[key] is None:
        raise PlannerInputError(f"{where}: missing field '{key}' needed to size the model")
    return cfg[key]


# Bounds on every size read from a config.json, a profile or a GGUF header. A value outside them
# is not a model the planner can size (and a billion layers or experts would make it loop or
# allocate without bound). Each bound is well above the largest published checkpoint:
# 126 layers (Llama 3.1 405B), hidden 16,384, 128 heads, head_dim 512 (Gemma 4 global layers),
# vocab 262,144 (Gemma), 256 routed experts (DeepSeek-V3), 10M context (Llama 4 Scout).
SIZE_LIMITS: dict[str, tuple[int, int]] = {
    "num_hidden_layers": (1, 1024),
    "hidden_size": (1, 1 << 17),
    "num_attention_heads": (1, 4096),
    "num_key_value_heads": (1, 4096),
    "num_global_key_value_heads": (1, 4096),
    "head_dim": (2, 1 << 14),           # RoPE turns pairs of elements: a head is at least 2 wide
    "global_head_dim": (2, 1 << 14),
    "vocab_size": (1, 1 << 22),
    "vocab_size_per_layer_input": (0, 1 << 22),
    "hidden_size_per_layer_input": (0, 1 << 14),
    "intermediate_size": (0, 1 << 20),
    "moe_intermediate_size": (0, 1 << 20),
    "num_experts": (0, 4096),
    "num_experts_per_tok": (0, 4096),
    "num_kv_shared_layers": (0, 1024),
    "sliding_window": (1, 1 << 28),
    "sliding_window_pattern": (1, 1024),
    "max_position_embeddings": (1, 1 << 28),
    "altup_num_inputs": (1, 64),
    "laurel_rank": (0, 1 << 14),
    "backbone_hidden_size": (1, 1 << 17),
    "num_centroids": (0, 1 << 22),
}


def bounded(value: Any, key: str, where: str, limit: str | None = None) -> int:
    """`value` as an integer within SIZE_LIMITS[limit or key], else one clear input error naming
    the field and the allowed range."""
    lo, hi = SIZE_LIMITS[limit or key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
            or value in (float("inf"), float("-inf")) or int(value) != value:
        raise PlannerInputError(f"{where}: field '{key}' must be an integer from {lo} to {hi:,}, "
                                f"got {shorten(repr(value), 40)}")
    if not lo <= value <= hi:
        raise PlannerInputError(f"{where}: field '{key}' is {shorten(int(value), 40)}, outside {lo} to {hi:,} "
                                f"(larger than any published model)" if value > hi else
                                f"{where}: field '{key}' must be an integer from {lo} to {hi:,}, got {int(value)}")
    return int(value)


def _int(cfg: dict, key: str, where: str, default: int | None = None) -> int:
    v = cfg.get(key, default)
    if v is None:
        raise PlannerInputError(f"{where}: missing field '{key}' needed to size the model")
    return bounded(v, key, where)


def _opt(cfg: dict, keys: tuple[str, ...], where: str, limit: str) -> int:
    """The first of `keys` that is set and non-zero (HF spells some fields several ways), else 0."""
    for k in keys:
        if cfg.get(k):
            return bounded(cfg[k], k, where, limit)
    return 0


def text_config_of(config: dict) -> dict:
    tc = config.get("text_config")
    return tc if isinstance(tc, dict) else config


def _kv_sources(layer_types: list[str], n_shared: int, where: str) -> list[int | None]:
    """Which layer's cache each layer reads (transformers' kv_sharing_modes, Gemma 3n/4).

    From index n - n_shared on, a layer reuses the cache of the last non-shared layer of its
    own attention type. A drafter whose layers are all shared reads the target's cache.
    """
    n = len(layer_types)
    if n_shared <= 0:
        return [None] * n
    first = n - n_shared
    out: list[int | None] = [None] * first
    for i in range(first, n):
        src = next((j for j in range(first - 1, -1, -1) if layer_types[j] == layer_types[i]), None)
        # -1: the cache lives in another model (an MTP drafter reads its target's cache)
        out.append(src if src is not None else -1)
    return out


def spec_from_hf_config(config: dict, *, name: str, source: str = "", max_context: int | None = None,
                        published: dict | None = None) -> ModelSpec:
    """Build a ModelSpec from a Hugging Face config dict (any decoder; Gemma 3/3n/4 in full)."""
    where = source or name
    if not isinstance(config, dict):
        raise PlannerInputError(f"{where}: config must be a JSON/YAML object")
    tc = text_config_of(config)
    for cfg, field in ((config, "model_type"), (tc, "text_config.model_type")):
        if not isinstance(cfg.get("model_type", ""), str):
            raise PlannerInputError(f"{where}: field '{field}' must be a string (e.g. \"gemma4\"), "
                                    f"got {type(cfg.get('model_type')).__name__}")
    top_type = str(config.get("model_type", "")).lower()
    text_type = str(tc.get("model_type", top_type)).lower()
    arch = _normalize_arch(top_type, text_type)

    n = _int(tc, "num_hidden_layers", where)
    hidden = _int(tc, "hidden_size", where)
    n_heads = _int(tc, "num_attention_heads", where)
    n_kv = _int(tc, "num_key_value_heads", where, default=n_heads)
    head_dim = _int(tc, "head_dim", where, default=hidden // max(n_heads, 1) or None)
    vocab = _int(tc, "vocab_size", where)
    layer_types = tc.get("layer_types")
    window = _opt(tc, ("sliding_window",), where, "sliding_window") or None
    if tc.get("sliding_window_pattern") is not None:
        bounded(tc["sliding_window_pattern"], "sliding_window_pattern", where)
    if layer_types is None:
        layer_types = _default_layer_types(arch, tc, n, window)
    if not isinstance(layer_types, list) or not all(isinstance(t, str) for t in layer_types):
        raise PlannerInputError(f"{where}: field 'layer_types' must be a list of strings "
                                f"(sliding_attention, full_attention), one per layer")
    if len(layer_types) != n:
        raise PlannerInputError(f"{where}: layer_types has {len(layer_types)} entries, num_hidden_layers is {n}")
    sliding_flags = [str(t) in ("sliding_attention", "sliding", "local") for t in layer_types]
    if any(sliding_flags) and not window:
        raise PlannerInputError(f"{where}: sliding layers need field 'sliding_window'")

    inter = tc.get("intermediate_size", 0)
    inter_list = [bounded(x, "intermediate_size", where) for x in inter] if isinstance(inter, list) \
        else [bounded(inter or 0, "intermediate_size", where)] * n
    if len(inter_list) != n:
        raise PlannerInputError(f"{where}: intermediate_size list has {len(inter_list)} entries, expected {n}")

    n_shared = _opt(tc, ("num_kv_shared_layers",), where, "num_kv_shared_layers")
    if n_shared > n:
        raise PlannerInputError(f"{where}: field 'num_kv_shared_layers' is {n_shared}, more than the {n} layers")
    if arch == "gemma4_assistant":
        n_shared = n  # the drafter config says so in __post_init__; every layer reads the target's cache
    sources = _kv_sources([str(t) for t in layer_types], n_shared, where)

    gemma4_like = arch in ("gemma4", "gemma4_unified", "gemma4_assistant")
    global_hd = _opt(tc, ("global_head_dim",), where, "global_head_dim") if gemma4_like else 0
    if gemma4_like and not global_hd:
        global_hd = 512  # transformers Gemma4TextConfig default (configuration_gemma4.py)
    k_eq_v = bool(tc.get("attention_k_eq_v", False)) if gemma4_like else False
    n_global_kv = _opt(tc, ("num_global_key_value_heads",), where, "num_global_key_value_heads") or None
    per_layer = tc.get("per_layer_config")
    if isinstance(per_layer, dict) and per_layer and "global_head_dim" not in tc:
        # a per_layer_config replaces the defaults entirely: layers it does not name keep head_dim
        global_hd = head_dim
    double_wide = bool(tc.get("use_double_wide_mlp", False))

    n_experts = _opt(tc, ("num_experts", "num_local_experts", "n_routed_experts"), where, "num_experts")
    if gemma4_like and not tc.get("enable_moe_block", False):
        n_experts = 0
    top_k = _opt(tc, ("top_k_experts", "num_experts_per_tok"), where, "num_experts_per_tok")
    moe_ffn = _opt(tc, ("moe_intermediate_size",), where, "moe_intermediate_size")
    if n_experts and not moe_ffn:
        moe_ffn = int(inter_list[0])  # Mixtral-style: experts have the dense width, no dense MLP
    moe_replaces_dense = n_experts > 0 and not gemma4_like

    ple_dim = _opt(tc, ("hidden_size_per_layer_input",), where, "hidden_size_per_layer_input") \
        if arch in ("gemma4", "gemma3n") else 0
    ple_vocab = _opt(tc, ("vocab_size_per_layer_input",), where, "vocab_size_per_layer_input") if ple_dim else 0

    layers = []
    for i in range(n):
        sliding = sliding_flags[i]
        hd, kv = head_dim, n_kv
        layer_k_eq_v = False
        if gemma4_like and not sliding:
            hd = global_hd
            # num_global_key_value_heads applies only when attention_k_eq_v (configuration_gemma4.py)
            if k_eq_v:
                layer_k_eq_v = True
                if n_global_kv is not None:
                    kv = int(n_global_kv)
        if gemma4_like and isinstance(per_layer, dict) and (str(i) in per_layer or i in per_layer):
            # transformers >= 5.23 saves Gemma 4 configs with `per_layer_config` {layer: {head_dim,
            # num_key_value_heads}} in place of global_head_dim / num_global_key_value_heads
            # (configuration_gemma4.py __post_init__), and reads it back the same way
            ov = per_layer.get(str(i), per_layer.get(i)) or {}
            if not isinstance(ov, dict):
                raise PlannerInputError(f"{where}: per_layer_config['{i}'] must be a mapping of fields")
            hd = bounded(ov.get("head_dim", hd), f"per_layer_config.{i}.head_dim", where, "head_dim")
            kv = bounded(ov.get("num_key_value_heads", kv), f"per_layer_config.{i}.num_key_value_heads", where,
                         "num_key_value_heads")
        ffn = int(inter_list[i])
        if double_wide and sources[i] is not None:
            ffn *= 2
        if moe_replaces_dense:
            ffn = 0
        layers.append(LayerSpec(
            index=i, sliding=sliding, n_heads=n_heads, n_kv_heads=kv, head_dim=hd,
            window=int(window) if sliding else None, k_eq_v=layer_k_eq_v, kv_source=sources[i],
            ffn_dim=ffn, n_experts=n_experts, n_experts_used=top_k if n_experts else 0,
            expert_ffn_dim=moe_ffn if n_experts else 0, ple_dim=ple_dim,
            has_qk_norm=arch.startswith("gemma3") or gemma4_like or text_type in ("qwen3", "qwen3_moe"),
        ))

    ctx = max_context or _opt(tc, ("max_position_embeddings",), where, "max_position_embeddings")
    if not ctx:
        raise PlannerInputError(f"{where}: missing field 'max_position_embeddings' (the model's maximum context)")
    ctx = bounded(ctx, "max_position_embeddings", where)
    tie = config.get("tie_word_embeddings", tc.get("tie_word_embeddings", True if arch.startswith("gemma") else False))
    extra: dict[str, Any] = {}
    if arch == "gemma3n":
        extra["altup_num_inputs"] = _int(tc, "altup_num_inputs", where, default=4)
        extra["laurel_rank"] = _int(tc, "laurel_rank", where, default=64)
    if arch == "gemma4_assistant":
        extra["backbone_hidden_size"] = _int(config, "backbone_hidden_size", where, default=1536)
        extra["use_ordered_embeddings"] = bool(config.get("use_ordered_embeddings", False))
        extra["num_centroids"] = _int(config, "num_centroids", where, default=2048)
    return ModelSpec(
        name=name, arch=arch, vocab_size=vocab, hidden_size=hidden, layers=tuple(layers),
        max_context=int(ctx), tie_word_embeddings=bool(tie), ple_dim=ple_dim, ple_vocab=ple_vocab,
        attention_bias=bool(tc.get("attention_bias", False)), config=config, source=source,
        published=published or {}, extra=extra,
    )


def _normalize_arch(top_type: str, text_type: str) -> str:
    if top_type in ("gemma4_assistant", "gemma4_unified_assistant"):
        return "gemma4_assistant"
    if top_type.startswith("gemma4_unified") or text_type.startswith("gemma4_unified"):
        return "gemma4_unified"
    if top_type.startswith("gemma4") or text_type.startswith("gemma4"):
        return "gemma4"
    if top_type.startswith("gemma3n") or text_type.startswith("gemma3n"):
        return "gemma3n"
    if top_type.startswith("gemma3") or text_type.startswith("gemma3"):
        return "gemma3"
    return text_type or top_type or "llama"


def _default_layer_types(arch: str, tc: dict, n: int, window: Any) -> list[str]:
    if arch in ("gemma3", "gemma4", "gemma4_unified"):
        pattern = int(tc.get("sliding_window_pattern") or 6)   # bounded by the caller
        return ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n)]
    if arch == "gemma3n":
        return ["full_attention" if (i + 1) % 5 == 0 else "sliding_attention" for i in range(n)]
    if window and tc.get("use_sliding_window", True) and str(tc.get("model_type", "")) in ("mistral", "gemma2"):
        if tc.get("model_type") == "gemma2":
            return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n)]
        return ["sliding_attention"] * n
    return ["full_attention"] * n
