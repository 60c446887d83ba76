"""The fuzz suite's command-line part (the harness of tests/test_fuzz_api.py): the numeric flags of cheap commands
— ``train reber`` (one update), ``sample`` of a small text run, ``teach grade --timeout`` — given random values,
nan, inf, -1, huge numbers and strings, run in-process. Each run must exit 0, or 2 with one line
``rnnkit: error: ...``; never 70 or a traceback, and never hang (a run longer than `LIMIT` seconds is a break)."""

import signal

import pytest

pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import run_cli  # noqa: E402
from fuzz_harness import FEWEST, cli_verdict, report  # noqa: E402, F401 - `report`: the campaign's table

LIMIT = 60  # seconds one command may take
NUMBERS = ["-1", "0", "1", "2", "3", "0.5", "1.5", "-0.5", "nan", "inf", "-inf", "1e308", "1e-320",
           "1000000000000", "9223372036854775808", "1e100", "abc", "", "0x10", "1_000", " 2", "--", "-0"]
COMMANDS = {
    "train": (["--seed", "--lr", "--hidden-size", "--batch-size", "--seq-length", "--grad-clip", "--dropout",
               "--num-layers"], ["train", "reber", "--max-steps", "1", "--eval-every",
                                                               "1", "--hidden-size", "4"]),
    "sample": (["-n", "-t", "--seed"], ["sample", "{run}", "-n", "5"]),
    "teach grade": (["--timeout"], ["teach", "grade", "{notebook}"]),
}


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"no answer after {LIMIT} s")


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """A small character-model run for ``sample`` and a tiny notebook for ``teach grade``."""
    root = tmp_path_factory.mktemp("cli_fuzz")
    text = root / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 20)
    code = run_cli(["train", "text", "--data", str(text), "--max-steps", "1", "--hidden-size", "8", "--num-layers",
                    "1", "--seq-length", "8", "--batch-size", "2", "--out", str(root / "run")], _Quiet())[0]
    assert code in (0, None)
    notebook = root / "nb.py"
    notebook.write_text('# %% tags=["exercise"]\ndef linear_backward(dy, x, weight):\n'
                        '    return dy @ weight, dy.T @ x, dy.sum(axis=0)\n')
    return {"run": str(root / "run"), "notebook": str(notebook), "root": root}


class _Quiet:
    """A stand-in for capsys in a module fixture: nothing to read back."""

    @staticmethod
    def readouterr():
        return type("Captured", (), {"out": "", "err": ""})()


@FEWEST
@given(data=st.data())
def test_numeric_flags_given_any_value_exit_0_or_2_with_one_error_line(data, places, capsys):
    command = data.draw(st.sampled_from(list(COMMANDS)), label="command")
    flags, base = COMMANDS[command]
    flag = data.draw(st.sampled_from(flags), label="flag")
    value = data.draw(st.sampled_from(NUMBERS), label="value")
    argv = [a.format(**places) for a in base] + [flag, value]
    if command == "train":
        argv += ["--out", str(places["root"] / f"train-{data.draw(st.integers(0, 10**9), label='dir')}")]
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(LIMIT)
    try:
        code, _, err = run_cli(argv, capsys)
    except Hang as e:
        code, err = "hang", str(e)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    verdicts = (0, 1) if command == "teach grade" else (0,)  # grading's 1 is a verdict (a short timeout: FAIL)
    cli_verdict("CLI numeric flags", code, err, f"rnnkit {command} {flag} {value!r}", verdicts)
