"""KV-cache type safety verdicts from measured activation ranges, for the presenters.

Gemma's residual stream and K/V reach values that some cache types cannot hold; `planner probe
activations` measures what each type does to a real checkpoint (overflow, attention error, KL of
the next-token distribution). A KV type that fits but was measured unsafe is flagged next to the
fit answer. Models never measured get no verdict (and the output says so only when asked).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path


def _activation_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "measurements" / "activations"


@lru_cache(maxsize=64)
def verdicts(model_name: str) -> dict[str, dict]:
    """{kv type: {verdict, kl, top1_agreement, overflow, rel_err}}, {} when never measured."""
    d = _activation_dir()
    if not d.is_dir() or not any(d.glob("*.json")):
        return {}          # keep the fast path free of the measurement loader and jsonschema
    try:
        from planner.measurements import kv_safety

        return kv_safety(model_name) or {}
    except Exception:  # noqa: BLE001 (a broken measurement never breaks a fit answer)
        return {}


def flag(model_name: str, kv_type: str) -> str:
    """'' (safe or unmeasured), '?' (risky) or '!' (unsafe) to print beside a KV type."""
    v = verdicts(model_name).get(kv_type, {}).get("verdict")
    return {"unsafe": "!", "risky": "?"}.get(v, "")


def note(model_name: str, kv_type: str) -> str | None:
    v = verdicts(model_name).get(kv_type)
    if not v or v.get("verdict") == "safe":
        return None
    return (f"{kv_type} KV cache measured {v['verdict'].upper()} for {model_name}: KL {v['kl']:.3g}, "
            f"top-1 agreement {v['top1_agreement']:.1%}, overflow {v['overflow']} (planner probe activations)")
