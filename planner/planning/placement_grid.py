"""Every llama.cpp placement of a model at once: bytes on the GPU for each `-ngl` and each
`--n-cpu-moe`, for a ladder of contexts, as numpy arrays.

`planner advise` asks the same question for thousands of (format, KV type, ubatch, placement,
context) combinations; building a memory model per combination would take a millisecond each.
The bytes are sums of independent parts, so they are built once and added up:
- weights: one memory model per format (KV f16, ubatch 512, everything on the GPU); each weight
  term is split by its tensors' per-layer bytes exactly as placement.split_weight_terms splits it
  (GPU share = const x GPU bytes // all bytes);
- KV cache: one model per KV type and ubatch; each cache-owning layer's bytes per cell go with its layer;
- compute: one model per ubatch; the GPU's buffer exists when the output layer is on the GPU
  (-ngl >= 1) and host weights add the op-offload copy of the largest host weight tensor;
- the duplicated tied output head (on the GPU with the output layer) and the per-runtime overhead.
The arithmetic is the one planner/runtimes/placement.py and llamacpp.py apply:
tests/test_advise.py compares every placement of several models with planner.planning.solver.
One discrete GPU only; several GPUs and shared-memory devices go through the solver.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.planning.grid import term_bytes
from planner.runtimes import build_memory_model, device_terms
from planner.runtimes.placement import OP_OFFLOAD_MIN_BATCH, layer_bytes
from planner.runtimes.request import Plan

_ROLE_OF = None
# KV and compute terms do not depend on the weight format: they come from models of this format,
# which the format loop builds anyway (the same Plan, so the same cached memory model)
SHARED_FORMAT = "q4_k_m"


def _plan(spec, fmt: str, kv: str, ubatch: int) -> Plan:
    return Plan(model=spec.name, weights=fmt, runtime="llama.cpp", kv_type_k=kv, kv_type_v=kv, ubatch=ubatch,
                flash_attn="on")


def _role_of() -> dict:
    global _ROLE_OF
    if _ROLE_OF is None:
        from planner.model.inventory import ROLE_COMPONENT

        _ROLE_OF = {v: k for k, v in ROLE_COMPONENT.items()}
    return _ROLE_OF


@dataclass(frozen=True)
class Placements:
    """Row i of every array is one placement: `ngl[i]` (None = all) and `n_cpu_moe[i]`."""
    ngl: tuple
    n_cpu_moe: tuple


def placements(spec) -> Placements:
    n = spec.n_layers
    ngl = [None] + list(range(n, -1, -1))          # all (n + 1), then n .. 0
    moe = [0] * len(ngl)
    if spec.is_moe:
        ngl += [None] * n
        moe += list(range(1, n + 1))
    return Placements(tuple(ngl), tuple(moe))


def _gpu_layer_mask(spec, pl: Placements) -> np.ndarray:
    """(P, n + 1) True where layer il (il = n: the output layer) is on the GPU (llama-model.cpp)."""
    n = spec.n_layers
    il = np.arange(n + 1)
    k = np.array([n + 1 if g is None else g for g in pl.ngl])
    start = np.maximum(n + 1 - k, 0)
    return il[None, :] >= start[:, None]


def weight_bytes(spec, fmt: str, device, pl: Placements, mask: np.ndarray, ubatch: int) -> tuple[np.ndarray, np.ndarray]:
    """(P,) GPU bytes of weights, duplicated head, padding, overhead and op-offload copy; (P,) host weight bytes."""
    mm = build_memory_model(_plan(spec, fmt, "f16", 512))
    lb = layer_bytes(spec, fmt)
    role_of = _role_of()
    P = mask.shape[0]
    n = spec.n_layers
    moe = np.array(pl.n_cpu_moe)
    below = np.arange(n + 1)[None, :] < moe[:, None]         # layers whose experts go to the host
    out_on_gpu = mask[:, n]
    gpu = np.zeros(P, dtype=np.int64)
    host = np.zeros(P, dtype=np.int64)
    for t in mm.terms:
        if t.category != "weights" or t.place != "device":
            continue
        role = role_of.get(t.name)
        per = lb.layers.get(role) if role else None
        if per is None:              # padding: with the output layer
            gpu += np.where(out_on_gpu, t.const, 0)
            host += np.where(out_on_gpu, 0, t.const)
            continue
        per = np.asarray(per, dtype=np.int64)
        ex = np.asarray(lb.experts.get(role, [0] * (n + 1)), dtype=np.int64)
        total = int(per.sum())
        on_gpu = (mask * per[None, :]).sum(axis=1) - (mask & below).astype(np.int64) @ ex
        # Python integers: const x bytes overflows int64 for a 26B model's experts
        g = (np.array([t.const * int(x) // total for x in on_gpu], dtype=np.int64) if total
             else np.full(P, t.const, dtype=np.int64))
        gpu += g
        host += t.const - g
    for t in device_terms(mm, device):
        if t.place != "device":
            continue
        if t.category == "weights":          # the tied head, duplicated with the output layer
            gpu += np.where(out_on_gpu, t.const, 0)
        else:
            gpu += t.const
    if ubatch >= OP_OFFLOAD_MIN_BATCH:
        # op offload: the largest host weight tensor is copied into the GPU's compute buffer
        max_t = np.asarray(lb.max_tensor, dtype=np.int64)
        max_e = np.asarray(lb.max_expert, dtype=np.int64)
        host_tensor = np.where(~mask, max_t[None, :], np.where(below, max_e[None, :], 0))
        gpu += host_tensor.max(axis=1)
    return gpu, host


def kv_bytes(spec, kv: str, ubatch: int, ctx: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(P, C) KV bytes on the GPU: each cache-owning layer's bytes per cell with its layer (the
    sliding layers' cells depend on the ubatch: window + ubatch)."""
    mm = build_memory_model(_plan(spec, SHARED_FORMAT, kv, ubatch))
    from planner.model.kv import KV_TYPES

    out = np.zeros((mask.shape[0], ctx.shape[0]), dtype=np.int64)
    kt, vt = KV_TYPES[mm.resolved.kv_type_k], KV_TYPES[mm.resolved.kv_type_v]
    for t in mm.terms:
        if t.category != "kv":
            continue
        sliding = t.name.startswith("SWA")
        per_layer = np.zeros(spec.n_layers + 1, dtype=np.int64)
        for l in spec.cache_layers:
            if l.sliding == sliding:       # flash attention on: V rows at the layer's own width
                per_layer[l.index] = kt.row_bytes(l.kv_width) + vt.row_bytes(l.kv_width)
        if int(per_layer.sum()) != t.per_cell:
            raise AssertionError(f"{spec.name} {t.name}: per-layer KV bytes disagree with llamacpp.build")
        cells = term_bytes(type(t)(t.name, t.category, t.place, per_cell=1, cells=t.cells), ctx)
        out += (mask.astype(np.int64) @ per_layer)[:, None] * cells[None, :]
    return out


def compute_bytes(spec, ubatch: int, ctx: np.ndarray, kv: str = "f16") -> np.ndarray:
    """(C,) the GPU compute buffer (with the logits) at each context. It depends on the cache type
    (llama-server's replayed graph rotates a quantized cache), not on the weight format."""
    mm = build_memory_model(_plan(spec, SHARED_FORMAT, kv, ubatch))
    out = np.zeros(ctx.shape[0], dtype=np.int64)
    for t in mm.terms:
        if t.category == "compute" and t.place == "device":
            out += term_bytes(t, ctx)
    return out


def needed_grid(spec, fmt: str, kv: str, ubatch: int, device, ctx: np.ndarray,
                pl: Placements | None = None) -> tuple[Placements, np.ndarray, np.ndarray]:
    """(placements, (P, C) GPU bytes counted against the budget, (P,) host weight bytes)."""
    grid = PlacementGrid(spec, device, ctx)
    need, host = grid.needed(fmt, kv, ubatch)
    return grid.pl, need, host


class PlacementGrid:
    """One model on one discrete GPU over a context ladder; parts cached per format, KV type and
    ubatch so that every (format, KV, ubatch) combination is three array additions."""

    def __init__(self, spec, device, ctx: np.ndarray) -> None:
        self.spec, self.device, self.ctx = spec, device, ctx
        self.pl = placements(spec)
        self.mask = _gpu_layer_mask(spec, self.pl)
        self.out_on_gpu = self.mask[:, spec.n_layers]
        self._w: dict = {}
        self._kv: dict = {}
        self._c: dict = {}

    def needed(self, fmt: str, kv: str, ubatch: int) -> tuple[np.ndarray, np.ndarray]:
        off = ubatch >= OP_OFFLOAD_MIN_BATCH
        if (fmt, off) not in self._w:
            self._w[(fmt, off)] = weight_bytes(self.spec, fmt, self.device, self.pl, self.mask, ubatch)
        if (kv, ubatch) not in self._kv:
            self._kv[(kv, ubatch)] = kv_bytes(self.spec, kv, ubatch, self.ctx, self.mask)
        if (kv, ubatch) not in self._c:
            self._c[(kv, ubatch)] = np.where(self.out_on_gpu[:, None],
                                             compute_bytes(self.spec, ubatch, self.ctx, kv)[None, :], 0)
        w_gpu, w_host = self._w[(fmt, off)]
        return w_gpu[:, None] + self._kv[(kv, ubatch)] + self._c[(kv, ubatch)], w_host
