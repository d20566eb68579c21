"""The experiment decision's own figures, on seeded simulated users (no app): how often the
always-valid test names a winner when the arms are the same (A/A, read at every user), against
a fixed-horizon t-test read every 100 users; how often, and after how many users, it finds the
better arm of an A/B split and of interleaving. With ``--live``, also the experiment demo on
the real app (``recsys experiment demo``: the multi-stage model against popularity, MovieLens
users clicking what they rated later): the users each design needed to decide.

    python benchmarks/experiments.py [--experiments 200] [--users 6000] [--live]

Prints a table and writes ``benchmarks/results/experiments.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import stats

from recsys.config import recsys_home
from recsys.evaluation.tables import results_header
from recsys.experiments.sequential import compare_arms, interleaving_preference
from recsys.features.repository import default_repo
from recsys.files import write_json
from recsys.workflows.experiment_demo import ExperimentDemo, run_experiment_demo

RESULTS = Path(__file__).parent / "results" / "experiments.json"


def ab(rng, n: int, p_control: float, p_challenger: float):
    """``n`` users, half in each arm at random, each clicking with their arm's probability."""
    arrivals = rng.random(n) < 0.5
    values = np.where(arrivals, rng.random(n) < p_challenger, rng.random(n) < p_control)
    return values[~arrivals].astype(float), values[arrivals].astype(float), arrivals


def first_call(decide, n: int, step: int) -> int | None:
    """The first user count (every ``step``) at which ``decide(n)`` names the better arm."""
    for m in range(step, n + 1, step):
        if decide(m) == "challenger":
            return m
    return None


def run(args: argparse.Namespace) -> dict:
    aa = peeking = 0
    for seed in range(args.experiments):
        a, b, order = ab(np.random.default_rng(seed), 2000, 0.1, 0.1)
        aa += compare_arms(a, b, order, min_users=100).winner is not None
        peeking += any(
            stats.ttest_ind(a[: (~order[:m]).sum()], b[: order[:m].sum()]).pvalue < 0.05
            for m in range(200, 2001, 100)
        )
    split_users, mixed_users = [], []
    for seed in range(args.power_experiments):
        rng = np.random.default_rng(10_000 + seed)
        a, b, order = ab(rng, args.users, args.ctr, args.ctr + args.lift)

        def split(m, a=a, b=b, order=order):
            na, nb = int((~order[:m]).sum()), int(order[:m].sum())
            return compare_arms(a[:na], b[:nb], order[:m], min_users=100).winner

        # interleaving: every user sees both arms; the one whose items they click more wins
        # (a user clicks the control's items with p, the challenger's with p + lift)
        ca = rng.random(args.users) < args.ctr
        cb = rng.random(args.users) < args.ctr + args.lift
        prefs = cb.astype(float) - ca.astype(float)

        def mixed(m, prefs=prefs):
            return interleaving_preference(prefs[:m], min_users=100).winner

        split_users.append(first_call(split, args.users, args.step))
        mixed_users.append(first_call(mixed, args.users, args.step))
    return {
        "aa": {
            "experiments": args.experiments,
            "users": 2000,
            "msprt_false_winner_share": aa / args.experiments,
            "peeking_t_test_false_winner_share": peeking / args.experiments,
        },
        "power": {
            "experiments": args.power_experiments,
            "ctr": args.ctr,
            "lift": args.lift,
            "max_users": args.users,
            "split_called": _summary(split_users),
            "interleaving_called": _summary(mixed_users),
        },
    }


def live() -> dict:
    """The experiment demo's two experiments: per-arm rows, decision, users needed."""
    demo = ExperimentDemo(recsys_home() / "runs" / "experiment-demo", default_repo())
    done = run_experiment_demo(demo, log=print)
    keep = ("arms", "srm_p_value", "decision", "users_needed")
    return {mode: {k: r[k] for k in keep} for mode, r in done.items()}


def _summary(users: list[int | None]) -> dict:
    found = [u for u in users if u is not None]
    return {
        "share": len(found) / len(users),
        "median_users": float(np.median(found)) if found else None,
    }


def table(result: dict) -> str:
    aa, power, config = result["aa"], result["power"], result["config"]
    lines = ["| what | figure |", "|---|---|"]
    lines.append(
        f"| A/A, mSPRT read at every user: false winner | {aa['msprt_false_winner_share']:.1%} |"
    )
    peeking = aa["peeking_t_test_false_winner_share"]
    lines.append(f"| A/A, t-test read every 100 users: false winner | {peeking:.1%} |")
    for name in ("split", "interleaving"):
        s = power[f"{name}_called"]
        what = f"CTR {config['ctr']} vs +{config['lift']}, {name}: called"
        median = "-" if s["median_users"] is None else f"{s['median_users']:,.0f}"
        lines.append(f"| {what} | {s['share']:.0%}, median {median} users |")
    for mode, r in result.get("live", {}).items():
        winner = r["decision"]["winner"]
        lines.append(f"| live {mode}: decided after | {r['users_needed']} users ({winner}) |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", type=int, default=200, help="A/A experiments")
    p.add_argument("--power-experiments", type=int, default=50)
    p.add_argument("--users", type=int, default=6000, help="users per power experiment")
    p.add_argument("--ctr", type=float, default=0.10)
    p.add_argument("--lift", type=float, default=0.03)
    p.add_argument("--step", type=int, default=100, help="users between looks (power)")
    p.add_argument("--live", action="store_true", help="and the demo on the real app (2 min)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    result = {**results_header("experiments"), "config": {**vars(args), "out": str(args.out)}}
    result |= run(args)
    if args.live:
        result["live"] = live()
    result["table_markdown"] = table(result)
    write_json(result, args.out)
    print(result["table_markdown"])
    print(f"results -> {args.out}")


if __name__ == "__main__":
    main()
