"""One notebook per lecture deck, in the deck's own notation: each deck has its notebook, each notebook's symbol
map names the deck's symbols and links the lectures' symbol page, the decks' errata are pointed out where they
occur, and the notebooks are run by CI and on the site. Cheap: nothing is executed here (CI's run_all step does)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from rnnkit import teaching

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DECKS_DIR = ROOT.parent / "shared" / "lectures"
#: deck number → (its notebook, the deck's symbols its symbol map must name, as they are written there)
DECKS = {
    "000": ("lecture_00_framework", ["W_{xh}", "W_{hh}", "W_{hy}", "b_h", "b_y", "W_h", "\\tilde{x}_t", "k_1",
                                     "k_2", "memorize"]),
    "001": ("lecture_01_framework", ["W_x", "W_h", "W_o", "bias", "g_t", "o_t", "\\delta g_t", "TimeSeries",
                                     "W_{Rz}", "W_{Rr}", "W_{Ro}", "f_t = r_t \\odot h_{t-1}", "W_{Ra}", "c_t",
                                     "W_T", "T(x)", "s_t^l", "t_t^l", "c_t^l = 1 - t_t^l"]),
    "002": ("lecture_02_elman_jordan", ["W^{IH}", "W^{HH}", "W^{HO}", "w_{ij}^{IH}", "h_{in}(t)", "y_{in}(t)",
                                        "f^H", "f^O", "\\delta^O_K(t)", "\\delta^H_j(t)", "E_{tot}"]),
    "003": ("lecture_03_basics", ["W_h", "W_x", "W_y", "h_t", "y_t", "\\tilde{C}"]),
    "004": ("lecture_04_ner", ["x^{\\langle t \\rangle}", "a^{\\langle t \\rangle}", "w_{aa}", "w_{ax}", "b_a",
                               "w_{ya}", "b_y", "\\hat{y}^{\\langle t \\rangle}", "\\mathcal{L}^{\\langle t \\rangle}",
                               "T_x"]),
}


def symbol_map(name: str) -> str:
    """The notebook's '## Symbol map' section (in its first markdown cell)."""
    first = teaching.cells((NOTEBOOKS / f"{name}.py").read_text(encoding="utf-8"))[0]
    assert first.kind == "markdown", f"{name} must open with its markdown introduction"
    match = re.search(r"^# ## Symbol map\n(.*?)(?=^# ## |\Z)", first.source, re.M | re.S)
    assert match, f"{name} has no '## Symbol map' section in its first cell"
    return match.group(1)


def run_all():
    spec = importlib.util.spec_from_file_location("run_all", NOTEBOOKS / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_lecture_deck_has_a_notebook_named_after_it():
    if not DECKS_DIR.is_dir():
        pytest.skip("the lecture decks are not next to this checkout")
    decks = sorted(p.name[:3] for p in DECKS_DIR.glob("[0-9][0-9][0-9]_*.txt"))
    assert decks == sorted(DECKS)
    for deck, (name, _) in DECKS.items():
        assert name.startswith(f"lecture_{deck[1:]}_"), f"deck {deck}'s notebook {name} does not carry its number"


def test_each_lecture_notebook_names_its_decks_symbols_in_its_symbol_map_and_links_the_symbol_page():
    for name, symbols in DECKS.values():
        text = symbol_map(name)
        missing = [s for s in symbols if s not in text]
        assert not missing, f"{name}'s symbol map does not name {missing}"
        assert "(../../lectures/)" in text, f"{name}'s symbol map does not link docs/lectures.md"


def test_the_decks_errata_are_pointed_out_in_the_notebooks_of_their_decks():
    lstm = (NOTEBOOKS / "lecture_01_framework.py").read_text(encoding="utf-8")
    assert "**Erratum:**" in lstm and "1 - \\tanh^2(c_t)" in lstm and "(1 - \\tanh(c_t))" in lstm
    ner = (NOTEBOOKS / "lecture_04_ner.py").read_text(encoding="utf-8")
    assert "**Erratum:**" in ner and "\\sum_{k=1}^{3}" in ner


def test_the_lecture_notebooks_are_run_by_ci_and_in_the_sites_navigation():
    names = [p.stem for p in run_all().all_notebooks()]
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for name, _ in DECKS.values():
        assert name in names, f"run_all does not run {name}"
        assert f"notebooks/{name}.ipynb" in nav, f"mkdocs.yml's nav has no page for {name}"


def test_the_gru_exercise_is_in_deck_001s_notebook_in_the_lecture_form():
    text = (NOTEBOOKS / "lecture_01_framework.py").read_text(encoding="utf-8")
    assert any("def gru_step_backward" in cell for cell in teaching.exercise_cells(text))
    assert 'update_gate="lecture"' in text and "reset_after=False" in text
