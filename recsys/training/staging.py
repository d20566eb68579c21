"""Training examples staged for Ray Train's workers: written once by the driver, in the
model's order, where every worker can read them; each worker's share read into memory, or
streamed as a Ray Data shard where it is too large to hold."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recsys.config import RecsysError
from recsys.models.trainable import Trainable
from recsys.training.runs import RayRun, delete_dir, storage_filesystem

WRITE_ROWS = 1 << 20  # examples reordered and written per slice
ROW_GROUP_ROWS = 65_536
# A worker holds its share of the examples in memory up to this size; past it Ray Data streams
# them (20M interactions of the two-tower's examples fit: held).
IN_MEMORY_MAX_BYTES = 4 << 30


@dataclass
class StagedExamples:
    """Training examples written where every worker can read them, in the model's order."""

    path: str  # the parquet file
    directory: str  # removed once the run is over
    filesystem: pafs.FileSystem
    base: str  # the storage path in that filesystem (the run's checkpoints go under it)
    loss_args: object  # what the model's loss needs from the whole set (e.g. item counts)
    in_memory: bool  # each worker reads its share into memory (else Ray Data streams it)


def stage_examples(
    model: Trainable, fit_rows: dict[str, np.ndarray], run: RayRun, tag: str = ""
) -> StagedExamples:
    """Write ``fit_rows`` in ``model.example_order`` for the workers (``tag``: the job's,
    where a run trains several). The caller may drop its rows afterwards: the run reads only
    the file (at 20M interactions the rows are gigabytes, and a driver that kept them through
    training held them twice)."""
    fs, base = storage_filesystem(run.storage_path)
    if not run.resume:
        delete_dir(fs, f"{base}/{run.name}")  # a fresh run must not pick up old checkpoints
    directory = f"{base}/{run.name}-examples" + (f"-{tag}" if tag else "")
    order = model.example_order(fit_rows, model.config.seed)
    path = _write_examples(fit_rows, order, fs, directory)
    share = sum(v.nbytes for v in fit_rows.values()) / max(run.num_workers, 1)
    in_memory = share <= IN_MEMORY_MAX_BYTES
    return StagedExamples(path, directory, fs, base, model.loss_args(fit_rows), in_memory)


def read_share(staged: StagedExamples, rank: int, world: int) -> dict[str, np.ndarray]:
    """Worker ``rank``'s share of the staged examples, in memory: ``rows // world`` rows in
    a row, the staged order's ``rank``-th slice (the last ``rows % world`` rows are left out,
    so that every worker holds as many). Each row group is copied into the columns as it is
    read and let go (a worker holds the share once, not its Arrow table beside it)."""
    file = pq.ParquetFile(staged.filesystem.open_input_file(staged.path))
    share = file.metadata.num_rows // world
    lo, hi = rank * share, (rank + 1) * share
    out = {f.name: np.empty(hi - lo, f.type.to_pandas_dtype()) for f in file.schema_arrow}
    start = at = 0
    for group in range(file.num_row_groups):
        end = start + file.metadata.row_group(group).num_rows
        if start < hi and end > lo:
            part = file.read_row_group(group).slice(
                max(lo - start, 0), min(hi, end) - max(lo, start)
            )
            for name, column in out.items():
                column[at : at + part.num_rows] = part.column(name).to_numpy()
            at += part.num_rows
            del part
        start = end
    pa.default_memory_pool().release_unused()
    return out


def require_room_for_data(num_workers: int, reads: bool = True) -> None:
    """Each worker holds a CPU for the whole run and Ray Data's reads (``reads``: the examples
    are streamed) need one more: on a local Ray without them the run waits for ever. Fail at
    once instead, naming the numbers. (A cluster joined through ``RAY_ADDRESS`` may autoscale:
    it is left to grow.)"""
    import ray

    cpus, needed = ray.cluster_resources().get("CPU", 0), num_workers + int(reads)
    if not os.environ.get("RAY_ADDRESS") and cpus < needed:
        why = "one per worker and one for Ray Data's reads" if reads else "one per worker"
        raise RecsysError(
            f"num_workers={num_workers} needs at least {needed} CPUs in the local Ray "
            f"({why}); it has {cpus:g}: use fewer workers or a Ray cluster (RAY_ADDRESS)"
        )


def read_examples(staged: StagedExamples):
    """The staged examples as a Ray Data dataset. Its read task runs in a worker of its own
    that exits when the task is done (``max_calls=1``: a reused worker stayed idle through the
    run holding what the read allocated), and allocates from the system allocator, which
    returns freed buffers to the OS (Arrow's default pool kept them)."""
    import ray.data

    return ray.data.read_parquet(
        staged.path,
        filesystem=staged.filesystem,
        max_calls=1,
        runtime_env={"env_vars": {"ARROW_DEFAULT_MEMORY_POOL": "system"}},
    )


def _write_examples(
    rows: dict[str, np.ndarray], order: np.ndarray, fs: pafs.FileSystem, directory: str
) -> str:
    """Write the examples in ``order`` as parquet where every worker can read them, a slice of
    the order at a time (never a reordered copy of every column at once)."""
    fs.create_dir(directory, recursive=True)
    path = f"{directory}/examples.parquet"
    schema = pa.schema([(k, pa.from_numpy_dtype(v.dtype)) for k, v in rows.items()])
    with pq.ParquetWriter(path, schema, filesystem=fs) as writer:
        for start in range(0, max(len(order), 1), WRITE_ROWS):
            part = order[start : start + WRITE_ROWS]
            table = pa.table({k: v[part] for k, v in rows.items()}, schema=schema)
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    return path
