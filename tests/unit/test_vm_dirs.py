"""Which host directories a guest is given: what its tmpfs would hide, or all it needs."""

from pathlib import Path

import pytest

from knockout.vm._session import hidden_host_dirs, knockout_tree, shared_host_dirs


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


def test_a_guest_over_a_prepared_root_gets_the_tree_and_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "clone" / "sub"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    shared = shared_host_dirs([])
    assert knockout_tree() in shared and work.resolve() in shared
    assert Path("/") not in shared


def test_a_prepared_root_gets_nothing_inside_an_rwdir_or_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "clone"
    (work / "sub").mkdir(parents=True)
    monkeypatch.chdir(work / "sub")
    shared = shared_host_dirs([tmp_path.resolve()])
    assert not any(d.is_relative_to(tmp_path.resolve()) for d in shared)
    monkeypatch.chdir(knockout_tree() / "knockout")  # inside the tree: shared once, as the tree
    assert [d for d in shared_host_dirs([]) if d.is_relative_to(knockout_tree())] == [
        knockout_tree()
    ]


def test_a_root_being_prepared_sees_only_its_rwdirs(tmp_path: Path) -> None:
    assert shared_host_dirs([tmp_path], writable_root=True) == []


def test_a_cache_missing_at_boot_is_made_and_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module cross-built after the guest booted must be seen there (a fresh CI machine)."""
    kmod = tmp_path / "not-yet" / "kmod"
    monkeypatch.setenv("KNOCKOUT_KMOD_CACHE", str(kmod))
    monkeypatch.setenv("KNOCKOUT_DEBUG_CACHE", str(tmp_path / "debug-cache"))
    shared = shared_host_dirs([])
    assert kmod.is_dir() and kmod.resolve() in shared
    assert (tmp_path / "debug-cache" / "debug").resolve() in shared
