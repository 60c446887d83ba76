"""The teaching kit's library: the graded exercises of the notebooks, and the student version of a notebook.

The notebooks in ``notebooks/`` (jupytext percent-format ``.py`` files) ask students to write the hand-derived
backward passes. Each exercise is a plain NumPy function in a cell tagged ``exercise``
(``# %% tags=["exercise"]``), whose body is marked with nbgrader's convention::

    def linear_backward(dy, x, weight):
        ### BEGIN SOLUTION
        return dy @ weight, dy.T @ x, dy.sum(axis=0)
        ### END SOLUTION

`student_source` replaces every marked region by ``raise NotImplementedError`` at the marker's indentation, and
`check` grades one function against rnnkit's own layers (float64, random inputs, several shapes): it prints the
worst relative error, or raises `AssertionError` with a one-line reason when the function is missing, wrong or not
implemented (`worst_error` returns the error instead of printing it). `grade` runs the exercise cells of a
notebook's text in a separate process (`rnnkit.teaching_child`, with a timeout) that only returns what the exercise
functions return, as JSON; the cases, the expected values and the comparison stay in the calling process, so a
submission that exits, hangs or replaces rnnkit's functions fails instead of passing. It is not a sandbox: the
submission runs with the user's rights.

The exercises, by name (each function's contract is in the docstring of its ``*_cases`` function):

* ``linear_backward(dy, x, weight) -> (dx, dweight, dbias)`` — `Linear`;
* ``elman_backward(dh, x, h0, h, weight_ih, weight_hh) -> (dx, dh0, dweight_ih, dweight_hh, dbias)`` — BPTT through
  the Elman recurrence (`RNN`);
* ``lstm_step_backward(dh_new, dc_new, cache, weight_ih, weight_hh) -> (dx, dh, dc, dweight_ih, dweight_hh,
  dbias)`` — one LSTM step (`LSTMCell`), with the cache of `lstm_step_forward`;
* ``gru_step_backward(dh, cache, weights) -> (dx, dh_prev, dW_z, dW_r, dW_o, dW_Rz, dW_Rr, dW_Ro, db_z, db_r,
  db_o)`` — one step of deck 001's GRU (`GRUCell(reset_after=False, update_gate="lecture")`), in the deck's
  notation, with the cache of `rnnkit.teaching_gru.gru_step_forward`; a wrong answer is told which usual mistake
  (a missing term, PyTorch's z, 1 − o for 1 − o²) it matches;
* ``crf_log_partition(emissions, transitions, start, end) -> log Z`` — the CRF forward algorithm (brute force and
  `CRF`);
* ``crf_viterbi(emissions, transitions, start, end) -> path`` — Viterbi decoding (brute force).

This module reads and writes no files: the command ``rnnkit teach`` (`rnnkit.cli.teach`) reads and writes the files.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import teaching_gru, validate
from .errors import ConfigError
from .teaching_child import call_exercise, decode, encode

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = "raise NotImplementedError"
CELL_MARKER = "# %%"
EXERCISE_TAG = "exercise"


# -- the student version ----------------------------------------------------------------------------------------
def student_source(text: str, where: str = "notebook") -> str:
    """``text`` with each ``### BEGIN SOLUTION`` … ``### END SOLUTION`` region (markers included) replaced by one
    line ``raise NotImplementedError`` indented as the BEGIN marker. `ConfigError` naming the line for a marker
    without its partner or a nested BEGIN."""
    out, begin = [], None
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if begin is not None:
                raise ConfigError(f"{where}:{number}: {BEGIN} inside the solution opened at line {begin}")
            begin = number
            indent = line[:len(line) - len(line.lstrip())]
            out.append(f"{indent}{STUB}\n")
        elif stripped.startswith(END):
            if begin is None:
                raise ConfigError(f"{where}:{number}: {END} without a {BEGIN} before it")
            begin = None
        elif begin is None:
            out.append(line)
    if begin is not None:
        raise ConfigError(f"{where}:{begin}: {BEGIN} without an {END}")
    return "".join(out)


def has_solutions(text: str) -> bool:
    """Whether ``text`` holds at least one solution region."""
    return any(line.strip().startswith(BEGIN) for line in text.splitlines())


def is_percent_notebook(text: str) -> bool:
    """Whether ``text`` is a jupytext percent-format notebook (it has at least one ``# %%`` cell marker)."""
    return any(line.startswith(CELL_MARKER) for line in text.splitlines())


@dataclass(frozen=True)
class Cell:
    """One cell of a percent-format notebook: its kind (``code`` or ``markdown``), tags and source."""

    kind: str
    tags: tuple[str, ...]
    source: str


_TAGS = re.compile(r"tags\s*=\s*\[([^\]]*)\]")


def cells(text: str) -> list[Cell]:
    """The cells of a percent-format notebook (the jupytext header and anything before the first marker dropped)."""
    found, current = [], None
    for line in text.splitlines(keepends=True):
        if line.startswith(CELL_MARKER):
            if current is not None:
                found.append(current)
            header = line[len(CELL_MARKER):]
            kind = "markdown" if "[markdown]" in header else "code"
            match = _TAGS.search(header)
            tags = tuple(t.strip().strip("'\"") for t in match.group(1).split(",") if t.strip()) if match else ()
            current = [kind, tags, []]
        elif current is not None:
            current[2].append(line)
    if current is not None:
        found.append(current)
    return [Cell(kind, tags, "".join(lines)) for kind, tags, lines in found]


def exercise_cells(text: str) -> list[str]:
    """The sources of the code cells tagged ``exercise``, in order."""
    return [c.source for c in cells(text) if c.kind == "code" and EXERCISE_TAG in c.tags]


# -- the exercises: cases computed here, and how an answer is judged ---------------------------------------------
def _relative_error(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"shape {got.shape}, expected {want.shape}")
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-12)
    return float(np.abs(got - want).max(initial=0.0)) / scale


def _compare(what: str, got, want: dict, tol: float) -> float:
    """Worst relative error of the returned tuple ``got`` against ``want`` ({name: array}, in order)."""
    if not isinstance(got, (tuple, list)) or len(got) != len(want):
        raise AssertionError(f"{what} must return {len(want)} arrays ({', '.join(want)}), got "
                             f"{type(got).__name__}{'' if not isinstance(got, (tuple, list)) else f' of {len(got)}'}")
    worst = 0.0
    for (name, expected), value in zip(want.items(), got):
        try:
            err = _relative_error(value, expected)
        except AssertionError as e:
            raise AssertionError(f"{what}: {name} has {e}") from None
        if not err < tol:
            raise AssertionError(f"{what}: {name} is wrong (relative error {err:.1e})")
        worst = max(worst, err)
    return worst


@dataclass(frozen=True)
class Exercise:
    """One graded exercise. ``cases()`` yields (arguments of the student's function, what is expected), computed
    with rnnkit's own layers; ``judge(returned, expected, arguments)`` is the relative error of one returned value,
    or `AssertionError` with a one-line reason."""

    name: str
    cases: Callable[[], Iterator[tuple[tuple, object]]]
    judge: Callable[[object, object, tuple], float]


def _arrays_judge(name: str, tol: float):
    """The judge of an exercise that returns a tuple of arrays compared with ``expected`` ({name: array})."""
    return lambda got, want, arguments: _compare(name, got, want, tol)


def linear_backward_cases():
    """``linear_backward(dy, x, weight) -> (dx, dweight, dbias)`` for y = x Wᵀ + b: x (N, in), ``weight`` W
    (out, in), dy (N, out); dx = δy W, δW = δyᵀ x, δb = Σ_n δy. Compared with `rnnkit.Linear`'s backward."""
    from .layers import Linear

    for seed, (n, fan_in, fan_out) in enumerate([(5, 3, 4), (1, 6, 2), (8, 2, 7)]):
        rng = np.random.default_rng(seed)
        layer = Linear(fan_in, fan_out, dtype=np.float64, rng=rng)
        x, dy = rng.standard_normal((n, fan_in)), rng.standard_normal((n, fan_out))
        layer.forward(x)
        dx = layer.backward(dy)
        yield (dy, x, layer.weight.data.copy()), {"dx": dx, "dweight": layer.weight.grad, "dbias": layer.bias.grad}


def elman_backward_cases():
    """``elman_backward(dh, x, h0, h, weight_ih, weight_hh) -> (dx, dh0, dweight_ih, dweight_hh, dbias)``: BPTT
    through h_t = tanh(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh) for x (B, T, I), h0 (B, H), the forward's states
    h (B, T, H) and dh (B, T, H) = ∂L/∂h_t from the loss at each step (not yet including what flows back from
    step t + 1). dbias is the gradient of b_ih, equal to that of b_hh. Compared with `rnnkit.RNN` (float64)."""
    from .recurrent import RNN

    for seed, (b, t, i, h) in enumerate([(3, 6, 4, 5), (1, 1, 2, 3), (2, 9, 3, 4)]):
        rng = np.random.default_rng(seed)
        rnn = RNN(i, h, dtype=np.float64, rng=rng)
        x, h0 = rng.standard_normal((b, t, i)), rng.standard_normal((b, h))
        dh = rng.standard_normal((b, t, h))
        out, _ = rnn.forward(x, h0[None])
        dx, dh0 = rnn.backward(dh)
        yield ((dh, x, h0, out, rnn.weight_ih_l0.data.copy(), rnn.weight_hh_l0.data.copy()),
               {"dx": dx, "dh0": dh0[0], "dweight_ih": rnn.weight_ih_l0.grad, "dweight_hh": rnn.weight_hh_l0.grad,
                "dbias": rnn.bias_ih_l0.grad})


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def lstm_step_forward(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh):
    """One LSTM step in PyTorch's gate order i, f, g, o → (h_new, c_new, cache); ``cache`` is the dict
    {x, h, c, i, f, g, o, c_new} that ``lstm_step_backward`` receives (the notebook writes the same function)."""
    a = x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh
    a_i, a_f, a_g, a_o = np.split(a, 4, axis=-1)
    i, f, g, o = _sigmoid(a_i), _sigmoid(a_f), np.tanh(a_g), _sigmoid(a_o)
    c_new = f * c + i * g
    h_new = o * np.tanh(c_new)
    return h_new, c_new, {"x": x, "h": h, "c": c, "i": i, "f": f, "g": g, "o": o, "c_new": c_new}


def lstm_step_backward_cases():
    """``lstm_step_backward(dh_new, dc_new, cache, weight_ih, weight_hh) -> (dx, dh, dc, dweight_ih, dweight_hh,
    dbias)`` for the step of `lstm_step_forward`; dbias is the gradient of b_ih (equal to that of b_hh). Compared
    with `rnnkit.LSTMCell` (float64)."""
    from .recurrent import LSTMCell

    for seed, (b, i, h) in enumerate([(3, 4, 5), (1, 2, 3), (4, 3, 2)]):
        rng = np.random.default_rng(seed)
        cell = LSTMCell(i, h, dtype=np.float64, rng=rng)
        x, h0, c0 = rng.standard_normal((b, i)), rng.standard_normal((b, h)), rng.standard_normal((b, h))
        dh_new, dc_new = rng.standard_normal((b, h)), rng.standard_normal((b, h))
        cell.forward(x, (h0, c0))
        dx, (dh, dc) = cell.backward((dh_new, dc_new))
        w_ih, w_hh = cell.weight_ih.data.copy(), cell.weight_hh.data.copy()
        _, _, cache = lstm_step_forward(x, h0, c0, w_ih, w_hh, cell.bias_ih.data, cell.bias_hh.data)
        yield ((dh_new, dc_new, cache, w_ih, w_hh),
               {"dx": dx, "dh": dh, "dc": dc, "dweight_ih": cell.weight_ih.grad, "dweight_hh": cell.weight_hh.grad,
                "dbias": cell.bias_ih.grad})


def path_score(emissions, transitions, start, end, path) -> float:
    """s(y) = π[y_0] + Σ_t e_t[y_t] + Σ_{t≥1} A[y_{t-1}, y_t] + ω[y_{T-1}] of one tag path."""
    path = list(path)
    score = start[path[0]] + end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
    return float(score + sum(transitions[a, b] for a, b in zip(path[:-1], path[1:])))


def brute_force_paths(emissions, transitions, start, end) -> list[tuple[float, tuple[int, ...]]]:
    """Every tag path of one sequence with its score, K^T of them (tiny examples only)."""
    steps, k = emissions.shape
    return [(path_score(emissions, transitions, start, end, p), p) for p in itertools.product(range(k), repeat=steps)]


def _crf_inputs():
    for seed, (steps, k) in enumerate([(4, 3), (1, 2), (5, 2), (3, 4)]):
        rng = np.random.default_rng(seed)
        yield (rng.standard_normal((steps, k)), rng.standard_normal((k, k)), rng.standard_normal(k),
               rng.standard_normal(k))


def crf_log_partition_cases():
    """``crf_log_partition(emissions (T, K), transitions (K, K) [from, to], start (K,), end (K,)) -> log Z``, the
    forward algorithm. Compared with log Σ_y exp s(y) over every path and with `rnnkit.CRF` (log Z = NLL + s(y))."""
    from .crf import CRF

    for emissions, transitions, start, end in _crf_inputs():
        scores = np.array([s for s, _ in brute_force_paths(emissions, transitions, start, end)])
        log_z = float(scores.max() + np.log(np.exp(scores - scores.max()).sum()))
        crf = CRF(len(start), dtype=np.float64)
        crf.transitions.data[...], crf.start_transitions.data[...], crf.end_transitions.data[...] = (transitions,
                                                                                                        start, end)
        tags = np.zeros(len(emissions), np.int64)
        from_crf = float(crf.forward(emissions, tags)) + path_score(emissions, transitions, start, end, tags)
        crf.discard_saved()
        assert abs(from_crf - log_z) < 1e-9, "internal: rnnkit.CRF disagrees with brute force"
        yield (emissions, transitions, start, end), log_z


def _judge_log_partition(got, log_z: float, arguments: tuple, tol: float = 1e-9) -> float:
    emissions, _, start, _ = arguments
    value = np.asarray(got, np.float64).reshape(())
    err = _relative_error(value, log_z)
    if not err < tol:
        raise AssertionError(f"crf_log_partition is wrong: {float(value):.6f}, expected {log_z:.6f} "
                             f"(T={len(emissions)}, K={len(start)})")
    return err


def crf_viterbi_cases():
    """``crf_viterbi(emissions, transitions, start, end) -> path`` (T tag ids), the highest-scoring path; compared
    with the best of every path by brute force (its score must be the maximum)."""
    for arguments in _crf_inputs():
        yield arguments, max(brute_force_paths(*arguments))


def _judge_viterbi(got, best: tuple, arguments: tuple) -> float:
    emissions, _, start, _ = arguments
    best_score, best_path = best
    path = [int(v) for v in np.asarray(got)]
    if len(path) != len(emissions):
        raise AssertionError(f"crf_viterbi must return {len(emissions)} tags, got {len(path)}")
    if not all(0 <= v < len(start) for v in path):
        raise AssertionError(f"crf_viterbi returned tags outside [0, {len(start)}): {path}")
    score = path_score(*arguments, path)
    if score < best_score - 1e-9:
        raise AssertionError(f"crf_viterbi is wrong: path {path} scores {score:.4f}, the best {list(best_path)} "
                             f"scores {best_score:.4f}")
    return 0.0


EXERCISES = {exercise.name: exercise for exercise in [
    Exercise("linear_backward", linear_backward_cases, _arrays_judge("linear_backward", 1e-9)),
    Exercise("elman_backward", elman_backward_cases, _arrays_judge("elman_backward", 1e-8)),
    Exercise("lstm_step_backward", lstm_step_backward_cases, _arrays_judge("lstm_step_backward", 1e-8)),
    Exercise(teaching_gru.NAME, teaching_gru.gru_step_backward_cases, teaching_gru.judge),
    Exercise("crf_log_partition", crf_log_partition_cases, _judge_log_partition),
    Exercise("crf_viterbi", crf_viterbi_cases, _judge_viterbi)]}


def judge_answer(name: str, answer: dict, cases: list, exercise: Exercise | None = None) -> float:
    """The worst relative error of an exercise's answer (`rnnkit.teaching_child.call_exercise`'s dict) over its
    ``cases`` (computed here), or `AssertionError` with a one-line reason. ``exercise``: the one of ``name`` when
    it is not in `EXERCISES` (a defined cell's, `rnnkit.teaching_defined`)."""
    if not isinstance(answer, dict):
        raise AssertionError(f"{name}: the submission's process returned an unreadable answer")
    if answer.get("not_implemented") is True:
        raise AssertionError(f"{name} is not implemented yet (replace `raise NotImplementedError`)")
    if "raised" in answer:
        raise AssertionError(f"{name} raised {answer['raised']}")
    if "not_callable" in answer:
        raise AssertionError(f"{name} must be a function, got {answer['not_callable']}")
    try:
        outputs = [decode(output) for output in answer["outputs"]]
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError):
        raise AssertionError(f"{name}: the submission's process returned an unreadable answer") from None
    if len(outputs) != len(cases):
        raise AssertionError(f"{name}: the submission's process answered {len(outputs)} of {len(cases)} cases")
    judge, worst = (exercise or EXERCISES[name]).judge, 0.0
    for got, (arguments, expected) in zip(outputs, cases):
        try:
            worst = max(worst, judge(got, expected, arguments))
        except (TypeError, ValueError) as e:
            raise AssertionError(f"{name} returned {got!r}, which cannot be compared ({e})") from None
    return worst


def check(name: str, fn) -> None:
    """Grade ``fn`` as the exercise ``name`` (see `EXERCISES`): print that it is correct with its worst relative
    error, or raise `AssertionError` with a one-line reason (not implemented, an exception, a wrong shape or
    value)."""
    print(f"{name}: correct (worst relative error {worst_error(name, fn):.1e})")


def worst_error(name: str, fn) -> float:
    """The worst relative error of ``fn`` as the exercise ``name``, or `AssertionError` (see `check`). ``fn`` runs
    in this process (for a notebook's own check; `grade` runs a submission in another process)."""
    if name not in EXERCISES:
        raise ConfigError(f"unknown exercise {name!r} (expected one of {', '.join(EXERCISES)})")
    cases = list(EXERCISES[name].cases())
    return judge_answer(name, call_exercise(fn, [encode(arguments) for arguments, _ in cases]), cases)


# -- grading a submission in another process ---------------------------------------------------------------------
#: how long `grade` lets a submission's process run by default, in seconds
DEFAULT_TIMEOUT = 60.0
_CHILD = str(Path(__file__).with_name("teaching_child.py"))


@dataclass(frozen=True)
class Grade:
    """The result of one exercise: its name, whether it passed, and the reason or the worst error."""

    name: str
    passed: bool
    message: str


class SubmissionFailed(Exception):
    """The submission's process timed out, died or answered nothing readable (the message says which)."""


def run_submission(request: dict, timeout: float) -> dict:
    """The answer of `rnnkit.teaching_child` to ``request``, run as ``python -I`` in a new session that is killed
    (with anything it started) after ``timeout`` seconds or once it has answered; `SubmissionFailed` otherwise."""
    child = subprocess.Popen([sys.executable, "-I", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             start_new_session=True)
    try:
        out, _ = child.communicate(json.dumps(request).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SubmissionFailed(f"timed out after {timeout:g} s (the exercise cells or functions did not finish)") \
            from None
    finally:
        _kill_session(child)
    if child.returncode != 0 or not out:
        status = f"signal {-child.returncode}" if child.returncode < 0 else f"status {child.returncode}"
        raise SubmissionFailed(f"the submission's process ended ({status}) before answering")
    try:
        answer = json.loads(out)
    except (ValueError, RecursionError):
        answer = None
    if not (isinstance(answer, dict) and isinstance(answer.get("cell_errors"), dict)
            and isinstance(answer.get("results"), dict)):
        raise SubmissionFailed("the submission's process answered something that is not a grading answer")
    return answer


def _kill_session(child: subprocess.Popen) -> None:
    """Kill the child's process group (the child and whatever it started), then reap the child."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    child.wait()


def grade(text: str, timeout: float = DEFAULT_TIMEOUT) -> list[Grade]:
    """Run the ``exercise`` cells of a percent-format notebook's ``text`` (in order, in one namespace that starts
    with ``np``) in a separate process and check every exercise function they define. The cases and the expected
    values are computed here and the process only returns the functions' results (JSON), so a submission cannot
    change a verdict by replacing rnnkit's code. A cell that fails to run fails the exercises it defines; a
    process that exits, hangs past ``timeout`` seconds or answers garbage is one failed grade, ``submission``.
    A defined cell's step backward is graded too when the notebook holds its definition (`rnnkit.teaching_defined`)."""
    from .teaching_defined import exercises_in

    timeout = validate.seconds(timeout)
    sources = exercise_cells(text)
    if not sources:
        return []
    exercises = {**EXERCISES, **exercises_in(text)}
    named = "\n".join(sources)  # an exercise the cells never name cannot be defined by them: no cases to compute
    cases = {name: list(exercise.cases()) for name, exercise in exercises.items() if re.search(rf"\b{name}\b", named)}
    request = {"path": [p for p in sys.path if p], "cells": sources,
               "cases": {name: [encode(arguments) for arguments, _ in found] for name, found in cases.items()}}
    try:
        answer = run_submission(request, timeout)
    except SubmissionFailed as e:
        return [Grade("submission", False, str(e))]
    results: dict[str, Grade] = {}
    for index, source in enumerate(sources):
        error = answer["cell_errors"].get(str(index))
        for name in exercises:
            if error is not None and re.search(rf"^\s*def\s+{name}\b", source, re.M):
                results[name] = Grade(name, False, f"the cell defining it raised {error}")
    for name, response in answer["results"].items():
        if name not in cases or name in results:
            continue
        try:
            worst = judge_answer(name, response, cases[name], exercises[name])
            results[name] = Grade(name, True, f"correct (worst relative error {worst:.1e})")
        except AssertionError as e:
            results[name] = Grade(name, False, str(e))
    return [results[name] for name in exercises if name in results]
