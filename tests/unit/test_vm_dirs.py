"""Which host directories the guest must be given because its tmpfs would hide them."""

from pathlib import Path

import pytest

from knockout.vm._session import hidden_host_dirs


def test_a_directory_under_tmp_is_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "clone"
    work.mkdir()
    monkeypatch.chdir(work)
    assert str(tmp_path).startswith("/tmp/")
    assert work.resolve() in hidden_host_dirs([])


def test_a_directory_already_an_rwdir_is_not_shared_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "clone"
    work.mkdir()
    monkeypatch.chdir(work)
    assert not any(d.is_relative_to(tmp_path) for d in hidden_host_dirs([tmp_path.resolve()]))


def test_directories_the_guest_sees_anyway_are_not_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/usr")
    assert Path("/usr") not in hidden_host_dirs([])
