"""numba's inlining of ``inline="always"`` functions without its two copies of IR made for one call site.

Every loop entry is mostly inlined glue: the skeleton, the family's step, and the helpers they call
(`rnnkit.kernels.jit.GLUE`). For each call of such a function numba builds the callee's IR afresh
(``InlineWorker.run_untyped_passes``, which inlines the callee's own callees the same way), then ``inline_ir`` copies
that IR twice with ``copy.deepcopy``, block by block — once to mutate, once to return unmutated — and the caller of
``inline_function`` throws the second copy away. Each block's copy also copies the scope it points at, every
variable of the function with it, so the copies cost blocks × variables, at every level of the nesting: timed, 1.58
of an LSTM's 9.75 s first use and 3.00 of the Mogrifier's 15.32 s (numba 0.68.1). numba-cuda issue 688 reports the
same, and its pull request 689 skips these copies there.

`install` replaces ``InlineWorker.inline_function`` by one that marks the fresh IR's blocks as copying to
themselves while ``inline_ir`` runs, and unmarks them after: nothing else holds those blocks, so the copies are the
blocks themselves. IR that numba keeps and inlines again (``@overload(inline="always")``, which it copies through
``inline_ir`` from another place) is never marked and is copied as before. The machine code is the same either way
(``tests/test_inlining.py``; the LSTM's, the GRU's and the Mogrifier's loop entries compared too).

The replacement is numba's for the whole process, for every numba function compiled after rnnkit's kernels are
imported, not only rnnkit's (`NUMBA_INLINE_FUNCTION` keeps numba's own; ``RNNKIT_NUMBA_INLINING=numba`` leaves it
in place). What differs for them: the IR
``inline_function`` returns as the callee's unmutated IR is the mutated one (numba's one caller,
``InlineInlinables``, throws it away), and a ``with objmode`` block inside an inlined function, lifted into a
function of its own that shares the callee's scope, sees the inlined names added to that scope (numba's copies kept
them apart), which numbers its temporaries differently. The replacement relies on ``inline_ir`` copying each block
with ``copy.deepcopy`` and nothing more, and on ``run_untyped_passes`` building the IR anew for each call, as numba
0.59 to 0.68 do (numba's main branch of August 2026 too; 0.58 also copied each statement); other numba versions
keep numba's own function (`APPLIES`), until they are read.
"""
from __future__ import annotations

import os

import numba
from numba.core import inline_closurecall, ir

#: the numba releases (``numba.version_info.short``, from, up to but not including) read for `install`: their
#: ``inline_ir`` copies the callee's blocks one by one with ``copy.deepcopy`` and nothing more
APPLIES = ((0, 59), (0, 69))
#: numba's own ``InlineWorker.inline_function``, as it was before `install`
NUMBA_INLINE_FUNCTION = inline_closurecall.InlineWorker.inline_function


class _FreshBlock(ir.Block):
    """A block of IR built for one call site: a deep copy of it is the block itself."""

    def __deepcopy__(self, memo):
        return self


def inline_function(self, caller_ir, block, i, function, arg_typs=None):
    """numba's ``InlineWorker.inline_function`` — the callee's IR built afresh, then inlined at statement ``i`` of
    ``block`` — with that IR's blocks marked as `_FreshBlock` while ``inline_ir`` copies and splices them, and of
    their own class again after (whatever ``inline_ir`` raised). Of what it returns, the callee's IR "unmutated" is
    the mutated one here (the module's notes)."""
    callee_ir = self.run_untyped_passes(function)
    blocks = [(fresh, fresh.__class__) for fresh in callee_ir.blocks.values()]
    try:
        for fresh, _ in blocks:
            fresh.__class__ = _FreshBlock
        return self.inline_ir(caller_ir, block, i, callee_ir, function.__code__.co_freevars, arg_typs=arg_typs)
    finally:
        for fresh, kind in blocks:
            fresh.__class__ = kind


def applies(version: tuple[int, int] = numba.version_info.short) -> bool:
    """Whether numba ``version`` (major, minor) is one `install` replaces the function of."""
    first, past = APPLIES
    return first <= tuple(version) < past


def install() -> None:
    """Put `inline_function` in the place of numba's, where `applies` and unless ``RNNKIT_NUMBA_INLINING=numba``
    (once; before the first kernel compiles: `rnnkit.kernels.jit`)."""
    if applies() and os.environ.get("RNNKIT_NUMBA_INLINING", "").strip().lower() != "numba":
        inline_closurecall.InlineWorker.inline_function = inline_function


def installed() -> bool:
    """Whether numba inlines through `inline_function` in this process."""
    return inline_closurecall.InlineWorker.inline_function is inline_function
