"""The compiled pipeline: committed YAML is current (golden), the DAG and the gate, the
Kubernetes settings of each variant, and the submit command's checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipelines import client
from pipelines.cluster import VARIANTS
from recsys.cli.main import cli
from recsys.config import RecsysError, free_port
from recsys.registry.gate import GatePolicy

COMPILED = Path(__file__).resolve().parents[3] / "pipelines" / "compiled"
ORDER = ["ingest", "materialize-features", "training-set", "train", "evaluate", "gate"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("compiled")
    return {p.stem: p for p in client.compile_all(out)}


def test_committed_yaml_is_what_the_code_compiles_to(compiled):
    assert set(compiled) == set(client.PACKAGES) == {p.stem for p in COMPILED.glob("*.yaml")}
    assert set(VARIANTS) < set(compiled) and "monitoring" in compiled
    for name, fresh in compiled.items():
        committed = COMPILED / f"{name}.yaml"
        assert committed.read_text() == fresh.read_text(), (
            f"{committed} is stale: run `recsys pipeline compile` and commit the result"
        )


def docs(path: Path) -> tuple[dict, dict]:
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform


def test_the_dag_gates_register_and_deploy_on_the_verdict(compiled):
    spec, _ = docs(compiled["training"])
    tasks = spec["root"]["dag"]["tasks"]
    assert set(ORDER) <= set(tasks)
    deps = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    for before, after in zip(ORDER, ORDER[1:], strict=False):
        assert before in deps[after] or any(before in deps[d] for d in deps[after])
    promote = tasks["condition-1"]
    condition = promote["triggerPolicy"]["condition"]
    assert "pipelinechannel--gate-Output" in condition and "== true" in condition
    inner = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    assert set(inner) == {"register", "deploy"}
    # registry and feature store are outside state: nothing may come from the KFP cache
    assert all(not t.get("cachingOptions", {}).get("enableCache") for t in tasks.values())
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["margin"]["defaultValue"] == 0.005
    # the gate's three settings are the pipeline's parameters, with the gate's own defaults
    policy = GatePolicy()
    for name in ("margin", "coverage_tolerance", "baseline_margin"):
        assert params[name]["defaultValue"] == getattr(policy, name), name
    assert params["source"]["defaultValue"] == "movielens-100k"
    outputs = set(spec["root"]["outputDefinitions"]["artifacts"])
    assert outputs == {"evaluation", "decision", "report"}
    image = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["image"]
    assert image.startswith("ghcr.io/recsys-platform/recsys:")
    # the components run in the platform image: no pip install at start
    command = " ".join(spec["deploymentSpec"]["executors"]["exec-train"]["container"]["command"])
    assert "pip install" not in command


def test_gpu_variant_puts_training_on_a_gpu_node_and_the_cpu_one_does_not(compiled):
    _, cpu = docs(compiled["training"])
    _, gpu = docs(compiled["training-gpu"])
    gpu_train = gpu["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert gpu_train["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert gpu_train["tolerations"][0]["key"] == "nvidia.com/gpu"
    cpu_train = cpu["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert "nodeSelector" not in cpu_train and "tolerations" not in cpu_train
    spec, _ = docs(compiled["training-gpu"])
    resources = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceCount"] == "1"
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    for executor in cpu["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values():
        assert executor["pvcMount"][0]["mountPath"] == "/var/lib/recsys"
        assert executor["secretAsEnv"][0]["secretName"] == "recsys-object-store"
    # Both tasks that open the feature store see the same Redis configuration (and so the
    # same Feast registry), and the repository on the shared volume.
    for name in ("exec-materialize-features", "exec-training-set"):
        feast_task = cpu["platforms"]["kubernetes"]["deploymentSpec"]["executors"][name]
        redis = [s for s in feast_task["secretAsEnv"] if s["secretName"] == "recsys-redis"]
        assert redis[0]["keyToEnv"][0]["envVar"] == "REDIS_CONNECTION_STRING"
        env = spec["deploymentSpec"]["executors"][name]["container"]["env"]
        assert {"name": "RECSYS_FEAST_ONLINE", "value": "redis"} in env
    repo = spec["root"]["inputDefinitions"]["parameters"]["feature_repo"]["defaultValue"]
    assert repo == "/var/lib/recsys/feature_repo"


def test_monitoring_pipeline_retrains_only_on_a_retrain_decision(compiled):
    spec, platform = docs(compiled["monitoring"])
    tasks = spec["root"]["dag"]["tasks"]
    condition = tasks["condition-1"]["triggerPolicy"]["condition"]
    assert "pipelinechannel--monitor-check-Output" in condition and "'retrain'" in condition
    inner = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    assert set(inner) == {"start-retraining"}
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["predictions"]["defaultValue"].startswith("/var/lib/recsys/")
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {e["pvcMount"][0]["constant"] for e in executors.values()} == {"recsys-data"}
    # The retraining submits the package the image installed (no checkout path in the image).
    body = " ".join(
        spec["deploymentSpec"]["executors"]["exec-start-retraining"]["container"]["command"]
    )
    assert 'files("pipelines") / "compiled" / "training.yaml"' in body
    assert "/app/pipelines" not in body


def test_cron_takes_five_or_six_fields():
    assert client.cron("0 3 * * *") == "0 0 3 * * *"
    assert client.cron("30 0 3 * * 1") == "30 0 3 * * 1"
    with pytest.raises(RecsysError, match="expected a cron expression of 5 fields"):
        client.cron("daily")


def test_submit_to_an_unreachable_host_fails_fast_and_clearly():
    host = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(cli, ["pipeline", "submit", "--host", host])
    assert result.exit_code == 1
    assert f"cannot reach the Kubeflow Pipelines API at {host}" in result.output
    bad = CliRunner().invoke(cli, ["pipeline", "submit", "--host", host, "--schedule", "x y"])
    assert bad.exit_code == 1 and "--schedule 'x y'" in bad.output
    param = CliRunner().invoke(cli, ["pipeline", "submit", "--host", host, "--param", "k"])
    assert param.exit_code == 1 and "--param 'k': expected key=value" in param.output


def test_run_refuses_bad_params_before_running(tmp_path):
    result = CliRunner().invoke(
        cli, ["pipeline", "run", "training", "--no-features", "--params", "{epochs: 3}"]
    )
    assert result.exit_code == 1 and "--params: not JSON" in result.output
    result = CliRunner().invoke(
        cli, ["pipeline", "run", "training", "--feature-repo", str(tmp_path)]
    )
    assert result.exit_code == 1 and "no feature_store.yaml there" in result.output


def test_run_passes_the_training_resources_to_the_pipeline(tmp_path, monkeypatch):
    """The GPU RayJob's entrypoint: `--gpu --num-workers 2` become the pipeline parameters,
    and every argument is one the pipeline declares."""
    seen = {}

    def fake_run_local(arguments, workdir, log_file=None):
        seen.update(arguments)
        raise RecsysError("stop here")

    monkeypatch.setattr(client, "run_local", fake_run_local)
    args = ["pipeline", "run", "training", "--no-features", "--gpu", "--num-workers", "2"]
    result = CliRunner().invoke(cli, [*args, "--workdir", str(tmp_path)])
    assert result.exit_code == 1 and "stop here" in result.output
    assert seen["gpu"] is True and seen["num_workers"] == 2
    declared = yaml.safe_load((client.COMPILED / "training.yaml").read_text().split("\n---")[0])
    assert set(seen) <= set(declared["root"]["inputDefinitions"]["parameters"])


def test_local_runs_keep_task_output_in_the_log_and_show_task_status(tmp_path):
    import io

    terminal = io.StringIO()
    sink = client._TaskLines(tmp_path / "run.log", terminal)
    sink.write("10:50:47.218 - INFO - Executing task \x1b[96m'ingest'\x1b[0m\n    fetching\n")
    sink.write("10:50:48.318 - INFO - Task \x1b[96m'ingest'\x1b[0m finished with status ")
    sink.write("\x1b[92mSUCCESS\x1b[0m\n10:50:48.319 - INFO - Task 'ingest' outputs:\n")
    sink.write("progress: fold 1/5: sources fitted on 60000 rows\nepoch 3 loss 0.1\n")
    sink.close()
    assert terminal.getvalue().splitlines() == [
        "  10:50:47.218 - INFO - Executing task 'ingest'",
        "  10:50:48.318 - INFO - Task 'ingest' finished with status SUCCESS",
        "  progress: fold 1/5: sources fitted on 60000 rows",
    ]
    assert "    fetching" in (tmp_path / "run.log").read_text()
