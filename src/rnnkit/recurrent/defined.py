"""``--cell defined``: a cell defined by its forward equations (`rnnkit.define`), registered in the catalogue here
so that the catalogue's one import of `rnnkit.recurrent`'s modules finds it. SymPy is imported only when a
definition is first derived."""

from ..define.cells import DefinedRNN

__all__ = ["DefinedRNN"]
