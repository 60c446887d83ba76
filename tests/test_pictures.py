"""The pictures and pages rnnkit writes, read back through their matplotlib objects and HTML text: diagnose on
checkpoints of several tasks, experiment bars, loss units and log ticks, the attention heatmap, the unit page."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from conftest import run_cli  # noqa: E402

SMALL = ["--hidden-size", "8", "--eval-every", "2", "--no-progress"]


def trained(tmp_path, capsys, task: str, *extra: str):
    out = tmp_path / task
    code, _, err = run_cli(["train", task, "--max-steps", "2", *SMALL, "--out", str(out), *extra], capsys)
    assert code == 0, err
    return out


@pytest.fixture
def figures(monkeypatch):
    """The figures diagnose saves, by file name (still written to disk)."""
    from rnnkit.training import diagnostics

    saved = {}
    real = diagnostics.save_figure

    def keep(fig, path):
        saved[path.name] = fig
        return real(fig, path)

    monkeypatch.setattr(diagnostics, "save_figure", keep)
    return saved


def titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def test_diagnose_runs_checkpoints_of_two_tasks_each_on_its_own_task_in_its_own_panel(tmp_path, capsys, figures):
    adding = trained(tmp_path, capsys, "adding", "--seq-length", "12")
    reber = trained(tmp_path, capsys, "reber")
    code, out, err = run_cli(["diagnose", str(adding), str(reber), "--out", str(tmp_path / "diag")], capsys)
    assert code == 0, err
    assert "adding (rnn) on adding, T=12:" in out and "reber (lstm) on reber:" in out
    assert [t.split(":")[0] for t in titles(figures["grad_norms.png"])] == ["adding, T=12", "reber"]


def test_diagnose_runs_fresh_cells_on_the_task_and_length_of_its_options_beside_a_checkpoint(tmp_path, capsys,
                                                                                              figures):
    reber = trained(tmp_path, capsys, "reber")
    code, out, err = run_cli(["diagnose", str(reber), "--cell", "gru", "--task", "copy", "--seq-length", "9",
                              "--hidden-size", "8", "--out", str(tmp_path / "diag")], capsys)
    assert code == 0, err
    assert "gru (initial) on copy, T=9:" in out and "reber (lstm) on reber:" in out


def test_diagnose_plots_the_spectral_radii_of_every_model_against_one(tmp_path, capsys, figures):
    code, out, err = run_cli(["diagnose", "--cell", "rnn", "--cell", "lstm", "--task", "adding", "--seq-length", "8",
                              "--hidden-size", "8", "--out", str(tmp_path / "diag")], capsys)
    assert code == 0, err
    panel = figures["saturation.png"].axes[-1]
    assert panel.get_title() == "spectral radius ρ of each W_hh block"
    bars = [t.get_text() for t in panel.get_yticklabels()]
    assert bars == ["rnn (initial): h", *(f"lstm (initial): {g}" for g in "ifgo")]
    assert [line.get_xdata()[0] for line in panel.get_lines()] == [1.0]


def drawn_labels(fig, axis: str = "y") -> list[str]:
    """The tick labels a reader sees on ``axis`` of the first axes (major and minor), once the figure is drawn."""
    fig.canvas.draw()
    ax = getattr(fig.axes[0], f"{axis}axis")
    return [t.get_text() for minor in (False, True) for t in ax.get_ticklabels(minor=minor) if t.get_text()]


def test_the_loss_plot_names_the_unit_of_the_loss_on_its_y_axis():
    from rnnkit.training.plotting import loss_figure

    fig = loss_figure([{"step": 1, "train_loss": 3.3}, {"step": 2, "val_loss": 2.0}], unit="nats/char")
    assert fig.axes[0].get_ylabel() == "loss (nats/char), log scale"


def test_a_text_task_measures_its_loss_in_nats_per_char_and_the_adding_task_in_squared_error():
    from rnnkit.tasks.memory import AddingTask
    from rnnkit.tasks.text import TextTask

    assert TextTask.loss_unit == "nats/char" and AddingTask.loss_unit == "squared error"


@pytest.mark.parametrize("low, high", [(2.0, 3.3), (1.2, 1.6), (0.3, 4.5), (0.001, 5.0)])
def test_the_loss_plots_log_axis_reads_in_plain_decimals_on_any_range(low, high):
    from rnnkit.training.plotting import loss_figure

    records = [{"step": 1, "train_loss": high}, {"step": 2, "train_loss": low}]
    labels = drawn_labels(loss_figure(records))
    assert len(labels) >= 2, labels
    assert all(float(label) > 0 for label in labels), labels  # "3", "0.25": no 3×10⁰, no mathtext


def test_the_attention_heatmap_has_a_title_and_shows_spaces_as_visible_ticks():
    import numpy as np

    from rnnkit.training.plotting import attention_figure

    fig = attention_figure(np.full((3, 3), 1 / 3), list("a b"), ["x", " ", "<eos>"])
    assert fig.axes[0].get_title() == "attention while decoding 'a b'"
    assert drawn_labels(fig, "x") == ["a", "␣", "b"] and drawn_labels(fig, "y") == ["x", "␣", "<eos>"]


def summary_rows(success: list[float]) -> list[dict]:
    return [{"cell": cell, "length": 20, "seeds": 2, "success_rate": rate, "score": rate / 2, "val_loss": 0.1,
             "baseline": 1 / 6, "seconds": 1.0, "steps": 10, "time_stopped": 0} for cell, rate in zip(
                ("rnn", "lstm", "gru"), success)]


def test_the_experiment_plot_labels_the_y_axis_of_its_success_panel():
    from rnnkit.training.experiments import EXPERIMENTS, experiment_figure

    fig = experiment_figure(EXPERIMENTS["copy"], summary_rows([0.0, 0.5, 1.0]))
    assert fig.axes[0].get_ylabel() == "share of seeds / recall accuracy"
    assert fig.axes[0].get_title() == "success rate over seeds"


def test_an_experiment_where_every_run_failed_draws_its_zeros_and_says_all_0():
    from rnnkit.training.experiments import EXPERIMENTS, experiment_figure

    ax = experiment_figure(EXPERIMENTS["adding"], summary_rows([0.0, 0.0, 0.0])).axes[0]
    assert ax.get_title() == "success rate over seeds: all 0"
    assert [t.get_text() for t in ax.texts] == ["0%", "0%", "0%", "no run met the success criterion"]


def test_the_unit_page_writes_white_text_on_dark_backgrounds_and_black_on_light_ones():
    from rnnkit.training.visualize import colours

    assert colours(-1.0) == ("rgb(0,0,255)", "white")  # saturated blue: black text would be hard to read
    assert colours(0.0) == ("rgb(255,255,255)", "black")
    assert colours(-0.3)[1] == "black" and colours(1.0) == ("rgb(255,0,0)", "black")  # WCAG: black reads better


def test_visualize_names_the_checkpoint_and_paints_each_character_with_its_text_colour(tmp_path, capsys):
    import json

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 20, encoding="utf-8")
    run_dir = trained(tmp_path, capsys, "text", "--data", str(corpus), "--num-layers", "1", "--seq-length", "10",
                      "--batch-size", "4")
    page = tmp_path / "units.html"
    code, _, err = run_cli(["visualize", str(run_dir), "--text", "the fox", "--unit", "2", "--out", str(page)],
                           capsys)
    assert code == 0, err
    content = page.read_text(encoding="utf-8")
    assert f"<title>hidden units of {run_dir}</title>" in content and f"<h1>hidden units of {run_dir}</h1>" in content
    painted = json.loads(content.split("const colours = ")[1].split(";\n")[0])
    values = json.loads(content.split("const values = ")[1].split(";\n")[0])
    from rnnkit.training.visualize import colours

    assert painted["2"] == [list(colours(v)) for v in values["2"]]
