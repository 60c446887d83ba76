"""docs/architecture.md stays true: every file it names exists, and `import rnnkit` loads what it says."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "rnnkit"
PAGE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
FILE = r"[\w.]+\.(?:py|md|txt)"


def _tree_paths() -> set[str]:
    """The files of the package tree drawn under "The layers", as paths inside src/rnnkit."""
    block = PAGE.split("## The layers", 1)[1].split("```")[1]
    paths, folder = set(), ""
    for line in block.splitlines()[1:]:
        head = re.match(r"\s{2}(\w+)/", line)
        if head:
            folder = head.group(1) + "/"
        elif re.match(r"\s{2}\S", line):
            folder = ""  # the top level's lines
        if "─" in line:  # the line drawn between the library and the subpackages
            continue
        text = re.sub(r"\([^)]*\)", "", line)  # file names inside comments are named again in code below
        paths |= {folder + name for name in re.findall(FILE, text) if not name.startswith("rnnkit.")}
    return paths


def _quoted_paths() -> set[str]:
    """The paths written in backquotes anywhere on the page (``models/sequence.py``, ``docs/teaching.md``)."""
    return {p for p in re.findall(r"`([\w/]+/" + FILE + r")`", PAGE)}


def _exists(path: str) -> bool:
    return (PACKAGE / path).is_file() or (ROOT / path).is_file() or (ROOT / "src" / path).is_file()


def test_every_file_in_the_package_tree_of_architecture_md_exists():
    paths = _tree_paths()
    assert len(paths) > 40 and "recurrent/catalog.py" in paths
    assert [p for p in sorted(paths) if not _exists(p)] == []


def test_every_path_quoted_in_architecture_md_exists():
    paths = _quoted_paths()
    assert "training/trainer.py" in paths
    assert [p for p in sorted(paths) if not _exists(p)] == []


def test_import_rnnkit_loads_no_module_of_tasks_models_training_or_cli():
    code = ("import sys, rnnkit\n"
            "print(' '.join(m for m in sys.modules if m.split('.')[:2][-1] in ('tasks', 'models', 'training', 'cli')"
            " and m.startswith('rnnkit.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []


def test_the_models_of_the_top_level_are_loaded_when_first_named():
    code = "import rnnkit; from rnnkit import SequenceModel; print(SequenceModel.__module__, rnnkit.Seq2Seq.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["rnnkit.models.sequence", "Seq2Seq"]
