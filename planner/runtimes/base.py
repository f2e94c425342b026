"""What every runtime shares: weight terms grouped by component, constants, the memory model."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

from planner.model.formats import WeightFormat, weight_bytes_by_tensor
from planner.model.inventory import ROLE_COMPONENT, model_tensors
from planner.model.kv import LayerCache
from planner.model.memory import Component, Term, Totals, components_at, evaluate_terms
from planner.model.spec import ModelSpec
from planner.readers.constants import const
from planner.runtimes.request import ResolvedPlan


def activation_constant(runtime: str, spec: ModelSpec):
    """A memoized accessor for a runtime's activation constants, calibrated when a calibration exists."""
    from planner.readers.calibration import calibrated

    cache: dict[str, float] = {}

    def c(key: str) -> float:
        if key not in cache:
            cache[key] = calibrated(runtime, spec, key, const(runtime, "activation", key))
        return cache[key]

    return c


def widest_layer_activation(spec: ModelSpec, hidden_copies: float, mlp_copies: float, expert_width: int) -> float:
    """Elements per token alive at the widest layer: hidden copies, q/k/v, MLP intermediates, the
    routed experts' intermediates (expert_width x expert_ffn per used expert), plus Gemma's
    per-layer-embedding inputs (two copies of layers x ple_dim, kept for the whole forward)."""
    width = max(hidden_copies * spec.hidden_size + 3 * l.n_heads * l.head_dim + mlp_copies * l.ffn_dim
                + (expert_width * l.n_experts_used * l.expert_ffn_dim if l.n_experts else 0) for l in spec.layers)
    return width + 2 * spec.n_layers * spec.ple_dim


@lru_cache(maxsize=4096)
def weight_bytes_by_role(spec: ModelSpec, fmt: WeightFormat, include_vision: bool, include_audio: bool) -> tuple[tuple[str, int, str], ...]:
    """(role, bytes, storage types) for the model in the format. Catalogue models come from the
    precomputed table (planner/readers/weights_table.py) when it is current; otherwise computed."""
    from planner.model.formats import CHECKPOINT_PREFIX
    from planner.readers.weights_table import lookup

    if fmt.name.startswith(CHECKPOINT_PREFIX):
        # a model folder's own tensors, byte for byte from its safetensors headers
        return spec.extra["checkpoint"].by_role(include_vision, include_audio)
    entry = lookup(spec, fmt.name, include_vision, include_audio)
    if entry is not None:
        return tuple((r, int(b), t) for r, b, t in entry["roles"])
    return _weight_bytes_by_role_uncached(spec, fmt, include_vision, include_audio)


def _weight_bytes_by_role_uncached(spec: ModelSpec, fmt: WeightFormat, include_vision: bool,
                                   include_audio: bool) -> tuple[tuple[str, int, str], ...]:
    tensors = model_tensors(spec, include_vision=include_vision, include_audio=include_audio)
    n_expert = max((l.n_experts for l in spec.layers), default=0)
    per_tensor = weight_bytes_by_tensor(tensors, fmt, arch=spec.arch, n_layer=spec.n_layers, n_expert=n_expert)
    by_role: dict[str, int] = {}
    types: dict[str, set[str]] = {}
    for t in tensors:
        if t.name not in per_tensor:
            continue            # not in the format's file (weight_bytes_by_tensor)
        b, typ = per_tensor[t.name]
        by_role[t.role] = by_role.get(t.role, 0) + b
        types.setdefault(t.role, set()).add(typ)
    order = list(ROLE_COMPONENT)
    return tuple((r, by_role[r], "+".join(sorted(types[r]))) for r in sorted(by_role, key=order.index))


def loaded_weight_bytes(spec: ModelSpec, fmt: WeightFormat, rp: ResolvedPlan) -> tuple[tuple[str, int, str], ...]:
    """(role, bytes, storage types) of what the runtime loads: encoders only when not text-only."""
    include = not rp.text_only
    return weight_bytes_by_role(spec, fmt, include and bool(spec.config.get("vision_config")),
                                include and bool(spec.config.get("audio_config")))


def weight_terms(spec: ModelSpec, fmt: WeightFormat, rp: ResolvedPlan) -> list[Term]:
    """One device-resident term per component (runtimes that place weights elsewhere build their own)."""
    return [Term(ROLE_COMPONENT[role], "weights", "device", const=nbytes, detail=types)
            for role, nbytes, types in loaded_weight_bytes(spec, fmt, rp)]


@dataclass(frozen=True)
class MemoryModel:
    """Everything one (model, weights, runtime, settings) combination allocates, as terms of context."""
    spec: ModelSpec
    resolved: ResolvedPlan
    runtime: str
    terms: tuple[Term, ...]
    granularity: int                          # context step at which allocations change
    max_context: int
    layer_caches: Callable[[int], list[LayerCache]] = field(repr=False, compare=False, default=lambda ctx: [])
    notes: tuple[str, ...] = ()

    def totals(self, ctx: int) -> Totals:
        return evaluate_terms(self.terms, ctx)

    def components(self, ctx: int) -> list[Component]:
        return components_at(self.terms, ctx)
