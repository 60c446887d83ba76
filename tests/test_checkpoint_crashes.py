"""Checkpoints survive any sequence of kills: fault injection before every filesystem operation of a save."""

from __future__ import annotations

import itertools
import os
import shutil

import numpy as np
import pytest

from rnnkit.errors import CheckpointError
from rnnkit.training import checkpoint


class Killed(BaseException):
    """A simulated kill: nothing after it runs, no `except Exception` catches it."""


def save_version(run, i: int) -> None:
    """Checkpoint number ``i``: every file says ``i``, so a mixed or partial checkpoint is detected."""
    model = {"weight": np.full((3, 4), i, np.float32), "bias": np.arange(i + 1, dtype=np.float32)}
    optimizer = {"step": np.array([i], np.int64), "exp_avg.weight": np.full((3, 4), -i, np.float32)}
    carry = {"state0": np.full((2, 4), i, np.float32)}
    checkpoint.save(run, model, optimizer, {"progress": {"step": i}}, carry)


def loaded_version(run) -> int:
    """The number of the checkpoint ``run`` loads, after checking all of its files say the same."""
    meta, model, optimizer, carry = checkpoint.load(run)
    i = meta["progress"]["step"]
    assert optimizer is not None and carry is not None
    np.testing.assert_array_equal(model["weight"], np.full((3, 4), i, np.float32))
    np.testing.assert_array_equal(model["bias"], np.arange(i + 1, dtype=np.float32))
    np.testing.assert_array_equal(optimizer["step"], [i])
    np.testing.assert_array_equal(optimizer["exp_avg.weight"], np.full((3, 4), -i, np.float32))
    np.testing.assert_array_equal(carry["state0"], np.full((2, 4), i, np.float32))
    return i


def killed_at(k: int | None):
    """A hook that kills the save before its operation number ``k`` (None: never)."""
    count = [0]

    def hook(operation, path):
        if count[0] == k:
            raise Killed(f"{operation} {path}")
        count[0] += 1

    return hook


def save_killed(monkeypatch, run, i: int, k: int | None) -> bool:
    """Save checkpoint ``i`` and kill it before operation ``k``; True if the kill happened."""
    monkeypatch.setattr(checkpoint, "before_operation", killed_at(k))
    try:
        save_version(run, i)
    except Killed:
        return True
    finally:
        monkeypatch.setattr(checkpoint, "before_operation", None)
    return False


def operations_of_a_save(monkeypatch, run, i: int) -> list[tuple[str, str]]:
    operations = []
    monkeypatch.setattr(checkpoint, "before_operation", lambda op, path: operations.append((op, path.name)))
    save_version(run, i)
    monkeypatch.setattr(checkpoint, "before_operation", None)
    return operations


@pytest.fixture(autouse=True)
def no_real_fsync(monkeypatch):
    """A simulated kill loses no written data, so fsync is only counted (it keeps the test fast)."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


def test_every_filesystem_change_of_a_save_is_a_numbered_operation(tmp_path, monkeypatch):
    save_version(tmp_path / "run", 1)
    (tmp_path / "run" / ".checkpoint.pointer-tmp").symlink_to("checkpoint-000001")  # leftovers of a killed save:
    (tmp_path / "run" / ".checkpoint.tmp-000007").mkdir()  # this save removes them (os.remove, shutil.rmtree)
    real = {name: getattr(os, name) for name in ("mkdir", "rename", "replace", "symlink", "remove")}
    calls = []
    for name, fn in real.items():
        monkeypatch.setattr(os, name, lambda *a, _n=name, _f=fn, **kw: (calls.append(_n), _f(*a, **kw))[1])
    real_rmtree = shutil.rmtree
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **kw: (calls.append("rmtree"), real_rmtree(*a, **kw))[1])
    hooked = [op for op, _ in operations_of_a_save(monkeypatch, tmp_path / "run", 2)]
    for name in ("rename", "replace", "symlink", "rmtree", "remove"):
        assert calls.count(name) == hooked.count(name), name
    assert calls.count("remove") == 1 and calls.count("rmtree") == 2  # leftover pointer; leftover folder, version 1
    assert calls.count("mkdir") <= hooked.count("mkdir") and "create" in hooked and "write" in hooked
    assert not any(p.name.startswith(checkpoint.LEFTOVERS) for p in (tmp_path / "run").iterdir())
    assert loaded_version(tmp_path / "run") == 2


def test_a_kill_before_any_operation_of_the_first_save_leaves_nothing_or_the_checkpoint(tmp_path, monkeypatch):
    count = len(operations_of_a_save(monkeypatch, tmp_path / "probe", 1))
    for k in range(count):
        run = tmp_path / f"k{k}"
        assert save_killed(monkeypatch, run, 1, k)
        try:
            assert loaded_version(run) == 1
        except CheckpointError as e:
            assert "no checkpoint" in str(e) or "does not exist" in str(e), (k, str(e))
        save_version(run, 2)
        assert loaded_version(run) == 2


def kill_points(monkeypatch, template, scratch, i: int):
    """For k = 0, 1, ...: a copy of ``template`` whose save of checkpoint ``i`` was killed before operation k,
    and finally (k = the number of operations) one whose save completed."""
    for k in itertools.count():
        run = scratch / f"{template.name}-{k}"
        shutil.copytree(template, run, symlinks=True)
        killed = save_killed(monkeypatch, run, i, k)
        yield k, killed, run
        if not killed:
            return


def test_two_kills_in_a_row_at_any_operations_never_lose_or_mix_a_checkpoint(tmp_path, monkeypatch):
    """Kill the save of checkpoint 2 before operation k, 'resume' from what loads, kill the save of checkpoint 3
    before operation j: the last complete checkpoint always loads, for every (k, j), and the next save works."""
    template = tmp_path / "template"
    save_version(template, 1)
    first_points, pairs = 0, 0
    for k, killed, first in kill_points(monkeypatch, template, tmp_path, 2):
        resumed = loaded_version(first)
        assert resumed in ((1, 2) if killed else (2,)), k
        first_points += killed
        for j, killed_again, run in kill_points(monkeypatch, first, tmp_path, 3):
            assert loaded_version(run) in ((resumed, 3) if killed_again else (3,)), (k, j)
            save_version(run, 4)  # the directory stays usable, with nothing left over but one version
            assert loaded_version(run) == 4
            assert sorted(p.name for p in run.iterdir()) == ["checkpoint", checkpoint.find(run).name]
            shutil.rmtree(run)
            pairs += killed_again
        shutil.rmtree(first)
    assert first_points >= 20 and pairs >= first_points ** 2
    print(f"kill points: {first_points} in one save, {pairs} pairs of kills in two saves")


def test_a_half_deleted_version_is_never_loaded(tmp_path):
    run = tmp_path / "run"
    save_version(run, 1)
    save_version(run, 2)
    current = checkpoint.find(run)
    stale = run / "checkpoint-000001"
    shutil.copytree(current, stale)
    (stale / "optimizer.safetensors").unlink()  # as a kill in the middle of deleting an old version would leave it
    (run / "checkpoint").unlink()
    os.symlink(stale.name, run / "checkpoint")
    assert loaded_version(run) == 2


def test_checkpoints_of_the_previous_layout_still_load_and_are_replaced_by_versions(tmp_path):
    run = tmp_path / "run"
    save_version(run, 1)
    legacy = run / "legacy"
    shutil.copytree(checkpoint.find(run), legacy)
    shutil.rmtree(run / checkpoint.find(run).name)
    (run / "checkpoint").unlink()
    (legacy / "manifest.json").unlink()
    legacy.rename(run / "checkpoint")
    assert loaded_version(run) == 1
    save_version(run, 2)
    assert loaded_version(run) == 2 and (run / "checkpoint").is_symlink()
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint", "checkpoint-000001"]


CHILD = """
import os, sys
import numpy as np
from rnnkit.training import checkpoint
count = [0]
def hook(operation, path):
    if count[0] == int(sys.argv[2]):
        os._exit(9)  # a real kill: no cleanup, no flush of Python's buffers
    count[0] += 1
checkpoint.before_operation = hook
i = 2
checkpoint.save(sys.argv[1], {"weight": np.full((3, 4), i, np.float32), "bias": np.arange(i + 1, dtype=np.float32)},
                {"step": np.array([i], np.int64), "exp_avg.weight": np.full((3, 4), -i, np.float32)},
                {"progress": {"step": i}}, {"state0": np.full((2, 4), i, np.float32)})
"""


def test_a_process_that_exits_before_any_operation_of_a_save_leaves_a_complete_checkpoint(tmp_path, monkeypatch):
    import subprocess
    import sys

    save_version(tmp_path / "probe", 1)
    count = len(operations_of_a_save(monkeypatch, tmp_path / "probe", 2))
    runs = {}
    for k in range(count + 1):
        run = tmp_path / f"run{k}"
        save_version(run, 1)
        runs[k] = (run, subprocess.Popen([sys.executable, "-c", CHILD, str(run), str(k)]))
    for k, (run, child) in runs.items():
        assert child.wait(timeout=120) == (9 if k < count else 0), k
        assert loaded_version(run) in ((1, 2) if k < count else (2,)), k
        save_version(run, 3)
        assert loaded_version(run) == 3
