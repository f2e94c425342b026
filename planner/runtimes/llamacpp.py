"""llama.cpp (llama-server, llama-cli, LM Studio, Ollama's GGUF path).

Rules read from the llama.cpp vendored by llama-cpp-python 0.3.36 and checked against its own
load logs (tests/test_llamacpp.py, measurements/llama_cpp/):
- context (llama-context.cpp): n_ctx = context x sequences (llama.cpp's -c is the total),
  n_batch = min(n_ctx, 2048), n_ubatch = min(n_batch, 512), n_ctx padded to 256; per-sequence
  streams of n_ctx_seq = PAD(n_ctx / n_seq, 256) cells unless the cache is unified (one stream).
- caches (llama-kv-cache-iswa.cpp:73): full-attention layers hold n_ctx_seq cells; sliding layers
  PAD(min(n_ctx_seq, n_swa x (unified ? n_seq : 1) + n_ubatch), 256) cells, or n_ctx_seq with
  --swa-full. Only layers below n_layer - shared_kv_layers own a cache (Gemma 3n/4). K=V layers
  still store V. V rows are per layer with flash attention on/auto; with it off V is stored
  transposed at the widest layer's width (llama-kv-cache.cpp:210). A quantized V needs flash attention.
- model buffers: token_embd and Gemma's per_layer_token_embd are input-layer tensors kept on
  the host; a tied output head is loaded again on the GPU (llama-model-loader.cpp
  TENSOR_DUPLICATED). The mmap'd buffer is the file span, GGUF's 32-byte alignment included.
- compute buffer (sched_reserve, CPU backend): the worst-case ubatch graph; the allocator reuses
  memory, so it is the larger of the logits phase (4 x vocab x n_ubatch + 8 x hidden x n_ubatch)
  and the attention phase (without flash attention the f32 scores 4 x n_ubatch x n_head x n_kv
  plus f32 masks; with it, f16 masks only), plus PLE and MoE temporaries.
- output buffer: vocab x n_seq x 4 bytes on the host.
Defaults are llama-server's / llama-cli's (common/common.h): f16 cache, n_batch 2048,
n_ubatch 512, flash attention auto, swa_full off, kv_unified off for an explicit --parallel.
"""
from __future__ import annotations

from planner.errors import PlannerInputError
from planner.formats import WeightFormat
from planner.kv import KV_TYPES, RUNTIME_KV_TYPES, LayerCache, get_kv_type
from planner.memory import Cells, Term, ceil_to
from planner.plan import Plan, ResolvedPlan
from planner.runtimes.base import ROLE_COMPONENT, MemoryModel, weight_bytes_by_role, weight_terms
from planner.spec import ModelSpec

NAME = "llama.cpp"
ALLOWED_FAMILIES = ("gguf", "float")
DEFAULTS_FROM = "llama.cpp vendored by llama-cpp-python 0.3.36 (common/common.h, llama-context.cpp)"
N_BATCH = 2048
N_UBATCH = 512
CTX_PAD = 256
HOST_ROLES = frozenset({"token_embedding", "ple_table"})
# With mmap (the default) the PLE table is only read row by row for the tokens seen: its pages
# are file-backed and fault in on demand (gemma4.cpp loads it TENSOR_READ_LAZY; llama-model-loader
# maps it lazily above 4 GiB). It is reported as mapped, not budgeted; --no-mmap makes it resident.
MAPPED_ROLES = frozenset({"ple_table"})


def resolve(spec: ModelSpec, plan: Plan, fmt: WeightFormat) -> ResolvedPlan:
    if fmt.family not in ALLOWED_FAMILIES:
        raise PlannerInputError(f"--weights {fmt.name}: llama.cpp loads GGUF files; use a GGUF type "
                                "(q4_k_m, q8_0, qat-q4_0, bf16, ...)")
    k = get_kv_type(plan.kv_type_k or "f16", "--kv-type-k").name
    v = get_kv_type(plan.kv_type_v or plan.kv_type_k or "f16", "--kv-type-v").name
    for t in (k, v):
        if t not in RUNTIME_KV_TYPES[NAME]:
            raise PlannerInputError(f"--kv-type {t}: llama.cpp's --cache-type takes "
                                    f"{', '.join(RUNTIME_KV_TYPES[NAME])}")
    fa = (plan.flash_attn or "auto").lower()
    notes = []
    if KV_TYPES[v].quantized:
        if fa == "off":
            raise PlannerInputError(f"--kv-type-v {v}: llama.cpp refuses a quantized V cache without flash "
                                    "attention; use --flash-attn on (or auto)")
    flash = fa != "off"
    batch = plan.batch or N_BATCH
    ubatch = min(plan.ubatch or N_UBATCH, batch)
    unified = bool(plan.kv_unified) if plan.kv_unified is not None else False
    if plan.sequences > 1 and plan.kv_unified is None:
        notes.append("llama.cpp: one stream per sequence (--parallel N without --kv-unified); "
                     "llama-server with automatic slots (4) uses a unified cache")
    if spec.has_encoders and plan.text_only is None:
        notes.append("llama.cpp: text GGUF only; pass --with-encoders to add the mmproj (F16) encoders")
    return ResolvedPlan(plan, k, v, ubatch=ubatch, batch=batch, flash_attn=flash, kv_unified=unified,
                        text_only=bool(plan.text_only) if plan.text_only is not None else True,
                        notes=tuple(notes))


def _cells(rp: ResolvedPlan, sliding: bool, window: int | None) -> Cells:
    s = rp.plan.sequences
    if rp.kv_unified:
        base = Cells(pad=CTX_PAD, scale=s, streams=1)
        swa_seqs = s
    else:
        base = Cells(pad=CTX_PAD, streams=s)
        swa_seqs = 1
    if not sliding or rp.plan.swa_full or not window:
        return base
    cap = ceil_to(window * swa_seqs + rp.ubatch, CTX_PAD)
    return Cells(pad=CTX_PAD, cap=cap, scale=base.scale, streams=base.streams)


def build(spec: ModelSpec, plan: Plan, fmt: WeightFormat) -> MemoryModel:
    rp = resolve(spec, plan, fmt)
    kt, vt = KV_TYPES[rp.kv_type_k], KV_TYPES[rp.kv_type_v]
    terms: list[Term] = []
    if "gguf_tensors" in spec.extra:
        from planner.gguf_file import gguf_weight_bytes_by_role

        for role, nbytes, types in gguf_weight_bytes_by_role(spec):
            terms.append(Term(ROLE_COMPONENT[role], "weights", _place(role, plan),
                              const=nbytes, detail=f"{types} (from the file)"))
        data = sum(t[3] for t in spec.extra["gguf_tensors"])
        span = spec.extra["file_bytes"] - spec.extra["data_offset"]
        if span > data:
            terms.append(Term("GGUF alignment padding", "weights", "device", const=span - data,
                              detail="32-byte alignment between tensors in the mapped file"))
    else:
        for t in weight_terms(spec, fmt, rp, host_roles=HOST_ROLES):
            if t.name == ROLE_COMPONENT["ple_table"] and plan.mmap:
                t = Term(t.name, t.category, "mapped", const=t.const,
                         detail=t.detail + "; mmap: rows read on demand, not resident (--no-mmap: resident)")
            terms.append(t)
        pad = _alignment_padding(spec, fmt)
        if pad:
            terms.append(Term("GGUF alignment padding", "weights", "device", const=pad,
                              detail="32-byte alignment between tensors in the mapped file"))

    # KV caches: one term per (kind, window) with the layers' summed bytes per cell
    v_width_max = max((l.kv_width for l in spec.cache_layers), default=0)
    groups: dict[tuple, list] = {}
    for l in spec.cache_layers:
        groups.setdefault((l.sliding, l.window if l.sliding else None), []).append(l)

    def v_width(l) -> int:
        return l.kv_width if rp.flash_attn else v_width_max

    for (sliding, window), ls in sorted(groups.items(), key=lambda kv: kv[0][0]):
        per_cell = sum(kt.row_bytes(l.kv_width) + vt.row_bytes(v_width(l)) for l in ls)
        cells = _cells(rp, sliding, window)
        label = f"SWA KV cache, {len(ls)} layers" if sliding else f"KV cache, {len(ls)} full-attention layers"
        detail = (f"K {kt.name} + V {vt.name}" + ("" if rp.flash_attn else ", V transposed at the widest layer")
                  + (f"; window {window} x {rp.plan.sequences if rp.kv_unified else 1} + ubatch {rp.ubatch}"
                     if sliding and not rp.plan.swa_full else ""))
        terms.append(Term(label, "kv", "device", per_cell=per_cell, cells=cells, detail=detail))

    # compute buffer: max(logits phase, attention phase) + temporaries
    n_tok = rp.ubatch
    head = max((l.n_heads for l in spec.layers), default=0)
    logits_phase = 4 * spec.vocab_size * n_tok + 8 * spec.hidden_size * n_tok
    extra = 0
    if spec.ple_dim:
        extra += 2 * 4 * spec.n_layers * spec.ple_dim * n_tok
    moe = [l for l in spec.layers if l.n_experts]
    if moe:
        extra += 4 * 2 * moe[0].expert_ffn_dim * moe[0].n_experts_used * n_tok
    full_cells = _cells(rp, False, None)
    swa = [l for l in spec.cache_layers if l.sliding]
    swa_cells = _cells(rp, True, swa[0].window) if swa and not rp.plan.swa_full else full_cells
    streams = full_cells.streams
    # per stream: [n_kv, n_ubatch / streams, heads, streams] = n_kv x n_ubatch x heads in all
    del streams
    if rp.flash_attn:
        per_cell = 2 * n_tok                      # f16 mask
        attn_detail = "flash attention: f16 masks only"
    else:
        per_cell = 4 * n_tok * (head + 1)         # f32 scores (softmax in place) + f32 mask
        attn_detail = "no flash attention: f32 scores n_head x n_kv x n_ubatch, f32 masks"
    swa_mask = (2 if rp.flash_attn else 4) * n_tok * swa_cells.cap if swa and swa_cells.cap else 0
    terms.append(Term(f"compute buffer (ubatch {n_tok})", "compute", "device", const=extra + swa_mask,
                      per_cell=per_cell, cells=Cells(pad=CTX_PAD, scale=full_cells.scale), floor=logits_phase + extra,
                      detail=f"max(logits {logits_phase / 2**20:.1f} MiB, attention); {attn_detail}; CPU backend graph"))
    terms.append(Term("output buffer (logits)", "compute", "host",
                      const=spec.vocab_size * plan.sequences * 4, detail="n_vocab x n_seq x float32"))

    def layer_caches(ctx: int) -> list[LayerCache]:
        out = []
        for l in spec.cache_layers:
            c = _cells(rp, l.sliding, l.window)
            out.append(LayerCache(l.index, l.sliding, l.kv_width, v_width(l), kt, vt, c(ctx) // c.streams, c.streams))
        return out

    return MemoryModel(spec, rp, NAME, tuple(terms), granularity=CTX_PAD, max_context=spec.max_context,
                       layer_caches=layer_caches, notes=rp.notes)


def _place(role: str, plan: Plan) -> str:
    if role in MAPPED_ROLES and plan.mmap:
        return "mapped"
    return "host" if role in HOST_ROLES else "device"


def _alignment_padding(spec: ModelSpec, fmt: WeightFormat) -> int:
    """Bytes llama-quantize's 32-byte alignment adds between tensors of the text GGUF."""
    from planner.weights_cache import lookup

    entry = lookup(spec, fmt.name, False, False)
    if entry is not None and "padding" in entry:
        return int(entry["padding"])
    return _alignment_padding_uncached(spec, fmt)


def _alignment_padding_uncached(spec: ModelSpec, fmt: WeightFormat) -> int:
    from planner.formats import weight_bytes_by_tensor
    from planner.inventory import model_tensors

    tensors = model_tensors(spec, include_vision=False, include_audio=False)
    n_expert = max((l.n_experts for l in spec.layers), default=0)
    per = weight_bytes_by_tensor(tensors, fmt, arch=spec.arch, n_layer=spec.n_layers, n_expert=n_expert)
    pad = 0
    for b, _ in per.values():
        pad += (-b) % 32
    return pad


def device_terms(mm: MemoryModel, device) -> tuple[Term, ...]:
    """Terms that depend on the device: the tied output head's second copy on a discrete GPU."""
    from planner.runtimes.overhead import backend_of

    if backend_of(device) != "cuda" or not mm.spec.tie_word_embeddings:
        return ()
    emb = next((t for t in mm.terms if t.name == ROLE_COMPONENT["token_embedding"]), None)
    if emb is None:
        return ()
    return (Term("output head (tied: token_embd loaded again on the GPU)", "weights", "device",
                 const=emb.const, detail="llama-model-loader TENSOR_DUPLICATED"),)


_ = weight_bytes_by_role  # re-exported for the measurement harness
