"""``recsys.files.atomic_dir``: a directory appears whole or not at all."""

import os

import pytest

from recsys.files import atomic_dir


def test_a_directory_appears_only_once_complete(tmp_path):
    target = tmp_path / "deep" / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights.bin").write_bytes(b"w")
        (tmp / "manifest.json").write_text("{}")
        assert tmp.parent == target.parent and tmp.name.startswith(".")
        assert not target.exists()
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "weights.bin"]
    assert os.listdir(target.parent) == ["model"]  # no temporary name left behind
    assert target.stat().st_mode & 0o777 == 0o777 & ~_umask()


def test_a_failure_leaves_nothing(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "part").write_text("half")
        raise RuntimeError("the writer failed")
    assert os.listdir(tmp_path) == []


def test_a_failure_keeps_the_existing_directory(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "new").write_text("new")
        raise RuntimeError("the writer failed")
    assert os.listdir(tmp_path) == ["model"] and os.listdir(target) == ["old"]


def test_an_existing_directory_is_replaced_whole(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "new").write_text("new")
    assert os.listdir(target) == ["new"]
    assert os.listdir(tmp_path) == ["model"]  # the old one is gone, not set aside


def test_without_replace_an_existing_directory_is_kept(tmp_path):
    target = tmp_path / "v1"
    target.mkdir()
    (target / "theirs").write_text("theirs")
    with pytest.raises(FileExistsError), atomic_dir(target, replace=False) as tmp:
        (tmp / "mine").write_text("mine")
    assert os.listdir(target) == ["theirs"]
    assert os.listdir(tmp_path) == ["v1"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
