"""The user tower's history mean: ``nn.EmbeddingBag`` against ``SharesBag`` (the batch's id
shares times the table), forward and backward, by table rows and history length.

    python -m benchmarks.history_bag [--rows 1683 4000 16384] [--lengths 20 50 200]

One torch thread (a Ray Train worker's), a batch of 512 users, 64-d rows, a quarter of each
history padding. ``recsys.models.neural.id_table`` takes the shares product where a table has
at most ``SHARES_BAG_ROWS_PER_ID`` rows per id of a history; this table is where that rule
comes from. Prints the table and writes ``benchmarks/results/history_bag.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from recsys.evaluation.tables import results_header
from recsys.files import write_json
from recsys.models.neural import SHARES_BAG_ROWS_PER_ID, SharesBag

RESULTS = Path(__file__).resolve().parent / "results" / "history_bag.json"


def step_ms(table: torch.nn.Module, ids: torch.Tensor, repeats: int) -> float:
    """Milliseconds of one forward and backward pass of ``table`` over ``ids``."""
    for _ in range(3):  # warm-up
        table(ids).pow(2).sum().backward()
    started = time.perf_counter()
    for _ in range(repeats):
        table.weight.grad = None
        table(ids).pow(2).sum().backward()
    return (time.perf_counter() - started) / repeats * 1000


def measure(rows: int, length: int, batch: int, dim: int, repeats: int) -> dict:
    ids = torch.randint(1, rows, (batch, length), generator=torch.Generator().manual_seed(0))
    ids[:, int(length * 0.75) :] = 0  # padding
    torch.manual_seed(0)
    bag = torch.nn.EmbeddingBag(rows, dim, mode="mean", padding_idx=0)
    torch.manual_seed(0)
    shares = SharesBag(rows, dim)
    bag_ms, shares_ms = step_ms(bag, ids, repeats), step_ms(shares, ids, repeats)
    gap = (bag(ids) - shares(ids)).abs().max().item()
    return {
        "rows": rows,
        "length": length,
        "embedding_bag_ms": round(bag_ms, 2),
        "shares_ms": round(shares_ms, 2),
        "shares_faster": shares_ms < bag_ms,
        "rule_takes_shares": rows <= SHARES_BAG_ROWS_PER_ID * length,
        "max_abs_gap": gap,
    }


def table(results: list[dict]) -> str:
    lines = [
        "| table rows | history length | EmbeddingBag (ms) | SharesBag (ms) | faster "
        "| rule takes |",
        "|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        faster = "shares" if r["shares_faster"] else "bag"
        rule = "shares" if r["rule_takes_shares"] else "bag"
        lines.append(
            f"| {r['rows']:,} | {r['length']} | {r['embedding_bag_ms']} | {r['shares_ms']} "
            f"| {faster} | {rule} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[1683, 4000, 16384])
    p.add_argument("--lengths", type=int, nargs="+", default=[20, 50, 200])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    results = [
        measure(rows, length, args.batch, args.dim, args.repeats)
        for rows in args.rows
        for length in args.lengths
    ]
    out = results_header("history_bag") | {
        "settings": {"batch": args.batch, "dim": args.dim, "threads": 1},
        "rows_per_id": SHARES_BAG_ROWS_PER_ID,
        "results": results,
        "table_markdown": table(results),
    }
    write_json(out, args.out)
    print(out["table_markdown"])
    print(f"results -> {args.out}")
    return out


if __name__ == "__main__":
    main()
