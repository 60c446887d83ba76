"""The README's claims kept true: its Python examples run, its cell × task table is the one the code generates, it
hard-codes no test count, every command of its table exists and runs, and every option has a help text."""

import re
import sys
import textwrap
from pathlib import Path

import click
import pytest

from conftest import requires_torch, run_cli
from rnnkit.cli import cli
from rnnkit.cli.matrix import cell_task_table

README = Path(__file__).resolve().parent.parent / "README.md"
TABLE_START, TABLE_END = "<!-- cell-task-table: generated, do not edit by hand -->", "<!-- /cell-task-table -->"
NEEDS_TORCH = re.compile(r"\b(to_torch|from_torch|import torch)\b")


def readme() -> str:
    return README.read_text(encoding="utf-8")


def python_examples() -> list[str]:
    """The README's ```python blocks in order, dedented (a block inside a list item is indented)."""
    blocks = re.findall(r"^( *)```python\n(.*?)^\1```", readme(), flags=re.S | re.M)
    return [textwrap.dedent(body) for _, body in blocks]


def test_every_python_example_of_the_readme_that_needs_no_torch_runs_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    examples = [code for code in python_examples() if not NEEDS_TORCH.search(code)]
    assert len(examples) >= 3
    for code in examples:  # in one namespace: the training loop example continues the `fit` one
        exec(compile(code, str(README), "exec"), namespace)


@requires_torch
def test_every_python_example_of_the_readme_that_needs_torch_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    examples = [code for code in python_examples() if NEEDS_TORCH.search(code)]
    assert examples
    for code in examples:  # each is self-contained
        exec(compile(code, str(README), "exec"), {})


def test_each_readme_example_that_needs_torch_is_self_contained_and_introduced_as_needing_it():
    text = readme()
    for code in python_examples():
        if NEEDS_TORCH.search(code):
            before = text[:text.index(code)].rsplit("\n\n", 2)[-2]  # the paragraph before the ```python line
            assert "import rnnkit" in code and "pip install torch" in before, before


def test_the_readme_cell_task_table_is_the_one_the_code_generates():
    text = readme()
    assert text.count(TABLE_START) == 1 and text.count(TABLE_END) == 1
    documented = text.split(TABLE_START)[1].split(TABLE_END)[0].strip()
    assert documented == cell_task_table(), (
        "the README's cell × task table is stale; regenerate it with "
        "python3 -c 'from rnnkit.cli.matrix import cell_task_table; print(cell_task_table())'")


def test_the_cell_task_table_says_seq2seq_takes_only_rnn_lstm_gru_and_classify_refuses_jordan():
    from rnnkit.cli.matrix import cell_task_matrix

    matrix = cell_task_matrix()
    assert matrix["seq2seq"] == ("rnn", "lstm", "gru")
    assert "jordan" not in matrix["classify"] and "jordan" not in matrix["tagging"]
    assert {"lnlstm", "lngru"} <= set(matrix["text"])


def test_the_readme_hard_codes_no_test_count():
    assert not re.search(r"\d[\d,]* tests\b", readme())
    assert "pytest --collect-only -q" in readme()


def command_table() -> list[list[str]]:
    """The command words of each row of the README's command table (`rnnkit teach student DIR` → teach student)."""
    rows = re.findall(r"^\| `rnnkit ([^`]*)` \|", readme(), flags=re.M)
    return [list(re.match(r"[a-z][a-z ]*[a-z]", row).group(0).split()) for row in rows]


def test_the_readme_command_table_names_every_command_of_the_program():
    documented = {words[0] for words in command_table()}
    assert documented == set(cli.commands)


@pytest.mark.parametrize("words", command_table(), ids=" ".join)
def test_every_command_of_the_readme_table_shows_its_help(words, capsys):
    group = cli.commands[words[0]]
    path = [w for w in words if not isinstance(group, click.Group) or w == words[0] or w in group.commands]
    code, out, err = run_cli([*path, "--help"], capsys)
    assert code == 0 and out.startswith("Usage: rnnkit " + " ".join(path)), err


def test_the_cheap_commands_of_the_readme_table_run(tmp_path, capsys):
    assert run_cli(["info"], capsys)[0] == 0
    code, out, err = run_cli(["diagnose", "--cell", "rnn", "--seq-length", "5", "--hidden-size", "4",
                              "--out", str(tmp_path / "diag")], capsys)
    assert code == 0 and "rnn (initial)" in out, err
    run = str(tmp_path / "run")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be, that is the question. " * 20, encoding="utf-8")
    code, _, err = run_cli(["train", "text", "--data", str(corpus), "--hidden-size", "8", "--seq-length", "10",
                            "--batch-size", "4", "--max-steps", "2", "--out", run, "--no-progress"], capsys)
    assert code == 0, err
    assert run_cli(["sample", run, "-n", "5", "--seed", "0"], capsys)[0] == 0
    assert run_cli(["eval", run, "--data", str(corpus)], capsys)[0] == 0
    assert run_cli(["visualize", run, "--text", "to be", "--out", str(tmp_path / "u.html")], capsys)[0] == 0


def every_option():
    def walk(command, path):
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])
        else:
            for param in command.params:
                if isinstance(param, click.Option) and not param.hidden:
                    yield " ".join(path), param

    return list(walk(cli, []))


def test_every_option_of_every_command_has_a_help_text():
    missing = [f"{command} {param.opts[0]}" for command, param in every_option() if not (param.help or "").strip()]
    assert not missing


def test_the_visualize_unit_help_names_the_range_of_units_not_the_default_selection():
    unit = next(p for command, p in every_option() if command == "visualize" and "--unit" in p.opts)
    assert "hidden size − 1" in unit.help and "[0 .. 7]" not in unit.help


def test_the_gradcheck_table_keeps_its_columns_aligned_for_long_layer_names(monkeypatch, capsys):
    import rnnkit.training.gradcheck_suite as suite

    names = ["Linear", "GRU(variational dropout, zoneout, weight drop, 2 layers, and a much longer name)"]
    monkeypatch.setattr(suite, "run_suite", lambda: iter([(names[0], 1e-9), (names[1], 2e-8)]))
    code, out, _ = run_cli(["gradcheck"], capsys)
    rows = [line for line in out.splitlines() if any(line.endswith(n) for n in names)]
    assert code == 0 and len(rows) == 2
    assert len({row.index(" ok ") for row in rows}) == 1 and len({row.index(n) for row, n in zip(rows, names)}) == 1


def test_bench_without_torch_says_so_in_one_line_and_times_rnnkit_alone(monkeypatch, capsys):
    from rnnkit.training import bench

    asked = []

    def fake_run(cases, with_torch, meta, **options):
        asked.append(with_torch)
        meta.update(workers={"rnnkit": 1}, thread_pools={"rnnkit": {}}, versions={"rnnkit": "0.1.0"})
        return iter([])

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as if it were not installed
    monkeypatch.setattr(bench, "run", fake_run)
    code, _, err = run_cli(["bench", "--cells", "rnn", "--batch", "1", "--hidden", "4"], capsys)
    notes = [line for line in err.splitlines() if "torch is not installed" in line]
    assert code == 0 and len(notes) == 1 and asked == [False]
