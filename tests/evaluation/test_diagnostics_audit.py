"""Embedding diagnostics on constructed embeddings with known answers; the audit's structure and rates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from booktower.evaluation import diagnostics as d


def test_norms_anisotropy_uniformity():
    rng = np.random.default_rng(0)
    iso = rng.standard_normal((2000, 16))
    assert abs(d.anisotropy(iso, rng)) < 0.02
    collapsed = np.ones((100, 16)) + 0.01 * rng.standard_normal((100, 16))
    assert d.anisotropy(collapsed, rng) > 0.99
    assert d.uniformity(collapsed, rng) > d.uniformity(iso, rng)  # collapsed = less uniform (closer to 0)
    stats = d.norm_stats(np.array([[3.0, 4.0], [0.0, 1.0]]))
    assert stats["max"] == 5.0 and stats["min"] == 1.0


def test_alignment_and_mimic_cosine():
    x = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert d.alignment(x, x) == 0.0
    assert d.alignment(x, -x) == pytest.approx(4.0)
    assert d.mimic_cosine(x, 3 * x)["mean"] == pytest.approx(1.0)


def test_neighbour_overlap_finds_clustered_labels():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    centres = 10 * rng.standard_normal((4, 8))
    vecs = centres[labels] + rng.standard_normal((200, 8))
    out = d.neighbour_overlap(vecs, labels, rng, k=5, n_queries=100)
    assert out["same_label_at_k"] > 0.95 and out["random_expectation"] == pytest.approx(0.25)


def test_covariance_gap_zero_for_identical_spreads():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((100, 4))
    vecs = np.concatenate([base, base + 5.0])  # same covariance, shifted mean
    cats = np.repeat([0, 1], 100)
    cats[0] = -1
    gap = d.covariance_gap(vecs, cats)
    assert gap["gaps"][0 if gap["major"] == 1 else 1] < 0.2


def test_fake_run_files_are_json(fake_run):
    diagnostics = json.loads((fake_run / "diagnostics.json").read_text())
    assert {"norms", "anisotropy", "alignment", "uniformity", "dat"} <= set(diagnostics)
    audit = json.loads((fake_run / "audit.json").read_text())
    assert len(audit["examples"]) == 2
    example = audit["examples"][0]
    assert len(example["recommended"]) == 10 and len(example["recent_history"]) == 5
    assert 0 <= audit["rates"]["category_match"] <= 1
