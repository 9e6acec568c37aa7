"""Host synchronisations and data-dependent shapes, recorded op by op: what a CUDA-graph capture cannot hold.

A host sync is an op that hands a tensor's value to Python (`.item()`, `int()`, `bool()`, `.tolist()`: all
`aten._local_scalar_dense`); on a GPU each one waits for every queued kernel. A data-dependent shape (`nonzero`,
`unique`, boolean-mask indexing, ...) syncs as well and cannot be captured, and so does a copy between host and
device. On the CPU nothing waits, but the ops are the same, so the CPU can list them (benchmarks/host_syncs.py,
tests/training/test_graphed.py)."""

from __future__ import annotations

import collections
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
SYNCING = {aten._local_scalar_dense.default: "value to the host", aten.nonzero.default: "data-dependent shape",
           aten._unique2.default: "data-dependent shape", aten.unique_dim.default: "data-dependent shape",
           aten.unique_consecutive.default: "data-dependent shape",
           aten.masked_select.default: "data-dependent shape", aten.repeat_interleave.Tensor: "shape from a tensor"}


def _where() -> str:
    """The innermost booktower frame of the current Python stack (backward ops in C++ have none)."""
    for frame in reversed(traceback.extract_stack()[:-3]):
        if "booktower" in frame.filename and "benchmarks" not in frame.filename and "host_syncs" not in frame.filename:
            name = frame.filename.split("src/")[-1]
            return f"{name}:{frame.lineno} {frame.name}"
    return "(autograd's C++ backward, no Python frame)"


class SyncRecorder(TorchDispatchMode):
    """Counts the ops of SYNCING, and host-to-device copies, by op and booktower line."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: collections.Counter[tuple[str, str, str]] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        why = SYNCING.get(func)
        if func in (aten.masked_fill.Tensor, aten.masked_fill_.Tensor):
            # below the dispatcher the kernel reads the value tensor with .item(): on CUDA a sync that a capture
            # refuses (seen on an H200, PyTorch 2.11); a Python scalar value is a kernel argument instead
            why = "value to the host"
        if func is aten.repeat_interleave.Tensor and kwargs.get("output_size") is not None:
            why = None  # the caller gave the size: no sync
        if func in (aten._to_copy.default, aten.copy_.default):
            source = args[1] if func is aten.copy_.default else args[0]
            target = kwargs.get("device") if func is aten._to_copy.default else args[0].device
            if isinstance(source, torch.Tensor) and target is not None:
                kinds = (source.device.type, torch.device(target).type)
                why = {("cpu", "cuda"): "host-to-device copy", ("cuda", "cpu"): "device-to-host copy"}.get(kinds)
        if why is not None:
            self.seen[(str(func.overloadpacket.__name__), why, _where())] += 1
        return func(*args, **kwargs)
