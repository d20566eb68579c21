"""The training pipeline's steps as plain typed functions.

Each Kubeflow component in ``pipelines/`` calls exactly one of these with the paths of its
artifacts; each returns a small JSON-able dict the component keeps as artifact metadata. The
order: ingest → materialize_features → training_set → train → evaluate → (gate) → register →
deploy. Nothing here knows about KFP: the same calls run from a test or a notebook.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.config import RecsysError
from recsys.data import movielens
from recsys.data.io import (
    USER,
    interactions_checksum,
    read_side_tables,
    read_table,
    resolve_interactions,
    write_json,
    write_parquet,
)
from recsys.data.split import split, split_lineage, write_split
from recsys.data.validate import load_interactions

TRAINING_SET_META = "training_set.json"
BASELINES = ("popularity", "ease")  # evaluated beside the candidate; popularity gates it


def ingest(
    source: str,
    out: str | Path,
    *,
    protocol: str = "stratified",
    seed: int = 42,
    max_bad_share: float = 0.05,
) -> dict[str, Any]:
    """Fetch or read interactions, validate them (bad rows quarantined), split.

    Args:
        source: ``movielens-100k`` (fetched once, then cached) or a dataset directory or
            interactions file (with ``users.parquet`` / ``items.parquet`` beside it, optional).
        out: the split directory to write (``train.parquet``, ``test.parquet``, side tables).

    Returns:
        Row counts, the data checksum and where the quarantined rows went.
    """
    out = Path(out)
    dataset = movielens.fetch() if source == movielens.NAME else Path(source)
    snapshot = dataset / "snapshot.json" if dataset.is_dir() else None
    if snapshot is not None and snapshot.exists():
        # base data + feedback: the base rows keep the side they had when the champion
        # trained; only the new rows are split afresh (recsys.monitoring.snapshot)
        sources = {
            "": json.loads(snapshot.read_text())["base"],
            "events": dataset / "events.parquet",
        }
        file, side = dataset / "interactions.parquet", dataset
    else:
        file, side = resolve_interactions(dataset)
        sources = {"": file}
    parts, halves, bad = [], [], 0
    for name, path in sources.items():
        quarantine = out.parent / ".".join(filter(None, (out.name, name, "quarantine.parquet")))
        rows, report = load_interactions(
            path, quarantine_to=quarantine, max_bad_share=max_bad_share, rating_range=None
        )
        parts.append(rows)
        halves.append(split(rows, protocol, seed=seed) if len(rows) else (rows, rows))
        bad += len(report.quarantine)
    interactions = pd.concat(parts, ignore_index=True)
    train = pd.concat([h[0] for h in halves], ignore_index=True)
    test = pd.concat([h[1] for h in halves], ignore_index=True)
    checksum = interactions_checksum(interactions)
    # What the training rows stand for: themselves and, for base data + feedback, the base
    # part (the champion's training rows): a store built from either serves both versions.
    base_train = halves[0][0]
    lineage = list(dict.fromkeys([interactions_checksum(train), interactions_checksum(base_train)]))
    params = {"protocol": protocol, "seed": seed, "source": str(file), "checksum": checksum}
    params["lineage"] = lineage
    write_split(train, test, out, side_from=side, params=params)
    return {
        "rows": len(interactions),
        "bad_rows": bad,
        "train_rows": len(train),
        "test_rows": len(test),
        "users": int(interactions[USER].nunique()),
        "checksum": checksum,
    }


def materialize_features(split_dir: str | Path, feature_repo: str | Path) -> dict[str, Any]:
    """Build the feature tables from the training rows only, ``feast apply``, materialize."""
    from recsys.features.api import refresh

    train, users, items = _read_split(split_dir)
    done = refresh(feature_repo, train, users, items, lineage=split_lineage(split_dir))
    return {**done, "rows": sum(done["rows"].values())}


def training_set(
    split_dir: str | Path,
    out: str | Path,
    *,
    feature_repo: str | Path | None = None,
    feature_service: str = "ranker_v1",
) -> dict[str, Any]:
    """The rows and attributes the models learn from, as a dataset directory.

    With ``feature_repo``, the point-in-time training set of ``feature_service``
    (``get_historical_features``); without it, the split's own side tables.
    """
    out = Path(out)
    train, users, items = _read_split(split_dir)
    lineage = split_lineage(split_dir) or [interactions_checksum(train)]
    meta: dict[str, Any] = {"feature_service": None, "rows": len(train), "lineage": lineage}
    if feature_repo:
        from recsys.features.api import load_training_set

        train, users, items, joined = load_training_set(feature_repo, train, feature_service)
        write_parquet(joined, out / "training_set.parquet")
        meta |= {"feature_service": feature_service, "rows": len(joined)}
        meta["columns"] = joined.shape[1]
    write_parquet(train, out / "train.parquet")
    for name, table in (("users", users), ("items", items)):
        if table is not None:
            write_parquet(table, out / f"{name}.parquet")
    write_json(meta, out / TRAINING_SET_META)
    return meta


def train(
    data_dir: str | Path,
    out: str | Path,
    *,
    kind: str = "pipeline",
    params: dict[str, Any] | None = None,
    gpu: bool = False,
    num_workers: int = 1,
    storage_path: str | None = None,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Fit ``kind`` on a training-set directory (Ray Train for the neural kinds) and save it.

    Returns:
        The new model version's id and its training metrics.
    """
    from recsys.models import read_manifest
    from recsys.training.api import TrainArgs, fit_model, training_metrics

    data_dir = Path(data_dir)
    rows = read_table(data_dir / "train.parquet")
    users, items = read_side_tables(data_dir)
    meta_file = data_dir / TRAINING_SET_META
    meta = _read_meta(meta_file) if meta_file.exists() else {}
    service = meta.get("feature_service")
    args = TrainArgs(
        data=data_dir,
        model=kind,
        out=Path(out),
        params=params or {},
        gpu=gpu,
        num_workers=num_workers,
        storage_path=storage_path,
        run_name=run_name,
    )
    model = fit_model(kind, rows, users, items, args.params, args=args)
    model.save(
        args.out,
        data_checksum=interactions_checksum(rows),
        metrics=training_metrics(model),
        feature_service=service,
        data_lineage=meta.get("lineage"),
    )
    return {"version": read_manifest(args.out).version, "kind": kind, "rows": len(rows)}


def evaluate(
    split_dir: str | Path,
    model_dir: str | Path,
    out: str | Path,
    *,
    registry_uri: str | None = None,
    k: int = 10,
    report_html: str | Path | None = None,
    reference_out: str | Path | None = None,
) -> dict[str, Any]:
    """Score the candidate, the registry's champion and the baselines on the same held-out
    users (exclude-seen, top-k); write the evaluation JSON, the Evidently HTML report and the
    candidate's monitoring reference (its top-k with features and relevance).

    Returns:
        ``k``, ``candidate`` / ``champion`` (None without one) / ``baseline`` (popularity),
        each ``{"version" or "model", "metrics"}``, and ``references`` (every baseline).
    """
    from recsys.evaluation.evidently_report import quality_snapshot, ranking_frame, save_html
    from recsys.evaluation.metrics import ranking_metrics
    from recsys.models import create_model, load_model, read_manifest
    from recsys.recommend import Request, prepare, recommend_frame
    from recsys.registry import Registry

    train, users, items = _read_split(split_dir)
    test = read_table(Path(split_dir) / "test.parquet")
    user_ids = sorted(set(train[USER]) & set(test[USER]))
    request = Request(k=k, exclude_seen=True)

    def score(model) -> tuple[dict[str, Any], pd.DataFrame]:
        # the one recommendation path, each user's state from the training rows
        recs = recommend_frame(prepare(model), user_ids, request, history=train)
        return ranking_metrics(recs, test, k, train=train).as_dict(), recs

    cand_metrics, cand_recs = score(load_model(model_dir))
    manifest = read_manifest(model_dir)
    result: dict[str, Any] = {
        "k": k,
        "candidate": {"version": manifest.version, "kind": manifest.kind, "metrics": cand_metrics},
        "champion": None,
        "references": {},
    }
    reference_recs = None
    registry = Registry(registry_uri)
    if (champion := registry.champion()) is not None:
        metrics, reference_recs = score(load_model(registry.local_path(champion.version)))
        result["champion"] = {"version": champion.version, "metrics": metrics}
    for kind in BASELINES:
        metrics, recs = score(create_model(kind).fit(train, users, items))
        result["references"][kind] = {"model": kind, "metrics": metrics}
        if reference_recs is None and kind == "popularity":
            reference_recs = recs
    result["baseline"] = result["references"]["popularity"]
    if report_html:
        reference = ranking_frame(reference_recs, test, k)
        snapshot = quality_snapshot(ranking_frame(cand_recs, test, k), reference, train, k)
        save_html(snapshot, report_html)
    if reference_out:
        from recsys.monitoring.reference import build_reference, item_popularity

        popularity = item_popularity(model_dir)
        write_parquet(build_reference(cand_recs, test, train, users, popularity, k), reference_out)
    write_json(result, out)
    return result


def register(
    model_dir: str | Path,
    registry_uri: str | None,
    *,
    reason: str = "",
    attachments: dict[str, str | Path] | None = None,
) -> str:
    """Add the model version to the registry and make it the champion.

    Args:
        attachments: files stored in the version's directory beside the model's parts, by
            name (the monitoring reference).

    Returns:
        The version id.
    """
    import shutil
    import tempfile

    from recsys.registry import Registry

    registry = Registry(registry_uri)
    with tempfile.TemporaryDirectory(prefix="recsys-register-") as tmp:
        if attachments:  # the artifact is an input: add the files to a copy
            copy = Path(tmp) / "model"
            shutil.copytree(model_dir, copy)
            for name, path in attachments.items():
                shutil.copyfile(path, copy / name)
            model_dir = copy
        version = registry.register(model_dir, note=reason).version
    registry.promote(version, reason=reason)
    return version


def deploy(
    version: str,
    registry_uri: str | None,
    serve_config_out: str | Path,
    *,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Write the Serve config that serves ``version`` from the registry; when a Ray cluster is
    named (``ray_address`` or ``RAY_ADDRESS``), switch its running app to ``version`` in place.

    Returns:
        ``{"version", "live", "config", ...}``; ``live`` says whether a running app switched.
    """
    import yaml

    from recsys import deploy as serve_ops
    from recsys.registry import Registry

    registry = Registry(registry_uri)
    registry.get(version)  # fail here, not in the replicas, when the version is missing
    root = str(registry.versions_dir() or registry.uri)
    config = serve_ops.serve_config(model_version=version, args={"model_root": root})
    Path(serve_config_out).parent.mkdir(parents=True, exist_ok=True)
    Path(serve_config_out).write_text(yaml.safe_dump(config, sort_keys=False))
    done: dict[str, Any] = {"version": version, "live": False, "config": str(serve_config_out)}
    address = ray_address or os.environ.get("RAY_ADDRESS")
    if not address:
        done["note"] = "no Ray address given: the config is written, no app was switched"
        return done
    serve_ops.connect(address)
    live_root = serve_ops.live_config()["applications"][0].get("args", {}).get("model_root")
    if live_root and Path(live_root).resolve() != Path(root).resolve():
        raise RecsysError(
            f"the running Serve app loads models from {live_root}, not from this registry "
            f"({root}); restart it with --model-root {root}"
        )
    live = serve_ops.set_version(version)
    url = serve_ops.local_url(live["http_options"])
    if address.startswith("ray://"):  # a Ray Client: the proxy is on the cluster, not here
        ready = serve_ops.wait_ready_on_head(live["http_options"])
    else:
        ready = serve_ops.wait_ready(url)
    return {**done, "live": True, "url": url, "serving": ready.get("model_version")}


def _read_split(split_dir: str | Path):
    """``train.parquet`` and the side tables of a split (or training-set) directory."""
    split_dir = Path(split_dir)
    if not (split_dir / "train.parquet").exists():
        raise RecsysError(f"{split_dir}: no train.parquet (not a split directory)")
    users, items = read_side_tables(split_dir)
    return read_table(split_dir / "train.parquet"), users, items


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RecsysError(f"{path}: unreadable training-set metadata ({exc})") from exc
