"""Recurrent layers: cells (one step of math), the runner (the time loop), and stacked/bidirectional layers."""

# The three classic cells first: cells are listed (`catalog.entries()`, ``--cell`` choices) in the order their
# layer classes are defined.
from .rnn import RNN, RNNStep  # isort: skip
from .lstm import LSTM, LSTMStep  # isort: skip
from .gru import GRU, GRUStep  # isort: skip
from . import catalog
from .cell import Cell, Workspace
from .elman import Elman, LSTMNet, RecurrentNet
from .gated import GatedCell
from .indrnn import IndRNN, IndRNNStep
from .jordan import Jordan, JordanStep
from .layer import RecurrentLayer, TraceView
from .lngru import LayerNormGRU, LayerNormGRUStep
from .lnlstm import LayerNormLSTM, LayerNormLSTMStep
from .minimal import MinGRU, MinGRUStep, MinLSTM, MinLSTMStep
from .mogrifier import MogrifierLSTM, MogrifierStep
from .rhn import RHN, RHNStep
from .runner import Recurrence, Trace
from .scan import ScanRecurrence
from .step_cells import GRUCell, LSTMCell, RNNCell, StepCell

__all__ = [
    "GRU", "LSTM", "RNN", "Cell", "GatedCell", "Elman", "RNNStep", "GRUCell", "GRUStep", "Jordan", "JordanStep",
    "LSTMCell", "LSTMStep", "MogrifierLSTM", "MogrifierStep", "RHN", "RHNStep", "RNNCell", "Recurrence",
    "RecurrentLayer", "StepCell", "Trace", "TraceView", "Workspace", "IndRNN", "IndRNNStep", "MinGRU", "MinGRUStep",
    "MinLSTM", "MinLSTMStep", "ScanRecurrence", "LayerNormGRU", "LayerNormGRUStep", "LayerNormLSTM",
    "LayerNormLSTMStep", "catalog", "LSTMNet", "RecurrentNet",
]
