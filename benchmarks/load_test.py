"""Load test of `booktower serve`: requests/s and p50/p95/p99 latency per endpoint, then a long run at a fixed rate.

The server runs in a second process on 127.0.0.1; the client is asyncio + httpx in this one. Everything is bounded
by count and time.

1. Capacity (closed loop): `--concurrency` clients per endpoint send back-to-back requests for `--probe-seconds`;
   requests/s there is the most the server sustains for that endpoint.
2. Rate search (open loop, `--step-seconds` each): single-user requests at 20/35/50/70/85% of that capacity; the
   highest rate with no error, no drop and p99 under `--p99-budget` ms is kept (or give `--rate`).
3. Sustained (open loop): single-user recommendations at that fixed rate for `--duration` seconds; latency
   includes any queueing, and errors / timeouts / requests the client could not send on time (dropped) count.

    .venv/bin/python benchmarks/load_test.py --bundle BUNDLE [--workers 2] [--duration 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import running_server


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    seconds: float = 0.0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def row(self, name: str) -> dict[str, float | int | str]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "endpoint": name, "requests": len(self.latencies_ms), "errors": sum(self.errors.values()),
            "dropped": self.dropped, "req_per_s": round(len(self.latencies_ms) / max(self.seconds, 1e-9), 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p95_ms": round(float(np.percentile(lat, 95)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2), "max_ms": round(float(lat.max()), 2),
            "error_kinds": json.dumps(self.errors) if self.errors else "",
        }


class Requests:
    """Random but valid requests drawn from the bundle's own readers and books."""

    def __init__(self, bundle: Path, k: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.users = pl.read_parquet(bundle / "vocab" / "users.parquet").to_series().to_list()
        self.items = pl.read_parquet(bundle / "vocab" / "items.parquet").to_series().to_list()
        self.k = k

    def make(self, endpoint: str) -> tuple[str, str, dict | None]:
        if endpoint == "user":
            return "GET", f"/recommendations/{self.users[self.rng.integers(len(self.users))]}?k={self.k}", None
        if endpoint == "similar":
            return "GET", f"/items/{self.items[self.rng.integers(len(self.items))]}/similar?k={self.k}", None
        history = [self.items[i] for i in self.rng.choice(len(self.items), size=10, replace=False)]
        return "POST", "/recommendations", {"history": history, "k": self.k}


async def _one(client, request: tuple[str, str, dict | None], tally: Tally, timeout: float) -> None:
    import httpx

    method, url, body = request
    start = time.perf_counter()
    try:
        response = await client.request(method, url, json=body, timeout=timeout)
        elapsed = (time.perf_counter() - start) * 1000.0
        if response.status_code != 200:
            tally.error(f"HTTP {response.status_code}")
        else:
            tally.latencies_ms.append(elapsed)
    except httpx.TimeoutException:
        tally.error("timeout")
    except httpx.HTTPError as exc:
        tally.error(type(exc).__name__)


async def closed_loop(url: str, requests: Requests, endpoint: str, concurrency: int, seconds: float,
                      max_requests: int, timeout: float) -> Tally:
    import httpx

    tally = Tally()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits) as client:
        stop = time.perf_counter() + seconds
        count = 0

        async def worker() -> None:
            nonlocal count
            while time.perf_counter() < stop and count < max_requests:
                count += 1
                await _one(client, requests.make(endpoint), tally, timeout)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        tally.seconds = time.perf_counter() - start
    return tally


async def open_loop(url: str, requests: Requests, endpoint: str, rate: float, seconds: float, max_in_flight: int,
                    timeout: float) -> Tally:
    """Requests start on a fixed schedule; one that cannot start because `max_in_flight` are pending is dropped."""
    import httpx

    tally = Tally()
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    async with httpx.AsyncClient(base_url=url, limits=limits) as client:
        n = int(rate * seconds)
        pending: set[asyncio.Task] = set()
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(pending) >= max_in_flight:
                tally.dropped += 1
                continue
            task = asyncio.create_task(_one(client, requests.make(endpoint), tally, timeout))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        tally.seconds = time.perf_counter() - start
    return tally


def _print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    columns = ["endpoint", "requests", "errors", "dropped", "req_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms"]
    print(" | ".join(f"{c:>10}" for c in columns))
    for row in rows:
        print(" | ".join(f"{row[c]!s:>10}" for c in columns) + (f"  {row['error_kinds']}" if row["error_kinds"] else ""))


def _search_rate(url: str, requests: Requests, capacity: float, args: argparse.Namespace,
                 results: dict[str, list[dict]]) -> float:
    """The highest tried rate that kept every request, with p99 within budget (the lowest tried if none did)."""
    results["rate_search"] = []
    best = max(1.0, 0.2 * capacity)
    for share in (0.2, 0.35, 0.5, 0.7, 0.85):
        rate = max(1.0, share * capacity)
        tally = asyncio.run(open_loop(url, requests, "user", rate, args.step_seconds, 256, args.timeout))
        row = {**tally.row("user"), "target_rate": round(rate, 1)}
        results["rate_search"].append(row)
        if row["errors"] or row["dropped"] or row["p99_ms"] > args.p99_budget:
            break
        best = rate
    _print_table(f"rate search (open loop, {args.step_seconds:.0f} s per step, p99 budget {args.p99_budget:.0f} ms)",
                 results["rate_search"])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--index", default="exact")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--probe-seconds", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of the sustained single-user run.")
    parser.add_argument("--rate", type=float, default=None, help="Requests/s of the sustained run (default: searched).")
    parser.add_argument("--step-seconds", type=float, default=8.0)
    parser.add_argument("--p99-budget", type=float, default=20.0, help="ms; the rate search keeps rates under it.")
    parser.add_argument("--max-requests", type=int, default=50_000, help="Cap per closed-loop phase.")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="Write the rows as JSON here.")
    args = parser.parse_args()

    requests = Requests(args.bundle, args.k, args.seed)
    results: dict[str, list[dict]] = {"capacity": [], "sustained": []}
    with running_server(args.bundle, workers=args.workers, index=args.index) as url:
        for endpoint in ("user", "history", "similar"):
            asyncio.run(closed_loop(url, requests, endpoint, 2, 2.0, 500, args.timeout))  # warm-up
            tally = asyncio.run(closed_loop(url, requests, endpoint, args.concurrency, args.probe_seconds,
                                            args.max_requests, args.timeout))
            results["capacity"].append(tally.row(endpoint))
        _print_table(f"capacity (closed loop, {args.concurrency} clients, {args.probe_seconds:.0f} s each, "
                     f"{args.workers} workers, index={args.index})", results["capacity"])
        rate = args.rate or _search_rate(url, requests, float(results["capacity"][0]["req_per_s"]), args, results)
        tally = asyncio.run(open_loop(url, requests, "user", rate, args.duration, 256, args.timeout))
        results["sustained"].append({**tally.row("user"), "target_rate": round(rate, 1)})
        _print_table(f"sustained (open loop, single-user recommendations at {rate:.0f} req/s for {args.duration:.0f} s)",
                     results["sustained"])
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
