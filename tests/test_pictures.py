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
