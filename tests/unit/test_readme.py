"""The README lists every dead-letter reason exactly as the code documents it."""

from __future__ import annotations

from pathlib import Path

from contracts.reasons import describe_reasons

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_lists_every_dead_letter_reason() -> None:
    text = README.read_text()
    for code, meaning in describe_reasons().items():
        assert f"| `{code}` | {meaning} |" in text, f"README misses or misstates {code}"


def test_readme_starts_with_the_two_commands() -> None:
    head = README.read_text()[:600]
    assert "make demo" in head and "make test" in head
