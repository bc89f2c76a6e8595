"""difflib_models.io: atomic writes honour the umask and fsync the directory after the rename (issue 14 item 8)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from difflib_models import io


@pytest.fixture
def umask() -> Iterator[None]:
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_artifacts_honour_the_umask(tmp_path: Path, umask: None, mask: int, mode: int) -> None:
    os.umask(mask)
    assert io.current_umask() == mask
    text = io.atomic_write_text(tmp_path / "report.md", "# ok\n")
    data = io.atomic_write_json(tmp_path / "report.json", {"a": 1})
    tensor = io.atomic_write(tmp_path / "w.bin", lambda p: p.write_bytes(b"\x00" * 8))
    for path in (text, data, tensor):
        assert stat.S_IMODE(path.stat().st_mode) == mode, (path, oct(path.stat().st_mode))
    # the same mode a plain open() gives a new file under this umask
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert stat.S_IMODE(plain.stat().st_mode) == mode


def test_overwrite_keeps_umask_mode_and_leaves_no_temp(tmp_path: Path, umask: None) -> None:
    os.umask(0o022)
    path = tmp_path / "junit.xml"
    io.atomic_write_text(path, "old")
    io.atomic_write_text(path, "new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junit.xml"]


def test_directory_is_fsynced_after_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(("fsync", kind))
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(("replace", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    io.atomic_write_text(tmp_path / "report.json", "{}")
    assert events == [("fsync", "file"), ("replace", "report.json"), ("fsync", "dir")]


def test_platforms_that_refuse_a_directory_fsync_are_tolerated(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(22, "Invalid argument")  # e.g. some network filesystems
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert io.atomic_write_text(tmp_path / "a.txt", "x").read_text() == "x"
    real_open = os.open

    def refuse_dirs(path: str | os.PathLike[str], flags: int, *args: int) -> int:
        if Path(path).is_dir():
            raise PermissionError(13, "Permission denied")  # Windows cannot open a directory
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse_dirs)
    assert io.atomic_write_text(tmp_path / "b.txt", "y").read_text() == "y"
