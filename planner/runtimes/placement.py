"""llama.cpp placement: which backend holds each layer's weights and KV cache, and each backend's
compute buffer, for `-ngl`, `--n-cpu-moe`, `-ot` and a layer split over several GPUs.

Rules read from the llama.cpp vendored by llama-cpp-python 0.3.36:
- src/llama-model.cpp (load_tensors): `-ngl N` counts the output layer as one of the N:
  i_gpu_start = max(n_layer + 1 - N, 0), act = min(N, n_layer + 1); layer il (0..n_layer, where
  il = n_layer is the output layer: output_norm and the output head) is on a GPU iff
  i_gpu_start <= il < i_gpu_start + act. So `-ngl 1` offloads only the output layer, `-ngl N`
  the output layer and the last N - 1 repeating layers, `-ngl n_layer + 1` (or `all`) everything
  ("offloading output layer to GPU", "offloading N-1 repeating layers to GPU" in the load log).
  The input layer (token_embd, Gemma's per-layer embedding table) always stays on the CPU.
- several GPUs (split mode layer, the default): the split points are the cumulative, normalised
  --tensor-split (default: each GPU's free memory, equal for identical GPUs); layer il goes to GPU
  upper_bound(splits, (il - i_gpu_start) / act), so the output layer lands on the last GPU.
- tensors without a block number follow the layer they are created with: Gemma's
  per_layer_model_proj / per_layer_proj_norm are created with block id 0 (src/models/gemma4.cpp).
- overrides (src/llama-model-loader.cpp, create_tensor): the first `-ot PATTERN=BUFT` whose
  regex_search matches the tensor name wins; `--n-cpu-moe N` adds
  `blk\\.i\\.ffn_(up|down|gate|gate_up)_(ch|)exps=CPU` for i < N and `--cpu-moe` the same
  pattern for every layer (common/common.h LLM_FFN_EXPS_REGEX, llm_add_n_cpu_ffn_overrides).
- host weights: with a GPU present the CPU buffer list starts with the GPU's pinned host buffer
  type, which mmap replaces by the plain CPU buffer (CPU_Mapped in the log; no CPU_REPACK copy).
  Mapped or not, these pages are read on every token, so they are counted as resident host RAM.
- KV cache (src/llama-kv-cache.cpp): each layer's K and V live on its layer's device
  (offload_kqv, on by default).
- compute buffers (src/llama-context.cpp sched_reserve): one per backend that runs part of the
  graph. The backend holding the output layer computes the logits; every backend holding layers
  computes their attention. A host compute buffer therefore appears as soon as a layer runs on the
  CPU. With weights on the host and a ubatch >= 32, ggml-backend.cpp (op_offload,
  GGML_OP_OFFLOAD_MIN_BATCH 32 in ggml-cuda.cu) runs those matmuls on the GPU anyway and copies
  the weights into the GPU's compute buffer during prompt processing. The scheduler starts a new
  split at every node whose weight lives on another backend ("so the memory of the previously
  offloaded weights can be reused") and allocates a split's input copies at its start, so one
  copied weight is live at a time: the planner adds the largest host weight tensor to the GPU's
  compute buffer (for 26B-A4B an expert tensor, ffn_gate_up_exps). Not measured here: this
  machine has no GPU, and the CPU-only harness shows only CPU buffers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

from planner.errors import PlannerInputError
from planner.model.memory import Term

HOST = -1                                  # "GPU index" of the host
EXPS_PATTERN = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"
_EXPS = re.compile(EXPS_PATTERN)
_BLK = re.compile(r"^blk\.(\d+)\.")
_INPUT_TENSORS = ("token_embd.weight", "per_layer_token_embd.weight")
# tensors created with block id 0 although they have no block number (src/models/gemma4.cpp)
_LAYER0_TENSORS = ("per_layer_model_proj.weight", "per_layer_proj_norm.weight", "rope_freqs.weight")


@dataclass(frozen=True)
class Placement:
    """Where llama.cpp puts each layer: gpu index per repeating layer and for the output layer
    (HOST = -1 for the CPU), and the tensor overrides in force (pattern, on_host)."""
    layer_gpu: tuple[int, ...]             # n_layer repeating layers
    output_gpu: int
    n_cpu_moe: int = 0                     # experts of layers < n_cpu_moe on the host
    overrides: tuple[str, ...] = ()        # -ot regexes of tensors forced to the host
    n_gpus: int = 1

    def gpu_of(self, layer: int) -> int:
        return self.output_gpu if layer >= len(self.layer_gpu) else self.layer_gpu[layer]


def split_points(n_gpus: int, tensor_split: tuple[float, ...] = ()) -> list[float]:
    """llama.cpp's cumulative, normalised split points (equal for identical GPUs by default)."""
    w = list(tensor_split) if tensor_split and any(tensor_split) else [1.0] * n_gpus
    if len(w) != n_gpus:
        raise PlannerInputError(f"--tensor-split: {len(w)} proportions for {n_gpus} GPU(s); give one per GPU")
    if any(x < 0 for x in w):
        raise PlannerInputError("--tensor-split: proportions must be >= 0")
    total, acc, out = sum(w), 0.0, []
    for x in w:
        acc += x
        out.append(acc / total)
    return out


def layer_placement(n_layer: int, n_gpu_layers: int | None, n_gpus: int = 1,
                    tensor_split: tuple[float, ...] = (), n_cpu_moe: int = 0,
                    override_tensors: tuple[str, ...] = ()) -> Placement:
    """llama.cpp's load_tensors assignment (see the module docstring); n_gpu_layers None = all."""
    ngl = n_layer + 1 if n_gpu_layers is None else n_gpu_layers
    if ngl < 0:
        raise PlannerInputError(f"--gpu-layers: must be >= 0, got {ngl}")
    if ngl > n_layer + 1:
        raise PlannerInputError(f"--gpu-layers: {ngl} is above the model's {n_layer} layers + 1 output layer "
                                f"(use {n_layer + 1} or leave it out for all)")
    if n_cpu_moe < 0:
        raise PlannerInputError(f"--n-cpu-moe: must be >= 0, got {n_cpu_moe}")
    if n_cpu_moe > n_layer:
        raise PlannerInputError(f"--n-cpu-moe: {n_cpu_moe} is above the model's {n_layer} layers")
    splits = split_points(n_gpus, tensor_split)
    start = max(n_layer + 1 - ngl, 0)
    act = min(ngl, n_layer + 1) if n_gpus else 0

    def gpu(il: int) -> int:
        if il < start or il - start >= act:
            return HOST
        x = (il - start) / act
        return min(next((i for i, s in enumerate(splits) if s > x), n_gpus - 1), n_gpus - 1)

    overrides: tuple[str, ...] = ()
    for o in override_tensors:
        pattern, _, buft = o.rpartition("=")
        if not pattern or buft.strip().upper() not in ("CPU", "HOST"):
            raise PlannerInputError(f"-ot/--override-tensor: '{o}' must be PATTERN=CPU (the planner places "
                                    "overridden tensors on the host only)")
        try:
            re.compile(pattern)
        except re.error as e:
            raise PlannerInputError(f"-ot/--override-tensor: '{pattern}' is not a regular expression: {e}") from None
        overrides += (pattern,)
    return Placement(tuple(gpu(il) for il in range(n_layer)), gpu(n_layer), n_cpu_moe, overrides, n_gpus)


def layer_of_tensor(name: str, n_layer: int) -> int | None:
    """Which layer's buffer list a text tensor uses: its block, n_layer for the output layer,
    None for the input layer (always on the host)."""
    if name in _INPUT_TENSORS:
        return None
    m = _BLK.match(name)
    if m:
        return int(m.group(1))
    if name in _LAYER0_TENSORS:
        return 0
    return n_layer


@lru_cache(maxsize=512)
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern, ...]:
    return tuple(re.compile(p) for p in patterns)


def tensor_gpu(name: str, layer: int | None, pl: Placement) -> int:
    """HOST or the GPU index a text tensor is loaded on."""
    if layer is None:
        return HOST
    if layer < pl.n_cpu_moe and _EXPS.search(name):
        return HOST
    for rx in _compiled(pl.overrides):
        if rx.search(name):
            return HOST
    return pl.gpu_of(layer)


def validate(spec, plan) -> None:
    """Bad placement input: one clear line (PlannerInputError)."""
    layer_placement(spec.n_layers, plan.n_gpu_layers, plan.gpus, plan.tensor_split, plan.n_cpu_moe,
                    plan.override_tensors)
    if plan.n_cpu_moe and not spec.is_moe:
        raise PlannerInputError(f"--n-cpu-moe: {spec.name} has no MoE experts (use --gpu-layers for a dense model)")


def placement_of(spec, plan) -> Placement:
    return layer_placement(spec.n_layers, plan.n_gpu_layers, plan.gpus, plan.tensor_split, plan.n_cpu_moe,
                           plan.override_tensors)


def is_default(plan) -> bool:
    """True when the plan asks for nothing but the whole model on one GPU (the existing model)."""
    return (plan.n_gpu_layers is None and not plan.n_cpu_moe and not plan.override_tensors
            and plan.gpus == 1)


# ---------------------------------------------------------------------------------------------
# Bytes by (role, layer)


@dataclass(frozen=True)
class LayerBytes:
    """Text-model weight bytes by role, split per layer: `layers[role]` has n_layer + 1 entries
    (the repeating layers, then the output layer); `experts[role]` the part of them matching
    llama.cpp's expert regex; input-layer tensors are left out (their terms stay on the host)."""
    layers: dict
    experts: dict
    max_tensor: tuple       # per layer: the largest weight tensor (what op offload copies at once)
    max_expert: tuple       # per layer: the largest expert tensor


@lru_cache(maxsize=256)
def _tensor_bytes(spec, fmt_name: str) -> tuple[tuple[str, str, int], ...]:
    from planner.model.formats import get_format, weight_bytes_by_tensor
    from planner.model.inventory import model_tensors

    if "gguf_tensors" in spec.extra:
        from planner.model.gguf_spec import role_of

        return tuple((n, role_of(n), int(b)) for n, _s, _t, b in spec.extra["gguf_tensors"])
    fmt = get_format(fmt_name)
    tensors = model_tensors(spec, include_vision=False, include_audio=False)
    n_expert = max((l.n_experts for l in spec.layers), default=0)
    per = weight_bytes_by_tensor(tensors, fmt, arch=spec.arch, n_layer=spec.n_layers, n_expert=n_expert)
    return tuple((t.name, t.role, int(per[t.name][0])) for t in tensors if t.name in per)


@lru_cache(maxsize=256)
def layer_bytes(spec, fmt_name: str) -> LayerBytes:
    """Per-layer bytes; catalogue models read them from the precomputed weight table."""
    from planner.readers.weights_table import lookup

    entry = lookup(spec, fmt_name, False, False, layers=True) if "gguf_tensors" not in spec.extra else None
    if entry is not None and "layers" in entry:
        return LayerBytes({r: tuple(v) for r, v in entry["layers"].items()},
                          {r: tuple(v) for r, v in entry["experts"].items()},
                          tuple(entry["max_tensor"]), tuple(entry["max_expert"]))
    return layer_bytes_uncached(spec, fmt_name)


def layer_bytes_uncached(spec, fmt_name: str) -> LayerBytes:
    n = spec.n_layers
    exps = _EXPS
    layers: dict[str, list[int]] = {}
    experts: dict[str, list[int]] = {}
    max_tensor = [0] * (n + 1)
    max_expert = [0] * (n + 1)
    tensors = _tensor_bytes(spec, fmt_name)
    for name, role, b in tensors:
        il = layer_of_tensor(name, n)
        if il is None:
            continue
        layers.setdefault(role, [0] * (n + 1))[il] += b
        max_tensor[il] = max(max_tensor[il], b)
        if exps.search(name):
            experts.setdefault(role, [0] * (n + 1))[il] += b
            max_expert[il] = max(max_expert[il], b)
    return LayerBytes({r: tuple(v) for r, v in layers.items()}, {r: tuple(v) for r, v in experts.items()},
                      tuple(max_tensor), tuple(max_expert))


def role_bytes_by_gpu(spec, fmt_name: str, pl: Placement) -> dict[str, dict[int, int]]:
    """role -> {gpu index or HOST: bytes} for every non-input role."""
    lb = layer_bytes(spec, fmt_name)
    out: dict[str, dict[int, int]] = {}
    if pl.overrides:
        # arbitrary -ot patterns: tensor by tensor
        n = spec.n_layers
        for name, role, b in _tensor_bytes(spec, fmt_name):
            il = layer_of_tensor(name, n)
            if il is None:
                continue
            g = tensor_gpu(name, il, pl)
            d = out.setdefault(role, {})
            d[g] = d.get(g, 0) + b
        return out
    for role, per_layer in lb.layers.items():
        ex = lb.experts.get(role)
        d = out.setdefault(role, {})
        for il, b in enumerate(per_layer):
            if not b:
                continue
            g = pl.gpu_of(il)
            if ex is not None and ex[il] and il < pl.n_cpu_moe:
                d[HOST] = d.get(HOST, 0) + ex[il]
                b -= ex[il]
            if b:
                d[g] = d.get(g, 0) + b
    return out


def largest_host_tensor(spec, fmt_name: str, pl: Placement) -> int:
    """The largest weight tensor held on the host: what op offload copies into the GPU's compute
    buffer at one time (ggml-backend.cpp starts a new split at every node whose weight lives on
    another backend, "so the memory of the previously offloaded weights can be reused")."""
    n = spec.n_layers
    if pl.overrides:
        return max((b for name, _r, b in _tensor_bytes(spec, fmt_name)
                    if (il := layer_of_tensor(name, n)) is not None and tensor_gpu(name, il, pl) == HOST), default=0)
    lb = layer_bytes(spec, fmt_name)
    out = 0
    for il in range(n + 1):
        if pl.gpu_of(il) == HOST:
            out = max(out, lb.max_tensor[il])
        elif il < pl.n_cpu_moe:
            out = max(out, lb.max_expert[il])
    return out


def gpu_label(g: int, n_gpus: int) -> str:
    return "host" if g == HOST else (f"GPU{g}" if n_gpus > 1 else "GPU")


def retag(term: Term, place: str, gpu: int = 0, suffix: str = "") -> Term:
    return replace(term, place=place, gpu=gpu if place == "device" else 0, name=term.name + suffix)


# ---------------------------------------------------------------------------------------------
# Terms: what llamacpp.build calls when a plan places anything off the single GPU


def split_weight_terms(spec, fmt_name: str, pl: Placement, terms: list[Term], role_of_term: dict) -> list[Term]:
    """Each device weight term split into one term per GPU and one for the host. The term's bytes
    (from the weights table or the GGUF file) are split in the proportion of the tensors' bytes,
    so totals never change."""
    by_gpu = role_bytes_by_gpu(spec, fmt_name, pl)
    out: list[Term] = []
    for t in terms:
        role = role_of_term.get(t.name)
        if t.category != "weights" or t.place != "device" or role is None or role not in by_gpu:
            if t.category == "weights" and t.place == "device":
                # alignment padding and anything without per-layer bytes: where the output layer is
                out.append(retag(t, "device" if pl.output_gpu != HOST else "host", max(pl.output_gpu, 0)))
            else:
                out.append(t)
            continue
        parts = by_gpu[role]
        total = sum(parts.values())
        placed = 0
        keys = sorted(parts, key=lambda g: (g == HOST, g))
        for i, g in enumerate(keys):
            b = t.const - placed if i == len(keys) - 1 else t.const * parts[g] // total
            placed += b
            if len(keys) == 1:
                out.append(retag(t, "host" if g == HOST else "device", max(g, 0),
                                 "" if g == 0 and pl.n_gpus == 1 else f" ({gpu_label(g, pl.n_gpus)})"))
            else:
                out.append(retag(replace(t, const=b), "host" if g == HOST else "device", max(g, 0),
                                 f" ({gpu_label(g, pl.n_gpus)})"))
    return out


def compute_terms(spec, rp, pl: Placement, fmt_name: str, compute_term) -> list[Term]:
    """One compute buffer per backend that runs part of the graph (module docstring).
    `compute_term(spec, rp, logits=...)` is llama.cpp's worst-case ubatch graph, with or without
    the logits phase, as a list of Terms (a replayed buffer is several)."""
    out: list[Term] = []
    backends = sorted(set(pl.layer_gpu) | {pl.output_gpu}, key=lambda g: (g == HOST, g))
    for g in backends:
        label = gpu_label(g, pl.n_gpus)
        for t in compute_term(spec, rp, logits=(g == pl.output_gpu)):
            out.append(replace(t, name=f"{t.name} on the {label}", place="host" if g == HOST else "device",
                               gpu=max(g, 0),
                               detail=t.detail + ("" if g == pl.output_gpu else "; no logits (output layer elsewhere)")))
    host_w = largest_host_tensor(spec, fmt_name, pl) if (HOST in backends or pl.n_cpu_moe or pl.overrides) else 0
    if host_w and rp.ubatch >= OP_OFFLOAD_MIN_BATCH:
        g = next((g for g in backends if g != HOST), 0)
        out.append(Term(f"op offload: host weights copied to the {gpu_label(g, pl.n_gpus)} (prompt processing)",
                        "compute", "device", const=host_w, gpu=g,
                        detail=f"largest host weight tensor; ubatch {rp.ubatch} >= {OP_OFFLOAD_MIN_BATCH}: ggml-backend.cpp "
                               "op_offload runs its matmul on the GPU, one copied weight per split (not measured here)"))
    return out


OP_OFFLOAD_MIN_BATCH = 32      # ggml-cuda.cu GGML_OP_OFFLOAD_MIN_BATCH default
