"""The teaching kit: the notebooks parse, the student version replaces exactly the solutions, and the grading passes
on the solutions and fails on the student stubs. (The notebooks themselves are executed by .ci/run through
notebooks/run_all.py, not here: that takes minutes.)"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from rnnkit import teaching
from rnnkit.cli import main
from rnnkit.errors import ConfigError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_layer_contract", "02_elman_bptt", "03_vanishing_gradients", "04_lstm_gru", "05_char_lm",
         "06_crf_attention", "07_new_cells", "08_defined_cells", "lecture_00_framework", "lecture_01_framework",
         "lecture_02_elman_jordan", "lecture_03_basics", "lecture_04_ner"]


def source(name: str) -> str:
    return (NOTEBOOKS / f"{name}.py").read_text(encoding="utf-8")


def test_every_notebook_is_a_percent_notebook_of_valid_python_with_markdown_and_code():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.py") if teaching.is_percent_notebook(p.read_text())) == NAMES
    for name in NAMES:
        text = source(name)
        ast.parse(text)  # a syntax error in a cell fails here, not after minutes of CI
        kinds = {cell.kind for cell in teaching.cells(text)}
        assert kinds == {"code", "markdown"}, name
        assert "$" in text, f"{name} has no LaTeX equations"
        ast.parse(teaching.student_source(text))


def test_every_notebook_converts_with_jupytext():
    jupytext = pytest.importorskip("jupytext")
    for name in NAMES:
        notebook = jupytext.read(NOTEBOOKS / f"{name}.py")
        assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# "), name
        tagged = [c for c in notebook.cells if "exercise" in c.metadata.get("tags", [])]
        assert [c.source for c in tagged] == [s.rstrip("\n") for s in teaching.exercise_cells(source(name))], name


def test_student_source_replaces_each_solution_by_a_stub_at_the_marker_indentation():
    text = ("def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n\n\n"
            "class A:\n    def g(self):\n        ### BEGIN SOLUTION\n        pass\n        ### END SOLUTION\n")
    assert teaching.student_source(text) == ("def f(x):\n    y = 1\n    raise NotImplementedError\n\n\n"
                                             "class A:\n    def g(self):\n        raise NotImplementedError\n")


@pytest.mark.parametrize("text, line", [("### BEGIN SOLUTION\nx\n", 1), ("x\n### END SOLUTION\n", 2),
                                        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", 2)])
def test_unbalanced_solution_markers_are_one_line_errors_naming_the_line(text, line):
    with pytest.raises(ConfigError, match=rf"^nb:{line}: "):
        teaching.student_source(text, "nb")


def exercises(text: str) -> dict:
    namespace = {"np": np}
    for cell in teaching.exercise_cells(text):
        exec(cell, namespace)  # noqa: S102 - the notebook's own exercise cells
    return namespace


@pytest.mark.parametrize("notebook, name", [("01_layer_contract", "linear_backward"),
                                            ("02_elman_bptt", "elman_backward")])
def test_grading_passes_on_the_solution_and_fails_on_the_student_stub(notebook, name):
    text = source(notebook)
    assert teaching.worst_error(name, exercises(text)[name]) < 1e-8
    with pytest.raises(AssertionError, match="not implemented yet"):
        teaching.worst_error(name, exercises(teaching.student_source(text))[name])


def test_grading_names_what_is_wrong_in_a_wrong_answer():
    def forgot_the_batch_sum(dy, x, weight):
        return dy @ weight, dy.T @ x, dy[0]

    with pytest.raises(AssertionError, match="dbias is wrong"):
        teaching.worst_error("linear_backward", forgot_the_batch_sum)
    with pytest.raises(AssertionError, match="must return 5 arrays"):
        teaching.worst_error("elman_backward", lambda *args: args[0])


def test_every_exercise_of_every_notebook_grades_correct_and_its_stub_fails():
    graded = {}
    for name in NAMES:
        for result in teaching.grade(source(name)):
            assert result.passed, f"{name}: {result.name}: {result.message}"
            graded[result.name] = name
        assert not any(r.passed for r in teaching.grade(teaching.student_source(source(name))))
    assert set(graded) == set(teaching.EXERCISES)


def test_teach_student_writes_the_stubs_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "student"
    main(["teach", "student", str(NOTEBOOKS), "--out", str(out)])
    written = sorted(p.stem for p in out.glob("*.py"))
    assert written == NAMES
    assert "### BEGIN SOLUTION" not in (out / "01_layer_contract.py").read_text()
    assert "raise NotImplementedError" in (out / "02_elman_bptt.py").read_text()
    before = (out / "01_layer_contract.py").read_text()
    (out / "05_char_lm.py").write_text("mine")
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["teach", "student", str(NOTEBOOKS), "--out", str(out)])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnkit: error: ") and "already exists" in err and len(err.splitlines()) == 1
    assert (out / "05_char_lm.py").read_text() == "mine" and (out / "01_layer_contract.py").read_text() == before


def test_teach_grade_reports_pass_for_solutions_and_fail_for_stubs(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["teach", "grade", str(NOTEBOOKS / "01_layer_contract.py")])
    assert done.value.code == 0
    assert "linear_backward" in capsys.readouterr().out
    stub = tmp_path / "01_layer_contract.py"
    stub.write_text(teaching.student_source(source("01_layer_contract")))
    with pytest.raises(SystemExit) as done:
        main(["teach", "grade", str(stub)])
    assert done.value.code == 1
    assert "FAIL  linear_backward is not implemented yet" in capsys.readouterr().out


# -- the GRU step-backward exercise (deck 001's GRU) --------------------------------------------------------------
def lecture_gru_backward(dh, cache, W, drop=()):
    """Deck 001's GRU step backward written out here, with named terms left out (a student's usual mistakes)."""
    x, h_prev, z, r, f, o = (cache[k] for k in ("x", "h_prev", "z", "r", "f", "o"))
    keep, take = (z, 1 - z) if "pytorch_z" in drop else (1 - z, z)
    do_ = dh * take * ((1 - o) if "tanh_squared" in drop else (1 - o**2))
    dz_ = dh * ((h_prev - o) if "pytorch_z" in drop else (o - h_prev)) * z * (1 - z)
    df = do_ @ W["W_Ro"].T
    dr_ = df * h_prev * r * (1 - r)
    dh_prev = dh * keep * ("direct_path" not in drop) + df * r * ("reset_path" not in drop)
    if "gate_paths" not in drop:
        dh_prev = dh_prev + dz_ @ W["W_Rz"].T + dr_ @ W["W_Rr"].T
    dx = dz_ @ W["W_z"].T + dr_ @ W["W_r"].T + do_ @ W["W_o"].T
    o_input = h_prev if "W_Ro_from_h" in drop else f
    return (dx, dh_prev, x.T @ dz_, x.T @ dr_, x.T @ do_, h_prev.T @ dz_, h_prev.T @ dr_, o_input.T @ do_,
            dz_.sum(axis=0), dr_.sum(axis=0), do_.sum(axis=0))


def test_gru_step_backward_grading_passes_the_lecture_gru_backward():
    assert teaching.worst_error("gru_step_backward", lecture_gru_backward) < 1e-12


@pytest.mark.parametrize("mistake, named", [
    ("reset_path", r"dh_prev is wrong .*the term δf_t ⊙ r_t"),
    ("direct_path", r"dh_prev is wrong .*direct path δh ⊙ \(1 − z_t\)"),
    ("gate_paths", r"dh_prev is wrong .*δz'_t W_Rzᵀ \+ δr'_t W_Rrᵀ"),
    ("tanh_squared", r"dx is wrong .*\(1 − o_t\) instead of \(1 − o_t²\)"),
    ("pytorch_z", r"dx is wrong .*PyTorch's update gate"),
    ("W_Ro_from_h", r"dW_Ro is wrong .*f_t = r_t ⊙ h_\{t-1\}")])
def test_gru_step_backward_grading_names_the_term_a_wrong_answer_misses(mistake, named):
    with pytest.raises(AssertionError, match=named) as failed:
        teaching.worst_error("gru_step_backward", lambda dh, cache, W: lecture_gru_backward(dh, cache, W, {mistake}))
    assert "\n" not in str(failed.value)


def test_gru_step_backward_grading_names_the_terms_of_an_output_wrong_in_an_unknown_way():
    def doubled_dx(dh, cache, W):
        dx, *rest = lecture_gru_backward(dh, cache, W)
        return (2 * dx, *rest)

    with pytest.raises(AssertionError, match=r"dx is wrong .*dx = δz'_t W_zᵀ \+ δr'_t W_rᵀ \+ δo'_t W_oᵀ"):
        teaching.worst_error("gru_step_backward", doubled_dx)
    with pytest.raises(AssertionError, match="must return 11 arrays"):
        teaching.worst_error("gru_step_backward", lambda dh, cache, W: lecture_gru_backward(dh, cache, W)[:10])
