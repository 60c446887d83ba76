"""The `Cell` protocol is apart from the gated base: the protocol declares and implements nothing, every cell of
the catalogue implements all of it, and no cell changes a class fact per instance."""

import inspect

import numpy as np
import pytest

from rnnkit.errors import ConfigError
from rnnkit.recurrent import catalog
from rnnkit.recurrent.cell import Cell
from rnnkit.recurrent.gated import GatedCell
from rnnkit.recurrent.gru import GRUStep
from rnnkit.recurrent.indrnn import IndRNNStep
from rnnkit.recurrent.minimal import MinimalStep
from rnnkit.recurrent.rhn import RHN, RHNStep, UncoupledRHNStep

CLASS_FACTS = ("num_gates", "state_names", "gate_names", "fold_hidden_bias", "coupled")
VARIANTS = {entry.variant_label(variant): (entry.layer, options)
            for entry in catalog.entries() for variant, options in entry.variants.items()}


def test_every_method_and_property_of_the_protocol_is_abstract():
    members = {name: value for name, value in vars(Cell).items() if not name.startswith("__")}
    code = {name: v for name, v in members.items() if callable(v) or isinstance(v, (property, classmethod))}
    assert code and all(getattr(v, "__isabstractmethod__", False) for v in code.values()), \
        sorted(n for n, v in code.items() if not getattr(v, "__isabstractmethod__", False))
    assert set(Cell.__abstractmethods__) == set(code)


def test_the_protocol_declares_its_class_facts_without_values():
    for name in ("state_names", "gate_names", "num_gates"):
        assert name in Cell.__annotations__ and name not in vars(Cell)


def test_the_protocol_cannot_be_instantiated():
    with pytest.raises(TypeError, match="abstract"):
        Cell()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_catalogue_cell_implements_the_whole_protocol_and_keeps_class_facts_on_its_class(name):
    layer_class, options = VARIANTS[name]
    layer = layer_class(3, 4, dtype=np.float64, rng=0, **options)
    for cell in layer.cells:
        assert isinstance(cell, Cell) and not inspect.isabstract(type(cell))
        overridden = set(vars(cell)) & set(CLASS_FACTS)
        assert not overridden, f"{name}: {sorted(overridden)} set per instance"


def test_cells_of_another_layout_implement_the_protocol_without_the_gated_base():
    assert not issubclass(IndRNNStep, GatedCell) and not issubclass(MinimalStep, GatedCell)
    assert issubclass(IndRNNStep, Cell) and issubclass(MinimalStep, Cell)


def test_an_uncoupled_rhn_runs_the_uncoupled_step_class_with_three_gates():
    coupled, uncoupled = RHN(3, 4, depth=2).cells[0], RHN(3, 4, depth=2, coupled=False).cells[0]
    assert type(coupled) is RHNStep and coupled.num_gates == 2 and coupled.gate_names == ("h", "transform")
    assert type(uncoupled) is UncoupledRHNStep and uncoupled.num_gates == 3
    assert uncoupled.gate_names == ("h", "transform", "carry")
    assert uncoupled.weight_hh.shape == (2 * 3 * 4, 4)


def test_an_rhn_step_class_refuses_the_other_coupling():
    with pytest.raises(ConfigError, match="RHNStep has coupled=True, got coupled=False"):
        RHNStep(3, 4, coupled=False)


def test_the_gru_folds_the_hidden_bias_into_the_projection_only_with_the_reset_before_the_matmul():
    assert GRUStep(3, 4, reset_after=False).fold_hidden_bias
    assert not GRUStep(3, 4, reset_after=True).fold_hidden_bias


def test_a_gated_cell_without_gate_names_reports_no_gate_activations():
    from rnnkit.recurrent import RNN

    layer = RNN(3, 4, dtype=np.float64, rng=0)
    layer.forward(np.zeros((2, 5, 3)))
    assert layer.trace(layer=0).gates == {}
