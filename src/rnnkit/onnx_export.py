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

from .layers import Embedding, OneHot
from .module import Module
from .recurrent import GRU, LSTM, RNN

OPSET = 14
_REORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn": [0]}


def _onnx():
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("ONNX export needs the onnx package: pip install 'rnnkit[onnx]'") from None
    return onnx, TensorProto, helper, numpy_helper


def _kind(layer) -> str:
    if isinstance(layer, LSTM):
        if layer.proj_size or layer.peephole:
            raise ValueError("ONNX's LSTM operator has no projection; export an LSTM without proj_size "
                             "(and without peepholes, whose ONNX form differs)")
        return "lstm"
    if isinstance(layer, GRU):
        if not layer.reset_after:
            raise ValueError("GRU(reset_after=False) has no ONNX form: ONNX's GRU applies the reset gate to "
                             "h_{t-1} or, with linear_before_reset, after the matmul as PyTorch does")
        return "gru"
    if isinstance(layer, RNN):
        return "rnn"
    raise ValueError(f"ONNX export supports RNN, LSTM and GRU layers, got {type(layer).__name__}")


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


def export_onnx(model: Module, path, initial_state: bool = False, lengths: bool = False) -> None:
    """Write ``model`` (an RNN/LSTM/GRU layer or a SequenceModel of one) as an ONNX file at ``path``."""
    onnx, tp, helper, numpy_helper = _onnx()
    from .models import SequenceModel

    encoder = head = None
    layer = model
    if isinstance(model, SequenceModel):
        encoder, layer, head = model.encoder, model.rnn, model.head
        if head is None:
            raise ValueError("a Jordan network has no ONNX operator")
    kind = _kind(layer)
    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    tokens = isinstance(encoder, (Embedding, OneHot))
    inputs = [helper.make_tensor_value_info("input", tp.INT64 if tokens else tp.FLOAT,
                                            ["batch", "time"] if tokens else ["batch", "time", layer.input_size])]
    x = "input"
    if isinstance(encoder, Embedding):
        nodes.append(helper.make_node("Gather", [const("embedding", encoder.weight.data.astype(np.float32)), x],
                                      ["embedded"]))
        x = "embedded"
    elif isinstance(encoder, OneHot):
        nodes.append(helper.make_node("Gather", [const("one_hot", np.eye(encoder.num_classes, dtype=np.float32)),
                                                 x], ["embedded"]))
        x = "embedded"
    nodes.append(helper.make_node("Transpose", [x], ["x_time_major"], perm=[1, 0, 2]))
    x = "x_time_major"
    rows, state_names = layer.num_directions * layer.num_layers, ["h"] + (["c"] if kind == "lstm" else [])
    size = layer.hidden_size
    for s in state_names if initial_state else []:
        inputs.append(helper.make_tensor_value_info(f"{s}0", tp.FLOAT, [rows, "batch", size]))
    seq_lens = ""
    if lengths:
        inputs.append(helper.make_tensor_value_info("lengths", tp.INT32, ["batch"]))
        seq_lens = "lengths"
    finals = {s: [] for s in state_names}
    direction = "bidirectional" if layer.bidirectional else "forward"
    d = layer.num_directions
    for index in range(layer.num_layers):
        w, r, b = _layer_weights(layer, index, kind)
        op_inputs = [x, const(f"W{index}", w), const(f"R{index}", r), const(f"B{index}", b), seq_lens]
        for s in state_names:
            name = ""
            if initial_state:
                name = f"{s}0_l{index}"
                nodes.append(helper.make_node("Slice", [f"{s}0", const(f"{s}_start{index}", [index * d]),
                                                        const(f"{s}_end{index}", [(index + 1) * d]),
                                                        const(f"{s}_axis{index}", [0])], [name]))
            op_inputs.append(name)
        outputs = [f"Y{index}"] + [f"{s}_n{index}" for s in state_names]
        attrs = {"hidden_size": size, "direction": direction}
        if kind == "rnn":
            attrs["activations"] = [layer.nonlinearity.capitalize()] * d
        if kind == "gru":
            attrs["linear_before_reset"] = 1
        nodes.append(helper.make_node(kind.upper(), op_inputs, outputs, name=f"{kind}{index}", **attrs))
        for s in state_names:
            finals[s].append(f"{s}_n{index}")
        # Y (T, D, B, H) → (T, B, D·H), the next layer's input
        nodes.append(helper.make_node("Transpose", [f"Y{index}"], [f"Yt{index}"], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", [f"Yt{index}", const(f"shape{index}", np.array([0, 0, -1]))],
                                      [f"layer{index}"]))
        x = f"layer{index}"
    nodes.append(helper.make_node("Transpose", [x], ["features"], perm=[1, 0, 2]))
    out = "features"
    width = d * size
    if head is not None:
        nodes.append(helper.make_node("MatMul", [out, const("head_weight_t", head.weight.data.T.astype(np.float32))],
                                      ["head_matmul"]))
        out, width = "head_matmul", head.out_features
        if head.bias is not None:
            nodes.append(helper.make_node("Add", ["head_matmul", const("head_bias", head.bias.data.astype(
                np.float32))], ["logits"]))
            out = "logits"
    nodes.append(helper.make_node("Identity", [out], ["output"]))
    outputs = [helper.make_tensor_value_info("output", tp.FLOAT, ["batch", "time", width])]
    for s in state_names:
        nodes.append(helper.make_node("Concat", finals[s], [f"{s}_n"], axis=0))
        outputs.append(helper.make_tensor_value_info(f"{s}_n", tp.FLOAT, [rows, "batch", size]))
    graph = helper.make_graph(nodes, "rnnkit", inputs, outputs, initializer=inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                   producer_name="rnnkit")
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(path))
