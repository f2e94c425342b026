"""Hugging Face transformers (PyTorch), generate() with the default DynamicCache.

KV cells, verified against transformers 5.23 (cache_utils.py DynamicLayer /
DynamicSlidingWindowLayer, and a real run recorded by the probes):
- full-attention layers keep every token: cells = context, per sequence (batch dimension);
- sliding layers keep the last window - 1 tokens after a forward pass;
- KV-shared layers get a DummyLayer (no storage); K=V full layers still store V separately.
The activation peak is a first analytic model (prefill of the whole prompt in one forward):
a few hidden-size copies, the MLP intermediates, the q/k/v projections (K/V repeated to all
query heads when GQA is expanded), the per-layer-embedding inputs kept for the whole forward,
the boolean attention masks SDPA receives (query x key), and float32 logits of the last token.
The coefficients live in profiles/runtimes.yaml and are refit by `planner calibrate`.
"""
from __future__ import annotations

from planner.calibration import calibrated
from planner.errors import PlannerInputError
from planner.formats import FLOAT_BYTES, WeightFormat
from planner.kv import KV_TYPES, RUNTIME_KV_TYPES, LayerCache, get_kv_type
from planner.memory import Cells, Term
from planner.plan import Plan, ResolvedPlan
from planner.runtimes.base import MemoryModel, const, weight_terms
from planner.spec import ModelSpec

NAME = "transformers"
ALLOWED_FAMILIES = ("float", "fp8", "awq", "gptq", "nf4", "gguf")


def resolve(spec: ModelSpec, plan: Plan, fmt: WeightFormat) -> ResolvedPlan:
    if fmt.family not in ALLOWED_FAMILIES:
        raise PlannerInputError(f"--weights {fmt.name}: transformers cannot load this format; use one of "
                                "bf16, f16, f32, fp8, awq-int4, gptq-int4, nf4 or a GGUF type (dequantized on load)")
    default_kv = "f32" if fmt.name == "f32" else "bf16"
    k = get_kv_type(plan.kv_type_k or default_kv, "--kv-type").name
    v = get_kv_type(plan.kv_type_v or plan.kv_type_k or default_kv, "--kv-type").name
    for t in (k, v):
        if t not in RUNTIME_KV_TYPES[NAME]:
            raise PlannerInputError(f"--kv-type {t}: transformers' DynamicCache stores the model dtype; "
                                    f"allowed: {', '.join(RUNTIME_KV_TYPES[NAME])}")
    notes = []
    if fmt.family == "gguf":
        notes.append("transformers dequantizes GGUF weights on load: weights are counted in bf16")
    return ResolvedPlan(plan, k, v, ubatch=0, batch=0, flash_attn=False, kv_unified=False,
                        text_only=bool(plan.text_only) if plan.text_only is not None else False,
                        notes=tuple(notes))


def build(spec: ModelSpec, plan: Plan, fmt: WeightFormat) -> MemoryModel:
    rp = resolve(spec, plan, fmt)
    if fmt.family == "gguf":
        from planner.formats import get_format

        fmt = get_format("bf16")
    kt, vt = KV_TYPES[rp.kv_type_k], KV_TYPES[rp.kv_type_v]
    b = plan.sequences
    terms: list[Term] = weight_terms(spec, fmt, rp)

    full = [l for l in spec.cache_layers if not l.sliding]
    sliding = [l for l in spec.cache_layers if l.sliding]
    if full:
        per_cell = sum(kt.row_bytes(l.kv_width) + vt.row_bytes(l.kv_width) for l in full)
        terms.append(Term(f"KV cache, {len(full)} full-attention layers ({kt.name})", "kv", "device",
                          per_cell=per_cell, cells=Cells(streams=b), detail="context tokens per sequence"))
    for window in sorted({l.window for l in sliding}):
        group = [l for l in sliding if l.window == window]
        per_cell = sum(kt.row_bytes(l.kv_width) + vt.row_bytes(l.kv_width) for l in group)
        terms.append(Term(f"KV cache, {len(group)} sliding layers ({kt.name}, window {window})", "kv", "device",
                          per_cell=per_cell, cells=Cells(cap=window - 1, streams=b),
                          detail="DynamicSlidingWindowLayer keeps window - 1 tokens"))

    act = FLOAT_BYTES["f32" if fmt.name == "f32" else "bf16"]
    keys = ("hidden_copies", "kv_copies", "mlp_copies", "moe_copies", "ple_copies", "mask_bytes_per_element")
    k = {key: calibrated(NAME, spec, key, const(NAME, "activation", key)) for key in keys}
    c = k.__getitem__
    per_token = 0
    for layer in spec.layers:
        q_w = layer.n_heads * layer.head_dim
        # K and V reach SDPA expanded to every query head (repeat_kv), shared layers included
        kv_expanded = layer.n_heads * layer.head_dim
        moe = layer.n_experts_used * 2 * layer.expert_ffn_dim if layer.n_experts else 0
        width = (k["hidden_copies"] * spec.hidden_size + q_w + k["kv_copies"] * kv_expanded
                 + k["mlp_copies"] * max(layer.ffn_dim, 0) + k["moe_copies"] * moe)
        per_token = max(per_token, int(width * act))
    ple = int(c("ple_copies") * spec.n_layers * spec.ple_dim * act) if spec.ple_dim else 0
    mask_types = len({l.sliding for l in spec.layers})
    terms.append(Term("activations (prefill, per token)", "compute", "device", per_cell=(per_token + ple),
                      cells=Cells(streams=b), detail="hidden copies, q/k/v, MLP intermediates, PLE inputs"))
    terms.append(Term("attention masks (prefill, query x key)", "compute", "device",
                      per_cell_sq=int(mask_types * c("mask_bytes_per_element")), cells=Cells(streams=1),
                      const=0, detail=f"{mask_types} boolean mask(s) of context x context, per sequence"))
    if b > 1:
        # the mask is per sequence: b masks of T x T (per_cell_sq is applied to one stream's cells)
        terms[-1] = Term(terms[-1].name, "compute", "device", per_cell_sq=terms[-1].per_cell_sq * b,
                         cells=Cells(streams=1), detail=terms[-1].detail)
    terms.append(Term("logits (last token, float32)", "compute", "device", const=b * spec.vocab_size * 4 * 2,
                      detail="bf16 logits upcast to float32 for sampling"))

    def layer_caches(ctx: int) -> list[LayerCache]:
        return [LayerCache(l.index, l.sliding, l.kv_width, l.kv_width, kt, vt,
                           min(ctx, l.window - 1) if l.sliding else ctx, b) for l in spec.cache_layers]

    return MemoryModel(spec, rp, NAME, tuple(terms), granularity=1, max_context=spec.max_context,
                       layer_caches=layer_caches, notes=rp.notes)
