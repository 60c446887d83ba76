"""Export to ONNX with the standard ``RNN``, ``LSTM`` and ``GRU`` operators (opset 14), for onnxruntime & co.

Supported: `RNN`, `LSTM` (no projection, no peepholes), `GRU` (``reset_after=True``, exported with
``linear_before_reset=1``), any number of layers, bidirectional; alone or inside a `SequenceModel` with a
one-hot/`Embedding` encoder and the `Linear` head. Dropout is dropped (inference).

Gate orders differ: rnnkit/PyTorch LSTM rows are i, f, g, o and ONNX wants i, o, f, c; GRU rows are r, z, n and
ONNX wants z, r, h. Weights are reordered per direction, and the two biases concatenated as ONNX's B = [Wb; Rb].

Graph inputs: ``input`` (B, T, F) float32 — or (B, T) int64 token ids for a token model — plus, on request,
``h0`` (and ``c0``) of shape (D·L, B, H) and ``lengths`` (B,) int32. Outputs: ``output`` (B, T, ·) and the final
states ``h_n`` (and ``c_n``), laid out as in rnnkit.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError, DependencyError
from .layers import Embedding, OneHot
from .module import Module
from .recurrent import GRU, LSTM, RNN

OPSET = 14
_REORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn": [0]}


def _onnx():
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise DependencyError("ONNX export needs the onnx package: pip install 'rnnkit[onnx]'") from None
    return onnx, TensorProto, helper, numpy_helper


def _kind(layer) -> str:
    if getattr(layer, "regularization", None) is not None and layer.regularization.zoneout:
        raise ConfigError("zoneout changes the recurrence in evaluation too (the expectation z·s_{t−1} + (1 − z)·s̃_t); "
                          "ONNX's recurrent operators have no such form")
    if isinstance(layer, LSTM):
        if layer.proj_size or layer.peephole:
            raise ConfigError("ONNX's LSTM operator has no projection; export an LSTM without proj_size "
                             "(and without peepholes, whose ONNX form differs)")
        return "lstm"
    if isinstance(layer, GRU):
        if not layer.reset_after:
            raise ConfigError("GRU(reset_after=False) has no ONNX form: ONNX's GRU applies the reset gate to "
                             "h_{t-1} or, with linear_before_reset, after the matmul as PyTorch does")
        return "gru"
    if isinstance(layer, RNN):
        return "rnn"
    raise ConfigError(f"ONNX export supports RNN, LSTM and GRU layers, got {type(layer).__name__}")


def _reorder(a: np.ndarray, kind: str, hidden: int) -> np.ndarray:
    return np.concatenate([a[k * hidden:(k + 1) * hidden] for k in _REORDER[kind]], axis=0)


def _layer_weights(layer, index: int, kind: str):
    """W, R, B for layer ``index`` stacked over directions, in ONNX's gate order."""
    h, ws, rs, bs = layer.hidden_size, [], [], []
    for d in range(layer.num_directions):
        sfx = f"_l{index}" + ("_reverse" if d else "")
        p = dict(layer.named_parameters())
        ws.append(_reorder(p["weight_ih" + sfx].data, kind, h))
        rs.append(_reorder(p["weight_hh" + sfx].data, kind, h))
        if layer.bias:
            bs.append(np.concatenate([_reorder(p["bias_ih" + sfx].data, kind, h),
                                      _reorder(p["bias_hh" + sfx].data, kind, h)]))
        else:
            bs.append(np.zeros(2 * len(_REORDER[kind]) * h))
    return [np.stack(a).astype(np.float32) for a in (ws, rs, bs)]


class _Graph:
    """The nodes, initializers, inputs and outputs of the graph being built."""

    def __init__(self, helper, numpy_helper, tp):
        self.helper, self.numpy_helper, self.tp = helper, numpy_helper, tp
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []

    def const(self, name: str, array) -> str:
        self.inits.append(self.numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, outputs, **attrs))
        return outputs[0]


def _encoder(g: _Graph, encoder, layer) -> str:
    """The ``input`` graph input and, for token models, its one-hot/embedding lookup → (T, B, F) time-major."""
    tokens = isinstance(encoder, (Embedding, OneHot))
    g.inputs.append(g.helper.make_tensor_value_info("input", g.tp.INT64 if tokens else g.tp.FLOAT,
                                                    ["batch", "time"] if tokens else ["batch", "time",
                                                                                      layer.input_size]))
    x = "input"
    if isinstance(encoder, Embedding):
        x = g.node("Gather", [g.const("embedding", encoder.weight.data.astype(np.float32)), x], ["embedded"])
    elif isinstance(encoder, OneHot):
        x = g.node("Gather", [g.const("one_hot", np.eye(encoder.num_classes, dtype=np.float32)), x], ["embedded"])
    return g.node("Transpose", [x], ["x_time_major"], perm=[1, 0, 2])


def _recurrent(g: _Graph, layer, kind: str, x: str, initial_state: bool, lengths: bool) -> str:
    """One ONNX RNN/LSTM/GRU node per layer (with the optional h0/c0 and lengths inputs) and the final-state
    outputs; returns the last layer's output, (B, T, D·H) batch-first."""
    rows, state_names = layer.num_directions * layer.num_layers, ["h"] + (["c"] if kind == "lstm" else [])
    size, d = layer.hidden_size, layer.num_directions
    for s in state_names if initial_state else []:
        g.inputs.append(g.helper.make_tensor_value_info(f"{s}0", g.tp.FLOAT, [rows, "batch", size]))
    if lengths:
        g.inputs.append(g.helper.make_tensor_value_info("lengths", g.tp.INT32, ["batch"]))
    attrs = {"hidden_size": size, "direction": "bidirectional" if layer.bidirectional else "forward"}
    if kind == "rnn":
        attrs["activations"] = [layer.nonlinearity.capitalize()] * d
    if kind == "gru":
        attrs["linear_before_reset"] = 1
    for index in range(layer.num_layers):
        w, r, b = _layer_weights(layer, index, kind)
        op_inputs = [x, g.const(f"W{index}", w), g.const(f"R{index}", r), g.const(f"B{index}", b),
                     "lengths" if lengths else ""]
        for s in state_names:
            op_inputs.append(_initial_state_slice(g, s, index, d) if initial_state else "")
        g.node(kind.upper(), op_inputs, [f"Y{index}"] + [f"{s}_n{index}" for s in state_names],
               name=f"{kind}{index}", **attrs)
        # Y (T, D, B, H) → (T, B, D·H), the next layer's input
        g.node("Transpose", [f"Y{index}"], [f"Yt{index}"], perm=[0, 2, 1, 3])
        x = g.node("Reshape", [f"Yt{index}", g.const(f"shape{index}", np.array([0, 0, -1]))], [f"layer{index}"])
    for s in state_names:
        g.node("Concat", [f"{s}_n{index}" for index in range(layer.num_layers)], [f"{s}_n"], axis=0)
        g.outputs.append(g.helper.make_tensor_value_info(f"{s}_n", g.tp.FLOAT, [rows, "batch", size]))
    return g.node("Transpose", [x], ["features"], perm=[1, 0, 2])


def _initial_state_slice(g: _Graph, s: str, index: int, d: int) -> str:
    """Rows [index·D, (index+1)·D) of the ``h0``/``c0`` input: the initial state of layer ``index``."""
    return g.node("Slice", [f"{s}0", g.const(f"{s}_start{index}", [index * d]),
                            g.const(f"{s}_end{index}", [(index + 1) * d]), g.const(f"{s}_axis{index}", [0])],
                  [f"{s}0_l{index}"])


def _head(g: _Graph, head, features: str, width: int) -> None:
    """The linear head (MatMul + Add) if any, and the ``output`` graph output (B, T, O or D·H)."""
    out = features
    if head is not None:
        out = g.node("MatMul", [out, g.const("head_weight_t", head.weight.data.T.astype(np.float32))],
                     ["head_matmul"])
        width = head.out_features
        if head.bias is not None:
            out = g.node("Add", [out, g.const("head_bias", head.bias.data.astype(np.float32))], ["logits"])
    g.node("Identity", [out], ["output"])
    g.outputs.insert(0, g.helper.make_tensor_value_info("output", g.tp.FLOAT, ["batch", "time", width]))


def export_onnx(model: Module, path, initial_state: bool = False, lengths: bool = False) -> None:
    """Write ``model`` (an RNN/LSTM/GRU layer or a SequenceModel of one) as an ONNX file at ``path``; a model
    with NaN or infinite weights is refused (its graph would only ever compute NaN). A model without an ONNX form
    is refused before the onnx package is imported, so the refusal is the same with or without it."""
    for name, p in model.named_parameters():
        if not np.isfinite(p.data).all():
            raise ConfigError(f"parameter {name!r} holds NaN or infinite values; refusing to export it to ONNX")
    from .models.sequence import SequenceModel

    encoder = head = None
    layer = model
    if isinstance(model, SequenceModel):
        encoder, layer, head = model.encoder, model.rnn, model.head
        if head is None:
            raise ConfigError("a Jordan network has no ONNX operator")
    kind = _kind(layer)
    onnx, tp, helper, numpy_helper = _onnx()
    g = _Graph(helper, numpy_helper, tp)
    x = _encoder(g, encoder, layer)
    features = _recurrent(g, layer, kind, x, initial_state, lengths)
    _head(g, head, features, layer.num_directions * layer.hidden_size)
    graph = helper.make_graph(g.nodes, "rnnkit", g.inputs, g.outputs, initializer=g.inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="rnnkit")
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(path))
