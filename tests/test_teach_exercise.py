"""`rnnkit teach exercise FILE.py:NAME`: a step-backward exercise for any defined cell, graded against the derived
backward; a wrong answer is told which path of the chain rule it misses, counts twice or has with the wrong sign."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import run_cli
from rnnkit import define, teaching, teaching_defined
from rnnkit.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CIFG = ROOT / "examples" / "cells" / "cifg.py"
LSTM = define.cell("lstm_def", gates="i f g o", states="h c",
                   equations="i = σ(a_i); f = σ(a_f); g = tanh(a_g); o = σ(a_o); c = f⊙c₋₁ + i⊙g; h = o⊙tanh(c)")
DEFINITIONS = {
    "lstm with peepholes": define.cell("lstm_peephole", gates="i f g o", states="h c", params="w_ci w_cf w_co",
                                       equations="i = σ(a_i + w_ci⊙c₋₁); f = σ(a_f + w_cf⊙c₋₁); g = tanh(a_g); "
                                                 "c = f⊙c₋₁ + i⊙g; o = σ(a_o + w_co⊙c); h = o⊙tanh(c)"),
    "gru, reset after": define.cell("gru_reset_after", gates="r z n", states="h",
                                    equations="r = σ(a_r); z = σ(a_z); n = tanh(ax_n + r⊙ah_n); h = (1 − z)⊙n + z⊙h₋₁"),
    "indrnn (relu, no recurrent GEMM)": define.cell("indrnn", gates="n", states="h", recurrent="", params="u",
                                                    equations="h = relu(a_n + u⊙h₋₁)"),
}

#: a hand-written solution of LSTM's step backward; each term of the chain rule is multiplied by (WRONG != its label)
#: or, for "twice" and "sign", by the factor the label says
HAND_SOLUTION = '''
def lstm_def_step_backward(delta, forward):
    i, f, g, o, c, c_prev = (forward[k] for k in ("i", "f", "g", "o", "c", "c_prev"))
    tanh_c = np.tanh(c)
    dc = delta["c"] * (WRONG != "no dc_t") + delta["h"] * o * (1 - tanh_c ** 2) * (WRONG != "no h path")
    do = delta["h"] * tanh_c * (-1.0 if WRONG == "sign of do" else 1.0)
    dc_prev = dc * f * ((WRONG != "no f path") + (WRONG == "f path twice"))
    return {"a_i": dc * g * i * (1 - i), "a_f": dc * c_prev * f * (1 - f), "a_g": dc * i * (1 - g ** 2),
            "a_o": do * o * (1 - o), "c_prev": dc_prev}
'''
MISTAKES = {
    "no f path": "δc₋₁ is wrong (relative error {}); δc₋₁ is missing the δc⊙f path",
    "no dc_t": "δc is missing the δc_t path",
    "no h path": "δc is missing the δh⊙o⊙(1 − tanh(c)²) path",
    "f path twice": "δc₋₁ counts the δc⊙f path twice",
    "sign of do": "δa_o is wrong (relative error {}); δo has the δh⊙tanh(c) path with the wrong sign",
}


def hand_notebook(wrong: str) -> str:
    """A submission: LSTM's definition cell as `teach exercise` writes it, and the hand-written solution."""
    teacher = teaching_defined.exercise_notebook(LSTM, "cells.py:LSTM")
    definition = next(c.source for c in teaching.cells(teacher) if "definition" in c.tags)
    return f'# %% tags=["definition"]\n{definition}\n# %% tags=["exercise"]\nWRONG = {wrong!r}\n{HAND_SOLUTION}'


def solution_function(definition):
    """The exercise function of the teacher's notebook (the derived solution), defined in this process."""
    namespace = {"np": __import__("numpy")}
    for source in teaching.exercise_cells(teaching_defined.exercise_notebook(definition, "cells.py:X")):
        exec(source, namespace)
    return namespace[teaching_defined.exercise_name(definition)]


@pytest.mark.parametrize("which", DEFINITIONS)
def test_the_derived_solution_of_a_defined_cell_is_correct(which, capsys):
    definition = DEFINITIONS[which]
    teaching_defined.check(definition, solution_function(definition))
    assert "correct (worst relative error" in capsys.readouterr().out


def test_a_correct_hand_written_solution_passes_grading():
    [result] = teaching.grade(hand_notebook(""))
    assert result.passed and result.name == "lstm_def_step_backward", result.message


@pytest.mark.parametrize("wrong", MISTAKES)
def test_a_solution_with_one_path_wrong_fails_naming_that_path(wrong):
    [result] = teaching.grade(hand_notebook(wrong))
    expected = re.escape(MISTAKES[wrong]).replace(re.escape("{}"), r"[0-9.e+-]+")
    assert not result.passed and re.search(expected, result.message), result.message
    assert "\n" not in result.message


def test_teach_exercise_writes_a_stub_that_fails_and_a_solution_that_passes(tmp_path, capsys):
    out = tmp_path / "ex"
    code, printed, err = run_cli(["teach", "exercise", f"{CIFG}:CIFG", "--out", str(out), "--solution"], capsys)
    assert code == 0, err
    student, solution = out / "cifg_step_backward.py", out / "cifg_step_backward_solution.py"
    assert str(student) in printed and str(solution) in printed
    text = student.read_text(encoding="utf-8")
    assert "raise NotImplementedError" in text and "BEGIN SOLUTION" not in text
    assert "$$c = c_{t-1} \\odot \\left(1 - i\\right) + g \\odot i$$" in text  # the forward equations, shown
    assert '`delta["h"]`, `delta["c"]`' in text and '`"a_i"`, `"a_g"`, `"a_o"`, `"c_prev"`' in text
    assert teaching.student_source(solution.read_text(encoding="utf-8")) == text
    code, printed, _ = run_cli(["teach", "grade", str(student), str(solution)], capsys)
    assert code == 1
    assert "cifg_step_backward.py: cifg_step_backward   FAIL  cifg_step_backward is not implemented" in printed
    assert "cifg_step_backward_solution.py: cifg_step_backward   PASS" in printed


def test_teach_exercise_overwrites_nothing(tmp_path, capsys):
    (tmp_path / "cifg_step_backward.py").write_text("mine", encoding="utf-8")
    code, _, err = run_cli(["teach", "exercise", f"{CIFG}:CIFG", "--out", str(tmp_path)], capsys)
    assert code == 2 and "already exists" in err and err.count("\n") == 1
    assert (tmp_path / "cifg_step_backward.py").read_text(encoding="utf-8") == "mine"


@pytest.mark.parametrize("reference, message", [
    (str(CIFG), "FILE.py:NAME"),
    (f"{CIFG}:NOPE", "defines no 'NOPE'"),
    ("missing.py:CIFG", "does not exist"),
    (f"{ROOT / 'README.md'}:CIFG", "FILE.py:NAME"),
])
def test_teach_exercise_refuses_a_bad_file_and_name_in_one_line(reference, message, tmp_path, capsys):
    code, _, err = run_cli(["teach", "exercise", reference, "--out", str(tmp_path / "ex")], capsys)
    assert code == 2 and err.startswith("rnnkit: error:") and message in err and err.count("\n") == 1
    assert not (tmp_path / "ex").exists()


def test_a_definition_cell_that_is_not_a_literal_is_refused_in_one_line():
    text = '# %% tags=["definition"]\nDEFINITION = make_cell()\n\n# %% tags=["exercise"]\nx = 1\n'
    with pytest.raises(ConfigError, match="DEFINITION = {...}"):
        teaching.grade(text)


def test_the_readme_and_the_teachers_guide_mention_teach_exercise():
    assert re.search(r"^\| `rnnkit teach exercise FILE.py:NAME --out D` \|", (ROOT / "README.md").read_text(
        encoding="utf-8"), re.M)
    assert "rnnkit teach exercise" in (ROOT / "docs" / "teaching.md").read_text(encoding="utf-8")
