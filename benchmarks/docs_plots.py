"""The docs' plots, rendered from ``benchmarks/results/*.json`` as SVG (no plotting library).

- ``docs/img/serving_throughput.svg``: requests per second and p99 latency against the client's
  concurrency, one line per serving topology (``serving_load.json``);
- ``docs/img/quality.svg``: nDCG@10 of each model on both MovieLens-100k test protocols, the
  mean over the recorded seeds, beside Microsoft Recommenders' published figures
  (``quality_movielens.json``).

A test fails when a committed plot differs from what this script renders, as for the tables.

    python -m benchmarks.docs_plots [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from html import escape
from pathlib import Path

from benchmarks import docs_tables

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "docs" / "img"
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#7f7f7f")
FONT = 'font-family="sans-serif" font-size="12"'
# The serving topologies drawn, as (topology, proxy, replicas) of serving_load.json's rows.
SERIES = (
    ("fused", "haproxy", 2),
    ("composed", "haproxy", 2),
    ("fused", "haproxy", "auto"),
    ("fused", "default", "auto"),
    ("composed", "default", "auto"),
)
QUALITY_MODELS = ("popularity", "rp3beta", "ease", "two_tower", "multistage-dcn", "multistage")


def _text(x: float, y: float, s: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {FONT}{extra}>{escape(s)}</text>'


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
    )
    background = f'<rect width="{width}" height="{height}" fill="white"/>'
    return "\n".join([head, f"<title>{escape(title)}</title>", background, *body, "</svg>"]) + "\n"


def _nice_max(value: float) -> float:
    step = 10 ** max(len(str(int(value))) - 1, 0)
    return (int(value / step) + 1) * step


def _panel(
    x0: float, y0: float, w: float, h: float, xs: list, lines: list, y_label: str
) -> list[str]:
    """A line chart at (x0, y0) of size (w, h): categorical ``xs``, ``lines`` as
    (label, colour, {x: y}); the y axis from 0 to a round maximum."""
    top = _nice_max(max(y for _, _, pts in lines for y in pts.values()))
    px = {x: x0 + w * (i + 0.5) / len(xs) for i, x in enumerate(xs)}

    def py(y: float) -> float:
        return y0 + h - h * y / top

    out = [f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>']
    for i in range(5):
        value = top * i / 4
        out.append(
            f'<line x1="{x0}" x2="{x0 + w}" y1="{py(value):.1f}" y2="{py(value):.1f}" '
            'stroke="#eee"/>'
        )
        out.append(_text(x0 - 6, py(value) + 4, f"{value:,.0f}", "end"))
    for x, at in px.items():
        out.append(_text(at, y0 + h + 16, str(x), "middle"))
    out.append(_text(x0 + w / 2, y0 + h + 34, "concurrent clients", "middle"))
    out.append(_text(x0, y0 - 8, y_label))
    for _, colour, pts in lines:
        path = " ".join(f"{px[x]:.1f},{py(y):.1f}" for x, y in pts.items())
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += [
            f'<circle cx="{px[x]:.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>'
            for x, y in pts.items()
        ]
    return out


def serving_plot(result: dict) -> str:
    """Requests per second and p99 against concurrency, a line per topology."""
    rows = result["rows"]
    xs = sorted({r["concurrency"] for r in rows})
    rps, p99 = [], []
    for i, (topology, proxy, replicas) in enumerate(SERIES):
        chosen = [
            r
            for r in rows
            if (r["topology"], r["proxy"], r["replicas"]) == (topology, proxy, replicas)
        ]
        if not chosen:
            continue
        label = f"{topology}, {proxy} proxy, {replicas} replica{'s' if replicas != 1 else ''}"
        colour = COLOURS[i % len(COLOURS)]
        rps.append((label, colour, {r["concurrency"]: r["rps"] for r in chosen}))
        p99.append((label, colour, {r["concurrency"]: r["p99_ms"] for r in chosen}))
    body = _panel(70, 40, 330, 260, xs, rps, "requests per second")
    body += _panel(490, 40, 330, 260, xs, p99, "p99 latency (ms)")
    for i, (label, colour, _) in enumerate(rps):
        y = 360 + 18 * i
        body.append(f'<rect x="70" y="{y - 10}" width="12" height="12" fill="{colour}"/>')
        body.append(_text(90, y, label))
    body.append(_text(840, 360 + 18 * len(rps), _where(result), "end", ' fill="#666"'))
    return _svg(860, 380 + 18 * len(rps), body, "Serving throughput and latency")


def quality_plot(result: dict) -> str:
    """nDCG@10 by model on each test protocol (mean over seeds), published rows beside."""
    by = defaultdict(list)
    for row in result["rows"]:
        by[(row["protocol"], row["model"])].append(row["ndcg"])
    protocols = ("stratified", "temporal")
    bars = []  # (label, {protocol: value})
    for model in QUALITY_MODELS:
        values = {p: sum(by[p, model]) / len(by[p, model]) for p in protocols if by[p, model]}
        if values:
            seeds = max(len(by[p, model]) for p in protocols)
            bars.append((model + (f" (mean of {seeds} seeds)" if seeds > 1 else ""), values))
    for row in result.get("published", []):
        bars.append((row["model"], {"stratified": row["ndcg"]}))
    top = _nice_max(100 * max(v for _, vals in bars for v in vals.values())) / 100
    x0, w, row_h = 260, 520, 34
    body = [_text(x0, 24, f"nDCG@{result.get('k', 10)} on MovieLens-100k (test)")]
    for i, (label, values) in enumerate(bars):
        y = 40 + row_h * i
        body.append(_text(x0 - 8, y + 16, label, "end"))
        for j, protocol in enumerate(protocols):
            if protocol not in values:
                continue
            length = w * values[protocol] / top
            yy = y + 2 + 14 * j
            body.append(
                f'<rect x="{x0}" y="{yy}" width="{length:.1f}" height="12" fill="{COLOURS[j]}"/>'
            )
            body.append(_text(x0 + length + 4, yy + 10, f"{values[protocol]:.4f}"))
    bottom = 40 + row_h * len(bars)
    for j, protocol in enumerate(protocols):
        body.append(
            f'<rect x="{x0 + 160 * j}" y="{bottom + 6}" width="12" height="12" '
            f'fill="{COLOURS[j]}"/>'
        )
        body.append(_text(x0 + 18 + 160 * j, bottom + 16, f"{protocol} protocol"))
    body.append(_text(840, bottom + 40, _where(result), "end", ' fill="#666"'))
    return _svg(860, bottom + 52, body, "Quality on MovieLens-100k")


def _where(result: dict) -> str:
    machine = result.get("machine") or {}
    return (
        f"recorded {str(result.get('when', ''))[:10]}, {machine.get('cpus', '?')} CPUs, "
        f"code {result.get('code_version', '?')}"
    )


PLOTS = {
    "serving_throughput.svg": ("serving_load", serving_plot),
    "quality.svg": ("quality_movielens", quality_plot),
}


def rendered() -> dict[str, str]:
    """File name → SVG, for every plot."""
    return {
        name: draw(json.loads((RESULTS / f"{stem}.json").read_text()))
        for name, (stem, draw) in PLOTS.items()
    }


def stale(directory: Path = IMAGES) -> list[str]:
    """The plots that differ from a fresh rendering, are missing, or are left over."""
    return docs_tables.differing(rendered(), directory, "*.svg")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 where a plot is stale")
    args = p.parse_args(argv)
    command = "python -m benchmarks.docs_plots"
    return docs_tables.sync(rendered(), IMAGES, "*.svg", args.check, command)


if __name__ == "__main__":
    sys.exit(main())
