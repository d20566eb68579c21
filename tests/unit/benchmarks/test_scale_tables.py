"""The scale runs' index and capacity tables are computed from the records, each with the
provenance of the run it reads, and the docs render each as a snippet of its own."""

import json

from benchmarks import docs_tables, scale_tables


def stage(name, seconds, **more):
    return {"name": name, "seconds": seconds, **more}


def run_20m(when="2026-12-07T22:00:00+00:00", rps=300.0):
    return {
        "interactions": 20_000_000,
        "users": 1_000_000,
        "items": 200_000,
        "completed": True,
        "when": when,
        "code_version": "0.1.0+gabc",
        "machine": {"cpus": 2},
        "stages": [
            stage("validate", 100.0),
            stage("feature build", 400.0),
            stage("materialize", 360.0),
            stage(
                "multistage (Ray Train)",
                700.0,
                ranker_users=30_000,
                steps=[
                    {"step": "sources: two_tower on", "seconds": 20.0},
                    {"step": "two-tower sources: 2 fits", "seconds": 560.0},
                    {"step": "fold 1/1: sources fitted on 7500000 rows", "seconds": 5.0},
                    {"step": "full fit: sources fitted on 15000000 rows", "seconds": 15.0},
                ],
            ),
            stage("evaluate", 10.0, users=2000),
            stage(
                "serve (Ray Serve, HTTP)",
                60.0,
                rps=rps,
                p99_ms=70.0,
                replica_rss_mb={"a": 1024.0, "b": 900.0},
            ),
        ],
    }


def test_the_capacity_model_is_computed_from_the_latest_20m_record():
    runs = [run_20m(rps=100.0), {**run_20m(rps=300.0), "when": "later"}, {"interactions": 5}]
    runs[-1] |= {"completed": True, "stages": []}
    table = scale_tables.tables(runs)["capacity"]
    assert table["when"] == "later" and table["code_version"] == "0.1.0+gabc"
    text = table["markdown"]
    # validate: 100 s at 20M is 5.0 s per 1M; x50 for 1B, x2 CPUs: 2.8 core-hours
    assert "| validate | 100 s | interactions | 5.0 s per 1M (2 CPUs) | 2.8 core-hours" in text
    # the fits: 580 s over 22.5M rows on 2 CPUs; 1.2M entities materialized in 360 s
    assert "580 s on 22.5M rows" in text and "0.30 ms per entity" in text
    assert "300.0 req/s on 2 CPUs" in text and "~67 CPUs of replicas" in text
    assert "| replica memory | 1.00 GiB |" in text


def test_the_index_table_reads_the_largest_catalogs_variants_and_docs_render_it():
    variant = {
        "kind": "ivf",
        "precision": "int8",
        "bytes_per_item": 74.4,
        "build_seconds": 6.1,
        "index_recall_at_100": 0.89,
        "query_ms": 0.05,
        "recall_at_100": 0.2,
        "ndcg_at_10": 0.1,
        "two_tower_alone": {"recall_at_100": 0.21, "ndcg_at_10": 0.11},
    }
    small = {**run_20m(), "items": 10_000, "interactions": 1_000_000}
    large = run_20m(when="earlier")
    for r in (small, large):
        r["stages"] = [*r["stages"], stage("index variants", 50.0, variants=[variant])]
    tables = scale_tables.tables([large, small])
    assert tables["index_variants"]["when"] == "earlier"
    assert (
        "| ivf int8 | 74.4 | 6.1 | 0.89 | 0.05 | 0.2 | 0.1 | 0.21 | 0.11 |"
        in (tables["index_variants"]["markdown"])
    )
    result = {"runs": [large, small], "table_markdown": "|t|", "tables_markdown": tables}
    snippet = docs_tables._snippet(tables["capacity"]["markdown"], tables["capacity"], "scale")
    assert snippet.startswith("*Recorded earlier on 2 CPUs, code 0.1.0+gabc")
    assert json.loads(json.dumps(result)) == result  # what scale.json stores
