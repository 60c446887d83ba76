"""rnnkit: recurrent neural networks from first principles, in NumPy, with PyTorch's names and layouts.

The top level is the library: `module` (the layer contract), `layers`, `activations`, `losses`, `optim`, `init`,
`gradcheck`, `highway`, `crf`, `ctc`, `attention`, `sequences`, `interop`, `onnx_export`, `errors` and `recurrent/`.
Everything that reads files, trains, plots or parses the command line lives in subpackages: `tasks/` (data and the
Task protocol), `models/` (the trainable models and the checkpoint registry), `training/` (the trainer and the
tools around it) and `cli/` (the ``rnnkit`` command). ``import rnnkit`` loads none of them: the models named here
(`SequenceModel`, `ModelConfig`, `SequenceClassifier`, `Seq2Seq`, `Tagger`) are imported on first use.
"""

from . import _startup, init, losses, optim  # noqa: F401  (_startup first: the command's Ctrl-C while the rest imports)
from .activations import ReLU, Sigmoid, Softmax, Tanh
from .crf import CRF
from .ctc import CTCLoss, ctc_greedy_decode, ctc_loss, ctc_prefix_beam_search
from .errors import RnnkitError
from .gradcheck import gradcheck
from .highway import Highway
from .interop import from_torch, to_torch
from .layers import Dropout, Embedding, Linear, OneHot, Sequential
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .module import Module, Parameter, manual_seed, no_grad
from .optim import SGD, Adagrad, Adam, RMSprop, clip_grad_norm
from .recurrent import (
    GRU,
    LSTM,
    RHN,
    RNN,
    Elman,
    GRUCell,
    IndRNN,
    Jordan,
    LayerNormGRU,
    LayerNormLSTM,
    LSTMCell,
    LSTMNet,
    MinGRU,
    MinLSTM,
    MogrifierLSTM,
    RNNCell,
)
from .sequences import TimeSeries, pad_sequences, unpad_sequences

__version__ = "0.1.0"

#: the trainable models, loaded (with `rnnkit.models` and `rnnkit.tasks`) the first time one is used
_MODELS = {"SequenceClassifier": "classifier", "Seq2Seq": "seq2seq", "ModelConfig": "sequence",
           "SequenceModel": "sequence", "Tagger": "tagger"}


def __getattr__(name: str):
    """``rnnkit.SequenceModel`` and the other models: `import rnnkit` loads only the library (see
    docs/architecture.md), and a model's subpackages are imported when a model is first named."""
    if name in _MODELS:
        import importlib

        return getattr(importlib.import_module(f".models.{_MODELS[name]}", __name__), name)
    raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")


def fit(model, inputs, targets=None, **options) -> list[dict]:
    """Train ``model`` (any Module, or a model of `rnnkit.models`) on NumPy arrays or a Task and return the history;
    see `rnnkit.training.fit.fit` for the options (``epochs``, ``batch_size``, ``loss``, ``lr``, ``val``,
    ``lengths``, ``k1``/``k2``, ``run_dir``...)."""
    from .training.fit import fit as _fit

    return _fit(model, inputs, targets, **options)


def predict(model, inputs, lengths=None, batch_size: int | None = None):
    """The model's outputs in evaluation mode, saving nothing; see `rnnkit.training.fit.predict`."""
    from .training.fit import predict as _predict

    return _predict(model, inputs, lengths, batch_size)


def evaluate(model, inputs, targets, lengths=None, mask=None, loss="ce", batch_size: int = 256) -> dict:
    """Mean loss (and accuracy for cross-entropy) of ``model`` on arrays; see `rnnkit.training.fit.evaluate`."""
    from .training.fit import evaluate as _evaluate

    return _evaluate(model, inputs, targets, lengths, mask, loss, batch_size)


def export_onnx(model, path, initial_state: bool = False, lengths: bool = False) -> None:
    """Export an RNN/LSTM/GRU (or a SequenceModel of one) to ONNX; see `rnnkit.onnx_export`."""
    from .onnx_export import export_onnx as _export

    _export(model, path, initial_state=initial_state, lengths=lengths)


__all__ = [
    "GRU", "LSTM", "RHN", "RNN", "Elman", "GRUCell", "Highway", "Jordan", "LSTMCell", "MogrifierLSTM", "RNNCell",
    "IndRNN", "MinGRU", "MinLSTM", "LayerNormGRU", "LayerNormLSTM", "LSTMNet", "TimeSeries",
    "CRF", "CTCLoss", "ctc_greedy_decode", "ctc_loss", "ctc_prefix_beam_search",
    "ModelConfig", "RnnkitError", "Seq2Seq", "SequenceClassifier", "SequenceModel", "Tagger",
    "Adagrad", "Adam", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "Dropout", "Embedding", "Linear",
    "MSELoss", "Module",
    "OneHot", "Parameter", "RMSprop", "ReLU", "SGD", "Sequential", "Sigmoid", "Softmax", "Tanh", "clip_grad_norm",
    "evaluate", "export_onnx", "fit", "from_torch", "gradcheck", "init", "losses", "manual_seed", "no_grad", "optim",
    "pad_sequences", "predict", "to_torch", "unpad_sequences",
]
