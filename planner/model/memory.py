"""Memory terms: every buffer a runtime allocates, as a function of the context length.

Each term is `const + per_cell * cells(context)`, where `cells` is how many token slots the
runtime really allocates for that buffer (padded, capped at a sliding window, rounded to
blocks). That one shape covers weights (per_cell = 0), KV caches, and compute buffers that
grow with the attended length, and it lets the solver evaluate thousands of combinations per
millisecond and find the largest context exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

CATEGORIES = ("weights", "kv", "compute", "overhead")
# device: accelerator memory (VRAM, or the GPU's share of unified memory); host: resident system
# RAM; mapped: file-backed pages read on demand (llama.cpp's mmap'd Gemma PLE table: only the rows
# of the tokens seen become resident, and the kernel can drop them again), reported, not budgeted.
PLACES = ("device", "host", "mapped")


def ceil_to(x: int, m: int) -> int:
    return -(-x // m) * m if m > 1 else x


@dataclass(frozen=True, slots=True)
class Cells:
    """Token slots a buffer holds for a requested context.

    cells(ctx) = min(ceil_to(ctx * scale + add, pad) + blocks_extra * pad, cap) * streams
    (`scale`: a buffer shared by several sequences, like llama.cpp's unified cache, holds
    context x sequences cells in one stream).
    """
    pad: int = 1
    cap: int | None = None
    add: int = 0
    blocks_extra: int = 0      # whole blocks added after rounding (vLLM's +1 block for sliding layers)
    streams: int = 1
    scale: int = 1

    def __call__(self, ctx: int) -> int:
        n = ceil_to(ctx * self.scale + self.add, self.pad) + self.blocks_extra * self.pad
        if self.cap is not None and n > self.cap:
            n = self.cap
        return max(n, 0) * self.streams


NO_CELLS = Cells(cap=0)


@dataclass(frozen=True, slots=True)
class Term:
    name: str            # what llama.cpp's load log would call it: "KV cache (full layers, K f16 + V f16)"
    category: str        # weights | kv | compute | overhead
    place: str           # device | host | mapped
    const: int = 0
    per_cell: int = 0
    cells: Cells = NO_CELLS
    detail: str = ""
    # attention masks/scores grow with (query tokens x attended cells); the runtime folds the query
    # side into the coefficient when it is fixed (a ubatch), else it is the cells themselves
    per_cell_sq: int = 0
    # graph allocators reuse memory: a compute buffer is the larger of a context-dependent
    # phase (attention) and a fixed one (logits); `floor` is the fixed phase
    floor: int = 0
    # a fixed phase that still holds masks growing with the attended cells (llama-server's layer
    # phase without flash attention): floor + floor_per_cell * cells
    floor_per_cell: int = 0
    # which of the plan's GPUs holds a device term (llama.cpp layer split, vLLM TP/PP); 0 on one GPU
    gpu: int = 0

    def bytes_at(self, ctx: int) -> int:
        if not (self.per_cell or self.per_cell_sq):
            return max(self.const, self.floor)
        n = self.cells(ctx)
        b = self.const + self.per_cell * n + self.per_cell_sq * n * n
        f = self.floor + self.floor_per_cell * n
        return b if b >= f else f


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    category: str
    place: str
    nbytes: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Totals:
    weights: int
    kv: int
    compute: int
    overhead: int
    device: int
    host: int
    mapped: int = 0

    @property
    def total(self) -> int:
        return self.device + self.host + self.mapped

    def as_dict(self) -> dict[str, int]:
        return {"weights": self.weights, "kv": self.kv, "compute": self.compute, "overhead": self.overhead,
                "total": self.total, "device": self.device, "host": self.host, "mapped": self.mapped}


def evaluate_terms(terms: tuple[Term, ...], ctx: int) -> Totals:
    acc = {"weights": 0, "kv": 0, "compute": 0, "overhead": 0}
    dev = host = mapped = 0
    for t in terms:
        b = t.bytes_at(ctx)
        acc[t.category] += b
        if t.place == "device":
            dev += b
        elif t.place == "host":
            host += b
        else:
            mapped += b
    return Totals(acc["weights"], acc["kv"], acc["compute"], acc["overhead"], dev, host, mapped)


def gpu_bytes(terms: tuple[Term, ...], ctx: int, n_gpus: int) -> list[int]:
    """Device bytes on each of the plan's GPUs."""
    out = [0] * max(n_gpus, 1)
    for t in terms:
        if t.place == "device":
            out[min(t.gpu, len(out) - 1)] += t.bytes_at(ctx)
    return out


def components_at(terms: tuple[Term, ...], ctx: int) -> list[Component]:
    """One component per term; consecutive terms of one name and place (a piecewise-linear buffer
    written as several Terms, e.g. the llama.cpp drafter's compute buffer) are one component."""
    out: list[Component] = []
    for t in terms:
        b = t.bytes_at(ctx)
        if out and out[-1].name == t.name and out[-1].place == t.place and out[-1].category == t.category:
            prev = out[-1]
            out[-1] = Component(prev.name, prev.category, prev.place, prev.nbytes + b, prev.detail)
        else:
            out.append(Component(t.name, t.category, t.place, b, t.detail))
    return out
