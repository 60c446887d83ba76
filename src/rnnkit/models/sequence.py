"""`SequenceModel`: encoder → recurrent layer → (dropout) → linear head, built from a JSON-able `ModelConfig`.

This is the model the trainer and the command line use for the memory, Reber and text tasks:

    tokens (B, T) ──OneHot/Embedding──▶ (B, T, E) ──recurrent layer──▶ (B, T, D·H) ──Dropout──▶ ──Linear──▶ (B, T, O)
    reals  (B, T, I) ─────────────────────────────┘

(recurrent layer: one of `RECURRENT_LAYERS`, the layers of the cell catalogue `rnnkit.recurrent.catalog`; a Jordan
network is handled below)

A Jordan network has no separate head: its own output layer (identity activation: logits or regression values)
is the model's output and is what it feeds back. Per-step outputs are produced for every position; many-to-one
tasks mask the loss to the last step.

Its objective comes from the task (``loss``: ``"ce"``, ``"mse"`` or ``"bce"``, see `LOSSES`): `train_batch` puts
the loss on the masked steps of one truncated-BPTT window, from the state carried in, and backpropagates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import ConfigError
from ..layers import Dropout, Embedding, Linear, OneHot
from ..losses import LOSSES
from ..module import Module, as_rng, check_dtype, inference
from ..recurrent import Jordan, catalog
from .configs import JSONConfig, check_option_ranges, check_sizes, flag, option, option_fields
from .protocol import layers_carry_layout

# Derived from the cell catalogue (`rnnkit.recurrent.catalog`): each fact is declared once, on the layer class.
#: cell name → recurrent layer class (a layer runs a cell over time; these are not cells)
RECURRENT_LAYERS = catalog.layers()
#: cells that can encode a sequence for another model (a Jordan net feeds back its own output instead)
ENCODER_CELLS = catalog.names("encoder")
#: option values that follow from the cell (applied where the user did not set the option)
CELL_DEFAULTS = {e.name: dict(e.defaults) for e in catalog.entries() if e.defaults}
#: the options of the recurrent layer's `regularize`, not of its constructor
REGULARIZERS = ("dropout_input", "dropout_recurrent", "zoneout", "zoneout_cell", "weight_drop")


def check_encoder_cell(cell: str, user: str = "the encoder") -> None:
    """One-line error unless ``cell`` can serve as a recurrent encoder."""
    if cell not in ENCODER_CELLS:
        raise ConfigError(f"{user} needs a recurrent encoder cell: one of {', '.join(ENCODER_CELLS)}, got {cell!r}")


@dataclass
class ModelConfig(JSONConfig):
    """Everything needed to rebuild a `SequenceModel` (stored in checkpoints); each `option` field is a flag of
    ``rnnkit train``."""

    kind: ClassVar[str] = "sequence"  # the model kind of the checkpoint registry (stored as meta["kind"])
    input_size: int  # features of real inputs, or vocabulary size of token inputs
    output_size: int
    tokens: bool = False  # integer token inputs (one-hot or embedded)
    embedding_size: int = option(0, "Token embedding size; 0 feeds one-hot characters as char-rnn does.", low=0)
    cell: str = option("rnn", "Recurrent cell.", choices=catalog.names())
    hidden_size: int = option(128, "Units per layer.", flags=("--rnn-size",), low=1)
    num_layers: int = option(1, "Stacked layers.", low=1)
    dropout: float = option(0.0, "Dropout between layers and before the head.", low=0, high=1, high_open=True)
    bidirectional: bool = False
    nonlinearity: str = option("tanh", "RNN/IndRNN: the activation (--cell indrnn: relu unless given).",
                               choices=("tanh", "relu"), cells=catalog.names(option="nonlinearity"))
    forget_bias: float | None = option(None, "LSTM/Mogrifier/LN-LSTM: initial forget-gate bias (char-rnn and Keras "
                                       "use 1; None: PyTorch's initialisation).",
                                       cells=catalog.names(option="forget_bias"), cli_default=1.0)
    proj_size: int = option(0, "LSTM/Mogrifier: project h to this size (PyTorch's proj_size).", low=0,
                            cells=catalog.names(option="proj_size"))
    peephole: bool = option(False, "LSTM/Mogrifier: peephole connections.",
                            cells=catalog.names(option="peephole"))
    reset_after: bool = option(True, "GRU: reset gate after (PyTorch) or before (Cho 2014) the recurrent matmul.",
                               negative="--reset-before", cells=catalog.names(option="reset_after"))
    depth: int = option(3, "RHN: micro-cells per step.", low=1, cells=catalog.names(option="depth"))
    coupled: bool = option(True, "RHN: carry gate 1 − transform gate (coupled) or its own gate.",
                           negative="--uncoupled", cells=catalog.names(option="coupled"))
    transform_bias: float = option(-2.0, "RHN: initial transform-gate bias.",
                                   cells=catalog.names(option="transform_bias"))
    rounds: int = option(5, "Mogrifier: gating rounds (0 = LSTM).", low=0, cells=catalog.names(option="rounds"))
    rank: int | None = option(None, "Mogrifier: low-rank Q and R.", low=1, cells=catalog.names(option="rank"))
    recurrent_max: float | None = option(None, "IndRNN: keep each recurrent weight in [-this, this] (clipped after "
                                         "every update; the paper's 2**(1/T) for relu over T steps).", low=0,
                                         low_open=True, cells=catalog.names(option="recurrent_max"))
    mode: str = option("sequential", "minGRU/minLSTM: a step per time step, or the log-space parallel scan (same "
                       "model).", choices=("sequential", "scan"), cells=catalog.names(option="mode"))
    dropout_input: float = option(0.0, "Variational dropout on each layer's input features: one mask per sequence, "
                                  "shared by all steps (Gal & Ghahramani 2016).", low=0, high=1, high_open=True)
    dropout_recurrent: float = option(0.0, "Variational dropout on h_{t-1} where it enters the recurrent matmuls, "
                                      "one mask per sequence.", low=0, high=1, high_open=True,
                                      cells=catalog.names("recurrent_masks"))
    zoneout: float = option(0.0, "Zoneout: each state unit keeps its previous value with this probability at each "
                            "step (Krueger et al. 2017; evaluation uses the expectation).", low=0, high=1,
                            high_open=True)
    zoneout_cell: float | None = option(None, "LSTM: zoneout rate of the cell state c (default: --zoneout).", low=0,
                                        high=1, high_open=True, cells=catalog.names(option="zoneout_cell"))
    weight_drop: float = option(0.0, "DropConnect on W_hh, one mask per batch (Merity et al. 2017).", low=0, high=1,
                                high_open=True, cells=catalog.names("recurrent_masks"))
    detach_state: bool = option(False, "Train as Elman (1990): no error is propagated back through time (the "
                                "previous state is a constant input to each step).")
    dtype: str = option("float32", "Floating-point type of parameters and activations.",
                        choices=("float32", "float64"))
    cell_file: str | None = option(None, "A cell defined by its equations, FILE.py:NAME (rnnkit.define; implies "
                                   "--cell defined); checkpoints keep the definition's text, not the file.",
                                   cells=catalog.names(option="definition"))
    definition: dict | None = None  # --cell defined: the definition's text (`rnnkit.define.Definition.to_dict`)

    def __post_init__(self):
        if self.cell not in RECURRENT_LAYERS:
            raise ConfigError(f"cell must be one of {sorted(RECURRENT_LAYERS)}, got {self.cell!r}")
        check_dtype(self.dtype)
        check_sizes(self, "input_size", "output_size", "hidden_size", "num_layers", "depth")
        check_sizes(self, "embedding_size", "proj_size", "rounds", low=0)
        check_option_ranges(self)
        if self.cell == "jordan" and (self.num_layers != 1 or self.bidirectional):
            raise ConfigError("a Jordan network feeds its output back: use one unidirectional layer (--num-layers 1)")
        if self.cell == "defined":  # parsed and checked now (never run: a definition is text)
            from ..define.cells import checked_definition

            self.definition = checked_definition(self.definition)

    @classmethod
    def for_task(cls, task, **options) -> ModelConfig:
        """The config of a model for ``task`` (its input/output sizes and token inputs) with ``options``."""
        return cls(input_size=task.input_size, output_size=task.output_size, tokens=task.tokens, **options)

    @classmethod
    def check_cell(cls, cell: str, given: set[str] = frozenset()) -> None:
        """`ConfigError` if an option in ``given`` (field names the user set) belongs to other cells than ``cell``."""
        for f in option_fields(cls):
            cells = f.metadata["cells"]
            if f.name in given and cells is not None and cell not in cells:
                names = flag(f.name) + (f"/{f.metadata['negative']}" if f.metadata["negative"] else "")
                raise ConfigError(f"{names} applies to --cell {' or '.join(cells)}, not to --cell {cell}")

    def parameter_count(self) -> int:
        """The model's number of parameters, computed without building it (`rnnkit.models.footprint`)."""
        rnn_input = (self.embedding_size or self.input_size) if self.tokens else self.input_size
        encoder = self.input_size * self.embedding_size if self.tokens else 0
        if self.cell == "jordan":
            return encoder + Jordan.parameter_count(rnn_input, self.hidden_size, output_size=self.output_size)
        layer = RECURRENT_LAYERS[self.cell]
        options = self.cell_options()
        rnn = layer.parameter_count(rnn_input, self.hidden_size, self.num_layers, self.bidirectional, **options)
        features = (2 if self.bidirectional else 1) * layer.cell_class.output_width(self.hidden_size, **options)
        return encoder + rnn + (features + 1) * self.output_size

    def cell_options(self) -> dict:
        """The options of the recurrent layer class that belong to this cell type (from the fields' ``cells``)."""
        options = {f.name: getattr(self, f.name) for f in option_fields(type(self)) if f.metadata["cells"] is not None
                   and self.cell in f.metadata["cells"] and f.name not in REGULARIZERS + ("cell_file",)}
        if self.cell == "defined":
            options["definition"] = self.definition
        return options

    def regularization(self) -> dict:
        """The arguments of the recurrent layer's `regularize` (an LSTM's zoneout as (z_h, z_c))."""
        zoneout = self.zoneout
        if self.zoneout_cell is not None and self.cell in catalog.names(option="zoneout_cell"):
            zoneout = (self.zoneout, self.zoneout_cell)
        return {"dropout_input": self.dropout_input, "dropout_recurrent": self.dropout_recurrent,
                "zoneout": zoneout, "weight_drop": self.weight_drop}


class SequenceModel(Module):
    """forward(x, state=None, lengths=None) → (outputs (B, T, O), final state); backward(δoutputs) → δx or None.

    ``loss`` (``"ce"``, ``"mse"`` or ``"bce"``; or given later by `bind_task`) is the objective of `train_batch`
    and `evaluate`.
    """

    def __init__(self, config: ModelConfig, rng=None, loss: str | None = None):
        super().__init__()
        rng = as_rng(rng)
        self.config = config
        dtype = np.dtype(config.dtype)
        if config.tokens:
            if config.embedding_size:
                self.encoder = Embedding(config.input_size, config.embedding_size, dtype=dtype, rng=rng)
            else:
                self.encoder = OneHot(config.input_size, dtype=dtype)
            rnn_input = config.embedding_size or config.input_size
        else:
            self.encoder = None
            rnn_input = config.input_size
        if config.cell == "jordan":
            self.rnn = Jordan(rnn_input, config.hidden_size, config.output_size, output_activation="identity",
                              dtype=dtype, rng=rng)
            self.drop, self.head = None, None
        else:
            self.rnn = RECURRENT_LAYERS[config.cell](
                rnn_input, config.hidden_size, num_layers=config.num_layers, dropout=config.dropout,
                bidirectional=config.bidirectional, dtype=dtype, rng=rng, **config.cell_options())
            self.drop = Dropout(config.dropout, rng=rng) if config.dropout else None
            self.head = Linear(self.rnn.output_size, config.output_size, dtype=dtype, rng=rng)
        self.rnn.detach_state = config.detach_state
        self.rnn.regularize(**config.regularization())
        self.loss_name, self.objective = None, None  # the loss's name (a key of LOSSES) and the loss itself
        self.eval_chunk = 0  # evaluate streams in windows of this many steps, carrying the state (0: whole)
        if loss is not None:
            self.use_loss(loss)

    def use_loss(self, name: str) -> None:
        """Make ``name`` (a key of `LOSSES`) the training and evaluation objective."""
        if name not in LOSSES:
            raise ConfigError(f"loss must be one of {sorted(LOSSES)}, got {name!r}")
        self.loss_name, self.objective = name, LOSSES[name]()

    def forward(self, x, state=None, lengths=None):
        h = self.encoder.forward(x) if self.encoder is not None else x
        h, final = self.rnn.forward(h, state, lengths=lengths)
        if self.head is None:
            return h, final
        if self.drop is not None:
            h = self.drop.forward(h)
        return self.head.forward(h), final

    def backward(self, dout):
        dh = dout if self.head is None else self.head.backward(dout)
        if self.drop is not None:
            dh = self.drop.backward(dh)
        dx, _ = self.rnn.backward(dh)
        return self.encoder.backward(dx) if self.encoder is not None else dx

    # -- the TrainableModel protocol ------------------------------------------------------------------
    def bind_task(self, task) -> None:
        """Take the objective from ``task``: its loss, and for a stream its evaluation window ``seq_length``."""
        if task.stream and self.config.bidirectional:
            raise ConfigError("a bidirectional model cannot be trained on a stream with truncated BPTT; "
                              "use a unidirectional model for the text task")
        self.use_loss(task.loss)
        self.eval_chunk = task.seq_length if task.stream else 0

    def train_batch(self, batch, window: tuple[int, int, int] | None = None, state=None) -> float:
        """Forward and backward over x[:, start:end] from ``state``, with the loss on steps [loss_start, end).

        ``window`` = (start, end, loss_start) (see `rnnkit.training.trainer.tbptt_windows`; None: the whole
        batch). Returns the loss; when it is not finite, nothing is backpropagated (the caller discards the
        saved forward).
        """
        steps = batch.x.shape[1]
        start, end, loss_start = window or (0, steps, 0)
        lengths = batch.lengths
        if lengths is not None and (start, end) != (0, steps):
            raise ConfigError("truncated BPTT (--k1) cannot be combined with a variable-length task")
        loss = self._objective()
        self.train()
        out, _ = self.forward(self._inputs(batch.x[:, start:end]), state, lengths=lengths)
        mask = batch.mask[:, start:end].copy()
        mask[:, :loss_start - start] = False
        value = loss.forward(out, batch.target[:, start:end], mask=mask)
        if np.isfinite(value):
            self.backward(loss.backward())
        return value

    def state_at(self, k: int):
        """The state after step k of the last `train_batch` window (carried, detached, into the next window)."""
        return self.rnn.state_at(k)

    def carry_layout(self) -> list[tuple[int, int]]:
        """(rows, size) of each component of the state carried between windows: its recurrent layer's."""
        return layers_carry_layout([self.rnn])

    def evaluate(self, task) -> dict[str, float]:
        """``val_loss``: the mean loss per counted position of ``task.val`` (eval mode, nothing saved); streams are
        read in windows of ``eval_chunk`` steps with the state carried across."""
        total, count = 0.0, 0.0
        summed = LOSSES[self._objective_name()](reduction="sum")
        with inference(self):
            for batch in task.val:
                t, c = self._batch_loss(batch, summed)
                total, count = total + t, count + c
        return {"val_loss": total / max(count, 1.0)}

    def _batch_loss(self, batch, summed) -> tuple[float, float]:
        steps = batch.x.shape[1]
        chunk = self.eval_chunk or steps
        total, count = 0.0, 0.0
        for rows in np.array_split(np.arange(batch.x.shape[0]), max(1, batch.x.shape[0] // 256)):
            state = None
            lengths = None if batch.lengths is None else batch.lengths[rows]
            for start in range(0, steps, chunk):
                sl = slice(start, start + chunk)
                out, state = self.forward(self._inputs(batch.x[rows, sl]), state, lengths=lengths)
                mask = batch.mask[rows, sl]
                total += summed.forward(out, batch.target[rows, sl], mask=mask)
                count += mask.sum()
        return total, count

    def _objective_name(self) -> str:
        if self.loss_name is None:
            raise ConfigError("this SequenceModel has no loss: give loss='ce', 'mse' or 'bce' (or bind_task(task))")
        return self.loss_name

    def _objective(self):
        self._objective_name()
        return self.objective

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        """Real-valued inputs in the model's dtype (token ids unchanged)."""
        return x.astype(self.dtype) if x.dtype.kind == "f" and x.dtype != self.dtype else x
