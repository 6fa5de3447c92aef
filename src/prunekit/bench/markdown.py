"""The header every benchmark's Markdown starts with: what was run, where, and how to read it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def commit_label(machine: Mapping[str, Any]) -> str:
    """The commit a result came from, "+ uncommitted changes" when the checkout was dirty."""
    commit = machine.get("git_commit", "?")
    return f"{commit} + uncommitted changes" if machine.get("git_dirty") else str(commit)


def bench_header(title: str, command: str, machine: Mapping[str, Any], *notes: str) -> list[str]:
    """Lines: title, the exact command, the machine (CPU, cores, torch, python, commit), notes."""
    return [
        f"# {title}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine.get('cpu', 'unknown')}, {machine.get('cores', '?')} cores, "
        f"torch {machine.get('torch', '?')}, python {machine.get('python', '?')}, "
        f"commit {commit_label(machine)}  ",
        *notes,
        "",
    ]
