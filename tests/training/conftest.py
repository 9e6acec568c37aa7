from __future__ import annotations

import pytest


@pytest.fixture
def parts_scored(monkeypatch) -> list[str]:
    """The split of every evaluation the training loop runs (its per-epoch validation), in order: what a
    test reads to show that the test split was never scored."""
    import booktower.training.trainer as trainer_module

    scored: list[str] = []
    per_epoch = trainer_module.evaluate_model

    def recording(model, data, part, *args, **kwargs):
        scored.append(part)
        return per_epoch(model, data, part, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "evaluate_model", recording)
    return scored
