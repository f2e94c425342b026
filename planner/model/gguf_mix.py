"""llama.cpp's per-tensor GGUF type choice ("quantization mix"), reproduced in pure Python.

Reproduces `llama-quantize <in.gguf> <out.gguf> <FTYPE>` (no imatrix unless `imatrix=True`, no
`--pure`, no `--tensor-type` regex overrides) for the llama.cpp version vendored by
llama-cpp-python 0.3.36. All citations are to that tree (vendor/llama.cpp):

* src/llama-quant.cpp  `tensor_get_category` (l.119), `tensor_allows_quantization` (l.287),
  `tensor_type_fallback` (l.390), `llama_tensor_get_type_impl` (l.446),
  `llama_tensor_get_type` (l.717), `tensor_requires_imatrix` (l.856),
  `llama_ftype_get_default_type` (l.881), `init_quantize_state_counters` (l.927),
  tensor order: `llama_model_loader::weights_map` sorted by `weight_name_comparer`
  (src/llama-model-loader.h:54: layer number of "blk.%d." first, non-block tensors = -1, then name).
* conversion/base.py l.1080-1145 (`convert_hf_to_gguf.py`): the type a tensor has *before*
  quantization, which is what llama-quantize keeps for tensors it never quantizes.

Stdlib + `planner.model.tensors` only; importing this module must stay cheap (CLI fast path).

Text-decoder tensor names (llama.cpp GGUF names)
================================================

Names: src/llama-arch.cpp LLM_TENSOR_NAMES (l.440-582); which tensors each arch loads and their
shapes: src/models/gemma3.cpp, gemma3n.cpp, gemma4.cpp `load_arch_tensors`; HF -> GGUF mapping:
gguf-py/gguf/tensor_mapping.py and conversion/gemma.py. Shapes below are PyTorch order
(out, in); GGUF `ne` is the reverse, and the quantization row length is the last entry here.
HF names are relative to the text model (`model.` / `model.language_model.`). Symbols:
E = hidden_size, V = GGUF vocab rows, Hq = num_attention_heads, Hkv(l) / hd(l) = per-layer KV
heads / head dim, F(l) = intermediate_size (per layer), L = num_hidden_layers, P =
hidden_size_per_layer_input, X = num_experts, Fe = moe_intermediate_size, A = altup_num_inputs (4),
R = laurel_rank. "1-D" tensors are never quantized (F32 in every GGUF).

All three arches (per layer N = 0..L-1 unless noted)
  token_embd.weight              (V, E)        embed_tokens.weight
  output_norm.weight             (E,)          norm.weight                        1-D
  output.weight                  (V, E)        lm_head.weight  -- absent when tied (all Gemma);
                                               llama.cpp then reuses token_embd (TENSOR_DUPLICATED)
  blk.N.attn_norm.weight         (E,)          layers.N.input_layernorm           1-D
  blk.N.attn_q.weight            (Hq*hd, E)    layers.N.self_attn.q_proj
  blk.N.attn_k.weight            (Hkv*hd, E)   layers.N.self_attn.k_proj
  blk.N.attn_v.weight            (Hkv*hd, E)   layers.N.self_attn.v_proj
  blk.N.attn_output.weight       (E, Hq*hd)    layers.N.self_attn.o_proj
  blk.N.attn_q_norm.weight       (hd,)         layers.N.self_attn.q_norm          1-D
  blk.N.attn_k_norm.weight       (hd,)         layers.N.self_attn.k_norm          1-D
  blk.N.post_attention_norm.weight (E,)        layers.N.post_attention_layernorm  1-D
  blk.N.ffn_norm.weight          (E,)          layers.N.pre_feedforward_layernorm 1-D
  blk.N.ffn_gate.weight          (F, E)        layers.N.mlp.gate_proj
  blk.N.ffn_up.weight            (F, E)        layers.N.mlp.up_proj
  blk.N.ffn_down.weight          (E, F)        layers.N.mlp.down_proj
  blk.N.post_ffw_norm.weight     (E,)          layers.N.post_feedforward_layernorm 1-D
  (A fused blk.N.attn_qkv.weight is accepted instead of q/k/v but no Gemma converter writes it.)

gemma3 (src/models/gemma3.cpp:34): exactly the list above. V = tokenizer size: the converter
  drops the OOV rows of embed_tokens (conversion/gemma.py:163, e.g. 262208 -> 262144).

gemma3n (src/models/gemma3n.cpp:21) adds; V = config vocab_size (262400): both embedding tables
  are zero-padded up to it (conversion/gemma.py:575). All layers have attn_k/attn_v (required)
  even the KV-shared ones.
  per_layer_token_embd.weight    (V, L*P)      embed_tokens_per_layer.weight
  per_layer_model_proj.weight    (L*P, E)      per_layer_model_projection.weight  (never quantized)
  per_layer_proj_norm.weight     (P,)          per_layer_projection_norm.weight   1-D
  altup_proj.weight              (A-1, E, E)   altup_projections.{0,1,2} stacked  (never quantized)
  altup_unembd_proj.weight       (A-1, E, E)   altup_unembed_projections.* stacked (never quantized)
  blk.N.inp_gate.weight          (P, E)        layers.N.per_layer_input_gate
  blk.N.proj.weight              (E, P)        layers.N.per_layer_projection
  blk.N.post_norm.weight         (E,)          layers.N.post_per_layer_input_norm 1-D
  blk.N.altup_correct_coef.weight (A, A)       layers.N.altup.correction_coefs    F32, never quantized
  blk.N.altup_correct_scale.weight (E,)        layers.N.altup.correct_output_scale 1-D
  blk.N.altup_predict_coef.weight (A*A, A)     layers.N.altup.prediction_coefs    F32, never quantized
  blk.N.altup_router.weight      (A, E)        layers.N.altup.modality_router     (never quantized)
  blk.N.altup_router_norm.weight (E,)          layers.N.altup.router_norm         1-D
  blk.N.laurel_l.weight          (R, E)        layers.N.laurel.linear_left        (never quantized)
  blk.N.laurel_r.weight          (E, R)        layers.N.laurel.linear_right       (never quantized)
  blk.N.laurel_post_norm.weight  (E,)          layers.N.laurel.post_laurel_norm   1-D

gemma4 (src/models/gemma4.cpp:37) adds / changes:
  hd(l), Hkv(l): sliding layers use head_dim and num_key_value_heads; full-attention layers use
  global_head_dim and num_global_key_value_heads (GGUF key_length / key_length_swa and a per-layer
  head_count_kv array, conversion/gemma.py:680-731). F(l) may be doubled on KV-shared layers
  (use_double_wide_mlp, per-layer feed_forward_length array).
  rope_freqs.weight              (global_head_dim/2,)  generated by the converter (1.0 / 1e30
                                               proportional-RoPE factors), one tensor shared by
                                               all full-attention layers                1-D
  blk.N.layer_output_scale.weight (1,)         layers.N.layer_scalar              1-D
  blk.N.attn_k.weight / attn_k_norm.weight     only where the checkpoint has them: HF builds no
                                               k_proj/k_norm for KV-shared layers (the last
                                               num_kv_shared_layers), llama.cpp loads them with
                                               TENSOR_NOT_REQUIRED there; if a checkpoint still
                                               carries them the converter writes them and they
                                               are loaded (and counted by the quantizer).
  blk.N.attn_v.weight            absent on full-attention layers when attention_k_eq_v (V = K
                                               projection) and on KV-shared layers; always
                                               TENSOR_NOT_REQUIRED in llama.cpp.
  PLE (E2B/E4B, P > 0): per_layer_token_embd.weight (V, L*P), per_layer_model_proj.weight
  (L*P, E), per_layer_proj_norm.weight (P,), blk.N.inp_gate.weight (P, E), blk.N.proj.weight
  (E, P), blk.N.post_norm.weight (E,) -- same names/HF sources as gemma3n. V must equal the
  token_embd vocab (llama.cpp creates it as {L*P, n_vocab}).
  MoE layers (26B-A4B; the dense ffn_gate/up/down above stay, as the shared expert):
  blk.N.ffn_gate_inp.weight      (X, E)        layers.N.router.proj   F32 in the GGUF, never quantized
  blk.N.ffn_gate_inp.scale       (E,)          layers.N.router.scale               1-D
  blk.N.pre_ffw_norm_2.weight    (E,)          layers.N.pre_feedforward_layernorm_2 1-D
  blk.N.post_ffw_norm_1.weight   (E,)          layers.N.post_feedforward_layernorm_1 1-D
  blk.N.post_ffw_norm_2.weight   (E,)          layers.N.post_feedforward_layernorm_2 1-D
  blk.N.ffn_gate_up_exps.weight  (X, 2*Fe, E)  layers.N.experts.gate_up_proj (kept fused)
  blk.N.ffn_down_exps.weight     (X, E, Fe)    layers.N.experts.down_proj
  blk.N.ffn_down_exps.scale      (X,)          layers.N.router.per_expert_scale    1-D
  (llama.cpp also accepts split blk.N.ffn_gate_exps / ffn_up_exps (X, Fe, E).)
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from planner.model.tensors import TensorSpec

__all__ = [
    "LLAMA_FTYPES",
    "FTYPE_ALIASES",
    "GGML_TYPE_SIZES",
    "GGUF_DEFAULT_ALIGNMENT",
    "ENCODER_ROLES",
    "ftype_default_type",
    "converter_type",
    "tensor_allows_quantization",
    "tensor_requires_imatrix",
    "choose_tensor_types",
    "tensor_nbytes",
    "gguf_tensor_order",
    "gguf_data_layout",
    "mapped_span",
]

# GGUF_DEFAULT_ALIGNMENT (ggml/include/gguf.h); llama-quantize pads every tensor's data to it
# (src/llama-quant.cpp, main loop: zeros(fout, GGML_PAD(new_size, align) - new_size)).
GGUF_DEFAULT_ALIGNMENT = 32

# ggml type name -> (block size, bytes per block). Block layouts: ggml/src/ggml-common.h
# (static_asserts next to each block_* struct); QK_K = 256, ggml_half = 2 bytes.
GGML_TYPE_SIZES: dict[str, tuple[int, int]] = {
    "f32": (1, 4),
    "f16": (1, 2),
    "bf16": (1, 2),
    "f64": (1, 8),
    "i8": (1, 1),
    "i16": (1, 2),
    "i32": (1, 4),
    "i64": (1, 8),
    "q4_0": (32, 2 + 16),                    # d + 32 nibbles
    "q4_1": (32, 2 + 2 + 16),                # d, m + nibbles
    "q5_0": (32, 2 + 4 + 16),                # d + qh[4] + nibbles
    "q5_1": (32, 2 + 2 + 4 + 16),
    "q8_0": (32, 2 + 32),
    # q8_1 (36 bytes in this ggml) is an activation-only vec_dot type, never stored; left out on
    # purpose -- gguf-py 0.19 still lists its old 40-byte layout.
    "q2_k": (256, 2 * 2 + 256 // 16 + 256 // 4),            # 84
    "q3_k": (256, 2 + 256 // 4 + 256 // 8 + 12),            # 110
    "q4_k": (256, 2 * 2 + 12 + 256 // 2),                   # 144
    "q5_k": (256, 2 * 2 + 12 + 256 // 2 + 256 // 8),        # 176
    "q6_k": (256, 2 + 256 // 16 + 3 * 256 // 4),            # 210
    "q8_k": (256, 4 + 256 + 256 // 16 * 2),                 # 292 (vec_dot type)
    "iq2_xxs": (256, 2 + 256 // 8 * 2),                     # 66
    "iq2_xs": (256, 2 + 256 // 8 * 2 + 256 // 32),          # 74
    "iq2_s": (256, 2 + 256 // 4 + 256 // 16),               # 82
    "iq3_xxs": (256, 2 + 3 * (256 // 8)),                   # 98
    "iq3_s": (256, 2 + 13 * (256 // 32) + 256 // 64),       # 110
    "iq1_s": (256, 2 + 256 // 8 + 256 // 16),               # 50
    "iq1_m": (256, 256 // 8 + 256 // 16 + 256 // 32),       # 56
    "iq4_nl": (32, 2 + 16),
    "iq4_xs": (256, 2 + 2 + 256 // 64 + 256 // 2),          # 136
    "tq1_0": (256, 2 + 256 // 64 + (256 - 4 * 256 // 64) // 5),  # 54
    "tq2_0": (256, 2 + 256 // 4),                           # 66
    "mxfp4": (32, 1 + 16),
    "nvfp4": (64, 64 // 16 + 64 // 2),                      # 36
    "q1_0": (128, 2 + 128 // 8),                            # 18
    "q2_0": (64, 2 + 64 // 4),                              # 18
}

# llama-quantize FTYPE names (tools/quantize/quantize.cpp QUANT_OPTIONS, lower-cased; COPY left
# out) -> default ggml type (src/llama-quant.cpp:881 llama_ftype_get_default_type).
_FTYPE_DEFAULT: dict[str, str] = {
    "q1_0": "q1_0",
    "q2_0": "q2_0",
    "q4_0": "q4_0",
    "q4_1": "q4_1",
    "mxfp4_moe": "mxfp4",
    "q5_0": "q5_0",
    "q5_1": "q5_1",
    "iq2_xxs": "iq2_xxs",
    "iq2_xs": "iq2_xs",
    "iq2_s": "iq2_xs",      # sic: IQ2_S files default to IQ2_XS
    "iq2_m": "iq2_s",
    "iq1_s": "iq1_s",
    "iq1_m": "iq1_m",
    "tq1_0": "tq1_0",
    "tq2_0": "tq2_0",
    "q2_k": "q2_k",
    "q2_k_s": "q2_k",
    "iq3_xxs": "iq3_xxs",
    "iq3_s": "iq3_s",
    "iq3_m": "iq3_s",
    "iq3_xs": "iq3_s",
    "q3_k_s": "q3_k",
    "q3_k_m": "q3_k",
    "q3_k_l": "q3_k",
    "iq4_nl": "iq4_nl",
    "iq4_xs": "iq4_xs",
    "q4_k_s": "q4_k",
    "q4_k_m": "q4_k",
    "q5_k_s": "q5_k",
    "q5_k_m": "q5_k",
    "q6_k": "q6_k",
    "q8_0": "q8_0",
    "f16": "f16",
    "bf16": "bf16",
    "f32": "f32",
}
LLAMA_FTYPES: tuple[str, ...] = tuple(_FTYPE_DEFAULT)
# QUANT_OPTIONS aliases ("alias for Q4_K_M" etc.)
FTYPE_ALIASES: dict[str, str] = {"q3_k": "q3_k_m", "q4_k": "q4_k_m", "q5_k": "q5_k_m"}

_UNQUANTIZED = frozenset({"f32", "f16", "bf16", "f64", "i8", "i16", "i32", "i64"})

# Inventory roles that are not part of llama.cpp's text GGUF (encoders live in the separate mmproj
# GGUF, which llama-quantize does not mix); choose_tensor_types skips them. "drafter" tensors are
# kept: they are the Gemma 4 assistant GGUF's own tensors (arch gemma4-assistant).
ENCODER_ROLES = frozenset({"vision", "audio", "projector"})

# tensor_category (src/llama-quant.cpp:26)
_TOKEN_EMBD, _ATTN_Q, _ATTN_V, _ATTN_K, _ATTN_QKV, _ATTN_KV_B, _ATTN_OUT = range(7)
_FFN_UP, _FFN_GATE, _FFN_DOWN, _OUTPUT, _OTHER = range(7, 12)

def _norm_ftype(ftype: str) -> str:
    f = ftype.strip().lower()
    f = FTYPE_ALIASES.get(f, f)
    if f not in _FTYPE_DEFAULT:
        raise ValueError(f"unknown llama.cpp ftype {ftype!r}; allowed: {', '.join(LLAMA_FTYPES)}")
    return f


def ftype_default_type(ftype: str) -> str:
    """llama_ftype_get_default_type (src/llama-quant.cpp:881)."""
    return _FTYPE_DEFAULT[_norm_ftype(ftype)]


def _is_quantized(ggml_type: str) -> bool:
    return ggml_type not in _UNQUANTIZED


def _ne(t: TensorSpec) -> tuple[int, ...]:
    """GGUF/ggml dimension order (ne[0] = row length)."""
    return tuple(reversed(t.shape)) if t.shape else (1,)


def _ggml_n_dims(t: TensorSpec) -> int:
    """ggml_n_dims: trailing size-1 dimensions do not count; a scalar is 1-D."""
    ne = _ne(t)
    for i in range(len(ne) - 1, 0, -1):
        if ne[i] != 1:
            return i + 1
    return 1


_BLK_RE = re.compile(r"blk\.(\d+)\.")


def _layer_of(name: str) -> int:
    """sscanf(name, "blk.%d.", &layer) as in weight_name_comparer / layer_info; -1 if absent."""
    m = _BLK_RE.match(name)
    return int(m.group(1)) if m else -1


def _category(name: str) -> int:
    """tensor_get_category (src/llama-quant.cpp:119): exact names first, then substrings, in order."""
    if name == "output.weight":
        return _OUTPUT
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return _TOKEN_EMBD
    for needle, cat in (
        ("attn_qkv.weight", _ATTN_QKV),
        ("attn_kv_b.weight", _ATTN_KV_B),
        ("attn_v.weight", _ATTN_V),
        ("attn_k.weight", _ATTN_K),
        ("attn_q.weight", _ATTN_Q),
        ("attn_output.weight", _ATTN_OUT),
        ("ffn_up", _FFN_UP),        # also ffn_up_exps / ffn_up_shexp
        ("ffn_gate", _FFN_GATE),    # also ffn_gate_exps / ffn_gate_up_exps (ffn_gate_inp is never quantized)
        ("ffn_down", _FFN_DOWN),    # also ffn_down_exps / ffn_down_shexp
    ):
        if needle in name:
            return cat
    return _OTHER


def _is_attn_v_like(cat: int) -> bool:
    """category_is_attn_v (src/llama-quant.cpp:158)."""
    return cat in (_ATTN_V, _ATTN_QKV, _ATTN_KV_B)


def converter_type(name: str, shape: tuple[int, ...], outtype: str = "bf16") -> str:
    """Type convert_hf_to_gguf.py writes for a text tensor (conversion/base.py:1080-1145).

    `outtype` is --outtype; "auto" (the default) resolves to bf16 for bf16 checkpoints (all Gemma
    releases), f16 for f16 ones (conversion/base.py:181). 1-D tensors, `*_norm.weight`, the MoE
    router (`ffn_gate_inp`), AltUp coefficient matrices and anything not ending in `.weight` are
    always F32. With --outtype q8_0 a row length not divisible by 32 falls back to F16.
    """
    out = outtype.lower()
    if len(shape) <= 1 or name.endswith("_norm.weight"):
        return "f32"
    if (
        ".ffn_gate_inp." in name or ".ffn_gate_inp_shexp." in name
        or name in ("position_embd.weight", "token_types.weight")
        or ".ssm_conv1d." in name or ".shortconv.conv." in name
        or ".altup_correct_coef." in name or ".altup_predict_coef." in name
        or name[-7:] not in (".weight", ".lora_a", ".lora_b")
    ):
        return "f32"
    if out in ("f32", "f16", "bf16"):
        return out
    if out == "q8_0":
        return "q8_0" if shape[-1] % 32 == 0 else "f16"
    raise ValueError(f"unsupported converter outtype {outtype!r} (use f32, f16, bf16 or q8_0)")


def tensor_allows_quantization(t: TensorSpec, *, quantize_output_tensor: bool = True) -> bool:
    """tensor_allows_quantization (src/llama-quant.cpp:287), for the names that can occur in
    Gemma-family and other common GGUFs (the GLM5-next-only exclusions are not reproduced)."""
    if _ggml_n_dims(t) < 2:                       # only 2-D and 3-D (experts) tensors
        return False
    name = t.name
    q = name.endswith("weight")
    q &= "_norm.weight" not in name
    q &= quantize_output_tensor or name != "output.weight"
    q &= "ffn_gate_inp.weight" not in name        # MoE router
    q &= "ffn_gate_tid2eid.weight" not in name
    q &= "altup" not in name                      # Gemma 3n AltUp (tiny)
    q &= "laurel" not in name                     # Gemma 3n LAuReL
    q &= "per_layer_model_proj" not in name       # Gemma 3n/4 PLE projection ("not too big")
    q &= name not in ("position_embd.weight", "token_types.weight")
    q &= "ssm_conv1d" not in name
    q &= "shortconv.conv.weight" not in name
    q &= "indexer.k_proj.weight" not in name and "indexer.q_proj.weight" not in name
    for rwkv in ("time_mix_first", "time_mix_w0", "time_mix_w1", "time_mix_w2", "time_mix_v0",
                 "time_mix_v1", "time_mix_v2", "time_mix_a0", "time_mix_a1", "time_mix_a2",
                 "time_mix_g1", "time_mix_g2", "time_mix_decay_w1", "time_mix_decay_w2",
                 "time_mix_lerp_fused"):
        q &= f"{rwkv}.weight" not in name
    q &= "attn_rel_b.weight" not in name
    for mm in (".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
               ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd"):
        q &= mm not in name
    return bool(q)


def tensor_requires_imatrix(name: str, ggml_type: str, ftype: str) -> bool:
    """tensor_requires_imatrix (src/llama-quant.cpp:856): llama-quantize refuses to write these
    types without --imatrix (token_embd/per_layer_token_embd/output are exempt)."""
    if name in ("token_embd.weight", "per_layer_token_embd.weight", "output.weight"):
        return False
    if ggml_type in ("iq3_xxs", "iq2_xxs", "iq2_xs", "iq2_s", "iq1_m", "iq1_s"):
        return True
    return ggml_type == "q2_k" and _norm_ftype(ftype) == "q2_k_s"


def _fallback(t: TensorSpec, target: str) -> str:
    """tensor_type_fallback (src/llama-quant.cpp:390): row length (ne[0]) not divisible by the
    block size -> a 32-block type, or F16 if even that does not divide it."""
    ncols = _ne(t)[0]
    qk = GGML_TYPE_SIZES[target][0]
    if ncols % qk == 0:
        return target
    if target in ("iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq4_xs"):
        ret = "iq4_nl"
    elif target in ("q2_0", "q2_k", "q3_k", "tq1_0", "tq2_0"):
        ret = "q4_0"
    elif target == "q4_k":
        ret = "q5_0"
    elif target == "q5_k":
        ret = "q5_1"
    elif target == "q6_k":
        ret = "q8_0"
    elif qk <= 32:
        ret = target
    else:
        raise ValueError(f"no tensor type fallback is defined for type {target} ({t.name}, ncols {ncols})")
    if ncols % GGML_TYPE_SIZES[ret][0] != 0:
        ret = "f16"                               # "must use F16 due to unusual shape"
    return ret


class _State:
    """quantize_state_impl counters (src/llama-quant.cpp:172)."""

    def __init__(self, n_attention_wv: int, n_layer: int, tied: bool) -> None:
        self.n_attention_wv = n_attention_wv
        self.i_attention_wv = 0
        self.n_ffn_down = self.n_ffn_gate = self.n_ffn_up = n_layer   # = hparams.n_layer_all
        self.i_ffn_down = self.i_ffn_gate = self.i_ffn_up = 0
        self.has_tied_embeddings = tied


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    # i_layer >= n_layers//8 whenever the modulo is evaluated, so C and Python % agree
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def _get_type_impl(qs: _State, new_type: str, t: TensorSpec, ftype: str, cat: int, *, arch: str,
                   n_expert: int, n_gqa: int, is_70b: bool, has_imatrix: bool,
                   output_tensor_type: str | None, token_embedding_type: str | None) -> str:
    """llama_tensor_get_type_impl (src/llama-quant.cpp:446)."""
    name = t.name
    falcon = arch == "falcon"

    def layer_info(i_layer: int, n_layer: int) -> tuple[int, int]:
        # n_expert = max(1, hparams.n_expert); MoE layers parse the layer from the name
        if max(1, n_expert) > 1:
            i_layer = _layer_of(name)
            if i_layer < 0 or i_layer >= n_layer:
                raise ValueError(f"Bad layer {i_layer} for tensor {name}. Must be in [0, {n_layer})")
        return i_layer, n_layer

    iq12 = ftype in ("iq2_xxs", "iq2_xs", "iq1_s", "iq2_s", "iq2_m", "iq1_m")

    # l.490: output, and token embeddings of tied models, get the output-tensor treatment
    if cat == _OUTPUT or (qs.has_tied_embeddings and cat == _TOKEN_EMBD):
        if output_tensor_type is not None:
            return output_tensor_type
        nx = _ne(t)[0]
        qk_k = GGML_TYPE_SIZES[new_type][0]
        if ftype == "mxfp4_moe":
            return "q8_0"
        if falcon or nx % qk_k != 0:
            return "q8_0"
        if ftype in ("iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq2_s", "iq2_m", "iq1_m"):
            return "q5_k"
        if new_type != "q8_0":
            return "q6_k"
        return new_type
    # l.512
    if ftype == "mxfp4_moe":
        return "mxfp4" if len(_ne(t)) > 2 and _ne(t)[2] > 1 else "q8_0"
    # l.525: untied token embeddings (token_embd / per_layer_token_embd)
    if cat == _TOKEN_EMBD:
        if token_embedding_type is not None:
            return token_embedding_type
        if ftype in ("iq2_xxs", "iq2_xs", "iq1_s", "iq1_m"):
            return "q2_k"
        if ftype in ("iq2_s", "iq2_m", "iq3_xxs"):
            return "iq3_s"
        if ftype in ("tq1_0", "tq2_0", "q2_0"):
            return "q4_k"
        return new_type
    # l.543: the IQ1/IQ2 family
    if iq12:
        if _is_attn_v_like(cat):
            if n_gqa >= 4 or n_expert >= 4:
                new_type = "q4_k"
            else:
                new_type = "iq3_s" if ftype in ("iq2_s", "iq2_m") else "q2_k"
            qs.i_attention_wv += 1
        elif n_expert == 8 and cat == _ATTN_K:
            new_type = "q4_k"
        elif cat == _FFN_DOWN:
            if qs.i_ffn_down < qs.n_ffn_down // 8:
                new_type = "iq3_s" if ftype in ("iq2_s", "iq2_m") else "q2_k"
            qs.i_ffn_down += 1
        elif cat == _ATTN_OUT:
            if n_expert == 8:
                new_type = "q5_k"
            elif ftype in ("iq1_s", "iq1_m"):
                new_type = "iq2_xxs"
            elif ftype in ("iq2_s", "iq2_m"):
                new_type = "iq3_s"
        return new_type
    # l.567: attn_v (and fused qkv / kv_b)
    if _is_attn_v_like(cat):
        if ftype == "q2_k":
            new_type = "q4_k" if n_gqa >= 4 else "q3_k"
        elif ftype == "q2_k_s" and n_gqa >= 4:
            new_type = "q4_k"
        elif ftype == "iq3_xxs":
            new_type = "q4_k" if n_gqa >= 4 else ("iq3_s" if not has_imatrix else "iq3_xxs")
        elif ftype in ("iq3_xs", "iq3_s") and n_gqa >= 4:
            new_type = "q4_k"
        elif ftype == "iq3_m":
            new_type = "q4_k"
        elif ftype == "q3_k_m":
            new_type = "q5_k" if qs.i_attention_wv < 2 else "q4_k"
        elif ftype == "q3_k_l":
            new_type = "q5_k"
        elif ftype in ("iq4_nl", "iq4_xs") and n_gqa >= 4:
            new_type = "q5_k"
        elif ftype in ("q4_k_m", "q5_k_m") and _use_more_bits(qs.i_attention_wv, qs.n_attention_wv):
            new_type = "q6_k"
        elif ftype == "q4_k_s" and qs.i_attention_wv < 4:
            new_type = "q5_k"
        if is_70b and new_type in ("q3_k", "q4_k"):
            new_type = "q5_k"
        if n_expert == 8:
            new_type = "q8_0"
        qs.i_attention_wv += 1
        return new_type
    # l.605
    if cat == _ATTN_K:
        if n_expert == 8:
            new_type = "q8_0"
        elif ftype == "iq3_xs":
            new_type = "iq3_xxs"
        elif ftype == "iq3_xxs":
            new_type = "iq2_s"
        return new_type
    # l.617
    if cat == _ATTN_Q:
        if ftype == "iq3_xs":
            new_type = "iq3_xxs"
        elif ftype == "iq3_xxs":
            new_type = "iq2_s"
        return new_type
    # l.624
    if cat == _FFN_DOWN:
        i_layer, n_layer = layer_info(qs.i_ffn_down, qs.n_ffn_down)
        if ftype == "q2_k":
            new_type = "q3_k"
        elif ftype == "q2_k_s":
            if i_layer < n_layer // 8:
                new_type = "q4_k"
        elif ftype == "iq3_xxs" and not has_imatrix:
            new_type = "q4_k" if i_layer < n_layer // 8 else "q3_k"
        elif ftype == "q3_k_m":
            if i_layer < n_layer // 16:
                new_type = "q5_k"
            elif not falcon or _use_more_bits(i_layer, n_layer):
                new_type = "q4_k"
            else:
                new_type = "q3_k"
        elif ftype == "iq3_m" and (i_layer < n_layer // 8 or (n_expert == 8 and _use_more_bits(i_layer, n_layer))):
            new_type = "q4_k"
        elif ftype == "q3_k_l":
            new_type = "q4_k" if falcon else "q5_k"
        elif ftype == "q4_k_m":
            if falcon:
                new_type = ("q6_k" if i_layer < n_layer // 16
                            else "q5_k" if _use_more_bits(i_layer, n_layer) else "q4_k")
            elif _use_more_bits(i_layer, n_layer):
                new_type = "q6_k"
        elif i_layer < n_layer // 8 and ftype in ("iq4_nl", "iq4_xs") and not has_imatrix:
            new_type = "q5_k"
        elif ftype == "q5_k_m" and _use_more_bits(i_layer, n_layer):
            new_type = "q6_k"
        elif ftype == "q4_k_s" and not falcon and i_layer < n_layer // 8:
            new_type = "q5_k"
        elif ftype in ("q4_0", "q5_0") and has_imatrix and i_layer < n_layer // 8:
            new_type = "q4_1" if ftype == "q4_0" else "q5_1"
        qs.i_ffn_down += 1
        return new_type
    # l.669
    if cat == _ATTN_OUT:
        if not falcon:
            if n_expert == 8:
                if ftype in ("q2_k", "iq3_xs", "iq3_xxs", "q3_k_s", "q3_k_m", "iq4_nl",
                             "q4_k_s", "q4_k_m", "iq3_s", "iq3_m", "iq4_xs"):
                    new_type = "q5_k"
            else:
                new_type = {"q2_k": "q3_k", "iq3_xxs": "iq3_s", "q3_k_m": "q4_k",
                            "q3_k_l": "q5_k", "iq3_m": "q4_k"}.get(ftype, new_type)
        elif ftype == "q3_k_l":
            new_type = "q4_k"
        return new_type
    # l.689
    if cat == _ATTN_QKV:
        if ftype in ("q3_k_m", "q3_k_l", "iq3_m"):
            new_type = "q4_k"
        elif ftype == "q4_k_m":
            new_type = "q5_k"
        elif ftype == "q5_k_m":
            new_type = "q6_k"
        return new_type
    # l.696 / l.704
    if cat in (_FFN_GATE, _FFN_UP):
        if cat == _FFN_GATE:
            i_layer, n_layer = layer_info(qs.i_ffn_gate, qs.n_ffn_gate)
        else:
            i_layer, n_layer = layer_info(qs.i_ffn_up, qs.n_ffn_up)
        if ftype == "iq3_xs" and n_layer // 8 <= i_layer < 7 * n_layer // 8:
            new_type = "iq3_xxs"
        if cat == _FFN_GATE:
            qs.i_ffn_gate += 1
        else:
            qs.i_ffn_up += 1
        return new_type
    return new_type


def _infer_n_gqa(tensors: Iterable[TensorSpec]) -> int:
    """hparams.n_gqa() = n_head(0) / n_head_kv(0), recovered from layer 0's q/k row counts
    (equal q and k head dims, true for every Gemma). 1 if layer 0 has no separate q/k."""
    rows = {t.name: t.shape[0] for t in tensors if t.shape}
    q, k = rows.get("blk.0.attn_q.weight"), rows.get("blk.0.attn_k.weight")
    if not q or not k:
        return 1
    return q // k


def choose_tensor_types(
    tensors: list[TensorSpec],
    ftype: str,
    *,
    arch: str,
    n_expert: int = 0,
    n_layer: int,
    n_gqa: int | None = None,
    source_type: str = "bf16",
    imatrix: bool = False,
    output_tensor_type: str | None = None,
    token_embedding_type: str | None = None,
    quantize_output_tensor: bool = True,
) -> dict[str, str]:
    """Tensor name -> ggml type name that `llama-quantize in.gguf out.gguf FTYPE` writes.

    `tensors`: the text-decoder inventory with llama.cpp GGUF names (see the module docstring);
    tensors whose role is in ENCODER_ROLES are skipped (absent from the result). `n_layer` is the
    GGUF block_count (hparams.n_layer_all), `n_expert` the GGUF expert_count (0 for dense).
    `n_gqa` defaults to blk.0 q rows // k rows. `source_type` is the converter --outtype the input
    GGUF was made with (tensors llama-quantize never touches keep converter_type(); it is f32 for
    norms, 1-D tensors and the MoE router). `imatrix` says whether an importance matrix is given
    (it changes a few choices; the IQ1/IQ2 types and Q2_K_S require one to run at all, see
    tensor_requires_imatrix). `output_tensor_type` / `token_embedding_type` are
    --output-tensor-type / --token-embedding-type; `quantize_output_tensor=False` is
    --leave-output-tensor.
    """
    f = _norm_ftype(ftype)
    default_type = _FTYPE_DEFAULT[f]
    text = [t for t in tensors if t.role not in ENCODER_ROLES]
    if arch == "gemma4-assistant":
        # Gemma4AssistantModel.filter_tensors (convert_hf_to_gguf, conversion/gemma.py) drops the
        # E2B/E4B assistants' masked_embedding.* (centroids, token ordering): not in the GGUF.
        # Measured: the E4B assistant's CPU_Mapped buffer is the remaining tensors' bytes (b11549)
        text = [t for t in text if not t.name.startswith("masked_embd")]
    # ml.weights_map order (weight_name_comparer): layer number (-1 for non-block tensors), then name
    ordered = sorted(text, key=lambda t: (_layer_of(t.name), t.name))
    cats = {t.name: _category(t.name) for t in ordered}

    # init_quantize_state_counters (l.927)
    n_attention_wv = sum(1 for c in cats.values() if _is_attn_v_like(c))
    tied = not any(c == _OUTPUT for c in cats.values())
    qs = _State(n_attention_wv, n_layer, tied)
    gqa = _infer_n_gqa(text) if n_gqa is None else n_gqa
    # only LLM_TYPE_70B matters for the mix (src/llama-quant.cpp:1445: llama, 80 layers, GQA)
    is_70b = arch == "llama" and n_layer == 80 and gqa > 1

    out: dict[str, str] = {}
    for t in ordered:
        src = converter_type(t.name, t.shape, source_type)
        if not tensor_allows_quantization(t, quantize_output_tensor=quantize_output_tensor):
            out[t.name] = src
            continue
        cat = cats[t.name]
        # llama_tensor_get_type (l.717): explicit overrides return before anything else
        if token_embedding_type is not None and cat == _TOKEN_EMBD:
            out[t.name] = token_embedding_type
            continue
        if output_tensor_type is not None and cat == _OUTPUT:
            out[t.name] = output_tensor_type
            continue
        new_type = default_type
        if _is_quantized(default_type):
            new_type = _get_type_impl(
                qs, new_type, t, f, cat, arch=arch, n_expert=n_expert, n_gqa=gqa, is_70b=is_70b,
                has_imatrix=imatrix, output_tensor_type=output_tensor_type,
                token_embedding_type=token_embedding_type)
            new_type = _fallback(t, new_type)
        out[t.name] = new_type
    return out


def gguf_tensor_order(names: Iterable[str]) -> list[str]:
    """The order llama-quantize writes tensors in: llama_model_loader::weights_map order
    (weight_name_comparer, src/llama-model-loader.h:54) -- non-block tensors first, by name, then
    block by block (numeric layer), by name within a block."""
    return sorted(names, key=lambda n: (_layer_of(n), n))


def gguf_data_layout(tensors: Iterable[TensorSpec], types: dict[str, str], *,
                     alignment: int = GGUF_DEFAULT_ALIGNMENT) -> dict[str, tuple[int, int]]:
    """name -> (offset, nbytes) inside the tensor-data section of a GGUF written by llama-quantize:
    tensors in gguf_tensor_order, each one's data padded to `alignment` (src/llama-quant.cpp main
    loop, `zeros(fout, GGML_PAD(new_size, align) - new_size)`). Only tensors named in `types`."""
    by_name = {t.name: t for t in tensors if t.name in types}
    layout: dict[str, tuple[int, int]] = {}
    off = 0
    for name in gguf_tensor_order(by_name):
        n = tensor_nbytes(by_name[name], types[name])
        layout[name] = (off, n)
        off = -(-(off + n) // alignment) * alignment
    return layout


def mapped_span(layout: dict[str, tuple[int, int]], names: Iterable[str]) -> int:
    """Bytes from the first byte of the first to the last byte of the last of `names` in the file:
    what `load_tensors: CPU_Mapped model buffer size` reports for a buffer type holding exactly
    these tensors (llama_model_loader::get_mapping_range, src/llama-model-loader.cpp:1449) --
    tensors of other buffers lying in between are included in the span."""
    spans = [layout[n] for n in names]
    if not spans:
        return 0
    return max(o + n for o, n in spans) - min(o for o, _ in spans)


def tensor_nbytes(t: TensorSpec, ggml_type: str) -> int:
    """ggml_nbytes of `t` stored as `ggml_type`: n_rows * ggml_row_size(type, row_length), i.e.
    numel / block_size * type_size. The row length must be a multiple of the block size (ggml
    asserts it; llama-quantize's fallback guarantees it). GGUF data padding is not included."""
    block, size = GGML_TYPE_SIZES[ggml_type.lower()]
    row = t.row_length
    if row % block != 0:
        raise ValueError(f"{t.name}: row length {row} is not a multiple of the {ggml_type} block size {block}")
    return t.n_rows * (row // block) * size
