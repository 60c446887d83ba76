"""Every command that reads a data file recognises its format positively: a TSV, a CoNLL file (space- and
tab-separated) and plain text are each read where they are the expected format and refused in one line (exit 2,
naming the expected format, the file and the offending line) where they are not.

What is right per command: ``train text``, ``eval --data`` and ``visualize --text-file`` read any UTF-8 text (a
character model learns every character), so every file is right there. ``train classify`` reads ``label<TAB>text``;
``classify --input`` also plain text lines; ``train tagging`` and ``tag --input`` read CoNLL; ``train seq2seq``
reads ``source<TAB>target``, which a ``label<TAB>text`` file is too (a model learning to output the label).
``translate`` takes its sources as arguments, not a file.
"""

import pytest

from rnnkit.cli import main

WORDS = "the a good bad film plot cast was very not quite long short fun dull".split()

FORMATS = ("tsv", "conll", "conll_tabs", "text")
RIGHT = {
    "train text": set(FORMATS), "eval": set(FORMATS), "visualize": set(FORMATS),
    "train classify": {"tsv"}, "classify": {"tsv", "text"},
    "train tagging": {"conll", "conll_tabs"}, "tag": {"conll", "conll_tabs"},
    "train seq2seq": {"tsv"},
}


def _files(root):
    tsv = [f"{'pos' if i % 2 else 'neg'}\t" + " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(3 + i % 5))
           for i in range(40)]
    sentences = [[(WORDS[(i * 3 + j) % len(WORDS)], "B-X" if j == 0 else "O") for j in range(2 + i % 3)]
                 for i in range(30)]
    text = [" ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(4 + i % 6)) + "." for i in range(30)]
    contents = {"tsv": "\n".join(tsv) + "\n",
                "conll": "\n\n".join("\n".join(f"{w} {t}" for w, t in s) for s in sentences) + "\n",
                "conll_tabs": "\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in sentences) + "\n",
                "text": "\n".join(text) + "\n"}
    paths = {}
    for name, content in contents.items():
        paths[name] = root / f"{name}.txt"
        paths[name].write_text(content, encoding="utf-8")
    paths["all"] = root / "all.txt"
    paths["all"].write_text("".join(contents.values()), encoding="utf-8")
    return paths


def _run(argv, capsys=None):
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    return code


TINY = ["--epochs", "1", "--hidden-size", "4", "--no-progress"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    paths = _files(root)
    runs = {"text": (paths["all"], ["--batch-size", "2", "--seq-length", "8"]),
            "classify": (paths["tsv"], ["--embedding-size", "4"]),
            "tagging": (paths["conll"], ["--embedding-size", "4"])}
    for task, (data, extra) in runs.items():
        assert _run(["train", task, "--data", data, "--out", root / f"run-{task}", *TINY, *extra]) == 0, task
    return root, paths


def _command(command: str, root, data, out):
    """The argv of ``command`` reading ``data`` (outputs under ``out``)."""
    small = {"train text": ["--batch-size", "2", "--seq-length", "8"], "train seq2seq": ["--embedding-size", "4"],
             "train classify": ["--embedding-size", "4"], "train tagging": ["--embedding-size", "4"]}
    if command.startswith("train "):
        return [*command.split(), "--data", data, "--out", out, *TINY, *small[command]]
    return {"eval": ["eval", root / "run-text", "--data", data],
            "visualize": ["visualize", root / "run-text", "--text-file", data, "--out", out],
            "classify": ["classify", root / "run-classify", "--input", data, "--output", out],
            "tag": ["tag", root / "run-tagging", "--input", data, "--output", out]}[command]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("command", list(RIGHT))
def test_every_data_command_reads_its_format_and_refuses_others_in_one_line(setup, tmp_path, capsys, command, fmt):
    root, paths = setup
    out = tmp_path / "out"
    code = _run(_command(command, root, paths[fmt], out))
    err = capsys.readouterr().err
    if fmt in RIGHT[command]:
        assert code == 0, err
    else:
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1, err
        assert lines[0].startswith("rnnkit: error: ") and f"{paths[fmt]}:" in lines[0] and "expected" in lines[0]
        assert not out.exists()


def test_tag_names_the_format_of_a_tsv_file_and_its_first_line(setup, capsys):
    root, paths = setup
    code = _run(["tag", root / "run-tagging", "--input", paths["tsv"]])
    err = capsys.readouterr().err
    assert code == 2 and f"{paths['tsv']}:1: expected CoNLL columns" in err and "'label<TAB>text' line" in err


def test_train_tagging_on_a_tsv_file_names_the_format_not_the_sentence_count(setup, tmp_path, capsys):
    _, paths = setup
    code = _run(["train", "tagging", "--data", paths["tsv"], "--out", tmp_path / "r", *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "expected CoNLL columns" in err and "too few sentences" not in err


def test_tag_refuses_a_second_column_that_is_not_the_models_tags(setup, tmp_path, capsys):
    root, _ = setup
    other = tmp_path / "other.conll"
    other.write_text("the NN\nfilm NN\n\nbad JJ\n", encoding="utf-8")
    code = _run(["tag", root / "run-tagging", "--input", other])
    err = capsys.readouterr().err
    assert code == 2 and "got the tag 'NN'" in err
