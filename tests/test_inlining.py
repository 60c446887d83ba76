"""numba's inlining of ``inline="always"`` functions without copies of the callee's IR (`rnnkit.kernels.inlining`):
in place on the numba versions it names, no block of a callee built for one call site copied, every block a plain
one again afterwards, and the same machine code and results as numba's own inlining."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys

import numpy as np
import pytest

numba = pytest.importorskip("numba", reason="numba is not installed: no compiled kernels to inline")
from numba.core import inline_closurecall, ir  # noqa: E402

from rnnkit.kernels import inlining  # noqa: E402
from rnnkit.kernels.jit import GLUE  # noqa: E402

SCALE = 3.0
REPLACED = pytest.mark.skipif(not inlining.applies(), reason="numba's own inlining on this numba version")


@numba.njit(**GLUE)
def _scaled(value, scale):
    if scale is None:
        return value
    return value * scale


@numba.njit(**GLUE)
def _row_sum(row, scale):
    total = row[0] * 0.0
    for j in range(row.shape[0]):
        total += _scaled(row[j], scale)
    return total


def _rows(x, out, scale):
    """Two levels of inlined callees, one of them inlined at two call sites, a loop and a branch on None."""
    for b in range(x.shape[0]):
        out[b] = _row_sum(x[b], scale) + _row_sum(x[b], None) * SCALE


def _rows_in_python(x, scale):
    """What `_rows` computes, in Python floats, in the same order."""
    out = []
    for row in x.tolist():
        scaled, plain = 0.0, 0.0
        for value in row:
            scaled += value * scale
            plain += value
        out.append(scaled + plain * SCALE)
    return np.array(out)


def _compile(x, out):
    """A new dispatcher of `_rows`, compiled for (x, out, 2.0)."""
    rows = numba.njit(**{**GLUE, "inline": "never"})(_rows)
    rows(x, out, 2.0)
    return rows


def _assembly(rows) -> str:
    """The machine code of ``rows``' one compiled signature, symbol names left out (they hold a hash of the flags'
    set order and a per-dispatcher id), and with them the sizes of the strings that quote one."""
    (text,) = rows.inspect_asm().values()
    text = re.sub(r"_ZN\S+", "SYMBOL", text)
    return re.sub(r"(\.size\s.*SYMBOL.*?)\d+$", r"\1SIZE", text, flags=re.MULTILINE)


@pytest.fixture
def block_copies(monkeypatch):
    """Every deep copy of a block of numba IR made inside ``InlineWorker.inline_ir`` from now on, as (block, its
    copy)."""
    copies, inside, deepcopy, inline_ir = [], [], copy.deepcopy, inline_closurecall.InlineWorker.inline_ir

    def watching(value, memo=None):
        result = deepcopy(value, memo)
        if inside and isinstance(value, ir.Block):
            copies.append((value, result))
        return result

    def watched(self, *args, **kwargs):
        inside.append(True)
        try:
            return inline_ir(self, *args, **kwargs)
        finally:
            inside.pop()

    monkeypatch.setattr(copy, "deepcopy", watching)
    monkeypatch.setattr(inline_closurecall.InlineWorker, "inline_ir", watched)
    return copies


def test_install_puts_the_replacement_in_numbas_place_where_it_applies():
    wanted = os.environ.get("RNNKIT_NUMBA_INLINING", "").strip().lower() != "numba"
    assert inlining.installed() is (inlining.applies() and wanted)
    assert (inline_closurecall.InlineWorker.inline_function is inlining.inline_function) is inlining.installed()
    assert inlining.NUMBA_INLINE_FUNCTION is not inlining.inline_function


@pytest.mark.parametrize(("setting", "installed"), [("numba", False), ("rnnkit", True)])
def test_rnnkit_numba_inlining_numba_keeps_numbas_own_function(setting, installed):
    probe = "import rnnkit.kernels.jit; from rnnkit.kernels import inlining; print(inlining.installed())"
    env = {**os.environ, "RNNKIT_NUMBA_INLINING": setting}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(installed and inlining.applies())


def test_the_kernels_line_says_whether_numba_inlines_without_copies():
    from rnnkit import kernels

    with kernels.using("compiled"):
        assert ("inlining without copies of IR" in kernels.describe()) is inlining.installed()


@pytest.mark.parametrize(("version", "applies"), [((0, 58), False), ((0, 59), True), ((0, 68), True),
                                                  ((0, 69), False), ((1, 0), False)])
def test_applies_to_the_numba_versions_whose_inline_ir_copies_block_by_block(version, applies):
    assert inlining.applies(version) is applies


@REPLACED
def test_no_block_built_for_one_call_site_is_copied_and_each_is_plain_after(block_copies):
    _compile(np.ones((2, 3)), np.zeros(2))
    assert block_copies, "no callee was inlined"
    assert all(copied is block for block, copied in block_copies)
    assert all(type(block) is ir.Block for block, _ in block_copies)


def test_numbas_own_inlining_copies_the_blocks_the_replacement_does_not(block_copies, monkeypatch):
    """The check above can fail: with numba's function every block is copied."""
    monkeypatch.setattr(inline_closurecall.InlineWorker, "inline_function", inlining.NUMBA_INLINE_FUNCTION)
    _compile(np.ones((2, 3)), np.zeros(2))
    assert block_copies
    assert not any(copied is block for block, copied in block_copies)


def test_inlined_code_computes_what_python_does():
    x = np.random.default_rng(0).standard_normal((4, 5))
    out = np.zeros(4)
    rows = _compile(x, out)
    rows(x, out, 0.5)
    np.testing.assert_array_equal(out, _rows_in_python(x, 0.5))


@REPLACED
def test_the_machine_code_is_numbas_own(monkeypatch):
    x, out = np.ones((2, 3)), np.zeros(2)
    replaced = _assembly(_compile(x, out))
    monkeypatch.setattr(inline_closurecall.InlineWorker, "inline_function", inlining.NUMBA_INLINE_FUNCTION)
    assert _assembly(_compile(x, out)) == replaced
