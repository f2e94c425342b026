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

Used for the Gemma 4 MTP assistant (src/models/gemma4-assistant.cpp), whose small graph sits far
from the target models' rules: its compute buffer is this replay, which reproduces every one of
the 182 pair starts in measurements/llama_cpp/server (b11549, CPU backend) to the log's 0.01 MiB.
Pure Python over ~140 nodes: well under a millisecond.
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
