"""Console and Markdown tables of metric dictionaries."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

HEADLINE = ("HR", "NDCG", "MRR")


def headline_keys(ks: list[int], names: tuple[str, ...] = HEADLINE) -> list[str]:
    return [f"{name}@{k}" for k in ks for name in names]


def print_metric_table(rows: dict[str, dict[str, float]], ks: list[int], console: Console, title: str = "") -> None:
    keys = headline_keys(ks, ("HR", "NDCG")) + [f"coverage@{max(ks)}"]
    table = Table(title=title or None)
    table.add_column("model")
    for key in keys:
        table.add_column(key, justify="right")
    for name, metrics in rows.items():
        table.add_row(name, *(f"{metrics[k]:.4f}" if k in metrics else "-" for k in keys))
    console.print(table)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
