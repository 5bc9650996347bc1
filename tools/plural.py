"""Counts in words a person reads: "1 window", "2 windows"."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`count` and the noun, singular for exactly one (`many` for irregular plurals, else the noun and an s)."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"
