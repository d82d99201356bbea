"""Small helpers for the words the CLI and the server print."""

from __future__ import annotations


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """``"1 image"``, ``"2 images"``: a count with its noun in the right number."""
    return f"{count} {noun if count == 1 else plural_noun or noun + 's'}"


def clock(seconds: float) -> str:
    """A time in a video as ``mm:ss.s`` (``"01:04.5"``; minutes go past 59 for long videos)."""
    minutes, tenths = divmod(round(float(seconds) * 10), 600)
    return f"{minutes:02d}:{tenths / 10:04.1f}"
