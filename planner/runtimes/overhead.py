"""Per-process overhead a runtime adds on a device (CUDA context, Metal objects, process)."""
from __future__ import annotations

from functools import lru_cache

from planner.memory import Term
from planner.runtimes.base import runtime_constants

_KIND_BACKEND = {"gpu": "cuda", "class": "cuda", "jetson": "cuda", "unified": "metal",
                 "phone": "cpu", "sbc": "cpu", "cpu": "cpu"}


def backend_of(device) -> str:
    explicit = getattr(device, "backend", None)
    if explicit:
        return explicit
    kind = getattr(device, "kind", "gpu")
    names = {getattr(device, "name", "").lower(), *(a.lower() for a in getattr(device, "aliases", ()) or ())}
    if kind == "phone" and any("iphone" in n or "ipad" in n for n in names):
        return "metal"          # llama.cpp and MLX run on Metal on Apple phones; Android apps use the CPU backend
    return _KIND_BACKEND.get(kind, "cuda")


@lru_cache(maxsize=256)
def _overhead(runtime: str, backend: str) -> tuple[Term, ...]:
    node = runtime_constants().get("overhead", {}).get(runtime, {}).get(backend)
    if not node:
        return ()
    place = "device" if backend in ("cuda", "metal") else "host"
    label = {"cuda": "CUDA context and workspace", "metal": "Metal runtime objects", "cpu": "process overhead"}[backend]
    return (Term(f"{label} ({runtime})", "overhead", place, const=int(node["value"]), detail=node.get("why", "")),)


def overhead_terms(runtime: str, device, resolved=None) -> tuple[Term, ...]:
    return _overhead(runtime, backend_of(device))
