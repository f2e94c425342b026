"""Time per interaction in a real browser: `python tests/bench_dashboard_browser.py [--runs N]` (prints figures).

Not collected by pytest (bench_*). Needs Debian's `chromium`. It starts `streamlit run dashboard/app.py`,
drives headless Chromium over the DevTools protocol (the same client as tests/test_dashboard_browser.py)
and, for each sidebar interaction (device, model, format, KV type, context slider, sequences, upload),
measures from the widget event to the page settling:

- t0 is taken in the page (performance.now()) just before the event is dispatched;
- a MutationObserver on the whole document records the time of the last DOM change;
- the page has settled when Streamlit's running indicator is gone, the rerun has changed the DOM,
  and nothing has changed for QUIET_MS; the figure is (last change - t0).

Each interaction alternates between two states (add / remove a device, slider right / left, ...),
so every run is a real rerun with a real change on the page; the first round warms the planner's
caches like a user's first click would, and is reported apart. Cold load: navigation start to
the first settled page (verdict cards drawn) in a fresh browser profile with a warm server.
Target (issue 13): median under 250 ms per interaction, cold load under 3 s.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import test_dashboard_browser as B  # noqa: E402 (its Chromium/DevTools helpers)

QUIET_MS = 400
# The floor: the same sidebar widgets and one line of output, nothing computed. What an interaction
# costs Streamlit and Chromium themselves on this machine (run with --floor), to read the page's figures against.
FLOOR_APP = """
import streamlit as st
from dashboard import compute as C
st.title("Gemma memory planner")
sb = st.sidebar
rt = sb.multiselect("Runtime(s)", list(C.available_runtimes()), default=["llama.cpp"])
d = sb.multiselect("Device(s)", C.catalogue_devices(), default=["8gb-gpu"])
m = sb.multiselect("Model(s)", C.catalogue_models(), default=["gemma-4-e4b"])
up = sb.file_uploader("…or upload a config.json or GGUF", type=["json", "gguf"])
w = sb.multiselect("Weight format(s)", C.formats_for(["llama.cpp"]), default=["q4_k_m"])
k = sb.multiselect("KV-cache type(s)", C.kv_options(["llama.cpp"]), default=["default"])
c = sb.select_slider("Context (tokens)", C.context_options(131072), value=8192, format_func=C.fmt_context)
s = sb.number_input("Sequences (concurrent)", min_value=1, value=1)
st.markdown(f"largest context: {d} {m} {w} {k} {c} {s} {up.name if up else ''}")
"""
OBSERVER = """(() => {
  window.__lastMut = performance.now();
  if (!window.__obs) {
    window.__obs = new MutationObserver(() => { window.__lastMut = performance.now(); });
    window.__obs.observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
  }
  return true;
})()"""
STATE = """(() => ({
  now: performance.now(), last: window.__lastMut,
  running: !!document.querySelector('[data-testid="stStatusWidget"] button, [data-testid="stStatusWidgetRunningIcon"]'),
  cards: document.querySelectorAll('[data-testid="stMarkdownContainer"]').length,
  exception: document.querySelectorAll('[data-testid="stException"]').length,
}))()"""


def widget_js(label: str) -> str:
    """A JS expression for the sidebar widget whose label is `label`."""
    return ("Array.from(document.querySelectorAll('section[data-testid=\"stSidebar\"] [data-testid=\"stElementContainer\"]'))"
            f".find(e => (e.querySelector('label') || {{}}).textContent === {json.dumps(label)})")


class Page:
    def __init__(self, cdp: B.CDP) -> None:
        self.cdp = cdp

    def mark(self) -> float:
        return self.cdp.eval("(() => { window.__lastMut = performance.now(); window.__t0 = performance.now(); "
                             "return window.__t0; })()")

    def settle(self, t0: float, timeout: float = 30.0) -> float:
        """ms from t0 to the last DOM change, once the run is over and the page quiet."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            s = self.cdp.eval(STATE)
            if s["exception"]:
                raise RuntimeError("the page shows an exception")
            if not s["running"] and s["last"] > t0 + 1 and s["now"] - s["last"] >= QUIET_MS:
                return s["last"] - t0
            time.sleep(0.05)
        raise TimeoutError("the page did not settle")

    def key(self, key: str, code: str, vk: int) -> None:
        for kind in ("keyDown", "keyUp"):
            self.cdp.call("Input.dispatchKeyEvent", type=kind, key=key, code=code, windowsVirtualKeyCode=vk)

    # interactions -----------------------------------------------------------------------------

    def multiselect_add(self, label: str, option: str) -> float:
        self.cdp.eval(f"{widget_js(label)}.querySelector('input').focus()")
        self.cdp.call("Input.insertText", text=option)
        time.sleep(0.3)             # the option list filters as the user types; a human is slower still
        t0 = self.mark()
        self.key("Enter", "Enter", 13)
        ms = self.settle(t0)
        self.key("Escape", "Escape", 27)
        return ms

    def multiselect_remove(self, label: str, option: str) -> float:
        t0 = self.mark()
        self.cdp.eval(f"{widget_js(label)}.querySelector('button[aria-label=\"Remove {option}\"]').click()")
        return self.settle(t0)

    def slider(self, label: str, key: str) -> float:
        self.cdp.eval(f"{widget_js(label)}.querySelector('input[type=range]').focus()")
        t0 = self.mark()
        self.key(key, key, 39 if key == "ArrowRight" else 37)
        return self.settle(t0)

    def step(self, label: str, which: str) -> float:
        t0 = self.mark()
        self.cdp.eval(f"{widget_js(label)}.querySelector('[data-testid=\"stNumberInputStep{which}\"]').click()")
        return self.settle(t0)

    def upload(self, path: Path) -> float:
        doc = self.cdp.call("DOM.getDocument", depth=-1)
        node = self.cdp.call("DOM.querySelector", nodeId=doc["root"]["nodeId"],
                             selector='[data-testid="stFileUploaderDropzoneInput"]')
        t0 = self.mark()
        self.cdp.call("DOM.setFileInputFiles", files=[str(path)], nodeId=node["nodeId"])
        return self.settle(t0)


def upload_files(tmp: Path) -> list[Path]:
    from planner.model.resolve import load_profile

    out = []
    for name in ("gemma-3-270m", "gemma-3-1b"):
        p = tmp / f"my-{name}.json"
        p.write_text(json.dumps(load_profile(name).config))
        out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=8, help="measured runs per interaction (after one warm-up pair)")
    ap.add_argument("--query", default="", help="start from this URL query, e.g. 'view=Fit+matrices'")
    ap.add_argument("--app", default=str(B.APP), help="the Streamlit script (default: dashboard/app.py)")
    ap.add_argument("--floor", action="store_true", help="time the floor page instead (FLOOR_APP: the same sidebar "
                    "widgets, nothing computed)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-load measurement")
    ap.add_argument("--only", default="", help="comma-separated interactions to run (default: all)")
    args = ap.parse_args()
    if not B.CHROMIUM.exists():
        sys.exit("needs /usr/bin/chromium (Debian package chromium)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    if args.floor:
        args.app = str(tmp / "floor.py")
        Path(args.app).write_text(FLOOR_APP)
    port = B.free_port()
    env = dict(os.environ, HOME=str(tmp), PYTHONPATH=str(ROOT), STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", args.app, "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=(tmp / "streamlit.log").open("w"), stderr=subprocess.STDOUT)
    from websockets.sync.client import connect

    url = f"http://127.0.0.1:{port}/" + (f"?{args.query}" if args.query else "")
    results: dict[str, list[float]] = {}
    try:
        B.wait_http(f"http://127.0.0.1:{port}/_stcore/health", 60, server)
        # cold load: a fresh browser each time, the server warm after the first
        loads = []
        for i in range(0 if args.no_cold else 4):
            prof = tmp / f"cold-{i}"
            prof.mkdir()
            proc, ws_url = B.open_chromium(prof, 1440, 1000)
            try:
                with connect(ws_url, max_size=1 << 28) as ws:
                    cdp = B.CDP(ws)
                    cdp.call("Page.enable")
                    cdp.call("Page.navigate", url=url)
                    cdp.eval("true")
                    end = time.monotonic() + 60
                    while time.monotonic() < end:
                        s = cdp.eval("""(() => ({t: performance.now(),
                            cards: document.body.innerText.includes('largest context'),
                            running: !!document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')}))()""")
                        if s and s["cards"] and not s["running"]:
                            loads.append(s["t"])       # ms since navigation start
                            break
                        time.sleep(0.02)
            finally:
                B.stop(proc)
        if loads:
            print(f"cold load (navigation -> the verdict cards drawn), ms: first {loads[0]:.0f} "
                  f"(server's first session), then {', '.join(f'{x:.0f}' for x in loads[1:])}; "
                  f"median of the warm-server loads {statistics.median(loads[1:]):.0f}")

        prof = tmp / "interactive"
        prof.mkdir()
        proc, ws_url = B.open_chromium(prof, 1440, 1000)
        try:
            with connect(ws_url, max_size=1 << 28) as ws:
                cdp = B.CDP(ws)
                B._render(cdp, url, 1, 90)
                cdp.eval(OBSERVER)
                page = Page(cdp)
                files = upload_files(tmp)
                pairs = {
                    "device": (lambda: page.multiselect_add("Device(s)", "rtx-4090"),
                               lambda: page.multiselect_remove("Device(s)", "rtx-4090")),
                    "model": (lambda: page.multiselect_add("Model(s)", "gemma-4-e2b"),
                              lambda: page.multiselect_remove("Model(s)", "gemma-4-e2b")),
                    "format": (lambda: page.multiselect_add("Weight format(s)", "q8_0"),
                               lambda: page.multiselect_remove("Weight format(s)", "q8_0")),
                    "KV type": (lambda: page.multiselect_add("KV-cache type(s)", "q8_0"),
                                lambda: page.multiselect_remove("KV-cache type(s)", "q8_0")),
                    "context slider": (lambda: page.slider("Context (tokens)", "ArrowRight"),
                                       lambda: page.slider("Context (tokens)", "ArrowLeft")),
                    "sequences": (lambda: page.step("Sequences (concurrent)", "Up"),
                                  lambda: page.step("Sequences (concurrent)", "Down")),
                    "upload": (lambda: page.upload(files[0]), lambda: page.upload(files[1])),
                }
                warm = {}
                only = [x.strip() for x in args.only.split(",") if x.strip()]
                for name, (do, undo) in pairs.items():
                    if only and name not in only:
                        continue
                    warm[name] = [do(), undo()]
                    runs = []
                    while len(runs) < args.runs:
                        runs.append(do())
                        runs.append(undo())
                    results[name] = runs[:args.runs]
        finally:
            B.stop(proc)
    finally:
        B.stop(server)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"interaction -> page settled, ms ({args.runs} runs each after a warm-up pair; quiet window {QUIET_MS} ms "
          "not included)")
    print(f"{'interaction':<16} {'first':>7} {'median':>7} {'p90':>7} {'max':>7}")
    for name, runs in results.items():
        s = sorted(runs)
        print(f"{name:<16} {warm[name][0]:>7.0f} {statistics.median(s):>7.0f} {s[int(0.9 * (len(s) - 1))]:>7.0f} "
              f"{s[-1]:>7.0f}")


if __name__ == "__main__":
    main()
