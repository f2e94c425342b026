"""Run a fixed set of CLI commands and write each one's stdout, stderr and exit status to a folder.

Used to check that a refactor changes no output: run it before and after into two folders and
`diff -r` them. Commands run from the checkout root (the README examples use its relative paths).

    python tools/cli_snapshot.py /tmp/before
"""
from __future__ import annotations

import hashlib
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

REQUIREMENTS = (ROOT / "examples" / "requirements.yaml").read_text()   # the README's example

COMMANDS = [
    "fit --device 8gb-gpu",
    "fit --device 8gb-gpu -m gemma-4-e4b -m gemma-4-26b-a4b -w q4_k_m -w qat-q4_0 -c 32k --kv-type q8_0",
    "fit --device 8gb-gpu -m gemma-4-e4b -w q4_k_m -c 32k --kv-type q8_0 --json",
    "fit --device 8gb-gpu -w all",
    "fit -d 24gb-gpu -m gemma-4-31b -w q4_k_m -c 128k --runtime vllm",
    "fit -d h100-80gb -m gemma-4-26b-a4b -w fp8 -c 32k --runtime vllm --max-sequences",
    "fit -d m-series-16gb -m gemma-4-12b -w mlx-4bit -c 16k --runtime mlx",
    "fit -d 24gb-gpu -m gemma-4-e2b -w bf16 -c 4k --runtime transformers --json",
    "fit -d 8gb-gpu -m gemma-3-270m -w q4_0 --kv-type q4_0",
    "fit -d 8gb-gpu -m gemma-4-e4b -w q4_k_m -c 32k --no-mmap --swa-full -s 4 --kv-unified",
    "breakdown -m gemma-4-e4b -w q4_k_m -c 32k -d m-series-16gb",
    "breakdown -m gemma-4-31b -w q4_k_m -c 32k -d 24gb-gpu --layers",
    "breakdown -m gemma-4-26b-a4b -w fp8 -c 16k -d h100-80gb --runtime vllm --json",
    "breakdown -m tests/data/gemma4-tiny/config.json -w bf16 -c 2k -d 8gb-gpu --runtime transformers",
    "check {req} --junit {tmp}/report.xml",
    "explain tests/data/logs/llama-server-gemma-4-e4b-q4_k_m.log",
    "explain tests/data/logs/llama-completion-gemma-4-e2b-q4_k_m-fitpass.log --json",
    "models",
    "devices --json",
    "formats",
    "validate",
    "fit --device 8gb-gpu -m gemma-4-e4bb",
    "fit --device 8gb-gpu -m gemma-4-e4b -c 0",
]


def main(out_dir: str) -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exe = [sys.executable, "-m", "planner"]       # this checkout's code (the working directory comes first)
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.yaml"
        req.write_text(REQUIREMENTS)
        for i, cmd in enumerate(COMMANDS):
            argv = shlex.split(cmd.format(req=req, tmp=tmp))
            r = subprocess.run(exe + argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
            text = (r.stdout + "\n--- stderr ---\n" + r.stderr + f"\n--- exit {r.returncode} ---\n")
            text = text.replace(tmp, "<tmp>")
            (out / f"{i:02d}.txt").write_text(f"$ planner {cmd}\n{text}")
            print(f"{i:02d} exit {r.returncode} {hashlib.sha256(text.encode()).hexdigest()[:12]}  planner {cmd}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "cli-snapshot"))
