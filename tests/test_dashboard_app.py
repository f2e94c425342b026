"""The dashboard driven through streamlit's AppTest: the numbers it shows are the planner's.

Every expected figure here is computed with the planner API (planner.planning.solver.evaluate,
planner.planning.grid.max_context_matrix, planner.planning.throughput.decode_upper_bound, planner.presenters.report) for
the same inputs the widgets were set to.
"""
from __future__ import annotations

import json
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from dashboard import compute as C  # noqa: E402
from dashboard.uploads import model_from_upload  # noqa: E402
from planner.model.resolve import load_profile  # noqa: E402
from planner.resources import profiles_dir  # noqa: E402
from planner.readers.devices import get_device  # noqa: E402
from planner.errors import PlannerInputError  # noqa: E402
from planner.planning.grid import max_context_matrix  # noqa: E402
from planner.runtimes.request import Plan  # noqa: E402
from planner.presenters.report import result_dict  # noqa: E402
from planner.planning.solver import UNIFIED_KINDS, evaluate  # noqa: E402
from planner.planning.throughput import decode_upper_bound  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
GIB = 1 << 30
MIB = 1 << 20
HAVE_LLAMACPP = (ROOT / "planner" / "runtimes" / "llamacpp.py").exists() and "llama.cpp" in C.available_runtimes()


def app(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at.run()


def no_failure(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def results(at: AppTest):
    """The results table (in the lazy "All numbers" expander: opened here if it is closed)."""
    tables = [d.value for d in at.dataframe if "needed GiB" in d.value.columns]
    if not tables:
        at.session_state["numbers"] = True
        at.run()
        tables = [d.value for d in at.dataframe if "needed GiB" in d.value.columns]
    return tables[0]


class _Cards(HTMLParser):
    """Reads the verdict cards (dashboard/cards.py) back from the page's HTML: each card's data-
    attributes and the text of its marked fields (class pl-<field>)."""

    FIELDS = ("context", "headroom", "needed", "budget", "maxctx", "tok", "why")

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict] = []
        self.field: str | None = None
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if "pl-card" in classes:
            self.cards.append({k[5:]: v for k, v in a.items() if k.startswith("data-")} | {"text": ""})
        for f in self.FIELDS:
            if f"pl-{f}" in classes:
                self.field, self.depth = f, 0
                self.cards[-1][f] = ""
        if self.field:
            self.depth += 1

    def handle_endtag(self, tag):
        if self.field:
            self.depth -= 1
            if self.depth == 0:
                self.field = None

    def handle_data(self, data):
        if self.cards:
            self.cards[-1]["text"] += data
            if self.field:
                self.cards[-1][self.field] += data


def cards(at: AppTest) -> dict[tuple[str, str, str, str, str], dict]:
    """The verdict cards, parsed: (device, model, weights, kv, runtime) -> the card's fields."""
    parser = _Cards()
    for h in at.get("html"):
        parser.feed(h.proto.body)
    out = {}
    for c in parser.cards:
        c["max_context"] = c.pop("maxctx")
        out[(c["device"], c["model"], c["weights"], c["kv"], c["runtime"])] = c
    return out


def expected_card(r, bound) -> dict:
    """What a card must say for a FitResult, written from the definitions (not from dashboard.decide)."""
    pct = 100.0 * r.headroom / r.budget
    verdict = "does not fit" if not r.fits else ("tight" if pct < 10.0 else "fits")
    mc = "—" if r.max_context == 0 else f"{r.max_context:,}" + (
        " (model maximum)" if r.max_context == r.model.max_context else "")
    return {"verdict": verdict, "context": f"{r.context:,}", "headroom": f"{r.headroom / GIB:+,.2f} GiB ({pct:+.1f} %)",
            "needed": f"{r.needed / GIB:,.2f}", "budget": f"{r.budget / GIB:,.2f}", "max_context": mc,
            "tok": f"{bound.tokens_per_s_per_sequence:,.0f}"}


def check_card(card: dict, r, bound) -> None:
    want = expected_card(r, bound)
    assert {k: card[k] for k in want} == want
    shown = {"fits": "✓ fits", "tight": "⚠ tight", "does not fit": "✗ does not fit"}[want["verdict"]]
    assert shown in card["text"]
    # the "why" line names the largest components counted against the device
    counted = sorted((c for c in r.components() if c.place == "device" or
                      (c.place == "host" and r.device.kind in UNIFIED_KINDS)), key=lambda c: -c.nbytes)
    assert card["why"].startswith(f"why: {counted[0].name} {counted[0].nbytes / GIB:,.2f} GiB")


def expected(plan: Plan, device: str, margin_mib: float = 0.0):
    dev = get_device(device)
    r = evaluate(plan, dev, int(margin_mib * MIB))
    return r, decode_upper_bound(r.model, r.context, dev.bandwidth_gbps)


def check_row(row, r, bound) -> None:
    assert row["model"] == r.model.spec.name
    assert row["runtime"] == r.model.runtime
    assert row["weights"] == r.plan.weights
    assert row["context"] == r.context
    assert row["sequences"] == r.plan.sequences
    assert bool(row["fits"]) == r.fits
    assert row["max context"] == r.max_context
    assert row["needed GiB"] == r.needed / GIB
    assert row["budget GiB"] == r.budget / GIB
    assert row["headroom GiB"] == r.headroom / GIB
    assert row["mapped GiB"] == getattr(r.totals, "mapped", 0) / GIB
    for col, val in (("device GiB", r.totals.device), ("host GiB", r.totals.host), ("weights GiB", r.totals.weights),
                     ("KV GiB", r.totals.kv), ("compute GiB", r.totals.compute), ("overhead GiB", r.totals.overhead)):
        assert row[col] == val / GIB, col
    assert row["decode tok/s per seq (upper bound)"] == pytest.approx(bound.tokens_per_s_per_sequence, rel=1e-12)
    assert row["decode tok/s all seqs (upper bound)"] == pytest.approx(bound.tokens_per_s_total, rel=1e-12)
    rk = r.model.resolved
    assert row["kv"] == (rk.kv_type_k if rk.kv_type_k == rk.kv_type_v else f"{rk.kv_type_k}/{rk.kv_type_v}")


def test_default_view_is_the_planners_answer():
    at = app()
    no_failure(at)
    assert [t.value for t in at.title] == ["Gemma memory planner"]
    assert not at.error, [e.value for e in at.error]
    runtime = at.multiselect(key="runtimes").value[0]
    if HAVE_LLAMACPP:
        assert runtime == "llama.cpp"         # the CLI's default runtime is the page's default
    weights = at.multiselect(key="weights").value[0]
    assert weights == C.DEFAULT_FORMAT[runtime]
    df = results(at)
    assert len(df) == 1
    r, bound = expected(Plan("gemma-4-e4b", weights, runtime, context=8192), "8gb-gpu")
    check_row(df.iloc[0], r, bound)
    card = cards(at)[("8gb-gpu", "gemma-4-e4b", weights, r.model.resolved.kv_type_k, runtime)]
    check_card(card, r, bound)
    # By hand: 8gb-gpu's budget is 8 GiB minus the 512 MiB driver reserve (devices.yaml) = 7.50 GiB; at 131,072
    # tokens gemma-4-e4b q4_k_m needs ~5.4 GiB on the device (3.5 GiB at 32k from `planner breakdown`, plus the
    # 4 full-attention layers' f16 cache: 2 KV heads x 512 x 2 bytes x (K+V) = 4 KiB per token per layer, 1.5 GiB
    # more for 96k tokens), so the model's own maximum, not memory, is the limit.
    assert card["budget"] == "7.50"
    assert card["max_context"] == "131,072 (model maximum)"
    assert card["verdict"] == "fits"
    # the answer comes first; the tabs are lazy: only "Why" (the default) runs, and it draws no chart
    assert len(at.get("plotly_chart")) == 0
    assert [t.label for t in at.tabs] == ["Why", "Memory chart", "Memory vs context", "Fit matrices", "A vs B",
                                          "What to change", "Measurements"]
    at.session_state["view"] = "Memory chart"
    at.run()
    assert [c.key for c in at.get("plotly_chart")] == ["bars_chart"]


def test_widgets_drive_the_numbers():
    at = app()
    at.multiselect(key="runtimes").set_value(["transformers"]).run()
    at.multiselect(key="models").set_value(["gemma-3-1b", "gemma-4-e2b"])
    at.multiselect(key="devices").set_value(["8gb-gpu", "24gb-gpu", "m-series-16gb"])
    at.multiselect(key="weights").set_value(["bf16", "nf4"])
    at.multiselect(key="kv").set_value(["f32"])
    at.select_slider(key="context").set_value(16384)
    at.number_input(key="sequences").set_value(2)
    at.session_state["margin"] = 512.0        # "More settings" is a lazy expander: its value lives under "margin"
    at.run()
    no_failure(at)
    assert not at.error, [e.value for e in at.error]
    df = results(at)
    assert len(df) == 2 * 2 * 3
    seen = set()
    for _, row in df.iterrows():
        plan = Plan(model=row["model"], weights=row["weights"], runtime="transformers", kv_type_k="f32",
                    kv_type_v="f32", context=16384, sequences=2)
        r, bound = expected(plan, row["device"], 512.0)
        check_row(row, r, bound)
        seen.add((row["model"], row["weights"], row["device"]))
    assert len(seen) == 12
    # a verdict card for every option (12 here), each the planner's answer
    got = cards(at)
    assert len(got) == 12
    for _, row in df.iterrows():
        plan = Plan(row["model"], row["weights"], "transformers", "f32", "f32", 16384, 2)
        r, bound = expected(plan, row["device"], 512.0)
        check_card(got[(row["device"], row["model"], row["weights"], "f32", "transformers")], r, bound)


def test_only_formats_and_kv_types_the_runtime_takes_are_offered():
    at = app()
    at.multiselect(key="runtimes").set_value(["mlx"]).run()
    no_failure(at)
    from planner.model.kv import RUNTIME_KV_TYPES
    from planner.model.formats import get_format
    from planner.runtimes import allowed_format_families

    fams = allowed_format_families("mlx")
    opts = at.multiselect(key="weights").options
    assert opts and all(get_format(f).family in fams for f in opts)
    assert at.multiselect(key="weights").value == ["mlx-4bit"]   # the chosen q4_k_m is not an MLX format
    assert set(at.multiselect(key="kv").options) == {"default", *RUNTIME_KV_TYPES["mlx"]}
    # the context slider: powers of two from 512 up to the model's maximum (shown as 0.5k, 1k, ...)
    from planner.model.resolve import resolve_model

    top = resolve_model("gemma-4-e4b").max_context
    assert at.select_slider(key="context").options == [C.fmt_context(c) for c in C.context_options(top)]
    assert C.context_options(top)[0] == 512 and C.context_options(top)[-1] == top


@pytest.mark.skipif(not HAVE_LLAMACPP, reason="planner/runtimes/llamacpp.py not there yet")
def test_llamacpp_kv_type_and_ubatch():
    at = app({"runtime": "llama.cpp", "model": "gemma-4-e4b", "weights": ["q4_0", "q8_0"], "kv": "q8_0",
              "ctx": "32768", "ubatch": "256", "device": ["12gb-gpu", "rtx-4090"]})
    no_failure(at)
    assert not at.error, [e.value for e in at.error]
    df = results(at)
    assert len(df) == 4
    for _, row in df.iterrows():
        plan = Plan("gemma-4-e4b", row["weights"], "llama.cpp", "q8_0", "q8_0", 32768, 1, ubatch=256)
        r, bound = expected(plan, row["device"])
        check_row(row, r, bound)


def test_every_runtime_side_by_side():
    runtimes = list(C.available_runtimes())
    at = app({"runtime": runtimes, "model": ["gemma-4-e2b", "gemma-3-4b"], "weights": ["q4_k_m", "bf16", "mlx-4bit"],
              "device": ["rtx-4090", "m-series-16gb", "android-12gb"], "ctx": "16384", "cmodel": "gemma-4-e2b"})
    no_failure(at)
    df = results(at)
    assert set(df["runtime"]) == set(runtimes)
    for _, row in df.iterrows():
        plan = Plan(row["model"], row["weights"], row["runtime"], context=16384)
        r, bound = expected(plan, row["device"])
        check_row(row, r, bound)
    # memory against context: one line per runtime x KV type the runtime allocates
    from planner.model.kv import RUNTIME_KV_TYPES

    curve = C.memory_curve("gemma-4-e2b", "q4_k_m", runtimes, "rtx-4090")
    allowed = {(rt, k) for rt in runtimes for k in RUNTIME_KV_TYPES[rt]}
    assert {(ln["runtime"], ln["kv"]) for ln in curve["lines"]} <= allowed
    assert {ln["runtime"] for ln in curve["lines"]} == set(runtimes)
    for line in curve["lines"]:
        w = line["weights"]
        plan = Plan("gemma-4-e2b", w, line["runtime"], line["kv"], line["kv"])
        assert line["max context"] == int(max_context_matrix([plan], [get_device("rtx-4090")])[0, 0])


def test_fit_matrices_are_max_context_matrix():
    at = app({"runtime": "transformers", "device": "16gb-gpu", "mdevice": "16gb-gpu", "mmodel": "gemma-3-4b",
              "model": "gemma-3-4b", "weights": "bf16", "view": "Fit matrices"})
    no_failure(at)
    tables = [d.value for d in at.dataframe]
    by_model = next(t for t in tables if "model" in t.columns and "needed GiB" not in t.columns)
    by_device = next(t for t in tables if "device" in t.columns and "needed GiB" not in t.columns)
    formats = [c for c in by_model.columns if c != "model"]
    assert "bf16" in formats
    dev = get_device("16gb-gpu")
    for _, row in by_model.iterrows():
        plans = [Plan(row["model"], f, "transformers") for f in formats]
        want = max_context_matrix(plans, [dev])[:, 0]
        assert [int(row[f]) for f in formats] == [int(w) for w in want], row["model"]
    devs = [get_device(d) for d in by_device["device"]]
    for f in formats:
        want = max_context_matrix([Plan("gemma-3-4b", f, "transformers")], devs)[0]
        assert [int(v) for v in by_device[f]] == [int(w) for w in want], f
    assert len(by_model) == len(C.catalogue_models())
    assert len(by_device) == len(C.catalogue_devices())


def test_query_params_reproduce_a_selection():
    query = {"runtime": ["transformers", "vllm"], "device": ["24gb-gpu"], "model": "gemma-4-e2b",
             "weights": "bf16", "kv": "default", "ctx": "4096", "seqs": "3", "margin": "256", "size": "20gb"}
    at = app(query)
    no_failure(at)
    assert at.multiselect(key="runtimes").value == ["transformers", "vllm"]
    assert at.multiselect(key="models").value == ["gemma-4-e2b"]
    assert at.select_slider(key="context").value == 4096
    assert at.number_input(key="sequences").value == 3
    assert at.session_state["margin"] == 256.0
    df = results(at)
    assert sorted(set(df["device"])) == ["20gb", "24gb-gpu"]
    assert sorted(set(df["runtime"])) == ["transformers", "vllm"]
    for _, row in df.iterrows():
        r, bound = expected(Plan("gemma-4-e2b", "bf16", row["runtime"], context=4096, sequences=3), row["device"], 256)
        check_row(row, r, bound)
    # the page writes the selection back into the URL ...
    qp = dict(at.query_params)
    assert qp["model"] == "gemma-4-e2b" and qp["ctx"] == "4096" and qp["seqs"] == "3"
    assert qp["runtime"] == ["transformers", "vllm"]
    # ... a widget change updates it ...
    at.select_slider(key="context").set_value(8192).run()
    qp = dict(at.query_params)
    assert qp["ctx"] == "8192"
    # ... and that URL, opened fresh, shows the same table
    again = app(qp)
    no_failure(again)
    a, b = results(at), results(again)
    assert a.equals(b)


def test_bad_url_values_are_reported_not_raised():
    at = app({"ctx": "lots", "model": ["no-such-model", "gemma-4-e2bb"], "size": "3 potatoes", "weights": "q4_k_mm",
              "margin": "-5", "upload": "0123456789abcdef"})
    no_failure(at)
    warnings = [w.value for w in at.warning]
    assert any("ctx=lots" in w for w in warnings), warnings
    assert any("model=no-such-model" in w and "not a choice" in w for w in warnings), warnings
    assert any("model=gemma-4-e2bb" in w and "closest: gemma-4-e2b" in w for w in warnings), warnings
    assert any("weights=q4_k_mm" in w and "closest: q4_k_m" in w for w in warnings), warnings
    assert any("margin=-5" in w for w in warnings), warnings
    assert any("upload=0123456789abcdef" in w and "upload the file again" in w for w in warnings), warnings
    errs = [e.value for e in at.sidebar.error]
    assert any("3 potatoes" in e for e in errs), errs
    assert not any("--" in e for e in errs + warnings), "UI messages must not name CLI flags"
    # a value snapped to the slider is reported too
    at = app({"ctx": "5000"})
    assert any("ctx=5000" in w.value and "4,096" in w.value for w in at.warning), [w.value for w in at.warning]


def test_invalid_model_path_shows_an_error_not_a_traceback(tmp_path):
    missing = tmp_path / "nowhere" / "config.json"
    at = app({"model_path": str(missing)})
    no_failure(at)
    errors = [e.value for e in at.error]
    assert any("file not found" in e for e in errors), errors
    assert all("Traceback" not in e for e in errors)
    bad = tmp_path / "broken" / "config.json"
    bad.parent.mkdir()
    bad.write_text('{"num_hidden_layers": 4,')
    at = app({"model_path": str(bad)})
    no_failure(at)
    assert any("malformed JSON" in e.value for e in at.error), [e.value for e in at.error]
    # the rest of the page still works with the catalogue model
    assert len(results(at)) >= 1


def test_model_path_to_a_config_json_is_evaluated(tmp_path):
    cfg = load_profile("gemma-3-1b").config
    folder = tmp_path / "my-gemma"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    at = app({"model_path": str(folder / "config.json"), "model": "gemma-3-1b", "runtime": "transformers",
              "weights": "bf16"})
    no_failure(at)
    assert not at.error, [e.value for e in at.error]
    df = results(at)
    row = df[df["model"] == "my-gemma"].iloc[0]
    r, bound = expected(Plan(str(folder / "config.json"), "bf16", "transformers", context=8192), "8gb-gpu")
    check_row(row, r, bound)


# ---------------------------------------------------------------------------------------------
# Uploads


def test_model_from_upload_reads_a_config_json():
    cfg = json.dumps(load_profile("gemma-3-270m").config).encode()
    path, spec = model_from_upload(cfg, "tiny-gemma.json")
    assert spec.name == "tiny-gemma"
    assert Path(path).read_bytes() == cfg
    r = evaluate(Plan(path, "bf16", "transformers", context=4096), get_device("8gb-gpu"))
    assert r.needed > 0


@pytest.mark.parametrize("data,name,fragment", [
    (b"{not json", "config.json", "malformed JSON"),
    (b"{}", "config.json", "missing field"),
    (b"GGUF\x03\x00\x00\x00", "model.gguf", "truncated GGUF"),
    (b"hello", "notes.txt", "not a Hugging Face config.json or a GGUF file"),
    (b"", "config.json", "empty"),
])
def test_model_from_upload_errors_are_one_line(data, name, fragment):
    with pytest.raises(PlannerInputError) as e:
        model_from_upload(data, name)
    msg = str(e.value)
    assert fragment in msg
    assert "\n" not in msg and "planner-dashboard-uploads" not in msg   # the user's file name, not a temp path
    assert msg.startswith(name)


def test_gguf_header_upload(gemma3_270m_gguf):
    data = gemma3_270m_gguf.read_bytes()
    path, spec = model_from_upload(data[: 16 * MIB], "gemma-3-270m-header.gguf")
    from planner.model.gguf_spec import load_gguf

    full = load_gguf(gemma3_270m_gguf)
    assert (spec.n_layers, spec.hidden_size, spec.max_context) == (full.n_layers, full.hidden_size, full.max_context)
    plan = Plan(path, "q4_k_m", "transformers", context=2048)
    assert evaluate(plan, get_device("8gb-gpu")).needed == evaluate(
        Plan(str(gemma3_270m_gguf), "q4_k_m", "transformers", context=2048), get_device("8gb-gpu")).needed


def test_upload_widget_errors_and_success():
    at = app({"runtime": "transformers", "weights": "bf16"})
    at.sidebar.file_uploader[0].upload("broken.json", b'{"model_type": "gemma3_text",', "application/json")
    at.run()
    no_failure(at)
    assert any("broken.json" in e.value and "malformed JSON" in e.value for e in at.error), [e.value for e in at.error]
    cfg = json.dumps(load_profile("gemma-3-270m").config).encode()
    at.sidebar.file_uploader[0].upload("uploaded-270m.json", cfg, "application/json")
    at.run()
    no_failure(at)
    assert not at.error, [e.value for e in at.error]
    df = results(at)
    row = df[df["model"] == "uploaded-270m"].iloc[0]
    path, _ = model_from_upload(cfg, "uploaded-270m.json")
    r, bound = expected(Plan(path, "bf16", "transformers", context=8192), "8gb-gpu")
    check_row(row, r, bound)


# ---------------------------------------------------------------------------------------------
# Exports and measurements


def test_json_export_is_the_report_schema():
    t = C.evaluate_table(["gemma-3-1b"], ["bf16"], ["transformers"], ["default"], ["8gb-gpu"], 4096)
    out = C.fit_json(t["results"])
    assert out["schema"] == "planner.fit/1"
    want = result_dict(evaluate(Plan("gemma-3-1b", "bf16", "transformers", context=4096), get_device("8gb-gpu")))
    got = dict(out["results"][0])
    bound = got.pop("decode_upper_bound")
    assert got == want
    assert bound["tokens_per_s_per_sequence"] > 0 and "upper bound" in bound["note"]
    assert sum(v for v in C.segments(got).values()) == want["bytes"]["total"]
    json.dumps(out)


def test_bars_stack_exactly_what_the_solver_counts():
    """The left stack of each bar (counted against the budget) sums to FitResult.needed, on discrete
    GPUs, unified memory, phones and CPUs, for every runtime; both stacks together are every byte."""
    devices = ["8gb-gpu", "m-series-16gb", "android-12gb", "cpu-32gb", "jetson-orin-nano-8gb"]
    runtimes = list(C.available_runtimes())
    t = C.evaluate_table(["gemma-4-e4b", "gemma-3-1b"], ["q4_k_m", "bf16", "mlx-4bit"], runtimes, ["default"],
                         devices, 8192)
    assert not [m for m in t["messages"] if m[0] == "error"], t["messages"]
    assert len(t["bars"]) == len(t["rows"]) == len(t["results"]) > 0
    for bar, res in zip(t["bars"], t["results"]):
        assert sum(bar["counted"].values()) == bar["needed"], bar["label"]
        assert sum(bar["counted"].values()) + sum(bar["aside"].values()) == res["bytes"]["total"], bar["label"]
        assert bar["headroom"] == res["headroom"] and bar["budget"] == res["budget"]


def test_measurements_section_is_plain_when_there_are_none():
    at = app({"view": "Measurements"})
    no_failure(at)
    from dashboard.measurements import load_measurements

    meas = load_measurements()
    infos = " ".join(i.value for i in at.info)
    if not meas["activations"]:
        assert "No activation measurements exist yet" in infos and "planner probe activations" in infos
    else:
        assert any("KV-cache type safety" in m.value for m in at.markdown) or at.get("plotly_chart")
    if not meas["validation"]:
        assert "planner probe memory" in infos


def test_profiles_dir_is_the_repository_one():
    # the page and the tests read the same catalogue
    assert profiles_dir().resolve() == (ROOT / "profiles").resolve()


def test_measurement_display_with_a_report(monkeypatch):
    """The display path for measurements, fed a report in the shape planner.measurements returns
    (activation probe: model, kv_types with verdicts, per-layer ranges; validation rows). The
    figures are made up: this checks the page shows them and flags a chosen unsafe KV type."""
    import streamlit as st

    import dashboard.measurements as M

    report = {"model": {"id": "google/gemma-4-e4b", "catalogue_name": "gemma-4-e4b", "hf_id": None},
              "date": "2026-01-01T00:00:00Z", "_path": "/x/measurements/activations/run.json",
              "layers": [{"layer": i, "k": {"max_abs": 10.0 + i}, "v": {"max_abs": 3.0},
                          "residual": {"max_abs": 1000.0 * (i + 1)}} for i in range(4)],
              "kv_types": {"f16": {"verdict": "unsafe", "kl_mean": 0.5, "top1_agreement": 0.7, "overflow": 12,
                                   "attn_rel_err_max": 1.0},
                           "q8_0": {"verdict": "safe", "kl_mean": 1e-4, "top1_agreement": 1.0, "overflow": 0,
                                    "attn_rel_err_max": 0.01}}}
    rows = [{"file": "m.json", "model": "gemma-3-270m", "device": "cpu", "dtype": "bf16", "sequences": 1,
             "context": 1024, "slice": None, "metric": "peak", "measured": 100 * MIB, "predicted": 103 * MIB,
             "error_bytes": 3 * MIB, "error_rel": 0.03, "tolerance": 0.05, "ok": True, "note": ""}]
    fake = {"activations": [M.normalise_activation(report)], "validation": [M.normalise_validation(r) for r in rows],
            "error": None}
    monkeypatch.setattr(M, "load_measurements", lambda: fake)
    st.cache_data.clear()
    try:
        at = app({"kv": "f16", "view": "Measurements"})
        no_failure(at)
        df = results(at)
        assert list(df["KV safety (measured)"]) == ["unsafe"] * len(df)
        assert any("measured **unsafe**" in e.value for e in at.error)
        assert len(at.get("plotly_chart")) == 2          # the Measurements tab: activation ranges, predicted vs measured
        summary = next(d.value for d in at.dataframe if "median_abs_rel_err" in getattr(d.value, "columns", []))
        assert summary.iloc[0]["metric"] == "peak" and summary.iloc[0]["failures"] == 0
    finally:
        st.cache_data.clear()


def test_normalise_activation_reads_the_probe_fields():
    from dashboard.measurements import normalise_activation

    rep = normalise_activation({"model": {"id": "google/gemma-3-270m", "catalogue_name": None},
                                "kv_types": {"q4_0": {"verdict": "risky", "kl_mean": 0.01}},
                                "layers": {"max_abs_k": [1.0, 2.0], "max_abs_v": [0.5, 0.25],
                                           "max_abs_residual": [100.0, 20000.0]}})
    assert rep["model"] == "google/gemma-3-270m"
    assert rep["safety"] == [{"kv_type": "q4_0", "verdict": "risky", "kl_mean": 0.01}]
    assert rep["layers"] == [{"layer": 0, "k": 1.0, "v": 0.5, "residual": 100.0},
                             {"layer": 1, "k": 2.0, "v": 0.25, "residual": 20000.0}]


# ---------------------------------------------------------------------------------------------
# Verdicts, why, A vs B, charts


def test_every_verdict_kind_on_cards():
    """fits, tight and does not fit, each on its own card, with the planner's numbers."""
    at = app({"model": ["gemma-4-e4b", "gemma-4-31b"], "weights": ["q4_k_m", "bf16"],
              "device": ["android-12gb", "android-8gb", "rtx-4090"], "ctx": "16384"})
    no_failure(at)
    got = cards(at)
    assert len(got) == 12                     # every option, the non-fitting ones too
    seen = set()
    for (device, model, weights, kv, runtime), card in got.items():
        r, bound = expected(Plan(model, weights, runtime, context=16384), device)
        check_card(card, r, bound)
        seen.add(card["verdict"])
    assert seen == {"fits", "tight", "does not fit"}
    # android-8gb, gemma-4-e4b q4_k_m at 16k: 3.50 GiB budget (devices.yaml), the planner needs 3.28 GiB
    # (the ARM-repacked weights counted once, as CPU_REPACK: planner/runtimes/llamacpp.py resident_terms):
    # 0.22 GiB = 6.3 % headroom, under the 10 % line -> tight
    tight = got[("android-8gb", "gemma-4-e4b", "q4_k_m", "f16", "llama.cpp")]
    assert tight["verdict"] == "tight" and tight["budget"] == "3.50"
    # By hand: gemma-4-31b in bf16 is ~31e9 parameters x 2 bytes = ~58 GiB of weights alone, far over an
    # 8 GB phone's 3.50 GiB budget at any context -> "—", never 0
    none = got[("android-8gb", "gemma-4-31b", "bf16", "f16", "llama.cpp")]
    assert none["verdict"] == "does not fit" and none["max_context"] == "—" and none["budget"] == "3.50"
    assert float(none["needed"].replace(",", "")) > 31e9 * 2 / GIB


def test_tight_line_from_the_margin():
    """Pick the margin so that the headroom is exactly 5 % of the budget: budget B = U - M, headroom
    H = B - N, H = 0.05 B  =>  M = U - N / 0.95 (U usable, N needed: both from the planner). The card
    must say tight with +5.0 %; with 15 % it must say fits."""
    dev = get_device("16gb-gpu")
    need = evaluate(Plan("gemma-4-e4b", "q4_k_m", "llama.cpp", context=8192), dev).needed
    for share, verdict in ((0.05, "tight"), (0.15, "fits")):
        margin_mib = (dev.usable_bytes - need / (1 - share)) / MIB
        at = app({"device": "16gb-gpu", "margin": f"{margin_mib:.6f}"})
        no_failure(at)
        card = cards(at)[("16gb-gpu", "gemma-4-e4b", "q4_k_m", "f16", "llama.cpp")]
        assert card["verdict"] == verdict
        assert card["headroom"].endswith(f"(+{share * 100:.1f} %)")


def test_why_tab_lists_the_breakdown_components_and_the_budget_rule():
    at = app({"device": ["android-8gb", "rtx-4090"], "why": "0"})
    no_failure(at)
    r = evaluate(Plan("gemma-4-e4b", "q4_k_m", "llama.cpp", context=8192), get_device("android-8gb"))
    # every non-empty component `planner breakdown` prints, with its bytes
    want = {(c.name, c.nbytes) for c in r.components() if c.nbytes}
    rows = why_rows(at)
    assert {(x["component"], int(x["bytes"])) for x in rows} == want
    # on a phone (one shared pool) host bytes count; mapped pages never do
    for x in rows:
        assert x["counted"] == ("1" if x["where"] in ("device memory", "host RAM") else "0")
    rule = next(m.value for m in at.markdown if "**Device budget rule**" in m.value)
    dev = get_device("android-8gb")
    assert dev.usable_why.strip()[:60] in rule and "3.50 GiB usable" in rule and "Unified memory" in rule
    # the discrete GPU: host bytes are not counted
    at.selectbox(key="why_pick").set_value(1).run()
    assert {x["where"] for x in why_rows(at) if x["counted"] == "1"} == {"device memory"}
    rule = next(m.value for m in at.markdown if "**Device budget rule**" in m.value)
    assert "Discrete GPU" in rule and "rtx-4090" in rule


def why_rows(at: AppTest) -> list[dict]:
    body = next(h.proto.body for h in at.get("html") if "pl-table" in h.proto.body)
    return [{k: unescape(v) for k, v in re.findall(r'data-(\w+)="([^"]*)"', tr)}
            for tr in re.findall(r"<tr [^>]*data-component[^>]*>", body)]


def test_a_vs_b_term_by_term():
    at = app({"weights": ["q4_k_m", "q8_0"], "kv": ["f16", "q8_0"], "view": "A vs B", "a": "0", "b": "3"})
    no_failure(at)
    cmp = next(d.value for d in at.dataframe if "B − A MiB" in d.value.columns)
    ra = evaluate(Plan("gemma-4-e4b", "q4_k_m", "llama.cpp", "f16", "f16", 8192), get_device("8gb-gpu"))
    rb = evaluate(Plan("gemma-4-e4b", "q8_0", "llama.cpp", "q8_0", "q8_0", 8192), get_device("8gb-gpu"))
    terms = cmp[~cmp["component"].str.startswith("= ")]
    assert terms["A MiB"].sum() * MIB == pytest.approx(ra.totals.device + ra.totals.host + ra.totals.mapped)
    assert terms["B MiB"].sum() * MIB == pytest.approx(rb.totals.device + rb.totals.host + rb.totals.mapped)
    assert (terms["B − A MiB"] == terms["B MiB"] - terms["A MiB"]).all()
    head = cmp.set_index("component")
    assert head.loc["= headroom", "A MiB"] * MIB == ra.headroom and head.loc["= headroom", "B MiB"] * MIB == rb.headroom
    # q8_0 KV halves the f16 cache (8.5 vs 16 bits per value: 34 bytes per 32 values vs 64), so its KV terms shrink
    kv = terms[terms["component"].str.contains("KV cache")]
    assert len(kv) and (kv["B MiB"] / kv["A MiB"]).round(4).eq(round(34 / 64, 4)).all()


def test_upload_is_in_the_url_by_content_hash_with_the_files_name(tmp_path):
    from dashboard.uploads import upload_digest

    cfg = dict(load_profile("gemma-3-270m").config, _name_or_path="google/gemma-3-270m-it")
    data = json.dumps(cfg).encode()
    at = app({"runtime": "transformers", "weights": "bf16"})
    at.sidebar.file_uploader[0].upload("config.json", data, "application/json")
    at.run()
    no_failure(at)
    digest = upload_digest(data)
    assert dict(at.query_params)["upload"] == digest
    # named from the file's own `_name_or_path`, not "config"
    assert any(k[1] == "gemma-3-270m-it" for k in cards(at))
    # the link, opened in a fresh session, brings the uploaded model back
    again = app(dict(at.query_params))
    no_failure(again)
    assert not again.warning, [w.value for w in again.warning]
    assert results(again).equals(results(at))


def test_messages_use_the_pages_words():
    from dashboard.decide import ui_words

    assert ui_words("llama.cpp: text GGUF only; pass --with-encoders to add the mmproj (F16) encoders") == \
        "llama.cpp: text GGUF only; choose *Vision/audio encoders → with encoders* to add the mmproj (F16) encoders"
    assert ui_words("--kv-type-k/--kv-type-v: vLLM has one --kv-cache-dtype") == \
        "*KV-cache type*/*KV-cache type*: vLLM has one --kv-cache-dtype"      # vLLM's own flag stays
    at = app({"runtime": "llama.cpp"})
    notes = [m.value for m in at.markdown if m.value.startswith("- ")]
    assert notes and not any("--with-encoders" in n for n in notes)


def test_charts_read_well():
    from dashboard import charts as G

    curve = C.memory_curve("gemma-4-e4b", "q4_k_m", ["llama.cpp"], "8gb-gpu")
    fig = G.curve_figure(curve, 8192, {("llama.cpp", "f16")}, "q4_k_m")
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(lines) == len(curve["lines"]) >= 3
    colours = [t.line.color for t in lines]
    assert len(set(colours)) == len(colours)                         # one colour per line ...
    assert all(t.marker.color == t.line.color for t in lines)        # ... and its markers match
    stars = [t for t in fig.data if t.mode == "markers"]
    assert {s.marker.color for s in stars} <= set(colours)
    assert fig.layout.xaxis.type == "log"
    # gemma-4-e4b's maximum is 131,072 = 128k: the fixed ticks up to 64k, then the maximum itself
    assert list(fig.layout.xaxis.ticktext) == ["1k", "4k", "16k", "64k", "128k"]
    assert list(fig.layout.xaxis.tickvals) == [1024, 4096, 16384, 65536, 131072]
    # bars: vertical for a few options, horizontal for many
    few = C.evaluate_table(["gemma-4-e4b"], ["q4_k_m"], ["llama.cpp"], ["default"], ["8gb-gpu"], 8192)
    many = C.evaluate_table(["gemma-4-e4b", "gemma-4-e2b"], ["q4_k_m", "q8_0", "bf16"], ["llama.cpp"], ["default"],
                            ["8gb-gpu"], 8192)
    assert all(t.orientation != "h" for t in G.bars_figure(few["bars"]).data if t.type == "bar")
    hb = G.bars_figure(many["bars"])
    assert all(t.orientation == "h" for t in hb.data if t.type == "bar")
    assert list(hb.layout.yaxis.ticktext) == [b["label"] for b in many["bars"]]
    # matrices: a mark in every cell, the miss in the hover
    m = C.fit_matrix_models("8gb-gpu", "llama.cpp", ["q4_k_m", "bf16"], context=32768,
                            models=["gemma-4-e4b", "gemma-4-31b"])
    hm = G.matrix_figure(m, 32768).data[0]
    assert all(t.startswith(("✓", "✗")) for row in hm.text for t in row)
    r = evaluate(Plan("gemma-4-31b", "bf16", "llama.cpp", context=32768), get_device("8gb-gpu"))
    assert hm.text[1][1] == "✗ —"
    assert f"short by {(r.needed - r.budget) / GIB:.2f} GiB" in hm.customdata[1][1]
    r = evaluate(Plan("gemma-4-e4b", "q4_k_m", "llama.cpp", context=32768), get_device("8gb-gpu"))
    assert hm.text[0][0] == f"✓ {C.fmt_context(r.max_context)}"


@pytest.mark.skipif(not (ROOT / "planner" / "planning" / "advise.py").exists(), reason="advise.py (issue 11) not here")
def test_what_to_change_lists_the_advisors_plans_and_apply_loads_one():
    from planner.planning.advise import advise

    at = app({"model": "gemma-4-26b-a4b", "ctx": "32768", "view": "What to change"})
    no_failure(at)
    want = advise("8gb-gpu", ["gemma-4-26b-a4b"], context=32768, sequences=1, runtime="llama.cpp", goal="context",
                  limit=5)
    assert want, "the advisor found nothing to show"
    assert [c.value for c in at.code] == [p.command for p in want]          # the advisor's command lines, in order
    shown = [m.value for m in at.markdown if m.value.startswith("**1. ")][0]
    top = want[0]
    assert f"largest context {top.max_context:,}" in shown and f"device {top.device_bytes / GIB:,.2f} GiB" in shown
    # apply: the sidebar takes the plan, and the page's own evaluation of it agrees with the advisor
    at.button(key="apply-0").click().run()
    no_failure(at)
    assert at.session_state["view"] == "Why"
    assert at.multiselect(key="weights").value == [top.plan.weights]
    assert at.multiselect(key="kv").value == [top.plan.kv_type_k or "default"]
    assert at.session_state["ncmoe"] == top.plan.n_cpu_moe
    card = cards(at)[("8gb-gpu", "gemma-4-26b-a4b", top.plan.weights, top.plan.kv_type_k, "llama.cpp")]
    # the advisor's placement is the fewest expert layers on the host that hold the context, so the GPU is
    # near full: fits or tight (expected_card below decides which from the definition), never "does not fit"
    assert card["verdict"] in ("fits", "tight") and card["max_context"].split(" ")[0] == f"{top.max_context:,}"
    r, bound = expected(top.plan, "8gb-gpu")
    check_card(card, r, bound)
    assert dict(at.query_params)["ncmoe"] == str(top.plan.n_cpu_moe)      # the applied plan is in the URL too


@pytest.mark.skipif(not (ROOT / "planner" / "planning" / "advise.py").exists(), reason="advise.py (issue 11) not here")
def test_what_to_change_is_the_clis_advice_with_kv_safety():
    """The page lists exactly what `planner advise --json` lists (an independent presenter of the same search),
    so a KV type measured unsafe for the model (gemma-3-270m: q4_0, q4_1, iq4_nl in measurements/activations) is
    never advised; before the page passed the KV-safety verdicts, it advised q4_0 third on this device."""
    import json
    import subprocess
    import sys

    at = app({"model": "gemma-3-270m", "device": "android-8gb", "ctx": "32768", "view": "What to change"})
    no_failure(at)
    out = subprocess.run([sys.executable, "-m", "planner", "advise", "-d", "android-8gb", "-m", "gemma-3-270m",
                          "-c", "32768", "--json"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    cli = json.loads(out)["devices"]["android-8gb"]
    assert [c.value for c in at.code] == [p["command"] for p in cli]
    unsafe = {"q4_0", "q4_1", "iq4_nl"}                     # measured unsafe: measurements/activations
    assert cli and not unsafe & {p["kv_type_k"] for p in cli}
    shown = [m.value for m in at.markdown if m.value.startswith(tuple(f"**{n}. " for n in range(1, 10)))]
    assert len(shown) == len(cli)
    for p, md in zip(cli, shown):
        assert ("measured *risky*" in md) == (p["kv_verdict"] == "risky"), md


@pytest.mark.parametrize("runtime", ["llama.cpp", "vllm", "mlx"])
def test_fit_matrix_formats_are_what_planner_fit_lists(runtime):
    """The matrix's columns are the formats `planner fit` lists when no --weights is given (read from the CLI's
    own output: the weights column). The page once kept its own copy and missed vLLM's w4a16-g32."""
    import subprocess
    import sys

    at = app({"runtime": runtime, "device": "24gb-gpu", "mdevice": "24gb-gpu", "model": "gemma-4-e4b",
              "mmodel": "gemma-4-e4b", "view": "Fit matrices"})
    no_failure(at)
    by_model = next(d.value for d in at.dataframe if "model" in d.value.columns and "needed GiB" not in d.value.columns)
    out = subprocess.run([sys.executable, "-m", "planner", "fit", "-m", "gemma-4-e4b", "-d", "24gb-gpu", "-r", runtime],
                         capture_output=True, text=True, cwd=ROOT).stdout
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("gemma-4-e4b ")]
    assert rows
    assert [c for c in by_model.columns if c != "model"] == [r[1] for r in rows]


@pytest.mark.skipif(not (ROOT / "planner" / "planning" / "advise.py").exists(), reason="advise.py (issue 11) not here")
@pytest.mark.parametrize("host, flag", [("32 GB desktop", None), ("not checked", "none"), ("64 GB", "64gb")])
def test_advice_host_ram_is_the_clis_host_memory(host, flag):
    """The advice tab's Host RAM choice is `planner advise --host-memory` (default: a 32 GB desktop):
    the same commands in the same order as the CLI's own output for 26B-A4B on an 8 GB GPU at 32k."""
    import subprocess
    import sys

    at = app({"model": "gemma-4-26b-a4b", "device": "8gb-gpu", "ctx": "32768", "view": "What to change",
              "host": host})
    no_failure(at)
    cmd = [sys.executable, "-m", "planner", "advise", "-d", "8gb-gpu", "-m", "gemma-4-26b-a4b", "-c", "32768",
           "-r", "llama.cpp", "--json"] + (["--host-memory", flag] if flag else [])
    cli = json.loads(subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True).stdout)
    assert [c.value for c in at.code] == [p["command"] for p in cli["devices"]["8gb-gpu"]]
    assert dict(at.query_params)["host"] == host
    # unchecked, BF16 experts in RAM lead (44 GiB host); a 32 GB desktop cannot hold them
    assert any("BF16" in c.value for c in at.code) == (host in ("not checked", "64 GB"))
