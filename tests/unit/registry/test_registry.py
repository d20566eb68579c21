"""The model registry on a directory and on fsspec (memory://); the `recsys registry` CLI."""

import json
import uuid

import fsspec
import pytest
from click.testing import CliRunner

from recsys.cli.main import cli
from recsys.config import RecsysError
from recsys.models.kinds import create_model, load_model
from recsys.registry import Registry, default_uri
from tests.helpers import recommend_rows


def save_model(interactions, directory, version, ndcg=0.3):
    model = create_model("popularity").fit(interactions)
    return model.save(directory, version=version, metrics={"ndcg": ndcg, "coverage": 0.5})


@pytest.fixture
def models(tmp_path, interactions):
    """Three tiny model directories, versions v1..v3."""
    return {
        f"v{i}": save_model(interactions, tmp_path / "models" / f"m{i}", f"v{i}", 0.1 * i)
        for i in (1, 2, 3)
    }


@pytest.fixture
def reg(tmp_path):
    return Registry(tmp_path / "reg")


@pytest.fixture
def memory_uri():
    uri = f"memory://registry-{uuid.uuid4().hex[:8]}"
    yield uri
    fs, root = fsspec.core.url_to_fs(uri)
    if fs.exists(root):
        fs.rm(root, recursive=True)


def actions(reg):
    return [(e.action, e.version, e.previous) for e in reg.history()]


def test_register_list_get(reg, models, tmp_path):
    for directory in models.values():
        reg.register(directory, note="trained")
    assert [v.version for v in reg.versions()] == ["v1", "v2", "v3"]
    v2 = reg.get("v2")
    assert v2.kind == "popularity" and v2.metrics == {"ndcg": 0.2, "coverage": 0.5}
    assert v2.uri == str(tmp_path / "reg" / "versions" / "v2")
    assert reg.versions_dir() == tmp_path / "reg" / "versions"  # serving's model_root
    assert (reg.versions_dir() / "v2" / "manifest.json").exists()
    assert [e.reason for e in reg.history()] == ["trained"] * 3
    assert reg.champion() is None


def test_register_again_is_a_noop_and_a_different_manifest_is_refused(
    reg, models, interactions, tmp_path
):
    first = reg.register(models["v1"])
    assert reg.register(models["v1"]) == first
    assert actions(reg) == [("register", "v1", None)]
    other = save_model(interactions, tmp_path / "other", "v1", ndcg=0.9)
    with pytest.raises(RecsysError, match="v1 is already registered .* different manifest"):
        reg.register(other)
    assert reg.get("v1").metrics["ndcg"] == 0.1


def test_register_refuses_a_non_model_and_an_unsafe_version_id(reg, interactions, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecsysError, match="not a model directory"):
        reg.register(tmp_path / "empty")
    bad = save_model(interactions, tmp_path / "bad", "../escape")
    with pytest.raises(RecsysError, match="cannot name a registry directory"):
        reg.register(bad)
    assert reg.versions() == []


def test_get_unknown_names_the_version_the_registry_and_some_versions(reg, models):
    with pytest.raises(RecsysError, match=r"'v1' is not in the registry .*it is empty"):
        reg.get("v1")
    reg.register(models["v1"])
    with pytest.raises(RecsysError, match=rf"'v9' is not in the registry {reg.uri} .*has v1"):
        reg.get("v9")
    with pytest.raises(RecsysError, match="not in the registry"):
        reg.get("../reg")


def test_promote_and_rollback_keep_a_stack_and_a_history(reg, models):
    for directory in models.values():
        reg.register(directory)
    reg.promote("v1")
    reg.promote("v2", reason="better", metrics={"ndcg": 0.2})
    champion = reg.promote("v3")
    assert champion.version == "v3" and champion.previous == ["v2", "v1"]
    assert reg.promote("v3") == champion  # already the champion: no change, no event
    back = reg.rollback(reason="bad canary")
    assert (back.version, back.previous, back.reason) == ("v2", ["v1"], "bad canary")
    assert reg.rollback().version == "v1"
    with pytest.raises(RecsysError, match="no previous champion"):
        reg.rollback()
    assert actions(reg)[3:] == [
        ("promote", "v1", None),
        ("promote", "v2", "v1"),
        ("promote", "v3", "v2"),
        ("rollback", "v2", "v3"),
        ("rollback", "v1", "v2"),
    ]
    assert reg.history()[4].metrics == {"ndcg": 0.2}
    assert reg.champion() == reg.champion() and reg.champion().version == "v1"


def test_promote_refuses_a_missing_version_and_writes_nothing(reg, models, tmp_path):
    reg.register(models["v1"])
    with pytest.raises(RecsysError, match="'v9' is not in the registry"):
        reg.promote("v9")
    assert reg.champion() is None and not (tmp_path / "reg" / "champion.json").exists()
    with pytest.raises(RecsysError, match="has no champion, no previous champion"):
        reg.rollback()


def test_a_mistyped_registry_is_not_created(tmp_path):
    reg = Registry(tmp_path / "typo")
    with pytest.raises(RecsysError, match="not in the registry"):
        reg.promote("v1")
    with pytest.raises(RecsysError, match="no registry at"):
        reg.rollback()
    assert reg.versions() == [] and reg.champion() is None and reg.history() == []
    assert not (tmp_path / "typo").exists()


def test_previous_stack_is_capped(reg, models):
    reg.register(models["v1"])
    reg.register(models["v2"])
    for i in range(55):
        reg.promote("v1" if i % 2 else "v2")
    assert len(reg.champion().previous) == 50


def test_a_torn_pointer_is_reported_with_its_file(reg, models, tmp_path):
    reg.register(models["v1"])
    reg.promote("v1")
    (tmp_path / "reg" / "champion.json").write_text('{"version": "v1", "promo')
    with pytest.raises(RecsysError, match=r"champion\.json: not valid JSON"):
        reg.champion()


def test_local_path_loads_and_temp_directories_are_not_versions(reg, models, interactions):
    reg.register(models["v1"])
    (reg.versions_dir() / ".v2.tmp-1234").mkdir()  # an interrupted copy
    (reg.versions_dir() / "v3").mkdir()  # no manifest: not a complete version
    assert [v.version for v in reg.versions()] == ["v1"]
    model = load_model(reg.local_path("v1"))
    assert len(recommend_rows(model, ["u1"], k=3, history=interactions)) == 3


def test_default_uri_and_file_uris(monkeypatch, tmp_path):
    monkeypatch.delenv("RECSYS_REGISTRY", raising=False)
    assert default_uri() == str(tmp_path / "recsys-home" / "registry")
    monkeypatch.setenv("RECSYS_REGISTRY", str(tmp_path / "elsewhere"))
    assert Registry().uri == str(tmp_path / "elsewhere")
    assert Registry(f"file://{tmp_path}/r/").versions_dir() == tmp_path / "r" / "versions"


def test_memory_registry_round_trip(memory_uri, models, interactions, tmp_path):
    reg = Registry(memory_uri)
    for directory in models.values():
        reg.register(directory)
    assert reg.register(models["v1"]).version == "v1"
    assert [v.version for v in reg.versions()] == ["v1", "v2", "v3"]
    assert reg.get("v2").uri == f"{memory_uri}/versions/v2" and reg.versions_dir() is None
    reg.promote("v1")
    reg.promote("v3")
    assert reg.rollback().version == "v1"
    assert [a for a, _, _ in actions(reg)] == ["register"] * 3 + ["promote"] * 2 + ["rollback"]
    path = reg.local_path("v2")
    assert path.is_relative_to(tmp_path / "recsys-home" / "registry-cache")
    assert recommend_rows(load_model(path), ["u1"], k=2, history=interactions).shape[0] == 2
    assert reg.local_path("v2") == path  # cached: downloaded once


def test_memory_registry_hides_a_version_until_its_manifest_lands(memory_uri, models):
    reg = Registry(memory_uri)
    reg.register(models["v1"])
    fs, root = fsspec.core.url_to_fs(memory_uri)
    fs.pipe_file(f"{root}/versions/v2/item_vocab.json", b"[]")  # an upload cut short
    assert [v.version for v in reg.versions()] == ["v1"]
    with pytest.raises(RecsysError, match="'v2' is not in the registry"):
        reg.promote("v2")


# -- the CLI ---------------------------------------------------------------------------
@pytest.fixture
def run(tmp_path):
    runner = CliRunner()

    def invoke(*args):
        argv = ["registry", "--registry", str(tmp_path / "reg"), *map(str, args)]
        return runner.invoke(cli, argv, catch_exceptions=False)

    return invoke


def test_cli_register_list_show_promote_rollback_history(run, models):
    r = run("register", models["v1"], "--promote")
    assert r.exit_code == 0, r.output
    assert "registered v1 (popularity)" in r.output and "champion: v1 (previous: none)" in r.output
    assert run("register", models["v2"], "--note", "retrained").exit_code == 0
    r = run("list")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert "nDCG@10" in lines[0] and "coverage" in lines[0]
    assert lines[1].startswith("* v1") and "0.1000" in lines[1] and "0.5000" in lines[1]
    assert lines[2].startswith("  v2") and "0.2000" in lines[2]
    r = run("promote", "v2", "--reason", "better nDCG")
    assert r.output.strip() == "champion: v2 (previous: v1)"
    assert run("promote", "v2").output.strip() == "v2 is already the champion"
    shown = json.loads(run("show", "champion").output)
    assert shown["version"] == "v2" and shown["champion"] is True
    assert shown["pointer"]["previous"] == ["v1"] and shown["manifest"]["kind"] == "popularity"
    assert json.loads(run("show", "v1").output)["champion"] is False
    assert run("rollback").output.strip() == "champion: v1 (rolled back from v2)"
    history = run("history").output.splitlines()
    assert [line.split()[1] for line in history] == [
        "register",
        "promote",
        "register",
        "promote",
        "rollback",
    ]
    assert "v2 (was v1)  better nDCG" in history[3]


@pytest.mark.parametrize(
    "args, message",
    [
        (["list"], "is empty"),
        (["show", "champion"], "has no champion yet"),
        (["show", "v9"], "model version 'v9' is not in the registry"),
        (["promote", "v9"], "model version 'v9' is not in the registry"),
        (["rollback"], "no registry at"),
    ],
)
def test_cli_errors_exit_1_with_a_message(run, args, message):
    r = run(*args)
    assert r.exit_code == 1
    assert "error: " in r.output and message in r.output
    assert "Traceback" not in r.output


def test_cli_rollback_without_a_previous_champion(run, models):
    assert run("register", models["v1"], "--promote").exit_code == 0
    r = run("rollback")
    assert r.exit_code == 1 and "has only v1, no previous champion" in r.output


def test_serving_model_cache_loads_versions_from_a_remote_registry(tmp_path, models, memory_uri):
    """``model_root: s3://…`` in the Serve config: a version is downloaded on first use."""
    from serving.runtime import ModelCache

    cache = ModelCache(memory_uri)
    assert cache.registry is not None and cache.root is None
    version = Registry(memory_uri).register(models["v1"]).version
    assert cache.path(version).joinpath("manifest.json").exists()
    assert ModelCache(tmp_path).path("v1") == tmp_path / "v1"
