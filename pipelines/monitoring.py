"""The monitoring pipeline: check the champion's traffic on a schedule; on ``retrain``, start
the training pipeline (which gates, registers and hot-reloads the Serve app).

Scheduled as a recurring run: ``recsys pipeline submit --variant monitoring --schedule
'*/30 * * * *'``. It reads the logs the Serve app writes to the shared volume.
"""

# No `from __future__ import annotations`: KFP reads the parameter types from the annotations.
from kfp import dsl

from pipelines import components as c
from pipelines.cluster import ClusterSettings, mount

PIPELINE_NAME = "recsys-monitoring"


def build(settings: ClusterSettings | None = None):
    """The pipeline function; ``settings`` adds the Kubernetes configuration to its tasks."""

    @dsl.pipeline(name=PIPELINE_NAME, description="Evidently drift and quality; retrain.")
    def monitoring(
        predictions: str = "/var/lib/recsys/serving/predictions",
        events: str = "/var/lib/recsys/serving/events",
        out: str = "/var/lib/recsys/monitoring",
        registry_uri: str = "",
        policy: str = "",
        since_minutes: float = 1440.0,
        kfp_host: str = "",
        training_arguments: dict = {},  # noqa: B006 - a pipeline parameter's default
    ):
        checked = c.monitor_check(
            predictions=predictions,
            events=events,
            out=out,
            registry_uri=registry_uri,
            policy=policy,
            since_minutes=since_minutes,
        )
        checked.set_caching_options(False)
        with dsl.If(checked.outputs["Output"] == "retrain", name="retrain"):
            started = c.start_retraining(
                decision=checked.outputs["decision"],
                out=out,
                policy=policy,
                kfp_host=kfp_host,
                arguments=training_arguments,
            )
            started.set_caching_options(False)
        if settings is not None:
            for task in (checked, started):
                mount(settings, task)

    return monitoring
