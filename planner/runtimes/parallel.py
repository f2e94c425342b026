"""vLLM on several GPUs: tensor, pipeline and expert parallel memory per GPU.

Rules read from the vLLM 0.33.0 wheel:
- tensor parallel (model_executor/layers/linear.py QKVParallelLinear): query heads are split
  (config/model.py verify_with_parallel_config: num_attention_heads % TP == 0, else vLLM refuses);
  KV heads per GPU = max(1, kv_heads // TP) (config/model.py get_num_kv_heads): when TP exceeds a
  layer's KV heads each GPU holds one head, replicated TP / kv_heads times (TP must then be a
  multiple of them: linear.py `divide`). Gemma 4's global layers have 1-4 KV heads, so from TP 2
  or 4 on their cache and K/V weights stop shrinking. MLP, expert and vocabulary-parallel
  embedding / LM head weights are split TP ways; norms and the MoE router are replicated.
  Expert parallel (--enable-expert-parallel) splits whole experts over the same ranks: the same
  expert bytes per GPU, so it does not change the memory here.
- pipeline parallel (distributed/utils.py get_pp_indices): n_layers // PP layers per stage, the
  remainder given to the stages before the last; the embedding (and Gemma's per-layer embedding
  table, and the encoders) live on the first stage, the final norm and LM head on the last (a
  tied head is a second vocabulary-parallel copy there when PP > 1: gemma4.py ties
  ParallelLMHead to embed_tokens, which only the first stage holds).
- only the last stage computes logits and samples: the profile run's sampler term is counted there.
- KV cache (v1/core/kv_cache_planning.py): every worker sizes its own block pool from its own free
  memory and the engine takes the minimum block count over all workers: the plan fits when the
  fullest GPU fits.
- communication buffers per GPU with TP > 1 (distributed/device_communicators/custom_all_reduce.py):
  the custom all-reduce's IPC buffer (max(8 MiB, 2 MiB all-gather, 16 MiB reduce-scatter)), its
  metadata + 8 MiB max_size scratch, and 8 MiB rank_data: 32 MiB; NCCL's own buffers come on top
  (profiles/runtimes.yaml vllm.nccl_buffer_bytes, with its derivation).
"""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from planner.errors import PlannerInputError
from planner.model.memory import Term

CUSTOM_ALLREDUCE_BYTES = 16 * 2**20 + 8 * 2**20 + 8 * 2**20
_REPLICATED_ROLES = frozenset({"norm", "moe_router"})
_FIRST_STAGE_ROLES = frozenset({"token_embedding", "ple_table", "ple_projection", "vision", "audio", "projector"})


def validate(spec, plan) -> None:
    tp, pp = plan.tp, plan.pp
    if tp < 1 or pp < 1:
        raise PlannerInputError(f"--tp/--pp: must be >= 1, got --tp {tp} --pp {pp}")
    heads = {l.n_heads for l in spec.layers}
    bad = sorted(h for h in heads if h % tp)
    if bad:
        ok = [d for d in range(1, max(heads) + 1) if all(h % d == 0 for h in heads)]
        raise PlannerInputError(f"--tp {tp}: {spec.name} has {bad[0]} attention heads; vLLM needs the tensor-parallel "
                                f"size to divide them (allowed: {', '.join(map(str, ok))})")
    for l in spec.cache_layers:
        if tp > l.n_kv_heads and tp % l.n_kv_heads:
            raise PlannerInputError(f"--tp {tp}: layer {l.index} of {spec.name} has {l.n_kv_heads} KV heads; above that "
                                    f"vLLM needs the tensor-parallel size to be a multiple of them")
    if pp > spec.n_layers:
        raise PlannerInputError(f"--pp {pp}: {spec.name} has only {spec.n_layers} layers")
    if plan.gpus != tp * pp:
        raise PlannerInputError(f"--tp {tp} x --pp {pp} = {tp * pp} GPU(s), but the device gives {plan.gpus}; "
                                f"use --device {tp * pp}x NAME or matching --tp/--pp")


def pp_stages(n_layers: int, pp: int) -> list[tuple[int, int]]:
    """(start, end) layer range of each pipeline stage (vLLM get_pp_indices, no env override)."""
    parts = [n_layers // pp] * pp
    rem = n_layers % pp
    for i in range(2, rem + 2):
        parts[-i] += 1
    out, start = [], 0
    for p in parts:
        out.append((start, start + p))
        start += p
    return out


def kv_heads_per_gpu(n_kv_heads: int, tp: int) -> int:
    return max(1, n_kv_heads // tp)


def shard_spec(spec, tp: int, start: int, end: int):
    """The part of the model one GPU of a stage holds, with heads split TP ways."""
    layers = tuple(replace(l, n_heads=l.n_heads // tp, n_kv_heads=kv_heads_per_gpu(l.n_kv_heads, tp),
                           ffn_dim=-(-l.ffn_dim // tp), expert_ffn_dim=-(-l.expert_ffn_dim // tp))
                   for l in spec.layers[start:end])
    return replace(spec, layers=layers)


@lru_cache(maxsize=128)
def _tensors(spec, fmt_name: str, vision: bool, audio: bool) -> tuple:
    from planner.model.formats import get_format, weight_bytes_by_tensor
    from planner.model.inventory import model_tensors

    tensors = model_tensors(spec, include_vision=vision, include_audio=audio)
    n_expert = max((l.n_experts for l in spec.layers), default=0)
    per = weight_bytes_by_tensor(tensors, get_format(fmt_name), arch=spec.arch, n_layer=spec.n_layers, n_expert=n_expert)
    return tuple((t.name, t.role, int(per[t.name][0])) for t in tensors if t.name in per)


def rank_weight_bytes(spec, fmt_name: str, vision: bool, audio: bool, tp: int, pp: int, stage: int) -> dict[str, int]:
    """role -> weight bytes on one GPU of pipeline stage `stage`."""
    from planner.runtimes.placement import _BLK

    start, end = pp_stages(spec.n_layers, pp)[stage]
    last = stage == pp - 1
    out: dict[str, int] = {}
    for name, role, b in _tensors(spec, fmt_name, vision, audio):
        m = _BLK.match(name)
        if m:
            il = int(m.group(1))
            if not start <= il < end:
                continue
            l = spec.layers[il]
            if name.endswith(("attn_k.weight", "attn_v.weight")) and l.n_kv_heads:
                share = kv_heads_per_gpu(l.n_kv_heads, tp) / l.n_kv_heads
            elif role in _REPLICATED_ROLES:
                share = 1.0
            else:
                share = 1.0 / tp
        elif role in _FIRST_STAGE_ROLES:
            if stage != 0:
                continue
            share = 1.0 if role == "norm" else 1.0 / tp
        else:                               # output_norm, an untied lm_head: the last stage
            if not last:
                continue
            share = 1.0 if role in _REPLICATED_ROLES else 1.0 / tp
        out[role] = out.get(role, 0) + int(b * share)
    if last and pp > 1 and spec.tie_word_embeddings:
        emb = sum(b for n, r, b in _tensors(spec, fmt_name, vision, audio) if r == "token_embedding")
        out[TIED_HEAD] = emb // tp
    return out


TIED_HEAD = "tied_head"     # the last stage's copy of a tied head (not a tensor role)


def build_parallel(spec, plan, fmt, build_one) -> tuple[list[Term], object]:
    """Every GPU's terms (gpu = stage * TP + rank) and the first stage's memory model.
    `build_one(spec, plan, fmt)` is vllm.build for one GPU's share of the model."""
    from planner.model.inventory import ROLE_COMPONENT
    from planner.readers.constants import const

    validate(spec, plan)
    tp, pp = plan.tp, plan.pp
    single = replace(plan, tp=1, pp=1, gpus=1)
    terms: list[Term] = []
    first = None
    text_only = bool(plan.text_only) if plan.text_only is not None else False
    vision = not text_only and bool(spec.config.get("vision_config"))
    audio = not text_only and bool(spec.config.get("audio_config"))
    nccl = int(const("vllm", "nccl_buffer_bytes")) if tp > 1 else 0
    for stage, (start, end) in enumerate(pp_stages(spec.n_layers, pp)):
        sub = shard_spec(spec, tp, start, end)
        mm = build_one(sub, single, fmt)
        first = first or mm
        wb = rank_weight_bytes(spec, fmt.name, vision, audio, tp, pp, stage)
        kv_dup = sum(spec.hidden_size * l.n_kv_heads * l.head_dim for l in sub.cache_layers if l.k_eq_v)
        for rank in range(tp):
            g = stage * tp + rank
            where = f" (GPU{g}: stage {stage}, layers {start}-{end - 1}, TP rank {rank})" if tp * pp > 1 else ""
            for role, b in wb.items():
                if b and role == TIED_HEAD:
                    terms.append(Term("output head (tied: a ParallelLMHead copy on the last stage)" + where, "weights",
                                      "device", const=b, gpu=g, detail="gemma4.py ties lm_head to embed_tokens, which "
                                      "only the first pipeline stage holds"))
                elif b:
                    terms.append(Term(ROLE_COMPONENT[role] + where, "weights", "device", const=b, gpu=g,
                                      detail=f"1/{tp} of the split tensors; norms and router replicated"))
            if kv_dup:
                terms.append(Term("K=V layers: K weight loaded again as V" + where, "weights", "device",
                                  const=kv_dup * (1 if fmt.family == "fp8" else 2), gpu=g,
                                  detail="model_executor/models/gemma4.py loads k_proj into the V slot"))
            for t in mm.terms:
                if t.name.startswith("sampler logits") and stage != pp - 1:
                    continue            # only the last stage samples
                if t.category != "weights":
                    terms.append(replace(t, name=t.name + where, gpu=g))
            if tp > 1:
                terms.append(Term("all-reduce buffers" + where, "overhead", "device", const=CUSTOM_ALLREDUCE_BYTES + nccl,
                                  gpu=g, detail="custom all-reduce IPC buffer, metadata and rank_data (32 MiB) + NCCL "
                                                "buffers (profiles/runtimes.yaml vllm.nccl_buffer_bytes)"))
    return terms, first
