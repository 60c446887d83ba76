"""teach student/grade read only regular UTF-8 notebooks: FIFOs, devices, text files and NUL bytes are refused."""

from __future__ import annotations

import os

import pytest

from conftest import run_cli


@pytest.mark.parametrize("command", ["student", "grade"])
def test_a_fifo_is_refused_without_being_opened(command, tmp_path, capsys):
    fifo = tmp_path / "n.py"
    os.mkfifo(fifo)
    code, _, err = run_cli(["teach", command, str(fifo)] + (["--out", str(tmp_path / "o")] if command == "student"
                                                            else []), capsys)
    assert code == 2 and "not a regular file" in err


def test_grading_dev_null_fails_in_one_line(capsys):
    code, _, err = run_cli(["teach", "grade", "/dev/null"], capsys)
    assert code == 2 and err.startswith("rnnkit: error:") and err.count("\n") == 1


def test_grading_a_text_file_that_is_not_a_notebook_fails(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("just text\n")
    code, _, err = run_cli(["teach", "grade", str(path)], capsys)
    assert code == 2 and "not a notebook" in err


def test_a_notebook_with_nul_bytes_is_refused(tmp_path, capsys):
    path = tmp_path / "n.py"
    path.write_bytes(b"# %%\nx = 1\x00\n")
    code, _, err = run_cli(["teach", "student", str(path), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "NUL" in err and not (tmp_path / "o").exists()
