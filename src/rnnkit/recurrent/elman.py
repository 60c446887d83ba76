"""The lecture composites: `Elman` (the simple recurrent network) and `LSTMNet` (an LSTM with its output layer), each
a recurrent layer + a trainable fully connected output layer + an output activation, with the exercise's interface.

    Elman:    h_t = tanh(h_{t-1} W_hh + x_t W_xh + b_h)       (row vectors; W_xh (I, H), W_hh (H, H))
              y_t = σ(h_t W_hy + b_y)                          (W_hy (H, O))
    LSTMNet:  the `LSTM` equations (gates i, f, g, o), then y_t = σ(h_t W_hy + b_y) — the exercise's "trainable fully
              connected layer to allow different output sizes"

They train by the library's BPTT (`RNN` / `LSTM`, `Linear`, an activation). The lecture's matrices are *views* of
the PyTorch-layout parameters — W_xh = weight_ih_l0ᵀ, W_hh = weight_hh_l0ᵀ, W_hy = out.weightᵀ, b_y = out.bias —
and can be assigned. PyTorch keeps two hidden biases where the lecture has one: b_h reads their sum, and assigning it
puts it in bias_ih_l0 and zeros bias_hh_l0 (under plain SGD the two biases together move at twice the lecture's rate
for b_h: both receive ∂L/∂b_h). The exercise's stacked matrix W_h over [x_t, h_{t-1}, 1] is ``weights`` (a copy;
assign to write) and its gradient ``gradient_weights``.

The exercise's memory switch is ``memorize`` (the library's name: ``stateful``): True keeps the last hidden state
and starts the next forward from it (truncated BPTT: gradients stop at the call boundary); ``reset_state()``
forgets it. Setting a name that is not an option (``net.memorise = True``) is a `ConfigError`.
"""

from __future__ import annotations

import numpy as np

from ..activations import Sigmoid, Softmax, Tanh
from ..errors import ConfigError, ShapeError, UsageError
from ..layers import Linear
from ..module import DEFAULT_DTYPE, Module, Parameter, as_rng, check_bool, check_choice
from ..optim import Optimizer
from ..sequences import TimeSeries
from .lstm import LSTM
from .rnn import RNN

#: the output activations ψ of y_t = ψ(h_t W_hy + b_y): sigmoid (the exercise's), tanh, softmax, identity
OUTPUT_ACTIVATIONS = {"sigmoid": Sigmoid, "tanh": Tanh, "softmax": Softmax, "identity": None}


class L2Regularizer:
    """R(W) = (α/2) ‖W‖²,  ∂R/∂W = α W."""

    def __init__(self, alpha: float):
        self.alpha = alpha

    def norm(self, w: np.ndarray) -> float:
        return 0.5 * self.alpha * float((w * w).sum())

    def gradient(self, w: np.ndarray) -> np.ndarray:
        return self.alpha * w


class L1Regularizer:
    """R(W) = α Σ |W|,  ∂R/∂W = α sign(W)."""

    def __init__(self, alpha: float):
        self.alpha = alpha

    def norm(self, w: np.ndarray) -> float:
        return self.alpha * float(np.abs(w).sum())

    def gradient(self, w: np.ndarray) -> np.ndarray:
        return self.alpha * np.sign(w)


def _steps_kept(lengths, shape) -> np.ndarray | None:
    """(B, T, 1) (or (T, 1) unbatched) 1/0: the steps within each sequence's length; None without lengths."""
    if lengths is None:
        return None
    steps = np.arange(shape[-2])
    if len(shape) == 2:
        return (steps < np.atleast_1d(lengths)[0])[:, None]
    return (steps[None, :] < np.asarray(lengths).reshape(-1, 1))[..., None]


def _last_index(lengths, shape) -> np.ndarray:
    """The index of each sequence's last step: lengths − 1, or T − 1 without lengths."""
    steps, batch = shape[-2], (1 if len(shape) == 2 else shape[0])
    return np.full(batch, steps - 1) if lengths is None else np.atleast_1d(np.asarray(lengths)) - 1


class RecurrentNet(Module):
    """A recurrent layer ``rnn``, the output layer ``out`` (`Linear`) and the output activation ``act``.

    ``forward(x, state0=None, lengths=None)`` → (y, final state). ``x``: (B, T, I), (T, I) or a `TimeSeries`
    (then y is one too). y is (B, T, O), zero past each sequence's end; with ``return_sequences=False`` it is only
    each sequence's last output, (B, O). ``backward(δy, δstate=None)`` → (δx, δ(initial state)); with an attached
    ``optimizer`` it then takes one optimizer step.
    """

    closed_attributes = True

    def __init__(self, rnn, output_size: int, output_activation: str, return_sequences: bool, dtype, rng):
        super().__init__()
        check_choice("output_activation", output_activation, tuple(OUTPUT_ACTIVATIONS))
        self.rnn = rnn
        self.out = Linear(rnn.output_size, output_size, dtype=dtype, rng=rng)
        activation = OUTPUT_ACTIVATIONS[output_activation]
        self.act = None if activation is None else activation()
        self._output_activation = output_activation
        self._return_sequences = check_bool("return_sequences", return_sequences)
        self._optimizer: Optimizer | None = None
        self._regularizer = None

    # -- options ---------------------------------------------------------------------------------------------
    @property
    def output_activation(self) -> str:
        """ψ of y_t = ψ(h_t W_hy + b_y) (fixed at construction)."""
        return self._output_activation

    @property
    def return_sequences(self) -> bool:
        """True: every step's output (B, T, O); False: only each sequence's last output (B, O)."""
        return self._return_sequences

    @return_sequences.setter
    def return_sequences(self, value: bool) -> None:
        self._return_sequences = check_bool("return_sequences", value)

    @property
    def stateful(self) -> bool:
        """True: the final state of a forward is the next forward's initial state (truncated BPTT)."""
        return self.rnn.stateful

    @stateful.setter
    def stateful(self, value: bool) -> None:
        self.rnn.stateful = check_bool("stateful", value)
        if not value:
            self.rnn.reset_state()

    @property
    def memorize(self) -> bool:
        """The exercise's name of ``stateful``: whether the last hidden state is reused by the next forward."""
        return self.stateful

    @memorize.setter
    def memorize(self, value: bool) -> None:
        self.stateful = check_bool("memorize", value)

    @property
    def detach_state(self) -> bool:
        """See `RecurrentLayer.detach_state` (Elman's 1990 training: no error propagated back through time)."""
        return self.rnn.detach_state

    @detach_state.setter
    def detach_state(self, value: bool) -> None:
        self.rnn.detach_state = value

    def reset_state(self) -> None:
        """Forget the memorized state (the start of a new stream)."""
        self.rnn.reset_state()

    @property
    def hidden_size(self) -> int:
        return self.rnn.hidden_size

    # -- forward and backward --------------------------------------------------------------------------------
    def forward(self, x, state0=None, lengths=None):
        series = isinstance(x, TimeSeries)
        if series:
            x = x.stack()
        h, state_n = self.rnn.forward(x, state0, lengths=lengths)
        y = self.out.forward(h)
        y = y if self.act is None else self.act.forward(y)
        kept = _steps_kept(lengths, y.shape)
        if kept is not None:
            y = y * kept  # zero past each sequence's end (the constant ψ(b_y) otherwise)
        shape = y.shape
        if not self._return_sequences:
            y = y[np.arange(len(y)), _last_index(lengths, shape)] if y.ndim == 3 else y[_last_index(lengths, shape)[0]]
        self.save_for_backward(kept, shape, lengths, series, self._return_sequences)
        return (TimeSeries.of(y) if series and y.ndim == 3 else y), state_n

    def backward(self, dy=None, dstate=None):
        kept, shape, lengths, series, sequences = self.saved_for_backward()
        dh = None
        if dy is None:  # only the final state's gradient: the output layers' saved calls are not needed
            self.out.saved_for_backward()
            if self.act is not None:
                self.act.saved_for_backward()
        else:
            dy = self._full_output_gradient(dy, shape, lengths, sequences)
            dy = dy if kept is None else dy * kept
            dh = self.out.backward(dy if self.act is None else self.act.backward(dy))
        dx, dstate0 = self.rnn.backward(dh, dstate)
        self._after_backward()
        return (TimeSeries.of(dx) if series else dx), dstate0

    @staticmethod
    def _full_output_gradient(dy, shape, lengths, sequences) -> np.ndarray:
        """δy as (B, T, O): a `TimeSeries` stacked; the last outputs' gradients placed at their steps."""
        dy = dy.stack() if isinstance(dy, TimeSeries) else dy
        if sequences:
            return dy
        want = shape[:-2] + shape[-1:]
        if not isinstance(dy, np.ndarray) or dy.shape != want:
            raise ShapeError(f"gradient of the last outputs must have shape {want}, got "
                             f"{getattr(dy, 'shape', type(dy).__name__)}")
        full = np.zeros(shape, dy.dtype)
        last = _last_index(lengths, shape)
        if len(shape) == 3:
            full[np.arange(shape[0]), last] = dy
        else:
            full[last[0]] = dy
        return full

    def _after_backward(self) -> None:
        """The exercise's layer-level updates: the regularizer's gradient, then one step of the optimizer."""
        if self._regularizer is not None:
            for p in self._weight_matrices():
                p.grad += _regularizer_gradient(self._regularizer, p.data)
        if self._optimizer is not None:
            self._optimizer.step()

    # -- the exercise's interface: the lecture's matrices ------------------------------------------------------
    def _lecture_layer(self) -> dict[str, Parameter | None]:
        """The parameters the lecture's matrices describe: one layer, one direction."""
        rnn = self.rnn
        if rnn.num_layers != 1 or rnn.bidirectional:
            raise UsageError(f"the lecture's matrices describe one layer and one direction; this {type(self).__name__}"
                             f" has num_layers={rnn.num_layers}, bidirectional={rnn.bidirectional}")
        return {"ih": rnn.weight_ih_l0, "hh": rnn.weight_hh_l0, "b_ih": getattr(rnn, "bias_ih_l0", None),
                "b_hh": getattr(rnn, "bias_hh_l0", None)}

    @property
    def W_xh(self) -> np.ndarray:
        """(I, G·H) = weight_ih_l0ᵀ, a view (G = 1 for Elman, 4 for LSTMNet: gates i, f, g, o)."""
        return self._lecture_layer()["ih"].data.T

    @W_xh.setter
    def W_xh(self, value) -> None:
        _assign("W_xh", self.W_xh, value)

    @property
    def W_hh(self) -> np.ndarray:
        """(H, G·H) = weight_hh_l0ᵀ, a view."""
        return self._lecture_layer()["hh"].data.T

    @W_hh.setter
    def W_hh(self, value) -> None:
        _assign("W_hh", self.W_hh, value)

    @property
    def W_hy(self) -> np.ndarray:
        """(D·H, O) = out.weightᵀ, a view."""
        return self.out.weight.data.T

    @W_hy.setter
    def W_hy(self, value) -> None:
        _assign("W_hy", self.W_hy, value)

    @property
    def b_h(self) -> np.ndarray:
        """h's bias (a copy: the sum of PyTorch's bias_ih_l0 and bias_hh_l0); assigning it sets bias_ih_l0 to it
        and bias_hh_l0 to zero."""
        layer = self._lecture_layer()
        if layer["b_ih"] is None:
            raise UsageError(f"this {type(self).__name__} was built with bias=False: it has no b_h")
        return layer["b_ih"].data + layer["b_hh"].data

    @b_h.setter
    def b_h(self, value) -> None:
        layer = self._lecture_layer()
        _assign("b_h", self.b_h, value)
        layer["b_ih"].data[...] = value
        layer["b_hh"].data[...] = 0

    @property
    def b_y(self) -> np.ndarray:
        """(O,) = out.bias, a view."""
        return self.out.bias.data

    @b_y.setter
    def b_y(self, value) -> None:
        _assign("b_y", self.b_y, value)

    @property
    def weights(self) -> np.ndarray:
        """The exercise's W_h (I + H + 1, G·H): [W_xh; W_hh; b_h], so that a_t = [x_t, h_{t-1}, 1] · W_h (a copy:
        assign ``net.weights = W`` to write it; without biases the row of ones is absent)."""
        layer = self._lecture_layer()
        rows = [layer["ih"].data.T, layer["hh"].data.T]
        return np.vstack(rows + ([] if layer["b_ih"] is None else [self.b_h[None]]))

    @weights.setter
    def weights(self, value) -> None:
        layer, current = self._lecture_layer(), self.weights
        _assign("weights", current, value)
        inputs, hidden = layer["ih"].data.shape[1], layer["hh"].data.shape[1]
        layer["ih"].data[...] = current[:inputs].T
        layer["hh"].data[...] = current[inputs:inputs + hidden].T
        if layer["b_ih"] is not None:
            self.b_h = current[-1]

    @property
    def gradient_weights(self) -> np.ndarray:
        """∂L/∂W_h, stacked as ``weights`` (the bias row is ∂L/∂b_h = the gradient of either PyTorch bias)."""
        layer = self._lecture_layer()
        rows = [layer["ih"].grad.T, layer["hh"].grad.T]
        return np.vstack(rows + ([] if layer["b_ih"] is None else [layer["b_ih"].grad[None]]))

    # -- the exercise's interface: initializer, optimizer, regularizer -------------------------------------------
    def initialize(self, weights_initializer, bias_initializer=None) -> None:
        """Re-initialise every weight matrix with ``weights_initializer`` and every bias with ``bias_initializer``
        (None: left as they are). Each is a function of a `Parameter` (``rnnkit.init.xavier_uniform``...), a
        number (a constant) or an exercise-style object with ``initialize(shape, fan_in, fan_out)``."""
        for _, p in self.named_parameters():
            init = weights_initializer if p.data.ndim == 2 else bias_initializer
            if init is not None:
                _initialize(p, init)

    @property
    def optimizer(self) -> Optimizer | None:
        """An optimizer stepped after every backward (None: the caller steps one)."""
        return self._optimizer

    @optimizer.setter
    def optimizer(self, value) -> None:
        """An `Optimizer` over this module's parameters, a function making one from ``named_parameters()``
        (``functools.partial(rnnkit.optim.SGD, lr=0.1)``), or None."""
        if value is not None and not isinstance(value, Optimizer):
            value = value(self.named_parameters()) if callable(value) else value
        if value is not None and not isinstance(value, Optimizer):
            raise ConfigError(f"optimizer must be an rnnkit Optimizer, a function making one from the parameters, "
                              f"or None, got {type(value).__name__}")
        self._optimizer = value

    @property
    def regularizer(self):
        """A regularizer of the weight matrices (not the biases): an object with ``norm(W)`` and ``gradient(W)``
        (or the exercise's ``calculate_gradient(W)``), e.g. `L2Regularizer`; its gradient is added by backward."""
        return self._regularizer

    @regularizer.setter
    def regularizer(self, value) -> None:
        if value is not None and not (hasattr(value, "norm") and (hasattr(value, "gradient")
                                                                  or hasattr(value, "calculate_gradient"))):
            raise ConfigError(f"regularizer must have norm(W) and gradient(W), got {type(value).__name__}")
        self._regularizer = value

    def regularization_loss(self) -> float:
        """Σ norm(W) over the weight matrices (0 without a regularizer); add it to the data loss."""
        if self._regularizer is None:
            return 0.0
        return float(sum(self._regularizer.norm(p.data) for p in self._weight_matrices()))

    def _weight_matrices(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters() if p.data.ndim == 2]


def _regularizer_gradient(regularizer, w: np.ndarray) -> np.ndarray:
    gradient = getattr(regularizer, "gradient", None) or regularizer.calculate_gradient
    return gradient(w)


def _assign(name: str, target: np.ndarray, value) -> None:
    """Write ``value`` into ``target`` (a view of parameters), refusing another shape in one line."""
    value = np.asarray(value)
    if value.shape != target.shape or value.dtype.kind not in "iuf":
        raise ShapeError(f"{name} must be a real array of shape {target.shape}, got {value.dtype} array of shape "
                         f"{value.shape}")
    target[...] = value


def _initialize(p: Parameter, init) -> None:
    if hasattr(init, "initialize"):  # the exercise's initializers: initialize(shape, fan_in, fan_out)
        fan_out, fan_in = (p.data.shape + (1,))[:2] if p.data.ndim == 2 else (p.data.shape[0], 1)
        _assign("initialized values", p.data, init.initialize(p.data.shape, fan_in, fan_out))
    elif callable(init):
        init(p)
    else:
        p.data[...] = init


class Elman(RecurrentNet):
    """``Elman(input_size, hidden_size, output_size, num_layers=1, nonlinearity='tanh', output_activation='sigmoid',
    bias=True, dropout=0.0, bidirectional=False, stateful=False, return_sequences=True, dtype=float32, rng=None)``.

    An `RNN` (its options: ``num_layers``, ``nonlinearity`` tanh, relu or sigmoid, ``bias``, ``dropout``,
    ``bidirectional``, ``stateful`` = the exercise's ``memorize``) and the output layer y_t = ψ(h_t W_hy + b_y).
    See the module docstring for the lecture's names of the parameters.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", output_activation: str = "sigmoid", bias: bool = True,
                 dropout: float = 0.0, bidirectional: bool = False, stateful: bool = False,
                 return_sequences: bool = True, dtype=DEFAULT_DTYPE, rng=None):
        rng = as_rng(rng)
        rnn = RNN(input_size, hidden_size, num_layers, nonlinearity=nonlinearity, bias=bias, dropout=dropout,
                  bidirectional=bidirectional, stateful=stateful, dtype=dtype, rng=rng)
        super().__init__(rnn, output_size, output_activation, return_sequences, dtype, rng)


class LSTMNet(RecurrentNet):
    """``LSTMNet(input_size, hidden_size, output_size, num_layers=1, output_activation='sigmoid', bias=True,
    dropout=0.0, bidirectional=False, stateful=False, return_sequences=True, dtype=float32, rng=None)``.

    The exercise's LSTM layer: an `LSTM` and a trainable output layer y_t = ψ(h_t W_hy + b_y). Its W_xh (I, 4H),
    W_hh (H, 4H) and b_h (4H) hold the gates in PyTorch's order i, f, g, o (the lecture draws f, i, g (its
    "candidate" C̃), o; docs/lectures.md maps them). The state is (h, c).
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, num_layers: int = 1,
                 output_activation: str = "sigmoid", bias: bool = True, dropout: float = 0.0,
                 bidirectional: bool = False, stateful: bool = False, return_sequences: bool = True,
                 dtype=DEFAULT_DTYPE, rng=None):
        rng = as_rng(rng)
        rnn = LSTM(input_size, hidden_size, num_layers, bias=bias, dropout=dropout, bidirectional=bidirectional,
                   stateful=stateful, dtype=dtype, rng=rng)
        super().__init__(rnn, output_size, output_activation, return_sequences, dtype, rng)
