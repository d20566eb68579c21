"""The benchmarks' own pieces: the serving benchmark's CPU meter (it finds this process and
charges it the CPU it spends), its CPU table, the scale benchmark's join-size count, and the
feature benchmark's count of online rows."""

import json
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch

from benchmarks import gpu_check
from benchmarks.assignment_http import replica_arms
from benchmarks.features import entity_rows
from benchmarks.multinode import _split_args
from benchmarks.scale import frame_checksum, join_pairs
from benchmarks.serving_load import CpuMeter, cpu_table, process_class, replica_deployment
from benchmarks.train_nodes import parse_args as nodes_args
from benchmarks.train_nodes import table as nodes_table
from recsys.data.io import ITEM, USER
from recsys.evaluation.tables import results_header
from recsys.features.build import TABLES, build_features
from tests.helpers import make_interactions, side_tables


def test_the_meter_charges_this_process_the_cpu_it_spent_per_request():
    assert process_class(psutil.Process()) == "load generator (+ Ray driver)"
    meter = CpuMeter()
    t0 = time.process_time()
    while time.process_time() - t0 < 0.2:  # 200 ms of CPU here
        sum(range(1000))
    ms = meter.per_request_ms(requests=10)
    assert 15 <= ms["load generator (+ Ray driver)"] <= 30  # 200 ms / 10 requests, ticks aside
    assert ms["total"] >= ms["load generator (+ Ray driver)"]


def test_the_cpu_table_has_a_column_per_kind_of_process():
    rows = [
        {
            "proxy": "haproxy",
            "topology": "fused",
            "concurrency": 16,
            "rps": 200.0,
            "cpu_ms_per_request": {"replica Ingress": 6.0, "haproxy": 0.2, "total": 6.2},
        },
        {
            "proxy": "haproxy",
            "topology": "fused",
            "concurrency": 1,
            "rps": 60.0,
            "cpu_ms_per_request": {"replica Ingress": 9.0, "total": 9.0},
        },
    ]
    table = cpu_table(rows).splitlines()
    assert table[2] == "| proxy | topology | req/s | replica Ingress | haproxy | total |"
    assert table[4] == "| haproxy | fused | 200.0 | 6.0 | 0.2 | 6.2 |"
    assert len(table) == 5  # concurrency 16 only


def test_the_scale_benchmark_counts_the_pairs_a_per_key_join_forms(tmp_path):
    """Feast's DuckDB join pairs each entity row with every feature row of its key: the
    benchmark counts them per view before it runs the join."""
    (tmp_path / "data").mkdir()
    ts = pd.Timestamp("2024-01-01", tz="UTC")
    pd.DataFrame(
        {"user_id": ["a", "a", "a", "b"], "event_timestamp": [ts] * 4, "x": range(4)}
    ).to_parquet(tmp_path / "data" / "user_activity.parquet")
    pd.DataFrame({"item_id": ["i", "j"], "event_timestamp": [ts] * 2}).to_parquet(
        tmp_path / "data" / "item_stats.parquet"
    )
    entity = pd.DataFrame({"user_id": ["a", "a", "b", "c"], "item_id": ["i", "i", "i", "j"]})
    # users: a has 3 feature rows x 2 entity rows, b 1 x 1; items: i 1 x 3, j 1 x 1
    assert join_pairs(tmp_path, entity) == {"item_stats": 4, "user_activity": 7}


def test_the_training_set_checksum_reads_list_features_and_changes_with_any_value():
    frame = pd.DataFrame({"user_id": ["a", "b"], "affinity": [[0.5, 0.5], [1.0, 0.0]], "n": [1, 2]})
    same = pd.DataFrame({"user_id": ["a", "b"], "affinity": [[0.5, 0.5], [1.0, 0.0]], "n": [1, 2]})
    assert frame_checksum(frame) == frame_checksum(same)
    same.at[1, "affinity"] = [0.0, 1.0]
    assert frame_checksum(frame) != frame_checksum(same)
    assert frame_checksum(frame) == frame_checksum(frame.iloc[::-1])  # any row order
    assert frame_checksum(frame) != frame_checksum(frame.iloc[:1])
    # a batch of rows with a null reads its integers as floats: the checksum is the same
    halves = frame_checksum(frame.iloc[:1]) + frame_checksum(frame.iloc[1:].astype({"n": float}))
    assert halves % 2**61 == frame_checksum(frame)


def test_a_replica_is_named_by_its_deployment():
    assert replica_deployment("ray::ServeReplica:recsys:Ingress") == ("recsys", "Ingress")
    assert replica_deployment("ray::ServeReplica:noop:Hop_1 extra") == ("noop", "Hop_1")
    assert replica_deployment("ray::ServeController") is None


def test_the_online_rows_count_every_table_by_its_own_entity(tmp_path):
    """One online row per key and view; a view added to the build is counted by its key (a
    fixed table-to-key list once missed ``user_state`` and the benchmark crashed)."""
    users, items = side_tables()
    build_features(make_interactions(), users, items, tmp_path / "data")
    keys = {t: USER if t.startswith("user_") else ITEM for t in TABLES}
    expected = sum(
        pd.read_parquet(tmp_path / "data" / f"{t}.parquet")[key].nunique()
        for t, key in keys.items()
    )
    assert entity_rows(tmp_path) == expected > 0


def test_the_quality_summary_weighs_the_shipped_model_against_its_rivals_only():
    """The shipped model's own cross-fittings (one of them is the shipped model at its first
    seed) are its ablation, not a rival; the DCN ranker and the sources are."""
    from recsys.evaluation.quality import BENCHMARK_MODELS, CROSSFIT_ROWS, quality_summary

    assert set(CROSSFIT_ROWS) <= {m.label for m in BENCHMARK_MODELS}

    def row(model, ndcg, seed=None, hit_rate=0.5):
        metrics = {"map": ndcg / 3, "precision": ndcg, "recall": ndcg / 2, "hit_rate": hit_rate}
        return {"protocol": "temporal", "model": model, "seed": seed, "ndcg": ndcg, **metrics}

    rows = [
        row("multistage", 0.29, 42, hit_rate=0.9),
        row("multistage", 0.28, 7, hit_rate=0.9),
        row("multistage-user-time", 0.29),  # the shipped model at seed 42: not a rival
        row("ease", 0.22),
        row("multistage-dcn", 0.25, hit_rate=0.95),
    ]
    summary = quality_summary(rows)["temporal"]
    assert summary["ndcg_min"] == 0.28 and summary["min_gain_over_ease"] == 0.06
    assert summary["above_every_other_row_every_seed"]["ndcg"] is True
    assert summary["above_every_other_row_every_seed"]["hit_rate"] is False  # the DCN's 0.95
    alone = quality_summary(rows[:3])["temporal"]["above_every_other_row_every_seed"]
    assert alone["ndcg"] is None  # no rival in the run: nothing to be above


def test_an_option_row_runs_only_when_named():
    from recsys.config import RecsysError
    from recsys.evaluation.quality import BENCHMARK_MODELS, OPTION_MODELS
    from recsys.workflows.quality import select_models

    assert select_models(None) == BENCHMARK_MODELS
    assert not set(OPTION_MODELS) & set(select_models(None))
    [option] = select_models("multistage-two-tower")
    assert option.kind == "multistage" and option.params["n_two_tower"] == 100
    with pytest.raises(RecsysError, match="unknown"):
        select_models("multistage-bogus")


ROOT = Path(__file__).resolve().parents[3]
WRITERS = (
    "catalog_scale",
    "gpu_check",
    "train_wall",
    "train_nodes",
    "history_bag",
    "data_statistics",
    "experiments",
    "features",
    "multinode",
    "assignment_http",
    "cold_items",
    "content_encoding",
    "replica_loss",
    "scale",
    "serving_load",
    "train_throughput",
)


def test_every_benchmark_writes_the_one_header():
    header = results_header("train_throughput", accelerator="NVIDIA H100")
    assert list(header) == ["benchmark", "when", "code_version", "machine"]
    assert list(header["machine"]) == ["platform", "python", "cpus", "memory_gib", "accelerator"]
    assert header["machine"]["accelerator"] == "NVIDIA H100"
    assert results_header("features")["machine"]["accelerator"] is None
    # the quality benchmark's file is written by the quality workflow (`recsys benchmark quality`)
    sources = [ROOT / "benchmarks" / f"{name}.py" for name in WRITERS]
    for source in [*sources, ROOT / "recsys" / "workflows" / "quality.py"]:
        text = source.read_text()
        writes = "results_header(" in text or "demo_main(" in text  # demo_main calls it
        assert writes and '"machine"' not in text, source.name


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_the_gpu_check_says_so_and_writes_nothing_without_a_gpu(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--out", str(out)]) == gpu_check.NO_GPU
    assert "no CUDA device" in capsys.readouterr().err and not out.exists()


def test_the_committed_results_files_still_read():
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        result = json.loads(path.read_text())
        assert result["benchmark"] in path.stem, path.name


def test_the_multinode_run_takes_its_own_options_and_passes_the_rest_to_scale():
    mine, rest = _split_args(["--nodes", "3", "--interactions=20000", "--cpus-per-node=1"])
    assert mine == {"--nodes": 3, "--cpus-per-node": 1}
    assert rest == ["--interactions=20000"]
    assert _split_args([]) == ({"--nodes": 2, "--cpus-per-node": 2}, [])


def test_a_run_is_appended_to_the_runs_already_recorded(tmp_path, capsys):
    from recsys.evaluation.tables import append_run

    out = tmp_path / "scale.json"

    def table(runs):
        return "\n".join(f"| {r['n']} |" for r in runs)

    append_run("scale", {"n": 1}, out, table)
    append_run("scale", {"n": 2}, out, table)
    result = json.loads(out.read_text())
    assert result["benchmark"] == "scale" and [r["n"] for r in result["runs"]] == [1, 2]
    assert result["table_markdown"] == "| 1 |\n| 2 |"
    assert capsys.readouterr().out.splitlines()[-2:] == ["| 2 |", f"results -> {out}"]


def test_the_assignment_check_reads_each_replicas_arms_from_its_own_log(tmp_path):
    """One prediction-log file per replica process: a user answered by both is seen in both,
    with the arm each gave it; other experiments' records are not counted."""

    def log(pid: int, records: list[tuple[str, str, str]]) -> None:
        lines = [
            json.dumps({"request": {"user_id": u}, "arm": a, "experiment": e})
            for u, a, e in records
        ]
        (tmp_path / f"predictions-20261207T000000-{pid}-0.jsonl").write_text("\n".join(lines))

    log(11, [("a", "control", "x"), ("b", "challenger", "x"), ("a", "control", "other")])
    log(12, [("a", "challenger", "x"), ("c", "control", "x")])
    arms = replica_arms(tmp_path, "x")
    assert {pid: dict(users) for pid, users in arms.items()} == {
        "11": {"a": {"control"}, "b": {"challenger"}},
        "12": {"a": {"challenger"}, "c": {"control"}},
    }


def test_the_nodes_table_shows_both_runs_and_the_check_on_the_workers_row():
    runs = [
        {"workers": 1, "epoch_s": 30.0, "examples_per_s": 30_000, "wall_s": 80.0, "val_ndcg": 0.1},
        {"workers": 2, "epoch_s": 20.0, "examples_per_s": 45_000, "wall_s": 60.0, "val_ndcg": 0.09},
    ]
    record = {"interactions": 1_000_000, "nodes": 2, "cpus_per_node": 1, "runs": runs}
    lines = nodes_table([record | {"speedup_epoch": 1.5, "check": False}]).splitlines()
    assert (
        len(lines) == 4 and "| 1,000,000 | 2 × 1 | 1 | 30.0 | 30,000 | 80.0 | 0.1 |  |  |" in lines
    )
    assert lines[3].endswith("| 1.5× | FAIL |")
    assert nodes_args([]).nodes == 2 and nodes_args(["--epochs", "3"]).epochs == 3
