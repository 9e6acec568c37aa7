"""Embedding diagnostics as pure functions of embedding arrays (numpy), plus one collector for a whole run.

Alignment and uniformity follow Wang & Isola (2020) on L2-normalised vectors: alignment = E ||x - y||^2 over
positive (user, item) pairs (lower = positives closer), uniformity = log E exp(-2 ||x - y||^2) over random pairs
(lower = more spread over the sphere). Anisotropy is the mean cosine of random pairs (near 0 = isotropic).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from booktower.data.types import PreparedData


def _unit(vecs: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs / np.maximum(norms, 1e-12)


def norm_stats(vecs: np.ndarray) -> dict[str, float]:
    norms = np.linalg.norm(vecs, axis=1)
    if len(norms) == 0:
        return {}
    q = np.quantile(norms, [0.05, 0.5, 0.95])
    return {"mean": float(norms.mean()), "std": float(norms.std()), "min": float(norms.min()),
            "p05": float(q[0]), "p50": float(q[1]), "p95": float(q[2]), "max": float(norms.max())}


def _random_pairs(n: int, rng: np.random.Generator, n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    a = rng.integers(0, n, n_pairs)
    b = (a + rng.integers(1, n, n_pairs)) % n  # never the same row
    return a, b


def anisotropy(vecs: np.ndarray, rng: np.random.Generator, n_pairs: int = 20000) -> float:
    """Mean cosine similarity of random distinct pairs."""
    if len(vecs) < 2:
        return float("nan")
    unit = _unit(vecs)
    a, b = _random_pairs(len(vecs), rng, n_pairs)
    return float((unit[a] * unit[b]).sum(axis=1).mean())


def alignment(left: np.ndarray, right: np.ndarray, alpha: float = 2.0) -> float:
    """E ||x - y||^alpha over row-aligned positive pairs of normalised vectors."""
    if len(left) == 0:
        return float("nan")
    return float((np.linalg.norm(_unit(left) - _unit(right), axis=1) ** alpha).mean())


def uniformity(vecs: np.ndarray, rng: np.random.Generator, t: float = 2.0, n_pairs: int = 20000) -> float:
    """log E exp(-t ||x - y||^2) over random pairs of normalised vectors."""
    if len(vecs) < 2:
        return float("nan")
    unit = _unit(vecs)
    a, b = _random_pairs(len(vecs), rng, n_pairs)
    sq = ((unit[a] - unit[b]) ** 2).sum(axis=1)
    return float(np.log(np.exp(-t * sq).mean()))


def neighbour_overlap(vecs: np.ndarray, labels: np.ndarray, rng: np.random.Generator, k: int = 10,
                      n_queries: int = 2000) -> dict[str, float]:
    """Share of each sampled item's k cosine neighbours with the same label (-1 = unlabelled, skipped),
    beside the share expected from random neighbours (label frequencies squared)."""
    labelled = np.flatnonzero(labels >= 0)
    if len(labelled) <= k:
        return {}
    unit = _unit(vecs[labelled])
    lab = labels[labelled]
    queries = rng.choice(len(labelled), size=min(n_queries, len(labelled)), replace=False)
    sims = unit[queries] @ unit.T  # (Q, n_labelled)
    sims[np.arange(len(queries)), queries] = -np.inf  # not its own neighbour
    top = np.argpartition(-sims, k, axis=1)[:, :k]  # (Q, k)
    same = (lab[top] == lab[queries, None]).mean()
    freq = np.bincount(lab) / len(lab)
    return {"same_label_at_k": float(same), "random_expectation": float((freq ** 2).sum()), "k": k,
            "queries": len(queries)}


def mimic_cosine(augmented: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """DAT: cosine between each augmented vector (a_u) and the matched other-side vector (p_v) of a positive."""
    if len(augmented) == 0:
        return {}
    cos = (_unit(augmented) * _unit(targets)).sum(axis=1)
    return {"mean": float(cos.mean()), "std": float(cos.std()), "p50": float(np.median(cos))}


def covariance_gap(vecs: np.ndarray, categories: np.ndarray, min_items: int = 10) -> dict[str, Any]:
    """CAL's target: squared Frobenius distance between each category's covariance of item vectors and the
    largest category's (covariance computed per category over its items)."""
    counts = np.bincount(categories[categories >= 0]) if (categories >= 0).any() else np.zeros(0, dtype=np.int64)
    eligible = [c for c in range(len(counts)) if counts[c] >= min_items]
    if len(eligible) < 2:
        return {}
    major = max(eligible, key=lambda c: counts[c])
    cov = {c: np.cov(vecs[categories == c], rowvar=False) for c in eligible}
    gaps = {int(c): float(((cov[c] - cov[major]) ** 2).sum()) for c in eligible if c != major}
    return {"major": int(major), "gaps": gaps, "mean_gap": float(np.mean(list(gaps.values())))}


def label_ids(values: list[str | None]) -> np.ndarray:
    """Strings -> int ids; empty or missing strings -> -1."""
    ids: dict[str, int] = {}
    out = np.full(len(values), -1, dtype=np.int64)
    for i, value in enumerate(values):
        if value:
            out[i] = ids.setdefault(value, len(ids))
    return out


def embedding_diagnostics(
    user_vecs: np.ndarray, item_vecs: np.ndarray, data: PreparedData, rng: np.random.Generator,
    user_aug: np.ndarray | None = None, item_aug: np.ndarray | None = None, max_pairs: int = 50000,
) -> dict[str, Any]:
    """Everything above for one trained model, as a JSON-ready dict (positives = training interactions)."""
    train = data.split.train
    pick = rng.choice(len(train), size=min(max_pairs, len(train)), replace=False) if len(train) else np.zeros(0, int)
    pu, pv = train.user[pick], train.item[pick]
    out: dict[str, Any] = {
        "norms": {"user": norm_stats(user_vecs), "item": norm_stats(item_vecs)},
        "anisotropy": {"user": anisotropy(user_vecs, rng), "item": anisotropy(item_vecs, rng)},
        "alignment": alignment(user_vecs[pu], item_vecs[pv]),
        "uniformity": {"user": uniformity(user_vecs, rng), "item": uniformity(item_vecs, rng)},
        "neighbours": {},
    }
    if data.category_names:
        out["neighbours"]["category"] = neighbour_overlap(item_vecs, data.item_category, rng)
    authors = data.item_metadata["author"].to_list() if "author" in data.item_metadata.columns else []
    if any(authors):
        out["neighbours"]["author"] = neighbour_overlap(item_vecs, label_ids(authors), rng)
    if user_aug is not None or item_aug is not None:
        out["dat"] = {
            "user_mimic_cosine": mimic_cosine(user_aug[pu], item_vecs[pv]) if user_aug is not None else {},
            "item_mimic_cosine": mimic_cosine(item_aug[pv], user_vecs[pu]) if item_aug is not None else {},
        }
    if data.category_names:
        out["covariance_gap"] = covariance_gap(item_vecs, data.item_category)
    return out
