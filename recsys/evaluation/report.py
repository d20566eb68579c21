"""Tables of metrics: markdown for people, JSON for machines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

COLUMNS = (
    ("ndcg", "nDCG@k"),
    ("map", "MAP"),
    ("precision", "P@k"),
    ("recall", "R@k"),
    ("f1", "F1@k"),
    ("hit_rate", "HR@k"),
    ("mrr", "MRR"),
    ("map_at_k", "MAP@k"),
    ("catalog_coverage", "Coverage"),
    ("novelty", "Novelty"),
    ("arp", "ARP"),
)


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.4f}"
    return str(value)


def markdown_table(
    rows: Sequence[Mapping[str, object]],
    *,
    name_key: str = "model",
    extra: Sequence[tuple[str, str]] = (),
) -> str:
    """A markdown table with one row per mapping; absent metrics print as a dash."""
    cols = [(name_key, name_key.capitalize()), *COLUMNS, *extra]
    present = [(k, h) for k, h in cols if any(r.get(k) is not None for r in rows) or k == name_key]
    lines = [
        "| " + " | ".join(h for _, h in present) + " |",
        "|" + "|".join("---" for _ in present) + "|",
    ]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(k)) for k, _ in present) + " |")
    return "\n".join(lines)
