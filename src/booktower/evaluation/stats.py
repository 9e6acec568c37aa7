"""Uncertainty and breakdowns from the per-user table: bootstrap intervals, slices, paired comparisons."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import polars as pl

ACTIVITY_BINS = ((1, 4, "1-4"), (5, 9, "5-9"), (10, 19, "10-19"), (20, None, "20+"))
"""Slices by number of train interactions."""


def bootstrap_means(values: np.ndarray, rng: np.random.Generator, samples: int, block: int = 64) -> np.ndarray:
    """Means of `samples` resamples (with replacement) of `values`; drawn in blocks to bound memory."""
    n = len(values)
    out = np.empty(samples)
    for start in range(0, samples, block):
        size = min(block, samples - start)
        idx = rng.integers(0, n, size=(size, n))  # (size, n)
        out[start : start + size] = values[idx].mean(axis=1)
    return out


def named_rng(seed: int, *names: str) -> np.random.Generator:
    """A generator of its own for one named interval or comparison (e.g. the report's seed, "paired", "ease",
    "NDCG@10"): drawn from one shared generator in turn, an interval would change whenever another baseline
    came or went before it."""
    key = zlib.crc32("\x1f".join(names).encode("utf-8"))  # stable across processes, unlike hash()
    return np.random.default_rng([int(seed), key])


def mean_ci(values: np.ndarray, rng: np.random.Generator, samples: int = 1000, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    means = bootstrap_means(values, rng, samples)
    tail = (1.0 - level) / 2.0
    return float(values.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


def activity_label(n_train: pl.Expr) -> pl.Expr:
    expr = pl.when(n_train < 1).then(pl.lit("0"))
    for low, high, label in ACTIVITY_BINS:
        cond = n_train >= low if high is None else (n_train >= low) & (n_train <= high)
        expr = expr.when(cond).then(pl.lit(label))
    return expr.otherwise(pl.lit("?"))


def slice_table(per_user: pl.DataFrame, by: str, columns: list[str], order: list[str] | None = None) -> pl.DataFrame:
    """Mean of `columns` and user count per value of `by` (e.g. activity, popularity group, category)."""
    table = per_user.group_by(by).agg(pl.len().alias("users"), *[pl.col(c).mean() for c in columns])
    if order is not None:
        rank = {value: i for i, value in enumerate(order)}
        table = table.with_columns(pl.col(by).replace_strict(rank, default=len(rank)).alias("_o")).sort("_o").drop("_o")
    else:
        table = table.sort("users", descending=True)
    return table


def with_activity(per_user: pl.DataFrame) -> pl.DataFrame:
    return per_user.with_columns(activity_label(pl.col("n_train")).alias("activity"))


@dataclass(frozen=True)
class PairedComparison:
    """A - B on one per-user metric over the same users and held-out items."""

    metric: str
    n_users: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_bootstrap: float
    p_wilcoxon: float
    wins: int  # users where A > B
    losses: int

    def as_dict(self) -> dict[str, float | int | str]:
        return dict(self.__dict__)


def paired_compare(a: pl.DataFrame, b: pl.DataFrame, metric: str, rng: np.random.Generator,
                   samples: int = 1000) -> PairedComparison:
    """Paired bootstrap (CI of the mean difference, two-sided p) and Wilcoxon signed-rank on per-user values."""
    from scipy.stats import wilcoxon

    joined = a.select("user_id", "item_id", metric).join(
        b.select("user_id", "item_id", metric), on="user_id", how="inner", suffix="_b")
    if joined.height != a.height or joined.height != b.height:
        raise ValueError(f"the runs evaluate different users ({a.height} vs {b.height}, {joined.height} shared); "
                         "compare runs on the same split")
    if (joined["item_id"] != joined["item_id_b"]).any():
        raise ValueError("the runs hold out different items for the same users; compare runs on the same split")
    va, vb = joined[metric].to_numpy(), joined[f"{metric}_b"].to_numpy()
    diff = va - vb
    boots = bootstrap_means(diff, rng, samples)
    # two-sided p: how often the resampled mean difference lands on the other side of zero; the +1 keeps a
    # finite number of resamples from ever claiming p = 0
    tail = min(int((boots <= 0).sum()), int((boots >= 0).sum()))
    p_boot = min(1.0, 2.0 * (tail + 1) / (samples + 1))
    p_wil = float(wilcoxon(va, vb).pvalue) if np.any(diff != 0) else 1.0
    return PairedComparison(
        metric, len(diff), float(va.mean()), float(vb.mean()), float(diff.mean()),
        float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975)), p_boot, p_wil,
        int((diff > 0).sum()), int((diff < 0).sum()),
    )
