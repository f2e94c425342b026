"""Every `$ planner ...` example in README.md is real: run as printed, it prints what the README
shows (stdout, and the one error line on exit 2), and a following `$ echo $?` shows its exit status.

The bad inputs the page names (layersbig.json, bomb.yaml, cut.log) are written here as it describes
them; `planner check requirements.yaml` runs on examples/requirements.yaml; the inspected tiny
checkpoint folder (its absolute path is in the output) is skipped. Three ways
the page may shorten an output, each still checked: a JSON output may leave keys out (every key
shown must equal the real value); a line ending in "(...)" is the start of the real line; a last
line "..." means the real output goes on; a command commented "(table row)" shows some of the real
lines, each of them exactly."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_IN_CHECKOUT = ("tiny-gemma4/",)


def write_made_up_inputs(folder: Path) -> None:
    """The files the README's bad-input examples describe, made as described."""
    config = json.loads((ROOT / "tests" / "data" / "gemma4-tiny" / "config.json").read_text())
    (config.get("text_config") or config)["num_hidden_layers"] = 1_000_000_000
    (folder / "layersbig.json").write_text(json.dumps(config))
    # "billion laughs": 9 levels of 9 aliases each = 9**9 values once expanded
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    bomb += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    (folder / "bomb.yaml").write_text("\n".join(bomb) + "\n")
    log = (ROOT / "tests" / "data" / "logs" / "llama-server-gemma-4-e4b-q4_k_m.log").read_text().splitlines()
    cut = next(i for i, ln in enumerate(log) if "compute buffer size" in ln)
    (folder / "cut.log").write_text("\n".join(log[:cut]) + "\n")


def examples() -> list[tuple[int, str, str, int | None]]:
    """(README line, command, expected output, expected exit status or None) for each example in a
    fenced block without a language tag."""
    lines = (ROOT / "README.md").read_text().splitlines()
    out, block, lang = [], None, None
    for n, ln in enumerate(lines, 1):
        if ln.startswith("```"):
            if block is None:
                block, lang = [], ln[3:].strip()
                continue
            if not lang:
                out += _commands(block)
            block = None
        elif block is not None:
            block.append((n, ln))
    return out


def _commands(block: list[tuple[int, str]]) -> list[tuple[int, str, str, int | None]]:
    starts = [i for i, (_, ln) in enumerate(block) if ln.startswith("$ ")]
    found = []
    for k, i in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(block)
        n, cmd = block[i][0], block[i][1][2:]
        want = "\n".join(ln for _, ln in block[i + 1:end])
        status = None
        if end < len(block) and block[end][1] == "$ echo $?":
            status = int(block[end + 1][1])
        if re.match(r"(COLUMNS=\d+ )?planner ", cmd):
            found.append((n, cmd, want, status))
    return found


def assert_subset(shown, real, where: str) -> None:
    if isinstance(shown, dict):
        assert isinstance(real, dict), where
        for k, v in shown.items():
            assert k in real, f"{where}: key {k!r} not in the output"
            assert_subset(v, real[k], f"{where}.{k}")
    elif isinstance(shown, list):
        assert isinstance(real, list) and len(shown) == len(real), where
        for i, (a, b) in enumerate(zip(shown, real)):
            assert_subset(a, b, f"{where}[{i}]")
    else:
        assert shown == real, f"{where}: README {shown!r}, real {real!r}"


EXAMPLES = examples()


def test_the_readme_has_examples():
    assert len(EXAMPLES) >= 25


@pytest.mark.parametrize("line, cmd, want, status", EXAMPLES, ids=[f"README:{e[0]}" for e in EXAMPLES])
def test_readme_example_is_real(line, cmd, want, status, tmp_path):
    if any(name in cmd for name in NOT_IN_CHECKOUT):
        pytest.skip("its input is made up for the page")
    args = shlex.split(cmd, comments=True)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = str(ROOT)              # this checkout's planner, wherever the package is installed
    while "=" in args[0]:
        k, v = args.pop(0).split("=", 1)
        env[k] = v
    shutil.copy(ROOT / "examples" / "requirements.yaml", tmp_path / "requirements.yaml")
    write_made_up_inputs(tmp_path)
    args = [str(ROOT / a) if (ROOT / a).is_file() and "/" in a else a for a in args[1:]]
    r = subprocess.run([sys.executable, "-m", "planner", *args], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    got = r.stdout + (r.stderr if r.returncode == 2 else "")
    got_lines = [ln.rstrip() for ln in got.strip("\n").splitlines()]
    want_lines = [ln.rstrip() for ln in want.strip("\n").splitlines()]
    if want.lstrip().startswith("{"):
        assert_subset(json.loads(want), json.loads(got), f"README line {line}")
    elif "(table row)" in cmd:
        assert want_lines and all(ln in got_lines for ln in want_lines), f"README line {line}: {cmd}"
    else:
        if want_lines and want_lines[-1] == "...":
            want_lines = want_lines[:-1]
            assert len(got_lines) > len(want_lines), f"README line {line}: {cmd}"
            got_lines = got_lines[:len(want_lines)]
        shown = [w[:-len("(...)")] if w.endswith("(...)") else w for w in want_lines]
        real = [g[:len(w)] if wl.endswith("(...)") else g for g, w, wl in zip(got_lines, shown, want_lines)]
        assert (real, len(got_lines)) == (shown, len(want_lines)), f"README line {line}: {cmd}"
    if status is not None:
        assert r.returncode == status
