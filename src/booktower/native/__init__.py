"""Optional C kernels for the CPU training step (kernels.c), compiled with the system C compiler at first use.

The training step's row-wise passes (the sparse Adam update, history pooling, the accidental-hit search, the
in-batch softmax block) run in PyTorch as a dozen small ops each; one loop in C does each in a single pass.
Nothing here is required: every caller keeps its PyTorch path, which runs when no compiler is found, when
`BOOKTOWER_NATIVE=0`, or for inputs the kernels do not take (CUDA, other dtypes). Both paths compute the same
thing and the tests compare them.

The shared library is cached under `$BOOKTOWER_CACHE_DIR` (default `~/.cache/booktower`) by a hash of the
source, the compiler and the flags, and written atomically, so concurrent processes (torchrun ranks) may build
it at once. It is plain C with no Python or PyTorch headers: it builds in well under a second.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sysconfig
import tempfile
import threading
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels.c")
# -fno-math-errno and -fno-trapping-math (PyTorch's own flags) let the compiler vectorise loops with sqrt and
# float comparisons; nothing here reads errno or floating-point exception flags.
FLAGS = ["-O3", "-std=c99", "-shared", "-fPIC", "-fno-math-errno", "-fno-trapping-math"]
ENV_SWITCH = "BOOKTOWER_NATIVE"

_P = ctypes.c_void_p
_I = ctypes.c_int64
_F = ctypes.c_float
_SIGNATURES = {
    "bt_lazy_adam": [_P, _P, _P, _I, _I, _P, _P, _I, _P, _P, _P, _P, _F, _F, _F, _F, _F, _I, _I],
    "bt_bag_forward": [_P, _I, _I, _P, _P, _I, _I, _P],
    "bt_bag_backward": [_P, _I, _P, _P, _I, _I, _I, _P, _P, _P],
    "bt_hit_pairs": [_P, _I, _P, _I, _P, _I, _P, _I, _I, _P, _P, _P, _P, _P, _I],
    "bt_softmax_block": [_P, _I, _I, _P, _P, _I, _P, _P, _I],
}
_RESTYPES = {"bt_softmax_block": ctypes.c_double}


class NativeIndexError(IndexError):
    """A kernel found an index outside the table it was given (the PyTorch path would raise too)."""


def _compiler() -> str | None:
    configured = os.environ.get("CC") or (sysconfig.get_config_var("CC") or "").split(" ")[0] or "cc"
    for name in (configured, "cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _cache_dir() -> Path:
    root = os.environ.get("BOOKTOWER_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "booktower")
    return Path(root) / "native"


def _build(compiler: str, flags: list[str]) -> Path:
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, compiler.encode(), " ".join(flags).encode(),
                                     platform.machine().encode()])).hexdigest()[:16]
    target = _cache_dir() / f"kernels-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        result = subprocess.run([compiler, *flags, "-o", str(built), str(SOURCE), "-lm"],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} failed on {SOURCE}:\n{result.stderr.strip()}")
        os.replace(built, target)  # atomic: a concurrent build of the same source lands the same bytes
    return target


def _torch_uses_libgomp() -> bool:
    """Whether this process's PyTorch runs on GNU OpenMP (Linux wheels bundle `libgomp.so.1`). Only then may the
    kernels be built with -fopenmp: the loader binds them to the libgomp already loaded (same soname), so they
    share PyTorch's thread pool. Against another runtime they would start a second pool that fights it."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return "libgomp" in maps.read()
    except OSError:
        return False


def _open(compiler: str) -> ctypes.CDLL:
    """Build (or find in the cache) and load the kernels: with OpenMP where PyTorch's own libgomp is loaded, and
    without CPU-specific clones where those do not build (a C library without ifunc, such as musl)."""
    variants = [[], ["-DBOOKTOWER_NO_CLONES"]]
    if _torch_uses_libgomp():
        variants = [["-fopenmp"], ["-fopenmp", "-DBOOKTOWER_NO_CLONES"]] + variants
    for extra in variants[:-1]:
        try:
            path = _build(compiler, FLAGS + extra)
            break
        except RuntimeError:
            continue
    else:
        path = _build(compiler, FLAGS + variants[-1])
    library = ctypes.CDLL(str(path))
    for name, argtypes in _SIGNATURES.items():
        function = getattr(library, name)
        function.argtypes, function.restype = argtypes, _RESTYPES.get(name, ctypes.c_int64)
    return library


@functools.cache
def _load() -> ctypes.CDLL | None:
    compiler = _compiler()
    if compiler is None:
        log.warning("booktower's C kernels are off: no C compiler found (install gcc or clang, or set CC). "
                    "Training runs its PyTorch path, which is slower on the CPU. %s=0 silences this.", ENV_SWITCH)
        return None
    try:
        library = _open(compiler)
    except (OSError, RuntimeError, AttributeError, subprocess.SubprocessError) as error:
        log.warning("booktower's C kernels are off (%s). Training runs its PyTorch path, which is slower on "
                    "the CPU. %s=0 silences this.", error, ENV_SWITCH)
        return None
    log.debug("booktower C kernels loaded from %s", library._name)
    return library


def _switched_off() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off")


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None where they are switched off (`BOOKTOWER_NATIVE=0`) or could not be built."""
    return None if _switched_off() else _load()


def status() -> str:
    """For run.json: "c" (kernels loaded and on), "pytorch" (switched off, or no build), or "unused" (nothing
    in this process has asked for them yet, e.g. a run on CUDA)."""
    if _switched_off():
        return "pytorch"
    if _load.cache_info().currsize == 0:
        return "unused"
    return "c" if _load() is not None else "pytorch"


def takes(floats: tuple[torch.Tensor, ...] = (), indices: tuple[torch.Tensor, ...] = ()) -> bool:
    """Whether the kernels are on and can take these tensors: CPU float32 values and CPU int64 indices."""
    return (library() is not None
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in floats)
            and all(t.device.type == "cpu" and t.dtype == torch.int64 for t in indices))


class _Workspace(threading.local):
    """Scratch tensors reused across calls, one set per thread: allocating them afresh every step cost as much
    as the kernels themselves (page faults on first touch)."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def get(self, name: str, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """A contiguous scratch tensor of at least `numel` elements; its contents are whatever was left."""
        held = self.tensors.get(name)
        if held is None or held.numel() < numel:
            held = self.tensors[name] = torch.empty(max(numel, 1024), dtype=dtype)
        return held

    def markers(self, n_rows: int) -> torch.Tensor:
        """An int64 table of at least `n_rows` entries, all -1 (the kernels leave it so on return)."""
        held = self.tensors.get("markers")
        if held is None or held.numel() < n_rows:
            held = self.tensors["markers"] = torch.full((n_rows,), -1, dtype=torch.int64)
        return held


_workspace = _Workspace()


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def _check(status: int, what: str) -> int:
    if status < 0:
        raise NativeIndexError(f"{what}: an index is outside its table")
    return status


def lazy_adam_(param: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, index: torch.Tensor,
               values: torch.Tensor, step_size: float, beta1: float, beta2: float, eps: float, part: int = 0,
               parts: int = 1) -> bool:
    """The row-wise Adam update of optim.LazyAdam, in place, for gradient entries (index, values) whose rows may
    repeat, on the rows r with r % parts == part only. False (nothing done) where the kernels are off or the
    tensors are not plain CPU float32 tables."""
    tables = (param, exp_avg, exp_avg_sq)
    if not takes(tables + (values,), (index,)) or param.dim() != 2 or not all(t.is_contiguous() for t in tables):
        return False
    lib = library()
    index, values = index.contiguous(), values.contiguous()
    n_rows, dim = param.shape
    n = index.numel()
    slot = _workspace.markers(n_rows)
    rows = _workspace.get("rows", n, torch.int64)
    first = _workspace.get("first", n, torch.int64)
    merged = _workspace.get("values", min(n, n_rows) * dim, torch.float32)  # one row per distinct row
    _check(lib.bt_lazy_adam(_ptr(param), _ptr(exp_avg), _ptr(exp_avg_sq), n_rows, dim, _ptr(index), _ptr(values),
                            n, _ptr(slot), _ptr(rows), _ptr(first), _ptr(merged), step_size, beta2, eps, 1.0 - beta1,
                            1.0 - beta2, part, parts), "lazy_adam")
    return True


def bag_forward(table: torch.Tensor, history: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, d): sum over l of weights[b, l] * table[history[b, l]], entries < 0 skipped; the caller checked
    `takes((table, weights), (history,))`."""
    lib = _load()
    history, weights = history.contiguous(), weights.contiguous()
    n_bags, length = history.shape
    out = torch.empty(n_bags, table.shape[1], dtype=torch.float32)
    _check(lib.bt_bag_forward(_ptr(table.contiguous()), table.shape[0], table.shape[1], _ptr(history),
                              _ptr(weights), n_bags, length, _ptr(out)), "bag_forward")
    return out


def bag_backward(grad: torch.Tensor, history: torch.Tensor, weights: torch.Tensor, n_rows: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The table gradient of `bag_forward` as (rows (U,), values (U, d)), each touched row once (the kernels
    are loaded: the forward ran them)."""
    lib = _load()
    grad, history, weights = grad.float().contiguous(), history.contiguous(), weights.contiguous()
    n_bags, length = history.shape
    dim = grad.shape[1]
    slot = _workspace.markers(n_rows)
    rows = _workspace.get("rows", n_bags * length, torch.int64)
    values = _workspace.get("values", min(n_bags * length, n_rows) * dim, torch.float32)  # per distinct row
    count = _check(lib.bt_bag_backward(_ptr(grad), dim, _ptr(history), _ptr(weights), n_bags, length, n_rows,
                                       _ptr(slot), _ptr(rows), _ptr(values)), "bag_backward")
    return rows[:count].clone(), values[: count * dim].view(count, dim).clone()


def hit_pairs(candidates: torch.Tensor, users: torch.Tensor, pos_offsets: torch.Tensor, pos_items: torch.Tensor,
              n_items: int, own: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(rows, columns), ordered by row, where candidate column c is a positive of row b (row b's positives:
    pos_items[pos_offsets[users[b]]:pos_offsets[users[b] + 1]]), leaving out each row's own column `own[b]`.
    None where the kernels are off or the tensors are not on the CPU."""
    if not takes(indices=(candidates, users, pos_offsets, pos_items) + (() if own is None else (own,))):
        return None
    lib = library()
    candidates, users = candidates.contiguous(), users.contiguous()
    pos_offsets, pos_items = pos_offsets.contiguous(), pos_items.contiguous()
    own = None if own is None else own.contiguous()
    head = _workspace.markers(n_items)
    next_column = _workspace.get("next", len(candidates), torch.int64)
    capacity = max(4096, 8 * len(users))
    while True:
        rows = torch.empty(capacity, dtype=torch.int64)
        cols = torch.empty(capacity, dtype=torch.int64)
        count = _check(lib.bt_hit_pairs(
            _ptr(candidates), len(candidates), _ptr(users), len(users), _ptr(pos_offsets), len(pos_offsets) - 1,
            _ptr(pos_items), len(pos_items), n_items, None if own is None else _ptr(own), _ptr(head),
            _ptr(next_column), _ptr(rows), _ptr(cols), capacity), "hit_pairs")
        if count <= capacity:
            return rows[:count], cols[:count]
        capacity = count


def softmax_block_(logits: torch.Tensor, bias: torch.Tensor | None, positive: torch.Tensor, first_row: int,
                   masked_rows: torch.Tensor, masked_cols: torch.Tensor) -> float:
    """One block of losses.blocked_in_batch_softmax in one pass per row, in place: `logits` (b, C), the batch's
    rows first_row.., turn into d(summed loss)/d(logits) = softmax - one-hot(positive); returns the summed loss.
    `bias` (C,) is added to every row first; `masked_rows` (ascending) / `masked_cols` are batch coordinates
    left out of the softmax. The caller checked `takes` and that `logits` is contiguous."""
    lib = _load()
    bias = None if bias is None else bias.contiguous()
    positive = positive.contiguous()
    total = lib.bt_softmax_block(_ptr(logits), logits.shape[0], logits.shape[1],
                                 None if bias is None else _ptr(bias), _ptr(positive), first_row, _ptr(masked_rows),
                                 _ptr(masked_cols), len(masked_rows))
    if total < 0:
        raise NativeIndexError("softmax_block: a column is outside the logits, or the masked rows are not sorted")
    return total
