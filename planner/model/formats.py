"""Weight formats: the bytes each tensor takes in a given deployment artifact.

Every format is a rule per tensor (role, shape, quantizable) rather than "params x bits / 8",
because what stays unquantized (embeddings, norms, lm_head, encoders) and the scale/zero
overheads differ per format and matter at Gemma's 262k vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from planner.errors import PlannerInputError, unknown_name
from planner.model.tensors import TensorSpec

FLOAT_BYTES = {"f32": 4, "bf16": 2, "f16": 2}


@dataclass(frozen=True, slots=True)
class WeightFormat:
    name: str
    family: str            # float | gguf | fp8 | mlx | awq | gptq | ct | nf4
    description: str
    bits: int = 16         # nominal bits of quantized weights
    group_size: int = 0


# Non-GGUF formats. GGUF names come from planner.model.gguf_mix.LLAMA_FTYPES.
_OTHER = {
    "f32": WeightFormat("f32", "float", "float32 everywhere", 32),
    "bf16": WeightFormat("bf16", "float", "bfloat16 everywhere (the released checkpoints' dtype)", 16),
    "f16": WeightFormat("f16", "float", "float16 everywhere", 16),
    "fp8": WeightFormat("fp8", "fp8", "FP8 e4m3 decoder linears with one fp32 scale per output channel "
                        "(compressed-tensors FP8_DYNAMIC / vLLM fp8); embeddings, lm_head, norms, encoders bf16", 8),
    "qat-q4_0": WeightFormat("qat-q4_0", "gguf", "Google's QAT Q4_0 GGUF: llama.cpp Q4_0 types for a QAT checkpoint "
                             "(QAT weights: google/gemma-4-<size>-it-qat-q4_0-unquantized)", 4, 32),
    "mlx-4bit": WeightFormat("mlx-4bit", "mlx", "MLX affine 4-bit, group 64, bf16 scale + bias per group", 4, 64),
    "mlx-8bit": WeightFormat("mlx-8bit", "mlx", "MLX affine 8-bit, group 64, bf16 scale + bias per group", 8, 64),
    "awq-int4": WeightFormat("awq-int4", "awq", "AWQ GEMM int4, group 128: int32-packed weights and zeros, fp16 scales; "
                             "attention and dense MLP only (GPTQModel's Gemma 4 module tree): fused MoE experts stay bf16", 4, 128),
    "gptq-int4": WeightFormat("gptq-int4", "gptq", "GPTQ int4, group 128: int32-packed weights and zeros, fp16 scales, int32 "
                              "g_idx; attention and dense MLP only (GPTQModel): fused MoE experts stay bf16", 4, 128),
    "w4a16-g32": WeightFormat("w4a16-g32", "ct", "compressed-tensors W4A16 (llm-compressor pack-quantized), symmetric int4, "
                              "group 32, bf16 scales; every decoder linear incl. MoE experts, router/embeddings/lm_head "
                              "bf16 (group 32, Q4_0's block, divides the 26B-A4B's 704-wide experts, which vLLM requires)", 4, 32),
    "w4a16-g128": WeightFormat("w4a16-g128", "ct", "compressed-tensors W4A16 preset, symmetric int4, group 128, bf16 scales; "
                               "every decoder linear incl. MoE experts (a 704-wide row gets ceil(704/128) = 6 groups)", 4, 128),
    "nf4": WeightFormat("nf4", "nf4", "bitsandbytes NF4, blocksize 64, double-quantized absmax", 4, 64),
}


# MLX variants (issue 10), measured with mlx-lm's own quantize_model (measurements/mlx/): other group
# sizes, and the "PLE-safe" conversions on the Hub that keep the token and per-layer embedding tables
# in bf16 (the 262,144-row tables dominate E2B/E4B, so these are ~2.5x a plain 4-bit conversion).
_OTHER.update({
    "mlx-4bit-g32": WeightFormat("mlx-4bit-g32", "mlx", "MLX affine 4-bit, group 32, bf16 scale + bias per group", 4, 32),
    "mlx-4bit-g128": WeightFormat("mlx-4bit-g128", "mlx", "MLX affine 4-bit, group 128, bf16 scale + bias per group", 4, 128),
    "mlx-4bit-ple-safe": WeightFormat("mlx-4bit-ple-safe", "mlx", "MLX affine 4-bit, group 64; token and per-layer "
                                      "embedding tables kept bf16 (PLE-safe)", 4, 64),
    "mlx-8bit-ple-safe": WeightFormat("mlx-8bit-ple-safe", "mlx", "MLX affine 8-bit, group 64; token and per-layer "
                                      "embedding tables kept bf16 (PLE-safe)", 8, 64),
})
MLX_EMBEDDING_ROLES_KEPT_BF16 = ("token_embedding", "ple_table")

# LiteRT-LM (issue 10): the litert-torch quantization recipes behind Google's .litertlm builds
# (litert_torch/generative/utilities QuantizationName: dynamic_int4_block32, dynamic_int8), applied by
# ai-edge-quantizer to every fully-connected and embedding weight; other tensors stay float32 as in
# any TFLite model. How close the rule comes to Google's published files is in measurements/litert_lm/.
_OTHER.update({
    "litert-int4": WeightFormat("litert-int4", "litert", "LiteRT dynamic_int4_block32: int4 weights, one fp16 scale "
                                "per 32-weight block, embeddings included; norms float32", 4, 32),
    "litert-int8": WeightFormat("litert-int8", "litert", "LiteRT dynamic_int8: int8 weights, one float32 scale per "
                                "output channel, embeddings included; norms float32", 8, 0),
    # Google's mobile .litertlm builds mix 2/4/8-bit weights without publishing the assignment; this one
    # (MLP int2 per channel, other decoder weights and both embedding tables int4 block 32, encoders int8
    # per channel) is inferred: it reproduces the published E2B and E4B file sizes within 0.5%
    # (tests/test_litert_lm.py), it is not a documented recipe
    # ai-edge-quantizer's own Gemma 4 recipe (recipe.py gemma4_mixed48): embedder, per-layer embedder and
    # decoder fully-connected weights int4 channelwise, the per_layer projections int8 channelwise; TFLite keeps
    # a float32 scale and an int64 zero point per channel. Encoders are given the same int4 (their recipe is
    # separate; int4 is what makes the published E2B file come out within 0.4%)
    "litert-mixed48": WeightFormat("litert-mixed48", "litert", "ai-edge-quantizer gemma4_mixed48: int4 channelwise, "
                                   "per-layer-embedding projections int8; encoders int4", 4, 0),
    "litert-mobile": WeightFormat("litert-mobile", "litert", "Google's mobile .litertlm mix as inferred from its "
                                  "published sizes: MLP int2, attention and embeddings int4 (block 32), encoders int8", 4, 32),
})

# The formats people deploy, per runtime: what `planner fit` lists when no --weights is given.
COMMON_FORMATS = {
    "llama.cpp": ["bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "qat-q4_0", "q4_0", "iq4_xs", "q3_k_m", "q2_k"],
    "vllm": ["bf16", "fp8", "w4a16-g32", "awq-int4", "gptq-int4", "nf4"],
    "transformers": ["bf16", "fp8", "nf4", "w4a16-g32", "awq-int4", "gptq-int4"],
    "mlx": ["bf16", "mlx-8bit", "mlx-4bit", "mlx-4bit-ple-safe"],
    "litert-lm": ["litert-mobile", "litert-mixed48", "litert-int4", "litert-int8"],
}


def format_names() -> list[str]:
    from planner.model.gguf_mix import LLAMA_FTYPES

    names = list(_OTHER)
    names += [n for n in LLAMA_FTYPES if n not in _OTHER]
    return names


# A model folder's own tensors: `checkpoint:<family>` (planner/model/checkpoint.py names it).
CHECKPOINT_PREFIX = "checkpoint:"
_CHECKPOINT_FAMILIES = ("float", "awq", "gptq", "ct", "fp8", "nf4", "mlx")
_CHECKPOINT_ALIASES = {"bnb-int8": "nf4", "bnb-fp4": "nf4"}      # bitsandbytes' other modes: the nf4 family's runtimes


def get_format(name: str) -> WeightFormat:
    key = name.strip().lower()
    if key in _OTHER:
        return _OTHER[key]
    suffix = key[len(CHECKPOINT_PREFIX):] if key.startswith(CHECKPOINT_PREFIX) else None
    if suffix in _CHECKPOINT_FAMILIES or suffix in _CHECKPOINT_ALIASES:
        return WeightFormat(key, _CHECKPOINT_ALIASES.get(suffix, suffix),
                            "the checkpoint's own tensors, read from its safetensors headers")
    if key == "sfp8":
        # gemma.cpp's switched floating point: no modelled runtime loads it (llama.cpp, vLLM,
        # transformers and MLX have no SFP type), so it is not planned
        raise PlannerInputError("--weights sfp8: SFP8 is gemma.cpp's format and no runtime the planner models loads it; "
                                "8-bit choices: q8_0 (llama.cpp), fp8 (vLLM, transformers), mlx-8bit (MLX)")
    from planner.model.gguf_mix import LLAMA_FTYPES

    if key in LLAMA_FTYPES:
        return WeightFormat(key, "gguf", f"llama.cpp {key.upper()} mix (llama-quant.cpp type choices)")
    raise unknown_name("weight format", name, format_names(), flag="--weights")


def _is_encoder(t: TensorSpec) -> bool:
    return t.role in ("vision", "audio", "projector")


def _is_position_table(t: TensorSpec) -> bool:
    return t.role == "vision" and ("position_embedding" in t.name or t.name.endswith("pos_embedding"))


def tensor_bytes_float(t: TensorSpec, dtype: str) -> int:
    return t.numel * FLOAT_BYTES[dtype]


def weight_bytes_by_tensor(tensors: list[TensorSpec], fmt: WeightFormat, *, arch: str, n_layer: int,
                           n_expert: int = 0) -> dict[str, tuple[int, str]]:
    """tensor name -> (bytes, storage type). A GGUF leaves out the inventory tensors its converter
    drops (choose_tensor_types: the Gemma 4 assistants' masked embedding)."""
    out: dict[str, tuple[int, str]] = {}
    if fmt.family == "gguf":
        from planner.model.gguf_mix import choose_tensor_types, tensor_nbytes

        text = [t for t in tensors if not _is_encoder(t)]
        ftype = "q4_0" if fmt.name == "qat-q4_0" else fmt.name
        try:
            types = choose_tensor_types(text, ftype, arch=_gguf_arch(arch), n_expert=n_expert, n_layer=n_layer)
        except ValueError as e:
            raise PlannerInputError(f"--weights {fmt.name}: {e}") from None
        for t in text:
            typ = types.get(t.name)
            if typ is None:
                continue        # not in the GGUF (choose_tensor_types: the assistants' masked embedding)
            out[t.name] = (tensor_nbytes(t, typ), typ)
        for t in tensors:
            if _is_encoder(t):
                # llama.cpp loads encoders from a separate mmproj GGUF, conventionally F16 (F32 for 1-D);
                # the vision position-embedding table stays F32: the published
                # mmproj-gemma-4-26b-a4b-it-f16.gguf is 1,193,058,432 bytes, which is these F16/F32
                # bytes plus exactly 2 x 10240 x 1152 x 2 more (that table in F32) plus its header
                typ = "f16" if t.quantizable and not _is_position_table(t) else "f32"
                out[t.name] = (tensor_bytes_float(t, typ), typ)
        return out
    for t in tensors:
        out[t.name] = _tensor_bytes_other(t, fmt)
    return out


def _tensor_bytes_other(t: TensorSpec, fmt: WeightFormat) -> tuple[int, str]:
    fam = fmt.family
    if fam == "float":
        return tensor_bytes_float(t, fmt.name), fmt.name
    if fam == "litert":
        if not t.quantizable or len(t.shape) < 2 or (fmt.group_size and t.row_length % fmt.group_size):
            return t.numel * 4, "f32"
        if fmt.name == "litert-mixed48":
            bits = 8 if t.role == "ple_projection" and not _is_encoder(t) else 4
            return t.numel * bits // 8 + 12 * (t.numel // t.row_length), f"int{bits}-c"
        if fmt.name == "litert-mobile" and (_is_encoder(t) or t.role in ("mlp", "moe_experts")):
            bits = 8 if _is_encoder(t) else 2
            return t.numel * bits // 8 + 4 * (t.numel // t.row_length), f"int{bits}-pc"
        if fmt.group_size:
            return t.numel * fmt.bits // 8 + t.numel // fmt.group_size * 2, f"int{fmt.bits}-b{fmt.group_size}"
        return t.numel + 4 * (t.numel // t.row_length), "int8-pc"
    if fam == "mlx" and t.buffer:
        # mlx-lm computes RoPE frequencies (mlx_lm/models/rope_utils.py) and loads no rope_freqs table;
        # other buffers (Gemma 4's layer scalar) load as bf16 parameters (measured: measurements/mlx/)
        return (0, "none") if t.name.startswith("rope_freqs") else (t.numel * 2, "bf16")
    if t.buffer:
        return t.numel * 4, "f32"
    if not t.quantizable:
        # norms/biases/scalars keep the checkpoint's float type
        return t.numel * 2, "bf16"
    linear = t.role not in ("token_embedding", "ple_table", "lm_head") and not _is_encoder(t) and len(t.shape) >= 2
    if fam == "fp8":
        if not linear:
            return t.numel * 2, "bf16"
        out_channels = t.numel // t.row_length
        return t.numel + 4 * out_channels, "fp8_e4m3"
    if fam == "mlx":
        # mlx.nn.quantize quantizes every Linear and Embedding whose last dim divides the group
        # size (mlx_lm/utils.py class_predicate); scales and biases are in the model dtype (bf16).
        if t.row_length % fmt.group_size or len(t.shape) < 2:
            return t.numel * 2, "bf16"
        if fmt.name.endswith("-ple-safe") and t.role in MLX_EMBEDDING_ROLES_KEPT_BF16:
            return t.numel * 2, "bf16"
        bits, group = fmt.bits, fmt.group_size
        if t.role == "moe_router":
            # gemma4_text.Model.quant_predicate: router.proj is always 8-bit, group 64
            bits, group = 8, 64
        groups = t.numel // group
        return t.numel * bits // 8 + groups * 2 * 2, f"mlx-q{bits}"
    fused_experts = t.role == "moe_experts" and len(t.shape) == 3
    if fam in ("awq", "gptq"):
        # GPTQModel (gptqmodel/models/definitions/gemma4.py module_tree) quantizes q/k/v/o and the
        # dense MLP of each layer; Gemma 4's router and fused 3-D experts (nn.Parameter, not
        # nn.Linear) are not in the tree and stay bf16. AutoAWQ has no Gemma 3/4 support.
        if not linear or fused_experts or t.role == "moe_router":
            return t.numel * 2, "bf16"
        # gptqmodel/nn_modules/qlinear/__init__.py: qweight ceil(in*bits/32) x out, qzeros and
        # scales ceil(in/group) rows (auto-padding kernels take in % group != 0), g_idx per input
        in_f, out_f = t.row_length, t.numel // t.row_length
        groups = ceil(in_f / fmt.group_size)
        qweight = ceil(in_f * 4 / 32) * out_f * 4
        qzeros = groups * ceil(out_f / 8) * 4       # packed 4-bit zero points, int32
        scales = groups * out_f * 2                 # fp16
        g_idx = in_f * 4 if fam == "gptq" else 0    # int32 group index per input channel
        return qweight + qzeros + scales + g_idx, f"{fam}-int4"
    if fam == "ct":
        # llm-compressor linearizes Gemma 4's fused experts (llmcompressor/modeling/moe/
        # conversion_mappings.py: gemma4 -> Gemma4TextExperts) so every expert's gate/up/down is a
        # Linear it quantizes; recipes ignore the router. compressed-tensors pack-quantized:
        # weight_packed int32 (out, ceil(in/8)), weight_scale in the model dtype (out, ceil(in/g))
        # (quantization/lifecycle/initialize.py strategy_cdiv: a partial last group is allowed),
        # weight_shape int64 [2] per module (per expert). vLLM keeps this size in memory: Marlin MoE
        # pads the expert width only to lcm(64, group) (marlin_utils.py marlin_moe_padded_intermediate),
        # and 704 = 11 x 64 needs none
        if not linear or t.role == "moe_router":
            return t.numel * 2, "bf16"
        in_f = t.row_length
        rows = t.numel // in_f
        modules = t.shape[0] * (2 if t.name.endswith("gate_up_exps.weight") else 1) if fused_experts else 1
        packed = rows * ceil(in_f / 8) * 4
        scales = rows * ceil(in_f / fmt.group_size) * 2
        return packed + scales + 16 * modules, f"int4-g{fmt.group_size}"
    if fam == "nf4":
        # transformers' replace_with_bnb_linear (integrations/bitsandbytes.py) swaps nn.Linear
        # modules only: fused 3-D expert parameters stay bf16
        if not linear or fused_experts:
            return t.numel * 2, "bf16"
        blocks = ceil(t.numel / 64)
        # double quantization: absmax as uint8 per 64-block, plus fp32 absmax/offset per 256 blocks
        return t.numel // 2 + blocks + ceil(blocks / 256) * 4 + 4, "nf4"
    raise AssertionError(fam)


def _gguf_arch(arch: str) -> str:
    return {"gemma4_unified": "gemma4", "gemma4_assistant": "gemma4-assistant"}.get(arch, arch)
