import pytest

from ski_lvlm.utils.io import atomic_dir, atomic_write_json, check_writable_parent


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
        assert (out / "old.txt").exists()
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]


def test_atomic_write_json_and_writable_checks(tmp_path):
    atomic_write_json(tmp_path / "a" / "b.json", {"x": 1})
    assert (tmp_path / "a" / "b.json").read_text().strip().startswith("{")
    f = tmp_path / "file"
    f.write_text("x")
    assert "is a file" in check_writable_parent(f)[0]
    assert check_writable_parent(tmp_path / "new" / "deeper") == []
