"""``carry_layout()``: the (rows, size) of each state component a model carries between truncated-BPTT windows,
which is all the trainer knows of that state (it checks a resumed checkpoint's carried state against it)."""

import numpy as np

import rnnkit
from rnnkit.models.classifier import ClassifierConfig, SequenceClassifier
from rnnkit.models.sequence import ModelConfig, SequenceModel
from rnnkit.tasks.text import TextTask
from rnnkit.training.fit import ArrayTask, ModuleModel


def carried_shapes(model, batch) -> list[tuple[int, ...]]:
    """The shapes of the state ``model`` carries out of a window of the first 4 steps of ``batch``."""
    model.train_batch(batch, (0, 4, 0))
    state = model.state_at(4)
    model.discard_saved()
    return [p.shape for p in (state if isinstance(state, tuple) else (state,))]


def test_a_sequence_models_carry_layout_is_the_state_it_carries_between_windows(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("abcdefgh " * 60, encoding="utf-8")
    task = TextTask(corpus, seq_length=10, batch_size=4)
    batch = next(task.batches(0))
    for cell, layers, sizes in (("lstm", 2, [(2, 6), (2, 6)]), ("gru", 3, [(3, 6)])):
        model = SequenceModel(ModelConfig.for_task(task, cell=cell, hidden_size=6, num_layers=layers), rng=0)
        model.bind_task(task)
        assert model.carry_layout() == sizes
        assert carried_shapes(model, batch) == [(rows, 4, size) for rows, size in sizes]


def test_a_module_models_carry_layout_lists_its_recurrent_layers_states_in_order():
    rng = np.random.default_rng(0)
    module = rnnkit.Sequential(rnnkit.OneHot(4), rnnkit.LSTM(4, 5, return_state=False),
                               rnnkit.GRU(5, 3, num_layers=2, return_state=False), rnnkit.Linear(3, 4))
    model = ModuleModel(module)
    ids = rng.integers(0, 4, size=(6, 7))
    model.bind_task(ArrayTask(ids[:, :-1], ids[:, 1:], batch_size=2))
    assert model.carry_layout() == [(1, 5), (1, 5), (2, 3)]
    batch = next(ArrayTask(ids[:, :-1], ids[:, 1:], batch_size=2).batches(0))
    assert carried_shapes(model, batch) == [(1, 2, 5), (1, 2, 5), (2, 2, 3)]


def test_a_model_trained_on_whole_sequences_carries_nothing():
    model = SequenceClassifier(ClassifierConfig(vocab_size=5, num_classes=2, hidden_size=4), rng=0)
    assert model.carry_layout() == []
