"""Recurrent layers: cells (one step of math), the runner (the time loop), and stacked/bidirectional layers."""

from .cell import Cell
from .layer import RecurrentLayer
from .rnn import RNN, ElmanCell
from .runner import Recurrence

__all__ = ["Cell", "ElmanCell", "RNN", "Recurrence", "RecurrentLayer"]
