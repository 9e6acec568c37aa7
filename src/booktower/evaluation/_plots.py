"""The report's PNG plots (matplotlib, Agg backend). Each function draws one figure from plain tables."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from booktower.utils.atomic import atomic_path


def _save(fig, path: Path) -> Path:
    """Atomically, like every other artefact: a report re-rendered while one is open never shows half a PNG.
    The temporary name ends in .tmp, so the format is named rather than guessed from it."""
    try:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path


def training_curves(epochs: pl.DataFrame, path: Path) -> Path | None:
    """Loss columns on the left, validation metric columns (NAME@K) on the right, against the epoch."""
    if epochs.height == 0:
        return None
    x = epochs["epoch"].to_numpy() if "epoch" in epochs.columns else np.arange(epochs.height)
    numeric = [c for c, t in epochs.schema.items() if t.is_numeric() and c != "epoch"]
    losses = [c for c in numeric if "loss" in c.lower()]
    # HR and NDCG only: a curve per metric of every family would bury the two that matter
    metrics = [c for c in numeric if "@" in c and c.split("@")[0].split("_")[-1] in ("HR", "NDCG")]
    if not losses and not metrics:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for column in losses:
        axes[0].plot(x, epochs[column].to_numpy(), marker="o", ms=3, label=column)
    axes[0].set(title="training loss", xlabel="epoch")
    for column in metrics:
        axes[1].plot(x, epochs[column].to_numpy(), marker="o", ms=3, label=column)
    axes[1].set(title="validation metrics", xlabel="epoch")
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if len(x) == 1:  # one epoch: a point needs room around it, else the axis shows fractions of an epoch
            ax.set_xlim(x[0] - 1, x[0] + 1)
    return _save(fig, path)


def metric_at_k(rows: dict[str, dict[str, float]], ks: list[int], path: Path) -> Path | None:
    """HR@K, NDCG@K, MRR@K against K, one line per model."""
    if not rows or not ks:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, name in zip(axes, ("HR", "NDCG", "MRR")):
        for model, metrics in rows.items():
            values = [metrics.get(f"{name}@{k}", np.nan) for k in ks]
            ax.plot(ks, values, marker="o", label=model, lw=2.5 if model == "model" else 1.2)
        ax.set(title=f"{name}@K (test)", xlabel="K", xticks=ks)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def slice_bars(tables: dict[str, pl.DataFrame], metric: str, path: Path) -> Path | None:
    """One bar panel per slice table (first column = slice label), user counts over the bars."""
    tables = {k: v for k, v in tables.items() if v.height and metric in v.columns}
    if not tables:
        return None
    fig, axes = plt.subplots(1, len(tables), figsize=(5 * len(tables), 4), squeeze=False)
    for ax, (title, table) in zip(axes[0], tables.items()):
        labels = [str(v) for v in table[table.columns[0]].to_list()]
        bars = ax.bar(labels, table[metric].to_numpy(), color="tab:blue")
        for bar, n in zip(bars, table["users"].to_list()):
            ax.annotate(f"n={n}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=7)
        ax.set(title=f"test {metric} by {title}")
        ax.tick_params(axis="x", rotation=30 if len(labels) > 4 else 0, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def rank_histogram(ranks: np.ndarray, n_items: int, path: Path) -> Path | None:
    """Where the held-out item lands in the full ranking (log-spaced bins)."""
    ranks = ranks[ranks > 0]
    if len(ranks) == 0:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.unique(np.logspace(0, np.log10(max(n_items, 2)), 30).astype(int))
    ax.hist(ranks, bins=bins, color="tab:green")
    ax.set(xscale="log", title="full-catalogue rank of the held-out item (test)", xlabel="rank (1 = top)",
           ylabel="users")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def popularity_bars(rows: dict[str, dict[str, float]], k: int, path: Path) -> Path | None:
    """Mean popularity percentile of recommended items and coverage@K per model."""
    rows = {m: r for m, r in rows.items() if f"popularity@{k}" in r}
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = list(rows)
    axes[0].bar(names, [rows[n][f"popularity@{k}"] for n in names], color="tab:orange")
    axes[0].set(title=f"mean popularity percentile of top-{k} (100 = most popular)", ylim=(0, 100))
    axes[1].bar(names, [rows[n].get(f"coverage@{k}", np.nan) for n in names], color="tab:purple")
    axes[1].set(title=f"catalogue coverage@{k}", ylim=(0, 1))
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(axis="x", rotation=20, labelsize=8)
    return _save(fig, path)
