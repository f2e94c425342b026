"""`planner check`: a requirement matrix with JUnit output, as a CI step runs it."""
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REQS = (Path(__file__).resolve().parents[1] / "examples" / "requirements.yaml").read_text() + """\
  - name: 31B long context on a 24 GB card
    device: rtx-4090
    model: gemma-4-31b
    weights: q4_k_m
    context: 256k
    sequences: 2
"""


def run(*args):
    p = subprocess.run([sys.executable, "-m", "planner.presenters.cli", *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def test_check_exit_codes_and_junit(tmp_path):
    req = tmp_path / "req.yaml"
    req.write_text(REQS)
    junit = tmp_path / "report.xml"
    rc, out, err = run("check", str(req), "--junit", str(junit))
    # the 31B at 2 x 256k needs two full 256k caches: 2 x 10 layers x 8 KiB x 262144 = 40 GiB of KV alone
    assert rc == 1, err
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == ["phone chat", "laptop 32k", "31B long context on a 24 GB card"]
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == ["31B long context on a 24 GB card"]
    assert root.find("testsuite").get("failures") == "1"
    assert "2/3 requirements fit" in out


def test_check_passes_when_all_fit(tmp_path):
    req = tmp_path / "req.yaml"
    req.write_text(REQS.split("  - name: 31B")[0])
    assert run("check", str(req))[0] == 0


def test_unknown_field_is_named(tmp_path):
    req = tmp_path / "req.yaml"
    req.write_text("- device: 8gb-gpu\n  model: gemma-4-e2b\n  weights: q4_0\n  contxt: 8k\n")
    rc, _, err = run("check", str(req))
    assert rc == 2 and "unknown field 'contxt'" in err and "requirement 1" in err


def test_bad_junit_path_keeps_old_report(tmp_path):
    req = tmp_path / "req.yaml"
    req.write_text(REQS.split("  - name: 31B")[0])
    rc, _, err = run("check", str(req), "--junit", str(tmp_path / "missing-dir" / "r.xml"))
    assert rc == 2 and "cannot write" in err
