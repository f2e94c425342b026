"""Text files from the user and the catalogue: one bounded, decoded read, and one safe YAML loader
for catalogue profiles, devices, runtime constants, calibration and requirements.

Limits, because these files come from anywhere (a CI job, a pasted log, a downloaded config):
- a file is read only up to `max_bytes` (a stat first, then a bounded read: a FIFO or /dev/zero
  cannot make the read unbounded), and must be UTF-8 text without NUL bytes;
- YAML is parsed with the safe loader (libyaml's when present: the pure-Python scanner is most of
  a cold start) and its document is then walked once, counting nodes as aliases expand them.
  Parsing itself keeps an alias as one shared object, so a billion-laughs file parses in
  microseconds; what hangs is the first code that walks it (str(), a copy, JSON). The walk stops
  at MAX_YAML_NODES, so every later consumer sees a document of bounded size.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from planner.errors import PlannerInputError, shorten

# The largest shipped YAML (profiles/devices.yaml) is 42 KB and ~2,500 values; a requirements
# matrix of a thousand rows is ~100 KB. libyaml parses ~0.3-1 MB/s into Python objects on a
# shared 2-core machine, so 1 MiB keeps the worst parse to seconds, not minutes.
MAX_TEXT_BYTES = 1024 * 1024
MAX_YAML_NODES = 100_000


def read_text(path: Path, what: str = "file", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A text file's content: bounded in size, UTF-8, no binary data; else one clear input error."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except IsADirectoryError:
        raise PlannerInputError(f"{shorten(path, 120)}: is a directory, expected the {what}") from None
    except OSError as e:
        raise PlannerInputError(f"{shorten(path, 120)}: cannot read the {what}: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise PlannerInputError(f"{shorten(path, 120)}: the {what} is larger than {_size(max_bytes)}, more than any "
                                f"real one; not a file the planner reads")
    if b"\x00" in data:
        raise PlannerInputError(f"{shorten(path, 120)}: not a text file (binary data, NUL byte at offset {data.index(0)})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PlannerInputError(f"{shorten(path, 120)}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                                f"save the {what} as UTF-8") from None


def parse_yaml(text: str, where: str, max_nodes: int = MAX_YAML_NODES) -> object:
    """Safe-load YAML text and bound its expanded size (aliases counted each time they are used)."""
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 (safe loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        at = f"{where}:{mark.line + 1}" if mark is not None else str(where)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise PlannerInputError(f"{at}: malformed YAML: {problem}") from None
    except RecursionError:
        raise PlannerInputError(f"{where}: malformed YAML: nested too deeply") from None
    _check_size(data, where, max_nodes)
    return data


def load_yaml(path: Path, what: str = "file", max_bytes: int = MAX_TEXT_BYTES) -> object:
    return parse_yaml(read_text(path, what, max_bytes), str(path))


def _check_size(data: object, where: str, max_nodes: int) -> None:
    # iterative walk: a deeply nested document must not hit Python's recursion limit here either
    count = 0
    stack = [data]
    while stack:
        node = stack.pop()
        count += 1
        if count > max_nodes:
            raise PlannerInputError(f"{where}: YAML document expands to more than {max_nodes:,} values "
                                    f"(aliases are counted each time they are used); not a file the planner reads")
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 else f"{n // 1024} KiB"
