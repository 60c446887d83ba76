"""A checkpoint's meta.json edited and re-signed (the manifest updated to match) is validated field by field before
anything runs: each tampering — a field deleted, null, of the wrong type or out of range — is one line
`rnnkit: error: ...` (exit 2) from every command that loads it."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil

import pytest

from conftest import run_cli

DELETE = object()


def _set(meta: dict, path: str, value) -> None:
    """Set ``meta[a][b]`` for ``path`` "a.b" (``DELETE`` removes it; "a[0]" indexes a list)."""
    *parents, last = path.split(".")
    for part in parents:
        meta = meta[part]
    if last.endswith("]"):
        name, index = last[:-1].split("[")
        meta[name][int(index)] = value
    elif value is DELETE:
        del meta[last]
    else:
        meta[last] = value


def tampered_copy(run, tmp_path, change) -> object:
    """A copy of ``run`` whose meta.json is ``change(meta)`` and whose manifest is re-signed to match."""
    target = tmp_path / "tampered"
    shutil.copytree(run, target, symlinks=True)
    version = (target / "checkpoint").resolve()
    meta = json.loads((version / "meta.json").read_text())
    data = change(copy.deepcopy(meta))
    data = data if isinstance(data, bytes) else json.dumps(data).encode()
    (version / "meta.json").write_bytes(data)
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["files"]["meta.json"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (version / "manifest.json").write_text(json.dumps(manifest))
    return target


def nested(depth: int) -> bytes:
    return b'{"format": 1, "deep": ' + b"[" * depth + b"]" * depth + b"}"


COMMON = [("task", DELETE), ("task", None), ("task", "abc"), ("task", [1]), ("model", DELETE), ("model", None),
          ("model", "x"), ("model", []), ("kind", "x"), ("kind", None), ("task.task", "nonsense"),
          ("task.seq_length", "x"), ("task.seq_length", -5), ("task.seed", -1), ("task.seed", "x"),
          ("train", None), ("train.seed", -1), ("train.seed", "x"), ("train.lr", -1.0), ("rng", DELETE),
          ("rng", None), ("rng", [1]), ("rng", []), ("model.hidden_size", -1), ("model.hidden_size", 10**12)]
TEXT = COMMON + [("vocab", DELETE), ("vocab", None), ("vocab", [1, 2]), ("vocab[1]", "t")]
SEQ2SEQ = COMMON + [("tokens", DELETE), ("tokens", None), ("target_tokens", DELETE), ("target_tokens", None),
                    ("target_tokens[0]", "ab"), ("target_tokens[3]", "x"), ("tokens[0]", "zz"), ("labels", [1])]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from rnnkit.cli import main  # capsys is function-scoped: the module's runs train with a plain main()

    root = tmp_path_factory.mktemp("tampered")
    corpus = root / "corpus.txt"
    corpus.write_text("to be or not to be, that is the question. " * 20, encoding="utf-8")
    common = ["--hidden-size", "8", "--batch-size", "4", "--max-steps", "2", "--eval-every",
              "2", "--no-progress"]
    for name, argv in {"text": ["train", "text", "--data", str(corpus), "--seq-length", "10", *common],
                       "seq2seq": ["train", "seq2seq", *common]}.items():
        try:
            main([*argv, "--out", str(root / name)])
        except SystemExit as e:
            assert not e.code
    return root, corpus


def commands(kind: str, run, corpus, scratch) -> dict[str, list[str]]:
    train = ["train", kind, *(["--data", str(corpus)] if kind == "text" else []), "--max-steps", "4",
             "--no-progress"]
    applied = {"text": {"sample": ["sample", str(run), "-n", "5"], "eval": ["eval", str(run), "--data", str(corpus)]},
               "seq2seq": {"translate": ["translate", str(run), "1 2 3"]}}[kind]
    return {**applied, "--resume": [*train, "--out", str(run), "--resume"],
            "--init-from": [*train, "--init-from", str(run), "--out", str(scratch / "new")]}


CASES = [("text", field, value) for field, value in TEXT] + [("seq2seq", field, value) for field, value in SEQ2SEQ]


@pytest.mark.parametrize("kind, field, value", CASES, ids=[f"{k}-{f}={'deleted' if v is DELETE else repr(v)[:12]}"
                                                           for k, f, v in CASES])
def test_a_tampered_meta_field_is_a_one_line_error_for_every_command(runs, tmp_path, capsys, kind, field, value):
    root, corpus = runs

    def change(meta):
        _set(meta, field, value)
        return meta

    run = tampered_copy(root / kind, tmp_path, change)
    for command, argv in commands(kind, run, corpus, tmp_path).items():
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and err.strip().splitlines()[-1].startswith("rnnkit: error: "), (command, err)
        assert "Traceback" not in err and len([x for x in err.splitlines() if "error" in x]) == 1, (command, err)
        assert not (tmp_path / "new").exists() or command != "--init-from", command


@pytest.mark.parametrize("depth", [20, 100_000])
def test_deeply_nested_json_in_meta_is_a_one_line_error_not_a_recursion_error(runs, tmp_path, capsys, depth):
    root, corpus = runs
    run = tampered_copy(root / "text", tmp_path, lambda meta: nested(depth))
    for command, argv in commands("text", run, corpus, tmp_path).items():
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and err.strip().splitlines() == [err.strip()] and "nests JSON deeper" in err, (command, err)


def test_huge_finite_weights_are_refused_on_load():
    import numpy as np

    from rnnkit.errors import CheckpointError
    from rnnkit.models.registry import check_state
    from rnnkit.models.sequence import ModelConfig, SequenceModel

    model = SequenceModel(ModelConfig(3, 3, hidden_size=4))
    state = model.state_dict()
    name = next(iter(state))
    state[name] = np.full_like(state[name], 3e38)
    with pytest.raises(CheckpointError, match=r"magnitude 3e\+38 \(expected at most 1e\+30"):
        check_state(model, state)
