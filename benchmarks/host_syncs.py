"""Host synchronisations and data-dependent shapes in one training step: the inventory a CUDA-graph capture of
the step (or any launch-bound GPU run) has to remove, each with the booktower line that causes it.

    python benchmarks/host_syncs.py --device cuda [--config ...] [--set k=v ...]   # the real CUDA path
    python benchmarks/host_syncs.py --cuda-path                                  # the same path, on the CPU
    python benchmarks/host_syncs.py --cuda-path --static      # the body training.cuda_graph captures (none left)

A host sync is an op that hands a tensor's value to Python (`.item()`, `int()`, `bool()`, `.tolist()`: all
`aten._local_scalar_dense`); on a GPU each one waits for every queued kernel. A data-dependent shape (`nonzero`,
`unique`, boolean-mask indexing, ...) syncs as well and cannot be captured, and so does a copy between host and
device (`.cpu()`, `.tolist()`, a CPU generator's draws moved to the GPU). On the CPU nothing waits, but the same
ops run where the CUDA path runs them: `--cuda-path` switches off what only the CPU uses (the C kernels, the
blocked softmax, the known-id shortcut) so the list is the CUDA path's, except for the copies (only visible with
`--device cuda`) and the compiled loss passes (eager here).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from booktower.config import load_config
from booktower.data.prepare import prepare
from booktower.training.graphed import GraphedStep
from booktower.training.pipeline import build_model
from booktower.training.trainer import Trainer
from booktower.utils.host_syncs import SyncRecorder

sys.path.insert(0, str(Path(__file__).parent))
from train_throughput import make_step  # noqa: E402

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/amazon-books-2014.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--cuda-path", action="store_true", help="on the CPU: run the CUDA path's ops")
    parser.add_argument("--static", action="store_true",
                        help="the static-shape body that training.cuda_graph captures (training/graphed.py)")
    args = parser.parse_args()
    if args.cuda_path:
        os.environ["BOOKTOWER_NATIVE"] = "0"  # the C kernels take CPU tensors only
        import booktower.models.layers as layers
        import booktower.models.towers as towers

        def all_known(ids: torch.Tensor) -> bool:
            return False  # what it answers for a CUDA tensor

        layers.all_known = towers.all_known = all_known
    # eager ops only: a compiled region runs below the dispatcher this recorder watches (on an H200 it reported
    # 0 syncs for a body whose masked_fill_ synced and failed the capture), and --static builds its own body
    config = load_config(args.config, ["training.progress=false", "training.workers=1",
                                       f"training.device={args.device}", *args.overrides,
                                       "training.compile=false", "training.cuda_graph=false"])
    data, _ = prepare(config.data)
    trainer = Trainer(build_model(config, data, torch.device(args.device)), data, config.training, config.seed,
                      config.evaluation.ks, "/tmp/booktower-bench")
    if args.cuda_path:
        trainer.task.softmax_block_rows = 0  # the CUDA path's one (B, C) logit matrix
    perm = torch.randperm(trainer.train.n, generator=torch.Generator().manual_seed(0)).to(trainer.device)
    step = make_step(trainer, perm, config.training.batch_size)  # the eager step, as the trainer's loop takes it
    if args.static:  # the graph's body run eagerly: what a capture would hold (the inputs' copies are outside it)
        graphed = GraphedStep(trainer.task, trainer.optim, config.training.batch_size,
                              trainer.device.type == "cuda" and config.training.bf16, device_graph=False)
        trainer.graphed = graphed
        graphed.index.copy_(perm[: config.training.batch_size])
        graphed.negatives.copy_(trainer.task.draw_negatives(config.training.batch_size))

        def static_body(k: int) -> None:
            graphed._body(graphed.index, graphed.negatives)
        step = static_body
    for k in range(3):  # compiles and caches first
        step(k)
    recorder = SyncRecorder()
    with recorder:
        step(3)
    path = "CUDA path on the CPU" if args.cuda_path else args.device
    path += ", the static body of training.cuda_graph" if args.static else ""
    print(f"one training step of {args.config} ({path}, batch {config.training.batch_size}): "
          f"{sum(recorder.seen.values())} syncing ops at {len(recorder.seen)} places")
    print(f"{'count':>5}  {'op':<22} {'why':<22} where")
    for (op, why, where), count in sorted(recorder.seen.items(), key=lambda item: (item[0][2], item[0][0])):
        print(f"{count:>5}  {op:<22} {why:<22} {where}")


if __name__ == "__main__":
    main()
