"""Training throughput: our two-tower trainer against a plain dense-Adam PyTorch loop.

Synthetic data (1M users x 200k items by default); both sides train the same ``TwoTowerNet``
with the same examples, batch size, embedding sizes and in-batch softmax loss.

(a) ours: ``train_two_tower`` through Ray Train (SparseAdam on the id tables, AdamW on the rest,
    Ray Data feeding the worker); examples/s is measured inside the worker over the last epoch.
(b) baseline: one process, every embedding dense, one ``torch.optim.Adam`` over all parameters,
    shuffled in-memory numpy batches; a fixed number of steps after a warm-up, because a full
    epoch of dense Adam over million-row tables takes too long.

Prints a markdown table and the ratio (goal >= 4x); writes the JSON given by ``--out``.

    python benchmarks/train_throughput.py [--interactions 2000000] [--gpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import platform
import resource
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import psutil
import ray
import torch

from recsys.config import code_version
from recsys.data.io import dataset_paths
from recsys.data.synthetic import SynthConfig, generate
from recsys.files import write_json
from recsys.models.neural import numpy_batches
from recsys.models.towers import TwoTowerConfig
from recsys.models.two_tower import TwoTower, to_batch
from recsys.training.two_tower import RayRun, train_two_tower

RESULTS = Path(__file__).resolve().parent / "results" / "train_throughput.json"
GOAL = 4.0
MB = 2**20
PHASES = ("data", "forward_backward", "optimizer_step")


class PeakRss:
    """Samples, in a background thread, the RSS of this process and of its Ray children.

    ``tree`` sums every process under this one; shared pages (Ray's object store) count once per
    process that maps them, so it is an upper bound.
    """

    def __init__(self, interval_s: float = 0.5):
        self.interval_s, self.driver, self.worker, self.tree = interval_s, 0, 0, 0
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
        driver, worker = me.memory_info().rss, 0
        tree = driver
        for child in me.children(recursive=True):
            try:
                rss = child.memory_info().rss
                if "RayTrainWorker" in " ".join(child.cmdline()):
                    worker = max(worker, rss)
                    self.worker_cpu_s = sum(child.cpu_times()[:2])
            except psutil.Error:
                continue  # the process ended between listing and reading
            tree += rss
        self.driver = max(self.driver, driver)
        self.worker, self.tree = max(self.worker, worker), max(self.tree, tree)


def make_data(args: argparse.Namespace, directory: Path) -> dict[str, pd.DataFrame]:
    """Generate the synthetic dataset and read its three tables."""
    sizes = {"n_users": args.users, "n_items": args.items, "n_interactions": args.interactions}
    generate(SynthConfig(**sizes, seed=0), directory, progress=False)
    paths = dataset_paths(directory)
    return {k: pd.read_parquet(paths[k]) for k in ("interactions", "users", "items")}


def run_ours(data: dict, cfg: TwoTowerConfig, storage: Path, use_gpu: bool) -> dict:
    """Ray Train: worker-measured examples/s of the last epoch, wall time including Ray start."""
    run = RayRun(storage_path=str(storage), name="throughput", use_gpu=use_gpu)
    t0 = time.perf_counter()
    with PeakRss() as rss:
        model = train_two_tower(data["interactions"], data["users"], data["items"], cfg, run)
    wall_s = time.perf_counter() - t0
    m = model.training_log["metrics"]
    return {
        "trainer": "ours: Ray Train, 1 worker",
        "optimiser": "SparseAdam (id tables) + AdamW",
        "examples_per_s": m["examples_per_s"],
        "examples": m["examples"],
        "steps": -(-m["examples"] // cfg.batch_size),
        "epoch_s": m["epoch_s"],
        "loss": m["loss"],
        "wall_s_with_ray_start": wall_s,
        "examples_per_s_wall": cfg.epochs * m["examples"] / wall_s,
        "threads": "1 (Ray sets OMP_NUM_THREADS=1 for a 1-CPU worker); Ray Data runs beside it",
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
        for batch in numpy_batches(rows, batch_size, seed=seed + epoch, to_batch=to_batch):
            yield {k: v.to(device) for k, v in batch.items()}


def timed_steps(loss, opt, batches, warmup: int, steps: int, device: str) -> dict[str, float]:
    """Seconds per phase over ``steps`` steps after ``warmup`` (Adam allocates state lazily)."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times, n = dict.fromkeys(PHASES, 0.0), 0
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        batch = next(batches)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss(batch).backward()
        sync()
        t2 = time.perf_counter()
        opt.step()
        sync()
        if i >= warmup:
            spans = (t1 - t0, t2 - t1, time.perf_counter() - t2)
            times = {p: times[p] + s for p, s in zip(PHASES, spans, strict=True)}
            n += len(batch["uid"])
    return {**times, "examples": n}


def run_baseline(
    data: dict, cfg: TwoTowerConfig, threads: list[int], warmup: int, steps: int, device: str
) -> list[dict]:
    """Dense Adam in this process, on the same examples as ours: one result per thread count."""
    model = TwoTower(cfg)
    train = model.prepare_base(data["interactions"], data["items"])
    rows, _ = model.split_validation(model.prepare(train, data["users"], data["items"]))
    counts = model.item_counts(rows)
    return [dense_run(model, rows, counts, n, warmup, steps, device) for n in threads]


def dense_run(model: TwoTower, rows, counts, threads: int, warmup: int, steps: int, device) -> dict:
    """``steps`` timed steps of the dense loop with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with PeakRss() as rss:
        loss = dense_loss(model, counts, device)
        opt = torch.optim.Adam(loss.parameters(), lr=model.config.lr)
        batches = endless_batches(rows, model.config.batch_size, model.config.seed, device)
        t = timed_steps(loss, opt, batches, warmup, steps, device)
    model.net = None  # free the dense tables before the next thread count builds its own
    total = sum(t[p] for p in PHASES)
    return {
        "trainer": f"plain PyTorch loop, {threads} thread(s)",
        "optimiser": "dense Adam (all parameters)",
        "examples_per_s": t["examples"] / total,
        "examples": t["examples"],
        "steps": steps,
        "threads": threads,
        "step_s": total / steps,
        "share_of_step": {p: t[p] / total for p in PHASES},
        "peak_rss_mb": rss.driver / MB,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / MB if device == "cuda" else None,
    }


def machine_info(device: str) -> dict:
    """Where the numbers come from."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": cpus,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "torch": torch.__version__,
        "torch_default_threads": torch.get_num_threads(),
        "device": gpu or "cpu",
    }


def markdown(ours: dict, baselines: list[dict]) -> str:
    """The results table: ours (RSS of the Ray worker), then each baseline (of this process)."""
    head = "| trainer | optimiser | examples/s | peak RSS, training process (MB) | steps measured |"
    lines = [head, "|---|---|---:|---:|---:|"]
    for r in [ours, *baselines]:
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
    p.add_argument("--baseline-steps", type=int, default=30)
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
    machine = machine_info(device)  # before the baseline sets the thread count
    cfg = TwoTowerConfig(epochs=args.epochs, batch_size=args.batch_size, use_gpu=args.gpu)
    cfg = dataclasses.replace(cfg, val_share=0.0, patience=0, history_len=20, loss="softmax")
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        t0 = time.perf_counter()
        data = make_data(args, Path(tmp) / "data")
        gen_s = time.perf_counter() - t0
        baselines = run_baseline(
            data, cfg, args.baseline_threads, args.baseline_warmup, args.baseline_steps, device
        )
        ours = run_ours(data, cfg, Path(tmp) / "ray", args.gpu)
    ray.shutdown()
    same = next((b for b in baselines if b["threads"] == 1), baselines[0])
    best = max(baselines, key=lambda b: b["examples_per_s"])
    ratio = ours["examples_per_s"] / same["examples_per_s"]
    table = markdown(ours, baselines)
    result = {
        "benchmark": "train_throughput",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "machine": machine,
        "config": {**vars(args), "out": str(args.out), "two_tower": dataclasses.asdict(cfg)},
        "generation_s": gen_s,
        "ours": ours,
        "baselines": baselines,
        "ratio": ratio,
        "ratio_basis": f"ours vs the baseline at {same['threads']} thread(s)",
        "ratio_vs_fastest_baseline": ours["examples_per_s"] / best["examples_per_s"],
        "goal": GOAL,
        "meets_goal": ratio >= GOAL,
        "driver_ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "total_s": time.perf_counter() - t_start,
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "table_markdown": table,
    }
    write_json(result, args.out)
    print(table)
    print(f"\nratio: {ratio:.1f}x, {result['ratio_basis']} (goal >= {GOAL:.0f}x)")
    for b in baselines:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in b["share_of_step"].items())
        print(f"dense step, {b['threads']} thread(s): {b['step_s'] * 1e3:.0f} ms ({shares})")
    print(
        f"ours: wall {ours['wall_s_with_ray_start']:.0f} s with Ray start-up and preparation; "
        f"peak RSS: driver {ours['peak_rss_driver_mb']:,.0f} MB, all Ray processes together "
        f"{ours['peak_rss_all_processes_mb']:,.0f} MB (shared pages counted once per process)"
    )
    print(f"load average (1 min) start/end: {load_start:.1f}/{os.getloadavg()[0]:.1f}")
    print(f"results -> {args.out}")


if __name__ == "__main__":
    main()
