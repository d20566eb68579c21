"""The Helm chart, offline: Helm v4's engine renders and lints it (helm-python-sdk), the core
objects validate against the Kubernetes schemas (kubernetes-validate), the KubeRay objects
against the ray.io/v1 fields, and the policies every manifest must keep."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from pipelines.cluster import ClusterSettings
from recsys import __version__, serve_ops
from recsys.config import RecsysError
from serving.schemas import AppArgs, ModelSelection

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas.
KUBE_VERSIONS = ("1.27", kubernetes_validate.utils.latest_version())


def _load_render():
    spec = importlib.util.spec_from_file_location("k8s_render", ROOT / "k8s" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _load_render()


@pytest.fixture(scope="module")
def envs() -> dict[str, dict]:
    """``{env: {"values", "docs"}}`` for every k8s/values-<env>.yaml, rendered once."""
    out = {}
    for env, path in render.environments().items():
        values = render.load_values(path)
        out[env] = {"values": values, "docs": render.documents(render.render(values))}
    return out


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str) -> dict:
    (doc,) = by_kind(docs, kind)
    return doc


def pod_templates(doc: dict) -> list[tuple[str, dict]]:
    """``(where, pod template)`` for every pod a rendered object makes."""
    spec, kind = doc.get("spec", {}), doc["kind"]
    if kind in ("Deployment", "StatefulSet"):
        return [(kind, spec["template"])]
    if kind == "CronJob":
        return [(kind, spec["jobTemplate"]["spec"]["template"])]
    if kind in ("RayService", "RayJob"):
        cluster = spec["rayClusterConfig"] if kind == "RayService" else spec["rayClusterSpec"]
        pods = [(f"{kind} head", cluster["headGroupSpec"]["template"])]
        pods += [(f"{kind} {g['groupName']}", g["template"]) for g in cluster["workerGroupSpecs"]]
        if kind == "RayJob":
            pods.append((f"{kind} submitter", spec["submitterPodTemplate"]))
        return pods
    return []


def containers(docs: list[dict]):
    """``(where, pod spec, container, long_running)`` for every container, init ones too."""
    for doc in docs:
        for where, template in pod_templates(doc):
            pod = template["spec"]
            long_running = doc["kind"] in ("Deployment", "StatefulSet", "RayService")
            for c in pod.get("initContainers", []):
                yield f"{doc['metadata']['name']} {where} init {c['name']}", pod, c, False
            for c in pod["containers"]:
                yield f"{doc['metadata']['name']} {where} {c['name']}", pod, c, long_running


def test_both_value_sets_render_and_lint_clean_in_strict_mode(envs):
    assert set(envs) == {"local", "gpu"}
    for env, rendered in envs.items():
        report = render.lint(rendered["values"])
        findings = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors
        assert report["errors"] == [] and findings == [], (env, report)
        kinds = {d["kind"] for d in rendered["docs"]}
        assert {"RayService", "RayJob", "Deployment", "StatefulSet", "CronJob"} <= kinds
        assert {"NetworkPolicy", "PodDisruptionBudget", "ServiceAccount", "Role"} <= kinds
        assert "Secret" not in kinds  # secrets are referenced, never created from values


def test_committed_renderings_are_fresh():
    assert render.stale() == [], "run `make k8s` and commit k8s/rendered/"


def test_core_objects_validate_against_the_kubernetes_schemas(envs):
    checked = 0
    for env, rendered in envs.items():
        for doc in rendered["docs"]:
            subjects = [] if doc["apiVersion"].startswith("ray.io/") else [doc]
            # The Ray pod templates are core PodTemplateSpecs inside the custom resources.
            subjects += [
                {
                    "apiVersion": "v1",
                    "kind": "PodTemplate",
                    "metadata": {"name": "t"},
                    "template": t,
                }
                for _, t in pod_templates(doc)
                if doc["apiVersion"].startswith("ray.io/")
            ]
            for subject in subjects:
                for version in KUBE_VERSIONS:
                    try:
                        kubernetes_validate.validate(subject, version, strict=True)
                    except kubernetes_validate.ValidationError as exc:
                        path = "/".join(map(str, exc.path))
                        pytest.fail(f"{env}: {doc['kind']} {doc['metadata']['name']} {path}: {exc}")
                checked += 1
    assert checked > 30


def kuberay_validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((FIXTURES / "kuberay_v1.schema.json").read_text())
    return jsonschema.Draft202012Validator({**schema, "$ref": f"#/$defs/{kind}"})


def test_rayservice_and_rayjob_use_only_kuberay_v1_fields(envs):
    for env, rendered in envs.items():
        for kind in ("RayService", "RayJob"):
            doc = one(rendered["docs"], kind)
            errors = [
                f"{'/'.join(map(str, e.path))}: {e.message}"
                for e in kuberay_validator(kind).iter_errors(doc)
            ]
            assert errors == [], (env, kind, errors)
        job = one(rendered["docs"], "RayJob")["spec"]
        assert job["submissionMode"] == "K8sJobMode"
        assert job["shutdownAfterJobFinishes"] is True and job["ttlSecondsAfterFinished"] > 0
        cluster = one(rendered["docs"], "RayService")["spec"]["rayClusterConfig"]
        assert cluster["enableInTreeAutoscaling"] is True
        assert cluster["rayVersion"] == __import__("ray").__version__


def test_the_kuberay_check_catches_a_misspelled_field_and_a_non_string_start_param(envs):
    job = json.loads(json.dumps(one(envs["local"]["docs"], "RayJob")))
    job["spec"]["shutdownAfterJobFinish"] = job["spec"].pop("shutdownAfterJobFinishes")
    job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    messages = [e.message for e in kuberay_validator("RayJob").iter_errors(job)]
    assert any("shutdownAfterJobFinish" in m for m in messages)
    assert any("0 is not of type 'string'" in m for m in messages)


def test_every_container_has_resources_a_locked_down_security_context_and_a_pinned_image(envs):
    for env, rendered in envs.items():
        seen = 0
        for where, pod, c, long_running in containers(rendered["docs"]):
            seen += 1
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][bound]), (env, where, bound)
            security = c["securityContext"]
            non_root = security.get("runAsNonRoot", pod["securityContext"].get("runAsNonRoot"))
            assert non_root is True, (env, where)
            user = security.get("runAsUser", pod["securityContext"].get("runAsUser"))
            assert user is not None and user != 0, (env, where)  # verifiable as non-root
            assert security["allowPrivilegeEscalation"] is False, (env, where)
            assert security["capabilities"]["drop"] == ["ALL"], (env, where)
            assert security["readOnlyRootFilesystem"] is True, (env, where)
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), (env, where)
            if long_running:
                assert "readinessProbe" in c and "livenessProbe" in c, (env, where)
        assert seen >= 10
        for doc in rendered["docs"]:
            for where, template in pod_templates(doc):
                volumes = {v["name"] for v in template["spec"].get("volumes", [])}
                claims = doc["spec"].get("volumeClaimTemplates", [])
                volumes |= {t["metadata"]["name"] for t in claims}
                mounts = {
                    m["name"]
                    for c in template["spec"]["containers"]
                    for m in c.get("volumeMounts", [])
                }
                assert mounts <= volumes, (env, where)


def test_secrets_are_referenced_by_name_and_never_inlined(envs):
    values = envs["local"]["values"]
    names = {"recsys-redis", "recsys-object-store"}
    for env, rendered in envs.items():
        for where, _, c, _ in containers(rendered["docs"]):
            for var in c.get("env", []):
                if "valueFrom" in var:
                    assert var["valueFrom"]["secretKeyRef"]["name"] in names, (env, where)
                else:
                    assert not any(w in var["name"] for w in ("PASSWORD", "SECRET", "KEY")), where
    assert values.get("secrets") is None  # the env files keep the defaults


CLUSTER_ARGS = {
    "model_root": "/var/lib/recsys/registry/versions",
    "feature_repo": "/var/lib/recsys/feature_repo",
    "online_store": "redis",
    "events_dir": "/var/lib/recsys/serving/events",
    "items_dir": "/var/lib/recsys/serving/items",
    "prediction_log_dir": "/var/lib/recsys/serving/predictions",
}


def serve_config_of(values: dict) -> dict:
    rayservice = one(render.documents(render.render(values)), "RayService")
    return yaml.safe_load(rayservice["spec"]["serveConfigV2"])


def test_the_serve_config_has_one_source(envs):
    link = ROOT / "k8s" / "chart" / "files" / "serve-config.yaml"
    assert link.is_symlink() and link.resolve() == (ROOT / "serving" / "config.yaml").resolve()
    rendered = yaml.safe_load(one(envs["local"]["docs"], "RayService")["spec"]["serveConfigV2"])
    assert rendered == serve_ops.serve_config(args=CLUSTER_ARGS)
    # The same overrides `recsys serve start` applies: a version, a topology, a port.
    values = {"serve": {"modelVersion": "v7", "args": {"topology": "fused"}, "port": 9000}}
    rayservice = one(render.documents(render.render(values)), "RayService")
    rendered = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    expected = serve_ops.serve_config(
        args=CLUSTER_ARGS, model_version="v7", topology="fused", port=9000
    )
    assert rendered == expected and [
        d["name"] for d in rendered["applications"][0]["deployments"]
    ] == ["Ingress", "Shadow"]
    # Ray Serve's own schema and the app's strict arguments accept it.
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(rendered)
    AppArgs.model_validate(rendered["applications"][0]["args"])


def test_an_experiment_in_the_values_is_the_user_config_the_app_validates():
    """``serve.experiment`` runs against ``serve.modelVersion`` (its control): the same
    ``user_config`` as ``serve_config`` writes, and one the app's ModelSelection accepts."""
    experiment = {"name": "ranker-v2", "challenger": "v8", "share": 0.1, "minUsers": 500}
    rendered = serve_config_of({"serve": {"modelVersion": "v7", "experiment": experiment}})
    expected = {"name": "ranker-v2", "control": "v7", "challenger": "v8"}
    expected |= {"share": 0.1, "min_users": 500}
    assert rendered == serve_ops.serve_config(
        args=CLUSTER_ARGS, model_version="v7", experiment=expected
    )
    for deployment in rendered["applications"][0]["deployments"]:
        selection = ModelSelection.model_validate(deployment["user_config"])
        assert selection.versions() == ["v7", "v8"] and selection.experiment.share == 0.1
        assert selection.experiment.mode == "split" and selection.experiment.min_users == 500
    interleave = {"name": "i", "challenger": "v8", "mode": "interleave"}
    rendered = serve_config_of({"serve": {"modelVersion": "v7", "experiment": interleave}})
    user_config = rendered["applications"][0]["deployments"][0]["user_config"]
    assert ModelSelection.model_validate(user_config).experiment.mode == "interleave"
    shadow = {"name": "s", "challenger": "v8", "mode": "shadow", "share": 1}
    rendered = serve_config_of({"serve": {"modelVersion": "v7", "experiment": shadow}})
    names = [d["name"] for d in rendered["applications"][0]["deployments"]]
    assert names == ["Ingress", "CandidateGenerator", "Ranker", "Shadow"]
    selection = ModelSelection.model_validate(
        rendered["applications"][0]["deployments"][0]["user_config"]
    )
    assert selection.versions() == ["v7"] and selection.shadow() == "v8"  # the Shadow's
    same = {"name": "e", "challenger": "v7"}
    with pytest.raises(helm_python.HelmError, match="an experiment compares two versions"):
        render.render({"serve": {"modelVersion": "v7", "experiment": same}})
    with pytest.raises(RecsysError, match="needs the model_version"):
        serve_ops.serve_config(experiment=expected)


def test_an_object_store_registry_is_served_from_the_registry_uri():
    values = {"registry": {"uri": "s3://models/recsys"}}
    rayservice = one(render.documents(render.render(values)), "RayService")
    args = yaml.safe_load(rayservice["spec"]["serveConfigV2"])["applications"][0]["args"]
    assert args["model_root"] == "s3://models/recsys"


def _experiment(fields: dict) -> dict:
    experiment = {"name": "e", "challenger": "v8"} | fields
    return {"serve": {"modelVersion": "v7", "experiment": experiment}}


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"serve": {"port": "8000"}}, "/serve/port"),
        ({"serve": {"replicas": 3}}, "'replicas' not allowed"),
        ({"feast": {"replica": 2}}, "'replica' not allowed"),
        ({"image": {"tag": "latest"}}, "/image/tag"),
        (
            {"training": {"workerGroups": [{"name": "gpu", "replicas": 1}]}},
            "/training/workerGroups/0",
        ),
        ({"monitoring": {"schedule": "hourly"}}, "/monitoring/schedule"),
        ({"spark": {"master": "yarn"}}, "/spark/master"),
        ({"spark": {"conf": {"spark.executor.instances": 2}}}, "/spark/conf"),
        (
            {"redis": {"resources": {"requests": {"memory": 512}}}},
            "/redis/resources/requests/memory",
        ),
        (
            {"serve": {"experiment": {"name": "e", "challenger": "v8"}}},
            "'/serve': missing property 'modelVersion'",
        ),
        ({"training": {"rollout": "canary"}}, "/training/rollout"),
        (_experiment({"mode": "canary"}), "/serve/experiment/mode"),
        (_experiment({"share": 1}), "/serve/experiment/share"),
        (_experiment({"challenger": None}), "/serve/experiment/challenger"),
    ],
)
def test_bad_values_fail_naming_the_key(values, named):
    with pytest.raises(render.ValuesError, match=named):
        render.render(values)


def test_the_render_command_exits_2_and_names_the_key_of_a_bad_values_file(tmp_path, capsys):
    bad = tmp_path / "values-bad.yaml"
    bad.write_text("serve:\n  workerGroups:\n    - name: cpu\n      replicas: two\n")
    assert render.main(["--values", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "/serve/workerGroups/0" in err


def test_gpu_values_put_training_on_gpu_nodes_and_local_values_stay_on_cpu(envs):
    gpu_job = one(envs["gpu"]["docs"], "RayJob")["spec"]
    (group,) = gpu_job["rayClusterSpec"]["workerGroupSpecs"]
    pod = group["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert group["rayStartParams"] == {"num-gpus": "1"}
    entry = shlex.split(gpu_job["entrypoint"])
    assert "--gpu" in entry and entry[entry.index("--num-workers") + 1] == "2"
    assert pod["containers"][0]["image"].endswith("-cuda")
    gpu_serve = one(envs["gpu"]["docs"], "RayService")["spec"]["rayClusterConfig"]
    local_serve = one(envs["local"]["docs"], "RayService")["spec"]["rayClusterConfig"]
    assert (
        gpu_serve["workerGroupSpecs"][0]["maxReplicas"]
        > local_serve["workerGroupSpecs"][0]["maxReplicas"]
    )
    for doc in envs["local"]["docs"]:
        for _, template in pod_templates(doc):
            for c in template["spec"]["containers"]:
                assert "nvidia.com/gpu" not in c["resources"]["limits"]


def _peers(policy: dict) -> list[dict]:
    return [peer for rule in policy["spec"].get("ingress", []) for peer in rule.get("from", [])]


def test_network_policies_let_only_the_ingress_reach_serve_and_only_the_store_users_reach_redis(
    envs,
):
    docs = {d["metadata"]["name"]: d for d in by_kind(envs["gpu"]["docs"], "NetworkPolicy")}
    deny = docs["recsys-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    serve_rules = docs["recsys-serve"]["spec"]["ingress"]
    on_port = [r for r in serve_rules if {"port": 8000, "protocol": "TCP"} in r.get("ports", [])]
    assert [r["from"] for r in on_port] == [
        [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    ]
    components = {
        p["podSelector"]["matchLabels"].get("app.kubernetes.io/component", "kubeflow")
        for p in _peers(docs["recsys-redis"])
    }
    assert components == {"serve", "feast", "training", "kubeflow"}
    redis_ports = {p["port"] for r in docs["recsys-redis"]["spec"]["ingress"] for p in r["ports"]}
    assert redis_ports == {6379}
    # The local values: no ingress controller, so nothing outside the release reaches Serve.
    local = {d["metadata"]["name"]: d for d in by_kind(envs["local"]["docs"], "NetworkPolicy")}
    assert not [
        r
        for r in local["recsys-serve"]["spec"]["ingress"]
        if {"port": 8000, "protocol": "TCP"} in r.get("ports", [])
    ]


def test_pod_disruption_budgets_cover_the_serving_pods(envs):
    docs = envs["gpu"]["docs"]
    budgets = {d["metadata"]["name"]: d["spec"] for d in by_kind(docs, "PodDisruptionBudget")}
    serve = budgets["recsys-serve"]
    assert serve["minAvailable"] == 2
    assert serve["selector"]["matchLabels"]["ray.io/node-type"] == "worker"
    worker_labels = one(docs, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"][0][
        "template"
    ]["metadata"]["labels"]
    assert {
        k: v for k, v in serve["selector"]["matchLabels"].items() if k != "ray.io/node-type"
    }.items() <= worker_labels.items()
    feast = one([d for d in docs if d["metadata"]["name"] == "recsys-feast"], "Deployment")
    assert (
        budgets["recsys-feast"]["selector"]["matchLabels"].items()
        <= feast["spec"]["template"]["metadata"]["labels"].items()
    )


def test_rbac_is_least_privilege(envs):
    docs = envs["local"]["docs"]
    (role,) = by_kind(docs, "Role")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["ray.io"], "resources": ["rayclusters"], "verbs": ["get", "patch"]},
    ]
    binding = one(docs, "RoleBinding")
    assert binding["subjects"][0]["name"] == "recsys-ray-head"
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    for doc in docs:
        for where, template in pod_templates(doc):
            pod = template["spec"]
            if pod["serviceAccountName"] != "recsys-ray-head":
                assert pod["automountServiceAccountToken"] is False, where


def test_the_chart_uses_the_names_the_compiled_pipelines_expect(envs):
    settings = ClusterSettings()
    values = render._chart().values
    assert values["storage"]["claimName"] == settings.pvc
    assert values["secrets"] == {
        "redis": settings.redis_secret,
        "objectStore": settings.object_store_secret,
    }
    from pipelines.components import IMAGE

    assert f"{values['image']['repository']}:{values['image']['tag']}" == IMAGE
    assert render._chart().metadata["appVersion"] == __version__.split("+")[0]
    for where, _, c, _ in containers(envs["local"]["docs"]):
        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        if "data" in mounts:
            assert mounts["data"] == settings.mount_path, where
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        if "RECSYS_FEATURE_REPO" in env:
            assert env["RECSYS_FEATURE_REPO"] == settings.feature_repo, where
    service = _named(envs["local"]["docs"], "Service", "recsys-spark-connect")
    (port,) = service["spec"]["ports"]
    assert settings.spark_remote == f"sc://{service['metadata']['name']}:{port['port']}"


def _check_cli(argv: list[str]) -> None:
    """The command line parses: the program's options and subcommands exist (--help stops
    before anything runs)."""
    if argv[0] == "recsys":
        from recsys.cli.main import cli
    else:
        assert argv[0] == "feast", argv
        from feast.cli.cli import cli
    result = CliRunner().invoke(cli, [*argv[1:], "--help"])
    assert result.exit_code == 0, (argv, result.output)


def test_every_command_the_chart_runs_exists(envs):
    commands = []
    for rendered in envs.values():
        for _, _, c, _ in containers(rendered["docs"]):
            if c.get("command") and c["command"][0] in ("recsys", "feast"):
                commands.append(c["command"] + c.get("args", []))
        commands.append(shlex.split(one(rendered["docs"], "RayJob")["spec"]["entrypoint"]))
    assert {c[0] for c in commands} == {"recsys", "feast"}
    rollout = {"training": {"rollout": "experiment", "experimentShare": 0.2}}
    entrypoint = one(render.documents(render.render(rollout)), "RayJob")["spec"]["entrypoint"]
    assert "--rollout experiment --experiment-share 0.2" in entrypoint
    commands.append(shlex.split(entrypoint))
    for argv in commands:
        _check_cli(argv)


def test_the_feast_configmap_is_a_valid_redis_configuration(envs, tmp_path, monkeypatch):
    from feast.repo_config import load_repo_config

    from recsys.features.repository import init_repo

    configmap = next(
        d
        for d in by_kind(envs["local"]["docs"], "ConfigMap")
        if d["metadata"]["name"] == "recsys-feast"
    )
    store_yaml = tmp_path / "feature_store.yaml"
    store_yaml.write_text(configmap["data"]["feature_store.yaml"])
    repo = init_repo(ROOT / "feature_repo", tmp_path / "repo", store_yaml)
    assert (repo / "feature_store.redis.yaml").read_text() == store_yaml.read_text()
    monkeypatch.setenv("REDIS_CONNECTION_STRING", "recsys-redis:6379,password=p")
    config = load_repo_config(repo, repo / "feature_store.redis.yaml")
    assert config.online_store.type == "redis"
    assert config.online_store.connection_string == "recsys-redis:6379,password=p"
    assert config.registry.path == "/var/lib/recsys/feature_repo/data/registry.redis.db"


def _named(docs: list[dict], kind: str, name: str) -> dict:
    (doc,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    return doc


def _offline_store(docs: list[dict], where: Path):
    """The offline store configuration Feast reads from the rendered Feast ConfigMap."""
    from feast.repo_config import load_repo_config

    where.mkdir()
    store_yaml = where / "feature_store.yaml"
    configmap = _named(docs, "ConfigMap", "recsys-feast")
    store_yaml.write_text(configmap["data"]["feature_store.yaml"])
    return load_repo_config(where, store_yaml).offline_store


def test_the_offline_store_joins_on_the_spark_connect_server_over_the_shared_volume(
    envs, tmp_path, monkeypatch
):
    """The Feast ConfigMap sends the point-in-time join to the rendered Spark Connect Service;
    the server reads the feature parquet at the paths the Feast tasks see (the same claim, the
    same mount path) and only the pods that open the store may reach it."""
    from recsys.features.asof import AsofOfflineStoreConfig

    monkeypatch.delenv("RECSYS_OFFLINE_ENGINE", raising=False)
    compiled = yaml.safe_load_all((ROOT / "pipelines" / "compiled" / "training.yaml").read_text())
    spec, platform = compiled
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    settings = ClusterSettings()
    for env, rendered in envs.items():
        docs = rendered["docs"]
        service = _named(docs, "Service", "recsys-spark-connect")
        (port,) = service["spec"]["ports"]
        offline = _offline_store(docs, tmp_path / env)
        assert isinstance(offline, AsofOfflineStoreConfig), env
        assert offline.type == "recsys.features.asof.AsofOfflineStore"
        assert offline.engine == "spark"
        assert offline.spark_remote == f"sc://{service['metadata']['name']}:{port['port']}"

        deployment = _named(docs, "Deployment", "recsys-spark-connect")
        pod = deployment["spec"]["template"]["spec"]
        assert service["spec"]["selector"].items() <= (
            deployment["spec"]["template"]["metadata"]["labels"].items()
        )
        (server,) = pod["containers"]
        assert server["command"][:3] == [
            "spark-submit",
            "--class",
            "org.apache.spark.sql.connect.service.SparkConnectServer",
        ]
        assert f"spark.connect.grpc.binding.port={port['port']}" in server["command"]
        assert "spark.sql.session.timeZone=UTC" in server["command"]
        assert {"containerPort": port["port"], "name": port["targetPort"]} in server["ports"]
        # The shared volume, where the Feast tasks (compiled pipelines, chart) have it.
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod["volumes"]
            if "persistentVolumeClaim" in v
        }
        mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
        assert claims == {"data": settings.pvc} and mounts["data"] == settings.mount_path
        feast = _named(docs, "Deployment", "recsys-feast")["spec"]["template"]["spec"]
        feast_mounts = {m["name"]: m["mountPath"] for m in feast["containers"][0]["volumeMounts"]}
        assert feast_mounts["data"] == mounts["data"]
        assert settings.feature_repo.startswith(mounts["data"] + "/")
        for name in ("exec-materialize-features", "exec-training-set"):
            (pvc,) = executors[name]["pvcMount"]
            assert (pvc["constant"], pvc["mountPath"]) == (settings.pvc, mounts["data"]), name
            task_env = spec["deploymentSpec"]["executors"][name]["container"]["env"]
            assert {"name": "SPARK_REMOTE", "value": offline.spark_remote} in task_env, name
            assert {"name": "RECSYS_OFFLINE_ENGINE", "value": "spark"} in task_env, name
        # No port for anyone else: the server runs what its clients send.
        policy = _named(docs, "NetworkPolicy", "recsys-spark-connect")["spec"]
        assert policy["podSelector"]["matchLabels"] == service["spec"]["selector"]
        components = {
            p["podSelector"]["matchLabels"].get("app.kubernetes.io/component", "kubeflow")
            for p in _peers({"spec": policy})
        }
        assert components == {"training", "kubeflow"}
        assert [r["ports"] for r in policy["ingress"]] == [[{"port": 15002, "protocol": "TCP"}]]
    # Off: no server, and the join runs on DuckDB in the process.
    docs = render.documents(render.render({"spark": {"enabled": False}}))
    assert not [d for d in docs if "spark-connect" in d["metadata"]["name"]]
    offline = _offline_store(docs, tmp_path / "off")
    assert offline.engine == "duckdb" and offline.spark_remote is None


def test_the_install_notes_say_how_to_reach_serve_and_which_secrets_to_create():
    notes = render.notes(render.load_values(render.environments()["gpu"]))
    assert "port-forward svc/recsys-serve-svc 8000:8000" in notes
    assert "recsys-redis" in notes and "REDIS_PASSWORD" in notes
    assert "--variant training-gpu" in notes
    assert "/var/lib/recsys/monitoring/runs/" in notes


def test_pull_secrets_reach_every_pod_that_runs_the_platform_image():
    docs = render.documents(render.render({"image": {"pullSecrets": ["regcred"]}}))
    pods = 0
    for doc in docs:
        for where, template in pod_templates(doc):
            images = {c["image"] for c in template["spec"]["containers"]}
            if any(i.startswith("ghcr.io/recsys-platform/recsys:") for i in images):
                assert template["spec"]["imagePullSecrets"] == [{"name": "regcred"}], where
                pods += 1
    # Feast, Spark Connect, the CronJob, the RayJob's head, worker and submitter, Serve's two
    assert pods == 8


def test_every_ray_container_runs_serve_behind_haproxy_unless_turned_off(envs):
    """``serve.fastProxy`` (default on) puts HAProxy, the throughput-optimised mode and the
    retry of an unanswered request on every Ray container (the image installs haproxy), the
    same settings a local app gets; off, none is set."""
    fast = serve_ops.FAST_PROXY
    assert fast["RAY_SERVE_HAPROXY_RETRY_ON"] == "conn-failure empty-response"
    for env, rendered in envs.items():
        ray = [doc for doc in rendered["docs"] if doc["kind"] in ("RayService", "RayJob")]
        assert ray, env
        for doc in ray:
            for where, template in pod_templates(doc):
                if where.endswith("submitter"):
                    continue
                for c in template["spec"]["containers"]:
                    values = {e["name"]: e.get("value") for e in c.get("env", [])}
                    assert {k: values.get(k) for k in fast} == fast, f"{env} {where}"
    values = render.load_values(render.environments()["local"])
    values["serve"]["fastProxy"] = False
    docs = render.documents(render.render(values))
    assert not any(name in json.dumps(docs) for name in fast)


def test_the_token_secrets_reach_every_serving_container_and_nothing_else():
    """``serve.writeTokenSecret``/``readTokenSecret`` set RECSYS_WRITE_TOKEN/READ_TOKEN from a
    Secret on the RayService's Ray containers (where the replicas read them); unset, neither."""
    values = render.load_values(render.environments()["local"])
    values["serve"]["writeTokenSecret"] = {"name": "recsys-write-token", "key": "token"}
    values["serve"]["readTokenSecret"] = {"name": "recsys-read-token", "key": "token"}
    docs = render.documents(render.render(values))
    rayservice = one(docs, "RayService")
    for where, template in pod_templates(rayservice):
        for c in template["spec"]["containers"]:
            env = {e["name"]: e.get("valueFrom") for e in c.get("env", [])}
            ref = env["RECSYS_WRITE_TOKEN"]["secretKeyRef"]
            assert ref == {"name": "recsys-write-token", "key": "token"}, where
            assert env["RECSYS_READ_TOKEN"]["secretKeyRef"]["name"] == "recsys-read-token"
    plain = render.documents(render.render(render.load_values(render.environments()["local"])))
    assert "RECSYS_WRITE_TOKEN" not in json.dumps(plain)
    bad = {"serve": {"writeTokenSecret": {"name": "x"}}}
    with pytest.raises(render.ValuesError, match="writeTokenSecret"):
        render.render(bad)
