"""ONNX export: every supported configuration runs in onnxruntime with outputs within 1e-5 of rnnkit's."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from rnnkit import GRU, LSTM, RNN, export_onnx  # noqa: E402
from rnnkit.cli import main  # noqa: E402
from rnnkit.models.sequence import ModelConfig, SequenceModel  # noqa: E402

LAYERS = [
    (RNN, {}), (RNN, {"nonlinearity": "relu"}), (RNN, {"num_layers": 2, "bidirectional": True}),
    (LSTM, {}), (LSTM, {"bidirectional": True}), (LSTM, {"num_layers": 3, "bidirectional": True}),
    (GRU, {}), (GRU, {"num_layers": 2}), (GRU, {"num_layers": 2, "bidirectional": True}),
]


@pytest.mark.parametrize("state, ragged", [(False, False), (True, True)], ids=["plain", "state+lengths"])
@pytest.mark.parametrize("cls, options", LAYERS, ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
def test_layer_matches_onnxruntime(tmp_path, cls, options, state, ragged):
    rng = np.random.default_rng(0)
    layer = cls(3, 5, rng=0, **options)
    for _, p in layer.named_parameters():  # all weights and biases random
        p.data[...] = rng.uniform(-0.8, 0.8, p.shape)
    export_onnx(layer, tmp_path / "m.onnx", initial_state=state, lengths=ragged)
    x = rng.normal(size=(4, 7, 3)).astype(np.float32)
    rows = layer.num_directions * layer.num_layers
    states = tuple(rng.normal(size=(rows, 4, 5)).astype(np.float32) for _ in layer.state_sizes)
    lengths = np.array([7, 3, 5, 1]) if ragged else None
    feed = {"input": x}
    if state:
        feed.update(zip(("h0", "c0"), states))
    if ragged:
        feed["lengths"] = lengths.astype(np.int32)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, feed)
    y, final = layer.forward(x, (states if len(states) > 1 else states[0]) if state else None, lengths=lengths)
    final = final if isinstance(final, tuple) else (final,)
    np.testing.assert_allclose(got[0], y, atol=1e-5)
    for ours, theirs in zip(final, got[1:]):
        np.testing.assert_allclose(theirs, ours, atol=1e-5)


@pytest.mark.parametrize("embedding_size", [0, 8], ids=["one-hot", "embedding"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_token_model_with_head_matches(tmp_path, cell, embedding_size):
    model = SequenceModel(ModelConfig(input_size=20, output_size=20, tokens=True, embedding_size=embedding_size,
                                      cell=cell, hidden_size=6, num_layers=2), rng=np.random.default_rng(0))
    model.eval()
    export_onnx(model, tmp_path / "m.onnx")
    ids = np.random.default_rng(1).integers(0, 20, (3, 9))
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": ids})
    np.testing.assert_allclose(got[0], model.forward(ids)[0], atol=1e-5)


@pytest.mark.parametrize("layer, message", [(LSTM(3, 4, proj_size=2), "projection"),
                                            (GRU(3, 4, reset_after=False), "reset_after")])
def test_unsupported_layers_are_refused(tmp_path, layer, message):
    with pytest.raises(ValueError, match=message):
        export_onnx(layer, tmp_path / "m.onnx")


def test_export_command(tmp_path, capsys):
    main(["train", "--cell", "gru", "--max-steps", "5", "--eval-every", "5", "--out", str(tmp_path / "run"),
          "--no-progress"])
    main(["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "m.onnx")])
    assert (tmp_path / "m.onnx").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "m.onnx")])
    assert exit_info.value.code == 2 and "already exists" in capsys.readouterr().err
