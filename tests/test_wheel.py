"""The wheel carries the whole product: built, installed into a fresh virtual environment and run
from a temporary directory, every command answers exactly as the editable install in the checkout.

This is the install a user gets from `pip install .`: no checkout beside it, so profiles, the
precomputed tables, the committed measurements (KV-safety verdicts, calibration, `validate`'s data)
and the probe text must all come from inside the installed package.
"""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

REQUIREMENTS = (ROOT / "examples" / "requirements.yaml").read_text()   # the README's example

# Every command; `probe` and `measure` drive torch and a llama.cpp build (the probes / llamaserver
# extras), which the wheel's bare venv does not install: tests/test_bad_input.py checks their one-line
# message when the extra is missing.
COMMANDS = {
    "fit": ["fit", "--device", "8gb-gpu", "-m", "gemma-4-e4b", "-m", "gemma-4-26b-a4b", "-w", "q4_k_m",
            "-w", "qat-q4_0", "-c", "32k", "--kv-type", "q8_0"],
    "fit-json": ["fit", "--device", "8gb-gpu", "-m", "gemma-4-e4b", "-w", "q4_k_m", "-c", "32k", "--json"],
    # Gemma 3 270M's q4_0 KV cache was measured unsafe: the verdict comes from a shipped measurement file
    "fit-kv-safety": ["fit", "-d", "8gb-gpu", "-m", "gemma-3-270m", "-w", "q4_0", "--kv-type", "q4_0"],
    "breakdown": ["breakdown", "-m", "gemma-4-e4b", "-w", "q4_k_m", "-c", "32k", "-d", "m-series-16gb"],
    "breakdown-transformers": ["breakdown", "-m", "gemma-4-e2b", "-w", "bf16", "-c", "4k", "-d", "24gb-gpu",
                               "--runtime", "transformers"],
    "validate": ["validate"],
    "check": ["check", "requirements.yaml"],
    "version": ["--version"],
    "advise": ["advise", "-d", "8gb-gpu", "-m", "gemma-4-26b-a4b", "-c", "32k", "--limit", "3"],
    "explain": ["explain", "server.log"],              # a real llama-server b11549 log (tests/data/logs)
    "inspect": ["inspect", "gemma4-tiny"],             # a config.json folder (tests/data)
    "models": ["models"],
    "devices": ["devices"],
    "formats": ["formats"],
    "calibrate": ["calibrate", "--out", "calibration.yaml", "--force"],   # into the work folder, both times
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    pytest.importorskip("hatchling", reason="the test extra installs hatchling to build the wheel")
    tmp = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp / "dist"), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp / "dist").glob("planner-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    inst = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
                          capture_output=True, text=True, timeout=900)
    assert inst.returncode == 0, inst.stderr
    work = tmp / "work"
    work.mkdir()
    (work / "requirements.yaml").write_text(REQUIREMENTS)
    shutil.copy(ROOT / "tests" / "data" / "logs" / "llama-server-b11549-gemma-4-e2b-q4_0-cpu.log", work / "server.log")
    shutil.copytree(ROOT / "tests" / "data" / "gemma4-tiny", work / "gemma4-tiny")
    return wheel, venv, work


def _env(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLANNER_", "PYTHON"))}
    env["PLANNER_DATA_DIR"] = str(data_dir)       # an empty user data directory: only shipped data count
    env["COLUMNS"] = "200"
    return env


def _run(argv: list[str], exe: list[str], cwd: Path, data_dir: Path, checkout: bool = False) -> tuple[int, str, str]:
    env = _env(data_dir)
    if checkout:            # the source tree this test belongs to, as its editable install runs it
        env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run(exe + argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


def test_the_wheel_holds_the_shipped_data(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for must in ("planner/profiles/devices.yaml", "planner/profiles/runtimes.yaml",
                 "planner/profiles/models/gemma-4-31b.yaml", "planner/profiles/derived/weight_bytes.json",
                 "planner/measurements/calibration.yaml", "planner/measurements/schema/memory.schema.json",
                 "planner/measurement/probes/texts/pride_and_prejudice_ch1-2.txt"):
        assert must in names, must
    assert any(n.startswith("planner/measurements/activations/") for n in names)
    assert any(n.startswith("planner/measurements/memory/") for n in names)


def test_the_installed_package_is_the_wheel_not_the_checkout(installed):
    _, venv, work = installed
    r = subprocess.run([str(venv / "bin" / "python"), "-c", "import planner; print(planner.__file__)"],
                       cwd=work, env=_env(work / "data"), capture_output=True, text=True, timeout=60)
    assert Path(r.stdout.strip()).is_relative_to(venv), r.stdout + r.stderr


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_answers_as_the_editable_install(installed, name, tmp_path):
    _, venv, work = installed
    argv = COMMANDS[name]
    wheel_out = _run(argv, [str(venv / "bin" / "planner")], work, tmp_path / "wheel-data")
    editable_out = _run(argv, [sys.executable, "-m", "planner"], work, tmp_path / "editable-data", checkout=True)
    assert wheel_out == editable_out
    code, out, err = wheel_out
    assert code in (0, 1) and not err.strip(), err
    if name == "fit-kv-safety":
        assert "q4_0!" in out and "measured UNSAFE" in out      # the verdict from the shipped activation report
    if name == "validate":
        assert "calibrated" in out and "PASS" in out            # the shipped calibration and memory measurements
    if name == "explain":
        assert "all terms agree" in out and code == 0
    if name == "advise":
        assert "llama-server -m gemma-4-26b-a4b" in out and "--n-cpu-moe" in out
    if name == "calibrate":
        assert "calibrated transformers" in out and (work / "calibration.yaml").exists()
    if name == "version":
        assert out.startswith("planner ") and "llama.cpp" in out and "vllm" in out


def test_missing_shipped_measurements_are_reported_not_dropped(tmp_path):
    """An installation whose measurements are gone must not answer as if no KV type were unsafe."""
    env = _env(tmp_path / "data")
    env["PLANNER_MEASUREMENTS"] = str(tmp_path / "empty")
    env["PYTHONPATH"] = str(ROOT)
    (tmp_path / "empty").mkdir()
    r = subprocess.run([sys.executable, "-m", "planner", "fit", "-d", "8gb-gpu", "-m", "gemma-3-270m", "-w", "q4_0",
                        "--kv-type", "q4_0"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "KV-cache safety data missing" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_calibrate_never_overwrites_unasked(tmp_path):
    """`calibrate --measurements OTHER` used to rewrite the shipped calibration; now it writes to the
    user data directory, and an existing file is replaced only with --force."""
    env = _env(tmp_path / "data")
    env["PYTHONPATH"] = str(ROOT)
    out = tmp_path / "cal.yaml"
    out.write_text("# mine\n")
    argv = [sys.executable, "-m", "planner", "calibrate", "--out", str(out)]
    r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--force" in r.stderr and out.read_text() == "# mine\n"
    r = subprocess.run(argv + ["--force"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "calibrated transformers" in r.stdout and out.read_text() != "# mine\n"
    shipped = ROOT / "measurements" / "calibration.yaml"
    before = shipped.read_bytes()
    r = subprocess.run([sys.executable, "-m", "planner", "calibrate"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and str(tmp_path / "data" / "calibration.yaml") in r.stdout
    assert shipped.read_bytes() == before
