"""When ``feast apply`` is due: what it reads (the definitions, the chosen configuration, the
Redis address) against the stamp the last apply left, and what that apply made."""

from __future__ import annotations

import pytest

from recsys.config import RecsysError
from recsys.features.repository import (
    CHECKED_CLI,
    STAMP,
    UNCHECKED_CLI,
    apply_command,
    apply_digest,
    apply_due,
    definitions_digest,
    feast_apply,
    mark_checked,
)
from tests.helpers import copy_feature_repo


@pytest.fixture
def applied(tmp_path):
    """A repository as an apply leaves it: its stamp, a registry and an online store."""
    repo = copy_feature_repo(tmp_path / "repo")
    data = repo / "data"
    data.mkdir()
    for name in ("registry.db", "online_store.db"):
        (data / name).write_bytes(b"made by feast apply")
    (data / STAMP.format(kind="sqlite")).write_text(apply_digest(repo, "sqlite"))
    return repo


def test_nothing_changed_nothing_is_due(applied):
    assert not apply_due(applied, "sqlite")


def test_an_edited_definition_is_due(applied):
    definitions = applied / "feature_views.py"
    definitions.write_text(definitions.read_text() + "\n# edited\n")
    assert apply_due(applied, "sqlite")


def test_an_edited_configuration_is_due(applied):
    config = applied / "feature_store.yaml"
    config.write_text(config.read_text().replace("online_store.db", "online.db"))
    assert apply_due(applied, "sqlite")


@pytest.mark.parametrize("lost", ["registry.db", "online_store.db", STAMP.format(kind="sqlite")])
def test_a_lost_registry_store_or_stamp_is_due(applied, lost):
    (applied / "data" / lost).unlink()
    assert apply_due(applied, "sqlite")


def test_the_redis_store_has_a_stamp_of_its_own_and_its_address_counts(applied, monkeypatch):
    monkeypatch.setenv("REDIS_CONNECTION_STRING", "127.0.0.1:6379")
    data = applied / "data"
    (data / "registry.redis.db").write_bytes(b"made by feast apply")
    assert apply_due(applied, "redis")  # the SQLite stamp does not stand for it
    (data / STAMP.format(kind="redis")).write_text(apply_digest(applied, "redis"))
    assert not apply_due(applied, "redis")
    monkeypatch.setenv("REDIS_CONNECTION_STRING", "10.0.0.7:6379")
    assert apply_due(applied, "redis")


def test_apply_without_built_tables_names_them(applied):
    with pytest.raises(
        RecsysError, match=r"no user_profile, .* table\(s\); run `recsys features build`"
    ):
        feast_apply(applied, "sqlite", if_changed=True)


def test_a_copied_or_moved_repository_is_due(applied, tmp_path):
    """The registry names its online tables by absolute path: a copy is applied anew."""
    moved = applied.rename(tmp_path / "elsewhere")
    assert apply_due(moved, "sqlite")


def test_definitions_are_checked_on_their_first_apply_only(applied, tmp_path, monkeypatch):
    """typeguard's checks run on a set of definitions' first apply on the machine; another
    copy of the same definitions skips them, an edited definition is checked again."""
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    config = applied / "feature_store.yaml"
    assert apply_command(applied, config)[2] == CHECKED_CLI
    mark_checked(applied)
    copy = copy_feature_repo(tmp_path / "copy")
    assert apply_command(copy, config)[2] == UNCHECKED_CLI
    assert definitions_digest(copy) == definitions_digest(applied)
    assert apply_digest(copy, "sqlite") != apply_digest(applied, "sqlite")  # another folder
    definitions = copy / "entities.py"
    definitions.write_text(definitions.read_text() + "\n# edited\n")
    assert apply_command(copy, config)[2] == CHECKED_CLI
