"""Outputs never destroy what the user did not ask us to replace (issue: `-o` naming a folder deleted it)."""

import os

import pytest

from v2l.errors import OutputPathError
from v2l.paths import atomic_path, check_output_dir, check_output_file, write_json_atomic


def test_an_existing_folder_is_never_replaced_by_a_file(tmp_path):
    docs = tmp_path / "mydocs"
    docs.mkdir()
    (docs / "thesis.txt").write_text("years of work")
    with pytest.raises(OutputPathError, match="mydocs"):
        write_json_atomic(docs, {"a": 1})
    assert (docs / "thesis.txt").read_text() == "years of work"
    assert sorted(os.listdir(tmp_path)) == ["mydocs"]  # no temporary file left


def test_a_file_is_replaced_atomically(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    write_json_atomic(target, {"new": True})
    assert '"new": true' in target.read_text() and sorted(os.listdir(tmp_path)) == ["out.json"]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["out.json"]


def test_a_folder_is_replaced_only_when_it_is_ours(tmp_path):
    art = tmp_path / "artefact"
    art.mkdir()
    (art / "manifest.json").write_text("{}")
    mine = lambda p: (p / "manifest.json").is_file()  # noqa: E731
    with atomic_path(art, replace=mine) as tmp:
        tmp.mkdir()
        (tmp / "manifest.json").write_text('{"v": 2}')
    assert (art / "manifest.json").read_text() == '{"v": 2}'
    assert sorted(os.listdir(tmp_path)) == ["artefact"]  # the old folder is gone, nothing else left
    other = tmp_path / "photos"
    other.mkdir()
    (other / "a.jpg").write_bytes(b"x")
    with pytest.raises(OutputPathError, match="photos"), atomic_path(other, replace=mine) as tmp:
        tmp.mkdir()
    assert (other / "a.jpg").read_bytes() == b"x"


def test_unusable_places_are_refused_before_any_work(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("a file")
    with pytest.raises(OutputPathError, match="inside .*notes.txt"):
        check_output_file(f / "x.png")
    with pytest.raises(OutputPathError, match="is a file, not a folder"):
        check_output_dir(f)
    with pytest.raises(OutputPathError, match="existing folder"):
        check_output_file(tmp_path)
    if os.geteuid() != 0:  # root may write anywhere; /proc refuses even root
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(OutputPathError, match="cannot write"):
            check_output_file(ro / "x.png")
    with pytest.raises(OutputPathError, match="/proc"):
        write_json_atomic("/proc/v2l-test.json", {})
    assert check_output_file(tmp_path / "new" / "deep" / "x.png").name == "x.png"
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_an_empty_folder_may_become_a_saved_folder_but_not_a_file(tmp_path):
    empty = tmp_path / "tok"
    empty.mkdir()
    with pytest.raises(OutputPathError, match="a file cannot replace it"):
        write_json_atomic(empty, {})
    assert empty.is_dir() and sorted(os.listdir(tmp_path)) == ["tok"]
    with atomic_path(empty) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text("{}")
    assert (empty / "config.json").is_file() and sorted(os.listdir(tmp_path)) == ["tok"]
