"""Writing and printing what `prepare` produced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from booktower.config import BooktowerConfig, dump_config
from booktower.data.prepare import prepare
from booktower.data.types import PreparedData
from booktower.utils.atomic import atomic_write_json
from booktower.utils.runinfo import write_run_info


def write_prepared_run(config: BooktowerConfig, output_dir: Path) -> PreparedData:
    """Prepare the data and record the run (config, fingerprint, seed, versions, timings) in `output_dir`."""
    data, inputs = prepare(config.data)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output_dir / "data_summary.json", data.summary)
    write_run_info(output_dir, config_yaml=dump_config(config), seed=config.seed, inputs=inputs,
                   timings={"prepare": data.summary["seconds"]})
    return data


def print_summary(summary: dict[str, Any], console: Console) -> None:
    table = Table(title="prepared data", show_header=False)
    for key in ("n_interactions", "n_users", "n_items", "n_train", "n_valid", "n_test", "seconds"):
        table.add_row(key, f"{summary.get(key):,}" if isinstance(summary.get(key), int) else str(summary.get(key)))
    for section, label in (("dropped", "dropped"), ("set_to_missing", "set to missing")):
        where = summary.get(f"{section}_where") or {}  # rows dropped, or values blanked in rows that stay
        for reason, count in (summary.get(section) or {}).items():
            table.add_row(f"{label}: {reason}", f"{count:,}" + (f" ({where[reason]})" if reason in where else ""))
    cache = summary.get("cache")
    if cache:
        done = "reused" if cache["hit"] else f"not written ({cache['error']})" if cache.get("error") else "written"
        table.add_row("cache", f"{done} {cache['path']}")
    for warning in summary.get("warnings", []):
        table.add_row("warning", warning)
    console.print(table)
