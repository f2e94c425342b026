"""KV-cache type safety verdicts from measured activation ranges, for the presenters.

Gemma's residual stream and K/V reach values that some cache types cannot hold; `planner probe
activations` measures what each type does to a real checkpoint (overflow, attention error, KL of
the next-token distribution). A KV type that fits but was measured unsafe is flagged next to the
fit answer. Models never measured get no verdict (and the output says so only when asked).
"""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _reports() -> list[dict]:
    """Activation reports read as plain JSON, oldest first. They were schema-validated when the
    probe wrote them (and tests/test_measurements.py validates every committed file); the fit
    path reads them without jsonschema to stay fast."""
    import json

    from planner.errors import PlannerInputError
    from planner.measurement.files import measurement_files, measurement_roots

    if not any((root / "activations").is_dir() for root in measurement_roots()):
        # A verdict silently missing reads as "safe": an installation without its data must say so.
        raise PlannerInputError(f"KV-cache safety data missing: no activations/ folder in "
                                f"{', '.join(str(r) for r in measurement_roots())} (reinstall the planner, "
                                "or point PLANNER_MEASUREMENTS at a measurements folder)")
    out = []
    for p in measurement_files("activations"):
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:
            # a damaged report must not silently drop a KV-type verdict (ValueError: bad JSON or UTF-8)
            raise PlannerInputError(f"{p}: damaged activation report ({type(e).__name__}); restore it or move it "
                                    f"out of {p.parent}") from None
        if isinstance(doc, dict) and isinstance(doc.get("kv_types"), dict):
            out.append(doc)
    out.sort(key=lambda doc: str(doc.get("date", "")))
    return out


@lru_cache(maxsize=64)
def verdicts(model_name: str) -> dict[str, dict]:
    """{kv type: {verdict, kl, top1_agreement, overflow, rel_err}}, {} when never measured."""
    key = model_name.strip().lower()
    mine = [d for d in _reports()
            if key in {str(x).lower() for x in (d.get("model", {}).get("catalogue_name"), d.get("model", {}).get("id"),
                                                 d.get("model", {}).get("hf_id")) if x}]
    if not mine:
        return {}
    out = {}
    for name, r in mine[-1]["kv_types"].items():
        try:
            out[name] = {"verdict": r["verdict"], "kl": r["kl_mean"], "top1_agreement": r["top1_agreement"],
                         "overflow": r["overflow"], "rel_err": r["attn_rel_err_max"]}
        except (KeyError, TypeError):
            continue      # a broken report never breaks a fit answer
    return out


def verdict(model_name: str, kv_type: str) -> str | None:
    """'safe', 'risky', 'unsafe', or None when this KV type was never measured for the model.
    The advisor's kv_verdict: the CLI and the dashboard pass this same function, so both skip the same types."""
    return verdicts(model_name).get(kv_type, {}).get("verdict")


def flag(model_name: str, kv_type: str) -> str:
    """'' (safe or unmeasured), '?' (risky) or '!' (unsafe) to print beside a KV type."""
    v = verdict(model_name, kv_type)
    return {"unsafe": "!", "risky": "?"}.get(v, "")


def note(model_name: str, kv_type: str) -> str | None:
    v = verdicts(model_name).get(kv_type)
    if not v or v.get("verdict") == "safe":
        return None
    return (f"{kv_type} KV cache measured {v['verdict'].upper()} for {model_name}: KL {v['kl']:.3g}, "
            f"top-1 agreement {v['top1_agreement']:.1%}, overflow {v['overflow']} (planner probe activations)")
