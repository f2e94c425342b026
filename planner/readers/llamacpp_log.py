"""Parse a llama.cpp load log: llama-cli / llama-server / llama-completion output, the text
llama-cpp-python's llama_log_set callback receives, or an Ollama server log.

What it reads (format strings from the llama.cpp vendored by llama-cpp-python 0.3.36, and the
older spellings still found in pasted logs):
- llama_model_loader: `- kv N: key type = value` metadata lines and `- type q4_K: N tensors`
- print_info: file type / file size / arch / n_layer / n_embd / n_head / n_head_kv / n_swa /
  n_embd_head_k / n_expert / model type / general.name / n_vocab
- load_tensors: `<buffer> model buffer size = X MiB` (also llm_load_tensors)
- llama_context: n_seq_max, n_ctx, n_ctx_seq (n_ctx_per_seq), n_batch, n_ubatch, flash_attn,
  kv_unified; `<buffer> output buffer size = X MiB`; `<buffer> compute buffer size = X MiB`
  (sched_reserve / llama_context / llama_new_context_with_model)
- llama_kv_cache(_iswa/_unified): `creating non-SWA / SWA KV cache, size = N cells`,
  `<buffer> KV buffer size = X MiB`, `size = X MiB (N cells, L layers, s/S seqs), K (t): X MiB,
  V (t): X MiB`, `using full-size SWA cache`
- errors: `quantized V cache was requested, but this requires Flash Attention`, failed loads
- Ollama: `msg="model weights" device=... size="X GiB"`, `msg="kv cache" ...`,
  `msg="compute graph" ...`, and the runner's command line (--ctx-size, --batch-size, --parallel,
  --flash-attn, --kv-cache-type) or `msg=offload ... parallel=N`.
Sizes are MiB with two decimals in llama.cpp's own lines: 0.005 MiB is the resolution.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from planner.errors import PlannerInputError, shorten

MIB = 1024 * 1024
# a load log is ~5-50 KB; a server log with requests can run to megabytes. The whole file is parsed
# line by line with a dozen regexes (~1 s per 10 MB here), so the limit keeps that to seconds.
MAX_LOG_BYTES = 64 * MIB

_PREFIX = re.compile(r"^(?:\S+\s+[IWEDT]\s+)?")      # common/log.cpp "0.06.292.089 I " timestamps
_FUNC = r"(?P<func>[A-Za-z_][A-Za-z0-9_:~]*)"
_MIB = r"(?P<mib>\d+(?:\.\d+)?)\s*MiB"

RE_MODEL_BUF = re.compile(rf"{_FUNC}:\s+(?P<buf>\S+)\s+model buffer size\s*=\s*{_MIB}")
RE_KV_BUF = re.compile(rf"{_FUNC}:\s+(?P<buf>\S+)\s+KV buffer size\s*=\s*{_MIB}")
RE_OUT_BUF = re.compile(rf"{_FUNC}:\s+(?P<buf>\S+)\s+output buffer size\s*=\s*{_MIB}")
RE_COMPUTE_BUF = re.compile(rf"{_FUNC}:\s+(?P<buf>\S+)\s+compute buffer size\s*=\s*{_MIB}")
RE_KV_SIZE = re.compile(
    rf"{_FUNC}:\s+size\s*=\s*{_MIB}\s*\(\s*(?P<cells>\d+)\s+cells,\s*(?P<layers>\d+)\s+layers,\s*"
    r"(?P<seqs>\d+)(?:/(?P<streams>\d+))?\s+seqs\),\s*K\s*\((?P<tk>\w+)\):\s*(?P<kmib>\d+(?:\.\d+)?)\s*MiB,\s*"
    r"V\s*\((?P<tv>\w+)\):\s*(?P<vmib>\d+(?:\.\d+)?)\s*MiB")
RE_KV_SELF = re.compile(   # older: "KV self size  =  X MiB, K (f16): X MiB, V (f16): X MiB"
    rf"{_FUNC}:\s+KV self size\s*=\s*{_MIB},\s*K\s*\((?P<tk>\w+)\):\s*(?P<kmib>\d+(?:\.\d+)?)\s*MiB,\s*"
    r"V\s*\((?P<tv>\w+)\):\s*(?P<vmib>\d+(?:\.\d+)?)\s*MiB")
RE_KV_CREATE = re.compile(r"creating\s+(?P<kind>non-SWA|SWA)\s+KV cache,\s+size\s*=\s*(?P<cells>\d+)\s+cells")
RE_CTX_PARAM = re.compile(r"llama_(?:context|new_context_with_model|init_from_model):\s+(?P<key>n_seq_max|n_ctx|n_ctx_seq|n_ctx_per_seq|n_batch|n_ubatch|flash_attn|kv_unified|causal_attn|n_outputs_max)\s*=\s*(?P<val>\S+)")
RE_KV_META = re.compile(r"llama_model_loader:\s+-\s+kv\s+\d+:\s+(?P<key>\S+)\s+(?P<type>\S+)\s+=\s+(?P<val>.*?)\s*$")
RE_TYPE_COUNT = re.compile(r"llama_model_loader:\s+-\s+type\s+(?P<type>\w+):\s+(?P<n>\d+)\s+tensors")
RE_LOADED = re.compile(r"llama_model_loader: loaded meta data with \d+ key-value pairs and (?P<n>\d+) tensors from (?P<path>.+?) \(version")
RE_PRINT_INFO = re.compile(r"print_info:\s+(?P<key>[A-Za-z_. ]+?)\s*=\s*(?P<val>.*?)\s*$")
RE_LOAD_START = re.compile(r"load_tensors: loading model tensors|llm_load_tensors: ggml ctx size|llm_load_tensors: loading")
RE_SWA_FULL = re.compile(r"using full-size SWA cache")
RE_FA_AUTO = re.compile(r"(?:Flash Attention was auto, set to (?P<v1>enabled|disabled))|(?:resolve_fused_ops: (?:flash_attn|Flash Attention|FA)\s*(?P<v2>enabled|not supported))")
RE_QV_REFUSED = re.compile(r"quantized V cache was requested, but this requires Flash Attention|V cache quantization requires flash_attn|quantized V cache requires flash_attn")
RE_FAILED = re.compile(r"failed to (?:load model|create context|initialize the context|allocate)|error loading model|llama_init_from_model: failed|unable to allocate")
RE_REPACK_MOVED = re.compile(r"done_getting_tensors: tensor '(?P<t>[^']+)' \((?P<typ>\w+)\) \(and (?P<n>\d+) others\) cannot be used with preferred buffer type (?P<pref>\S+), using (?P<used>\S+) instead")
RE_SYSTEM_INFO = re.compile(r"system_info:\s*(?P<v>.*)$")
RE_BUILD = re.compile(r"(?:build|version):\s*(?P<n>\d+)\s*\((?P<c>[0-9a-f]{6,40})\)")
# Ollama (server.go / ggml.go): size="3.0 GiB"
RE_OLLAMA_MEM = re.compile(r'msg="(?P<what>model weights|kv cache|compute graph|total memory)"(?P<rest>.*)$')
RE_OLLAMA_SIZE = re.compile(r'size="(?P<v>\d+(?:\.\d+)?)\s*(?P<u>B|KiB|MiB|GiB)"')
RE_OLLAMA_DEV = re.compile(r'device=(?P<d>\S+)')
RE_OLLAMA_CMD = re.compile(r'(?:starting llama server|starting runner).*?cmd="(?P<cmd>[^"]*)"')
RE_OLLAMA_PARALLEL = re.compile(r'\bparallel=(?P<n>\d+)')
RE_OLLAMA_KV = re.compile(r'\bOLLAMA_KV_CACHE_TYPE:(?P<v>\S*)')
RE_OLLAMA_FA = re.compile(r'\bOLLAMA_FLASH_ATTENTION:(?P<v>\S+)')

FILE_TYPE_NAMES = {   # print_info "file type" (llama_model_ftype_name) -> planner format name
    "all f32": "f32", "f16": "f16", "bf16": "bf16", "q4_0": "q4_0", "q4_1": "q4_1", "q5_0": "q5_0",
    "q5_1": "q5_1", "q8_0": "q8_0", "q2_k - medium": "q2_k", "q2_k - small": "q2_k_s",
    "q3_k - small": "q3_k_s", "q3_k - medium": "q3_k_m", "q3_k - large": "q3_k_l",
    "q4_k - small": "q4_k_s", "q4_k - medium": "q4_k_m", "q5_k - small": "q5_k_s",
    "q5_k - medium": "q5_k_m", "q6_k": "q6_k", "iq4_xs - 4.25 bpw": "iq4_xs", "iq4_nl - 4.5 bpw": "iq4_nl",
    "mxfp4 moe": "mxfp4_moe",
}
FILE_TYPE_IDS = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1", 10: "q2_k",
                 11: "q3_k_s", 12: "q3_k_m", 13: "q3_k_l", 14: "q4_k_s", 15: "q4_k_m", 16: "q5_k_s",
                 17: "q5_k_m", 18: "q6_k", 30: "iq4_xs", 25: "iq4_nl", 32: "bf16", 38: "mxfp4_moe"}


@dataclass
class Buffer:
    name: str          # backend buffer name: CPU, CPU_Mapped, CPU_REPACK, CUDA0, CUDA_Host, Metal, Vulkan0 ...
    mib: float

    @property
    def nbytes(self) -> int:
        return round(self.mib * MIB)


@dataclass
class KVCacheLine:
    kind: str | None          # "non-SWA", "SWA" or None (a single, non-iSWA cache)
    cells: int | None
    layers: int | None
    seqs: int | None
    streams: int | None
    type_k: str
    type_v: str
    size_mib: float
    k_mib: float
    v_mib: float
    buffers: list[Buffer] = field(default_factory=list)


@dataclass
class LoadLog:
    source: str = "llama.cpp"                      # llama.cpp | ollama
    model_path: str | None = None
    meta: dict = field(default_factory=dict)        # GGUF key -> raw value text (from the kv dump)
    info: dict = field(default_factory=dict)        # print_info key -> value text
    type_counts: dict = field(default_factory=dict)  # ggml type -> tensors (llama_model_loader)
    context: dict = field(default_factory=dict)     # n_ctx, n_ctx_seq, n_seq_max, n_batch, n_ubatch, flash_attn, kv_unified
    swa_full: bool = False
    flash_attn_resolved: str | None = None          # what "auto" became, where the log says
    model_buffers: list[Buffer] = field(default_factory=list)
    kv_caches: list[KVCacheLine] = field(default_factory=list)
    output_buffers: list[Buffer] = field(default_factory=list)
    compute_buffers: list[Buffer] = field(default_factory=list)
    repack_moved: dict | None = None
    refused: str | None = None                       # why llama.cpp refused the configuration
    errors: list[str] = field(default_factory=list)
    system_info: str | None = None
    build: str | None = None
    ollama: dict = field(default_factory=dict)
    truncated: str | None = None                     # where the log stops short of a whole load

    # -- derived ----------------------------------------------------------------------------
    @property
    def arch(self) -> str | None:
        return self.meta.get("general.architecture") or self.info.get("arch")

    @property
    def name(self) -> str | None:
        v = self.info.get("general.name") or self.meta.get("general.name")
        return v.strip() if v else None

    def int_info(self, key: str) -> int | None:
        for src in (self.info.get(key), self.meta.get(f"{self.arch}.{key}") if self.arch else None):
            if src is None:
                continue
            try:
                return int(float(str(src).split()[0].strip("[,")))
            except (ValueError, IndexError, OverflowError):   # "1e400" is inf: no integer
                continue
        return None

    @property
    def weights(self) -> str | None:
        ft = self.info.get("file type")
        if ft:
            key = ft.strip().lower()
            key = re.sub(r"\s*\(guessed\)\s*$", "", key)
            if key in FILE_TYPE_NAMES:
                return FILE_TYPE_NAMES[key]
        v = self.meta.get("general.file_type")
        if v is not None:
            try:
                return FILE_TYPE_IDS.get(int(v))
            except ValueError:
                return None
        return None

    @property
    def n_ctx(self) -> int | None:
        return _int(self.context.get("n_ctx"))

    @property
    def n_seq(self) -> int:
        return _int(self.context.get("n_seq_max")) or 1

    @property
    def n_ubatch(self) -> int | None:
        return _int(self.context.get("n_ubatch"))

    @property
    def kv_unified(self) -> bool | None:
        v = self.context.get("kv_unified")
        return None if v is None else str(v).lower() in ("true", "1")

    @property
    def flash_attn(self) -> str | None:
        """on | off | auto (as requested), from the llama_context line."""
        v = self.context.get("flash_attn")
        if v is None:
            return None
        v = str(v).lower()
        return {"1": "on", "true": "on", "enabled": "on", "0": "off", "false": "off", "disabled": "off"}.get(v, v)

    @property
    def type_k(self) -> str | None:
        return self.kv_caches[0].type_k.lower() if self.kv_caches else None

    @property
    def type_v(self) -> str | None:
        return self.kv_caches[0].type_v.lower() if self.kv_caches else None

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("truncated")       # an input error, never part of a reconciled log
        d["derived"] = {"arch": self.arch, "name": self.name, "weights": self.weights, "n_ctx": self.n_ctx,
                        "n_seq": self.n_seq, "n_ubatch": self.n_ubatch, "kv_unified": self.kv_unified,
                        "flash_attn": self.flash_attn, "type_k": self.type_k, "type_v": self.type_v}
        return d


def _int(v) -> int | None:
    if v is None:
        return None
    try:
        return int(str(v).strip())
    except ValueError:
        return None


def _clean(line: str) -> str:
    line = line.rstrip("\r\n")
    # Ollama wraps runner output ("llama_model_loader: ..."): keep from the llama.cpp function on
    m = re.search(r"(llama_model_loader:|print_info:|load_tensors:|llm_load_tensors:|llama_context:|llama_kv_cache\w*:|"
                  r"sched_reserve:|llama_new_context_with_model:|llama_init_from_model:|graph_reserve:|"
                  r"done_getting_tensors:|resolve_fused_ops:|system_info:|load:|llama_model_load:)", line)
    if m:
        return line[m.start():]
    return _PREFIX.sub("", line)


def parse_log(text: str) -> LoadLog:
    """Parse a load log. Several loads in one log (llama-cli's memory-fit pass, a reload): the
    buffers of the last load that allocated anything are kept."""
    log = LoadLog()
    pending_kind: str | None = None
    pending_bufs: list[Buffer] = []

    def reset_buffers() -> None:
        nonlocal pending_bufs, pending_kind
        log.model_buffers, log.kv_caches, log.output_buffers, log.compute_buffers = [], [], [], []
        pending_bufs, pending_kind = [], None
        log.swa_full = False

    for raw in text.splitlines():
        line = _clean(raw)
        if not line:
            continue
        m = RE_LOADED.search(line)
        if m:
            log.model_path = m.group("path").strip()
            continue
        m = RE_KV_META.search(line)
        if m:
            log.meta[m.group("key")] = m.group("val")
            continue
        m = RE_TYPE_COUNT.search(line)
        if m:
            log.type_counts[m.group("type").lower()] = int(m.group("n"))
            continue
        m = RE_PRINT_INFO.search(line)
        if m and "buffer size" not in line:
            log.info[m.group("key").strip()] = m.group("val")
            continue
        if RE_LOAD_START.search(line):
            # a new load: forget the buffers of an earlier (e.g. memory-fit, no_alloc) pass
            reset_buffers()
            continue
        m = RE_MODEL_BUF.search(line)
        if m:
            log.model_buffers.append(Buffer(m.group("buf"), float(m.group("mib"))))
            continue
        m = RE_CTX_PARAM.search(line)
        if m:
            key = "n_ctx_seq" if m.group("key") == "n_ctx_per_seq" else m.group("key")
            if key == "n_seq_max" and log.context.get("n_seq_max") is not None and (log.kv_caches or log.compute_buffers):
                # a second context in the same log (e.g. after the fit pass without a model reload)
                log.kv_caches, log.output_buffers, log.compute_buffers = [], [], []
            log.context[key] = m.group("val")
            continue
        if RE_SWA_FULL.search(line):
            log.swa_full = True
            continue
        m = RE_FA_AUTO.search(line)
        if m:
            v = m.group("v1") or m.group("v2")
            log.flash_attn_resolved = "on" if v == "enabled" else "off"
            continue
        m = RE_KV_CREATE.search(line)
        if m:
            pending_kind = m.group("kind")
            pending_bufs = []
            continue
        m = RE_KV_BUF.search(line)
        if m:
            pending_bufs.append(Buffer(m.group("buf"), float(m.group("mib"))))
            continue
        m = RE_KV_SIZE.search(line)
        if m:
            log.kv_caches.append(KVCacheLine(
                kind=pending_kind, cells=int(m.group("cells")), layers=int(m.group("layers")),
                seqs=int(m.group("seqs")), streams=int(m.group("streams")) if m.group("streams") else None,
                type_k=m.group("tk").lower(), type_v=m.group("tv").lower(), size_mib=float(m.group("mib")),
                k_mib=float(m.group("kmib")), v_mib=float(m.group("vmib")), buffers=pending_bufs))
            pending_kind, pending_bufs = None, []
            continue
        m = RE_KV_SELF.search(line)
        if m:
            log.kv_caches.append(KVCacheLine(
                kind=None, cells=_int(log.context.get("n_ctx")), layers=None, seqs=None, streams=None,
                type_k=m.group("tk").lower(), type_v=m.group("tv").lower(), size_mib=float(m.group("mib")),
                k_mib=float(m.group("kmib")), v_mib=float(m.group("vmib")), buffers=pending_bufs))
            pending_bufs = []
            continue
        m = RE_OUT_BUF.search(line)
        if m:
            log.output_buffers = [Buffer(m.group("buf"), float(m.group("mib")))]
            continue
        m = RE_COMPUTE_BUF.search(line)
        if m and "does not match" not in line and "matches expectation" not in line:
            # sched_reserve prints one line per backend; a new reserve replaces the old lines
            names = [b.name for b in log.compute_buffers]
            if m.group("buf") in names:
                log.compute_buffers = []
            log.compute_buffers.append(Buffer(m.group("buf"), float(m.group("mib"))))
            continue
        m = RE_REPACK_MOVED.search(line)
        if m:
            log.repack_moved = {"first": m.group("t"), "type": m.group("typ"), "others": int(m.group("n")),
                                "preferred": m.group("pref"), "used": m.group("used")}
            continue
        if RE_QV_REFUSED.search(line):
            log.refused = "quantized V cache requires flash attention"
            continue
        m = RE_SYSTEM_INFO.search(line)
        if m:
            log.system_info = m.group("v").strip()
            continue
        m = RE_BUILD.search(line)
        if m and log.build is None:
            log.build = f"b{m.group('n')} ({m.group('c')})"
        if RE_FAILED.search(line):
            log.errors.append(line.strip())
            continue
        _ollama_line(log, raw)
    log.truncated = _truncation(log, pending_kind)
    return log


def _truncation(log: LoadLog, pending_kind: str | None) -> str | None:
    """Where a llama.cpp load log stops short. A load prints, in order: model buffers
    (load_tensors), the context parameters (llama_context), the output buffer, each KV cache
    (creating ... KV cache, then its size line) and last the compute buffers (sched_reserve /
    graph_reserve, llama-context.cpp). A log cut anywhere before the compute buffers would be
    reconciled on the terms it happens to have, and "all terms agree" would be a lie."""
    if log.ollama or log.source != "llama.cpp" or log.refused or log.errors:
        return None
    if pending_kind is not None:
        return f"it ends after 'creating {pending_kind} KV cache' without the cache's size line"
    if (log.kv_caches or log.compute_buffers or log.output_buffers) and not log.model_buffers:
        return "it has no model buffer lines ('load_tensors: ... model buffer size = ... MiB'): the start is missing"
    if log.model_buffers and not log.compute_buffers:
        return ("it ends before the compute buffer lines ('sched_reserve: ... compute buffer size = ... MiB'), "
                "the last thing a load prints")
    return None


def _ollama_line(log: LoadLog, raw: str) -> None:
    m = RE_OLLAMA_MEM.search(raw)
    if m:
        log.source = "ollama"
        s = RE_OLLAMA_SIZE.search(m.group("rest"))
        d = RE_OLLAMA_DEV.search(m.group("rest"))
        if s:
            mult = {"B": 1 / MIB, "KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0}[s.group("u")]
            entry = {"device": d.group("d") if d else None, "mib": float(s.group("v")) * mult,
                     "text": f'{s.group("v")} {s.group("u")}'}
            log.ollama.setdefault(m.group("what"), []).append(entry)
        return
    m = RE_OLLAMA_CMD.search(raw)
    if m:
        log.source = "ollama"
        args = m.group("cmd").split()
        for flag, key in (("--ctx-size", "n_ctx"), ("--batch-size", "n_batch"), ("--parallel", "n_seq_max"),
                          ("--ubatch-size", "n_ubatch")):
            if flag in args:
                i = args.index(flag)
                if i + 1 < len(args):
                    log.context.setdefault(key, args[i + 1])
        if "--flash-attn" in args:
            log.context.setdefault("flash_attn", "on")
        if "--kv-cache-type" in args:
            i = args.index("--kv-cache-type")
            log.ollama["kv_cache_type"] = args[i + 1] if i + 1 < len(args) else None
        return
    m = RE_OLLAMA_PARALLEL.search(raw)
    if m and "msg=" in raw:
        log.ollama.setdefault("parallel", int(m.group("n")))
    m = RE_OLLAMA_KV.search(raw)
    if m:
        log.ollama["env_kv_cache_type"] = m.group("v") or None
    m = RE_OLLAMA_FA.search(raw)
    if m:
        log.ollama["env_flash_attention"] = m.group("v")


# llama_context counts a reconciliation uses; bounded like the planner's own context (2^28 tokens)
_COUNTS = ("n_ctx", "n_ctx_seq", "n_seq_max", "n_batch", "n_ubatch", "n_outputs_max")
MAX_LOG_COUNT = 1 << 28


def parse_log_file(path) -> LoadLog:
    from pathlib import Path

    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_LOG_BYTES + 1)
    except OSError as e:
        raise PlannerInputError(f"{shorten(p)}: cannot read the log: {e.strerror}") from None
    if len(data) > MAX_LOG_BYTES:
        raise PlannerInputError(f"{p}: the log is larger than {MAX_LOG_BYTES >> 20} MiB; paste the load itself "
                                "(from 'llama_model_loader' to the compute buffer lines)")
    if b"\x00" in data[:4096]:
        raise PlannerInputError(f"{p}: not a text log (binary data)")
    text = data.decode("utf-8", errors="replace")
    log = parse_log(text)
    if not (log.model_buffers or log.kv_caches or log.compute_buffers or log.ollama or log.refused):
        raise PlannerInputError(f"{p}: no llama.cpp load lines found (expected lines like "
                                "'load_tensors: CPU_Mapped model buffer size = ... MiB' or "
                                "'llama_kv_cache: size = ... MiB (... cells, ...)')")
    if log.truncated:
        raise PlannerInputError(f"{p}: the log looks truncated: {log.truncated}; paste the whole load log")
    for key in _COUNTS:
        v = log.context.get(key)
        if v is not None and not (str(v).strip().isdigit() and int(str(v).strip()) <= MAX_LOG_COUNT):
            raise PlannerInputError(f"{p}: llama_context {key} = '{shorten(v, 30)}' is not a count from 0 to "
                                    f"{MAX_LOG_COUNT:,}; the log is damaged")
    return log
