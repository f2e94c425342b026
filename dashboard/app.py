"""Gemma memory planner: a decision page.  Run: `streamlit run dashboard/app.py`

The answer first: a verdict card for every option chosen in the sidebar (fits / tight / does not
fit, headroom, largest context, the biggest buffers behind it), then lazy tabs for why (every
component and the device's budget rule), memory against context, fit matrices, A vs B, what to
change (the advisor, when planner/planning/advise.py exists) and measurements; only the open tab runs.

Every number comes from the planner's Python API through dashboard/compute.py and dashboard/decide.py;
figures are built in dashboard/charts.py. The selection, uploads included (by content hash), lives in
the URL query string, so a link reproduces the view; a URL value the page cannot use is reported.
"""
from __future__ import annotations

import difflib
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:        # `streamlit run` puts only dashboard/ on sys.path
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from dashboard import charts as G  # noqa: E402
from dashboard import compute as C  # noqa: E402
from dashboard import decide as D  # noqa: E402
from dashboard import cards as H  # noqa: E402
from dashboard.measurements import load_measurements  # noqa: E402
from dashboard.uploads import find_upload, model_from_upload, upload_digest  # noqa: E402
from planner.readers.devices import get_device  # noqa: E402
from planner.errors import PlannerInputError  # noqa: E402

GIB = C.GIB
UBATCH_OPTIONS = ["default", 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
NGL_OPTIONS = ["all"] + list(range(0, 129))
MAX_CARDS = 12
TABS = ["Why", "Memory chart", "Memory vs context", "Fit matrices", "A vs B", "What to change", "Measurements"]
BADGE = {D.FITS: ":green-badge[✓ fits]", D.TIGHT: ":orange-badge[⚠ tight]", D.NO_FIT: ":red-badge[✗ does not fit]"}


# ---------------------------------------------------------------------------------------------
# Cached planner calls (arguments are plain strings, numbers and tuples)


@st.cache_data(show_spinner=False, max_entries=256)
def cached_table(models, weights, runtimes, kvs, devices, context, sequences, ubatch, margin, text_only, placement):
    return C.evaluate_table(list(models), list(weights), list(runtimes), list(kvs), list(devices), context,
                            sequences, ubatch, margin, text_only, placement)


@st.cache_data(show_spinner=False, max_entries=128)
def cached_curve(model, weights, runtimes, device, sequences, ubatch, margin, text_only):
    return C.memory_curve(model, weights, list(runtimes), device, None, sequences, ubatch, margin, text_only)


@st.cache_data(show_spinner=False, max_entries=128)
def cached_matrix_models(device, runtime, formats, kv, sequences, ubatch, margin, models, text_only, context):
    return C.fit_matrix_models(device, runtime, list(formats), kv, sequences, ubatch, margin, list(models), text_only,
                               context)


@st.cache_data(show_spinner=False, max_entries=128)
def cached_matrix_devices(model, runtime, formats, kv, sequences, ubatch, margin, devices, text_only, context):
    return C.fit_matrix_devices(model, runtime, list(formats), kv, sequences, ubatch, margin, list(devices),
                                text_only, context)


@st.cache_data(show_spinner=False, ttl=60)
def cached_measurements():
    return load_measurements()


@st.cache_data(show_spinner=False, max_entries=64)
def cached_upload(data: bytes, filename: str):
    try:
        path, spec = model_from_upload(data, filename)
        return path, spec.name, None
    except PlannerInputError as e:
        return None, None, str(e)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_resolve(model: str):
    """(name, max_context, error) for a catalogue name or a path."""
    from planner.model.resolve import resolve_model

    try:
        spec = resolve_model(model)
        return spec.name, spec.max_context, None
    except Exception as e:  # noqa: BLE001
        return None, None, C.error_text(e)


def advise_module():
    """planner/planning/advise.py (issue 11) when this checkout has it, else None."""
    try:
        from planner.planning import advise  # noqa: PLC0415
    except ImportError:
        return None
    return advise if hasattr(advise, "advise") else None


@st.cache_data(show_spinner=False, max_entries=64)
def cached_advice(device, models, context, sequences, runtime, goal, host="32 GB desktop"):
    from planner.measurement.kv_safety import verdict as kv_verdict  # noqa: PLC0415

    adv = advise_module()
    try:
        # the same KV-safety verdicts as `planner advise`: a type measured unsafe for the model is never advised
        plans = adv.advise(device, list(models), context=context, sequences=sequences, runtime=runtime, goal=goal,
                           limit=5, kv_verdict=kv_verdict, host_memory=HOST_RAM[host])
    except PlannerInputError as e:
        return [], str(e)
    return [p.as_dict() | {"_plan": plan_fields(p)} for p in plans], None


def plan_fields(advised) -> dict:
    """What "apply" loads into the page from an advised plan (advise.AdvisedPlan: a planner Plan, the device)."""
    p = advised.plan
    return {"model": p.model, "weights": p.weights, "runtime": advised.runtime, "kv": p.kv_type_k or C.DEFAULT_KV,
            "context": p.context, "sequences": p.sequences or 1, "device": advised.device,
            "ubatch": p.ubatch, "ngl": p.n_gpu_layers, "ncmoe": p.n_cpu_moe or 0, "fa": p.flash_attn or "auto",
            # what the sidebar cannot hold: several GPUs, vLLM parallelism, tensor overrides
            "applicable": advised.gpus == 1 and p.tp == 1 and p.pp == 1 and not p.override_tensors
            and not p.tensor_split}


# ---------------------------------------------------------------------------------------------
# Selection <-> URL query string

# widget key -> (query parameter, kind)
QP = {
    "runtimes": ("runtime", "list"), "devices": ("device", "list"), "custom_sizes": ("size", "str"),
    "models": ("model", "list"), "uploads": ("upload", "list"), "model_path": ("model_path", "str"),
    "weights": ("weights", "list"), "kv": ("kv", "list"), "context": ("ctx", "int"), "sequences": ("seqs", "int"),
    "ubatch": ("ubatch", "ubatch"), "margin": ("margin", "float"), "encoders": ("enc", "str"),
    "ngl": ("ngl", "ngl"), "ncmoe": ("ncmoe", "int"), "fa": ("fa", "str"),
    "view": ("view", "str"), "numbers": ("table", "bool"), "why_pick": ("why", "int"), "cmp_a": ("a", "int"), "cmp_b": ("b", "int"),
    "more": ("more", "bool"), "curve_model": ("cmodel", "str"), "curve_device": ("cdevice", "str"), "curve_weights": ("cweights", "str"),
    "matrix_device": ("mdevice", "str"), "matrix_model": ("mmodel", "str"), "matrix_runtime": ("mruntime", "str"),
    "all_formats": ("allfmt", "bool"), "advice_goal": ("goal", "str"), "advice_host": ("host", "str"),
}

# Host RAM the advisor may fill beside a discrete GPU (planner advise --host-memory): label -> API value
HOST_RAM = {"32 GB desktop": "typical", "16 GB": 16 << 30, "64 GB": 64 << 30, "128 GB": 128 << 30,
            "not checked": None}


def _parse(kind: str, raw: list[str]):
    if kind == "list":
        out = []
        for r in raw:
            out += [x.strip() for x in r.split(",") if x.strip()]
        return out
    v = raw[-1].strip()
    if kind == "str":
        return v
    if kind == "int":
        return int(v)
    if kind == "float":
        f = float(v)
        if not math.isfinite(f) or f < 0:
            raise ValueError(v)
        return f
    if kind == "bool":
        return v.lower() in ("1", "true", "yes", "on")
    if kind == "ubatch":
        return "default" if v in ("", "default") else int(v)
    if kind == "ngl":
        return "all" if v in ("", "all") else int(v)
    raise AssertionError(kind)


def load_query_params() -> None:
    """On a session's first run, copy the URL's selection into the widgets' state."""
    if st.session_state.get("_qp_loaded"):
        return
    st.session_state["_qp_loaded"] = True
    bad, from_url = [], set()
    for key, (param, kind) in QP.items():
        if param not in st.query_params:
            continue
        try:
            st.session_state[key] = _parse(kind, st.query_params.get_all(param))
            from_url.add(key)
        except ValueError:
            bad.append(f"`{param}={st.query_params.get(param)}` is not a {'number' if kind != 'list' else 'list'}; "
                       "ignored")
    st.session_state["_qp_bad"] = bad
    st.session_state["_qp_from_url"] = from_url


def url_problem(text: str) -> None:
    st.session_state.setdefault("_qp_bad", []).append(text)


def save_query_params() -> None:
    out: dict[str, str | list[str]] = {}
    for key, (param, kind) in QP.items():
        v = st.session_state.get(key)
        if v is None or v == "" or v == []:
            continue
        if kind == "list":
            out[param] = [str(x) for x in v]
        elif kind == "bool":
            if v:
                out[param] = "1"
        else:
            out[param] = str(v)
    current = {k: (st.query_params.get_all(k) if len(st.query_params.get_all(k)) > 1 else st.query_params.get(k))
               for k in st.query_params}
    norm = {k: (v if isinstance(v, list) and len(v) > 1 else (v[0] if isinstance(v, list) else v)) for k, v in out.items()}
    if current != norm:
        st.query_params.from_dict(out)


def keep_valid(key: str, options: list, default, multi: bool = False) -> None:
    """Make the widget state a valid choice before the widget is drawn (options change with runtimes).
    A value that came from the URL and is dropped here is reported, with the closest choices."""
    v = st.session_state.get(key)
    dropped = []
    if multi:
        if v is None:
            st.session_state[key] = [d for d in default if d in options]
        else:
            kept = [x for x in v if x in options]
            dropped = [x for x in v if x not in options]
            st.session_state[key] = kept if kept or not v else [d for d in default if d in options]
    elif v not in options:
        if v is not None:
            dropped = [v]
        st.session_state[key] = default if default in options else (options[0] if options else None)
    from_url = st.session_state.get("_qp_from_url", set())
    if dropped and key in from_url:
        param = QP[key][0]
        for x in dropped:
            close = difflib.get_close_matches(str(x), [str(o) for o in options], n=3, cutoff=0.5)
            url_problem(f"`{param}={x}` is not a choice here" + (f" (closest: {', '.join(close)})" if close else "")
                        + "; ignored")
    from_url.discard(key)


def gib(b: float) -> str:
    return f"{b:,.2f} GiB"


def option_label(r: dict) -> str:
    return f"{r['model']} · {r['weights']} · KV {r['kv']} · {r['runtime']} @ {r['device']}"


# ---------------------------------------------------------------------------------------------
# Page

st.set_page_config(page_title="Gemma memory planner", page_icon=":bar_chart:", layout="wide")
st.title("Gemma memory planner")
st.html(H.STYLE)
load_query_params()
alerts = st.container()          # URL and input problems, above the answer

runtimes_all = list(C.available_runtimes())
sb = st.sidebar
sb.header("What to run")

# runtimes
default_rt = ["llama.cpp"] if "llama.cpp" in runtimes_all else runtimes_all[:1]
keep_valid("runtimes", runtimes_all, default_rt, multi=True)
runtimes = sb.multiselect("Runtime(s)", runtimes_all, key="runtimes",
                          help="llama.cpp (the CLI's default), vLLM, transformers, MLX. Several: compared side by side.")
if not runtimes:
    runtimes = default_rt
primary_rt = runtimes[0]

# devices
device_names = C.catalogue_devices()
keep_valid("devices", device_names, ["8gb-gpu"], multi=True)
chosen_devices = sb.multiselect("Device(s)", device_names, key="devices",
                                help="Catalogue devices: usable memory and bandwidth as documented (each card's "
                                     "'why' gives the device's budget rule).")
for key, default in (("custom_sizes", ""), ("model_path", ""), ("margin", 0.0), ("ncmoe", 0)):
    st.session_state.setdefault(key, default)
keep_valid("ubatch", UBATCH_OPTIONS, "default")
keep_valid("ngl", NGL_OPTIONS, "all")
keep_valid("fa", ["auto", "on", "off"], "auto")
keep_valid("encoders", list(C.ENCODERS), "runtime default")
custom = st.session_state["custom_sizes"]           # drawn under "More settings" below
devices = list(chosen_devices)
for s in [x.strip() for x in custom.split(",") if x.strip()]:
    try:
        devices.append(get_device(s).name)
    except PlannerInputError as e:
        sb.error(f"Custom memory size: {D.ui_words(str(e))}")
devices = list(dict.fromkeys(devices))
if not devices:
    sb.info("No device chosen: using 8gb-gpu.")
    devices = ["8gb-gpu"]

# models: catalogue, uploads (by content hash: the URL keeps the hash), a path
model_names = C.catalogue_models()
keep_valid("models", model_names, ["gemma-4-e4b"], multi=True)
chosen_models = sb.multiselect("Model(s)", model_names, key="models", help="The model catalogue.")
upload = sb.file_uploader("…or upload a config.json or GGUF", type=["json", "gguf"], key="upload",
                          help="A Hugging Face config.json, or a GGUF file. For a large GGUF the header is enough: "
                               "`head -c 16M model.gguf > header.gguf`.")
known = st.session_state.setdefault("_uploads_known", {})      # digest -> (path, name)
if upload is not None:
    data = upload.getvalue()
    path, name, err = cached_upload(data, upload.name)
    if err:
        alerts.error(f"Upload: {D.ui_words(err)}")
    else:
        digest = upload_digest(data)
        if digest not in known:
            known[digest] = (path, name)
            st.session_state["uploads"] = list(dict.fromkeys((st.session_state.get("uploads") or []) + [digest]))
for digest in list(st.session_state.get("uploads") or []):
    if digest not in known:
        found = find_upload(digest)
        name = cached_resolve(str(found))[0] if found else None
        if found and name:
            known[digest] = (str(found), name)
        else:
            st.session_state["uploads"].remove(digest)
            url_problem(f"`upload={digest}`: no uploaded file with this content hash is on this server "
                        "(uploads are kept per machine); upload the file again")
if known:
    st.session_state.setdefault("uploads", [])
    uploads = sb.multiselect("Uploaded models", list(known), key="uploads",
                             format_func=lambda d: f"{known[d][1]} ({d[:8]})",
                             help="Uploaded files, named by what they contain; the URL keeps their content hash.")
else:
    uploads = []
model_path = st.session_state["model_path"]
extra_models: list[str] = [known[d][0] for d in uploads if d in known]
if model_path.strip():
    name, _, err = cached_resolve(model_path.strip())
    if err:
        alerts.error(f"Model path: {D.ui_words(err)}")
    else:
        extra_models.append(model_path.strip())
models = list(dict.fromkeys(list(chosen_models) + extra_models))
labels = {m: cached_resolve(m)[0] or m for m in models}

# weights, KV
fmt_options = C.formats_for(runtimes)
keep_valid("weights", fmt_options, [C.DEFAULT_FORMAT[primary_rt]], multi=True)
weights = sb.multiselect("Weight format(s)", fmt_options, key="weights",
                         help="Only formats the chosen runtime(s) load.")
if not weights:
    weights = [C.DEFAULT_FORMAT[primary_rt]]
kv_opts = C.kv_options(runtimes)
keep_valid("kv", kv_opts, [C.DEFAULT_KV], multi=True)
kvs = sb.multiselect("KV-cache type(s)", kv_opts, key="kv",
                     help="'default' is the runtime's own (llama.cpp f16, others bf16); only types the runtime allocates.")
if not kvs:
    kvs = [C.DEFAULT_KV]

# context and the rest
max_ctx = max([cached_resolve(m)[1] or 0 for m in models] or [0]) or 131072
ctx_opts = C.context_options(max_ctx)
if st.session_state.get("context") not in ctx_opts:
    want = st.session_state.get("context") or 8192
    snapped = min(ctx_opts, key=lambda c: (abs(math.log2(c) - math.log2(max(want, 1))), c))
    if "context" in st.session_state.get("_qp_from_url", set()):
        url_problem(f"`ctx={want}` is not a step of the context slider; showing {snapped:,}")
    st.session_state["context"] = snapped
st.session_state.get("_qp_from_url", set()).discard("context")
context = sb.select_slider("Context (tokens)", ctx_opts, key="context", format_func=C.fmt_context,
                           help="Per sequence. Powers of two up to the largest chosen model's maximum; "
                                "a model with a smaller maximum is evaluated at its maximum.")
st.session_state.setdefault("sequences", 1)
sequences = int(sb.number_input("Sequences (concurrent)", min_value=1, max_value=4096, step=1, key="sequences"))
ubatch_v = st.session_state["ubatch"]
ubatch = None if ubatch_v == "default" else int(ubatch_v)
margin = float(st.session_state["margin"])
encoders = st.session_state["encoders"]
placement = tuple((k, v) for k, v, keep in (
    ("n_gpu_layers", None if st.session_state["ngl"] == "all" else int(st.session_state["ngl"]), st.session_state["ngl"] != "all"),
    ("n_cpu_moe", int(st.session_state["ncmoe"] or 0), bool(st.session_state["ncmoe"])),
    ("flash_attn", st.session_state["fa"], st.session_state["fa"] != "auto")) if keep)
PLACEMENT_FLAGS = {"n_gpu_layers": "-ngl", "n_cpu_moe": "--n-cpu-moe", "flash_attn": "-fa"}


def _keep(widget_key: str, key: str) -> None:
    st.session_state[key] = st.session_state[widget_key]


def kept(draw, key: str, label: str, **kw):
    """A widget drawn only when its lazy expander is open: its value lives under `key` (in the URL, read by
    the page), the widget under `_w_<key>`, so closing the expander keeps the setting."""
    wkey = f"_w_{key}"
    st.session_state[wkey] = st.session_state[key]
    return draw(label, key=wkey, on_change=_keep, args=(wkey, key), **kw)


more = sb.expander("More settings: custom memory size, model path, ubatch, margin, encoders, llama.cpp "
                   "placement", key="more", on_change="rerun")
if more.open:          # lazy: a closed expander costs no widgets on each rerun
    with more:
        kept(st.text_input, "custom_sizes", "Custom memory size(s)", placeholder="e.g. 12gb, 10.5GiB",
             help="A bare size, comma-separated: usable = size minus the driver's reserve.")
        kept(st.text_input, "model_path", "Model: a path on this machine",
             placeholder="/path/to/config.json, model folder or .gguf")
        kept(st.selectbox, "ubatch", "ubatch (llama.cpp n_ubatch; MLX prefill step)", options=UBATCH_OPTIONS)
        kept(st.number_input, "margin", "Margin to keep free (MiB)", min_value=0.0, step=256.0)
        kept(st.selectbox, "encoders", "Vision/audio encoders", options=list(C.ENCODERS),
             help="Runtime default: llama.cpp and MLX load the text model only (encoders are a separate mmproj "
                  "file), vLLM and transformers load them.")
        kept(st.selectbox, "ngl", "llama.cpp: layers on the GPU (-ngl)", options=NGL_OPTIONS)
        kept(st.number_input, "ncmoe", "llama.cpp: MoE layers with experts on the CPU (--n-cpu-moe)", min_value=0,
             max_value=256, step=1)
        kept(st.selectbox, "fa", "llama.cpp: flash attention", options=["auto", "on", "off"])
text_only = C.ENCODERS[encoders]

# ---------------------------------------------------------------------------------------------
# 1. The answer: a verdict card per option

meas = cached_measurements()
measured_kv = {a["model"]: {str(x["kv_type"]): str(x["verdict"]) for x in a["safety"]} for a in meas["activations"]}
EMPTY = {"rows": [], "results": [], "bars": [], "details": [], "messages": []}
table = cached_table(tuple(models), tuple(weights), tuple(runtimes), tuple(kvs), tuple(devices), int(context),
                     sequences, ubatch, margin, text_only, placement) if models else EMPTY
rows, details, results = table["rows"], table["details"], table["results"]
notes = []
for level, msg in table["messages"]:
    if level == "info":
        notes.append(D.ui_words(msg))
    else:
        getattr(alerts, level)(D.ui_words(msg))
for b in st.session_state.pop("_qp_bad", []):
    alerts.warning(f"Link: {b}")
if not models:
    st.info("Choose a model in the sidebar (or upload a config.json / GGUF).")

if placement and "llama.cpp" in runtimes:
    st.caption("llama.cpp placement: " + " ".join(f"`{PLACEMENT_FLAGS[k]} {v}`" for k, v in placement)
               + " (More settings)")
if rows:
    st.html(H.summary_html(details, C.fmt_context(context), sequences) +
            H.cards_html(rows, details, results, context, MAX_CARDS))
    if len(rows) > MAX_CARDS:
        st.caption(f"{len(rows) - MAX_CARDS} more option(s) in the table below.")
    flagged = sorted({(r["model"], r["kv"], measured_kv[r["model"]][r["kv"]].lower()) for r in rows
                      if measured_kv.get(r["model"], {}).get(r["kv"], "").lower() in ("unsafe", "risky")})
    for model, kv, v in flagged:
        (st.error if v == "unsafe" else st.warning)(
            f"{model}: KV type {kv} was measured **{v}** (activation probe; see Measurements): "
            "it may fit, but it changes the model's output.")

    numbers = st.expander("All numbers: table, CSV, JSON", key="numbers", on_change="rerun")
    if numbers.open:
        with numbers:
            df = pd.DataFrame(rows)
            if any(r["model"] in measured_kv for r in rows):
                df["KV safety (measured)"] = [measured_kv.get(r["model"], {}).get(r["kv"], "not measured") for r in rows]
            colcfg = {c: st.column_config.NumberColumn(c, format="%.2f") for c in df.columns if c.endswith("GiB")}
            colcfg.update({c: st.column_config.NumberColumn(c, format="%.0f") for c in df.columns if "tok/s" in c})
            colcfg["headroom %"] = st.column_config.NumberColumn("headroom %", format="%.1f")
            colcfg["max context"] = st.column_config.NumberColumn("max context", format="%d")
            st.dataframe(df, hide_index=True, column_config=colcfg, key="results_table")
            st.caption("Needed = bytes counted against the device (device memory; on unified-memory devices device + "
                       "host). Budget = usable memory − margin (vLLM: its gpu_memory_utilization share). Tight = fits "
                       f"with under {D.TIGHT_FRACTION:.0%} of the budget left. Decode tok/s is an **upper bound** from "
                       "memory bandwidth.")
            c1, c2 = st.columns(2)
            c1.download_button("Download CSV", df.to_csv(index=False).encode(), "planner-fit.csv", "text/csv")
            c2.download_button("Download JSON", json.dumps(C.fit_json(results), indent=1).encode(),
                               "planner-fit.json", "application/json",
                               help="The planner's `fit --json` schema (planner.fit/1), with components and the decode bound.")
if notes:
    with st.expander(f"Notes ({len(notes)})"):
        st.markdown("\n".join(f"- {n}" for n in notes))

# ---------------------------------------------------------------------------------------------
# 2. Details, one lazy tab at a time

keep_valid("view", TABS, TABS[0])
tabs = dict(zip(TABS, st.tabs(TABS, key="view", on_change="rerun")))
options = [option_label(r) for r in rows]

if tabs["Why"].open:
    with tabs["Why"]:
        if rows:
            keep_valid("why_pick", list(range(len(rows))), 0)
            i = st.selectbox("Why this verdict, for", list(range(len(rows))), key="why_pick",
                             format_func=lambda k: options[k])
            r, d, res = rows[i], details[i], results[i]
            st.markdown(f"{BADGE[d['verdict']]} needs **{gib(r['needed GiB'])}** of a **{gib(r['budget GiB'])}** "
                        f"budget: headroom {D.headroom_text(int(res['headroom']), int(res['budget']))}; largest "
                        f"context {d['max context text']}.  \n**Device budget rule**: " + "  \n".join(d["budget_rule"]))
            st.html(H.why_table_html(res, d["unified"]))
            st.caption(f"The components `planner breakdown` prints; constants: {res.get('calibration', '')}.")
        else:
            st.info("Choose a model to see why.")

if tabs["Memory chart"].open:
    with tabs["Memory chart"]:
        if rows:
            # no Plotly toolbar here: it sits where the legend's first row is and hid two of its labels
            st.plotly_chart(G.bars_figure(table["bars"]), key="bars_chart", config={"displayModeBar": False})
            st.caption("Counted stack: what is charged against the device budget (device memory; on unified memory "
                       "host bytes (/) too). Beside it, not counted: host RAM on a discrete GPU (×) and file-backed "
                       "mapped pages read on demand (·), e.g. llama.cpp's mmap'd PLE table.")
        else:
            st.info("Choose a model to see its memory.")

if tabs["Memory vs context"].open:
    with tabs["Memory vs context"]:
        if models:
            cc = st.columns(3)
            keep_valid("curve_model", models, models[0])
            cmodel = cc[0].selectbox("Model", models, key="curve_model", format_func=lambda m: labels.get(m, m))
            keep_valid("curve_weights", weights, weights[0])
            cweights = cc[1].selectbox("Weights", weights, key="curve_weights")
            keep_valid("curve_device", devices, devices[0])
            cdevice = cc[2].selectbox("Device", devices, key="curve_device")
            curve = cached_curve(cmodel, cweights, tuple(runtimes), cdevice, sequences, ubatch, margin, text_only)
            for _level, msg in curve["messages"]:
                st.caption(D.ui_words(msg))
            if curve["points"]:
                chosen_kv = {(r["runtime"], r["kv"]) for r in rows}
                st.plotly_chart(G.curve_figure(curve, context, chosen_kv, cweights), key="curve_chart")
        else:
            st.info("Choose a model to see memory against context.")

if tabs["Fit matrices"].open:
    with tabs["Fit matrices"]:
        mc = st.columns(4)
        keep_valid("matrix_runtime", runtimes, primary_rt)
        mruntime = mc[0].selectbox("Runtime", runtimes, key="matrix_runtime")
        keep_valid("matrix_device", devices, devices[0])
        mdevice = mc[1].selectbox("Device (models × formats)", devices, key="matrix_device")
        model_opts = models or model_names[:1]
        keep_valid("matrix_model", model_opts, model_opts[0])
        mmodel = mc[2].selectbox("Model (devices × formats)", model_opts, key="matrix_model",
                                 format_func=lambda m: labels.get(m, m))
        st.session_state.setdefault("all_formats", False)
        all_formats = mc[3].toggle("every format", key="all_formats", help="Every format the runtime loads.")
        mformats = C.formats_for([mruntime]) if all_formats else list(dict.fromkeys(
            C.common_formats(mruntime) + [w for w in weights if C.format_allowed(mruntime, w)]))
        mkv = next((k for k in kvs if k == C.DEFAULT_KV or k in C.RUNTIME_KV_TYPES[mruntime]), C.DEFAULT_KV)
        st.caption(f"{mruntime}, KV {mkv}, {sequences} sequence(s), margin {margin:g} MiB, from the sidebar. "
                   f"Each cell: the largest context that fits; ✓ fits the chosen context ({C.fmt_context(context)}, or "
                   "the model's maximum when smaller), ✗ does not (hover: by how much), ✗ — fits at no context.")

        def matrix_downloads(m: dict, stem: str) -> None:
            dfm = pd.DataFrame(C.matrix_records(m))
            payload = {"schema": "planner.dashboard.fit_matrix/1", "runtime": m["runtime"], "kv_type": m["kv"],
                       "device": m.get("device"), "model": m.get("model"), "sequences": sequences,
                       "margin_mib": margin, "context": context, "max_context": C.matrix_records(m),
                       "errors": [{"row": k[0], "weights": k[1], "message": v} for k, v in m["errors"].items()]}
            c1, c2, c3 = st.columns([1, 1, 3])
            c1.download_button("CSV", dfm.to_csv(index=False).encode(), f"{stem}.csv", "text/csv", key=f"{stem}-csv")
            c2.download_button("JSON", json.dumps(payload, indent=1).encode(), f"{stem}.json", "application/json",
                               key=f"{stem}-json")
            with c3.popover("as a table"):
                st.dataframe(dfm, hide_index=True, key=f"{stem}-table")

        st.subheader(f"Every model × format on {mdevice}")
        mat = cached_matrix_models(mdevice, mruntime, tuple(mformats), mkv, sequences, ubatch, margin,
                                   tuple(dict.fromkeys(model_names + extra_models)), text_only, int(context))
        st.plotly_chart(G.matrix_figure(mat, context), key="matrix_models_chart")
        matrix_downloads(mat, "planner-matrix-models")
        st.subheader(f"{labels.get(mmodel, mmodel)} on every device")
        matd = cached_matrix_devices(mmodel, mruntime, tuple(mformats), mkv, sequences, ubatch, margin,
                                     tuple(dict.fromkeys(device_names + [d for d in devices if d not in device_names])),
                                     text_only, int(context))
        st.plotly_chart(G.matrix_figure(matd, context), key="matrix_devices_chart")
        matrix_downloads(matd, "planner-matrix-devices")
        if mat["errors"] or matd["errors"]:
            st.caption(f"{len(mat['errors']) + len(matd['errors'])} combination(s) the planner could not evaluate "
                       "(grey; hover for the reason).")

if tabs["A vs B"].open:
    with tabs["A vs B"]:
        if len(rows) < 2:
            st.info("Choose at least two options in the sidebar (two devices, formats, KV types, runtimes or "
                    "models) to compare them term by term.")
        else:
            idx = list(range(len(rows)))
            keep_valid("cmp_a", idx, 0)
            keep_valid("cmp_b", idx, 1)
            ca, cb = st.columns(2)
            a = ca.selectbox("A", idx, key="cmp_a", format_func=lambda k: options[k])
            b = cb.selectbox("B", idx, key="cmp_b", format_func=lambda k: options[k])
            for col, k in ((ca, a), (cb, b)):
                col.markdown(f"{BADGE[details[k]['verdict']]} headroom "
                             f"{D.headroom_text(int(results[k]['headroom']), int(results[k]['budget']))}; largest "
                             f"context {details[k]['max context text']}")
            cmp = pd.DataFrame(D.compare(results[a], results[b]))
            fmt = {c: st.column_config.NumberColumn(c, format="%+.1f" if "−" in c else "%.1f")
                   for c in ("A MiB", "B MiB", "B − A MiB")}
            st.dataframe(cmp, hide_index=True, key="compare_table", column_config=fmt)

if tabs["What to change"].open:
    with tabs["What to change"]:
        if advise_module() is None:
            st.info("The advisor (`planner/planning/advise.py`, issue 11) is not in this checkout yet. Once it is, "
                    "this tab lists its top plans for the device, with their command lines and an *apply* button "
                    "that loads a plan into the page.")
        elif not models:
            st.info("Choose a model to get advice.")
        else:
            ac = st.columns(3)
            keep_valid("advice_device", devices, devices[0])
            adevice = ac[0].selectbox("Device", devices, key="advice_device")
            keep_valid("advice_goal", ["context", "quality", "speed"], "context")
            goal = ac[1].selectbox("Optimise for", ["context", "quality", "speed"], key="advice_goal")
            keep_valid("advice_host", list(HOST_RAM), "32 GB desktop")
            host = ac[2].selectbox("Host RAM", list(HOST_RAM), key="advice_host",
                                   help="What offloaded layers and experts may fill beside a discrete GPU "
                                        "(`planner advise --host-memory`); a 32 GB desktop has 28 GiB usable. "
                                        "Shared-memory devices have no separate host.")
            advice, err = cached_advice(adevice, tuple(models), int(context), sequences,
                                        primary_rt if len(runtimes) == 1 else None, goal, host)
            if err:
                st.error(D.ui_words(err))
            if not advice and not err:
                st.info("The advisor found no plan that fits.")

            # what the advisor knew of the KV type's accuracy (planner probe activations); unsafe ones never show
            KV_SAFETY_TEXT = {"risky": " · KV type measured *risky* for this model",
                              "unknown": " · KV type not measured for this model"}

            def apply(p: dict) -> None:
                """Load an advised plan into the page (callback: runs before the rerun draws the widgets)."""
                ss = st.session_state
                ss["runtimes"] = [p["runtime"]]
                if p["device"] in device_names:
                    ss["devices"], ss["custom_sizes"] = [p["device"]], ""
                else:
                    ss["devices"], ss["custom_sizes"] = [], p["device"]
                if p["model"] in model_names:
                    ss["models"] = [p["model"]]
                ss["weights"], ss["kv"] = [p["weights"]], [p["kv"]]
                if p["context"]:
                    ss["context"] = int(p["context"])
                ss["sequences"] = int(p["sequences"])
                ss["ubatch"] = p["ubatch"] if p["ubatch"] in UBATCH_OPTIONS else "default"
                ss["ngl"] = "all" if p["ngl"] is None else int(p["ngl"])
                ss["ncmoe"], ss["fa"] = int(p["ncmoe"]), p["fa"] if p["fa"] in ("on", "off") else "auto"
                ss["view"] = "Why"

            st.caption(f"The advisor's top plans for {adevice} at {C.fmt_context(context)} × {sequences} sequence(s), "
                       f"goal: {goal} (`planner advise`). *Apply* loads a plan into the sidebar.")
            for n, a in enumerate(advice):
                p = a["_plan"]
                with st.container(border=True):
                    st.markdown(f"**{n + 1}. {p['model']} · {p['weights']} · KV {p['kv']} · {p['runtime']}** on "
                                f"{p['device']}: " + (BADGE[D.FITS] if a.get("fits") else BADGE[D.NO_FIT])
                                + (f" · largest context {a['max_context']:,}" if a.get("max_context") else "")
                                + (f" · decode ≤ {a['decode_tps']:,.0f} tok/s" if a.get("decode_tps") else "")
                                + f" · device {a['device_bytes'] / GIB:,.2f} GiB, host {a['host_bytes'] / GIB:,.2f} GiB"
                                + KV_SAFETY_TEXT.get(a.get("kv_verdict"), "")
                                + (f"  \n{a['quality']}" if a.get("quality") else ""))
                    st.code(a.get("command", ""), language="bash")
                    st.button("apply", key=f"apply-{n}", on_click=apply, args=(p,), disabled=not p["applicable"],
                              help="Load this plan into the sidebar." if p["applicable"] else
                              "Several GPUs or vLLM parallelism: not a sidebar setting; run the command instead.")

if tabs["Measurements"].open:
    with tabs["Measurements"]:
        import plotly.graph_objects as go  # noqa: PLC0415 (only this tab draws these charts)

        VERDICT_COLOURS = {"safe": "#D8F0DC", "risky": "#FFF0C2", "unsafe": "#F9D0D0"}

        def verdict_style(v) -> str:
            return f"background-color: {VERDICT_COLOURS.get(str(v).lower(), 'transparent')}"

        if meas["error"]:
            st.warning(f"Measurements could not all be read: {meas['error']}")
        if not meas["activations"]:
            st.info("No activation measurements exist yet. Make them with "
                    "`planner probe activations --model <model>` (per-layer max |K|, |V| and residual, and which KV "
                    "types are safe); they are stored in `measurements/activations/`.")
        else:
            names = [a["model"] for a in meas["activations"]]
            keep_valid("meas_model", names, next((n for n in names if n in labels.values()), names[0]))
            pick = st.selectbox("Measured model", names, key="meas_model")
            rep = meas["activations"][names.index(pick)]
            if rep["layers"]:
                ldf = pd.DataFrame(rep["layers"])
                fig = go.Figure()
                for i, (col, name) in enumerate((("k", "max |K| (as cached)"), ("v", "max |V|"),
                                                 ("residual", "max |residual|"))):
                    if col in ldf and ldf[col].notna().any():
                        fig.add_scatter(x=ldf["layer"], y=ldf[col], mode="lines+markers", name=name,
                                        line=dict(color=G.LINE_COLOURS[i]),
                                        marker=dict(color=G.LINE_COLOURS[i], symbol=G.MARKERS[i]))
                fig.add_hline(y=65504, line=dict(color=G.BUDGET_COLOUR, dash="dot"), annotation_text="f16 max 65504")
                fig.update_layout(height=380, yaxis_type="log", xaxis_title="layer", yaxis_title="max |x|",
                                  margin=dict(t=40, b=10), title=f"{pick}: activation ranges per layer")
                st.plotly_chart(fig, key="activations_chart")
            else:
                st.caption(f"{pick}: the report has no per-layer ranges.")
            if rep["safety"]:
                sdf = pd.DataFrame(rep["safety"])
                st.markdown(f"**KV-cache type safety for {pick}** (measured: a type that fits but is unsafe should "
                            "not be used)")
                st.dataframe(sdf.style.map(verdict_style, subset=["verdict"]), hide_index=True, key="kv_safety_table")
            st.caption(f"Latest report{' of ' + rep['date'] if rep['date'] else ''}: {Path(rep['source']).name or '?'}")
        if meas["validation"]:
            st.subheader("Calibration residuals: predicted vs measured")
            vdf = pd.DataFrame(meas["validation"])
            if {"metric", "error_rel"} <= set(vdf.columns):
                rel = vdf.assign(abs_rel=vdf["error_rel"].abs())
                summ = rel.groupby("metric").agg(n=("abs_rel", "size"), median_abs_rel_err=("abs_rel", "median"),
                                                 p95_abs_rel_err=("abs_rel", lambda x: x.quantile(0.95)),
                                                 worst_abs_rel_err=("abs_rel", "max"))
                if "ok" in vdf:
                    summ["failures"] = vdf.groupby("metric")["ok"].apply(lambda x: int((x == False).sum()))  # noqa: E712
                st.dataframe(summ.reset_index(), hide_index=True, key="residual_summary")
            st.dataframe(vdf, hide_index=True, key="validation_table")
            if {"predicted", "measured"} <= set(vdf.columns):
                pv = vdf.dropna(subset=["predicted", "measured"])
                fig = go.Figure(go.Scatter(x=pv["measured"] / GIB, y=pv["predicted"] / GIB, mode="markers",
                                           text=pv["label"], hovertemplate="%{text}<br>measured %{x:.4f} GiB, "
                                           "predicted %{y:.4f} GiB<extra></extra>"))
                hi = float(max(pv["measured"].max(), pv["predicted"].max())) / GIB if len(pv) else 1.0
                fig.add_scatter(x=[0, hi], y=[0, hi], mode="lines", line=dict(color="grey", dash="dot"), name="exact")
                fig.update_layout(height=380, xaxis_title="measured GiB", yaxis_title="predicted GiB",
                                  showlegend=False, margin=dict(t=30, b=10))
                st.plotly_chart(fig, key="validation_chart")
        else:
            st.info("No memory measurements exist yet, so there are no calibration residuals: make them with "
                    "`planner probe memory --model <model> --context 1k,4k,16k`, then `planner calibrate` and "
                    "`planner validate`.")

for b in st.session_state.pop("_qp_bad", []):     # problems found while drawing the tabs
    alerts.warning(f"Link: {b}")
save_query_params()
