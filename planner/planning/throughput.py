"""Speed upper bounds: decode tokens/s from memory bandwidth, prefill tokens/s from compute.

Decoding is memory-bound: every step reads all weights that take part (for MoE only the routed
experts: top_k of n) and the whole KV cache of every sequence. Embedding lookups read one row
(the token embedding and Gemma's PLE table are not streamed), encoders do not run while
decoding. This is an upper bound: real kernels reach 60-85% of peak bandwidth.
"""
from __future__ import annotations

from dataclasses import dataclass

from planner.model.inventory import ROLE_COMPONENT
from planner.planning.solver import UNIFIED_KINDS
from planner.runtimes.base import MemoryModel

_NOT_STREAMED = {ROLE_COMPONENT[r] for r in ("ple_table", "vision", "audio", "projector")}


@dataclass(frozen=True)
class DecodeBound:
    weight_bytes_per_token: int
    kv_bytes_per_token: int         # all sequences together
    tokens_per_s_per_sequence: float
    tokens_per_s_total: float
    bandwidth_gbps: float


def decode_upper_bound(mm: MemoryModel, ctx: int, bandwidth_gbps: float) -> DecodeBound:
    spec = mm.spec
    weight = 0
    for c in mm.components(ctx):
        if c.category != "weights":
            continue
        base = _base_name(c.name)
        if base in _NOT_STREAMED:
            continue
        if base == ROLE_COMPONENT["token_embedding"] and not spec.tie_word_embeddings:
            continue   # an untied model reads one embedding row; its output head is counted separately
        if base == ROLE_COMPONENT["moe_experts"]:
            moe = [l for l in spec.layers if l.n_experts]
            frac = moe[0].n_experts_used / moe[0].n_experts if moe else 1.0
            weight += int(c.nbytes * frac)
            continue
        weight += c.nbytes
    kv = mm.totals(ctx).kv
    seqs = mm.resolved.plan.sequences
    bw = bandwidth_gbps * 1e9
    step_bytes = weight + kv
    per_seq = bw / step_bytes if step_bytes else 0.0
    return DecodeBound(weight, kv, per_seq, per_seq * seqs, bandwidth_gbps)


def _base_name(name: str) -> str:
    """The component a placed term belongs to: "MoE experts (host)" -> "MoE experts"."""
    i = name.find(" (")
    return name[:i] if i > 0 and name[i + 2:i + 5] in ("hos", "GPU") else name


def _expert_fraction(spec) -> float:
    moe = [l for l in spec.layers if l.n_experts]
    return moe[0].n_experts_used / moe[0].n_experts if moe else 1.0


def active_matmul_params(spec) -> tuple[float, float]:
    """(matmul parameters one token passes through, of which routed-expert parameters), from the
    layer shapes: q/k/v/o, the dense MLP (gate, up, down), top_k routed experts, the output head.
    Embedding lookups are not matmuls."""
    total = experts = 0.0
    d = spec.hidden_size
    for l in spec.layers:
        q = l.n_heads * l.head_dim
        kv = l.n_kv_heads * l.head_dim
        total += d * q * 2 + d * kv * (1 if l.k_eq_v else 2)
        total += 3 * d * l.ffn_dim
        if l.n_experts:
            e = 3 * d * l.expert_ffn_dim * l.n_experts_used
            total += e
            experts += e
    total += spec.vocab_size * d
    return total, experts


def _attention_flops_per_token(spec, ctx: int) -> float:
    """QK^T and PV for one new token against the cache (sliding layers see at most their window)."""
    f = 0.0
    for l in spec.layers:
        n = min(ctx, l.window) if l.sliding and l.window else ctx
        f += 4 * l.n_heads * l.head_dim * n
    return f


@dataclass(frozen=True)
class SpeedBound:
    """Upper bounds for one plan on one device (real kernels reach 60-85% of them)."""
    decode_tps: float               # tokens/s per sequence
    decode_tps_total: float         # all sequences together
    prefill_tps: float              # prompt tokens/s
    device_bytes_per_token: int     # read from GPU memory per decode step (all GPUs)
    host_bytes_per_token: int       # read from host RAM per decode step (offloaded layers/experts)
    decode_limit: str               # what bounds decode
    prefill_limit: str              # what bounds prefill

    def as_dict(self) -> dict:
        return {"decode_tps": round(self.decode_tps, 2), "decode_tps_total": round(self.decode_tps_total, 2),
                "prefill_tps": round(self.prefill_tps, 1), "device_bytes_per_token": self.device_bytes_per_token,
                "host_bytes_per_token": self.host_bytes_per_token, "decode_limit": self.decode_limit,
                "prefill_limit": self.prefill_limit}


def host_link(device) -> tuple[float, float]:
    """(host RAM GB/s, host-to-GPU GB/s) for a device; on shared memory both are the device's own."""
    if device.kind in UNIFIED_KINDS:
        return device.bandwidth_gbps, device.bandwidth_gbps
    from planner.readers.devices import load_overheads

    oh = load_overheads()
    host = getattr(device, "host_bandwidth_gbps", None) or float(oh["host_ram_bandwidth_gbps"].value)
    return host, float(oh["pcie_gbps"].value)


def speed_bound(result) -> SpeedBound:
    """Decode and prefill upper bounds of an evaluated plan (a solver FitResult).

    Decode reads, per generated token, every streamed weight once (MoE: top_k of n experts) and
    every sequence's KV cache, each from where it lives: GPU bytes at the GPU's bandwidth, host
    bytes (layers or experts offloaded with -ngl / --n-cpu-moe) at host RAM bandwidth, one after
    the other (layers run in order). Tensor-parallel ranks read their shares at the same time;
    pipeline stages and llama.cpp's layer split run one after another for one sequence.
    Prefill of a ubatch is bounded by the GPUs' dense BF16 tensor FLOP/s (2 x active parameters
    per token, plus attention at half the context on average) and by reading all the weights once
    per ubatch; weights on the host are copied over PCIe for every ubatch (llama.cpp op offload)."""
    mm, dev, ctx = result.model, result.device, result.context
    spec = mm.spec
    plan = mm.resolved.plan
    terms = mm.terms + tuple(result.overhead)
    frac = _expert_fraction(spec)
    has_dup_head = any(t.category == "weights" and t.name.startswith("output head (tied") for t in terms)
    dev_read: dict[int, int] = {}
    host_read = 0
    dev_all: dict[int, int] = {}
    host_all = 0
    for t in terms:
        if t.category not in ("weights", "kv"):
            continue
        b = t.bytes_at(ctx)
        full = b
        if t.category == "weights":
            base = _base_name(t.name)
            if base in _NOT_STREAMED or base == "GGUF alignment padding":
                continue
            if base == ROLE_COMPONENT["token_embedding"] and (has_dup_head or not spec.tie_word_embeddings):
                continue
            if base == ROLE_COMPONENT["moe_experts"]:
                b = int(b * frac)
        if t.place == "device":
            dev_read[t.gpu] = dev_read.get(t.gpu, 0) + b
            if t.category == "weights":
                dev_all[t.gpu] = dev_all.get(t.gpu, 0) + full
        elif t.place == "host":
            host_read += b
            if t.category == "weights":
                host_all += full
    bw = dev.bandwidth_gbps * 1e9
    host_bw, link_bw = (x * 1e9 for x in host_link(dev))
    tp = max(plan.tp, 1) if mm.runtime == "vllm" else 1
    stages: dict[int, list[int]] = {}
    for g in set(dev_read) | set(dev_all):
        stages.setdefault(g // tp, []).append(g)
    dev_time = sum(max(dev_read.get(g, 0) for g in gs) for gs in stages.values()) / bw if bw else 0.0
    host_time = host_read / host_bw if host_read and host_bw else 0.0
    step = dev_time + host_time
    seqs = plan.sequences
    decode = 1.0 / step if step else 0.0
    decode_limit = "host RAM bandwidth" if host_time > dev_time else "GPU memory bandwidth"

    # prefill: one ubatch of n tokens (llama.cpp n_ubatch, vLLM max_num_batched_tokens)
    n = mm.resolved.ubatch
    params, _ = active_matmul_params(spec)
    flops = n * (2 * params + _attention_flops_per_token(spec, max(ctx // 2, 1)))
    tflops = dev.peak_dense_tflops_bf16 * 1e12 * (tp if mm.runtime == "vllm" else 1)
    compute_time = flops / tflops if tflops else 0.0
    read_time = sum(max(dev_all.get(g, 0) for g in gs) for gs in stages.values()) / bw if bw else 0.0
    copy_time = host_all / link_bw if host_all and link_bw and dev.kind not in UNIFIED_KINDS else 0.0
    t_ubatch = max(compute_time, read_time) + copy_time
    prefill = n / t_ubatch if t_ubatch else 0.0
    prefill_limit = ("PCIe copies of host weights" if copy_time > max(compute_time, read_time) else
                     "compute" if compute_time >= read_time else "GPU memory bandwidth")
    return SpeedBound(decode, decode * seqs, prefill, sum(dev_read.values()), host_read, decode_limit, prefill_limit)
