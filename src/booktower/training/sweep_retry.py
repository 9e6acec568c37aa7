"""Resuming a sweep: the parameters an interrupt cut short are trained first, rather than losing a draw to Ctrl-C;
and a space the study cannot continue with is refused in words."""

from __future__ import annotations

import logging
from typing import Any

from booktower.config import ConfigError
from booktower.config.sweep import ParamSpec

log = logging.getLogger(__name__)

INTERRUPTED_ATTR = "booktower:interrupted"
"""Trial user attribute: the trial was cut short by Ctrl-C or SIGTERM (not failed by its own doing)."""
RETRY_ATTR = "booktower:retry_of"
"""Trial user attribute: the number of the interrupted trial whose parameters this one trains again."""


def queue_interrupted(study: Any, room: int, space: dict[str, ParamSpec]) -> None:
    """Queue the parameters of trials an interrupt cut short (at most `room` of them), where they still lie in the
    search space: a resume may narrow it (`sweep.*` may change), and a value outside it is no longer asked for."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_ATTR) for t in trials}
    cut = [t for t in trials if t.state.name == "FAIL" and t.user_attrs.get(INTERRUPTED_ATTR)
           and t.number not in retried and t.params]
    for trial in cut[:room]:
        if not in_space(trial.params, space):
            log.info("trial %d was interrupted, but its parameters lie outside the search space now: not retried",
                     trial.number)
            continue
        study.enqueue_trial(trial.params, user_attrs={RETRY_ATTR: trial.number})
        log.info("trial %d was interrupted: its parameters are trained again first", trial.number)


def in_space(params: dict[str, Any], space: dict[str, ParamSpec]) -> bool:
    """The same keys as `space`, each value one it may draw."""
    if set(params) != set(space):
        return False
    for key, spec in space.items():
        value = params[key]
        if spec.type == "categorical":
            if value not in spec.choices:
                return False
        elif not float(spec.low) <= float(value) <= float(spec.high):
            return False
    return True


def check_same_choices(study: Any, study_name: str, space: dict[str, ParamSpec]) -> None:
    """Optuna keeps a categorical's choices for the whole study (a resume may narrow a range, not a list of
    choices): refused here before the data is prepared, rather than by Optuna's error at the first draw."""
    drawn: dict[str, tuple[Any, ...]] = {}
    for trial in study.get_trials(deepcopy=False):
        for key, distribution in trial.distributions.items():
            if hasattr(distribution, "choices"):
                drawn.setdefault(key, tuple(distribution.choices))
    for key, choices in drawn.items():
        spec = space.get(key)
        if spec is not None and spec.type == "categorical" and tuple(spec.choices) != choices:
            raise ConfigError(f"sweep.space.{key}: study {study_name!r} draws it from {list(choices)}, and one study "
                              f"keeps a categorical's choices; this config gives {list(spec.choices)}. Fix: give the "
                              "same choices, or start a new study (--study NAME) for the new ones")
