"""The two-tower's training step at a large catalog's size: ours against torch's stock parts.

    python -m benchmarks.train_step [--users 1000000] [--items 200000] [--batch 1024]

One torch thread (a Ray Train worker's), the scale benchmark's tower (64-d, a 20-item history,
the items' content vectors), random users and Zipf-distributed items. The same network, weights
and batches take turns with two sets of parts:

- **stock**: the history mean as ``nn.EmbeddingBag(mode="mean", padding_idx=0, sparse=True)``
  and ``torch.optim.SparseAdam`` on the sparse id tables;
- **ours**: :class:`~recsys.models.neural.MeanBag` (the same mean as a weighted sum: its
  backward skips the padding mask) and :class:`~recsys.models.neural.RowAdam` (SparseAdam's
  update on the rows a batch named, without the whole-table ``sparse_mask`` and ``add_``).

Each round times ``--steps`` steps of each; the table gives the median round, the ratio, and
the largest gap between the two sets' weights after one step from the same start. Writes
``benchmarks/results/train_step.json``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from recsys.evaluation.tables import results_header
from recsys.files import write_json
from recsys.models.encoding import MAX_GENRES
from recsys.models.neural import MeanBag, make_optimizers, train_epoch
from recsys.models.two_tower.towers import TwoTowerConfig, TwoTowerLoss, TwoTowerNet

RESULTS = Path(__file__).resolve().parent / "results" / "train_step.json"
CARD = {"age": 8, "gender": 3, "occupation": 22, "genre": 20, "year": 10}


def tower_loss(users: int, items: int, cfg: TwoTowerConfig, rng) -> TwoTowerLoss:
    """The two-tower and its loss at these sizes, with random item features and content."""
    table = np.zeros((items + 1, MAX_GENRES + 1), dtype=np.int64)
    table[1:, 0] = rng.integers(1, CARD["genre"], items)
    table[1:, MAX_GENRES] = rng.integers(1, CARD["year"], items)
    content = rng.normal(size=(items + 1, 64)).astype(np.float32)
    content[0] = 0
    net = TwoTowerNet(users, items, CARD, table, cfg, content)
    return TwoTowerLoss(net, 1e7 * zipf(items), cfg)


def zipf(items: int) -> np.ndarray:
    p = 1.0 / np.arange(1, items + 1) ** 0.8
    return p / p.sum()


def stock(loss: TwoTowerLoss, cfg: TwoTowerConfig) -> tuple[TwoTowerLoss, list]:
    """A copy of ``loss`` with torch's parts: the history as a padded mean bag, SparseAdam."""
    loss = copy.deepcopy(loss)
    ours = loss.net.user_tower.history
    bag = torch.nn.EmbeddingBag(*ours.weight.shape, mode="mean", padding_idx=0, sparse=True)
    bag.weight = ours.weight
    loss.net.user_tower.history = bag
    sparse = [m.weight for m in loss.modules() if getattr(m, "sparse", False)]
    ids = {id(p) for p in sparse}
    dense = [p for p in loss.parameters() if id(p) not in ids]
    return loss, [
        torch.optim.SparseAdam(sparse, lr=cfg.sparse_lr),
        torch.optim.AdamW(dense, lr=cfg.lr, weight_decay=cfg.weight_decay),
    ]


def batches(users: int, items: int, cfg: TwoTowerConfig, n: int, rng) -> list[dict]:
    p, b, h = zipf(items), cfg.batch_size, cfg.history_len
    out = []
    for _ in range(n):
        hist = rng.choice(items, (b, h), p=p) + 1
        hist[: b // 10, h // 2 :] = 0  # a tenth of the users with a short history
        out.append(
            {
                "uid": torch.as_tensor(rng.integers(1, users + 1, b)),
                "iid": torch.as_tensor(rng.choice(items, b, p=p) + 1),
                "ufeat": torch.as_tensor(rng.integers(1, 3, (b, 3))),
                "hist": torch.as_tensor(hist),
            }
        )
    return out


def weight_gap(a: TwoTowerLoss, b: TwoTowerLoss) -> float:
    wa, wb = a.state_dict(), b.state_dict()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    cfg = TwoTowerConfig(history_len=20, batch_size=args.batch, epochs=1)
    ours = tower_loss(args.users, args.items, cfg, rng)
    assert isinstance(ours.net.user_tower.history, MeanBag)
    base, base_opts = stock(ours, cfg)
    data = batches(args.users, args.items, cfg, args.steps, rng)
    ours_opts = make_optimizers(ours, cfg.lr, cfg.sparse_lr, cfg.weight_decay)
    torch.manual_seed(1)
    train_epoch(ours, data[:1], ours_opts)  # one step from the same start, the same id drops
    torch.manual_seed(1)
    train_epoch(base, data[:1], base_opts)
    gap = weight_gap(ours, base)
    times: dict[str, list[float]] = {"stock": [], "ours": []}
    for _ in range(args.rounds):
        for name, (loss, opts) in {"stock": (base, base_opts), "ours": (ours, ours_opts)}.items():
            started = time.perf_counter()
            train_epoch(loss, data, opts)
            times[name].append((time.perf_counter() - started) / args.steps * 1000)
    ms = {k: statistics.median(v) for k, v in times.items()}
    result = results_header("train_step") | {
        "settings": vars(args) | {"out": str(args.out), "threads": 1, "history_len": 20},
        "step_ms": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "median_step_ms": {k: round(v, 2) for k, v in ms.items()},
        "examples_per_s": {k: round(args.batch / v * 1000) for k, v in ms.items()},
        "speedup": round(ms["stock"] / ms["ours"], 2),
        "max_weight_gap_after_one_step": gap,
    }
    result["table_markdown"] = table(result)
    write_json(result, args.out)
    print(result["table_markdown"])
    print(f"results -> {args.out}")
    return result


def table(r: dict) -> str:
    s = r["settings"]
    lines = [
        f"{s['users']:,} users, {s['items']:,} items, batch {s['batch']}, one thread; "
        f"median of {s['rounds']} rounds of {s['steps']} steps",
        "",
        "| parts | ms per step | examples/s |",
        "|---|---:|---:|",
    ]
    for name, label in (("stock", "stock (padded mean bag, SparseAdam)"), ("ours", "ours")):
        lines.append(f"| {label} | {r['median_step_ms'][name]} | {r['examples_per_s'][name]:,} |")
    lines.append("")
    lines.append(
        f"Speed-up {r['speedup']}x; the weights after one step from the same start differ by "
        f"at most {r['max_weight_gap_after_one_step']:.1e}."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
