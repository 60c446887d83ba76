"""Recurrent layers: cells (one step of math), the runner (the time loop), and stacked/bidirectional layers."""

from .cell import Cell, Workspace
from .elman import Elman
from .gru import GRU, GRUStep
from .jordan import Jordan, JordanStep
from .layer import RecurrentLayer, TraceView
from .lstm import LSTM, LSTMStep
from .mogrifier import MogrifierLSTM, MogrifierStep
from .rhn import RHN, RHNStep
from .rnn import RNN, ElmanStep
from .runner import Recurrence, Trace
from .step_cells import GRUCell, LSTMCell, RNNCell, StepCell

__all__ = [
    "GRU", "LSTM", "RNN", "Cell", "Elman", "ElmanStep", "GRUCell", "GRUStep", "Jordan", "JordanStep", "LSTMCell",
    "LSTMStep", "MogrifierLSTM", "MogrifierStep", "RHN", "RHNStep", "RNNCell", "Recurrence", "RecurrentLayer",
    "StepCell", "Trace", "TraceView", "Workspace",
]
