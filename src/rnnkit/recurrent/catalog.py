"""The cell catalogue: every fact about a `--cell` choice, declared once on its layer class and collected here.

A recurrent layer class declares its entry in its own body::

    class LSTM(RecurrentLayer):
        cell_class = LSTMStep
        catalog = CellEntry("lstm", options=("proj_size", "peephole", "forget_bias", "zoneout_cell"),
                            torch_name="LSTM", variants={"": {}, "peephole": {"peephole": True}})

and `RecurrentLayer.__init_subclass__` registers it. Every list of cells elsewhere (the model options and their
``cells``, the ``--cell`` choices, the seq2seq encoders, the benchmark's cells, the gradcheck suite, the kernel
tests) is derived from `entries()`, so adding a cell means adding its module (and its tests) and nothing else:
the modules of `rnnkit.recurrent` are imported, and so registered, the first time the catalogue is read.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ..errors import ConfigError

#: the capabilities `names(capability=...)` knows
CAPABILITIES = ("encoder", "recurrent_masks", "torch", "step_module")


@dataclass(frozen=True)
class CellEntry:
    """What the rest of rnnkit needs to know about one ``--cell`` choice.

    ``name``: the ``--cell`` value; ``options``: the `ModelConfig` options that apply to it (parameters of the
    layer's constructor, or ``zoneout_cell``); ``encoder``: whether its output can encode a sequence for another
    model (a Jordan network feeds back its own output instead); ``defaults``: option values that follow from the
    cell where the user gave none; ``torch_name``: the ``torch.nn`` class with the same parameters and function
    (parity, the benchmark), or None; ``variants``: named constructor options worth checking separately (the
    gradcheck suite and the compiled-kernel tests run each; ``""`` names the defaults). ``layer`` is filled in
    by the registration: the layer class that declared the entry."""

    name: str
    options: tuple[str, ...] = ()
    encoder: bool = True
    defaults: Mapping = field(default_factory=dict)
    torch_name: str | None = None
    variants: Mapping = field(default_factory=lambda: {"": {}})
    layer: type | None = None

    @property
    def cell_class(self) -> type:
        """The step class (`rnnkit.recurrent.cell.Cell`) that the layer runs over time."""
        return self.layer.cell_class

    @property
    def recurrent_masks(self) -> bool:
        """Whether the cell takes recurrent dropout and weight drop (declared once, on the cell class)."""
        return bool(self.cell_class.__dict__.get("supports_recurrent_masks", False))

    @property
    def step_module(self) -> type | None:
        """The one-step `StepCell` module of this cell (RNNCell, LSTMCell, GRUCell), or None."""
        from .step_cells import StepCell

        found = [c for c in _all_subclasses(StepCell) if c.__dict__.get("cell_class") is self.cell_class]
        return found[0] if found else None

    @property
    def torch(self) -> bool:
        return self.torch_name is not None

    def has(self, capability: str) -> bool:
        if capability not in CAPABILITIES:
            raise ConfigError(f"capability must be one of {', '.join(CAPABILITIES)}, got {capability!r}")
        return bool(getattr(self, capability))

    def variant_label(self, variant: str) -> str:
        """``lstm`` for the defaults, ``lstm-peephole`` for the variant named ``peephole``."""
        return f"{self.name}-{variant}" if variant else self.name


_REGISTRY: dict[str, CellEntry] = {}
_loaded = False


def register(layer: type) -> None:
    """Record ``layer``'s own ``catalog`` entry (called by `RecurrentLayer.__init_subclass__`)."""
    entry = layer.__dict__.get("catalog")
    if entry is None:
        return
    if not isinstance(entry, CellEntry):
        raise TypeError(f"{layer.__name__}.catalog must be a CellEntry, got {type(entry).__name__}")
    known = _REGISTRY.get(entry.name)
    if known is not None and known.layer.__qualname__ != layer.__qualname__:
        raise TypeError(f"--cell {entry.name!r} is declared by {known.layer.__name__} and {layer.__name__}")
    _REGISTRY[entry.name] = replace(entry, layer=layer, defaults=MappingProxyType(dict(entry.defaults)),
                                    variants=MappingProxyType(dict(entry.variants)))


def _load() -> None:
    """Import every module of `rnnkit.recurrent` once, so that every layer class has registered its entry."""
    global _loaded
    if _loaded:
        return
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{module.name}")
    _loaded = True


def _all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub] + _all_subclasses(sub)
    return found


def entries() -> tuple[CellEntry, ...]:
    """Every entry, in the order the layer classes were defined."""
    _load()
    return tuple(_REGISTRY.values())


def entry(name: str) -> CellEntry:
    """The entry of ``--cell name``; a one-line `ConfigError` naming the choices for an unknown name."""
    _load()
    if name not in _REGISTRY:
        raise ConfigError(f"cell must be one of {', '.join(_REGISTRY)}, got {name!r}")
    return _REGISTRY[name]


def names(capability: str | None = None, option: str | None = None) -> tuple[str, ...]:
    """The ``--cell`` names, of the cells with ``capability`` (see `CAPABILITIES`) and/or taking ``option``."""
    return tuple(e.name for e in entries()
                 if (capability is None or e.has(capability)) and (option is None or option in e.options))


def layers() -> dict[str, type]:
    """``--cell`` name → recurrent layer class."""
    return {e.name: e.layer for e in entries()}
