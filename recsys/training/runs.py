"""A Ray Train run's settings and its storage: what every trainer shares, torch-free.

The LightGBM ranker's train loop imports this module in each Ray Train worker; keeping torch
out of it keeps a worker's start to Ray's own imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

# An epoch's checkpoint costs a state file written and copied to storage (more to object
# storage than locally): a short run checkpoints at its end, a long one every few minutes.
CHECKPOINT_EVERY_S = 300.0


@dataclass
class RayRun:
    """Where a Ray Train run keeps its checkpoints, and how it is scaled."""

    storage_path: str
    name: str
    resume: bool = False
    num_workers: int = 1
    use_gpu: bool = False
    # Ray Train's placement of the workers: "PACK" (few nodes, cheap communication) or
    # "SPREAD" (one per node where it can: a node lost costs one worker)
    placement_strategy: str = "PACK"
    # A checkpoint after the last epoch and after any epoch that ends this long after the
    # previous checkpoint (0: after every epoch); each epoch reports its metrics.
    checkpoint_every_s: float = CHECKPOINT_EVERY_S
    # A run of several models with one worker each trains them side by side on this many
    # workers (0: one per model, up to the cluster's free CPUs, or GPUs with use_gpu).
    job_workers: int = 0

    def scaling(self, num_workers: int | None = None):
        """The run's ``ray.train.ScalingConfig`` (``num_workers`` in place of the run's)."""
        import ray.train

        return ray.train.ScalingConfig(
            num_workers=num_workers or self.num_workers,
            use_gpu=self.use_gpu,
            placement_strategy=self.placement_strategy,
        )


def _uri(storage_path: str) -> str:
    return storage_path if "://" in storage_path else str(Path(storage_path).resolve())


def storage_filesystem(storage_path: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and base path of a local directory, ``s3://`` or ``gs://`` URI."""
    fs, base = pafs.FileSystem.from_uri(_uri(storage_path))
    fs.create_dir(base, recursive=True)
    return fs, base.rstrip("/")


def delete_dir(fs: pafs.FileSystem, path: str) -> None:
    """Remove ``path`` on ``fs`` when it is a directory (a run that starts over)."""
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        fs.delete_dir(path)
