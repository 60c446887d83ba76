"""The cell catalogue: every recurrent layer is in it, it names only real classes, and every list of cells in
rnnkit is derived from it."""

import inspect
import sys

import click
import pytest

from rnnkit.errors import ConfigError
from rnnkit.models import ENCODER_CELLS, RECURRENT_LAYERS, ModelConfig
from rnnkit.models.configs import option_fields
from rnnkit.models.seq2seq import ENCODERS
from rnnkit.models.sequence import CELL_DEFAULTS, REGULARIZERS
from rnnkit.recurrent import catalog
from rnnkit.recurrent.cell import Cell
from rnnkit.recurrent.layer import RecurrentLayer
from rnnkit.training import bench
from rnnkit.training.gradcheck_suite import cases


def _concrete_layers(cls=RecurrentLayer):
    found = set()
    for sub in cls.__subclasses__():
        if not sub.__name__.startswith("_") and sub.__module__.startswith("rnnkit."):
            found.add(sub)
        found |= _concrete_layers(sub)
    return found


def test_every_recurrent_layer_class_is_in_the_catalogue():
    catalog.entries()
    listed = {e.layer for e in catalog.entries()}
    assert _concrete_layers() <= listed, sorted(c.__name__ for c in _concrete_layers() - listed)


def test_the_catalogue_names_only_layer_classes_that_exist_with_a_cell_class():
    for e in catalog.entries():
        assert getattr(sys.modules[e.layer.__module__], e.layer.__qualname__) is e.layer
        assert issubclass(e.layer, RecurrentLayer) and issubclass(e.cell_class, Cell)
        assert e.layer.__dict__["catalog"].name == e.name


def test_every_declared_option_is_a_model_option_and_a_constructor_parameter():
    fields = set(ModelConfig.__dataclass_fields__)
    for e in catalog.entries():
        parameters = {name for cls in (e.layer, e.cell_class) for name in inspect.signature(cls.__init__).parameters}
        for name in e.options:
            assert name in fields, f"{e.name}: {name} is not a ModelConfig field"
            assert name in parameters or name in REGULARIZERS or name == "zoneout_cell", (e.name, name)


def test_model_option_cells_are_the_cells_that_declare_the_option():
    declared = {name for e in catalog.entries() for name in e.options}
    for f in option_fields(ModelConfig):
        cells = f.metadata["cells"]
        if cells is not None and f.name not in ("dropout_recurrent", "weight_drop"):
            # a flag that sets a declared option under another name (--cell-file: definition) has its cells
            assert any(set(cells) == set(catalog.names(option=o)) for o in {f.name} | declared), f.name
    assert set(ModelConfig.__dataclass_fields__["dropout_recurrent"].metadata["cells"]) == \
        {e.name for e in catalog.entries() if e.cell_class.__dict__.get("supports_recurrent_masks")}


def test_the_model_lists_are_derived_from_the_catalogue():
    assert RECURRENT_LAYERS == {e.name: e.layer for e in catalog.entries()}
    assert set(ENCODER_CELLS) == {e.name for e in catalog.entries() if e.encoder} and "jordan" not in ENCODER_CELLS
    assert CELL_DEFAULTS == {"jordan": {"num_layers": 1}, "indrnn": {"nonlinearity": "relu"}}
    assert set(ENCODERS) == {"rnn", "lstm", "gru"}
    assert all(ENCODERS[name] == (catalog.entry(name).layer, catalog.entry(name).step_module) for name in ENCODERS)
    assert bench.GATES == {"rnn": 1, "lstm": 4, "gru": 3}


def test_the_cli_cell_choices_are_the_catalogue_names():
    from rnnkit.cli.study import diagnose, experiment

    def choices(command):
        (option,) = [p for p in command.params if p.name == "cells"]
        assert isinstance(option.type, click.Choice)
        return tuple(option.type.choices)

    assert choices(diagnose) == catalog.names("encoder")
    assert choices(experiment) == ("rnn-nobptt",) + catalog.names("encoder")
    (cell,) = [f for f in option_fields(ModelConfig) if f.name == "cell"]
    assert tuple(cell.metadata["choices"]) == catalog.names()


def test_the_gradcheck_suite_checks_every_variant_of_every_cell():
    import numpy as np

    names = {name for name, *_ in cases(np.random.default_rng(0))}
    for e in catalog.entries():
        for variant in e.variants:
            assert f"{e.variant_label(variant)} (bidirectional, lengths)" in names


def test_an_unknown_cell_or_capability_is_a_one_line_error_naming_the_choices():
    with pytest.raises(ConfigError, match=r"cell must be one of rnn, lstm, gru.*, got 'elman'"):
        catalog.entry("elman")
    with pytest.raises(ConfigError, match="capability must be one of encoder, recurrent_masks"):
        catalog.names("fast")


def test_two_layer_classes_cannot_declare_the_same_cell_name():
    from rnnkit.recurrent.rnn import RNN

    with pytest.raises(TypeError, match="--cell 'rnn' is declared by RNN and Impostor"):
        type("Impostor", (RNN,), {"catalog": catalog.CellEntry("rnn"), "__module__": __name__})
