"""`planner measure llama-cpp --frontend server`: what llama-server itself allocates, measured.

The library harness (llamacpp_harness) creates contexts through llama.cpp's C API with the
library's defaults. Users run llama-server, whose own code decides part of the memory: it derives
n_outputs_max from its slots (tools/server/server-context.cpp server_output_limits:
total = min(n_batch, n_parallel x (1 + n_draft)), per_seq = min(n_batch, 1 + n_draft), at least 1;
PR #23861), picks 4 unified slots when --parallel is not given, fits the context to free memory
unless --fit off, and sizes a drafter's context from the target's. This harness drives that code
path: xllamacpp (PyPI, prebuilt CPU wheel of llama.cpp b11549 with the native server) builds
llama-server's `server_context` from a `common_params`, exactly as llama-server's main() does
after argument parsing, so the load log is llama-server's.

Each load runs in a child process (`python -m planner.measurement.llamacpp_server --child JOB`)
whose stderr is the llama.cpp log; the parent parses it (planner.readers.llamacpp_log) and writes one
JSON per load to measurements/llama_cpp/server/, with provenance: runtime, build, frontend,
backend, the equivalent llama-server command line. The child also reads its own
/proc/self/smaps_rollup after the load and after one prompt, for the residency question (what a
memory budget must count: see planner/runtimes/llamacpp.py, resident_terms).

The GGUFs are the harness's sparse files (zero weights; the data section is a hole). Large
configurations that do not fit this machine's RAM use llama.cpp's no-alloc mode
(llama_model_params.no_alloc, the mode llama_params_fit uses): every buffer is sized and logged,
none is allocated; a no-alloc load is recorded with `no_alloc: true` and no residency figures.

Needs `pip install xllamacpp==2026.10.11549` (the `llamaserver` extra).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

XLLAMACPP_VERSION = "2026.10.11549"
LLAMA_CPP_BUILD = "b11549"          # xllamacpp's version is <year>.<month>.<llama.cpp build number>
SCHEMA = "planner.llamacpp-measurement/2"


@dataclass
class ServerConfig:
    """One llama-server start. Fields mirror llama-server's flags (defaults: llama-server's own,
    common/common.h + tools/server, except --fit off so that -c is what is allocated)."""
    n_ctx: int = 8192              # -c (total over slots)
    n_ubatch: int = 512            # -ub
    n_batch: int = 2048            # -b
    n_parallel: int = 1            # -np; 0 = llama-server's automatic slots (4, unified)
    kv_unified: bool = False       # -kvu
    type_k: str = "f16"            # -ctk
    type_v: str = "f16"            # -ctv
    flash_attn: str = "auto"       # -fa on|off|auto
    swa_full: bool = False         # --swa-full
    mmap: bool = True              # --no-mmap when False
    repack: bool = True            # --no-repack when False
    n_outputs_max: int = 0         # 0: llama-server's rule; else forced (xllamacpp params.n_outputs_max)
    no_alloc: bool = False         # llama.cpp no-alloc mode: sizes only
    prompt: int = 0                # tokens of one completion request after the load (residency)
    draft: str = ""                # drafter model name (its GGUF is written beside the target's)
    draft_weights: str = ""
    n_draft: int = 0               # --spec-draft-n-max; 0: llama-server's default (3)

    def key(self) -> str:
        np_ = "auto" if self.n_parallel == 0 else str(self.n_parallel)
        s = (f"c{self.n_ctx}-ub{self.n_ubatch}-b{self.n_batch}-np{np_}{'u' if self.kv_unified else ''}"
             f"-k{self.type_k}-v{self.type_v}-fa{self.flash_attn}")
        s += "-swafull" if self.swa_full else ""
        s += "" if self.mmap else "-nommap"
        s += "" if self.repack else "-norepack"
        s += f"-nout{self.n_outputs_max}" if self.n_outputs_max else ""
        s += "-noalloc" if self.no_alloc else ""
        s += f"-prompt{self.prompt}" if self.prompt else ""
        s += f"-draft_{self.draft}_{self.draft_weights}" if self.draft else ""
        s += f"-nd{self.n_draft}" if self.n_draft else ""
        return s

    def command_line(self, model_path: str, draft_path: str = "") -> str:
        """The llama-server command line this load is equivalent to."""
        a = ["llama-server", "-m", model_path, "-c", str(self.n_ctx), "-b", str(self.n_batch),
             "-ub", str(self.n_ubatch), "-ctk", self.type_k, "-ctv", self.type_v, "-fa", self.flash_attn,
             "--fit", "off", "-ngl", "0", "--no-warmup"]
        if self.n_parallel:
            a += ["-np", str(self.n_parallel)]
        if self.kv_unified:
            a.append("-kvu")
        if self.swa_full:
            a.append("--swa-full")
        if not self.mmap:
            a.append("--no-mmap")
        if not self.repack:
            a.append("--no-repack")
        if draft_path:
            a += ["-md", draft_path, "-ngld", "0", "--spec-type", spec_type(self.draft)]
            if self.n_draft:
                a += ["--spec-draft-n-max", str(self.n_draft)]
        return " ".join(a)


def spec_type(draft_model: str) -> str:
    """llama-server's --spec-type for a drafter. A Gemma 4 assistant runs as `draft-mtp`: common/arg.cpp
    infers the type from a local -md GGUF only by a `blk.N.nextn.eh_proj` tensor, which the assistant
    does not have, so users name it; common/speculative.cpp then gives the drafter context
    LLAMA_CONTEXT_TYPE_MTP with ctx_other = the target (is_mem_shared: it reads the target's KV)."""
    return "draft-mtp" if draft_model.endswith("-assistant") else "draft-simple"


# ---------------------------------------------------------------------------------------------
# child: one llama-server start
# ---------------------------------------------------------------------------------------------

def _smaps() -> dict[str, int]:
    """The process's resident set from /proc/self/smaps_rollup, in KiB (Rss, Pss and its anon /
    file split: file pages are the mmap'd GGUF, clean and reclaimable; anon pages are the
    buffers llama.cpp allocated)."""
    out = {}
    try:
        with open("/proc/self/smaps_rollup") as fh:
            for line in fh:
                k, _, v = line.partition(":")
                if k in ("Rss", "Pss", "Pss_Anon", "Pss_File", "Anonymous", "Shared_Clean", "Private_Clean",
                         "Private_Dirty"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def _child_main(job_path: str) -> int:
    import xllamacpp as x

    job = json.loads(Path(job_path).read_text())
    cfg = ServerConfig(**job["config"])
    p = x.CommonParams()
    p.model.path = job["path"]
    p.verbosity = int(os.environ.get("PLANNER_LLAMA_VERBOSITY", "4"))                # llama.cpp's INFO lines (load_tensors, llama_context, sched_reserve)
    p.n_ctx = cfg.n_ctx
    p.n_batch = cfg.n_batch
    p.n_ubatch = cfg.n_ubatch
    if cfg.n_parallel == 0:
        # llama-server main(): --parallel not given -> 4 slots sharing one unified cache
        p.n_parallel, p.kv_unified = 4, True
    else:
        p.n_parallel, p.kv_unified = cfg.n_parallel, cfg.kv_unified
    p.cache_type_k = getattr(x.ggml_type, f"GGML_TYPE_{cfg.type_k.upper()}")
    p.cache_type_v = getattr(x.ggml_type, f"GGML_TYPE_{cfg.type_v.upper()}")
    p.flash_attn_type = {"on": x.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                         "off": x.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED,
                         "auto": x.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_AUTO}[cfg.flash_attn]
    p.swa_full = cfg.swa_full
    p.load_mode = x.llama_load_mode.LLAMA_LOAD_MODE_MMAP if cfg.mmap else x.llama_load_mode.LLAMA_LOAD_MODE_NONE
    p.no_extra_bufts = not cfg.repack
    p.fit_params = False           # --fit off: the context is what -c says
    p.n_gpu_layers = 0
    p.warmup = False
    p.no_alloc = cfg.no_alloc
    p.cache_ram_mib = 0            # no host prompt cache: it grows with use, not at load
    p.cpuparams.n_threads = 2
    p.cpuparams_batch.n_threads = 2
    if cfg.n_outputs_max:
        p.n_outputs_max = cfg.n_outputs_max
    if job.get("draft_path"):
        d = p.speculative.draft
        d.mparams.path = job["draft_path"]
        d.n_gpu_layers = 0
        if cfg.n_draft:
            d.n_max = cfg.n_draft
        p.speculative.types = [x.common_speculative_type.COMMON_SPECULATIVE_TYPE_DRAFT_MTP
                               if spec_type(cfg.draft) == "draft-mtp"
                               else x.common_speculative_type.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE]
    t0 = time.time()
    res = {"config": asdict(cfg)}
    try:
        srv = x.Server(p)
    except Exception as e:  # noqa: BLE001 - the log says why; recorded as a refused load
        res.update(ok=False, error=str(e)[:500])
        print(json.dumps(res), flush=True)
        return 0
    res["load_s"] = round(time.time() - t0, 2)
    res["ok"] = True
    if not cfg.no_alloc:
        res["smaps_after_load_kib"] = _smaps()
        if cfg.prompt:
            t1 = time.time()
            srv.handle_completions({"prompt": "the " * cfg.prompt, "max_tokens": 1})
            res["prompt_s"] = round(time.time() - t1, 2)
            res["smaps_after_prompt_kib"] = _smaps()
    print(json.dumps(res), flush=True)
    sys.stdout.flush()
    del srv                        # prints llama-server's memory breakdown table to the log
    return 0


# ---------------------------------------------------------------------------------------------
# parent
# ---------------------------------------------------------------------------------------------

def provenance() -> dict:
    import xllamacpp as x

    return {
        "runtime": "llama.cpp", "build": LLAMA_CPP_BUILD, "frontend": "server", "backend": "CPU",
        "package": f"xllamacpp {getattr(x, '__version__', XLLAMACPP_VERSION)} (PyPI prebuilt manylinux CPU wheel; "
                   "llama.cpp's tools/server server_context driven through common_params)",
        "build_info": dict(getattr(x, "BUILD_INFO", {})),
        "system_info": x.get_system_info().strip(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "date": _dt.date.today().isoformat(),
        "threads": 2,
        "harness": "planner/measurement/llamacpp_server.py",
    }


def measure_one(gguf: dict, cfg: ServerConfig, work: Path, draft: dict | None = None,
                timeout: int = 1800) -> dict:
    """Start llama-server once in a child, return the measurement record."""
    from planner.readers.llamacpp_log import parse_log

    job = {"path": gguf["path"], "config": asdict(cfg), "draft_path": draft["path"] if draft else ""}
    jf = work / f"job-{os.getpid()}.json"
    jf.write_text(json.dumps(job))
    errf = work / f"log-{os.getpid()}.txt"
    with open(errf, "w") as err:
        proc = subprocess.run([sys.executable, "-m", "planner.measurement.llamacpp_server", "--child", str(jf)],
                              stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout)
    log = errf.read_text(errors="replace")
    res = next((json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")), None)
    if res is None:
        res = {"ok": False, "error": f"child exited {proc.returncode} without a result"}
    keep = kept_log_lines(log, draft=bool(draft))
    # the drafter loads after the target's context (common_speculative_init_result): its lines
    # are parsed on their own, the target's without them
    cut = log.find(DRAFT_LOAD_MARK)
    parsed = parse_log(log if cut < 0 else log[:cut])
    draft_parsed = parse_log(log[cut:]) if cut >= 0 else None
    rec = {
        "schema": SCHEMA,
        "model": gguf["model"], "weights": gguf["ftype"], "frontend": "server", "build": LLAMA_CPP_BUILD,
        # a no-alloc start sizes every buffer and logs it, then the server's first use of a buffer
        # that does not exist ends the child: the sizes are the measurement
        "config": asdict(cfg),
        "ok": (bool(parsed.compute_buffers) and (not draft or bool(draft_parsed and draft_parsed.compute_buffers))
               and (bool(res.get("ok")) or cfg.no_alloc)),
        "refused": parsed.refused or res.get("error"),
        "file": {k: v for k, v in gguf.items() if k != "path"},
        "draft_file": {k: v for k, v in draft.items() if k != "path"} if draft else None,
        "parsed": {k: v for k, v in parsed.as_dict().items() if k not in ("meta", "info")},
        "draft_parsed": ({k: v for k, v in draft_parsed.as_dict().items() if k not in ("meta", "info")}
                         if draft_parsed else None),
        "memory_breakdown": _breakdown_lines(log),
        "residency_kib": {k: res[k] for k in ("smaps_after_load_kib", "smaps_after_prompt_kib") if k in res},
        "timing_s": {k: res[k] for k in ("load_s", "prompt_s") if k in res},
        "provenance": {**provenance(), "command": cfg.command_line(
            f"{gguf['model']}-{gguf['ftype']}.gguf",
            f"{draft['model']}-{draft['ftype']}.gguf" if draft else "")},
        "log": "\n".join(keep),
    }
    return rec


DRAFT_LOAD_MARK = "common_speculative_init_result: loading draft model"
# a pair start's stored log: the lines the records are read from (buffers, caches, context
# settings, the shared-layer lines, errors), to keep ~180 pair files small
PAIR_LOG_KEYS = ("buffer size", "llama_kv_cache", "n_ctx", "n_seq_max", "n_ubatch", "n_batch", "flash_attn",
                 "kv_unified", "n_outputs_max", "common_speculative", "spec ", "sched_reserve:", "load_model",
                 "error", "failed", "GGML_ASSERT", "memory_breakdown")


def kept_log_lines(log: str, draft: bool = False) -> list[str]:
    """The log lines stored with a record: llama.cpp's INFO / WARN / ERROR lines without the
    metadata dump, the tensor-type counts and print_info (in the parsed fields); for a pair start
    only the lines its fields come from (PAIR_LOG_KEYS). A crash's debugger backtrace (lines
    without llama.cpp's timestamp) is dropped."""
    keep = [l for l in log.splitlines() if " D " not in l[:20] and "llama_model_loader: - kv" not in l
            and "llama_model_loader: - type" not in l and not l.startswith(("print_info", " "))
            and "print_info:" not in l]
    if draft:
        keep = [l for l in keep if l[:1].isdigit() and "." in l[:4] and any(k in l for k in PAIR_LOG_KEYS)]
    return keep


def _breakdown_lines(log: str) -> list[str]:
    return [l.split("common_memory_breakdown_print:", 1)[1].strip() for l in log.splitlines()
            if "common_memory_breakdown_print:" in l]


GEMMA4 = ("gemma-4-e2b", "gemma-4-e4b", "gemma-4-12b", "gemma-4-26b-a4b", "gemma-4-31b")


def sweep(model: str) -> list[ServerConfig]:
    """The server sweep for one model (Q4_0 file; sizes only: no-alloc, mmap off)."""
    na = dict(no_alloc=True, mmap=False)
    out = []
    for ctx in (4096, 8192, 32768, 131072):
        for ub in (512, 2048):
            for fa in ("on", "off"):
                out.append(ServerConfig(n_ctx=ctx, n_ubatch=ub, flash_attn=fa, **na))
    for fa in ("on", "off"):
        out += [ServerConfig(n_ctx=32768, n_parallel=4, flash_attn=fa, **na),
                ServerConfig(n_ctx=32768, n_parallel=4, kv_unified=True, flash_attn=fa, **na),
                ServerConfig(n_ctx=32768, n_parallel=0, flash_attn=fa, **na),
                ServerConfig(n_ctx=8192, swa_full=True, flash_attn=fa, **na),
                ServerConfig(n_ctx=32768, swa_full=True, flash_attn=fa, **na),
                ServerConfig(n_ctx=8192, n_ubatch=2048, n_parallel=0, flash_attn=fa, **na)]
    out += [ServerConfig(n_ctx=32768, n_parallel=0, swa_full=True, flash_attn="on", **na),
            ServerConfig(n_ctx=32768, flash_attn="auto", **na),
            ServerConfig(n_ctx=32768, type_k="q8_0", type_v="q8_0", flash_attn="on", **na),
            ServerConfig(n_ctx=32768, type_k="q4_0", type_v="q4_0", flash_attn="on", **na),
            ServerConfig(n_ctx=32768, type_k="bf16", type_v="bf16", flash_attn="on", **na),
            ServerConfig(n_ctx=32768, type_k="q8_0", type_v="f16", flash_attn="off", **na),
            ServerConfig(n_ctx=5000, flash_attn="on", **na),
            ServerConfig(n_ctx=1000, flash_attn="off", **na)]
    return out


def run_sweep(models, out: Path, work: Path, weights: str = "q4_0", configs=None) -> tuple[int, int]:
    """Write each model's sparse GGUF, start llama-server for every config, write the records."""
    from planner.model.resolve import load_profile
    from planner.measurement.llamacpp_harness import read_tokenizer, write_gguf

    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    tok = read_tokenizer()
    n_ok = n_bad = 0
    for m in models:
        spec = load_profile(m)
        g = write_gguf(spec, weights, work / f"{m}__{weights}.gguf", tok)
        for cfg in (configs or sweep(m)):
            dst = out / f"{m}__{weights}__{cfg.key()}.json"
            if dst.exists():
                continue
            for _attempt in range(4):
                # no-alloc: llama.cpp's log thread can lose its last lines when the child dies
                # right after the reserve; start it again
                rec = measure_one(g, cfg, work)
                if rec["ok"] or not cfg.no_alloc:
                    break
            write_record(rec, out)
            n_ok += rec["ok"]
            n_bad += not rec["ok"]
            cb = rec["parsed"]["compute_buffers"]
            print(f"[server] {m} {weights} {cfg.key()}: ok={rec['ok']} compute={cb[0]['mib'] if cb else None}",
                  flush=True)
        Path(g["path"]).unlink(missing_ok=True)
    return n_ok, n_bad


PAIRS = (("gemma-4-e2b", "gemma-4-e2b-assistant"), ("gemma-4-e4b", "gemma-4-e4b-assistant"),
         ("gemma-4-12b", "gemma-4-12b-assistant"), ("gemma-4-26b-a4b", "gemma-4-26b-a4b-assistant"),
         ("gemma-4-31b", "gemma-4-31b-assistant"))


def pair_sweep(target: str) -> list[ServerConfig]:
    """Target + drafter starts (sizes only, no-alloc): context x ubatch x flash attention x slots at
    llama-server's default draft length, and a draft length of 8 at ubatch 512. The small targets
    also get one real start (mmap, the default repack) for the weights buffers, which no-alloc logs
    as 0."""
    na = dict(no_alloc=True, mmap=False)
    out = []
    for ctx in (4096, 32768, 131072):
        for ub in (512, 2048):
            for fa in ("on", "off"):
                for np_ in (1, 4):
                    out.append(ServerConfig(n_ctx=ctx, n_ubatch=ub, flash_attn=fa, n_parallel=np_, **na))
                    if ub == 512:
                        out.append(ServerConfig(n_ctx=ctx, n_ubatch=ub, flash_attn=fa, n_parallel=np_, n_draft=8, **na))
    if target == "gemma-4-e2b":
        out.append(ServerConfig(n_ctx=4096, flash_attn="on"))
    if target == "gemma-4-e4b":   # repack off keeps the process's anonymous memory small
        out.append(ServerConfig(n_ctx=4096, flash_attn="on", repack=False))
    return out


def run_pairs(pairs, out: Path, work: Path, weights: str = "q4_0", configs=None) -> tuple[int, int]:
    """Write each pair's sparse GGUFs, start llama-server with -md for every config, write the records."""
    from dataclasses import replace

    from planner.measurement.llamacpp_harness import read_tokenizer, write_gguf
    from planner.model.resolve import load_profile

    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    tok = read_tokenizer()
    n_ok = n_bad = 0
    for target, drafter in pairs:
        g = write_gguf(load_profile(target), weights, work / f"{target}__{weights}.gguf", tok)
        d = write_gguf(load_profile(drafter), weights, work / f"{drafter}__{weights}.gguf", tok)
        for cfg in (configs or pair_sweep(target)):
            cfg = replace(cfg, draft=drafter, draft_weights=weights)
            dst = out / f"{target}__{weights}__{cfg.key()}.json"
            if dst.exists():
                continue
            for _attempt in range(4):
                rec = measure_one(g, cfg, work, draft=d)
                if rec["ok"] or not cfg.no_alloc:
                    break
            write_record(rec, out)
            n_ok += rec["ok"]
            n_bad += not rec["ok"]
            dp = rec["draft_parsed"] or {}
            print(f"[server] {target}+{drafter} {cfg.key()}: ok={rec['ok']} "
                  f"draft compute={[b['mib'] for b in dp.get('compute_buffers', [])]}", flush=True)
        Path(g["path"]).unlink(missing_ok=True)
        Path(d["path"]).unlink(missing_ok=True)
    return n_ok, n_bad


WEIGHTS_ONLY_NOTE = ("weights-only start: the drafter beside the E2B target (not its own), for its load_tensors "
                     "buffers; b11549 then stops at the MTP row-width check (common/speculative.cpp "
                     "common_speculative_impl_draft_mtp: n_embd_out of drafter and target must match) or in the "
                     "drafter's graph reserve, so its compute buffer is not this record's")


def run_drafter_weights(drafters, out: Path, work: Path, weights: str = "q4_0") -> int:
    """Real (mmap) starts of large targets' assistants beside the small E2B target: the drafter's
    load_tensors buffers without mapping a 17 GB target (its page cache). The start then fails
    (the assistant's row width is not E2B's); the record keeps the drafter's buffers and a note."""
    from planner.measurement.llamacpp_harness import read_tokenizer, write_gguf
    from planner.model.resolve import load_profile

    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    tok = read_tokenizer()
    g = write_gguf(load_profile("gemma-4-e2b"), weights, work / f"gemma-4-e2b__{weights}.gguf", tok)
    n = 0
    for d in drafters:
        dg = write_gguf(load_profile(d), weights, work / f"{d}__{weights}.gguf", tok)
        cfg = ServerConfig(n_ctx=4096, flash_attn="on", draft=d, draft_weights=weights)
        for _attempt in range(3):      # the failing child may lose its last log lines
            rec = measure_one(g, cfg, work, draft=dg)
            if rec["draft_parsed"] and rec["draft_parsed"]["model_buffers"]:
                break
        rec["note"] = WEIGHTS_ONLY_NOTE
        write_record(rec, out)
        n += bool(rec["draft_parsed"] and rec["draft_parsed"]["model_buffers"])
        print(f"[server] {d} weights: {rec['draft_parsed'] and rec['draft_parsed']['model_buffers']}", flush=True)
        Path(dg["path"]).unlink(missing_ok=True)
    Path(g["path"]).unlink(missing_ok=True)
    return n


def run_server_measure(models=None, weights=None, out_dir=None, quick: bool = False) -> int:
    """`planner measure llama-cpp --frontend server`: the sweep (or --quick: E2B, a few settings) into
    --out (default: llama_cpp/server/ under the user data directory's measurements). Exit code."""
    import tempfile

    from planner.errors import PlannerInputError
    from planner.resources import refuse_installed_path, user_measurements_dir

    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        raise PlannerInputError("measure llama-cpp --frontend server needs xllamacpp: "
                                f"pip install 'xllamacpp=={XLLAMACPP_VERSION}' (or pip install -e '.[llamaserver]')") from None
    out = Path(out_dir) if out_dir else user_measurements_dir() / "llama_cpp" / "server"
    refuse_installed_path(out, "--out")
    ms = list(models or (("gemma-4-e2b",) if quick else GEMMA4))
    ws = [w.lower() for w in (weights or ("q4_0",))]
    work = Path(os.environ.get("PLANNER_GGUF_DIR") or tempfile.mkdtemp(prefix="planner-gguf-"))
    configs = [ServerConfig(), ServerConfig(n_ctx=32768, flash_attn="off", no_alloc=True, mmap=False),
               ServerConfig(n_ctx=32768, n_parallel=0, no_alloc=True, mmap=False)] if quick else None
    bad = 0
    for w in ws:
        _ok, b = run_sweep(ms, out, work, weights=w, configs=configs)
        bad += b
    print(f"[server] wrote {out}")
    return 1 if bad else 0


def write_record(rec: dict, out: Path) -> Path:
    name = f"{rec['model']}__{rec['weights']}__{ServerConfig(**rec['config']).key()}.json"
    path = out / name
    path.write_text(json.dumps(rec, indent=1) + "\n")
    return path


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(_child_main(sys.argv[2]))
    if len(sys.argv) >= 2 and sys.argv[1] == "--drafter-weights":
        ds = sys.argv[2].split(",") if len(sys.argv) > 2 else [
            "gemma-4-12b-assistant", "gemma-4-26b-a4b-assistant", "gemma-4-31b-assistant"]
        n = run_drafter_weights(ds, Path("measurements/llama_cpp/server"),
                                Path(os.environ.get("PLANNER_GGUF_DIR", "/tmp/ls_gguf")))
        print(f"[server] {n} of {len(ds)} drafters' weights measured")
        sys.exit(0)
    if len(sys.argv) >= 2 and sys.argv[1] == "--pairs":
        want = sys.argv[2].split(",") if len(sys.argv) > 2 else [t for t, _d in PAIRS]
        ok, bad = run_pairs([pr for pr in PAIRS if pr[0] in want], Path("measurements/llama_cpp/server"),
                            Path(os.environ.get("PLANNER_GGUF_DIR", "/tmp/ls_gguf")))
        print(f"[server] {ok} ok, {bad} failed")
        sys.exit(0)
    if len(sys.argv) >= 2 and sys.argv[1] == "--sweep":
        ms = sys.argv[2].split(",") if len(sys.argv) > 2 else list(GEMMA4)
        ok, bad = run_sweep(ms, Path("measurements/llama_cpp/server"), Path(os.environ.get("PLANNER_GGUF_DIR", "/tmp/ls_gguf")))
        print(f"[server] {ok} ok, {bad} failed")
        sys.exit(0)
    sys.exit("usage: python -m planner.measurement.llamacpp_server --child JOB.json")
