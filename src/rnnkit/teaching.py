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
notebook's text and checks every exercise they define.

The exercises, by name (each function's contract is in its checker's docstring):

* ``linear_backward(dy, x, weight) -> (dx, dweight, dbias)`` — `Linear`;
* ``elman_backward(dh, x, h0, h, weight_ih, weight_hh) -> (dx, dh0, dweight_ih, dweight_hh, dbias)`` — BPTT through
  the Elman recurrence (`RNN`);
* ``lstm_step_backward(dh_new, dc_new, cache, weight_ih, weight_hh) -> (dx, dh, dc, dweight_ih, dweight_hh,
  dbias)`` — one LSTM step (`LSTMCell`), with the cache of `lstm_step_forward`;
* ``crf_log_partition(emissions, transitions, start, end) -> log Z`` — the CRF forward algorithm (brute force and
  `CRF`);
* ``crf_viterbi(emissions, transitions, start, end) -> path`` — Viterbi decoding (brute force).

This module computes only: the command ``rnnkit teach`` (`rnnkit.cli.teach`) reads and writes the files.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

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


# -- grading ----------------------------------------------------------------------------------------------------
def _relative_error(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"shape {got.shape}, expected {want.shape}")
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-12)
    return float(np.abs(got - want).max(initial=0.0)) / scale


def _compare(what: str, got: tuple, want: dict, tol: float) -> float:
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


def check_linear_backward(fn, tol: float = 1e-9) -> float:
    """``linear_backward(dy, x, weight) -> (dx, dweight, dbias)`` for y = x Wᵀ + b: x (N, in), ``weight`` W
    (out, in), dy (N, out); dx = δy W, δW = δyᵀ x, δb = Σ_n δy. Compared with `rnnkit.Linear`'s backward."""
    from .layers import Linear

    worst = 0.0
    for seed, (n, fan_in, fan_out) in enumerate([(5, 3, 4), (1, 6, 2), (8, 2, 7)]):
        rng = np.random.default_rng(seed)
        layer = Linear(fan_in, fan_out, dtype=np.float64, rng=rng)
        x, dy = rng.standard_normal((n, fan_in)), rng.standard_normal((n, fan_out))
        layer.forward(x)
        dx = layer.backward(dy)
        got = fn(dy.copy(), x.copy(), layer.weight.data.copy())
        worst = max(worst, _compare("linear_backward", got, {"dx": dx, "dweight": layer.weight.grad,
                                                             "dbias": layer.bias.grad}, tol))
    return worst


def check_elman_backward(fn, tol: float = 1e-8) -> float:
    """``elman_backward(dh, x, h0, h, weight_ih, weight_hh) -> (dx, dh0, dweight_ih, dweight_hh, dbias)``: BPTT
    through h_t = tanh(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh) for x (B, T, I), h0 (B, H), the forward's states
    h (B, T, H) and dh (B, T, H) = ∂L/∂h_t from the loss at each step (not yet including what flows back from
    step t + 1). dbias is the gradient of b_ih, equal to that of b_hh. Compared with `rnnkit.RNN` (float64)."""
    from .recurrent import RNN

    worst = 0.0
    for seed, (b, t, i, h) in enumerate([(3, 6, 4, 5), (1, 1, 2, 3), (2, 9, 3, 4)]):
        rng = np.random.default_rng(seed)
        rnn = RNN(i, h, dtype=np.float64, rng=rng)
        x, h0 = rng.standard_normal((b, t, i)), rng.standard_normal((b, h))
        dh = rng.standard_normal((b, t, h))
        out, _ = rnn.forward(x, h0[None])
        dx, dh0 = rnn.backward(dh)
        got = fn(dh.copy(), x.copy(), h0.copy(), out.copy(), rnn.weight_ih_l0.data.copy(),
                 rnn.weight_hh_l0.data.copy())
        want = {"dx": dx, "dh0": dh0[0], "dweight_ih": rnn.weight_ih_l0.grad, "dweight_hh": rnn.weight_hh_l0.grad,
                "dbias": rnn.bias_ih_l0.grad}
        worst = max(worst, _compare("elman_backward", got, want, tol))
    return worst


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


def check_lstm_step_backward(fn, tol: float = 1e-8) -> float:
    """``lstm_step_backward(dh_new, dc_new, cache, weight_ih, weight_hh) -> (dx, dh, dc, dweight_ih, dweight_hh,
    dbias)`` for the step of `lstm_step_forward`; dbias is the gradient of b_ih (equal to that of b_hh). Compared
    with `rnnkit.LSTMCell` (float64)."""
    from .recurrent import LSTMCell

    worst = 0.0
    for seed, (b, i, h) in enumerate([(3, 4, 5), (1, 2, 3), (4, 3, 2)]):
        rng = np.random.default_rng(seed)
        cell = LSTMCell(i, h, dtype=np.float64, rng=rng)
        x, h0, c0 = rng.standard_normal((b, i)), rng.standard_normal((b, h)), rng.standard_normal((b, h))
        dh_new, dc_new = rng.standard_normal((b, h)), rng.standard_normal((b, h))
        cell.forward(x, (h0, c0))
        dx, (dh, dc) = cell.backward((dh_new, dc_new))
        w_ih, w_hh = cell.weight_ih.data.copy(), cell.weight_hh.data.copy()
        _, _, cache = lstm_step_forward(x, h0, c0, w_ih, w_hh, cell.bias_ih.data, cell.bias_hh.data)
        got = fn(dh_new.copy(), dc_new.copy(), cache, w_ih, w_hh)
        want = {"dx": dx, "dh": dh, "dc": dc, "dweight_ih": cell.weight_ih.grad, "dweight_hh": cell.weight_hh.grad,
                "dbias": cell.bias_ih.grad}
        worst = max(worst, _compare("lstm_step_backward", got, want, tol))
    return worst


def path_score(emissions, transitions, start, end, path) -> float:
    """s(y) = π[y_0] + Σ_t e_t[y_t] + Σ_{t≥1} A[y_{t-1}, y_t] + ω[y_{T-1}] of one tag path."""
    path = list(path)
    score = start[path[0]] + end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
    return float(score + sum(transitions[a, b] for a, b in zip(path[:-1], path[1:])))


def brute_force_paths(emissions, transitions, start, end) -> list[tuple[float, tuple[int, ...]]]:
    """Every tag path of one sequence with its score, K^T of them (tiny examples only)."""
    steps, k = emissions.shape
    return [(path_score(emissions, transitions, start, end, p), p) for p in itertools.product(range(k), repeat=steps)]


def _crf_cases():
    for seed, (steps, k) in enumerate([(4, 3), (1, 2), (5, 2), (3, 4)]):
        rng = np.random.default_rng(seed)
        yield (rng.standard_normal((steps, k)), rng.standard_normal((k, k)), rng.standard_normal(k),
               rng.standard_normal(k))


def check_crf_log_partition(fn, tol: float = 1e-9) -> float:
    """``crf_log_partition(emissions (T, K), transitions (K, K) [from, to], start (K,), end (K,)) -> log Z``, the
    forward algorithm. Compared with log Σ_y exp s(y) over every path and with `rnnkit.CRF` (log Z = NLL + s(y))."""
    from .crf import CRF

    worst = 0.0
    for emissions, transitions, start, end in _crf_cases():
        scores = np.array([s for s, _ in brute_force_paths(emissions, transitions, start, end)])
        log_z = float(scores.max() + np.log(np.exp(scores - scores.max()).sum()))
        crf = CRF(len(start), dtype=np.float64)
        crf.transitions.data[...], crf.start_transitions.data[...], crf.end_transitions.data[...] = (transitions,
                                                                                                        start, end)
        tags = np.zeros(len(emissions), np.int64)
        from_crf = float(crf.forward(emissions, tags)) + path_score(emissions, transitions, start, end, tags)
        crf.discard_saved()
        assert abs(from_crf - log_z) < 1e-9, "internal: rnnkit.CRF disagrees with brute force"
        got = fn(emissions.copy(), transitions.copy(), start.copy(), end.copy())
        err = _relative_error(np.asarray(got, np.float64).reshape(()), log_z)
        if not err < tol:
            raise AssertionError(f"crf_log_partition is wrong: {float(np.asarray(got)):.6f}, expected {log_z:.6f} "
                                 f"(T={len(emissions)}, K={len(start)})")
        worst = max(worst, err)
    return worst


def check_crf_viterbi(fn, tol: float = 0.0) -> float:
    """``crf_viterbi(emissions, transitions, start, end) -> path`` (T tag ids), the highest-scoring path; compared
    with the best of every path by brute force (its score must be the maximum)."""
    for emissions, transitions, start, end in _crf_cases():
        best_score, best = max(brute_force_paths(emissions, transitions, start, end))
        got = [int(v) for v in np.asarray(fn(emissions.copy(), transitions.copy(), start.copy(), end.copy()))]
        if len(got) != len(emissions):
            raise AssertionError(f"crf_viterbi must return {len(emissions)} tags, got {len(got)}")
        if not all(0 <= v < len(start) for v in got):
            raise AssertionError(f"crf_viterbi returned tags outside [0, {len(start)}): {got}")
        score = path_score(emissions, transitions, start, end, got)
        if score < best_score - 1e-9:
            raise AssertionError(f"crf_viterbi is wrong: path {got} scores {score:.4f}, the best {list(best)} "
                                 f"scores {best_score:.4f}")
    return 0.0


EXERCISES = {"linear_backward": check_linear_backward, "elman_backward": check_elman_backward,
             "lstm_step_backward": check_lstm_step_backward, "crf_log_partition": check_crf_log_partition,
             "crf_viterbi": check_crf_viterbi}


def check(name: str, fn) -> None:
    """Grade ``fn`` as the exercise ``name`` (see `EXERCISES`): print that it is correct with its worst relative
    error, or raise `AssertionError` with a one-line reason (not implemented, an exception, a wrong shape or
    value)."""
    print(f"{name}: correct (worst relative error {worst_error(name, fn):.1e})")


def worst_error(name: str, fn) -> float:
    """The worst relative error of ``fn`` as the exercise ``name``, or `AssertionError` (see `check`)."""
    if name not in EXERCISES:
        raise ConfigError(f"unknown exercise {name!r} (expected one of {', '.join(EXERCISES)})")
    if not callable(fn):
        raise AssertionError(f"{name} must be a function, got {type(fn).__name__}")
    try:
        worst = EXERCISES[name](fn)
    except NotImplementedError:
        raise AssertionError(f"{name} is not implemented yet (replace `raise NotImplementedError`)") from None
    except AssertionError:
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - a student's function may raise anything, SystemExit included
        raise AssertionError(f"{name} raised {type(e).__name__}: {e}") from None
    return worst


@dataclass(frozen=True)
class Grade:
    """The result of one exercise: its name, whether it passed, and the reason or the worst error."""

    name: str
    passed: bool
    message: str


def grade(text: str) -> list[Grade]:
    """Run the ``exercise`` cells of a percent-format notebook's ``text`` (in order, in one namespace that starts
    with ``np``) and check every exercise function they define. A cell that fails to run fails the exercises it
    defines."""
    namespace: dict = {"np": np, "__name__": "exercises"}
    results: dict[str, Grade] = {}
    for index, source in enumerate(exercise_cells(text)):
        try:
            exec(compile(source, f"<exercise cell {index + 1}>", "exec"), namespace)  # noqa: S102 - grading
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001 - SystemExit from a student's cell is a failure, not an exit
            for name in EXERCISES:
                if re.search(rf"^\s*def\s+{name}\b", source, re.M):
                    results[name] = Grade(name, False, f"the cell defining it raised {type(e).__name__}: {e}")
    for name in EXERCISES:
        if name in results or name not in namespace:
            continue
        try:
            worst = worst_error(name, namespace[name])
            results[name] = Grade(name, True, f"correct (worst relative error {worst:.1e})")
        except AssertionError as e:
            results[name] = Grade(name, False, str(e))
    return [results[name] for name in EXERCISES if name in results]
