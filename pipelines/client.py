"""Running the training pipeline: locally through ``kfp.local``, compiled to YAML for the
Kubeflow Pipelines UI, or submitted to a KFP server (once, or on a cron schedule). Every run on
a KFP server is created here, the monitoring pipeline's retraining included."""

import contextlib
import json
import re
import sys
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any, TextIO

from kfp import compiler, local

from pipelines import monitoring
from pipelines.cluster import VARIANTS, ClusterSettings
from pipelines.training import build
from recsys.config import RecsysError
from recsys.monitoring.policy import Decision
from recsys.monitoring.trigger import trigger_decision_file
from recsys.registry.gate import GateDecision

COMPILED = Path(__file__).resolve().parent / "compiled"
# What `compile` writes and `submit --variant` uploads: pipelines/compiled/<name>.yaml.
PACKAGES = {
    **{name: (lambda s=settings: build(s)) for name, settings in VARIANTS.items()},
    "monitoring": lambda: monitoring.build(ClusterSettings()),
}


def run_local(
    arguments: dict[str, Any],
    pipeline_root: str | Path,
    *,
    log_file: str | Path | None = None,
) -> dict[str, Any]:
    """Run the pipeline with ``kfp.local.SubprocessRunner`` in this Python environment.

    With ``log_file``, the tasks' output goes there and only kfp's task lines (started,
    finished with status) and the training's progress lines reach this process's stdout.

    Each task is a subprocess of this interpreter; artifacts go under ``pipeline_root``. The
    DAG is the compiled variants' without their Kubernetes settings (``kfp.local`` would apply
    their environment variables, e.g. the Redis online store, to this machine's tasks).

    Returns:
        ``summary`` (the gate's sentence), ``evaluation`` (its JSON, parsed), ``report`` (the
        Evidently HTML path) and ``decision`` (the gate's verdict, parsed).
    """
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
    )
    sink = _TaskLines(Path(log_file), sys.stdout) if log_file else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink or sys.stdout):
        # The platform image's name lacks "python", which makes kfp.local warn for each task.
        warnings.filterwarnings("ignore", message="You may be attemping", category=RuntimeWarning)
        try:
            task = build(None)(**arguments)
        except RuntimeError as exc:  # kfp.local: "Pipeline ... finished with status FAILURE"
            where = f" (the tasks' output: {log_file})" if log_file else ""
            raise RecsysError(f"training pipeline failed: {_plain(str(exc))}{where}") from exc
        finally:
            if sink is not None:
                sink.close()
    outputs = task.outputs
    decision = json.loads(Path(outputs["decision"].path).read_text())
    return {
        "summary": GateDecision.model_validate(decision).summary(),
        "evaluation": json.loads(Path(outputs["evaluation"].path).read_text()),
        "decision": decision,
        "report": outputs["report"].path,
    }


class _TaskLines:
    """A stdout that writes everything to a log file and echoes kfp's per-task lines and the
    training's progress lines (``recsys.progress``)."""

    KEEP = re.compile(
        r" - (INFO|ERROR) - (Executing task|Task '[^']+' finished|Pipeline )|\bprogress: "
    )

    def __init__(self, path: Path, terminal: TextIO) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file, self.terminal, self.pending = path.open("a"), terminal, ""

    def write(self, text: str) -> int:
        self.file.write(text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in map(_plain, lines):
            if self.KEEP.search(line):
                self.terminal.write("  " + line + "\n")
                self.terminal.flush()
        return len(text)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _plain(text: str) -> str:
    """Without the ANSI colours kfp puts around names and statuses."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def compile_all(out: str | Path = COMPILED) -> list[Path]:
    """Compile every variant to ``out/<variant>.yaml``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in PACKAGES.items():
        path = out / f"{name}.yaml"
        compiler.Compiler().compile(make(), str(path))
        paths.append(path)
    return paths


def cron(expression: str) -> str:
    """A cron schedule in KFP's six-field form (seconds first); five fields get ``0`` seconds."""
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise RecsysError(
            f"--schedule {expression!r}: expected a cron expression of 5 fields "
            "(minute hour day month weekday) or 6 (seconds first), e.g. '0 3 * * *'"
        )
    return " ".join(fields)


def submit(
    host: str,
    arguments: dict[str, Any],
    *,
    variant: str = "training",
    schedule: str | None = None,
    experiment: str = "recsys",
    run_name: str | None = None,
) -> dict[str, str]:
    """Upload the compiled ``variant`` to the KFP API at ``host`` and run it, once or on a
    cron ``schedule`` (a recurring run, one at a time, no catch-up).

    Returns:
        The run's (or recurring run's) id and where to see it.
    """
    import kfp

    if variant not in PACKAGES:
        raise RecsysError(f"--variant {variant!r}: expected one of {sorted(PACKAGES)}")
    package = COMPILED / f"{variant}.yaml"
    if not package.exists():
        raise RecsysError(f"{package}: missing; run `recsys pipeline compile` first")
    host = host.rstrip("/")
    name = run_name or f"recsys-{variant}"
    if not schedule:
        return submit_pipeline(host, package, arguments, run_name=name, experiment=experiment)
    expression = cron(schedule)
    check_reachable(host)
    client = kfp.Client(host=host)
    try:
        exp = client.get_experiment(experiment_name=experiment)
    except Exception:  # kfp raises a bare ValueError / ApiException when it does not exist
        exp = client.create_experiment(experiment)
    job = client.create_recurring_run(
        experiment_id=exp.experiment_id,
        job_name=name,
        cron_expression=expression,
        max_concurrency=1,
        no_catchup=True,
        params=arguments,
        pipeline_package_path=str(package),
    )
    return {
        "recurring_run_id": job.recurring_run_id,
        "schedule": expression,
        "url": f"{host}/#/recurringrun/details/{job.recurring_run_id}",
    }


def submit_pipeline(
    host: str | None,
    package: str | Path,
    arguments: dict[str, Any],
    *,
    run_name: str,
    experiment: str = "recsys",
) -> dict[str, str]:
    """Run a compiled pipeline ``package`` once on the Kubeflow Pipelines API at ``host``
    (None: in-cluster, as a pipeline task does). The one place a run is created.

    Returns:
        The run's id and, with a host, where to see it.
    """
    import kfp

    if host:
        host = host.rstrip("/")
        check_reachable(host)
    client = kfp.Client(host=host or None)
    run = client.create_run_from_pipeline_package(
        str(package),
        arguments=arguments,
        run_name=run_name,
        experiment_name=experiment,
        enable_caching=False,
    )
    done = {"run_id": run.run_id}
    return done | ({"url": f"{host}/#/runs/details/{run.run_id}"} if host else {})


def start_retraining(
    decision_file: str | Path,
    state_dir: str | Path,
    package: str | Path,
    arguments: dict[str, Any],
    *,
    policy: str | Path | None = None,
    kfp_host: str | None = None,
) -> str:
    """The monitoring pipeline's last task: for a ``retrain`` decision (a JSON file), submit
    the training ``package`` unless a run started within the policy's cooldown (the decision
    and the cooldown are ``recsys.monitoring.trigger``'s).

    Returns:
        ``"started"``, or why not.
    """

    def submit(decision: Decision) -> dict[str, Any]:
        name = f"retrain-{decision.at:%Y%m%dT%H%M%SZ}"
        return submit_pipeline(kfp_host, package, arguments, run_name=name)

    return trigger_decision_file(decision_file, state_dir, submit, policy=policy)


def check_reachable(host: str, timeout_s: float = 10) -> None:
    """Fail fast with the URL and the cause (``kfp.Client`` retries its health check for long)."""
    url = f"{host}/apis/v2beta1/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            return
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):  # behind auth: the client's own credentials may pass
            return
        raise RecsysError(f"{url}: HTTP {exc.code}; is {host} a Kubeflow Pipelines API?") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RecsysError(f"cannot reach the Kubeflow Pipelines API at {host}: {reason}") from exc
