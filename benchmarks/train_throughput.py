"""Training throughput: examples/s of the training step (batching + forward + backward + optimiser) for a config.

    .venv/bin/python benchmarks/train_throughput.py --config configs/amazon-books-2014.yaml [--set k=v ...]
        [--steps 30] [--threads 1 2] [--profile]
    .venv/bin/python benchmarks/train_throughput.py --kernels c pytorch --rounds 5   # C kernels on vs off
    .venv/bin/python benchmarks/train_throughput.py --config ... --nproc 1 2   # 1 and 2 gloo processes
    .venv/bin/python benchmarks/train_throughput.py --threads 2 --workers 2 --rounds 5 [--breakdown]   # worker threads vs one step at a time
    python3 benchmarks/train_throughput.py --device cuda --compile on off   # CUDA: compiled vs eager loss passes
    python3 benchmarks/train_throughput.py --device cuda --set training.cuda_graph=true --paths fused
        # CUDA: the step captured in a CUDA graph (what training.cuda_graph: auto trains with up to batch 8,192)

The step is the eager one unless --set training.cuda_graph=... says otherwise: this benchmark compares settings
that a captured step fixes when it is built (the in-batch path, the compile).

Prints one table row per thread count and kernel (CUDA: compile) setting (or per process count with --nproc: each process has
one thread and trains its shard through DistributedDataParallel, exactly as under torchrun). Other processes on
the machine change these numbers: report the load.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import time

import torch
import torch.multiprocessing as mp
from tqdm import tqdm

from booktower import native
from booktower.config import load_config
from booktower.data.prepare import prepare
from booktower.training.pipeline import build_model
from booktower.training.distributed import init_distributed, rank_shard, shutdown
from booktower.training.trainer import Trainer
from booktower.utils.runinfo import peak_memory_mb
from booktower.training.workers import RoundTimes


def make_step(trainer: Trainer, perm: torch.Tensor, batch_size: int):
    """One optimisation step on the k-th batch of `perm`, as the trainer's loop takes it (`Trainer.train_step`:
    DDP when distributed, the CUDA graph when the trainer built one)."""

    def step(k: int) -> None:
        trainer.train_step(perm[(k * batch_size) % (len(perm) - batch_size):][:batch_size])
    return step


def phase_times(trainer: Trainer, perm: torch.Tensor, batch_size: int, steps: int) -> dict[str, float]:
    """Mean milliseconds per step of each phase (batch, forward, backward, optimiser)."""
    totals = {"batch": 0.0, "forward": 0.0, "backward": 0.0, "optimiser": 0.0}
    for k in range(steps):
        t0 = time.perf_counter()
        batch = trainer.train.batch(perm[k * batch_size : (k + 1) * batch_size])
        t1 = time.perf_counter()
        total = sum(trainer.task.losses(batch).values())
        t2 = time.perf_counter()
        trainer.optim.zero_grad()
        total.backward()
        t3 = time.perf_counter()
        trainer.optim.step(k)
        t4 = time.perf_counter()
        for name, dt in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            totals[name] += dt * 1000 / steps
    return totals


def peak_mb(device: str) -> float:
    """Peak host RSS on the CPU; peak allocated GPU memory on CUDA."""
    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else peak_memory_mb()


def _rank_main(rank: int, world: int, port: int, args: argparse.Namespace, results) -> None:
    """One process of a --nproc measurement: the torchrun environment, one thread, its shard of the data."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    # workers=1: a rank is one process on one core (the trainer would ignore a config's workers, with a warning)
    config = load_config(args.config, ["training.progress=false", "training.workers=1", *args.overrides])
    data, _ = prepare(config.data)
    model = build_model(config, data, torch.device("cpu"))
    trainer = Trainer(model, data, config.training, config.seed, config.evaluation.ks, "/tmp/booktower-bench",
                      dist=ctx)
    perm = rank_shard(torch.randperm(trainer.train.n, generator=torch.Generator().manual_seed(0)), rank, world)
    step = make_step(trainer, perm, config.training.batch_size)
    for k in range(3):
        step(k)
    ctx.barrier()
    start = time.perf_counter()
    for k in range(3, 3 + args.steps):
        step(k)
    ctx.barrier()
    seconds = (time.perf_counter() - start) / args.steps
    if rank == 0:
        results.put((seconds, trainer.train.n, peak_memory_mb()))
    shutdown(ctx)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_processes(args: argparse.Namespace, batch_size: int) -> None:
    """Examples/s of 1..N single-thread processes (gloo, DDP); all ranks' rows count, as in the trainer."""
    print(f"{'procs':>7} {'ms/step':>9} {'examples/s':>11} {'epoch s':>8} {'peak MB/proc':>13}")
    context = mp.get_context("spawn")
    for world in args.nproc:
        results = context.SimpleQueue()
        mp.start_processes(_rank_main, args=(world, _free_port(), args, results), nprocs=world,
                           start_method="spawn")
        seconds, n_train, peak = results.get()
        rate = world * batch_size / seconds
        print(f"{world:>7} {seconds * 1000:>9.1f} {rate:>11.0f} {n_train / rate:>8.1f} {peak:>13.0f}", flush=True)


def measure_workers(args: argparse.Namespace, config, data) -> None:
    """Steps per second of the trainer's own loop (`Trainer.run_steps`) with 1 worker (torch on --threads
    threads inside each step) and with each --workers count (one core per worker), blocks of --steps steps
    taking turns --rounds times in this one process."""
    print(f"{'workers':>7} {'ms/step':>9} {'examples/s':>11} {'epoch s':>8} {'blocks ms':>13}")
    torch.set_num_threads(args.threads[0])
    batch_size = config.training.batch_size
    trainers = {}
    for workers in [1, *args.workers]:
        overrides = [*args.overrides, f"training.workers={workers}"]
        cfg = load_config(args.config, ["training.progress=false", *overrides])
        trainers[workers] = Trainer(build_model(cfg, data, torch.device("cpu")), data, cfg.training, cfg.seed,
                                    cfg.evaluation.ks, "/tmp/booktower-bench")
    perm = torch.randperm(trainers[1].train.n, generator=torch.Generator().manual_seed(0))
    batches = list(perm.split(batch_size))[: (args.rounds + 1) * args.steps]
    times: dict[int, list[float]] = {w: [] for w in trainers}
    for r in range(args.rounds + 1):  # round 0 warms up and is not counted
        block = batches[(r * args.steps) % len(batches):][: args.steps]
        for workers, trainer in trainers.items():
            start = time.perf_counter()
            trainer.run_steps(block, tqdm(disable=True))
            if r:
                times[workers].append((time.perf_counter() - start) / len(block))
            elif trainer.workers is not None:
                trainer.workers.timings = []  # from the first counted round on
    for workers, seconds in times.items():
        rate = batch_size / statistics.median(seconds)
        print(f"{workers:>7} {statistics.median(seconds) * 1000:>9.1f} {rate:>11.0f} {trainers[1].train.n / rate:>8.1f} "
              f"{min(seconds) * 1000:>6.1f}-{max(seconds) * 1000:<6.1f}", flush=True)
    if args.breakdown:
        print_round_breakdown({w: t.workers.timings for w, t in trainers.items() if t.workers is not None})


def print_round_breakdown(timings: dict[int, list[RoundTimes]]) -> None:
    """Medians over the counted rounds of where a round's time went (Workers.timings): the synchronisation's
    share is what the round takes beyond its slowest worker's gradients."""
    print(f"\nper round of W batches, medians (ms): {'workers':>7} {'gradients':>10} {'slowest':>8} {'spread':>7} "
          f"{'dense':>6} {'tables':>7} {'round':>7} {'sync %':>7}")
    for workers, rounds in timings.items():
        def median_ms(values) -> float:
            return statistics.median(values) * 1000

        slowest = [max(r.gradients) for r in rounds]
        print(f"{'':>38}{workers:>7} {median_ms([g for r in rounds for g in r.gradients]):>10.2f} "
              f"{median_ms(slowest):>8.2f} {median_ms([r.spread for r in rounds]):>7.2f} "
              f"{median_ms([r.dense for r in rounds]):>6.2f} {median_ms([t for r in rounds for t in r.tables]):>7.2f} "
              f"{median_ms([r.total for r in rounds]):>7.2f} "
              f"{100 * statistics.median([1 - s / r.total for s, r in zip(slowest, rounds)]):>6.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/amazon-books-2014.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="cuda: bf16 autocast (training.bf16) and CUDA peak memory")
    parser.add_argument("--paths", nargs="+", default=["general", "fused"], choices=["general", "fused"],
                        help="the in-batch softmax paths to time in this one run (general = before, fused = after)")
    parser.add_argument("--phases", action="store_true", help="also time batch / forward / backward / optimiser")
    parser.add_argument("--kernels", nargs="+", default=["c"], choices=["c", "pytorch"],
                        help="booktower's C kernels on (c) or off (pytorch); several are timed in turn")
    parser.add_argument("--compile", nargs="+", default=["on"], choices=["on", "off"],
                        help="CUDA: the in-batch softmax's passes through torch.compile or eager, timed in turn")
    parser.add_argument("--rounds", type=int, default=1,
                        help="blocks of --steps steps per kernel setting, taken in turn; the table gives medians")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="instead: the trainer's loop with these numbers of worker threads against 1 worker "
                             "on --threads threads (CPU), taking turns")
    parser.add_argument("--breakdown", action="store_true",
                        help="with --workers: where a round's time goes (each worker's gradients, the wait for the "
                             "slowest, the dense step, the table rows)")
    parser.add_argument("--nproc", type=int, nargs="+", default=None,
                        help="instead: time these numbers of single-thread gloo processes (CPU, DDP)")
    args = parser.parse_args()
    config = load_config(args.config, ["training.progress=false", "training.cuda_graph=false", *args.overrides])
    data, _ = prepare(config.data)
    print(f"load average {os.getloadavg()[0]:.2f}; batch {config.training.batch_size}; "
          f"{config.training.loss.main} + {config.training.negatives.sampler}({config.training.negatives.num_negatives}); "
          f"{len(data.split.train.user):,} training interactions, {data.n_items:,} items")
    if args.workers:
        measure_workers(args, config, data)
        return
    if args.nproc:
        del data
        measure_processes(args, config.training.batch_size)
        return
    print(f"{'threads':>7} {'path':>8} {'setting':>10} {'ms/step':>9} {'examples/s':>11} {'epoch s':>8} "
          f"{'blocks ms':>13} {'peak MB':>8}")
    for threads, path in [(t, p) for t in args.threads for p in args.paths]:
        torch.set_num_threads(threads)
        model = build_model(config, data, torch.device(args.device))
        trainer = Trainer(model, data, config.training, config.seed, config.evaluation.ks, "/tmp/booktower-bench")
        if trainer.graphed is not None and path != "fused":
            raise SystemExit("--paths general with training.cuda_graph: the graph captures the fused path only "
                             "(the general one has data-dependent shapes); pass --paths fused")
        trainer.task.fused = path == "fused"
        perm = torch.randperm(trainer.train.n, generator=torch.Generator().manual_seed(0)).to(trainer.device)
        step = make_step(trainer, perm, config.training.batch_size)
        for k in range(3):
            step(k)
        # the C kernels take CPU tensors only: on CUDA every op is PyTorch's, and the compile setting is timed
        settings = [f"compile-{c}" for c in args.compile] if args.device == "cuda" else args.kernels
        blocks = alternate_settings(step, trainer, settings, args.rounds, args.steps, args.device)
        for setting, times in blocks.items():
            seconds = statistics.median(times)
            rate = config.training.batch_size / seconds
            print(f"{threads:>7} {path:>8} {setting:>10} {seconds * 1000:>9.1f} {rate:>11.0f} "
                  f"{trainer.train.n / rate:>8.1f} {min(times) * 1000:>6.1f}-{max(times) * 1000:<6.1f} "
                  f"{peak_mb(args.device):>8.0f}")
            if args.phases:
                with step_setting(setting, trainer):
                    phases = phase_times(trainer, perm, config.training.batch_size, args.steps)
                print("        ms/step by phase: " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()))
        if trainer.graphed is not None:  # training.cuda_graph: whether the capture held (else eager static steps)
            print(f"        CUDA graph: captured {trainer.graphed.captured}, losses compiled {trainer.graphed.compiled}")
        if args.profile:
            print_profile(step, args.device)


def print_profile(step, device: str, steps: int = 5) -> None:
    """torch.profiler over `steps` steps: ops by self CPU time and, on CUDA, by self GPU time. Shapes are not
    recorded: recording keeps every input alive, which changes what the allocator can reuse."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        for k in range(steps):
            step(k)
        if device == "cuda":
            torch.cuda.synchronize()
    averages = prof.key_averages()
    print(f"profile of {steps} steps, by self CPU time")
    print(averages.table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=40))
    if device == "cuda":
        print(f"profile of {steps} steps, by self GPU time")
        print(averages.table(sort_by="self_device_time_total", row_limit=30, max_name_column_width=40))


@contextlib.contextmanager
def step_setting(setting: str, trainer: Trainer):
    """Inside the block: booktower's C kernels on ("c") or off ("pytorch"), read at every call; or on CUDA the
    in-batch softmax compiled ("compile-on") or eager ("compile-off")."""
    if setting.startswith("compile-") and trainer.graphed is not None:
        # the graphed step compiles its whole body or none of it, fixed when it was built (training.compile);
        # flipping the task's own compile flag here would change what Dynamo guards on and force a recompile
        # inside the capture, which fails it
        if setting != f"compile-{'on' if trainer.graphed.compile else 'off'}":
            raise SystemExit(f"--compile {setting.removeprefix('compile-')} with the graphed step (training."
                             f"cuda_graph, auto on CUDA up to batch 8,192): set --set training.compile="
                             f"{'true' if setting == 'compile-on' else 'false'} for it, or time the eager step "
                             "with --set training.cuda_graph=false")
        yield
        return
    if setting.startswith("compile-"):
        before_compile = trainer.task.compile
        trainer.task.compile = setting == "compile-on"
        try:
            yield
        finally:
            trainer.task.compile = before_compile
        return
    before = os.environ.get(native.ENV_SWITCH)
    os.environ[native.ENV_SWITCH] = "1" if setting == "c" else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(native.ENV_SWITCH)
        else:
            os.environ[native.ENV_SWITCH] = before


def alternate_settings(step, trainer: Trainer, settings: list[str], rounds: int, steps: int,
                       device: str) -> dict[str, list[float]]:
    """Seconds per step of blocks of `steps` steps, the settings taking turns `rounds` times on one trainer: this
    VM's speed drifts by 20-30% within minutes, so settings timed in turn compare where one after the other
    would not."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in settings}
    k = 3
    for _ in range(rounds):
        for name in settings:
            with step_setting(name, trainer):
                step(k)  # the first step after a switch is not timed
                sync()
                start = time.perf_counter()
                for k in range(k + 1, k + 1 + steps):
                    step(k)
                sync()
            times[name].append((time.perf_counter() - start) / steps)
            k += 1
    return times


if __name__ == "__main__":
    main()
