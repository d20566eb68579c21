"""The training pipeline: ingest → features → training set → train → evaluate → gate → (if
promoted) register → deploy. ``rollout``: ``switch`` (the app serves the new champion) or
``experiment`` (the gated version is the challenger of the champion on ``experiment_share`` of
the users, until ``recsys experiment stop --promote`` decides).

Two compiled variants share one DAG; they differ only in the Kubernetes settings applied to
the tasks (``kfp-kubernetes``): ``training`` (CPU training) and ``training-gpu`` (the train task
asks for a GPU, on a GPU node, tolerating its taint). Both read the object-store and Redis
credentials from Secrets and keep the registry, feature data and checkpoints on a PVC; the
Helm chart creates those. ``kfp.local`` runs the same DAG without the Kubernetes settings.
"""

# No `from __future__ import annotations`: KFP reads the parameter types from the annotations.
from typing import NamedTuple

from kfp import dsl

from pipelines import components as c
from pipelines.cluster import ClusterSettings, on_cluster
from recsys.features.store import DEFAULT_SERVICE

PIPELINE_NAME = "recsys-training"


class Outputs(NamedTuple):
    """What a run returns: the artifacts a person reads first."""

    evaluation: dsl.Artifact
    decision: dsl.Metrics
    report: dsl.HTML


def build(settings: ClusterSettings | None = None, name: str = PIPELINE_NAME):
    """The pipeline function; ``settings`` adds the Kubernetes configuration to its tasks."""
    repo_default = settings.feature_repo if settings is not None else "feature_repo"

    @dsl.pipeline(name=name, description="Train, evaluate and gate a recommender; promote it.")
    def training(
        source: str = "movielens-100k",
        protocol: str = "stratified",
        seed: int = 42,
        feature_repo: str = repo_default,
        feature_service: str = DEFAULT_SERVICE,
        model_kind: str = "multistage",
        params: dict = {},  # noqa: B006 - a pipeline parameter's default, never mutated
        gpu: bool = False,
        num_workers: int = 1,
        ray_address: str = "",
        serve_address: str = "",
        checkpoint_uri: str = "",
        registry_uri: str = "",
        k: int = 10,
        margin: float = 0.005,
        coverage_tolerance: float = 0.05,
        baseline_margin: float = 0.001,
        rollout: str = "switch",
        experiment_share: float = 0.1,
    ) -> Outputs:
        split = c.ingest(source=source, protocol=protocol, seed=seed)
        features = c.materialize_features(split=split.outputs["split"], feature_repo=feature_repo)
        rows = c.training_set(
            split=split.outputs["split"],
            features=features.outputs["features"],
            feature_repo=feature_repo,
            feature_service=feature_service,
        )
        model = c.train(
            training_set=rows.outputs["training_set"],
            kind=model_kind,
            params=params,
            gpu=gpu,
            num_workers=num_workers,
            ray_address=ray_address,
            checkpoint_uri=checkpoint_uri,
            run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,  # names the Ray Train runs
        )
        scored = c.evaluate(
            split=split.outputs["split"],
            model=model.outputs["model"],
            registry_uri=registry_uri,
            k=k,
        )
        verdict = c.gate(
            evaluation=scored.outputs["evaluation"],
            margin=margin,
            coverage_tolerance=coverage_tolerance,
            baseline_margin=baseline_margin,
            rollout=rollout,
        )
        with dsl.If(verdict.outputs["Output"] == True, name="promote"):  # noqa: E712
            version = c.register(
                model=model.outputs["model"],
                decision=verdict.outputs["decision"],
                reference=scored.outputs["reference"],
                registry_uri=registry_uri,
                rollout=rollout,
            )
            c.deploy(
                version=version.output,
                registry_uri=registry_uri,
                serve_address=serve_address,
                rollout=rollout,
                experiment_share=experiment_share,
            )
        tasks = (split, features, rows, model, scored, verdict, version)
        for task in tasks:
            # The registry and the feature store are state outside the artifacts: a cached
            # evaluate or register would answer for a champion that has since changed.
            task.set_caching_options(False)
        if settings is not None:
            on_cluster(settings, tasks, (features, rows), model)
        return Outputs(
            evaluation=scored.outputs["evaluation"],
            decision=verdict.outputs["decision"],
            report=scored.outputs["report"],
        )

    return training
