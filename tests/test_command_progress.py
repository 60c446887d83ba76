"""Progress on the long commands: eval, experiment, search, diagnose, translate on many sources and teach grade each
show a bar through the one helper (`rnnkit.training.progress`) on a terminal, counting to the right total; off a
terminal they print no stream of updates."""

import numpy as np
import pytest

from conftest import run_cli


@pytest.fixture
def bars(monkeypatch):
    """Every bar the helper makes, shown as on a terminal (its stream is captured like standard error)."""
    from rnnkit.training import progress

    made = []

    class Shown(progress.tqdm):
        def __init__(self, *args, **kwargs):
            self.named, self.off = kwargs.get("desc"), kwargs.get("disable") is True  # a disabled bar keeps neither
            super().__init__(*args, **{**kwargs, "disable": self.off})
            made.append(self)

    monkeypatch.setattr(progress, "tqdm", Shown)
    return made


def finished(bars, desc: str):
    """The one bar named ``desc``, asserted to have counted to its total."""
    (bar,) = [b for b in bars if b.named == desc]
    assert bar.total and bar.n == bar.total, (bar.n, bar.total)
    return bar


def test_eval_shows_a_bar_that_counts_every_window_of_the_text(tmp_path, capsys, bars):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 20, encoding="utf-8")
    run = tmp_path / "run"
    assert run_cli(["train", "text", "--data", str(corpus), "--hidden-size", "8", "--num-layers", "1",
                    "--seq-length", "10", "--batch-size", "4", "--max-steps", "2", "--eval-every", "2",
                    "--no-progress", "--out", str(run)], capsys)[0] == 0
    bars.clear()
    code, _, err = run_cli(["eval", str(run), "--data", str(corpus)], capsys)
    assert code == 0, err
    bar = finished(bars, "eval")
    assert bar.unit == "window" and bar.total > 1


def test_diagnose_shows_a_bar_over_its_models(tmp_path, capsys, bars):
    code, _, err = run_cli(["diagnose", "--cell", "rnn", "--cell", "gru", "--task", "adding", "--seq-length", "6",
                            "--hidden-size", "4", "--out", str(tmp_path / "d")], capsys)
    assert code == 0, err
    assert finished(bars, "diagnose").total == 2


def test_experiment_shows_a_bar_over_the_runs_it_has_to_do(tmp_path, capsys, bars):
    code, _, err = run_cli(["experiment", "adding", "--out", str(tmp_path / "e"), "--length", "5", "--cell", "rnn",
                            "--cell", "gru", "--seeds", "1", "--max-steps", "2", "--jobs", "1"], capsys)
    assert code == 0, err
    assert finished(bars, "adding").total == 2 and "(2 of 2 runs)" in err


def test_search_shows_a_bar_over_the_studys_trials(tmp_path, capsys, bars):
    pytest.importorskip("optuna")
    code, _, err = run_cli(["search", "adding", "--trials", "2", "--space", "lr=log(1e-3,1e-2)", "--seq-length",
                            "5", "--hidden-size", "4", "--max-steps", "2", "--eval-every", "2", "--jobs", "1",
                            "--out", str(tmp_path / "s")], capsys)
    assert code == 0, err
    assert finished(bars, "search").total == 2


class EchoModel:
    """A stand-in seq2seq model whose output for a source is the source itself (without its padding)."""

    def translate(self, ids, lengths):
        return [row[:n] for row, n in zip(ids, lengths)]


def test_translating_many_sources_shows_a_bar_and_keeps_their_order(bars):
    from rnnkit.cli.apply import TRANSLATED_AT_ONCE, _decoded

    sources = [np.arange(1, 2 + i % 5) * (i + 1) for i in range(TRANSLATED_AT_ONCE * 2 + 3)]
    outputs = _decoded(EchoModel(), sources)
    assert [list(o) for o in outputs] == [list(s) for s in sources]
    assert finished(bars, "translate").total == len(sources)


def test_translating_a_few_sources_shows_no_bar(bars):
    from rnnkit.cli.apply import _decoded

    _decoded(EchoModel(), [np.array([1, 2]), np.array([3])])
    assert [b.off for b in bars if b.named == "translate"] == [True]


def test_teach_grade_shows_a_bar_over_the_notebooks_and_prints_every_verdict(tmp_path, capsys, bars):
    paths = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.py"
        path.write_text('# %% tags=["exercise"]\ndef linear_backward(dy, x, weight):\n    return dy, dy, dy\n')
        paths.append(str(path))
    code, out, _ = run_cli(["teach", "grade", *paths], capsys)
    assert code == 1 and out.count("FAIL") == 2
    assert finished(bars, "grade").total == 2


def test_the_long_commands_write_no_bar_off_a_terminal(tmp_path, capsys):
    code, _, err = run_cli(["diagnose", "--cell", "rnn", "--task", "adding", "--seq-length", "6", "--hidden-size",
                            "4", "--out", str(tmp_path / "d")], capsys)
    assert code == 0, err
    assert "\r" not in err and "model/s" not in err and "it/s" not in err
