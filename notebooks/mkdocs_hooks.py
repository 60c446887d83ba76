"""MkDocs hooks of the documentation site (``mkdocs.yml`` names this file): what the site needs beyond docs/.

* **MathJax, offline.** The pages load MathJax 3 from ``docs/javascripts/mathjax/`` (``tex-chtml.js``, its TeX
  extensions and its fonts), a copy that git ignores: when it is missing, it is fetched once from the npm registry
  (``npm pack mathjax@3``); the site then needs no network, at build time or when it is read.
* **The executed notebooks.** ``notebooks/NN_*.py`` and ``lecture_NN_*.py`` (``run_all.all_notebooks``) are
  executed (``run_all.execute``: jupytext + nbclient) into ``docs/notebooks/NAME.ipynb`` (ignored by git) when
  that file is missing or older than its source, and mkdocs-jupyter renders them as pages with their outputs. A
  cell that raises fails the build.
* **Generated pages.** The home page is the README (its ``docs/...`` links made relative to the site), and the API
  reference is one page per group of modules (`API_PAGES`), each rendered by mkdocstrings from the docstrings.
* **Optional pages.** A nav entry listed in `OPTIONAL_PAGES` is dropped, and the README's link to it becomes plain
  text, when its file does not exist (a page that is being written), instead of failing the strict build.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.rnnkit")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
MATHJAX_VERSION = "3.2.2"
#: the parts of the npm package the pages use (the rest — speech, other outputs — is not loaded)
MATHJAX_PARTS = ("es5/tex-chtml.js", "es5/input/tex/extensions/", "es5/output/chtml/fonts/woff-v2/", "es5/ui/")
OPTIONAL_PAGES = ("scaling.md",)

API_PAGES = {
    "api/index.md": ("The top level", "Everything `import rnnkit` gives: layers, losses, optimizers, the recurrent "
                     "layers and models, `fit`, `predict`, `evaluate`.",
                     ["rnnkit", "rnnkit.module", "rnnkit.errors"]),
    "api/layers.md": ("Layers, activations, losses, optimizers", "The feed-forward building blocks and training "
                      "utilities.",
                      ["rnnkit.layers", "rnnkit.activations", "rnnkit.highway", "rnnkit.losses", "rnnkit.optim",
                       "rnnkit.init", "rnnkit.sequences"]),
    "api/recurrent.md": ("Recurrent cells and layers", "The cell protocol, the runner that owns time, and every "
                         "cell family.",
                         ["rnnkit.recurrent.cell", "rnnkit.recurrent.gated", "rnnkit.recurrent.compiled_loop",
                          "rnnkit.recurrent.runner", "rnnkit.recurrent.layer", "rnnkit.recurrent.ragged",
                          "rnnkit.recurrent.states",
                          "rnnkit.recurrent.rnn", "rnnkit.recurrent.lstm", "rnnkit.recurrent.gru",
                          "rnnkit.recurrent.step_cells", "rnnkit.recurrent.elman", "rnnkit.recurrent.jordan",
                          "rnnkit.recurrent.rhn", "rnnkit.recurrent.mogrifier", "rnnkit.recurrent.indrnn",
                          "rnnkit.recurrent.minimal", "rnnkit.recurrent.scan", "rnnkit.recurrent.layernorm",
                          "rnnkit.recurrent.lnlstm", "rnnkit.recurrent.lngru", "rnnkit.recurrent.noise"]),
    "api/structured.md": ("CRF, CTC and attention", "Structured outputs and the attention of the encoder–decoder.",
                          ["rnnkit.crf", "rnnkit.ctc", "rnnkit.attention"]),
    "api/gradcheck.md": ("Gradient checks and the teaching kit", "Central differences against the hand-derived "
                         "backward passes, and the graded exercises of the notebooks.",
                         ["rnnkit.gradcheck", "rnnkit.teaching", "rnnkit.teaching_gru"]),
    "api/training.md": ("Training", "`fit`, `predict`, `evaluate`, the trainer, the models and the tasks.",
                        ["rnnkit.training.fit", "rnnkit.training.trainer", "rnnkit.training.diagnostics",
                         "rnnkit.training.sampling", "rnnkit.models.sequence", "rnnkit.models.seq2seq",
                         "rnnkit.models.tagger", "rnnkit.tasks.base", "rnnkit.tasks.memory", "rnnkit.tasks.text"]),
}


# -- MathJax ----------------------------------------------------------------------------------------------------
def ensure_mathjax(docs_dir: Path) -> None:
    """Fetch MathJax into ``docs/javascripts/mathjax/`` unless it is there."""
    target = docs_dir / "javascripts" / "mathjax"
    if (target / "tex-chtml.js").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise PluginError("MathJax is missing from docs/javascripts/mathjax/ and npm is not installed to fetch it "
                          f"(install Node.js/npm, or unpack mathjax@{MATHJAX_VERSION}'s es5/ there)")
    log.info("fetching mathjax@%s from the npm registry into %s", MATHJAX_VERSION, target)
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--silent"], cwd=tmp, capture_output=True,
                              text=True, timeout=300)
        packs = list(Path(tmp).glob("mathjax-*.tgz"))
        if done.returncode or not packs:
            raise PluginError(f"npm pack mathjax@{MATHJAX_VERSION} failed: {(done.stderr or done.stdout).strip()}")
        staging = Path(tmp) / "mathjax"
        with tarfile.open(packs[0]) as archive:
            for member in archive.getmembers():
                name = member.name.removeprefix("package/")
                if member.isfile() and any(name == p or (p.endswith("/") and name.startswith(p))
                                           for p in MATHJAX_PARTS):
                    out = staging / name.removeprefix("es5/")
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(archive.extractfile(member).read())
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), target)


# -- the notebooks ------------------------------------------------------------------------------------------------
def _run_all():
    spec = importlib.util.spec_from_file_location("rnnkit_run_all", NOTEBOOKS / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def execute_stale_notebooks(docs_dir: Path) -> None:
    """Execute each notebook whose ``docs/notebooks/NAME.ipynb`` is missing or older than ``NAME.py``."""
    out = docs_dir / "notebooks"
    run_all = _run_all()
    stale = [p for p in run_all.all_notebooks()
             if not (out / f"{p.stem}.ipynb").exists() or (out / f"{p.stem}.ipynb").stat().st_mtime < p.stat().st_mtime]
    if not stale:
        return
    import nbformat
    from nbclient.exceptions import CellExecutionError

    out.mkdir(parents=True, exist_ok=True)
    for path in stale:
        log.info("executing %s", path.name)
        try:
            notebook = run_all.execute(path)
        except CellExecutionError as e:
            raise PluginError(f"notebook {path.name} failed:\n{e}") from None
        nbformat.write(notebook, out / f"{path.stem}.ipynb")


# -- generated pages ----------------------------------------------------------------------------------------------
def readme_page(docs_dir: Path) -> str:
    """The README as the home page: links into docs/ made relative to the site, links to the notebooks' sources
    made links to their pages, and a link to a missing optional page left as its text."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"\]\(docs/", "](", text)
    text = re.sub(r"\]\(notebooks/((?:lecture_)?\d\d_\w+)\.py\)", r"](notebooks/\1.ipynb)", text)
    for page in OPTIONAL_PAGES:
        if not (docs_dir / page).exists():
            text = re.sub(rf"\[([^\]]*)\]\({re.escape(page)}\)", r"\1", text)
    return text


def api_page(title: str, summary: str, modules: list[str]) -> str:
    blocks = "\n\n".join(f"## `{m}`\n\n::: {m}" for m in modules)
    return f"# {title}\n\n{summary}\n\n{blocks}\n"


def _drop_missing(nav, docs_dir: Path):
    """``nav`` without the entries of `OPTIONAL_PAGES` whose files are missing."""
    if isinstance(nav, list):
        kept = [_drop_missing(item, docs_dir) for item in nav]
        return [item for item in kept if item]
    if isinstance(nav, dict):
        return {k: v for k, v in ((k, _drop_missing(v, docs_dir)) for k, v in nav.items()) if v}
    if isinstance(nav, str) and nav in OPTIONAL_PAGES and not (docs_dir / nav).exists():
        log.info("optional page %s is not there yet: left out of the navigation", nav)
        return None
    return nav


# -- the hooks ----------------------------------------------------------------------------------------------------
def on_config(config):
    docs_dir = Path(config["docs_dir"])
    config["nav"] = _drop_missing(config["nav"], docs_dir)
    ensure_mathjax(docs_dir)
    return config


def on_pre_build(config):
    execute_stale_notebooks(Path(config["docs_dir"]))


def on_files(files, config):
    files.append(File.generated(config, "index.md", content=readme_page(Path(config["docs_dir"]))))
    for path, (title, summary, modules) in API_PAGES.items():
        files.append(File.generated(config, path, content=api_page(title, summary, modules)))
    return files
