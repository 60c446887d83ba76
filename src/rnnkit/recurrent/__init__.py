"""Recurrent layers: cells (one step of math), the runner (the time loop), and stacked/bidirectional layers."""

from .cell import Cell, Workspace
from .elman import Elman, LSTMNet, RecurrentNet
from .gru import GRU, GRUStep
from .indrnn import IndRNN, IndRNNStep
from .jordan import Jordan, JordanStep
from .layer import RecurrentLayer, TraceView
from .lngru import LayerNormGRU, LayerNormGRUStep
from .lnlstm import LayerNormLSTM, LayerNormLSTMStep
from .lstm import LSTM, LSTMStep
from .minimal import MinGRU, MinGRUStep, MinLSTM, MinLSTMStep
from .mogrifier import MogrifierLSTM, MogrifierStep
from .rhn import RHN, RHNStep
from .rnn import RNN, ElmanStep
from .runner import Recurrence, Trace
from .scan import ScanRecurrence
from .step_cells import GRUCell, LSTMCell, RNNCell, StepCell

__all__ = [
    "GRU", "LSTM", "RNN", "Cell", "Elman", "ElmanStep", "GRUCell", "GRUStep", "Jordan", "JordanStep", "LSTMCell",
    "LSTMStep", "MogrifierLSTM", "MogrifierStep", "RHN", "RHNStep", "RNNCell", "Recurrence", "RecurrentLayer",
    "StepCell", "Trace", "TraceView", "Workspace", "IndRNN", "IndRNNStep", "MinGRU", "MinGRUStep", "MinLSTM",
    "MinLSTMStep", "ScanRecurrence", "LayerNormGRU", "LayerNormGRUStep", "LayerNormLSTM", "LayerNormLSTMStep",
    "LSTMNet", "RecurrentNet",
]
