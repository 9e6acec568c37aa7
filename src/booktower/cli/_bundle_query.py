"""What `booktower recommend --bundle` checks before the bundle is loaded: the reader flags and the serving
limits, so a wrong flag is one `error:` line naming it, not a traceback from the serving layer."""

from __future__ import annotations

from dataclasses import dataclass

from booktower.cli._errors import fail
from booktower.config.serving import ServingConfig

# A bundle is served with the default serving limits (`Recommender.from_bundle` without a config).
MAX_K: int = ServingConfig.model_fields["max_k"].default
MAX_HISTORY: int = ServingConfig.model_fields["max_history"].default


@dataclass(frozen=True)
class BundleQuery:
    """One reader to recommend for: a known `user`, or an anonymous reader's `history` of item ids."""

    label: str
    user: str | None = None
    history: list[str] | None = None


def parse_history(text: str) -> list[str]:
    """`"ID, ID,,ID"` -> the non-empty ids, in order."""
    return [part.strip() for part in text.split(",") if part.strip()]


def bundle_queries(users: list[str], history: str | None, k: int) -> list[BundleQuery]:
    """One query per distinct `--user` (in the order given), or one for `--history`; exit 2 on a bad flag."""
    if users and history is not None:
        fail("pass --user or --history, not both. Fix: --user USER_ID for a reader known to the bundle, "
             "--history ID,ID,... for an anonymous reader")
    if not users and history is None:
        fail("with --bundle pass --user USER_ID (repeatable) or --history ID,ID,...")
    if any(not user.strip() for user in users):
        fail("--user is empty. Fix: pass a reader id from the bundle (vocab/users.parquet)")
    if not 1 <= k <= MAX_K:
        fail(f"--k {k} is out of range: with --bundle k must be in [1, {MAX_K}] (the serving limit). "
             f"Fix: pass --k {MAX_K} or less")
    if history is None:
        return [BundleQuery(user, user=user) for user in dict.fromkeys(users)]
    items = parse_history(history)
    if not items:
        fail(f"--history {history!r} holds no item ids. Fix: pass ID,ID,... (comma-separated book ids)")
    if len(items) > MAX_HISTORY:
        fail(f"--history holds {len(items)} item ids; at most {MAX_HISTORY} are accepted. "
             f"Fix: pass the reader's {MAX_HISTORY} most recent books")
    return [BundleQuery("anonymous reader", history=items)]
