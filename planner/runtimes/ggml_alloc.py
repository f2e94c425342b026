"""A compute buffer from its graph: ggml-alloc's allocator replayed on the ggml graph llama.cpp builds.

llama.cpp sizes a compute buffer by planning the graph's tensors into one buffer
(ggml/src/ggml-alloc.c, ggml_gallocr_alloc_graph_impl, as in b11549): the graph's leaf inputs
first, in graph order; then node by node: a node whose op may run in place
(ggml_op_can_inplace: SCALE, ADD, MUL, RMS_NORM, ROPE, SOFT_MAX, UNARY, ...) takes over a parent
that the allocator owns (ggml_gallocr_is_own: never a view), is not a graph output, has the same
layout and has this node as its only remaining child; any other node gets the best-fitting free
block below the top (ggml_dyn_tallocr_alloc), else the top, which grows the buffer; after each
node a parent whose last child ran is freed (a view's source when its last view is done) and
merged with free neighbours. The buffer is the high-water mark. Sizes are aligned to the CPU
buffer's 32 bytes.

Used for the Gemma 4 MTP assistant (src/models/gemma4-assistant.cpp; every one of the 182 pair
starts in measurements/llama_cpp/server, b11549, CPU backend, to the log's 0.01 MiB) and for the
Gemma 4 targets (src/models/gemma4.cpp; all 180 target starts and the targets of the 185 pair
files, to the log's 0.01 MiB). Pure Python: ~140 nodes (assistant) well under a millisecond, ~2000
(target) about 2 ms; the targets' replays are precomputed (piecewise -> profiles/derived/
server_compute.json), never run on the `fit` path.
"""
from __future__ import annotations

ALIGNMENT = 32          # ggml-cpu buffer type alignment (TENSOR_ALIGNMENT)
_TOP = 1 << 62


def _aligned(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


class Tensor:
    """A graph tensor: its size in bytes, its sources, whether its op may run in place, and the
    tensor it views (a view owns no memory). `own=False`: memory outside this buffer (weights,
    the KV cache); `output`: a graph output, never freed or reused."""
    __slots__ = ("size", "srcs", "inplace", "view_of", "own", "output", "children", "views", "allocated", "offset")

    def __init__(self, size: int = 0, srcs=(), inplace: bool = False, view_of: "Tensor | None" = None,
                 own: bool = True, output: bool = False):
        self.size, self.srcs, self.inplace, self.view_of = size, list(srcs), inplace, view_of
        self.own, self.output = own and view_of is None, output
        self.children = self.views = 0
        self.allocated, self.offset = False, None


class _FreeBlocks:
    """ggml_dyn_tallocr on one chunk: free blocks sorted by offset, the last one the open top."""

    def __init__(self) -> None:
        self.blocks = [[0, _TOP]]
        self.max_size = 0

    def alloc(self, size: int) -> int:
        size = _aligned(size)
        best, best_size = -1, None
        for i, (_off, sz) in enumerate(self.blocks[:-1]):
            if sz >= size and (best_size is None or sz <= best_size):
                best, best_size = i, sz
        if best < 0:
            best = len(self.blocks) - 1
        off, sz = self.blocks[best]
        if sz == size:
            del self.blocks[best]
        else:
            self.blocks[best] = [off + size, sz - size]
        self.max_size = max(self.max_size, off + size)
        return off

    def free(self, off: int, size: int) -> None:
        size = _aligned(size)
        b = self.blocks
        for i, blk in enumerate(b):
            if blk[0] + blk[1] == off:
                blk[1] += size
                if i < len(b) - 1 and blk[0] + blk[1] == b[i + 1][0]:
                    blk[1] += b[i + 1][1]
                    del b[i + 1]
                return
            if off + size == blk[0]:
                blk[0], blk[1] = off, blk[1] + size
                if i > 0 and b[i - 1][0] + b[i - 1][1] == blk[0]:
                    b[i - 1][1] += blk[1]
                    del b[i]
                return
        pos = 0
        while pos < len(b) and b[pos][0] < off:
            pos += 1
        b.insert(pos, [off, size])


def buffer_bytes(leafs: list[Tensor], nodes: list[Tensor]) -> int:
    """The compute buffer ggml-alloc reserves for this graph (leafs and nodes in graph order)."""
    fb = _FreeBlocks()

    def allocate(t: Tensor) -> None:
        if t.allocated or not t.own or t.offset is not None:
            return
        t.allocated = True
        if t.inplace:
            for p in t.srcs:
                if p.allocated and not p.output and p.size == t.size and p.children == 1 and p.views == 0:
                    t.offset, p.allocated = p.offset, False
                    return
        t.offset = fb.alloc(t.size)

    for leaf in leafs:
        allocate(leaf)
    for n in nodes:
        if n.view_of is not None:
            n.view_of.views += 1
        for p in n.srcs:
            p.children += 1
    for n in nodes:
        allocate(n)
        for p in n.srcs:
            p.children -= 1
            if p.children or p.views:
                continue
            if p.view_of is not None:
                v = p.view_of
                v.views -= 1
                if v.views == 0 and v.children == 0 and v.allocated:
                    fb.free(v.offset, v.size)
                    v.allocated = False
            elif p.allocated and not p.output:
                fb.free(p.offset, p.size)
                p.allocated = False
    return fb.max_size


def gemma4_assistant_graph(*, backbone: int, hidden: int, n_ff: int, layers: list[tuple[bool, int, int]],
                           vocab: int, n_tokens: int, n_outputs: int, n_kv: int, n_kv_swa: int,
                           flash_attn: bool) -> tuple[list[Tensor], list[Tensor]]:
    """The reserve graph of src/models/gemma4-assistant.cpp (llama-graph.cpp build_attn_mha,
    build_norm, build_ffn LLM_FFN_GELU + LLM_FFN_PAR), as the b11549 scheduler prints it with
    GGML_SCHED_DEBUG=2: `layers` = (sliding, n_head, head_dim) per layer; n_kv / n_kv_swa the cells
    of one stream of the target's full / sliding caches (the assistant attends over them). Leafs in
    the order the graph visits them: tokens, the target's hidden state, positions, the sliding
    and the full masks (f16 with flash attention, f32 without), the output row ids."""
    f32 = 4
    n = n_tokens
    ext = Tensor(own=False)                         # weights, the target's embeddings, KV views
    mask_bytes = 2 if flash_attn else 4
    inp_tokens, inp_h, inp_pos = Tensor(4 * n), Tensor(f32 * backbone * n), Tensor(4 * n)
    mask_swa, mask = Tensor(mask_bytes * n_kv_swa * n), Tensor(mask_bytes * n_kv * n)
    out_ids = Tensor(4 * n_outputs)
    leafs = [inp_tokens, inp_h, inp_pos, mask_swa, mask, out_ids]
    nodes: list[Tensor] = []

    def op(size: int, *srcs: Tensor, inplace: bool = False, view_of: Tensor | None = None,
           output: bool = False) -> Tensor:
        t = Tensor(size, srcs, inplace, view_of, output=output)
        nodes.append(t)
        return t

    x = op(f32 * backbone * n, ext, inp_tokens)                   # get_rows of the target's token_embd
    x = op(f32 * backbone * n, x, inplace=True)                   # scale by sqrt(n_embd_backbone)
    xh = op(f32 * 2 * backbone * n, x, inp_h)                     # concat
    inp = op(f32 * hidden * n, ext, xh)                           # nextn.pre_projection
    for il, (sliding, n_head, head_dim) in enumerate(layers):
        last = il == len(layers) - 1
        q_rows = n_head * head_dim
        kv_cells, m = (n_kv_swa, mask_swa) if sliding else (n_kv, mask)
        cur = op(f32 * hidden * n, inp, inplace=True)             # rms_norm (inp has two children)
        cur = op(f32 * hidden * n, cur, ext, inplace=True)        # * attn_norm
        q = op(f32 * q_rows * n, ext, cur)                        # wq
        q = op(0, q, view_of=q)                                   # reshape_3d
        q = op(f32 * q_rows * n, q, inplace=True)                 # q rms_norm (a view: not reused)
        q = op(f32 * q_rows * n, q, ext, inplace=True)            # * attn_q_norm
        q = op(f32 * q_rows * n, q, inp_pos, inplace=True)        # rope
        qp = op(0, q, view_of=q)                                  # permute
        if flash_attn:
            o = op(f32 * q_rows * n, qp, ext, ext, m)             # flash_attn_ext
            att = op(0, o, view_of=o)                             # reshape_2d
        else:
            kq = op(f32 * kv_cells * n * n_head, ext, qp)         # k x q, f32 scores
            kq = op(f32 * kv_cells * n * n_head, kq, m, inplace=True)   # soft_max_ext with the mask
            kqv = op(f32 * q_rows * n, ext, kq)                   # v x softmax
            att = op(f32 * q_rows * n, op(0, kqv, view_of=kqv))   # permute, cont_2d
        cur = op(f32 * hidden * n, ext, att)                      # wo
        rows = n
        if last:                                                  # only the output rows go on
            cur = op(f32 * hidden * n_outputs, cur, out_ids)
            rows = n_outputs
        cur = op(f32 * hidden * rows, cur, inplace=True)          # rms_norm
        cur = op(f32 * hidden * rows, cur, ext, inplace=True)     # * attn_post_norm
        if last:
            inp = op(f32 * hidden * n_outputs, inp, out_ids)
        attn_out = op(f32 * hidden * rows, cur, inp, inplace=True)
        cur = op(f32 * hidden * rows, attn_out, inplace=True)     # rms_norm (attn_out: two children)
        cur = op(f32 * hidden * rows, cur, ext, inplace=True)     # * ffn_norm
        gate = op(f32 * n_ff * rows, ext, cur)
        up = op(f32 * n_ff * rows, ext, cur)
        cur = op(f32 * n_ff * rows, gate, up)                     # geglu (GGML_OP_GLU: not in place)
        cur = op(f32 * hidden * rows, ext, cur)                   # ffn_down
        cur = op(f32 * hidden * rows, cur, inplace=True)          # rms_norm
        cur = op(f32 * hidden * rows, cur, ext, inplace=True)     # * ffn_post_norm
        cur = op(f32 * hidden * rows, cur, attn_out, inplace=True)
        inp = op(f32 * hidden * rows, cur, ext, inplace=True)     # * layer_output_scale
    cur = op(f32 * hidden * n_outputs, inp, inplace=True)         # rms_norm
    cur = op(f32 * hidden * n_outputs, cur, ext, inplace=True)    # * output_norm
    op(f32 * vocab * n_outputs, ext, cur, output=True)            # logits
    op(f32 * backbone * n_outputs, ext, cur, output=True)         # h_nextn
    return leafs, nodes


def hadamard_rows(head_dim: int) -> int:
    """The rotation llama.cpp applies to a quantized K cache (src/llama-kv-cache.cpp, attn_rot_k):
    64, doubled while the cache's head dimension is a multiple of twice it (V: always 64)."""
    r = 64
    while head_dim % (2 * r) == 0:
        r *= 2
    return r


def gemma4_target_graph(*, hidden: int, vocab: int, ple_dim: int,
                        layers: list[tuple[bool, int, int, int, bool, bool, int, int, int, int]],
                        n_tokens: int, n_outputs: int, n_kv: int, n_kv_swa: int, flash_attn: bool,
                        rot_k: bool = False, rot_v: bool = False) -> tuple[list[Tensor], list[Tensor]]:
    """The reserve graph of a Gemma 4 target (src/models/gemma4.cpp with llama-graph.cpp
    build_inp_embd, build_attn on the iswa cache, build_attn_mha, build_ffn, build_moe_ffn), node
    by node as the b11549 scheduler prints it with GGML_SCHED_DEBUG=2 (E2B, E4B, 12B, 26B-A4B, 31B;
    f16 and q8_0 caches, flash attention on and off). `layers`: per layer (sliding, n_head,
    n_head_kv, head_dim, k_eq_v, shared_kv, n_ff, n_expert, n_expert_used, n_ff_exp); n_kv / n_kv_swa:
    the cells of one stream of the full / sliding caches; rot_k / rot_v: a quantized K / V cache
    (Hadamard rotations of q, k, v and of the attention output, llama-graph.cpp build_attn).

    What the replay needed beyond the layer ops, all read off the dump and the source:
    - build_inp_embd keeps three select branches in the graph (ggml_build_forward_select): the
      raw-embeddings input (n_embd x n_tokens f32, an input nothing reads: never freed) and the
      mixed-batch branch whose set_rows writes into a dup of it (a view nobody reads: the dup is
      never freed either): two n_embd rows live for the whole graph;
    - without flash attention V is stored transposed: the V row indices are int64 per element
      (n_embd_v x n_tokens), and a layer narrower than the widest is padded (ggml_pad) to the
      widest layer's row before set_rows;
    - Gemma 3n/4 per-layer embeddings: the token rows are gathered first, the projection
      (n_layer x n_embd_per_layer rows) is built inside layer 0 and its permuted copy lives until
      the last layer's slice;
    - MoE: the router chain is expanded first (build_moe_ffn's ggml_build_forward_expand of the
      weights), then the experts (fused gate_up, per-expert down scales through repeat/get_rows,
      n_expert_used views summed), then the dense MLP;
    - the last layer keeps only the output rows (embeddings_nextn_masked) after attention."""
    f32, n = 4, n_tokens
    E = hidden
    ext = Tensor(own=False)                         # weights and the KV cache
    mask_bytes = 2 if flash_attn else 4
    vrow = max(kv * hd for _s, _h, kv, hd, *_ in layers)
    P = f32 * ple_dim * len(layers) * n if ple_dim else 0
    ple_tok = Tensor(4 * n) if P else None
    inp_tokens, inp_embd, mix_tok, mix_embd = Tensor(4 * n), Tensor(f32 * E * n), Tensor(4 * n), Tensor(f32 * E * n)
    mix_slots, scale_rows, inp_pos = Tensor(8 * n), Tensor(4 * n), Tensor(4 * n)

    def idxs() -> tuple[Tensor, Tensor]:    # K rows: int64 per token; transposed V: per element
        return Tensor(8 * n), Tensor(8 * n if flash_attn else 8 * n * vrow)

    k_swa, v_swa = idxs()
    k_full, v_full = idxs()
    mask_swa, mask = Tensor(mask_bytes * n_kv_swa * n), Tensor(mask_bytes * n_kv * n)
    out_ids = Tensor(4 * n_outputs)
    head = {s: next((hd for sl, _h, _kv, hd, *_ in layers if sl == s), 0) for s in (True, False)}
    krot = {s: Tensor(4 * hadamard_rows(head[s]) ** 2) for s in (True, False)} if rot_k else {}
    vrot = {s: Tensor(4 * 64 * 64) for s in (True, False)} if rot_v else {}
    leafs = ([ple_tok] if P else []) + [inp_tokens, inp_embd, mix_tok, mix_embd, mix_slots, scale_rows, inp_pos,
                                        k_swa, v_swa, k_full, v_full, mask_swa, mask, out_ids]
    leafs += [t for s in (True, False) for t in (krot.get(s), vrot.get(s)) if t is not None]
    nodes: list[Tensor] = []

    def op(size: int, *srcs: Tensor, inplace: bool = False, view_of: Tensor | None = None,
           output: bool = False) -> Tensor:
        if view_of is not None and view_of.view_of is not None:
            view_of = view_of.view_of               # ggml: a view of a view views the base tensor
        t = Tensor(size, srcs, inplace, view_of, output=output)
        nodes.append(t)
        return t

    def view(t: Tensor) -> Tensor:
        return op(0, t, view_of=t)

    def hadamard(t: Tensor, rot: Tensor, size: int) -> Tensor:     # llama_mul_mat_hadamard: reshape, mul_mat, reshape
        return view(op(size, rot, view(t)))

    def norm(t: Tensor, size: int) -> Tensor:                      # rms_norm, * weight
        return op(size, op(size, t, inplace=True), ext, inplace=True)

    def dense_ffn(cur: Tensor, n_ff: int, rows: int) -> Tensor:    # LLM_FFN_GELU + LLM_FFN_PAR: geglu is not in place
        gate, up = op(f32 * n_ff * rows, ext, cur), op(f32 * n_ff * rows, ext, cur)
        return op(f32 * E * rows, ext, op(f32 * n_ff * rows, gate, up))

    def moe_ffn(attn_out: Tensor, n_exp: int, n_used: int, n_ff_exp: int, rows: int) -> Tensor:
        t = op(f32 * E * rows, op(f32 * E * rows, attn_out, inplace=True), inplace=True)   # rms_norm, scale
        t = op(f32 * E * rows, t, ext, inplace=True)                                     # * gate_inp_s
        probs = op(f32 * n_exp * rows, op(f32 * n_exp * rows, ext, t), inplace=True)      # logits, softmax
        probs_3d = view(probs)
        topk = view(op(4 * n_exp * rows, probs))                                          # argsort, top-k view
        w = view(op(f32 * n_used * rows, probs_3d, topk))                                 # get_rows, reshape
        w_sum = op(f32 * rows, op(f32 * rows, w), inplace=True)                           # sum_rows, clamp
        w = view(op(f32 * n_used * rows, w, w_sum, inplace=True))                         # div (of a view: new memory)
        cur = view(norm(attn_out, f32 * E * rows))                                        # ffn_pre_norm_2, reshape
        gate_up = op(f32 * 2 * n_ff_exp * n_used * rows, ext, cur, topk)                  # mul_mat_id
        act = op(f32 * n_ff_exp * n_used * rows, view(gate_up), view(gate_up))            # geglu_split
        experts = op(f32 * E * n_used * rows, ext, act, topk)                             # down, mul_mat_id
        scales = op(f32 * n_used * rows, op(f32 * n_exp * rows, view(ext)), topk)         # repeat, get_rows
        experts = op(f32 * E * n_used * rows, experts, scales, inplace=True)
        experts = op(f32 * E * n_used * rows, experts, w, inplace=True)                   # * weights
        parts = [view(experts) for _ in range(n_used)]
        out = op(f32 * E * rows, parts[0], parts[1], inplace=True)                        # a view: new memory
        for p in parts[2:]:
            out = op(f32 * E * rows, out, p, inplace=True)
        return out

    sel = op(P, ext, ple_tok) if P else None                          # per-layer token rows (expanded first)
    x = op(f32 * E * n, ext, inp_tokens)                              # token rows
    mixed = op(f32 * E * n, ext, mix_tok)
    dup = op(f32 * E * n, mix_embd)
    op(0, mixed, mix_slots, dup, view_of=dup)                         # set_rows into the dup: read by nobody
    inp = x_scaled = op(f32 * E * n, x, scale_rows, inplace=True)     # inp_scaled
    ple = None
    for il, (sliding, n_head, n_head_kv, hd, k_eq_v, shared, n_ff, n_exp, n_used, n_ff_exp) in enumerate(layers):
        last = il == len(layers) - 1
        q_rows, kv_rows = n_head * hd, n_head_kv * hd
        k_idx, v_idx, m, cells = (k_swa, v_swa, mask_swa, n_kv_swa) if sliding else (k_full, v_full, mask, n_kv)
        kr, vr = krot.get(sliding), vrot.get(sliding)
        cur = norm(inp, f32 * E * n)                                  # attn_norm
        q = view(op(f32 * q_rows * n, ext, cur))
        q = op(f32 * q_rows * n, norm(q, f32 * q_rows * n), inp_pos, inplace=True)     # q norm, rope
        if kr is not None:
            q = hadamard(q, kr, f32 * q_rows * n)
        if not shared:                                                # shared-KV layers read an earlier layer's cache
            k = op(f32 * kv_rows * n, ext, cur)
            v = k if k_eq_v else None
            k = op(f32 * kv_rows * n, norm(view(k), f32 * kv_rows * n), inp_pos, inplace=True)
            if kr is not None:
                k = hadamard(k, kr, f32 * kv_rows * n)
            if v is None:
                v = op(f32 * kv_rows * n, ext, cur)
            v = op(f32 * kv_rows * n, view(v), inplace=True)          # rms_norm without weight
            if vr is not None:
                v = hadamard(v, vr, f32 * kv_rows * n)
            op(0, view(k), k_idx, ext, view_of=ext)                   # set_rows into the cache
            v = view(v)
            if not flash_attn and kv_rows < vrow:
                v = view(op(f32 * vrow * n, v))                       # ggml_pad to the widest V row
            op(0, v, v_idx, ext, view_of=ext)
        if flash_attn:
            att = view(op(f32 * q_rows * n, view(q), ext, ext, m))
            if vr is not None:
                att = hadamard(att, vr, f32 * q_rows * n)
        else:
            kq = op(f32 * cells * n * n_head, ext, view(q))
            kq = op(f32 * cells * n * n_head, kq, m, inplace=True)    # soft_max_ext with the mask
            att = op(f32 * q_rows * n, view(op(f32 * q_rows * n, ext, kq)))   # kqv, permute, cont
        cur = op(f32 * E * n, ext, att)                               # wo
        rows = n
        if last:
            cur, rows = op(f32 * E * n_outputs, cur, out_ids), n_outputs
        cur = norm(cur, f32 * E * rows)                               # attn_post_norm
        if last:
            inp = op(f32 * E * n_outputs, inp, out_ids)
        attn_out = op(f32 * E * rows, cur, inp, inplace=True)
        if n_exp:
            moe = moe_ffn(attn_out, n_exp, n_used, n_ff_exp, rows)
            mlp = norm(dense_ffn(norm(attn_out, f32 * E * rows), n_ff, rows), f32 * E * rows)   # + post_norm_1
            cur = op(f32 * E * rows, mlp, norm(moe, f32 * E * rows), inplace=True)             # + post_norm_2
        else:
            cur = dense_ffn(norm(attn_out, f32 * E * rows), n_ff, rows)
        cur = op(f32 * E * rows, norm(cur, f32 * E * rows), attn_out, inplace=True)   # ffn_post_norm + residual
        if P:
            pe_in = cur
            g = op(f32 * ple_dim * rows, op(f32 * ple_dim * rows, ext, pe_in), inplace=True)   # inp_gate, gelu
            if ple is None:                                           # the projection, built where layer 0 reads it
                proj = view(op(P, op(P, ext, x_scaled), inplace=True))
                proj = norm(proj, P)                                  # rms_norm of a view: new memory
                proj = op(P, proj, view(op(P, sel, inplace=True)), inplace=True)
                ple = op(P, view(op(P, proj, inplace=True)))          # scale, permute, cont
            sl = view(ple)
            if last:
                sl = op(f32 * ple_dim * n_outputs, sl, out_ids)
            g = op(f32 * ple_dim * rows, g, sl, inplace=True)
            cur = op(f32 * E * rows, pe_in, norm(op(f32 * E * rows, ext, g), f32 * E * rows), inplace=True)
        inp = op(f32 * E * rows, cur, ext, inplace=True)              # * layer_output_scale
    cur = norm(inp, f32 * E * n_outputs)                              # output_norm
    logits = op(f32 * vocab * n_outputs, ext, cur)
    logits = op(f32 * vocab * n_outputs, op(f32 * vocab * n_outputs, logits, inplace=True), inplace=True)
    op(f32 * vocab * n_outputs, logits, inplace=True, output=True)    # final logit softcapping: scale, tanh, scale
    return leafs, nodes


def piecewise(replay, cap: int, pad: int) -> tuple[int, list[tuple[int, int, int]], tuple[int, int]]:
    """A replay over the cells of one stream as a closed form (an evaluation, not a fit): from some
    k0 on the buffer is one line (the full-attention masks and scores grow with the cells), read off
    at two large cell counts; k0 is the first `pad`-cell point at or above the sliding cap where
    the replay is on that line. Below k0 the sliding cells grow too and the allocator's holes make
    the replay irregular: there it is followed from point to point (a context is padded to `pad`
    cells, so that is every context), one run per stretch of equal steps.
    Returns (the buffer at `pad` cells, [(start, cells, step per cell)] runs, (k0, slope))."""
    k1 = max(64 * max(cap, pad), 1 << 16)
    k2 = 2 * k1
    slope = (replay(k2) - replay(k1)) // (k2 - k1)
    k0 = max(cap, pad)
    while replay(k0) != replay(k1) + slope * (k0 - k1) and k0 < k1:
        k0 += pad
    runs = []
    c = pad
    while c < k0:
        step = (replay(c + pad) - replay(c)) // pad
        run = pad
        while c + run < k0 and (replay(c + run + pad) - replay(c + run)) // pad == step:
            run += pad
        if step:
            runs.append((c, run, step))
        c += run
    return replay(pad), runs, (k0, slope)
