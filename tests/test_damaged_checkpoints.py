"""A damaged checkpoint file gives one line naming the file and what is wrong, exit status 2, on every load path."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from conftest import run_cli
from rnnkit.training import checkpoint

DAMAGES = {
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "random bytes": lambda data: np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes(),
    "bad header": lambda data: data[:8] + b"{not json" + data[17:],
    "huge header length": lambda data: (2**62).to_bytes(8, "little") + data[8:],
}
FILES = ("model.safetensors", "optimizer.safetensors", "meta.json")


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("damaged")
    corpus = base / "corpus.txt"
    corpus.write_text("to be or not to be, that is the question. " * 20, encoding="utf-8")
    out = base / "run"
    code = run_cli_plain(["train", "text", "--data", str(corpus), "--hidden-size", "8", "--num-layers", "1",
                          "--seq-length", "10", "--batch-size", "4", "--max-steps", "3", "--eval-every", "3",
                          "--out", str(out), "--no-progress"])
    assert code == 0
    return corpus, out


def run_cli_plain(argv) -> int:
    from rnnkit.cli import main

    try:
        main(argv)
    except SystemExit as e:
        return e.code
    return 0


ONNX = importlib.util.find_spec("onnx") is not None


def load_paths(corpus, run, scratch):
    train = ["train", "text", "--data", str(corpus), "--max-steps", "6", "--no-progress"]
    return {
        "sample": ["sample", str(run), "--length", "5"],
        "eval": ["eval", str(run), "--data", str(corpus)],
        # export reaches the checkpoint only where onnx is installed (it names the missing package first)
        **({"export": ["export", str(run), "--onnx", str(scratch / "model.onnx")]} if ONNX else {}),
        "--resume": train + ["--out", str(run), "--resume"],
        "--init-from": train + ["--init-from", str(run), "--out", str(scratch / "new")],
    }


def damaged_copy(run, scratch, name: str, damage: str, layout: str):
    """A copy of ``run`` whose ``name`` is damaged, in the versioned layout or the previous one (no manifest)."""
    copy = scratch / "run"
    shutil.copytree(run, copy, symlinks=True)
    version = checkpoint.find(copy)
    if layout == "previous":
        (version / "manifest.json").unlink()
        (copy / "checkpoint").unlink()
        version = version.rename(copy / "checkpoint")
    path = version / name
    path.write_bytes(DAMAGES[damage](path.read_bytes()))
    return copy, path


@pytest.mark.parametrize("layout", ["versioned", "previous"])
@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("name", FILES)
def test_a_damaged_checkpoint_file_is_one_line_naming_it_on_every_load_path(char_run, tmp_path, capsys, name,
                                                                            damage, layout):
    corpus, run = char_run
    copy, path = damaged_copy(run, tmp_path, name, damage, layout)
    if layout == "previous" and name == "meta.json" and damage in ("bad header", "huge header length"):
        path.write_bytes(b"[]")  # JSON of the wrong kind
    for command, argv in load_paths(corpus, copy, tmp_path).items():
        code, stdout, err = run_cli(argv, capsys)
        lines = err.strip().splitlines()
        assert code == 2, (command, err)
        assert len(lines) == 1 and lines[0].startswith("rnnkit: error: checkpoint file"), (command, err)
        assert name in lines[0], (command, err)
        assert not (tmp_path / "model.onnx").exists() and not (tmp_path / "new" / "checkpoint").exists()
