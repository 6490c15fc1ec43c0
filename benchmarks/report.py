"""Writing a benchmark's results: ``<name>.json`` (every figure) and ``<name>.md`` (a table to read).

``write(out_dir, name, figures, table)`` writes both; without ``table`` the Markdown lists the
top-level figures (nested ones as JSON), so every benchmark leaves a readable file beside its JSON.
"""

from __future__ import annotations

import json
import pathlib


def write(out_dir: pathlib.Path, name: str, figures: dict, table: str | None = None) -> None:
    """Writes ``out_dir/<name>.json`` and ``out_dir/<name>.md``."""
    out_dir = pathlib.Path(out_dir)
    (out_dir / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(table if table is not None else figures_table(name, figures))


def figures_table(name: str, figures: dict) -> str:
    """A two-column Markdown table of ``figures``."""
    lines = [f"# {name}", "", "| figure | value |", "| --- | --- |"]
    for key, value in figures.items():
        shown = json.dumps(value) if isinstance(value, dict | list) else value
        lines.append(f"| {key} | {str(shown).replace('|', '/')} |")
    return "\n".join(lines) + "\n"
