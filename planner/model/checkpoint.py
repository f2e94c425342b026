"""A Hugging Face checkpoint as stored: every tensor's role, storage type and exact bytes.

The safetensors headers (planner/readers/safetensors_header.py) give each stored tensor's dtype,
shape and byte length; config.json's `quantization_config` (or MLX's `quantization`) says how
quantized modules are split into stored tensors. This module groups the stored tensors back into
modules (a quantized linear is several tensors: packed weight, scales, zero points, group index),
assigns each module a role (the same roles as planner/model/tensors.py, so the reports line up),
and recovers its logical shape, so that the weights of a plan come from the file byte for byte.

Stored layouts, per quantization kind (the exporter's source named for each):
- AWQ (AutoAWQ awq/modules/linear/gemm.py, gemv.py; GPTQModel's AWQ export): `qweight` int32
  (in, out/8) for GEMM, (out, in/8) for GEMV; `qzeros` int32; `scales` fp16 (in/group, out).
- GPTQ (GPTQModel gptqmodel/nn_modules/qlinear/__init__.py): `qweight` int32 (in*bits/32, out),
  `qzeros` int32 (groups, out*bits/32), `scales` fp16 (groups, out), `g_idx` int32 (in).
- compressed-tensors (compressed_tensors/compressors/quantized_compressors/pack_quantized.py,
  float/int/naive compressors): `weight_packed` int32 (out, ceil(in*bits/32)), `weight_scale`
  (out, ceil(in/group)) or (out, 1), optional `weight_zero_point`, `weight_g_idx`, `weight_shape`;
  float-/int-quantized keep `weight` in FP8 / int8 with `weight_scale` (and `input_scale`).
  llm-compressor linearizes Gemma 4's fused experts (llmcompressor/modeling/moe/
  conversion_mappings.py maps Gemma4TextExperts) so experts are stored per expert
  (`experts.{e}.gate_proj` ...) or re-fused with `gate_up_proj_scale` style qparams.
- FP8 with block scales (quant_method fp8, `weight_block_size`): `weight` F8_E4M3 plus
  `weight_scale_inv` F32 (ceil(out/bo), ceil(in/bi)).
- bitsandbytes (bitsandbytes/functional.py QuantState.as_dict): 4-bit `weight` uint8 (n/2, 1)
  with `absmax`, `quant_map`, `nested_absmax`, `nested_quant_map`, `quant_state.bitsandbytes__*`;
  8-bit `weight` int8 with `SCB`.
- MLX (mlx/nn/layers/quantized.py, mlx_lm/utils.py): `weight` uint32 (out, in*bits/32), `scales`
  and `biases` (out, in/group); config `quantization` {group_size, bits} with per-module
  overrides (a dict, or false for a module left unquantized).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from planner.errors import PlannerInputError

QUANT_METHODS = ("awq", "gptq", "compressed-tensors", "fp8", "bitsandbytes", "mlx")

# Suffixes that attach a stored tensor to its module (longest first where one is a prefix).
_AUX_SUFFIXES = (
    ".weight.quant_state.bitsandbytes__nf4", ".weight.quant_state.bitsandbytes__fp4",
    ".weight.nested_quant_map", ".weight.nested_absmax", ".weight.quant_map", ".weight.absmax",
    ".weight_packed", ".weight_scale_inv", ".weight_scale", ".weight_zero_point", ".weight_g_idx",
    ".weight_shape", ".weight_global_scale", ".input_scale", ".input_global_scale", ".output_scale",
    ".qweight", ".qzeros", ".scales", ".biases", ".g_idx", ".SCB", ".weight_format",
    ".weight", ".bias",
)
# Re-fused expert qparams (llm-compressor linear_experts.py _pack_weight_qparams):
# `experts.gate_up_proj_scale`, `experts.down_proj_packed` ...
_FUSED_EXPERT = re.compile(r"^(.*\.experts\.(?:gate_up_proj|down_proj|gate_proj|up_proj))(_[a-z_]+)?$")


@dataclass(frozen=True)
class QuantScheme:
    """config.json's quantization, normalized."""
    method: str                         # one of QUANT_METHODS, or "none"
    bits: int = 16
    group_size: int = 0                 # 0: per channel / not grouped
    detail: str = ""                    # GEMM/GEMV, pack-quantized W4A16, nf4 + double quant ...
    ignored: tuple[str, ...] = ()       # module names or re: patterns left unquantized
    overrides: dict = field(default_factory=dict, compare=False)   # MLX per-module {bits, group_size} or False
    raw: dict = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        if self.method == "none":
            return "unquantized"
        g = f", group {self.group_size}" if self.group_size else ""
        return f"{self.method} {self.bits}-bit{g}" + (f" ({self.detail})" if self.detail else "")


def _req_int(q: dict, key: str, where: str, default: int | None = None) -> int:
    v = q.get(key, default)
    if v is None or isinstance(v, bool) or not isinstance(v, int):
        raise PlannerInputError(f"{where}: quantization field '{key}' must be an integer, got {v!r}")
    return v


def quant_scheme(config: dict, where: str = "config.json") -> QuantScheme:
    """The quantization a config.json declares; one clear line for a method the planner does not know."""
    mlx = config.get("quantization")
    q = config.get("quantization_config")
    if isinstance(mlx, dict) and (q is None or q == mlx or "quant_method" not in (q or {})):
        bits = _req_int(mlx, "bits", where + " quantization")
        group = _req_int(mlx, "group_size", where + " quantization", 64)
        overrides = {k: v for k, v in mlx.items() if k not in ("bits", "group_size", "mode")}
        for k, v in overrides.items():
            if v is not False and not (isinstance(v, dict) and isinstance(v.get("bits"), int)):
                raise PlannerInputError(f"{where}: quantization override '{k}' must be false or "
                                        f"{{bits, group_size}}, got {v!r}")
        return QuantScheme("mlx", bits, group, str(mlx.get("mode", "affine")), (), overrides, mlx)
    if q is None:
        return QuantScheme("none")
    if not isinstance(q, dict):
        raise PlannerInputError(f"{where}: quantization_config must be an object")
    method = str(q.get("quant_method", "")).lower()
    if method == "awq":
        version = str(q.get("version", "gemm")).lower()
        if version not in ("gemm", "gemv", "gemv_fast", "marlin"):
            raise PlannerInputError(f"{where}: quantization_config.version '{version}' is not an AWQ kernel layout; "
                                    "allowed: gemm, gemv, gemv_fast, marlin")
        zp = q.get("zero_point", True)
        return QuantScheme("awq", _req_int(q, "bits", where, 4), _req_int(q, "group_size", where, 128),
                           f"{version.upper()}, {'zero points' if zp else 'symmetric'}",
                           tuple(q.get("modules_to_not_convert") or ()), raw=q)
    if method == "gptq":
        act = bool(q.get("desc_act", False))
        return QuantScheme("gptq", _req_int(q, "bits", where, 4), max(_req_int(q, "group_size", where, 128), 0),
                           f"{'act-order (g_idx)' if act else 'no act-order'}, {'sym' if q.get('sym', True) else 'asym'}, "
                           f"{q.get('checkpoint_format', 'gptq')}",
                           tuple(q.get("modules_to_not_convert") or ()), raw=q)
    if method == "compressed-tensors":
        groups = q.get("config_groups") or {}
        if not isinstance(groups, dict) or not groups:
            raise PlannerInputError(f"{where}: compressed-tensors quantization_config needs 'config_groups'")
        first = next(iter(groups.values()))
        w = (first or {}).get("weights") or {}
        a = (first or {}).get("input_activations")
        bits = _req_int(w, "num_bits", where + " config_groups weights", 8)
        wtype = w.get("type", "int")
        scheme = f"W{bits}A{(a or {}).get('num_bits', 16)}" + (" FP" if wtype == "float" else "")
        strategy = w.get("strategy", "tensor")
        gs = int(w.get("group_size") or 0) if strategy in ("group", "tensor_group") else 0
        block = w.get("block_structure")
        detail = f"{q.get('format', '?')}, {scheme}, {strategy}" + (f" {block}" if block else "") + \
                 (", symmetric" if w.get("symmetric", True) else ", zero points")
        return QuantScheme("compressed-tensors", bits, gs, detail, tuple(q.get("ignore") or ()), raw=q)
    if method == "fp8":
        block = q.get("weight_block_size")
        return QuantScheme("fp8", 8, 0, f"block scales {block}" if block else "per-tensor scales",
                           tuple(q.get("modules_to_not_convert") or q.get("ignored_layers") or ()), raw=q)
    if method == "bitsandbytes":
        if q.get("load_in_4bit"):
            qt = str(q.get("bnb_4bit_quant_type", "fp4"))
            dq = bool(q.get("bnb_4bit_use_double_quant", False))
            return QuantScheme("bitsandbytes", 4, 64, qt + (" + double quant" if dq else ""),
                               tuple(q.get("llm_int8_skip_modules") or ()), raw=q)
        if q.get("load_in_8bit"):
            return QuantScheme("bitsandbytes", 8, 0, "LLM.int8", tuple(q.get("llm_int8_skip_modules") or ()), raw=q)
        raise PlannerInputError(f"{where}: bitsandbytes quantization_config sets neither load_in_4bit nor load_in_8bit")
    raise PlannerInputError(f"{where}: quantization_config.quant_method {q.get('quant_method')!r} is not understood; "
                            f"allowed: {', '.join(QUANT_METHODS)} (MLX via 'quantization')")


def role_of_hf(name: str) -> str | None:
    """The planner role of a Hugging Face module name (None: not recognised)."""
    n = name
    if re.search(r"(^|\.)(vision_tower|vision_model|visual)\.", n):
        return "vision"
    if re.search(r"(^|\.)(audio_tower|audio_model)\.", n):
        return "audio"
    if re.search(r"(^|\.)(embed_vision|embed_audio|multi_modal_projector|mm_projector)\.", n):
        return "projector"
    if re.search(r"embed_tokens_per_layer\b", n):
        return "ple_table"
    if re.search(r"(per_layer_model_projection|per_layer_projection_norm|per_layer_input_gate|per_layer_projection|"
                 r"post_per_layer_input_norm)\b", n):
        return "ple_projection"
    if re.search(r"(^|\.)embed_tokens\b", n):
        return "token_embedding"
    if re.search(r"(^|\.)lm_head\b", n):
        return "lm_head"
    if re.search(r"\.router\.", n) or re.search(r"\.(mlp|block_sparse_moe)\.gate\.(weight|e_score_correction_bias)$", n):
        return "moe_router"
    if re.search(r"\.experts\.", n):
        return "moe_experts"
    if re.search(r"\.(altup|laurel)\b|altup_projections|altup_unembed_projections", n):
        return "altup_laurel"
    if re.search(r"\.self_attn\.(q_proj|k_proj|v_proj|o_proj|qkv_proj)\b", n):
        return "attention"
    if re.search(r"\.mlp\.(gate_proj|up_proj|down_proj|gate_up_proj)\b", n):
        return "mlp"
    if re.search(r"(norm(_\d+)?|layer_scalar|scale)(\.weight|\.bias)?$", n) or n.endswith(("norm.weight", "norm")):
        return "norm"
    if re.search(r"(pre_projection|post_projection|centroids|token_ordering)", n):
        return "drafter"
    return None


@dataclass(frozen=True)
class StoredModule:
    """One module (a linear, an embedding, a norm) with all its stored tensors."""
    name: str
    role: str | None
    tensors: tuple          # STensor, ...
    nbytes: int
    storage: str            # bf16 | int4-awq | int4-gptq | int4-ct | fp8 | nf4 | mlx-q4 ...

    @property
    def dtypes(self) -> str:
        return "+".join(sorted({t.dtype for t in self.tensors}))

    def params(self, bits: int) -> int:
        """Logical parameters (weights before quantization, plus bias) recovered from the stored
        shapes: packed int32 words hold 32/bits values, bnb 4-bit bytes hold two."""
        by = {t.name[len(self.name):]: t for t in self.tensors}
        bias = by[".bias"].shape[0] if ".bias" in by else 0
        per_word = 32 // bits if bits in (2, 3, 4, 8) else 1
        if ".qweight" in by:                 # AWQ (in, out/pack) or GPTQ (in/pack, out): one dim is packed
            q = by[".qweight"].shape
            return q[0] * q[1] * per_word + bias
        for key in (".weight_packed",) + tuple(k for k in by if k.endswith("_packed")):
            if key in by:
                q = by[key].shape
                lead = 1
                for d in q[:-1]:
                    lead *= d
                return lead * q[-1] * per_word + bias
        w = by.get(".weight")
        if w is None:                        # fused expert tensors stored without a suffix
            w = next((t for t in self.tensors if t.name == self.name), None)
            if w is None:
                return 0
        n = 1
        for d in w.shape:
            n *= d
        if ".weight.absmax" in by:           # bitsandbytes 4-bit: two values per uint8
            return 2 * n + bias
        if ".scales" in by and w.dtype == "U32":   # MLX: 32/bits values per uint32
            return n * per_word + bias
        return n + bias


def module_of(tensor_name: str) -> str:
    m = _FUSED_EXPERT.match(tensor_name)
    if m:
        return m.group(1)
    for suf in _AUX_SUFFIXES:
        if tensor_name.endswith(suf):
            return tensor_name[: -len(suf)]
    return tensor_name


def _storage(scheme: QuantScheme, names: set[str], dtypes: set[str]) -> str:
    if any(n.endswith((".qweight",)) for n in names):
        return f"int{scheme.bits}-{scheme.method}" if scheme.method in ("awq", "gptq") else f"int{scheme.bits}-packed"
    if any(n.endswith("weight_packed") or n.endswith("_packed") for n in names):
        return f"int{scheme.bits}-ct" + (f"-g{scheme.group_size}" if scheme.group_size else "")
    if any(".absmax" in n for n in names):
        return scheme.detail.split()[0] if scheme.detail else "nf4"
    if any(n.endswith(".SCB") for n in names):
        return "int8-bnb"
    if any(n.endswith(".biases") for n in names) and "U32" in dtypes:
        return "mlx-affine"
    if "F8_E4M3" in dtypes or "F8_E5M2" in dtypes:
        return "fp8"
    if "I8" in dtypes:
        return "int8"
    floats = dtypes & {"BF16", "F16", "F32", "F64"}
    return "+".join(sorted(d.lower() for d in floats)) or "+".join(sorted(d.lower() for d in dtypes))


def group_modules(tensors, scheme: QuantScheme) -> list[StoredModule]:
    by_module: dict[str, list] = {}
    for t in tensors:
        by_module.setdefault(module_of(t.name), []).append(t)
    out = []
    for mod, ts in by_module.items():
        names = {t.name for t in ts}
        dtypes = {t.dtype for t in ts}
        role = role_of_hf(mod + ".weight") or role_of_hf(mod)
        out.append(StoredModule(mod, role, tuple(ts), sum(t.nbytes for t in ts), _storage(scheme, names, dtypes)))
    return out


@dataclass(frozen=True)
class CheckpointWeights:
    """What a checkpoint folder stores, by role; the plan's weights come from here."""
    scheme: QuantScheme
    modules: tuple[StoredModule, ...]
    file_bytes: int                     # every safetensors file, headers included
    files: tuple[tuple[str, int, int], ...]   # (name, file bytes, header bytes)
    index: str | None
    unknown: tuple[str, ...]            # modules whose role the planner does not recognise

    def by_role(self, include_vision: bool = True, include_audio: bool = True) -> tuple[tuple[str, int, str], ...]:
        """(role, bytes, storage types) as stored in the files."""
        return self._tally(include_vision, include_audio, lambda m: (m.nbytes, m.storage))

    def decompressed_by_role(self, include_vision: bool = True, include_audio: bool = True,
                             dtype_bytes: int = 2) -> tuple[tuple[str, int, str], ...]:
        """By role, after compressed-tensors decompresses the model (transformers, first forward):
        each packed or FP8 module's weight back in the model dtype, its scales and zero points
        kept (compressors/base.py decompress_module leaves them, status DECOMPRESSED)."""
        def decompressed(m: StoredModule) -> tuple[int, str]:
            weight = next((t for t in m.tensors if t.name.endswith(("weight_packed", "_packed"))
                           or (t.name.endswith(".weight") and t.dtype in ("F8_E4M3", "F8_E5M2", "I8"))), None)
            if weight is None:
                return m.nbytes, m.storage
            rest = sum(t.nbytes for t in m.tensors if t is not weight and not t.name.endswith("weight_shape"))
            return m.params(self.scheme.bits) * dtype_bytes + rest, "bf16 (decompressed)"

        return self._tally(include_vision, include_audio, decompressed)

    def _tally(self, include_vision: bool, include_audio: bool, size_of) -> tuple[tuple[str, int, str], ...]:
        """Sum size_of(module) -> (bytes, type) by role, in the catalogue's role order; the projector
        goes with the last encoder dropped."""
        drop = set() if include_vision else {"vision"}
        if not include_audio:
            drop.add("audio")
        if not include_vision and not include_audio:
            drop.add("projector")
        sizes: dict[str, int] = {}
        types: dict[str, set[str]] = {}
        for m in self.modules:
            r = m.role or "norm"
            if r in drop:
                continue
            nb, typ = size_of(m)
            sizes[r] = sizes.get(r, 0) + nb
            types.setdefault(r, set()).add(typ)
        from planner.model.tensors import ROLES

        return tuple((r, sizes[r], "+".join(sorted(types[r]))) for r in sorted(sizes, key=ROLES.index))

    def tensor_bytes(self, module_suffix: str) -> int:
        """Bytes of the text attention modules whose name ends with the suffix (e.g. '.layers.5.self_attn.k_proj')."""
        return sum(m.nbytes for m in self.modules if m.role == "attention" and m.name.endswith(module_suffix))

    def module(self, name: str) -> StoredModule | None:
        return next((m for m in self.modules if m.name == name), None)


_FAMILY_OF_METHOD = {"none": "float", "awq": "awq", "gptq": "gptq", "compressed-tensors": "ct", "fp8": "fp8",
                     "bitsandbytes": "nf4", "mlx": "mlx"}


def checkpoint_format_name(scheme: QuantScheme) -> str:
    """The weight-format name a plan uses for a folder's own tensors (planner/model/formats.py
    get_format understands it): `checkpoint:<family>`, the family gating which runtimes load it.
    bitsandbytes says what it holds: LLM.int8 and FP4 folders are not NF4, though the same runtimes load them."""
    if scheme.method == "bitsandbytes" and not scheme.detail.startswith("nf4"):
        return "checkpoint:" + ("bnb-int8" if scheme.bits == 8 else "bnb-fp4")
    return "checkpoint:" + _FAMILY_OF_METHOD[scheme.method]


def checkpoint_weights(ckpt) -> CheckpointWeights:
    """From planner.readers.safetensors_header.CheckpointFiles to the stored weights by role."""
    where = str(ckpt.folder / "config.json")
    scheme = quant_scheme(ckpt.config, where)
    tensors = ckpt.tensors
    modules = group_modules(tensors, scheme)
    _check_layout(scheme, modules, ckpt.folder)
    unknown = tuple(m.name for m in modules if m.role is None)
    files = tuple((f.path.name, f.file_bytes, f.header_bytes) for f in ckpt.files)
    return CheckpointWeights(scheme, tuple(modules), ckpt.safetensors_bytes, files, ckpt.index, unknown)


def _check_layout(scheme: QuantScheme, modules: list[StoredModule], folder) -> None:
    """The stored tensors must be what the declared method writes: a config that says AWQ over
    plain bf16 tensors (or the reverse) is a checkpoint the planner would misread."""
    names = [t.name for m in modules for t in m.tensors]
    has = {
        "awq": any(n.endswith(".qweight") for n in names) and any(n.endswith(".qzeros") for n in names),
        "gptq": any(n.endswith(".qweight") for n in names),
        "compressed-tensors": any("weight_scale" in n or n.endswith(("weight_packed", "_packed")) for n in names),
        "fp8": any("weight_scale" in n for n in names),
        "bitsandbytes": any(n.endswith((".absmax", ".SCB")) for n in names),
        "mlx": any(n.endswith(".scales") for n in names) and any(n.endswith(".biases") for n in names),
    }
    if scheme.method != "none" and not has.get(scheme.method, True):
        raise PlannerInputError(f"{folder}/config.json declares {scheme.method} quantization but the safetensors "
                                f"files hold none of its tensors (e.g. .qweight, .weight_scale, .scales/.biases)")
    if scheme.method == "none" and (has["gptq"] or has["bitsandbytes"]):
        raise PlannerInputError(f"{folder}: the safetensors files hold quantized tensors (.qweight / .absmax) but "
                                "config.json has no quantization_config")
