"""Small helpers for the words the CLI and the server print."""

from __future__ import annotations


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """``"1 image"``, ``"2 images"``: a count with its noun in the right number."""
    return f"{count} {noun if count == 1 else plural_noun or noun + 's'}"
