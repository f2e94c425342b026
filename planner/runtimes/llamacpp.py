"""llama.cpp (llama-server, llama-cli, LM Studio, Ollama's GGUF path).

Rules read from llama.cpp's source and checked against its own load logs: llama-server b11549
(xllamacpp 2026.10.11549; measurements/llama_cpp/server, tests/test_llamacpp_server.py) and the
library vendored by llama-cpp-python 0.3.36 (commit 0c1e570; measurements/llama_cpp,
tests/test_llamacpp_measured.py), plus published llama-server logs (tests/test_llamacpp_published.py).
- frontend and build (MODELLED_BUILDS, n_outputs_max): llama-server reserves logits for
  min(n_batch, slots x (1 + n_draft)) rows (tools/server/server-context.cpp server_output_limits,
  PR #23861); the library and builds before it a whole ubatch. The default is llama-server b11549.
- context (llama-context.cpp): n_batch = min(n_ctx, 2048) on the unpadded n_ctx, n_ubatch =
  min(n_batch, 512); n_ctx padded to 256; per-sequence streams of n_ctx_seq = PAD(n_ctx / n_seq,
  256) cells unless the cache is unified (one stream of n_ctx cells). llama.cpp's -c is the total,
  the planner's context is per sequence.
- caches (llama-kv-cache-iswa.cpp): full-attention layers hold n_ctx_seq cells; sliding layers
  PAD(min(n_ctx_seq, n_swa x (unified ? n_seq : 1) + n_ubatch), 256) cells, or n_ctx_seq with
  --swa-full. Only layers below n_layer - shared_kv_layers own a cache (Gemma 3n/4). K=V layers
  still store V. V rows are per layer with flash attention on/auto; with it off V is stored
  transposed at the widest layer's width (llama-kv-cache.cpp, TAG_V_CACHE_VARIABLE). A quantized V
  needs flash attention (llama_init_from_model refuses it). Measured exact for every setting of
  both builds.
- model buffers: with mmap the CPU_Mapped buffer is the file span of the tensors it holds (GGUF's
  32-byte alignment included, tensors of other buffers in between too); token_embd and Gemma's
  per_layer_token_embd are input-layer tensors kept on the host (the PLE table is read lazily,
  its own CPU_Mapped buffer, when above 4 GiB); a tied output head is loaded again on a GPU
  (TENSOR_DUPLICATED). On a CPU-only device the CPU backend copies Q4_0 / Q4_K / IQ4_NL / MXFP4
  matmul weights (x86 AVX2; more types on ARM) into a CPU_REPACK buffer, which is what stays
  resident of them (resident_terms, measured with /proc/PID/smaps_rollup).
- compute buffer (sched_reserve, CPU backend): compute_term (library: a ubatch of logits) and
  _server_compute_term (llama-server: masks/scores per attended cell and the layers' activation
  rows); the tests list every measured load beyond 2 % and why.
- output buffer: n_vocab x n_seq x 4 bytes on the host.
- drafters (llama-server -md): drafter_terms.
Defaults are llama-server's (common/common.h, tools/server): f16 cache, n_batch 2048,
n_ubatch 512, flash attention auto, swa_full off, kv_unified off for an explicit --parallel
(llama-server's automatic 4 slots are unified). The library default (llama_context_default_params)
has swa_full on; llama-cpp-python passes it through.
"""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from planner.errors import PlannerInputError
from planner.model.formats import WeightFormat
from planner.model.inventory import ROLE_COMPONENT
from planner.model.kv import KV_TYPES, RUNTIME_KV_TYPES, LayerCache, get_kv_type
from planner.model.memory import Cells, Term, ceil_to
from planner.model.spec import ModelSpec
from planner.runtimes import placement
from planner.runtimes.base import MemoryModel, loaded_weight_bytes
from planner.runtimes.request import Plan, ResolvedPlan

NAME = "llama.cpp"
ALLOWED_FAMILIES = ("gguf", "float")
# The builds whose rules are modelled (`planner --version` names the default). Keyed by build because rules changed between them: since
# PR #23861 (b9xxx, 2026-05-29) a context reserves logits for n_outputs_max rows and llama-server
# sets n_outputs_max from its slots; the library keeps a whole ubatch of logits.
MODELLED_BUILDS = {
    "b11549": "llama-server / library b11549 (xllamacpp 2026.10.11549; server measured on the CPU backend: "
              "measurements/llama_cpp/server)",
    "b9849": "llama-server b9849 (published Vulkan logs, RTX 3090; the server rules of b11549: "
             "n_outputs_max from slots, PR #23861)",
    "0c1e570": "library 0c1e570 (vendored by llama-cpp-python 0.3.36; measured: measurements/llama_cpp)",
}
DEFAULT_BUILD = "b11549"          # the newest measured
LIBRARY_ONLY_BUILDS = ("0c1e570",)  # before PR #23861: no n_outputs_max, every frontend reserves a ubatch of logits
FRONTENDS = ("server", "library")
MODELLED_VERSION = f"llama.cpp {DEFAULT_BUILD} (llama-server defaults; --frontend library, @b9849, @0c1e570)"
DEFAULTS_FROM = "llama.cpp vendored by llama-cpp-python 0.3.36 (common/common.h, llama-context.cpp)"
N_BATCH = 2048
N_UBATCH = 512
CTX_PAD = 256
HOST_ROLES = frozenset({"token_embedding", "ple_table"})
# With mmap (the default) the PLE table is only read row by row for the tokens seen: its pages
# are file-backed and fault in on demand (gemma4.cpp loads it TENSOR_READ_LAZY; llama-model-loader
# maps it lazily above 4 GiB). It is reported as mapped, not budgeted; --no-mmap makes it resident.
MAPPED_ROLES = frozenset({"ple_table"})
_ROLE_OF_COMPONENT = {v: k for k, v in ROLE_COMPONENT.items()}


def plan_for_device(plan: Plan, device) -> Plan:
    """On a CPU-only device there is no GPU to offload to: llama.cpp assigns every layer to the CPU
    whatever -ngl / --n-cpu-moe / -ot say (load_tensors with no GPU device; checked on this
    machine's CPU build with tools/llamacpp_placement_probe.py: identical load logs for -ngl 0 and 10)."""

    from planner.runtimes.overhead import backend_of

    if backend_of(device) == "cpu" and not placement.is_default(plan) and plan.gpus == 1:
        return replace(plan, n_gpu_layers=None, n_cpu_moe=0, override_tensors=(), tensor_split=())
    return plan


def resolve(spec: ModelSpec, plan: Plan, fmt: WeightFormat) -> ResolvedPlan:
    if plan.tp != 1 or plan.pp != 1:
        raise PlannerInputError("--tp/--pp are vLLM options; llama.cpp splits layers over GPUs "
                                "(--device 2x NAME, --tensor-split)")
    if not placement.is_default(plan):
        placement.validate(spec, plan)
    if fmt.family not in ALLOWED_FAMILIES or fmt.name.startswith("checkpoint:"):
        raise PlannerInputError(f"--weights {fmt.name}: llama.cpp loads GGUF files, not safetensors; use a GGUF type "
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
    build = plan.build or DEFAULT_BUILD
    if build not in MODELLED_BUILDS:
        raise PlannerInputError(f"--runtime llama.cpp@{build}: builds modelled: {', '.join(MODELLED_BUILDS)}")
    frontend = (plan.frontend or "server").lower()
    if frontend not in FRONTENDS:
        raise PlannerInputError(f"--frontend {plan.frontend}: one of {', '.join(FRONTENDS)}")
    if plan.n_outputs_max is not None and plan.n_outputs_max < 1:
        raise PlannerInputError(f"--n-outputs-max: must be >= 1, got {plan.n_outputs_max}")
    n_outputs = n_outputs_max(plan, frontend, build, batch)
    if spec.has_encoders and plan.text_only is None:
        notes.append("llama.cpp: text GGUF only; pass --with-encoders to add the mmproj (F16) encoders")
    if spec.extra.get("checkpoint") is not None:
        notes.append(f"llama.cpp reads GGUF, not the folder's safetensors: planned as its {fmt.name} conversion "
                     "(convert_hf_to_gguf + llama-quantize)")
    return ResolvedPlan(plan, k, v, ubatch=ubatch, batch=batch, flash_attn=flash, kv_unified=unified,
                        text_only=bool(plan.text_only) if plan.text_only is not None else True,
                        notes=tuple(notes), frontend=frontend, build=build, n_outputs=n_outputs)


DRAFT_N_MAX = 3    # common/common.h common_params_speculative_draft::n_max default (--draft-max); measured: n_outputs_max 4 with a drafter, 1 slot


# Builds whose Gemma 4 MTP drafter (gemma4-assistant) reads the target's KV cells instead of
# keeping its own cache: llama.cpp PR #27781 (src/models/gemma4-assistant.cpp builds its attention
# input over the target context, cparams.ctx_other; the assistant has no K/V projections).
SHARED_DRAFT_KV_BUILDS = ("b11549",)


def drafter_terms(spec: ModelSpec, plan: Plan, fmt: WeightFormat, rp: ResolvedPlan) -> list[Term]:
    """llama-server -m TARGET -md DRAFTER: the drafter's weights (same GGUF type as the target), its
    compute buffer and its KV cache as the build allocates it. A Gemma 4 `-assistant` (MTP) drafter
    keeps no cache of its own where the build shares the target's cells (SHARED_DRAFT_KV_BUILDS;
    older builds are refused, their drafter cache is not modelled); any other drafter (a smaller
    model of the same vocabulary, --spec-type draft-simple) gets its own context of the target's
    size, its cache in the drafter's own types (-ctkd / -ctvd, default f16) and its compute buffer
    by the target rules (_server_compute_term; not measured). Gemma 4 assistants are measured:
    every pair start in measurements/llama_cpp/server/*-draft_*.json (b11549, CPU backend).

    What b11549 does (common/speculative.cpp common_speculative_init_result,
    common_base_params_to_speculative): the drafter's context copies the target's n_ctx, n_batch,
    n_ubatch, slots, kv_unified and flash attention, takes its own cache types (-ctkd/-ctvd,
    default f16) and reserves n_outputs_max = n_parallel logits rows (not the target's
    n_parallel x (1 + n_draft)). A Gemma 4 assistant runs as --spec-type draft-mtp
    (LLAMA_CONTEXT_TYPE_MTP, ctx_other = the target): src/llama-model.cpp create_memory gives it a
    llama_kv_cache_iswa whose every layer shares the target's last full / sliding layer
    (`sharing with layer N`): it logs `llama_kv_cache: size = ...` for the shared tensors but no
    `KV buffer size` line, and allocates nothing. Its compute buffer: _assistant_compute_terms. The
    draft length (--spec-draft-n-max) changes only the target's n_outputs_max (measured: 3 and 8
    give the same drafter buffers)."""

    from planner.model.resolve import resolve_model

    dspec = resolve_model(plan.draft)
    if dspec.vocab_size != spec.vocab_size:
        raise PlannerInputError(f"--draft {plan.draft}: its vocabulary ({dspec.vocab_size}) is not the target's "
                                f"({spec.vocab_size}); llama-server needs a drafter with the same vocabulary")
    if dspec.arch == "gemma4_assistant" and rp.build not in SHARED_DRAFT_KV_BUILDS:
        raise PlannerInputError(f"--draft {plan.draft} with llama.cpp {rp.build}: before PR #27781 the Gemma 4 "
                                "assistant kept KV cells of its own, which the planner does not model; plan it "
                                f"with the default build ({DEFAULT_BUILD})")
    # common_base_params_to_speculative: the drafter's own cache types (params_spec.cache_type_k/v,
    # default f16) and n_outputs_max = n_parallel (dplan's server rule without a draft)
    dplan = replace(plan, model=plan.draft, draft=None, n_outputs_max=None, kv_type_k="f16",
                    kv_type_v="f16")
    dmm = build(dspec, dplan, fmt)
    shared = dspec.arch == "gemma4_assistant" and rp.build in SHARED_DRAFT_KV_BUILDS
    out = []
    w = sum(t.const for t in dmm.terms if t.category == "weights" and t.place == "device")
    host = sum(t.const for t in dmm.terms if t.category == "weights" and t.place != "device")
    out.append(Term(f"drafter weights ({dspec.name}, {fmt.name})", "weights", "device", const=w,
                    detail=f"llama-server -md: a second model; {host / 2**20:.1f} MiB of it on the host below"))
    if host:
        out.append(Term(f"drafter token embedding ({dspec.name})", "weights", "host", const=host,
                        detail="input-layer tensors stay on the host, as the target's"))
    if not shared:
        for t in dmm.terms:
            if t.category == "kv":
                out.append(replace(t, name=f"drafter {t.name}", detail=t.detail + "; the drafter's own context"))
    if dspec.arch == "gemma4_assistant":
        out += _assistant_compute_terms(dspec, dmm.resolved, spec, rp)
    else:
        out += [replace(t, name=f"drafter {t.name}") for t in dmm.terms if t.name.startswith("compute buffer")]
    out.append(Term(f"drafter output buffer ({dspec.name})", "compute", "host",
                    const=dspec.vocab_size * plan.sequences * 4,
                    detail="n_vocab x n_parallel x float32 (the drafter's n_outputs_max is n_parallel)"))
    return out


def _assistant_compute_terms(dspec: ModelSpec, rp: ResolvedPlan, target: ModelSpec,
                             target_rp: ResolvedPlan) -> list[Term]:
    """The Gemma 4 assistant's compute buffer: ggml-alloc replayed on its graph
    (planner/runtimes/ggml_alloc.py: src/models/gemma4-assistant.cpp's reserve graph, ggml-alloc.c's
    in-place reuse, best-fit holes and high-water mark), which reproduces all 182 measured pair
    starts to the log's 0.01 MiB. The graph attends over the target's cells: src/llama-kv-cache.cpp
    overrides a shared cache's size with its source's (`kv_size = N overridden to M to match the
    shared source cache`), so the full mask is the target's cells of one stream and the sliding mask
    its sliding cells (window x seqs + ubatch, at most the context per sequence).

    As a function of the context it is piecewise linear, and the Terms are that closed form, read
    off the replay (an evaluation, not a fit: tests/test_llamacpp_server.py checks the Terms
    against the replay at every context up to 256k and against the starts): from some k0 on the
    buffer is one line growing with the full-attention cells (the f32 scores n_kv x ubatch x
    n_head and the mask without flash attention, the f16 mask with it), read off the replay at two
    large cell counts; k0 is the first 256-cell point at or above the sliding cap (window x seqs
    + ubatch) where the replay is on that line. Below k0 the sliding mask grows too, the fixed
    phases dominate and ggml-alloc's holes make the replay irregular over the first cells: there
    the Terms follow the replay from 256-cell point to 256-cell point (a context is padded to 256
    cells, so that is every context), one Term per run of equal steps. The Terms share one name:
    the breakdown shows them as one row."""
    from planner.runtimes.ggml_alloc import buffer_bytes, gemma4_assistant_graph, piecewise

    n = rp.ubatch
    swa_t = [l for l in target.cache_layers if l.sliding] if any(l.sliding for l in dspec.layers) else []
    stream = _cells(target_rp, False, None)
    cap = (_cells(target_rp, True, swa_t[0].window).cap or 0) if swa_t else 0
    n_out = min(rp.n_outputs, n)
    layers = [(l.sliding, l.n_heads, l.head_dim) for l in dspec.layers]
    bb = int(dspec.extra.get("backbone_hidden_size") or dspec.hidden_size)
    n_ff = max((l.ffn_dim for l in dspec.layers), default=0)

    @lru_cache(maxsize=None)
    def replay(n_kv: int) -> int:
        n_swa = min(n_kv, cap) if cap else n_kv               # --swa-full: the sliding cache is the full size
        return buffer_bytes(*gemma4_assistant_graph(
            backbone=bb, hidden=dspec.hidden_size, n_ff=n_ff, layers=layers, vocab=dspec.vocab_size, n_tokens=n,
            n_outputs=n_out, n_kv=n_kv, n_kv_swa=n_swa, flash_attn=rp.flash_attn))

    name = f"drafter compute buffer ({dspec.name}, ubatch {n})"
    detail = ("ggml-alloc replayed on the gemma4-assistant graph (" + (
        "f16 masks, flash attention" if rp.flash_attn else f"f32 scores n_kv x {n} x {layers[-1][1]} heads + f32 masks")
        + f"); its attention reads the target's KV cells (PR #27781); CPU backend, llama.cpp {rp.build}")
    return segment_terms(piecewise(replay, cap, CTX_PAD), stream.scale, name, detail)


def segment_terms(segments, scale: int, name: str, detail: str) -> list[Term]:
    """Terms of a replay's closed form (ggml_alloc.piecewise: the buffer at 256 cells, runs of
    equal 256-cell steps, then one line from k0), over the cells of one stream (`scale`: the
    sequences of a unified cache). They share one name: the breakdown shows them as one row."""
    base, runs, (k0, slope) = segments
    out = [Term(name, "compute", "device", const=base, detail=detail)]
    for c, run, step in runs:
        out.append(Term(name, "compute", "device", per_cell=step, floor=min(0, step * run),
                        cells=Cells(pad=CTX_PAD, scale=scale, add=-c, cap=run), detail=detail))
    out.append(Term(name, "compute", "device", per_cell=slope, cells=Cells(pad=CTX_PAD, scale=scale, add=-k0),
                    detail=detail))
    return out


def n_outputs_max(plan: Plan, frontend: str, build: str, n_batch: int) -> int:
    """Logits rows the context reserves. llama-server (tools/server/server-context.cpp
    server_output_limits, PR #23861): min(n_batch, n_parallel x (1 + n_draft)), at least 1; the
    library (llama_context_default_params) and builds before PR #23861: n_batch, so a whole
    ubatch of logits is reserved. Measured: every server load in measurements/llama_cpp/server
    logs `n_outputs_max = n_parallel`."""
    if plan.n_outputs_max is not None:
        return min(plan.n_outputs_max, n_batch)
    if frontend == "library" or build in LIBRARY_ONLY_BUILDS:
        return n_batch
    n_draft = DRAFT_N_MAX if plan.draft else 0
    return max(1, min(n_batch, plan.sequences * (1 + n_draft)))


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
    if "gguf_tensors" in spec.extra:
        from planner.model.gguf_spec import gguf_weight_bytes_by_role

        rows = [(r, b, f"{t} (from the file)") for r, b, t in gguf_weight_bytes_by_role(spec)]
        data = sum(t[3] for t in spec.extra["gguf_tensors"])
        pad = max(spec.extra["file_bytes"] - spec.extra["data_offset"] - data, 0)
    elif fmt.family == "float":
        # an F32 / F16 / BF16 GGUF (convert_hf_to_gguf --outtype): 1-D tensors, norms and the MoE
        # router stay F32 (gguf_mix.converter_type), so the bytes come from the GGUF table;
        # encoders come from the separate mmproj GGUF
        rows, pad = _float_gguf_rows(spec, fmt)
        rows += [x for x in loaded_weight_bytes(spec, fmt, rp) if x[0] in ("vision", "audio", "projector")]
    else:
        rows, pad = list(loaded_weight_bytes(spec, fmt, rp)), _alignment_padding(spec, fmt)
    terms: list[Term] = [_weight_term(role, nbytes, types, plan) for role, nbytes, types in rows]
    if pad:
        terms.append(Term("GGUF alignment padding", "weights", "device", const=pad,
                          detail="32-byte alignment between tensors in the mapped file"))
    pl = None
    if not placement.is_default(plan):
        # -ngl / --n-cpu-moe / -ot / several GPUs: planner/runtimes/placement.py
        pl = placement.placement_of(spec, plan)
        terms = placement.split_weight_terms(spec, fmt.name, pl, terms, _ROLE_OF_COMPONENT)

    # KV caches: one term per (kind, window) with the layers' summed bytes per cell
    v_width_max = max((l.kv_width for l in spec.cache_layers), default=0)
    groups: dict[tuple, list] = {}
    for l in spec.cache_layers:
        # each layer's cache lives on its layer's device (llama-kv-cache.cpp, offload_kqv)
        gpu = pl.gpu_of(l.index) if pl is not None else 0
        groups.setdefault((l.sliding, l.window if l.sliding else None, gpu), []).append(l)

    def v_width(l) -> int:
        return l.kv_width if rp.flash_attn else v_width_max

    for (sliding, window, gpu), ls in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2] < 0, kv[0][2])):
        per_cell = sum(kt.row_bytes(l.kv_width) + vt.row_bytes(v_width(l)) for l in ls)
        cells = _cells(rp, sliding, window)
        label = f"SWA KV cache, {len(ls)} layers" if sliding else f"KV cache, {len(ls)} full-attention layers"
        detail = (f"K {kt.name} + V {vt.name}" + ("" if rp.flash_attn else ", V transposed at the widest layer")
                  + (f"; window {window} x {rp.plan.sequences if rp.kv_unified else 1} + ubatch {rp.ubatch}"
                     if sliding and not rp.plan.swa_full else ""))
        if pl is not None:
            label += f" on the {placement.gpu_label(gpu, pl.n_gpus)}"
        terms.append(Term(label, "kv", "host" if gpu == placement.HOST else "device", per_cell=per_cell,
                          cells=cells, detail=detail, gpu=max(gpu, 0)))

    if pl is None:
        terms += compute_terms(spec, rp)
    else:
        terms += placement.compute_terms(spec, rp, pl, fmt.name, compute_terms)
    terms.append(Term("output buffer (logits)", "compute", "host",
                      const=spec.vocab_size * plan.sequences * 4, detail="n_vocab x n_seq x float32"))
    if plan.draft:
        terms += drafter_terms(spec, plan, fmt, rp)

    def layer_caches(ctx: int) -> list[LayerCache]:
        out = []
        for l in spec.cache_layers:
            c = _cells(rp, l.sliding, l.window)
            out.append(LayerCache(l.index, l.sliding, l.kv_width, v_width(l), kt, vt, c(ctx) // c.streams, c.streams))
        return out

    return MemoryModel(spec, rp, NAME, tuple(terms), granularity=CTX_PAD, max_context=spec.max_context,
                       layer_caches=layer_caches, notes=rp.notes)


# Compute buffer (sched_reserve on the CPU backend): the worst-case ubatch graph reserved by
# ggml-alloc, which reuses memory between ops, so the buffer is the high-water mark of one phase:
# - logits: the output projection writes n_outputs x n_vocab f32 (n_outputs = n_ubatch in the
#   reserve: n_outputs_max defaults to n_batch), while the final hidden states (a few
#   n_embd x n_ubatch f32 rows; plus the dense-MLP row on Gemma 4 MoE) are still live;
# - attention without flash attention: the f32 scores n_kv x n_ubatch x n_head of a full-attention
#   layer, its f32 mask, the sliding layers' mask and the layer's other activations;
# - with flash attention the scores are never materialised: f16 masks only. On Gemma 4 the masks
#   stay live until the last (full-attention) layer and the allocator places the logits above them.
# Fitted to measurements/llama_cpp (CPU backend); see tests/test_llamacpp_measured.py for the error.
ACT_ROWS = {"gemma4": 3, "gemma4_unified": 3, "gemma4_assistant": 3}   # n_embd rows live with the logits
# Other activations live while a full-attention layer's f32 scores are (bytes per token): a base,
# ~3.4 copies of the query-sized rows (q, the attention output and its permuted copy) and the
# per-layer-embedding rows; fitted on the five Gemma 4 shapes (E2B, E4B, 12B, 26B-A4B, 31B).
CARRY_BASE, CARRY_Q, CARRY_PLE = 39_000, 3.39, 1.0
# Allocator slack: ggml-alloc sometimes places the logits above a live layer activation; a
# fraction of the layer heap is added so the error is balanced (tests list the measured spread).
SLACK_FA, SLACK_NOFA = 0.15, 0.1
MASK_FA = 0.75       # share of the f16 masks found below the logits


def _carry_per_token(spec: ModelSpec) -> float:
    q = max((l.n_heads * l.head_dim for l in spec.layers), default=0) * 4
    ple = spec.ple_dim * spec.n_layers * 4
    return CARRY_BASE + CARRY_Q * q + CARRY_PLE * ple


# Compute buffer with n_outputs_max below the ubatch (llama-server since PR #23861, measured on
# b11549's CPU backend, measurements/llama_cpp/server). For a catalogue Gemma 4 target in a setting
# of the precomputed table the buffer is ggml-alloc replayed on its graph (replayed_compute_terms:
# exact on every committed start); the rule below is kept where the replay does not reach (a
# profile outside the catalogue, Gemma 3/3n and other architectures, a ubatch / output count /
# sliding cap outside REPLAY_*, layer placement across devices). The rule: the logits phase shrinks to n_outputs rows
# and the buffer becomes the layers' own high-water mark, which the sweep shows to be, exactly in
# its structure (175 of the 180 loads within 2 %, the others listed in tests/test_llamacpp_server.py):
# - flash attention: ACT x ubatch + the f16 masks of the full-attention layers (n_kv x ubatch) and
#   of the sliding layers (their cells x ubatch): llama-graph.cpp build_attn_inp_kq_mask casts the
#   masks to f16 for flash attention and both stay live for the whole graph (inputs);
# - no flash attention: the larger of the scores phase of a full-attention layer (f32 scores
#   n_kv x ubatch x n_head + the f32 masks + CARRY x ubatch other live rows) and the layer phase
#   (ACT x ubatch + the f32 masks + the attention output rows of a sliding layer, n_head x
#   head_dim_swa f32 per token: llama-graph.cpp build_attn_mha's permuted kqv copy);
# - the quantized-KV (q8_0/q4_0) flash-attention path adds 1.28 MiB on every model (a conversion
#   buffer in ggml-cpu's flash-attention op, not modelled: under 1 %).
# ACT and CARRY are the rows a layer keeps live per token (FFN gate/up/activation, per-layer
# embedding inputs, residual, norms): measured per architecture from the two loads named in
# SERVER_ACT_SOURCE, in bytes per token; the structure above was not fitted, only these two rows.
# ACT is reproduced from the FFN-phase tensors by layer_activation_rows to the byte for 12B, 31B,
# 26B-A4B and E4B (E2B: 3.7 % low), and CARRY from the rows live beside a full-attention layer's
# f32 scores by score_phase_rows (same four; E2B 16 % high): the rules for architectures not measured.
SERVER_ACT = {   # (arch, n_layers, hidden): (ACT, CARRY) bytes per ubatch token
    ("gemma4", 35, 1536): (249_917, 110_633),        # gemma-4-e2b
    ("gemma4", 42, 2560): (219_197, 163_881),        # gemma-4-e4b
    ("gemma4_unified", 48, 3840): (261_181, 175_145),  # gemma-4-12b
    ("gemma4", 30, 2816): (214_077, 165_929),        # gemma-4-26b-a4b
    ("gemma4", 60, 5376): (365_629, 304_169),        # gemma-4-31b
}
SERVER_ACT_SOURCE = ("c8192-ub512-b2048-np1-kf16-vf16-faon-nommap-noalloc",
                     "c131072-ub512-b2048-np1-kf16-vf16-faoff-nommap-noalloc")


def layer_activation_rows(spec: ModelSpec) -> int:
    """f32 values per ubatch token live at a layer's high-water mark (flash attention), from the
    tensors of the FFN phase (llama-graph.cpp build_ffn / build_moe_ffn, LLM_FFN_GELU + LLM_FFN_PAR):
    the gate and up projections, the activation and its product with up (4 x n_ff), the FFN input
    (n_embd); for a MoE layer the dense MLP beside the experts (4 x n_ff) and the routed experts'
    gate/up/activation/product per used expert (4 x n_ff_exp x n_used) with their down projections
    (n_embd x n_used) before the weighted sum; Gemma 3n/4's per-layer embedding inputs, live for the
    whole graph (n_layer x n_embd_per_layer, plus two rows of one layer's). Reproduces the measured
    ACT (SERVER_ACT) of 12B, 31B, 26B-A4B and E4B to the byte, E2B 3.7 % low (tests)."""
    rows = 0
    for l in spec.layers:
        r = 4 * l.ffn_dim
        r += 4 * l.expert_ffn_dim * l.n_experts_used + spec.hidden_size * l.n_experts_used if l.n_experts else \
            spec.hidden_size
        rows = max(rows, r)
    if spec.ple_dim:
        rows += spec.ple_dim * spec.n_layers + 2 * spec.ple_dim
    return rows


# bytes per token beside the activation rows in every measured server buffer (0.03 MiB per 512
# tokens, 0.11 per 2048: the graph's per-token inputs, positions and indices, and their padding)
INPUT_BYTES_PER_TOKEN = 61


def score_phase_rows(spec: ModelSpec) -> int:
    """f32 values per ubatch token live beside a full-attention layer's f32 scores (no flash
    attention; llama-graph.cpp build_attn_mha): the query, its permuted copy and the attention
    output (3 x n_head x head_dim of a full layer), five n_embd rows (the residual stream, the
    attention norm's output and the input of the next ops), one more on a MoE model (the router's
    input beside the dense MLP's), and on Gemma 3n/4 the per-layer embedding inputs with two
    n_embd rows of their projection. Reproduces the measured CARRY (SERVER_ACT) of 12B, 31B,
    26B-A4B and E4B within the log's 0.01 MiB rounding (20 B per token); for E2B it is 16 % above
    the measurement (its measured row is used)."""
    full = [l for l in spec.layers if not l.sliding] or list(spec.layers)
    q = max((l.n_heads * l.head_dim for l in full), default=0)
    rows = 3 * q + 5 * spec.hidden_size + (spec.hidden_size if spec.is_moe else 0)
    if spec.ple_dim:
        rows += spec.ple_dim * spec.n_layers + 2 * spec.hidden_size
    return rows


def server_activation(spec: ModelSpec) -> tuple[int, int, bool]:
    """(ACT, CARRY, measured) bytes per ubatch token. A measured architecture uses its row of
    SERVER_ACT; any other gets both from its tensors (layer_activation_rows, score_phase_rows)."""
    key = (spec.arch if spec.arch != "gemma4_assistant" else "gemma4", spec.n_layers, spec.hidden_size)
    if key in SERVER_ACT:
        a, c = SERVER_ACT[key]
        return a, c, True
    return (4 * layer_activation_rows(spec) + INPUT_BYTES_PER_TOKEN,
            4 * score_phase_rows(spec) + INPUT_BYTES_PER_TOKEN, False)


# Settings whose Gemma 4 target compute buffer is precomputed (profiles/derived/server_compute.json,
# written by `python -m planner.runtimes.weights_table_build`): llama-server's ubatch sizes, the
# output rows of 1/2/4/8 slots without a drafter and of 1/4 slots with n_draft 3/8, flash attention
# on/off, f16 or quantized (rotated) K and V, the sliding cap of 1 to 4 sequences or --swa-full.
REPLAY_UBATCH = (256, 512, 1024, 2048)
REPLAY_OUTPUTS = (1, 2, 4, 8, 9, 16, 36)
REPLAY_SWA_SEQS = (1, 2, 4)
REPLAY_ARCHS = ("gemma4", "gemma4_unified")


def replay_key(ubatch: int, n_outputs: int, flash_attn: bool, rot_k: bool, rot_v: bool, cap: int | None) -> str:
    return f"ub{ubatch}|out{n_outputs}|fa{int(flash_attn)}|rot{int(rot_k)}{int(rot_v)}|swa{cap if cap else 'full'}"


def replay_keys(spec: ModelSpec) -> list[str]:
    """Every setting the table holds for a Gemma 4 target (llama-server refuses a quantized V
    cache without flash attention: those are left out)."""
    window = next(l.window for l in spec.layers if l.sliding)
    keys = []
    for ub in REPLAY_UBATCH:
        caps = [ceil_to(window * s + ub, CTX_PAD) for s in REPLAY_SWA_SEQS] + [None]
        for out in REPLAY_OUTPUTS:
            for fa in (True, False):
                for rk, rv in ((False, False), (True, False), (False, True), (True, True)):
                    if rv and not fa:
                        continue
                    keys += [replay_key(ub, out, fa, rk, rv, cap) for cap in caps]
    return keys


def replay_segments(spec: ModelSpec, key: str):
    """ggml-alloc replayed on the Gemma 4 target graph for one setting (ggml_alloc.gemma4_target_graph),
    as its closed form over the cells of one stream (ggml_alloc.piecewise). Used to build the table
    and by the tests; not on the `fit` path."""
    from planner.runtimes.ggml_alloc import buffer_bytes, gemma4_target_graph, piecewise

    ub, out, fa, rot, swa = key.split("|")
    n, n_out, flash = int(ub[2:]), int(out[3:]), fa == "fa1"
    rot_k, rot_v = rot[3] == "1", rot[4] == "1"
    cap = 0 if swa == "swafull" else int(swa[3:])
    layers = [(l.sliding, l.n_heads, l.n_kv_heads, l.head_dim, l.k_eq_v, l.kv_source is not None, l.ffn_dim,
               l.n_experts, l.n_experts_used, l.expert_ffn_dim) for l in spec.layers]

    @lru_cache(maxsize=None)
    def replay(n_kv: int) -> int:
        return buffer_bytes(*gemma4_target_graph(
            hidden=spec.hidden_size, vocab=spec.vocab_size, ple_dim=spec.ple_dim, layers=layers, n_tokens=n,
            n_outputs=n_out, n_kv=n_kv, n_kv_swa=min(n_kv, cap) if cap else n_kv, flash_attn=flash,
            rot_k=rot_k, rot_v=rot_v))

    base, runs, line = piecewise(replay, cap, CTX_PAD)
    return [base, [list(r) for r in runs], list(line)]


def replayed_compute_terms(spec: ModelSpec, rp: ResolvedPlan) -> list[Term] | None:
    """llama-server's compute buffer of a catalogue Gemma 4 target: ggml-alloc replayed on its graph
    (planner/runtimes/ggml_alloc.py gemma4_target_graph: src/models/gemma4.cpp, llama-graph.cpp,
    ggml-alloc.c), which reproduces all 371 target starts in measurements/llama_cpp/server (180
    target starts and the targets of 185 pair files, b11549, CPU backend: E2B, E4B, 12B, 26B-A4B,
    31B; f16/bf16/q8_0/q4_0 caches, flash attention on/off, 1 or 4 slots, unified, --swa-full,
    1 to 36 output rows) to the log's 0.01 MiB, including the regimes the measured rows missed
    (quantized caches: the Hadamard rotations of q/k/v and of the attention output; 1024-cell
    layer phases). Read from the precomputed table (closed forms, ggml_alloc.piecewise), so the
    `fit` path never runs it; None where the table does not reach (a profile outside the catalogue,
    another architecture, a ubatch / output count / sliding cap not in REPLAY_*): the caller then
    uses the measured-row rule (_server_compute_term)."""
    if spec.arch not in REPLAY_ARCHS or not (rp.n_outputs and rp.n_outputs < rp.ubatch):
        return None
    from planner.readers.weights_table import server_compute_lookup

    swa = [l for l in spec.cache_layers if l.sliding]
    if not swa:
        return None
    cap = None if rp.plan.swa_full else _cells(rp, True, swa[0].window).cap
    out = min(rp.n_outputs, rp.ubatch)
    # llama-kv-cache.cpp rotates every block-quantized cache (attn_rot_k/v): the KV type's own flag
    rot_k, rot_v = KV_TYPES[rp.kv_type_k].quantized, KV_TYPES[rp.kv_type_v].quantized
    segs = server_compute_lookup(spec, replay_key(rp.ubatch, out, rp.flash_attn, rot_k, rot_v, cap))
    if segs is None:
        return None
    n = rp.ubatch
    name = f"compute buffer (ubatch {n})"
    detail = (f"ggml-alloc replayed on the {spec.arch} graph (" + ("f16 masks, flash attention" if rp.flash_attn else
              "f32 scores + f32 masks, no flash attention") + (", rotated quantized cache" if rot_k or rot_v else "")
              + f"); n_outputs_max {rp.n_outputs} ({rp.frontend}, llama.cpp {rp.build}); CPU backend graph; "
              "CUDA/Vulkan/Metal split it differently (see planner explain)")
    base, runs, line = segs
    return segment_terms((base, [tuple(r) for r in runs], tuple(line)), _cells(rp, False, None).scale, name, detail)


def _server_compute_term(spec: ModelSpec, rp: ResolvedPlan, logits: bool) -> Term:
    n = rp.ubatch
    act, carry, measured = server_activation(spec)
    swa = [l for l in spec.cache_layers if l.sliding]
    swa_cells = _cells(rp, True, swa[0].window) if swa else None
    if swa_cells is None:
        swa_n = 0
    elif swa_cells.cap and not rp.plan.swa_full:
        swa_n = swa_cells.cap
    else:
        swa_n = -1                                   # --swa-full: as many cells as the full layers
    full = _cells(rp, False, None)
    mask_cells = Cells(pad=CTX_PAD, scale=full.scale)          # n_kv x n_ubatch of one stream
    heads = max((l.n_heads for l in spec.layers if not l.sliding), default=0) or \
        max((l.n_heads for l in spec.layers), default=0)
    q_swa = min((l.n_heads * l.head_dim for l in spec.layers), default=0)
    out_rows = min(rp.n_outputs, n)
    # the logits phase (n_outputs rows of n_vocab f32 with the final hidden rows live) reuses the
    # layers' memory: the buffer is the larger of the two (measured: 1 or 4 rows change nothing)
    logit_phase = (4 * spec.vocab_size * out_rows + 4 * _final_rows(spec) * n) if logits else 0
    src = "measured per architecture" if measured else "from its FFN and attention tensors (architecture not measured)"
    name = f"compute buffer (ubatch {n})"
    tail = (f"n_outputs_max {rp.n_outputs} ({rp.frontend}, llama.cpp {rp.build}); layer activations {src}; "
            "CPU backend graph; CUDA/Vulkan/Metal split it differently (see planner explain)")
    swa_const = (swa_n if swa_n > 0 else 0)
    swa_cell = 1 if swa_n < 0 else 0                # swa-full masks grow with the context
    if rp.flash_attn:
        return Term(name, "compute", "device", const=act * n + 2 * n * swa_const,
                    per_cell=2 * n * (1 + swa_cell), cells=mask_cells, floor=logit_phase,
                    detail=f"layer activations + f16 masks (flash attention); logits {out_rows} row(s); {tail}")
    layer_phase = act * n + 4 * q_swa * n + 4 * n * swa_const
    return Term(name, "compute", "device", const=carry * n + 4 * n * swa_const,
                per_cell=4 * n * (heads + 1 + swa_cell), cells=mask_cells,
                floor=max(layer_phase, logit_phase), floor_per_cell=4 * n * (1 + swa_cell),
                detail=(f"max(layer activations + f32 masks, f32 scores n_kv x {n} x {heads} heads + f32 masks) "
                        f"(no flash attention); logits {out_rows} row(s); {tail}"))


def _final_rows(spec: ModelSpec) -> int:
    """f32 rows per token live beside the logits: the final hidden states (and the dense-MLP row
    of a Gemma 4 MoE); see compute_term."""
    rows = ACT_ROWS.get(spec.arch, 2) * spec.hidden_size
    moe = [l for l in spec.layers if l.n_experts]
    if moe and spec.arch in ACT_ROWS:
        rows += max(l.ffn_dim for l in moe)
    return rows


def compute_terms(spec: ModelSpec, rp: ResolvedPlan, logits: bool = True) -> list[Term]:
    """The compute buffer as Terms: the replayed graph where the table holds it (with the logits
    phase: the backend that runs the output layer), else compute_term's rule."""
    return (replayed_compute_terms(spec, rp) if logits else None) or [compute_term(spec, rp, logits)]


def compute_term(spec: ModelSpec, rp: ResolvedPlan, logits: bool = True) -> Term:
    """`logits=False`: a backend that holds layers but not the output layer (placement.py).
    llama-server of a build with n_outputs_max (PR #23861) reserves few logits rows:
    _server_compute_term; the library reserves a whole ubatch of them: the rule below."""
    if rp.n_outputs and rp.n_outputs < rp.ubatch:
        return _server_compute_term(spec, rp, logits)
    n = rp.ubatch
    gemma4 = spec.arch in ACT_ROWS
    rows = _final_rows(spec)                         # final hidden states (+ a MoE's shared dense-MLP row)
    logits = (4 * spec.vocab_size * n + 4 * rows * n) if logits else 0
    carry = int(_carry_per_token(spec) * n)
    swa = [l for l in spec.cache_layers if l.sliding]
    swa_cells = _cells(rp, True, swa[0].window) if swa else None
    # sliding-cache cells at their cap (window x seqs + ubatch; with --swa-full they are the full size)
    swa_n = swa_cells.cap if swa_cells is not None and swa_cells.cap else 0
    full = _cells(rp, False, None)
    mask_cells = Cells(pad=CTX_PAD, scale=full.scale)          # n_kv x n_ubatch in all streams together
    heads = max((l.n_heads for l in spec.layers if not l.sliding), default=max((l.n_heads for l in spec.layers), default=0))
    backend = "CPU backend graph, measured; CUDA/Vulkan/Metal split it differently (see planner explain)"
    name = f"compute buffer (ubatch {n})"
    if rp.flash_attn:
        if gemma4:
            # the f16 masks stay live to the last (full-attention) layer: the logits go above them
            swa_mask = 2 * n * (swa_n if not rp.plan.swa_full else 0)
            slack = int(SLACK_FA * carry)
            return Term(name, "compute", "device", const=logits + int(MASK_FA * swa_mask) + slack,
                        per_cell=int(MASK_FA * 2 * n), cells=mask_cells,
                        detail=f"logits {logits / 2**20:.1f} MiB + f16 attention masks (flash attention); {backend}")
        return Term(name, "compute", "device", const=logits,
                    detail=f"logits {logits / 2**20:.1f} MiB (flash attention: no score matrix); {backend}")
    swa_mask = 4 * n * swa_n
    return Term(name, "compute", "device", const=swa_mask + carry, per_cell=4 * n * (heads + 1), cells=mask_cells,
                floor=logits + swa_mask + int(SLACK_NOFA * carry),
                detail=(f"max(logits {logits / 2**20:.1f} MiB, f32 scores n_kv x {n} x {heads} heads + f32 masks) "
                        f"(no flash attention); {backend}"))


def _float_gguf_rows(spec: ModelSpec, fmt: WeightFormat) -> tuple[list[tuple[str, int, str]], int]:
    """(role, bytes, types) of an F32/F16/BF16 text GGUF, and its alignment padding."""
    from planner.readers.weights_table import lookup

    entry = lookup(spec, fmt.name, False, False)
    if entry is not None and "gguf_float" in entry:
        g = entry["gguf_float"]
        roles, types, pad = g["roles"], {r: set(t) for r, t in g["types"].items()}, g["padding"]
    else:
        roles, types, pad = _float_gguf_roles(spec, fmt.name)
    return [(r, roles[r], "+".join(sorted(types[r]))) for r in sorted(roles, key=list(ROLE_COMPONENT).index)], pad


def _weight_term(role: str, nbytes: int, types: str, plan: Plan) -> Term:
    place = _place(role, plan)
    detail = types + ("; mmap: rows read on demand, not resident (--no-mmap: resident)" if place == "mapped" else "")
    return Term(ROLE_COMPONENT[role], "weights", place, const=nbytes, detail=detail)


@lru_cache(maxsize=256)
def _float_gguf_roles(spec: ModelSpec, ftype: str) -> tuple[dict[str, int], dict[str, set], int]:
    from planner.model.inventory import model_tensors

    role = {t.name: t.role for t in model_tensors(spec, include_vision=False, include_audio=False)}
    table = gguf_tensor_table(spec, ftype)
    roles: dict[str, int] = {}
    types: dict[str, set] = {}
    for name, _shape, typ, nb, _o in table:
        roles[role[name]] = roles.get(role[name], 0) + nb
        types.setdefault(role[name], set()).add(typ)
    span = max(o + nb for *_x, nb, o in table) - min(o for *_x, o in table)
    return roles, types, span - sum(roles.values())


def _place(role: str, plan: Plan) -> str:
    if role in MAPPED_ROLES and plan.mmap:
        return "mapped"
    return "host" if role in HOST_ROLES else "device"


def _alignment_padding(spec: ModelSpec, fmt: WeightFormat) -> int:
    """Bytes llama-quantize's 32-byte alignment adds between tensors of the text GGUF."""
    from planner.readers.weights_table import lookup

    entry = lookup(spec, fmt.name, False, False)
    if entry is not None and "padding" in entry:
        return int(entry["padding"])
    return _alignment_padding_uncached(spec, fmt)


def _alignment_padding_uncached(spec: ModelSpec, fmt: WeightFormat) -> int:
    from planner.model.formats import weight_bytes_by_tensor
    from planner.model.inventory import model_tensors

    tensors = model_tensors(spec, include_vision=False, include_audio=False)
    n_expert = max((l.n_experts for l in spec.layers), default=0)
    per = weight_bytes_by_tensor(tensors, fmt, arch=spec.arch, n_layer=spec.n_layers, n_expert=n_expert)
    pad = 0
    for b, _ in per.values():
        pad += (-b) % 32
    return pad


def device_terms(mm: MemoryModel, device) -> tuple[Term, ...]:
    """Terms that depend on the device: the tied output head's second copy on a discrete GPU, and
    on a CPU-only device the CPU_REPACK buffer (weights the CPU backend copies into its SIMD layout;
    `--no-repack` turns it off) with what it means for residency (resident_terms)."""
    from planner.runtimes.overhead import backend_of

    backend = backend_of(device)
    if backend == "cpu":
        kind = getattr(device, "kind", "cpu")
        isa = "arm" if kind in ("phone", "sbc") else "x86"
        fmt = mm.resolved.plan.weights
        try:
            rep = cpu_repack_bytes(mm.spec, fmt, isa)
        except (ValueError, KeyError):
            rep = 0
        return resident_terms(mm, rep, isa) + _drafter_repack_terms(mm, fmt, isa)
    if backend != "cuda" or not mm.spec.tie_word_embeddings:
        return ()
    emb = next((t for t in mm.terms if t.name == ROLE_COMPONENT["token_embedding"]), None)
    if emb is None:
        return ()
    out_gpu = 0
    if not placement.is_default(mm.resolved.plan):
        out_gpu = placement.placement_of(mm.spec, mm.resolved.plan).output_gpu
        if out_gpu == placement.HOST:
            return ()       # the output layer stays on the CPU: the tied head is the mapped token_embd
    out = [Term("output head (tied: token_embd loaded again on the GPU)", "weights", "device",
                const=emb.const, detail="llama-model-loader TENSOR_DUPLICATED", gpu=out_gpu)]
    demb = next((t for t in mm.terms if t.name.startswith("drafter token embedding")), None)
    if demb is not None:
        # src/models/gemma4-assistant.cpp load_arch_tensors: output = token_embd, TENSOR_DUPLICATED,
        # on the drafter's output device (-ngld, default all layers)
        out.append(Term(demb.name.replace("drafter token embedding", "drafter output head (tied: token_embd "
                                          "loaded again on the GPU)"), "weights", "device", const=demb.const,
                        detail="llama-model-loader TENSOR_DUPLICATED", gpu=out_gpu))
    return tuple(out)


def _drafter_repack_terms(mm: MemoryModel, fmt: str, isa: str) -> tuple[Term, ...]:
    """A drafter's weights repack like the target's (measured: the E2B assistant's Q4_0 start logs
    CPU_Mapped 57.30 + CPU_REPACK 5.41 MiB = cpu_model_buffers): CPU_REPACK on the host, the
    repacked tensors' file pages out of the budget as for the target (resident_terms)."""
    plan = mm.resolved.plan
    if not plan.draft:
        return ()
    from planner.model.resolve import resolve_model

    dspec = resolve_model(plan.draft)
    try:
        rep = cpu_repack_bytes(dspec, fmt, isa)
    except (ValueError, KeyError):
        return ()
    if not rep:
        return ()
    out = [Term(f"drafter CPU_REPACK ({dspec.name})", "weights", "host", const=rep,
                detail="its matmul weights copied into the CPU kernels' layout, as the target's"),
           Term(f"drafter repacked tensors' file pages ({dspec.name})", "weights", "device", const=-rep, floor=-rep,
                detail="counted once, as its CPU_REPACK")]
    if plan.mmap:
        out.append(Term(f"drafter repacked tensors' file pages, read once ({dspec.name})", "weights", "mapped",
                        const=rep, detail="clean, reclaimable file pages"))
    return tuple(out)


def resident_terms(mm: MemoryModel, rep: int, isa: str) -> tuple[Term, ...]:
    """What a CPU-only device really keeps resident of repacked weights, from the residency loads
    in measurements/llama_cpp/server/*-prompt32*.json (RSS and PSS from /proc/PID/smaps_rollup,
    llama.cpp b11549, after the load and after a prompt):
    - CPU_REPACK is anonymous memory: resident (E4B Q4_K_M: Pss_Anon 2051 MiB = CPU_REPACK 1810
      + KV 168 + compute 116 MiB, less untouched pages);
    - with mmap the loader prefetches the whole file (Pss_File 5043 MiB = the 5042 MiB mapping),
      but the repacked tensors' pages are read once, to repack, and never again: clean file pages,
      which the kernel reclaims under pressure (measured: Pss_File fell to 3899 MiB after a prompt
      on the shared machine while Pss_Anon stayed). They are reported as mapped, not budgeted;
      counting them and CPU_REPACK too charged those weights twice;
    - with --no-mmap the CPU buffer leaves the repacked tensors out (E4B: CPU 3756.71 MiB =
      5041.55 - 1809.84 + 525.00, the last the tied output head: token_embd loaded again for the
      output layer, llama-model-loader TENSOR_DUPLICATED; E2B likewise: 315.21 MiB).
    Which types repack depends on the CPU: ggml-cpu/repack.cpp ggml_repack_get_optimal_repack_type
    (REPACK_RULES: on ARM with dotprod/i8mm, phones and Apple, Q4_K, Q5_K, Q6_K, Q8_0 too)."""
    out: list[Term] = []
    plan = mm.resolved.plan
    if rep:
        rules = ", ".join(sorted(REPACK_RULES[isa]))
        out.append(Term("CPU_REPACK (weights repacked for the CPU matmul kernels)", "weights", "host", const=rep,
                        detail=f"ggml-cpu repack.cpp, {'ARM NEON dotprod/i8mm' if isa == 'arm' else 'x86 AVX2'}: "
                               f"{rules} matmul weights are copied into an interleaved layout "
                               "(llama.cpp --no-repack avoids it)"))
        # a negative term: these bytes are inside the mapped weight terms above (floor = const, as
        # Term.bytes_at takes the larger of the two)
        out.append(Term("repacked tensors' file pages (not resident after repacking)", "weights", "device",
                        const=-rep, floor=-rep, detail="counted once, as CPU_REPACK: " + (
                            "their mmap'd pages are read once to repack, clean and reclaimable (moved to mapped)"
                            if plan.mmap else "--no-mmap leaves them out of the CPU buffer")))
        if plan.mmap:
            out.append(Term("repacked tensors' file pages (read once, reclaimable)", "weights", "mapped", const=rep,
                            detail="mmap prefetch reads them at load; measured: the kernel drops them under pressure"))
    if not plan.mmap and mm.spec.tie_word_embeddings:
        emb = next((t for t in mm.terms if t.name == ROLE_COMPONENT["token_embedding"]), None)
        if emb is not None:
            out.append(Term("output head (tied: token_embd loaded again, --no-mmap)", "weights", "host",
                            const=emb.const, detail="llama-model-loader TENSOR_DUPLICATED; measured on the CPU "
                                                    "backend with --no-mmap (E2B 315.21, E4B 525.00 MiB)"))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# CPU backend model buffers: CPU_Mapped (the mmap'd span) and CPU_REPACK
# ---------------------------------------------------------------------------------------------
# ggml-cpu/repack.cpp ggml_repack_get_optimal_repack_type: which weight types the CPU backend
# copies into its own interleaved layout (an extra, really allocated buffer: CPU_REPACK) for its
# SIMD matmul kernels, and the row multiple each needs. Only weights used by MUL_MAT (2-D) or
# MUL_MAT_ID (3-D experts) move; token_embd / per_layer_token_embd (GET_ROWS) never do.
REPACK_RULES = {
    # x86-64 with AVX2 (AVX512 adds Q2_K)
    "x86": {"q4_0": 8, "q4_k": 8, "iq4_nl": 8, "mxfp4": 8},
    "x86-avx512": {"q4_0": 8, "q4_k": 8, "iq4_nl": 8, "mxfp4": 8, "q2_k": 8},
    # ARM with NEON dotprod + i8mm (Apple M2+, recent phones)
    "arm": {"q4_0": 4, "q4_k": 8, "q5_k": 8, "q6_k": 8, "iq4_nl": 4, "mxfp4": 4, "q8_0": 4},
}
CPU_TENSOR_ALIGNMENT = 32   # ggml-impl.h TENSOR_ALIGNMENT (CPU buffer type alignment)
_GET_ROWS_ONLY = ("token_embd.weight", "per_layer_token_embd.weight")


def gguf_tensor_table(spec: ModelSpec, ftype: str) -> list[tuple[str, tuple[int, ...], str, int, int]]:
    """(name, shape, type, bytes, offset in the data section) of the text GGUF for `ftype`, in
    file order: from the file for a GGUF spec, else as llama-quantize would write it."""
    if "gguf_tensors" in spec.extra:
        offs = spec.extra.get("gguf_offsets")
        rows = []
        off = 0
        for i, (name, shape, typ, nbytes) in enumerate(spec.extra["gguf_tensors"]):
            o = offs[i] if offs else off
            rows.append((name, shape, typ, nbytes, o))
            off = ceil_to(off + nbytes, int(spec.extra.get("alignment", 32)))
        return rows
    from planner.model.gguf_mix import choose_tensor_types, gguf_data_layout
    from planner.model.inventory import model_tensors

    fmt_name = "q4_0" if ftype == "qat-q4_0" else ftype
    tensors = model_tensors(spec, include_vision=False, include_audio=False)
    n_expert = max((l.n_experts for l in spec.layers), default=0)
    arch = {"gemma4_unified": "gemma4", "gemma4_assistant": "gemma4-assistant"}.get(spec.arch, spec.arch)
    types = choose_tensor_types(tensors, fmt_name, arch=arch, n_expert=n_expert, n_layer=spec.n_layers)
    layout = gguf_data_layout(tensors, types)
    by = {t.name: t for t in tensors}
    return sorted(((n, by[n].shape, types[n], nb, o) for n, (o, nb) in layout.items()), key=lambda r: r[4])


def _repacked(name: str, shape: tuple[int, ...], typ: str, rules: dict[str, int]) -> bool:
    if name in _GET_ROWS_ONLY or typ not in rules or len(shape) < 2 or not name.endswith(".weight"):
        return False
    rows = shape[-2]                      # ggml ne[1]: rows of a matrix, per-expert rows of a 3-D stack
    return rows % rules[typ] == 0


LAZY_MIN_BYTES = 4 * 1024**3   # llama-model-loader lazy_read::add, LLAMA_LAZY_MODE_AUTO: only above 4 GiB


def cpu_model_buffers(spec: ModelSpec, ftype: str, repack: bool = True, isa: str = "x86") -> list[tuple[str, int]]:
    """What `load_tensors: <buf> model buffer size` reports on the CPU backend (mmap, no GPU), in
    log order: CPU_Mapped = the file span from the first to the last byte of the tensors left in
    the mapping (llama_model_loader::get_mapping_range; tensors of other buffers lying between are
    included), a second CPU_Mapped for Gemma 4's per-layer embedding table when it is read lazily
    (TENSOR_READ_LAZY, above 4 GiB: its own context, its own mapped span), CPU_REPACK = the
    repacked tensors, each padded to the CPU buffer alignment."""
    table = gguf_tensor_table(spec, ftype)
    rules = REPACK_RULES[isa] if repack else {}
    gemma4 = spec.arch in ("gemma4", "gemma4_unified")

    def lazy(n: str, nb: int) -> bool:
        return gemma4 and n == "per_layer_token_embd.weight" and nb > LAZY_MIN_BYTES

    mapped = [(o, nb) for n, s, t, nb, o in table if not _repacked(n, s, t, rules) and not lazy(n, nb)]
    lazy_t = [(o, nb) for n, s, t, nb, o in table if lazy(n, nb)]
    rep = [nb for n, s, t, nb, o in table if _repacked(n, s, t, rules)]
    out: list[tuple[str, int]] = []
    for group in (mapped, lazy_t):
        if group:
            out.append(("CPU_Mapped", max(o + nb for o, nb in group) - min(o for o, _ in group)))
    if rep:
        out.append(("CPU_REPACK", sum(ceil_to(nb, CPU_TENSOR_ALIGNMENT) for nb in rep)))
    return out


@lru_cache(maxsize=1024)
def cpu_repack_bytes(spec: ModelSpec, ftype: str, isa: str = "x86") -> int:
    """CPU_REPACK bytes; catalogue models read it from the precomputed weights table."""
    from planner.readers.weights_table import lookup

    entry = lookup(spec, ftype, False, False)
    if entry is not None and isa in entry.get("repack", {}):
        return int(entry["repack"][isa])
    return _cpu_repack_bytes_uncached(spec, ftype, isa)


def _cpu_repack_bytes_uncached(spec: ModelSpec, ftype: str, isa: str) -> int:
    return sum(b for n, b in cpu_model_buffers(spec, ftype, True, isa) if n == "CPU_REPACK")


# ---------------------------------------------------------------------------------------------
# What llama.cpp's load log prints, predicted (tests, `planner explain`)
# ---------------------------------------------------------------------------------------------

def plan_from_log_settings(model: str, weights: str, *, n_ctx: int, n_ctx_seq: int | None, n_seq: int,
                           n_ubatch: int, n_batch: int | None, type_k: str, type_v: str, flash_attn: str | None,
                           swa_full: bool, kv_unified: bool, n_outputs_max: int | None = None) -> tuple[Plan, int]:
    """The planner Plan (and its per-sequence context) for the settings a llama.cpp log shows.
    A unified cache of n_ctx cells is context n_ctx // n_seq per sequence (the planner scales it
    back by n_seq); per-sequence streams hold n_ctx_seq cells each. A log that prints
    `n_outputs_max` is of a build with PR #23861 (b11549's rules, that value); one that does not
    is of an older build, whose every frontend reserved a ubatch of logits (0c1e570's rules)."""
    ctx = (n_ctx // max(n_seq, 1)) if kv_unified else (n_ctx_seq or n_ctx // max(n_seq, 1))
    plan = Plan(model=model, weights=weights, runtime=NAME, kv_type_k=type_k, kv_type_v=type_v, context=ctx,
                sequences=n_seq, ubatch=n_ubatch, batch=max(n_batch or N_BATCH, n_ubatch),
                flash_attn=flash_attn or "auto", swa_full=swa_full, kv_unified=kv_unified,
                frontend="server" if n_outputs_max else "library",
                build=DEFAULT_BUILD if n_outputs_max else LIBRARY_ONLY_BUILDS[0], n_outputs_max=n_outputs_max)
    return plan, ctx


def predicted_kv_caches(mm: MemoryModel, ctx: int) -> list[dict]:
    """One entry per KV cache llama.cpp creates (non-SWA first, then SWA; a model without
    sliding layers has one): cells per stream, layers, streams, K and V bytes."""
    out = []
    by_kind: dict[bool, list[LayerCache]] = {}
    for lc in mm.layer_caches(ctx):
        by_kind.setdefault(lc.sliding, []).append(lc)
    iswa = any(l.sliding for l in mm.spec.cache_layers) and any(not l.sliding for l in mm.spec.cache_layers)
    for sliding in (False, True):
        lcs = by_kind.get(sliding)
        if not lcs:
            continue
        out.append({"kind": ("SWA" if sliding else "non-SWA") if iswa else None, "cells": lcs[0].cells,
                    "layers": len(lcs), "streams": lcs[0].streams, "type_k": lcs[0].k_type.name,
                    "type_v": lcs[0].v_type.name, "k_bytes": sum(l.k_bytes for l in lcs),
                    "v_bytes": sum(l.v_bytes for l in lcs)})
    return out
