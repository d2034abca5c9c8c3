#!/usr/bin/env python3
"""Writes the values table of charts/polaroid/README.md from values.yaml: every key,
its default and the comment above it. `--check` exits 1 when the README is stale
(scripts/chart-check.sh runs it)."""

from __future__ import annotations

import json
import pathlib
import re
import sys

CHART = pathlib.Path(__file__).resolve().parents[1] / "charts" / "polaroid"
BEGIN, END = "<!-- values:begin -->", "<!-- values:end -->"


def rows() -> list[tuple[str, str, str]]:
    """(dotted key, default, description) for each key of values.yaml, in file order.
    Maps with no comment of their own inside are listed whole."""
    import yaml

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    lines = (CHART / "values.yaml").read_text().splitlines()
    out: list[tuple[str, str, str]] = []
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            comment = []
            continue
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"^( *)([A-Za-z0-9_.-]+):(.*)$", line)
        if not match:
            continue  # list items and continuation lines
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [k for _, k in stack] + [key]
        stack.append((indent, key))
        value = values
        for part in path:
            value = value[part]
        leaf = not isinstance(value, dict) or not value or rest.startswith("{")
        if leaf:
            out.append((".".join(path), json.dumps(value), " ".join(comment)))
        elif comment:
            out.append((".".join(path), "", " ".join(comment)))
        comment = []
    return out


def table() -> str:
    lines = ["| key | default | description |", "|---|---|---|"]
    for key, default, text in rows():
        default = f"`{default}`" if default else ""
        lines.append(f"| `{key}` | {default.replace('|', '&#124;')} | {text.replace('|', '&#124;')} |")
    return "\n".join(lines)


def main() -> int:
    readme = CHART / "README.md"
    text = readme.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    fresh = text[:start] + "\n" + table() + "\n" + text[end:]
    if "--check" in sys.argv:
        if fresh != text:
            print("charts/polaroid/README.md is stale: run scripts/chart-readme.py")
            return 1
        return 0
    readme.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
