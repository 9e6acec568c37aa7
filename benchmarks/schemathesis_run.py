"""Schemathesis against the served OpenAPI schema: no 5xx, no response that violates the schema.

    .venv/bin/python benchmarks/schemathesis_run.py --bundle BUNDLE [--max-examples 100] [--max-time 240]

Starts `booktower serve` on 127.0.0.1 in a second process and runs `schemathesis run` (from the `dev` extra) with
every check; prints schemathesis' summary and exits with its status (0 = no failure).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import running_server

# 404 for ids the fuzzer invents is the documented answer; schemathesis' positive-data check would count it.
_EXCLUDED = "positive_data_acceptance"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--max-time", type=int, default=240, help="Seconds for the whole run.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    if binary is None:
        sys.exit("schemathesis is not installed: pip install -e '.[dev]'")
    with running_server(args.bundle, workers=1) as url:
        command = [binary, "run", f"{url}/openapi.json", "--checks", "all", "--exclude-checks", _EXCLUDED,
                   "--max-examples", str(args.max_examples), "--max-time", str(args.max_time),
                   "--seed", str(args.seed), "--request-timeout", "10", "--no-color"]
        print(" ".join(command), flush=True)
        status = subprocess.run(command, check=False).returncode
    sys.exit(status)


if __name__ == "__main__":
    main()
