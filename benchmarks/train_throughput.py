"""Training throughput: our two-tower trainer on Ray Train against plain PyTorch loops.

Synthetic data (1M users x 200k items by default); every side trains the same ``TwoTowerNet``
with the same examples, batch size, embedding sizes and in-batch softmax loss.

(a) ours: ``train_two_tower`` through Ray Train (RowAdam on the id tables, AdamW on the rest),
    with 1 worker and with 2 (``--workers``), each worker's share of the examples held in
    memory, and (``--feeds memory stream``) streamed by Ray Data as well, forced; examples/s is
    measured inside the workers over the last epoch.
(b) the strongest plain baseline: one process, the same sparse embedding tables and the same
    optimisers (``recsys.models.neural.make_optimizers``: SparseAdam + AdamW), shuffled
    in-memory numpy batches. Ours against it at one worker and one thread is Ray Train's
    overhead (goal <= 15 %).
(c) the naive baseline: every embedding dense, one ``torch.optim.Adam`` over all parameters
    (goal: ours >= 4x of it).
The baselines run a fixed number of steps after a warm-up (a full epoch of dense Adam over
million-row tables takes too long).

Prints a markdown table and the ratios; writes the JSON given by ``--out``.

    python benchmarks/train_throughput.py [--interactions 2000000] [--workers 1 2] [--gpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import ray
import torch

from recsys.config import ensure_ray
from recsys.data.io import dataset_paths
from recsys.data.synthetic import generate
from recsys.data.synthetic_config import SynthConfig
from recsys.evaluation.tables import results_header
from recsys.files import write_json
from recsys.models.neural import make_optimizers, shuffled_slices
from recsys.models.two_tower import TwoTowerConfig
from recsys.models.two_tower.model import TwoTower, to_batch
from recsys.training import staging
from recsys.training.two_tower import RayRun, train_two_tower

RESULTS = Path(__file__).resolve().parent / "results" / "train_throughput.json"
GOAL = 4.0  # ours against the naive dense-Adam loop
OVERHEAD_GOAL = 0.15  # Ray Train's cost against the same sparse loop in one process
MB = 2**20
PHASES = ("data", "forward_backward", "optimizer_step")


class PeakRss:
    """Samples, in a background thread, the memory of this process and of its Ray children.

    ``tree`` sums the RSS of every process under this one: shared pages (Ray's object store,
    the libraries every worker maps) count once per process that maps them, so it is an upper
    bound. ``tree_pss`` sums their proportional set sizes (a shared page divided among the
    processes that map it): the physical memory the run holds.
    """

    def __init__(self, interval_s: float = 0.5):
        self.interval_s, self.driver, self.worker, self.tree = interval_s, 0, 0, 0
        self.tree_pss = 0
        self.at_peak: dict[str, int] = {}  # RSS by process title when the RSS sum peaked
        self.worker_cpu_s = 0.0  # the Ray Train worker's user + system CPU time, last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        me = psutil.Process()
        driver, worker, tree, pss, titles = 0, 0, 0, 0, {}
        for proc in [me, *me.children(recursive=True)]:
            try:
                memory = proc.memory_full_info()
                cmdline = proc.cmdline()
                if proc.pid != me.pid and "RayTrainWorker" in " ".join(cmdline):
                    worker = max(worker, memory.rss)
                    self.worker_cpu_s = sum(proc.cpu_times()[:2])
            except psutil.Error:
                continue  # the process ended between listing and reading
            driver = memory.rss if proc.pid == me.pid else driver
            tree, pss = tree + memory.rss, pss + memory.pss
            title = "driver" if proc.pid == me.pid else _title(cmdline)
            titles[title] = titles.get(title, 0) + memory.rss
        self.driver = max(self.driver, driver)
        self.worker = max(self.worker, worker)
        if tree > self.tree:
            self.tree, self.at_peak = tree, titles
        self.tree_pss = max(self.tree_pss, pss)


def _title(cmdline: list[str]) -> str:
    """A process's kind: a Ray worker's title (``ray::IDLE``, ``ray::RayTrainWorker``...), else
    the program's name."""
    first = cmdline[0] if cmdline else "?"
    if first.startswith("ray::"):
        return first.split()[0].split(".")[0][:40]
    return Path(first).name[:40]


def make_data(args: argparse.Namespace, directory: Path) -> dict[str, pd.DataFrame]:
    """Generate the synthetic dataset and read its three tables."""
    sizes = {"n_users": args.users, "n_items": args.items, "n_interactions": args.interactions}
    generate(SynthConfig(**sizes, seed=0), directory, progress=False)
    paths = dataset_paths(directory)
    return {k: pd.read_parquet(paths[k]) for k in ("interactions", "users", "items")}


def run_ours(
    data: dict, cfg: TwoTowerConfig, storage: Path, use_gpu: bool, workers: int, feed: str
) -> dict:
    """Ray Train with ``workers`` workers fed from memory or by Ray Data (``feed``):
    examples/s of the last epoch as the workers measure it (rank 0's share of the examples and
    epoch time, times the workers: they step in lockstep under DDP), wall time including Ray
    start."""
    run = RayRun(
        storage_path=str(storage),
        name=f"throughput-{workers}-{feed}",
        use_gpu=use_gpu,
        num_workers=workers,
    )
    limit = staging.IN_MEMORY_MAX_BYTES
    staging.IN_MEMORY_MAX_BYTES = limit if feed == "memory" else -1
    t0 = time.perf_counter()
    try:
        with PeakRss() as rss:
            model = train_two_tower(data["interactions"], data["users"], data["items"], cfg, run)
    finally:
        staging.IN_MEMORY_MAX_BYTES = limit
    wall_s = time.perf_counter() - t0
    m = model.training_log["metrics"]
    examples = m["examples"] * workers  # rank 0 reports its shard
    return {
        "trainer": f"ours: Ray Train, {workers} worker{'s' if workers > 1 else ''}, {feed}",
        "feed": feed,
        "optimiser": "RowAdam (id tables) + AdamW",
        "workers": workers,
        "examples_per_s": m["examples_per_s"] * workers,
        "examples_per_s_per_worker": m["examples_per_s"],
        "examples": examples,
        "steps": -(-m["examples"] // cfg.batch_size),
        "epoch_s": m["epoch_s"],
        "loss": m["loss"],
        "wall_s_with_ray_start": wall_s,
        "examples_per_s_wall": cfg.epochs * examples / wall_s,
        "threads": "1 per worker (Ray sets OMP_NUM_THREADS=1 for a 1-CPU worker)"
        + ("; Ray Data runs beside them" if feed == "stream" else ""),
        "worker_cpu_s": rss.worker_cpu_s,
        "peak_rss_mb": rss.worker / MB,
        "peak_rss_driver_mb": rss.driver / MB,
        "peak_rss_all_processes_mb": rss.tree / MB,
    }


def dense_loss(model: TwoTower, counts, device: str):
    """A fresh net and loss with every embedding table dense (as a plain PyTorch user writes it)."""
    model.net = model.build_net()
    for m in model.net.modules():
        if isinstance(m, torch.nn.Embedding | torch.nn.EmbeddingBag):
            m.sparse = False
    return model.loss_module(counts).to(device)


def endless_batches(rows: dict, batch_size: int, seed: int, device: str):
    """Shuffled in-memory batches, epoch after epoch."""
    for epoch in itertools.count():
        for idx in shuffled_slices(len(rows["uid"]), batch_size, seed + epoch):
            yield to_batch({k: v[idx] for k, v in rows.items()}, device)


def timed_steps(loss, opts, batches, warmup: int, steps: int, device: str) -> dict[str, float]:
    """Seconds per phase over ``steps`` steps after ``warmup`` (Adam allocates state lazily)."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times, n = dict.fromkeys(PHASES, 0.0), 0
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        batch = next(batches)
        t1 = time.perf_counter()
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss(batch).backward()
        sync()
        t2 = time.perf_counter()
        for opt in opts:
            opt.step()
        sync()
        if i >= warmup:
            spans = (t1 - t0, t2 - t1, time.perf_counter() - t2)
            times = {p: times[p] + s for p, s in zip(PHASES, spans, strict=True)}
            n += len(batch["uid"])
    return {**times, "examples": n}


def run_baselines(data: dict, cfg: TwoTowerConfig, args, device: str) -> list[dict]:
    """The plain loops in this process, on the same examples as ours, at each thread count:
    the sparse one (our optimisers; ``--sparse-steps``), then the dense one
    (``--baseline-steps``: each of its steps touches every row)."""
    model = TwoTower(cfg)
    train = model.prepare_base(data["interactions"], data["items"])
    rows, _ = model.split_validation(model.prepare(train, data["users"], data["items"]))
    counts = model.item_counts(rows)
    warmup, out = args.baseline_warmup, []
    for sparse, steps in ((True, args.sparse_steps), (False, args.baseline_steps)):
        for n in args.baseline_threads:
            out.append(plain_run(model, rows, counts, sparse, n, warmup, steps, device))
    return out


def plain_run(
    model: TwoTower, rows, counts, sparse: bool, threads: int, warmup: int, steps: int, device
) -> dict:
    """``steps`` timed steps of a plain loop with ``threads`` torch threads: ``sparse``, our
    tables and optimisers; otherwise every table dense under one Adam."""
    torch.set_num_threads(threads)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with PeakRss() as rss:
        if sparse:
            model.net = model.build_net()
            loss = model.loss_module(counts).to(device)
            cfg = model.config
            opts = make_optimizers(loss, cfg.lr, cfg.sparse_lr, cfg.weight_decay)
        else:
            loss = dense_loss(model, counts, device)
            opts = [torch.optim.Adam(loss.parameters(), lr=model.config.lr)]
        batches = endless_batches(rows, model.config.batch_size, model.config.seed, device)
        t = timed_steps(loss, opts, batches, warmup, steps, device)
    model.net = None  # free the tables before the next run builds its own
    total = sum(t[p] for p in PHASES)
    return {
        "trainer": f"plain PyTorch loop, {threads} thread(s)",
        "optimiser": "RowAdam (id tables) + AdamW, as ours"
        if sparse
        else "dense Adam (all parameters)",
        "sparse": sparse,
        "examples_per_s": t["examples"] / total,
        "examples": t["examples"],
        "steps": steps,
        "threads": threads,
        "step_s": total / steps,
        "share_of_step": {p: t[p] / total for p in PHASES},
        "peak_rss_mb": rss.driver / MB,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / MB if device == "cuda" else None,
    }


def markdown(ours: list[dict], baselines: list[dict]) -> str:
    """The results table: ours (RSS of a Ray worker), then each baseline (of this process)."""
    head = "| trainer | optimiser | examples/s | peak RSS, training process (MB) | steps measured |"
    lines = [head, "|---|---|---:|---:|---:|"]
    for r in [*ours, *baselines]:
        lines.append(
            f"| {r['trainer']} | {r['optimiser']} | {r['examples_per_s']:,.0f} "
            f"| {r['peak_rss_mb']:,.0f} | {r['steps']} |"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=200_000)
    p.add_argument("--interactions", type=int, default=2_000_000)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=1, help="ours; examples/s is the last epoch's")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="ours, per count")
    p.add_argument(
        "--feeds",
        nargs="+",
        choices=["memory", "stream"],
        default=["memory"],
        help="ours, per feed: each worker's share in memory (the default for shares up to "
        "4 GiB), or streamed by Ray Data",
    )
    p.add_argument("--baseline-steps", type=int, default=30, help="the dense loop's")
    p.add_argument("--sparse-steps", type=int, default=300, help="the sparse loop's")
    p.add_argument("--baseline-warmup", type=int, default=3)
    p.add_argument("--baseline-threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--gpu", action="store_true", help="ours with use_gpu, baseline on cuda")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: torch.cuda.is_available() is False here; run without --gpu")
    device = "cuda" if args.gpu else "cpu"
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    # before the baseline sets the thread count
    torch_info = {"version": torch.__version__, "default_threads": torch.get_num_threads()}
    cfg = TwoTowerConfig(epochs=args.epochs, batch_size=args.batch_size, use_gpu=args.gpu)
    cfg = dataclasses.replace(cfg, val_share=0.0, patience=0, history_len=20, loss="softmax")
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    # One logical CPU per worker and one for Ray Data's reads (where a feed streams): with 2
    # workers on 2 cores the logical CPUs over-subscribe the cores, and the scaling figure says
    # what that gives.
    ensure_ray(num_cpus=max(args.workers) + int("stream" in args.feeds))
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        t0 = time.perf_counter()
        data = make_data(args, Path(tmp) / "data")
        gen_s = time.perf_counter() - t0
        baselines = run_baselines(data, cfg, args, device)
        ours = [
            run_ours(data, cfg, Path(tmp) / "ray", args.gpu, n, feed)
            for feed in args.feeds
            for n in args.workers
        ]
    ray.shutdown()
    one = ours[0]
    sparse = next(b for b in baselines if b["sparse"] and b["threads"] == 1)
    dense = next(b for b in baselines if not b["sparse"] and b["threads"] == 1)
    best_dense = max((b for b in baselines if not b["sparse"]), key=lambda b: b["examples_per_s"])
    ratio = one["examples_per_s"] / dense["examples_per_s"]
    overhead = 1 - one["examples_per_s"] / sparse["examples_per_s"]
    scaling = {
        f"{r['workers']}_workers_{r['feed']}": r["examples_per_s"] / one["examples_per_s"]
        for r in ours
    }
    table = markdown(ours, baselines)
    result = {
        **results_header("train_throughput", accelerator=gpu),
        "torch": torch_info,
        "config": {**vars(args), "out": str(args.out), "two_tower": dataclasses.asdict(cfg)},
        "generation_s": gen_s,
        "ours": one,
        "ours_by_workers": ours,
        "baselines": baselines,
        "ratio": ratio,
        "ratio_basis": f"ours ({one['workers']} worker) vs the dense-Adam loop at 1 thread",
        "ratio_vs_fastest_baseline": one["examples_per_s"] / best_dense["examples_per_s"],
        "goal": GOAL,
        "meets_goal": ratio >= GOAL,
        "ray_overhead_vs_sparse_loop": overhead,
        "ray_overhead_basis": "1 - ours at 1 worker / the same sparse loop in one process, "
        "1 thread",
        "overhead_goal": OVERHEAD_GOAL,
        "meets_overhead_goal": overhead <= OVERHEAD_GOAL,
        "scaling_vs_1_worker": scaling,
        "driver_ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "total_s": time.perf_counter() - t_start,
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "table_markdown": table,
    }
    write_json(result, args.out)
    print(table)
    print(f"\nratio: {ratio:.1f}x, {result['ratio_basis']} (goal >= {GOAL:.0f}x)")
    print(
        f"Ray Train's overhead against the same sparse loop in one process: {overhead:.1%} "
        f"(goal <= {OVERHEAD_GOAL:.0%}); scaling: "
        + ", ".join(f"{k} {v:.2f}x" for k, v in scaling.items())
    )
    for b in baselines:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in b["share_of_step"].items())
        kind = "sparse" if b["sparse"] else "dense"
        print(f"{kind} step, {b['threads']} thread(s): {b['step_s'] * 1e3:.0f} ms ({shares})")
    for r in ours:
        print(
            f"ours, {r['workers']} worker(s), {r['feed']}: wall "
            f"{r['wall_s_with_ray_start']:.0f} s with Ray start-up and preparation; peak RSS: "
            f"driver {r['peak_rss_driver_mb']:,.0f} MB, all "
            f"Ray processes together {r['peak_rss_all_processes_mb']:,.0f} MB (shared pages "
            "counted once per process)"
        )
    print(f"load average (1 min) start/end: {load_start:.1f}/{os.getloadavg()[0]:.1f}")
    print(f"results -> {args.out}")


if __name__ == "__main__":
    main()
