"""Data parallelism over processes with ``torch.distributed``: shard examples by rank, gather the results.

Head profiling and evaluation are data-parallel over examples: each example's per-head scores (or its
evaluation row) depend on that example alone, and the result is a function of the list of per-example results.
So under ``torchrun --nproc-per-node N`` every process (rank ``r`` of ``N``) loads its own copy of the model,
computes a deterministic share of the examples, and the per-example results are gathered to every rank
(``torch.distributed.all_gather_object``). Each rank then holds exactly the list a single process would have
computed, and runs the same reduction (means, standard deviations, rankings) on it, so the answer does not
depend on ``N`` beyond the float noise of the kernels (see ``results/distributed.md``). Rank 0 writes the files.

Who does what, deterministically on every rank:

- profiling (:func:`compute_missing`): the examples no checkpoint file holds yet are dealt round-robin,
  missing example ``j`` to rank ``j % N``; an example any rank already has is sent by the lowest such rank.
- evaluation (:func:`map_batches`): the batches a single process would run (``batch_size`` consecutive
  examples) are dealt round-robin, batch ``b`` to rank ``b % N``, so every batch is padded exactly as in a
  single process and greedy generation sees the same tensors.

Checkpoints (:class:`ShardedCheckpoint`): rank 0 writes ``PATH`` (the file a single process writes), rank
``r > 0`` writes ``PATH``'s sibling ``STEM.rank{r}SUFFIX``; every rank reads all of them at start. Results are
keyed by the example's digest, so a restart with another ``N`` (or a single process) finds every finished
example, whichever rank computed it, and computes each missing one exactly once.

Nothing here initialises ``torch.distributed`` behind the caller's back: :func:`current_world` reads the process
group the caller (or :func:`process_group_from_env`, which the CLI uses) initialised, and without one every
function is the single-process identity. With the ``nccl`` backend, set ``torch.cuda.set_device(local_rank)``
before the first collective (as :func:`process_group_from_env` does); object collectives go through that device.
"""

from __future__ import annotations

import gc
import importlib
import os
import re
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one job.

    Attributes:
        rank: this process's index, ``0 <= rank < size`` (``torch.distributed.get_rank()``).
        size: the number of processes (``torch.distributed.get_world_size()``); 1 = no parallelism.
    """

    rank: int = 0
    size: int = 1

    def __post_init__(self) -> None:
        if self.size < 1 or not 0 <= self.rank < self.size:
            raise ValueError(f"World needs 0 <= rank < size and size >= 1; got rank={self.rank}, size={self.size}.")

    @property
    def is_main(self) -> bool:
        """True on rank 0: the process that writes files and prints."""
        return self.rank == 0


def current_world() -> World:
    """The :class:`World` of the initialised default process group, or ``World(0, 1)`` when there is none.

    Example:
        >>> torch.distributed.init_process_group("gloo")   # under torchrun --nproc-per-node 2
        >>> current_world()
        World(rank=1, size=2)
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def local_device() -> str:
    """This process's device: ``cuda:LOCAL_RANK`` when CUDA is available (one GPU per process), else ``cpu``."""
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
    return "cpu"


@contextmanager
def process_group_from_env(backend: str | None = None) -> Iterator[World]:
    """Initialise ``torch.distributed`` from torchrun's environment for the body, and tear it down after.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) this calls ``init_process_group`` with
    ``backend`` (default: ``nccl`` when CUDA is available, else ``gloo``) and yields this rank's
    :class:`World`. Without torchrun, or when a group is already initialised (by the caller, who then owns it),
    it initialises nothing and yields :func:`current_world`.

    Example:
        >>> with process_group_from_env() as world:
        ...     scores = profile_heads(model, examples)    # sharded over world.size processes
        ...     if world.is_main:
        ...         save(scores)
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield current_world()
        return
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    # Before the group exists: torch.distributed.nn's functions take `group=group.WORLD` as a default argument,
    # evaluated when the module is imported. Imported after init_process_group (loading a transformers model
    # imports it), they would hold the group for the life of the process, destroy_process_group could not free
    # it, and its gloo threads would still hold the last collective's tensors when the interpreter exits.
    importlib.import_module("torch.distributed.nn")

    dist.init_process_group(backend)
    group = weakref.ref(dist.group.WORLD)
    try:
        yield current_world()
        # Every rank has finished every collective before any tears its connections down. Not after an
        # exception: a rank that failed must not wait here for peers that may never arrive.
        dist.barrier()
    finally:
        dist.destroy_process_group()
        _check_freed(group)


def _check_freed(group: weakref.ref[Any]) -> None:
    """Warn when the destroyed default group is still alive: something holds it, so its threads outlive
    ``destroy_process_group`` and can abort the process at exit (``terminate called without an active
    exception``) when one of them drops a tensor after the interpreter began to shut down."""
    if group() is None:
        return
    gc.collect()  # a reference cycle is freed here; a strong reference is not
    if group() is not None:
        warnings.warn(
            "torch.distributed's default process group is still referenced after "
            "destroy_process_group, so its communication threads outlive it and may abort the process "
            "at exit. Something imported after init_process_group keeps it (e.g. a function whose default "
            "argument is group.WORLD): import that module before the group is created.",
            RuntimeWarning,
            stacklevel=2,
        )


# ------------------------------------------------------------------------------------------------- collectives
def _collective_device() -> torch.device:
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather(obj: T, world: World) -> list[T]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (any picklable object); ``[obj]`` without a group."""
    if world.size == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: T, world: World) -> T:
    """Rank 0's ``obj`` on every rank (other ranks' ``obj`` is ignored); ``obj`` itself without a group."""
    if world.size == 1:
        return obj
    import torch.distributed as dist

    box: list[Any] = [obj if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _lowest_rank_holding(have: Sequence[bool], world: World) -> list[int]:
    """Per item: the lowest rank that has it, or ``world.size`` when none has (one all-reduce of ints)."""
    import torch.distributed as dist

    owner = torch.tensor(
        [world.rank if h else world.size for h in have], dtype=torch.int64, device=_collective_device()
    )
    dist.all_reduce(owner, op=dist.ReduceOp.MIN)
    return owner.tolist()


# ------------------------------------------------------------------------------------------------ checkpoints
class Store(Protocol):
    """What :class:`ShardedCheckpoint` needs of one checkpoint file (the profiler's checkpoint class)."""

    def get(self, phase: str, key: str) -> Any: ...

    def put(self, phase: str, key: str, value: Any) -> None: ...


StoreT = TypeVar("StoreT", bound=Store)


def rank_file(path: str | os.PathLike, rank: int) -> Path:
    """The checkpoint file rank ``rank`` writes: ``path`` itself for rank 0, ``STEM.rank{r}SUFFIX`` beside it."""
    path = Path(path)
    return path if rank == 0 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def rank_files(path: str | os.PathLike) -> list[Path]:
    """Every existing checkpoint file of ``path``'s run (any rank of any earlier world size), rank order."""
    path = Path(path)
    pattern = re.compile(rf"^{re.escape(path.stem)}\.rank(\d+){re.escape(path.suffix)}$")
    found = [(0, path)] if path.exists() else []
    if path.parent.is_dir():
        found += [(int(m.group(1)), p) for p in path.parent.iterdir() if (m := pattern.match(p.name))]
    return [p for _, p in sorted(found)]


class ShardedCheckpoint(Generic[StoreT]):
    """One rank's view of a checkpoint spread over per-rank files: writes its own, reads everyone's.

    Generic in the store class, so a caller keeps its own store's methods on ``own`` (the profiler reads
    ``ckpt.own.elapsed_s()`` of its :class:`~pasta_lens.profiling.checkpoints.Checkpoint`).

    ``get`` looks in this rank's file, then in what other ranks sent during this run (:meth:`remember`, kept in
    memory only, as the sender has it on disk), then in the other ranks' files as they were at start; ``put``
    writes this rank's file. ``open_store(path)`` opens one file (``None``: memory only) and is where the
    caller's refusal of a checkpoint from another run happens, for every file read.

    Example:
        >>> ckpt = ShardedCheckpoint("cf.ckpt", current_world(), lambda p: Checkpoint(p, fingerprint))
    """

    def __init__(
        self, path: str | os.PathLike | None, world: World, open_store: Callable[[Path | None], StoreT]
    ) -> None:
        own = rank_file(path, world.rank) if path is not None else None
        self.own = open_store(own)
        self.others = [open_store(p) for p in (rank_files(path) if path is not None else []) if p != own]
        self.received: dict[str, dict[str, Any]] = {}

    def get(self, phase: str, key: str) -> Any:
        value = self.own.get(phase, key)
        if value is None:
            value = self.received.get(phase, {}).get(key)
        for other in self.others:
            if value is not None:
                break
            value = other.get(phase, key)
        return value

    def put(self, phase: str, key: str, value: Any) -> None:
        self.own.put(phase, key, value)

    def remember(self, phase: str, key: str, value: Any) -> None:
        """Hold a result another rank computed (it is on that rank's file; not written again here)."""
        self.received.setdefault(phase, {})[key] = value


def compute_missing(
    ckpt: ShardedCheckpoint,
    phase: str,
    keys: Sequence[str],
    compute: Callable[[int], Any],
    world: World,
    progress: bool = False,
    desc: str = "",
) -> None:
    """Make ``ckpt.get(phase, keys[j])`` answer for every ``j`` on every rank, each missing one computed once.

    ``compute(j)`` computes item ``j``. The distinct keys no rank has are dealt round-robin over the ranks; each
    rank stores what it computed (``ckpt.put``), and every result any rank holds is gathered to all ranks
    (``ckpt.remember``). A collective: every rank must call it with the same ``keys``. Without a process group
    it does nothing (the caller's own loop computes and checkpoints as before).
    """
    if world.size == 1 or not keys:  # every rank has the same keys: all return here, or none does
        return
    owner = _lowest_rank_holding([ckpt.get(phase, k) is not None for k in keys], world)
    missing = list(dict.fromkeys(k for k, o in zip(keys, owner) if o == world.size))  # distinct, in order
    index = {k: j for j, k in reversed(list(enumerate(keys)))}  # first position of each key
    mine = missing[world.rank :: world.size]
    items: Any = mine
    if progress and world.is_main and mine:
        from tqdm.auto import tqdm

        items = tqdm(mine, desc=f"{desc} (rank 0 of {world.size})", leave=False, unit="it")
    for key in items:
        ckpt.put(phase, key, compute(index[key]))
    send = {k: ckpt.get(phase, k) for k, o in zip(keys, owner) if o == world.rank}
    send.update({k: ckpt.get(phase, k) for k in mine})
    for part in all_gather(send, world):
        for key, value in part.items():
            if ckpt.own.get(phase, key) is None:
                ckpt.remember(phase, key, value)


def map_batches(
    items: Sequence[T], batch_size: int, run: Callable[[Sequence[T]], list[R]], world: World
) -> Iterator[tuple[Sequence[T], list[R]]]:
    """``(batch, run(batch))`` for the consecutive ``batch_size`` batches of ``items``, in order, on every rank.

    Without a process group this is ``for batch in batches: yield batch, run(batch)``. With ``N`` ranks, batch
    ``b`` is run by rank ``b % N``; after each round of ``N`` batches the results are gathered, so every rank
    yields every batch's results (a collective: all ranks must consume the iterator to the end). ``run``'s
    results must be picklable.
    """
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    if world.size == 1:
        for batch in batches:
            yield batch, run(batch)
        return
    for start in range(0, len(batches), world.size):
        group = batches[start : start + world.size]
        mine = run(group[world.rank]) if world.rank < len(group) else []
        for batch, results in zip(group, all_gather(mine, world)):
            yield batch, results
