"""Move layers between rnnkit and PyTorch: `from_torch` and `to_torch`. torch is imported only when called.

Supported both ways: ``nn.RNN``, ``nn.LSTM`` (with ``proj_size``), ``nn.GRU``, ``nn.RNNCell``, ``nn.LSTMCell``,
``nn.GRUCell``, ``nn.Linear``, ``nn.Embedding``. Parameter names and layouts are identical, so the conversion is
a state-dict copy; the dtype (float32 / float64) is kept. rnnkit layers are batch-first: a torch module made by
`to_torch` has ``batch_first=True``; `from_torch` accepts either (only the input layout differs).
Layers without a PyTorch counterpart (peephole LSTM, ``GRU(reset_after=False)``, Jordan, Elman, IndRNN, minGRU,
...) raise `rnnkit.errors.ConfigError` (a ``ValueError``) before torch is imported, so with or without torch.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError, DependencyError
from .layers import Embedding, Linear
from .module import Module
from .recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        raise DependencyError("rnnkit.from_torch / to_torch need PyTorch: pip install torch") from None
    return torch


def _numpy_dtype(tensor) -> np.dtype:
    dt = np.dtype(str(tensor.dtype).replace("torch.", ""))
    if dt not in (np.float32, np.float64):
        raise ConfigError(f"only float32 and float64 modules can be converted, got {tensor.dtype}")
    return dt


def from_torch(module) -> Module:
    """The rnnkit equivalent of a torch module, with copies of its weights."""
    torch = _torch()
    nn = torch.nn
    params = list(module.parameters())
    dtype = _numpy_dtype(params[0]) if params else np.float32
    common = {"dtype": dtype}
    if isinstance(module, (nn.RNN, nn.LSTM, nn.GRU)):
        opts = dict(num_layers=module.num_layers, bias=module.bias, dropout=module.dropout,
                    bidirectional=module.bidirectional, **common)
        if isinstance(module, nn.LSTM):
            ours = LSTM(module.input_size, module.hidden_size, proj_size=module.proj_size, **opts)
        elif isinstance(module, nn.GRU):
            ours = GRU(module.input_size, module.hidden_size, **opts)
        else:
            ours = RNN(module.input_size, module.hidden_size, nonlinearity=module.nonlinearity, **opts)
    elif isinstance(module, nn.RNNCell):
        ours = RNNCell(module.input_size, module.hidden_size, bias=module.bias, nonlinearity=module.nonlinearity,
                       **common)
    elif isinstance(module, nn.LSTMCell):
        ours = LSTMCell(module.input_size, module.hidden_size, bias=module.bias, **common)
    elif isinstance(module, nn.GRUCell):
        ours = GRUCell(module.input_size, module.hidden_size, bias=module.bias, **common)
    elif isinstance(module, nn.Linear):
        ours = Linear(module.in_features, module.out_features, bias=module.bias is not None, **common)
    elif isinstance(module, nn.Embedding):
        ours = Embedding(module.num_embeddings, module.embedding_dim, padding_idx=module.padding_idx, **common)
    else:
        raise ConfigError(f"from_torch supports RNN, LSTM, GRU, their cells, Linear and Embedding; "
                          f"got {type(module).__name__}")
    ours.load_state_dict({k: v.detach().cpu().numpy() for k, v in module.state_dict().items()})
    return ours


def _torch_builder(layer: Module):
    """A function ``(torch.nn, dtype) -> module`` that builds ``layer``'s torch counterpart; a layer without one is
    refused here, before torch is imported, so the refusal is the same with or without torch installed."""
    if isinstance(layer, (RNN, LSTM, GRU)):
        if layer.regularization.zoneout:
            raise ConfigError("zoneout changes the recurrence in evaluation too; torch.nn has no zoneout")
        opts = dict(num_layers=layer.num_layers, bias=layer.bias, dropout=layer.dropout,
                    bidirectional=layer.bidirectional, batch_first=True)
        sizes = (layer.input_size, layer.hidden_size)
        if isinstance(layer, LSTM):
            if layer.peephole:
                raise ConfigError("a peephole LSTM has no torch.nn counterpart")
            return lambda nn, dtype: nn.LSTM(*sizes, proj_size=layer.proj_size, dtype=dtype, **opts)
        if isinstance(layer, GRU):
            if not layer.reset_after:
                raise ConfigError("GRU(reset_after=False) has no torch.nn counterpart (torch applies the reset "
                                  "after the recurrent matmul)")
            if layer.update_gate != "pytorch":
                raise ConfigError(f"GRU(update_gate={layer.update_gate!r}) has no torch.nn counterpart (torch's z "
                                  "keeps the previous state: h = (1 − z) ⊙ n + z ⊙ h)")
            return lambda nn, dtype: nn.GRU(*sizes, dtype=dtype, **opts)
        if layer.nonlinearity == "sigmoid":
            raise ConfigError("RNN(nonlinearity='sigmoid') has no torch.nn counterpart (torch.nn.RNN: tanh or relu)")
        return lambda nn, dtype: nn.RNN(*sizes, nonlinearity=layer.nonlinearity, dtype=dtype, **opts)
    if isinstance(layer, RNNCell):
        return lambda nn, dtype: nn.RNNCell(layer.input_size, layer.hidden_size, bias=layer.cell.bias,
                                            nonlinearity=layer.cell.nonlinearity, dtype=dtype)
    if isinstance(layer, LSTMCell):
        if layer.cell.peephole or layer.cell.proj_size:
            raise ConfigError("torch.nn.LSTMCell has no peepholes or projection")
        return lambda nn, dtype: nn.LSTMCell(layer.input_size, layer.hidden_size, bias=layer.cell.bias, dtype=dtype)
    if isinstance(layer, GRUCell):
        if not layer.cell.reset_after:
            raise ConfigError("GRUCell(reset_after=False) has no torch.nn counterpart")
        return lambda nn, dtype: nn.GRUCell(layer.input_size, layer.hidden_size, bias=layer.cell.bias, dtype=dtype)
    if isinstance(layer, Linear):
        return lambda nn, dtype: nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                                           dtype=dtype)
    if isinstance(layer, Embedding):
        return lambda nn, dtype: nn.Embedding(layer.num_embeddings, layer.embedding_dim,
                                              padding_idx=layer.padding_idx, dtype=dtype)
    raise ConfigError(f"to_torch supports RNN, LSTM, GRU, their cells, Linear and Embedding; "
                      f"got {type(layer).__name__}")


def to_torch(layer: Module):
    """The torch module equivalent to an rnnkit layer (batch_first=True for sequence layers)."""
    build = _torch_builder(layer)
    torch = _torch()
    module = build(torch.nn, torch.float64 if layer.dtype == np.float64 else torch.float32)
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in layer.state_dict().items()})
    return module
