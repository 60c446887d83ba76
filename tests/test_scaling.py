"""Experiment grids and searches beyond one process: a real Dask scheduler with two workers, an experiment killed
half-way and continued, two search processes sharing one Optuna journal, and the grammar of --space.

The engines are real (``dask scheduler`` / ``dask worker`` processes, Optuna's journal file); the runs are tiny
(the embedded Reber grammar, a step budget of 60-100 updates), so the file stays within a minute.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_cli
from rnnkit.errors import ConfigError, DataError

ENV = {**os.environ, "RNNKIT_BLAS_AUTO": "0", "PYTHONUNBUFFERED": "1"}  # the same BLAS kernels as this process
GRID = ["experiment", "reber", "--cell", "rnn", "--cell", "gru", "--seeds", "2", "--max-steps", "60",
        "--time-budget", "120"]


def rnnkit(*argv) -> list[str]:
    return [sys.executable, "-m", "rnnkit", *argv]


def records(out: Path) -> dict:
    """The runs of ``out/results.jsonl`` by key, without their wall time (the one number a machine decides)."""
    lines = (out / "results.jsonl").read_text().splitlines()[1:]
    return {r["key"]: {k: v for k, v in r.items() if k != "seconds"} for r in map(json.loads, lines)}


def table_without_times(text: str) -> list[str]:
    """The table rows of an experiment's Markdown without the mean-time column."""
    rows = [line.split("|") for line in text.splitlines() if line.startswith("| ")]
    return ["|".join(cells[:-3] + cells[-2:]) for cells in rows]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dask_cluster():
    """A ``dask scheduler`` and two ``dask worker --nthreads 1`` processes on 127.0.0.1 (random free ports);
    all three are stopped when the module's tests are done."""
    distributed = pytest.importorskip("distributed")
    address = f"tcp://127.0.0.1:{free_port()}"
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                               "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)]
    try:
        for name in ("w1", "w2"):
            procs.append(subprocess.Popen([sys.executable, "-m", "dask", "worker", address,
                                           "--nthreads", "1", "--no-dashboard", "--name", name],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV))
        with distributed.Client(address, timeout="20s") as client:
            client.wait_for_workers(2, timeout=30)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_a_grid_on_a_dask_scheduler_with_two_workers_equals_the_same_grid_run_locally(dask_cluster, tmp_path,
                                                                                          capsys):
    code, table, err = run_cli([*GRID, "--seeds", "1", "--scheduler", dask_cluster, "--out",
                                str(tmp_path / "dask")], capsys)
    assert code == 0, err
    assert "| rnn | – | 1 | 0% |" in table and "| gru | – | 1 |" in table and "60 |" in table
    assert err.count(" of 2 runs)") == 2
    # the local grid in this test process, after whatever the suite ran in it before: the kernels give the same
    # bits whether a process compiled them or loaded them from the cache (docs/scaling.md)
    code, _, err = run_cli([*GRID, "--seeds", "1", "--jobs", "1", "--out", str(tmp_path / "local")], capsys)
    assert code == 0, err
    dask, local = records(tmp_path / "dask"), records(tmp_path / "local")
    assert dask.keys() == local.keys()
    for key in dask:  # the same keys give the same numbers; on failure, name the fields that differ
        differ = {f: (dask[key].get(f), local[key].get(f)) for f in dask[key].keys() | local[key].keys()
                  if dask[key].get(f) != local[key].get(f)}
        assert not differ, f"{key}: (dask, local) differ in {differ}"
    assert (tmp_path / "dask" / "runs" / "gru-T0-seed0" / "metrics.jsonl").exists()


def test_dask_futures_are_waited_for_like_the_standard_librarys(dask_cluster):
    import distributed

    from rnnkit.training.executors import as_finished

    with distributed.Client(dask_cluster, timeout="20s") as client:
        futures = [client.submit(pow, 2, n, pure=False) for n in range(4)]
        assert sorted(f.result() for f in as_finished(futures)) == [1, 2, 4, 8]


def test_an_experiment_killed_half_way_continues_without_repeating_its_finished_runs(tmp_path, capsys):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen(rnnkit(*GRID, "--jobs", "1", "--out", str(killed)), env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    results = killed / "results.jsonl"
    while time.monotonic() < deadline and (not results.exists() or results.read_text().count("\n") < 2):
        time.sleep(0.05)  # until the header and the first finished run are written
    os.killpg(proc.pid, signal.SIGKILL)  # the command and anything it started
    proc.wait()
    finished = (killed / "results.jsonl").read_text().splitlines()[1:]
    assert 1 <= len(finished) < 4
    with open(killed / "results.jsonl", "a") as f:  # as if killed during an append
        f.write('{"key": "gru/T0/seed1", "cell": "gr')
    code, table, err = run_cli([*GRID, "--jobs", "1", "--out", str(killed)], capsys)
    assert code == 0, err
    assert f"{len(finished)} of 4 runs are in" in err and err.count(" runs)") == 4 - len(finished)
    lines = (killed / "results.jsonl").read_text().splitlines()
    assert lines[1:1 + len(finished)] == finished and len(lines) == 5  # kept as written; the torn line is gone
    code, whole_table, err = run_cli([*GRID, "--jobs", "1", "--out", str(whole)], capsys)
    assert code == 0, err
    assert records(killed) == records(whole)
    assert table_without_times(table) == table_without_times(whole_table) and len(table_without_times(table)) == 3
    (killed / "reber.md").unlink()
    code, report, err = run_cli(["experiment", "reber", "--report", "--out", str(killed)], capsys)
    assert code == 0 and report == table and (killed / "reber.md").read_text().strip() == table.strip()


def test_another_experiment_configuration_in_the_same_directory_is_refused_and_nothing_is_written(tmp_path,
                                                                                                    capsys):
    from rnnkit.training.results import ResultsFile, make_header

    ResultsFile.open(tmp_path, make_header("reber", {}, {"time_budget": 30.0, "max_steps": 0}))
    before = (tmp_path / "results.jsonl").read_text()
    code, _, err = run_cli([*GRID, "--out", str(tmp_path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "another experiment configuration" in err and "max_steps 0 (asked: 60)" in err
    assert (tmp_path / "results.jsonl").read_text() == before and not (tmp_path / "reber.md").exists()


def test_a_results_file_damaged_before_its_last_line_is_an_error_not_skipped(tmp_path):
    from rnnkit.training.results import read_results

    path = tmp_path / "results.jsonl"
    path.write_text('{"rnnkit_results": 1, "experiment": "reber"}\n{"key": "rnn/T0/se\n{"key": "gru/T0/seed0"}\n')
    with pytest.raises(DataError, match="line 2 is damaged"):
        read_results(path)
    path.write_text('{"something": "else"}\n')
    with pytest.raises(DataError, match="not an rnnkit results file"):
        read_results(path)


def test_two_search_processes_share_one_journal_and_count_their_trials_together(tmp_path):
    optuna = pytest.importorskip("optuna")
    out = tmp_path / "search"
    argv = rnnkit("search", "reber", "--trials", "6", "--space", "lr=log(1e-2,1) cell=[lstm,gru]", "--hidden-size",
                  "8", "--max-steps", "60", "--eval-every", "30", "--jobs", "1", "--out", str(out))
    procs = [subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    ran = [line.split(":")[0] for _, err in outputs for line in err.splitlines() if line.startswith("trial ")]
    assert sorted(ran) == [f"trial {n}" for n in range(6)]  # each trial run once, by one of the two
    from rnnkit.training.search import STUDY, storage_of

    study = optuna.load_study(study_name=STUDY, storage=storage_of(out))
    assert len(study.trials) == 6 and {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}
    for t in study.trials:
        assert (Path(t.user_attrs["run_dir"]) / "metrics.jsonl").exists()
    summary = (out / "search.md").read_text()
    assert "6 trials:" in summary and "rnnkit train reber --hidden-size 8 --max-steps 60" in summary


def test_a_search_space_is_read_and_each_mistake_is_one_line_naming_it():
    from rnnkit.cli.search import space_fields
    from rnnkit.training.search import parse_space

    fields = space_fields()
    dims = parse_space("lr=log(1e-4,1e-1) hidden_size=[64, 128,256] dropout=uniform(0,0.5) num_layers=int(1,3) "
                       "cell=[lstm,gru]", fields)
    assert [(d.name, d.kind) for d in dims] == [("lr", "log"), ("hidden_size", "choice"), ("dropout", "uniform"),
                                                ("num_layers", "int"), ("cell", "choice")]
    assert dims[1].choices == (64, 128, 256) and dims[0].low == 1e-4 and dims[3].integer
    mistakes = {"lr=log(1e-4)": "two bounds", "lr=normal(0,1)": "not a distribution", "speed=[1,2]": "'speed'",
                "weight_decay=log(0,1)": "0 < a < b", "lr=int(1,3)": "expected log(a,b) or uniform(a,b)",
                "hidden_size=[64,big]": "hidden_size=big", "cell=[lstm,nope]": "cell=nope", "lr=": "cannot read",
                "lr=log(1e-3,1e-2) lr=[0.1]": "twice", "cell=uniform(0,1)": "expected a list"}
    for text, words in mistakes.items():
        with pytest.raises(ConfigError, match=None) as caught:
            parse_space(text, fields)
        assert words in str(caught.value) and "\n" not in str(caught.value), (text, str(caught.value))


def test_a_search_refuses_a_setting_its_task_does_not_have_before_any_trial_runs(tmp_path, capsys):
    pytest.importorskip("optuna")
    code, _, err = run_cli(["search", "reber", "--space", "seq_length=[10,20]", "--out", str(tmp_path / "s")],
                           capsys)
    assert code == 2 and "--seq-length is not a setting of task 'reber'" in err and not (tmp_path / "s").exists()
