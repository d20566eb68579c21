"""KFP v2 lightweight components, each over one function of ``recsys``.

Each body imports ``recsys`` and calls one function with its artifacts' paths; no logic lives
here.
On a cluster the components run in the platform image (``IMAGE``, which has ``recsys`` and
``kfp`` installed, so KFP installs nothing at start); locally ``kfp.local`` runs the same
bodies in this Python.
"""

# No `from __future__ import annotations`: KFP reads the artifact types from the annotations.
from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from recsys import __version__

IMAGE = f"ghcr.io/recsys-platform/recsys:{__version__.split('+')[0]}"
component = dsl.component(base_image=IMAGE, install_kfp_package=False)


@component
def ingest(source: str, protocol: str, seed: int, split: Output[Dataset]):
    """Fetch or read interactions, validate (quarantine bad rows), split."""
    from recsys.data.ingest import ingest

    split.metadata.update(ingest(source, split.path, protocol=protocol, seed=seed))


@component
def materialize_features(split: Input[Dataset], feature_repo: str, features: Output[Artifact]):
    """Build the feature tables from the training rows, ``feast apply``, materialize."""
    import json

    from recsys.features.store import materialize_split

    done = materialize_split(split.path, feature_repo)
    print(
        f"features: {done['rows']} rows built in {done['build_s']}s, feast apply "
        f"{done['apply_s']}s, materialized into {done['online']} in {done['materialize_s']}s"
    )
    features.metadata.update({k: v for k, v in done.items() if not isinstance(v, dict)})
    with open(features.path, "w") as out:
        json.dump(done, out, indent=2)


@component
def training_set(
    split: Input[Dataset],
    features: Input[Artifact],
    feature_repo: str,
    feature_service: str,
    training_set: Output[Dataset],
):
    """The point-in-time training set (``get_historical_features``) as a dataset directory."""
    from recsys.features.store import write_training_set

    meta = write_training_set(
        split.path, training_set.path, feature_repo=feature_repo, feature_service=feature_service
    )
    training_set.metadata.update(meta)
    source = f"get_historical_features({feature_service})" if feature_repo else "side tables"
    print(f"training set: {source} -> {meta['rows']} rows")


@component
def train(
    training_set: Input[Dataset],
    kind: str,
    params: dict,
    gpu: bool,
    num_workers: int,
    ray_address: str,
    checkpoint_uri: str,
    run_name: str,
    model: Output[Model],
):
    """Fit the model on Ray Train (a local Ray, or the cluster at ``ray_address``)."""
    import os

    from recsys.training.train import train_from_set

    if ray_address:
        os.environ["RAY_ADDRESS"] = ray_address
    done = train_from_set(
        training_set.path,
        model.path,
        kind=kind,
        params=params,
        gpu=gpu,
        num_workers=num_workers,
        storage_path=checkpoint_uri or None,
        run_name=run_name,
    )
    model.metadata.update(done)


@component
def evaluate(
    split: Input[Dataset],
    model: Input[Model],
    registry_uri: str,
    k: int,
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[HTML],
    reference: Output[Dataset],
):
    """Candidate vs champion vs baselines on the same held-out users; Evidently HTML report;
    the candidate's monitoring reference."""
    from recsys.evaluation.protocol import evaluate_candidate
    from recsys.registry import champion_model

    result = evaluate_candidate(
        split.path,
        model.path,
        evaluation.path,
        champion=champion_model(registry_uri or None),
        k=k,
        report_html=report.path,
        reference_out=reference.path,
    )
    rows = {"candidate": result["candidate"], "champion": result["champion"]}
    rows.update(result["references"])
    for name, row in rows.items():
        for key in ("ndcg", "precision", "recall", "f1", "catalog_coverage"):
            if row is not None:
                metrics.log_metric(f"{name}_{key}", round(float(row["metrics"][key]), 6))


@component
def gate(
    evaluation: Input[Artifact],
    margin: float,
    coverage_tolerance: float,
    baseline_margin: float,
    rollout: str,
    decision: Output[Metrics],
) -> bool:
    """Promote only when the candidate beats the champion, keeps its coverage and beats the
    strongest baseline evaluated beside it (``recsys.registry.gate``); a rollout to an
    experiment leaves the coverage to the users.

    Returns the verdict as the task's single output: ``kfp.local`` resolves a ``dsl.If`` on a
    task's ``Output`` but not on a named output of a NamedTuple.
    """
    import json

    from recsys.registry.gate import GatePolicy, judge

    with open(evaluation.path) as f:
        policy = GatePolicy(
            margin=margin, coverage_tolerance=coverage_tolerance, baseline_margin=baseline_margin
        )
        verdict = judge(json.load(f), policy, rollout)
    decision.log_metric("promote", 1.0 if verdict.promote else 0.0)
    for name, check in verdict.checks.items():
        decision.log_metric(f"{name}_passed", 1.0 if check.passed else 0.0)
        decision.log_metric(f"{name}_candidate", round(check.candidate, 6))
        if check.threshold is not None:
            decision.log_metric(f"{name}_threshold", round(check.threshold, 6))
    decision.metadata["reasons"] = verdict.reasons
    with open(decision.path, "w") as f:
        f.write(verdict.model_dump_json(indent=2))
    print(verdict.summary())
    return verdict.promote


@component
def register(
    model: Input[Model],
    decision: Input[Metrics],
    reference: Input[Dataset],
    registry_uri: str,
    rollout: str,
) -> str:
    """Add the candidate, with its monitoring reference, to the registry and make it the
    champion (``rollout`` switch; experiment: only added, while there is a champion); the
    gate's reasons are kept."""
    from recsys.registry import register_champion

    reason = "gate: " + "; ".join(decision.metadata.get("reasons", []))
    attachments = {"reference.parquet": reference.path}
    return register_champion(
        model.path, registry_uri or None, reason=reason, attachments=attachments, rollout=rollout
    )


@component
def deploy(
    version: str,
    registry_uri: str,
    serve_address: str,
    rollout: str,
    experiment_share: float,
    serve_config: Output[Artifact],
):
    """Serve the gated version: write its Serve config; on the Ray cluster at
    ``serve_address`` (the RayService's, not the training cluster) switch the app to it in
    place, or start an experiment with it as the challenger (``rollout`` experiment)."""
    from recsys.workflows.deploy import deploy

    done = deploy(
        version,
        registry_uri or None,
        serve_config.path,
        rollout=rollout,
        share=experiment_share,
        ray_address=serve_address or None,
    )
    serve_config.metadata.update(done)
    print(f"deploy: {done}")


@component
def monitor_check(
    predictions: str,
    events: str,
    out: str,
    registry_uri: str,
    policy: str,
    since_minutes: float,
    decision: Output[Artifact],
    signals: Output[Metrics],
) -> str:
    """Drift and quality of the champion's traffic (Evidently); the policy's action."""
    from recsys.monitoring.check import MonitorArgs, check_and_record

    args = MonitorArgs(
        predictions=predictions,
        events=events,
        out=out,
        registry=registry_uri or None,
        policy=policy or None,
        since_minutes=since_minutes or None,
    )
    verdict, summary = check_and_record(args)
    for key, value in verdict.signals.items():
        if isinstance(value, int | float):
            signals.log_metric(key, value)
    signals.log_metric("requests", summary["samples"].get("requests", 0))
    signals.metadata["reasons"] = verdict.reasons
    with open(decision.path, "w") as f:
        f.write(verdict.model_dump_json(indent=2))
    print(f"monitor: {verdict.action}: {'; '.join(verdict.reasons)}")
    return verdict.action


@component
def start_retraining(
    decision: Input[Artifact], out: str, policy: str, kfp_host: str, arguments: dict
) -> str:
    """Submit the training pipeline (kfp.Client; in-cluster without a host) unless a run
    started within the policy's cooldown."""
    from importlib.resources import files

    from pipelines.client import start_retraining as start

    package = files("pipelines") / "compiled" / "training.yaml"  # the installed package data
    return start(
        decision.path, out, package, arguments, policy=policy or None, kfp_host=kfp_host or None
    )
