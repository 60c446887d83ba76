"""teach student/grade read only regular UTF-8 notebooks: FIFOs, devices, text files and NUL bytes are refused; a
submission is graded in a separate process, so exiting, hanging or replacing the checker cannot forge a PASS."""

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


WRONG_LINEAR = """\
def linear_backward(dy, x, weight):
    return dy @ weight, dy.T @ x, dy[0]
"""


def submission(tmp_path, *cells: str):
    """A percent-format notebook whose exercise cells are ``cells``."""
    path = tmp_path / "submission.py"
    path.write_text("".join(f'# %% tags=["exercise"]\n{cell}\n' for cell in cells))
    return str(path)


def test_os_exit_in_an_exercise_cell_is_a_failed_verdict_and_a_nonzero_exit(tmp_path, capsys):
    path = submission(tmp_path, WRONG_LINEAR, "import os\nos._exit(0)\n")
    code, out, _ = run_cli(["teach", "grade", path], capsys)
    assert code == 1 and "PASS" not in out
    assert "submission" in out and "FAIL" in out and "ended (status 0) before answering" in out


@pytest.mark.parametrize("forgery", [
    "import rnnkit.teaching\nrnnkit.teaching._relative_error = lambda got, want: 0.0\n",
    "import rnnkit.layers\nrnnkit.layers.Linear.backward = lambda self, dy: (0 * dy @ self.weight.data)\n",
    "import rnnkit.teaching\nrnnkit.teaching.judge_answer = lambda *args: 0.0\n"])
def test_replacing_the_checker_or_the_reference_layer_in_a_submission_still_fails(forgery, tmp_path, capsys):
    path = submission(tmp_path, forgery + WRONG_LINEAR)
    code, out, _ = run_cli(["teach", "grade", path], capsys)
    assert code == 1 and "linear_backward" in out and "FAIL" in out and "dbias is wrong" in out


def test_an_infinite_loop_in_an_exercise_fails_as_timed_out(tmp_path, capsys):
    path = submission(tmp_path, "def linear_backward(dy, x, weight):\n    while True:\n        pass\n")
    code, out, _ = run_cli(["teach", "grade", "--timeout", "3", path], capsys)
    assert code == 1 and "FAIL" in out and "timed out after 3 s" in out


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e308", "soon"])
def test_a_timeout_that_is_not_a_finite_positive_number_is_refused_in_one_line(value, tmp_path, capsys):
    code, _, err = run_cli(["teach", "grade", "--timeout", value, submission(tmp_path, WRONG_LINEAR)], capsys)
    assert code == 2 and err.startswith("rnnkit: error:") and "--timeout" in err and err.count("\n") == 1


def test_grading_a_function_that_exits_fails_the_exercise_instead_of_passing_silently():
    from rnnkit import teaching

    exiting = "# %% tags=[\"exercise\"]\ndef linear_backward(dy, x, weight):\n    raise SystemExit(0)\n"
    (result,) = [g for g in teaching.grade(exiting) if g.name == "linear_backward"]
    assert not result.passed and "SystemExit" in result.message
    at_top = "# %% tags=[\"exercise\"]\nimport sys\nsys.exit(0)\ndef linear_backward(dy, x, weight):\n    pass\n"
    assert not any(g.passed for g in teaching.grade(at_top) if g.name == "linear_backward")
