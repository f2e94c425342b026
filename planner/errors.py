"""Errors caused by the user's input: the CLI prints them as one line and exits with status 2."""
from __future__ import annotations

import difflib


class PlannerInputError(Exception):
    """Bad input: an unknown name, a malformed file, a value out of range."""


def unknown_name(kind: str, given: str, allowed: list[str] | tuple[str, ...], flag: str | None = None) -> PlannerInputError:
    close = difflib.get_close_matches(given.lower(), [a.lower() for a in allowed], n=3, cutoff=0.5)
    where = f"{flag}: " if flag else ""
    hint = f"; closest: {', '.join(close)}" if close else ""
    shown = ", ".join(allowed) if len(allowed) <= 40 else ", ".join(list(allowed)[:40]) + ", ..."
    return PlannerInputError(f"{where}unknown {kind} '{given}'{hint}; allowed: {shown}")
