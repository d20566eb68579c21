"""Where and with what the pipelines' tasks run on Kubernetes: compile-time settings, the
shared volume and the credentials (``kfp-kubernetes``). ``kfp.local`` runs without them."""

# No `from __future__ import annotations`: KFP reads the parameter types from the annotations.
from dataclasses import dataclass

from kfp import kubernetes


@dataclass(frozen=True)
class ClusterSettings:
    """Where and with what the tasks run on Kubernetes (compile-time constants)."""

    pvc: str = "recsys-data"  # the registry, feature data, checkpoints
    mount_path: str = "/var/lib/recsys"
    feature_repo: str = (
        "/var/lib/recsys/feature_repo"  # on the PVC; the chart's Feast init fills it
    )
    object_store_secret: str = "recsys-object-store"  # AWS_* keys for s3:// URIs
    redis_secret: str = "recsys-redis"  # REDIS_CONNECTION_STRING for the online store
    # The chart's Spark Connect server (release "recsys"): the point-in-time join runs there.
    spark_remote: str = "sc://recsys-spark-connect:15002"
    train_cpu: str = "4"
    train_memory: str = "16G"
    gpu: bool = False
    gpu_resource: str = "nvidia.com/gpu"
    gpu_node_label: tuple[str, str] = ("nvidia.com/gpu.present", "true")


# The compiled training variants: one DAG, these settings.
VARIANTS = {"training": ClusterSettings(), "training-gpu": ClusterSettings(gpu=True)}
OBJECT_STORE_KEYS = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL",
}


def mount(settings: ClusterSettings, task) -> None:
    """The shared volume as ``RECSYS_HOME`` and the object-store credentials, on one task."""
    kubernetes.mount_pvc(task, pvc_name=settings.pvc, mount_path=settings.mount_path)
    task.set_env_variable("RECSYS_HOME", settings.mount_path)
    kubernetes.use_secret_as_env(
        task, settings.object_store_secret, OBJECT_STORE_KEYS, optional=True
    )


def on_cluster(settings: ClusterSettings, tasks, feast_tasks, model) -> None:
    """The cluster's settings on the training DAG's tasks: the volume and credentials on every
    task, the online store's and the offline store's Spark on the Feast tasks, resources (and
    a GPU) on the train task."""
    for task in tasks:
        mount(settings, task)
    for task in feast_tasks:  # both open the store: the same (Redis) configuration and registry
        kubernetes.use_secret_as_env(
            task, settings.redis_secret, {"REDIS_CONNECTION_STRING": "REDIS_CONNECTION_STRING"}
        )
        task.set_env_variable("RECSYS_FEAST_ONLINE", "redis")
        # The point-in-time join on the Spark Connect server, not in the task's memory.
        task.set_env_variable("RECSYS_OFFLINE_ENGINE", "spark")
        task.set_env_variable("SPARK_REMOTE", settings.spark_remote)
    model.set_cpu_request(settings.train_cpu).set_memory_request(settings.train_memory)
    if settings.gpu:
        model.set_accelerator_type(settings.gpu_resource).set_accelerator_limit(1)
        kubernetes.add_node_selector(model, *settings.gpu_node_label)
        kubernetes.add_toleration(
            model, key=settings.gpu_resource, operator="Exists", effect="NoSchedule"
        )
