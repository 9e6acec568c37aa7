"""Number options checked while the command line is parsed, like the path options (`_paths`): a value out of
range (`--k 0`, `--workers -1`, `--port 70000`) is one `error:` line naming the option, the range and the
fix. Typer's own `min=`/`max=` check would print its usage panel instead, so ranged options use these."""

from __future__ import annotations

from collections.abc import Callable

import typer

from booktower.cli._errors import fail, option_name

Number = int | float


def _show(value: Number) -> str:
    """`3`, `0.5`, `-1` as the user would type them (a float option holds `3.0` for `3`)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def at_least(low: Number) -> Callable[[typer.CallbackParam, Number | None], Number | None]:
    """A callback refusing values below `low`."""
    return within(low, None)


def within(low: Number, high: Number | None) -> Callable[[typer.CallbackParam, Number | None], Number | None]:
    """A callback refusing values outside [low, high] (no upper bound when `high` is None)."""
    allowed = f"at least {_show(low)}" if high is None else f"in [{_show(low)}, {_show(high)}]"

    def check(param: typer.CallbackParam, value: Number | None) -> Number | None:
        if value is None:  # an optional option that was not given
            return value
        name = option_name(param)
        problem = f"{name} {_show(value)} is out of range: it must be {allowed}"
        if value != value:  # NaN: every comparison below is False for it
            fail(f"{name} nan is not a number. Fix: pass {name} {_show(low)} or more")
        if value < low:
            fail(f"{problem}. Fix: pass {name} {_show(low)} or more")
        if high is not None and value > high:
            fail(f"{problem}. Fix: pass {name} {_show(high)} or less")
        return value

    return check
