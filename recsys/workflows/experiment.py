"""Online experiments, end to end: start one on the running app (recorded in the registry, the
app's ``user_config`` set in place), read its status from the serving logs, stop it and promote
the winner through the registry.

The registry keeps ``experiments/<name>.json``: the experiment, when it started and stopped,
the winner and the version promoted. The app's ``user_config`` is what serves it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from recsys import serve_ops
from recsys.config import RecsysError, recsys_home
from recsys.evaluation.evidently_report import quality_snapshot, save_html
from recsys.experiments import metrics
from recsys.experiments.spec import Experiment
from recsys.monitoring.logs import join_feedback, load_experiment_answers, load_feedback
from recsys.registry import Registry


def resolve_control(registry_uri: str | None, control: str) -> str:
    """``champion`` → the champion's version; a version name is checked to be registered."""
    registry = Registry(registry_uri)
    if control == "champion":
        champion = registry.champion()
        if champion is None:
            raise RecsysError(f"--control champion: {registry.uri} has no champion yet")
        return champion.version
    registry.get(control)
    return control


def start(registry_uri: str | None, experiment: Experiment, *, wait_s: float = 300) -> dict:
    """Record ``experiment`` and start it on the running app (joined as ``recsys serve``
    does). The app must serve the control already: the experiment adds its challenger. An app
    that runs this experiment already (declared in the chart's ``serve.experiment``) is left
    as it is: the experiment is only recorded."""
    registry = Registry(registry_uri)
    registry.get(experiment.challenger)
    known = registry.experiment_record(experiment.name)
    if known is not None and known.get("stopped_at") is None:
        raise RecsysError(
            f"experiment {experiment.name!r} is running already (stop it first: "
            f"recsys experiment stop {experiment.name})"
        )
    serve_ops.connect()
    running = serve_ops.live_config()
    live = running["applications"][0]["deployments"][0].get("user_config") or {}
    declared = live.get("experiment") or {}
    if declared and declared.get("name") != experiment.name:
        raise RecsysError(f"the app runs experiment {declared['name']!r}: stop it first")
    if live.get("model_version") != experiment.control:
        raise RecsysError(
            f"the app serves {live.get('model_version')!r}, not the control "
            f"{experiment.control!r}: use --control {live.get('model_version')}"
        )
    record = {
        "experiment": experiment.model_dump(),
        "started_at": datetime.now(UTC).isoformat(),
        "stopped_at": None,
        "winner": None,
        "promoted": None,
    }
    if declared:
        _check_declared(Experiment.model_validate(declared), experiment)
        registry.write_experiment_record(experiment.name, record | {"declared": True})
        return {**record, "declared": True, "url": serve_ops.local_url(running["http_options"])}
    registry.write_experiment_record(experiment.name, record)
    user_config = {"model_version": experiment.control, "experiment": experiment.model_dump()}
    try:
        config = serve_ops.set_user_config(user_config, wait_s=wait_s)
    except BaseException as exc:
        record |= {"stopped_at": record["started_at"], "note": f"failed to start: {exc}"}
        registry.write_experiment_record(experiment.name, record)
        raise
    return {**record, "url": serve_ops.local_url(config["http_options"])}


def _check_declared(declared: Experiment, asked: Experiment) -> None:
    """The experiment the app runs under this name is the one asked for, field by field."""
    mine, theirs = asked.model_dump(), declared.model_dump()
    differ = [f"{k}={theirs[k]!r} (asked: {mine[k]!r})" for k in mine if mine[k] != theirs[k]]
    if differ:
        raise RecsysError(
            f"the app runs experiment {asked.name!r} with {', '.join(differ)}: start it with the "
            "app's settings, or stop it first"
        )


def read(registry_uri: str | None, name: str) -> tuple[Experiment, dict]:
    """The experiment ``name`` and its record; the error lists the ones the registry has."""
    registry = Registry(registry_uri)
    record = registry.experiment_record(name)
    if record is None:
        names = ", ".join(registry.experiment_names()) or "none"
        raise RecsysError(f"no experiment {name!r} in {registry.uri} (it has: {names})")
    return Experiment.model_validate(record["experiment"]), record


def status(
    registry_uri: str | None,
    name: str,
    *,
    predictions: str | Path | None = None,
    events: str | Path | None = None,
    window: timedelta = timedelta(hours=24),
    report_dir: str | Path | None = None,
) -> dict:
    """Per-arm live quality, the sample-ratio check and the decision, from the prediction log
    (the answers that name the experiment) and the events (what the users did next); with
    ``report_dir``, an Evidently report per arm there (:func:`arm_reports`)."""
    experiment, record = read(registry_uri, name)
    rows, warnings = answers_with_clicks(name, predictions, events, window)
    result = metrics.status(experiment, rows)
    if report_dir is not None:
        result["reports"] = arm_reports(rows, Path(report_dir))
    keep = ("started_at", "stopped_at", "winner", "promoted")
    return {**result, **{k: record.get(k) for k in keep}, "warnings": warnings}


def arm_reports(rows: pd.DataFrame, out: Path, k: int = 10) -> dict[str, str]:
    """Evidently's ranking report per arm, ``<out>/<arm>.html``: the arm's served lists
    against the clicks (:func:`recsys.experiments.metrics.arm_lists`), the challenger's beside
    the control's. Evidently's ranking metrics read the lists that have a click (it leaves the
    others out) at a cut-off no list's length falls short of. Returns ``{arm: path}``; an arm
    without a clicked list has no report yet."""
    lists = {}
    for arm, frame in metrics.arm_lists(rows, k).items():
        clicked = frame[frame.groupby("user_id")["target"].transform("max").to_numpy() > 0]
        if len(clicked):
            lists[arm] = clicked
    k = int(min([k, *(frame["rank"].max() for frame in lists.values())]))
    reports = {}
    for arm, frame in lists.items():
        reference = lists.get("control") if arm == "challenger" else None
        snapshot = quality_snapshot(frame, reference, None, k)
        reports[arm] = str(save_html(snapshot, out / f"{arm}.html"))
    return reports


def answers_with_clicks(
    name: str,
    predictions: str | Path | None,
    events: str | Path | None,
    window: timedelta = timedelta(hours=24),
) -> tuple[pd.DataFrame, list[str]]:
    """Experiment ``name``'s served items from the prediction log, each with ``target`` 1 when
    the user then acted on it within ``window`` (the events); and the readers' warnings."""
    rows, warnings = load_experiment_answers(predictions or recsys_home() / "predictions", name)
    feedback, more = load_feedback(events or recsys_home() / "events")
    return join_feedback(rows, feedback, window=window), warnings + more


def stop(
    registry_uri: str | None,
    name: str,
    *,
    promote: bool = False,
    predictions: str | Path | None = None,
    events: str | Path | None = None,
    wait_s: float = 300,
) -> dict:
    """End the experiment: the app serves the control again, or, with ``promote``, the
    winner, which the registry promotes with the experiment named in its record."""
    experiment, record = read(registry_uri, name)
    if record.get("stopped_at") is not None:
        raise RecsysError(f"experiment {name!r} stopped at {record['stopped_at']} already")
    result = status(registry_uri, name, predictions=predictions, events=events)
    decision = result["decision"]
    serve = experiment.control
    if promote:
        if decision["winner"] is None:
            raise RecsysError(
                f"experiment {name!r} has no winner yet ({decision['reason']}); stop it "
                "without --promote to end it with the control serving"
            )
        serve = experiment.challenger if decision["winner"] == "challenger" else serve
        reason = (
            f"experiment {name}: the {decision['winner']} won ({result['mode']}, effect "
            f"{decision['effect']:+.4f}, p={decision['p_value']:.3g})"
        )
        Registry(registry_uri).promote(serve, reason=reason, metrics={"experiment": result})
    serve_ops.connect()
    serve_ops.set_user_config({"model_version": serve}, wait_s=wait_s)
    record |= {
        "stopped_at": datetime.now(UTC).isoformat(),
        "winner": decision["winner"],
        "promoted": serve if promote else None,
    }
    Registry(registry_uri).write_experiment_record(name, record)
    return {**result, **record, "serving": serve}


def status_table(result: dict) -> str:
    """The status as ``recsys experiment status`` prints it."""
    head = "| arm | version | users | requests | clicks | CTR | nDCG@10 | p99 ms |"
    lines = [f"experiment {result['name']} ({result['mode']})", head, "|---" * 8 + "|"]
    cell = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for a in result["arms"]:
        lines.append(
            f"| {a['arm']} | {a['model_version']} | {a['users']} | {a['requests']} "
            f"| {a['clicks']} | {cell(a['ctr'], '.4f')} | {cell(a['ndcg_at_10'], '.4f')} "
            f"| {cell(a['p99_ms'], '.1f')} |"
        )
    d = result["decision"]
    if result.get("overlap_at_10") is not None:  # a shadow: the lists of the same requests
        lines.append(f"shadow lists' overlap with the control's: {result['overlap_at_10']:.3f}")
    lines.append(f"sample ratio check: p={result['srm_p_value']:.3g}")
    lines.append(
        f"decision: {d['winner'] or 'continue'} (effect {d['effect']:+.4f}, CI "
        f"[{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}], p={d['p_value']:.3g}, {d['method']}: "
        f"{d['reason']})"
    )
    return "\n".join(lines + [f"warning: {w}" for w in result.get("warnings", [])])
