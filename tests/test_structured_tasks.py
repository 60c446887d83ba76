"""Classification, tagging and the attention encoder-decoder: gradients, metrics and training on generated data."""

import json

import numpy as np
import pytest

from conftest import GRADCHECK_TOL, run_cli
from rnnkit import gradcheck
from rnnkit.attention import AdditiveAttention, LuongAttention
from rnnkit.models.classifier import ClassifierConfig, SequenceClassifier
from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig
from rnnkit.tasks.classify import ClassificationTask
from rnnkit.tasks.seq2seq import BOS_ID, EOS_ID, Seq2SeqTask, reversal_pairs
from rnnkit.tasks.tagging import entity_scores, entity_spans, read_conll
from rnnkit.training.trainer import TrainConfig, Trainer

run = run_cli


@pytest.fixture
def labelled_file(tmp_path):
    rng = np.random.default_rng(0)
    filler = "the a of and to in is was it that for on with as at by".split()
    keys = {"sport": "goal match team score".split(), "tech": "code chip data cloud".split(),
            "food": "bread soup salt cake".split()}
    lines = []
    for _ in range(400):
        label = str(rng.choice(list(keys)))
        words = list(rng.choice(filler, rng.integers(4, 15)))
        words.insert(int(rng.integers(0, len(words))), str(rng.choice(keys[label])))
        lines.append(f"{label}\t{' '.join(words)}")
    path = tmp_path / "labelled.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def conll_file(tmp_path):
    rng = np.random.default_rng(1)
    first, last = "Anna Boris Carla David Emma Felix".split(), "Smith Jones Berg Novak".split()
    cities, filler = "Paris Oslo Rome Lima Kyoto".split(), "met visited in the yesterday and then went to saw".split()
    sentences = []
    for _ in range(200):
        tokens = []
        for _ in range(rng.integers(2, 5)):
            r = rng.random()
            if r < 0.3:
                tokens.append((rng.choice(first), "B-PER"))
                if rng.random() < 0.5:
                    tokens.append((rng.choice(last), "I-PER"))
            elif r < 0.5:
                tokens.append((rng.choice(cities), "B-LOC"))
            else:
                tokens += [(w, "O") for w in rng.choice(filler, rng.integers(1, 3))]
        sentences.append("\n".join(f"{w} NN {t}" for w, t in tokens))
    path = tmp_path / "ner.conll"
    path.write_text("-DOCSTART- -X- O\n\n" + "\n\n".join(sentences) + "\n", encoding="utf-8")
    return path


# -- classification -------------------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_classifier_gradcheck(labelled_file, pooling, cell):
    task = ClassificationTask(labelled_file)
    model = SequenceClassifier(ClassifierConfig(len(task.vocab), 3, embedding_size=4, hidden_size=3, cell=cell,
                                                pooling=pooling), rng=0)
    batch = task.val[0]
    assert gradcheck(model, batch.x[:3], batch.lengths[:3]) < GRADCHECK_TOL


def test_classify_command_beats_chance_and_prints_a_confusion_matrix(tmp_path, labelled_file, capsys):
    code, out, err = run(["train", "classify", "--data", str(labelled_file), "--hidden-size", "16",
                          "--embedding-size", "16", "--epochs", "15", "--out", str(tmp_path / "run"),
                          "--no-progress"], capsys)
    assert code == 0, err
    accuracy = float(out.split("accuracy ")[1].split(";")[0])
    assert accuracy > 0.8  # chance is 1/3
    assert "confusion matrix" in out and "sport" in out


@pytest.mark.parametrize("text, message", [("no tab here\nx\ty\n", "expected 'label<TAB>text'"),
                                          ("a\tb\n", "at least 2")])
def test_classify_bad_files(tmp_path, capsys, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    code, _, err = run(["train", "classify", "--data", str(path), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and message in err


# -- tagging ----------------------------------------------------------------------------------------------
def test_entity_spans_follow_conlleval():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "B-LOC", "I-PER"]
    assert entity_spans(tags) == {("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5), ("LOC", 5, 6), ("PER", 6, 7)}
    scores = entity_scores([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "O", "O", "B-LOC"]])
    assert scores["precision"] == 0.5 and scores["recall"] == 0.5 and scores["token_accuracy"] == 0.75


def test_read_conll_skips_docstart_and_splits_sentences(conll_file):
    sentences, tags = read_conll(conll_file)
    assert len(sentences) == 200 and all(len(s) == len(t) for s, t in zip(sentences, tags))


def test_tagger_trains_and_tags_a_file(tmp_path, conll_file, capsys):
    out = tmp_path / "tagger"
    code, stdout, err = run(["train", "tagging", "--data", str(conll_file), "--hidden-size", "16",
                             "--embedding-size", "16", "--epochs", "6", "--out", str(out), "--no-progress"], capsys)
    assert code == 0, err
    f1 = float(stdout.split(" f1 ")[1].split(",")[0])
    assert f1 > 0.9
    code, tagged, err = run(["tag", str(out), "--input", str(conll_file)], capsys)
    assert code == 0 and "entity precision" in err
    first = tagged.splitlines()[0].split("\t")
    assert len(first) == 2 and first[1] in {"B-PER", "I-PER", "B-LOC", "O"}


def test_tagger_gradcheck_with_char_features_and_crf(conll_file):
    from rnnkit.models.tagger import Tagger, TaggerConfig
    from rnnkit.tasks.tagging import TaggingTask

    task = TaggingTask(conll_file)
    model = Tagger(TaggerConfig(len(task.vocab), len(task.labels), char_vocab_size=len(task.char_vocab),
                                embedding_size=3, hidden_size=3, char_embedding_size=2, char_hidden_size=2,
                                dtype="float64"), rng=0)
    batch = task.val[0]
    words = batch.lengths[:2].sum()

    def emissions(x):
        return model.forward(x, batch.lengths[:2], batch.chars[:words], batch.char_lengths[:words])

    assert gradcheck(emissions, batch.x[:2], backward=model.backward, params=model) < GRADCHECK_TOL


# -- attention and seq2seq --------------------------------------------------------------------------------
@pytest.mark.parametrize("attention", [AdditiveAttention(6, 3, 5, rng=0), LuongAttention(6, 3, "dot", rng=0),
                                       LuongAttention(6, 3, "general", rng=0)], ids=["additive", "dot", "general"])
def test_attention_gradcheck_over_two_steps_with_a_source_mask(rng, attention):
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)

    prepared = []

    def two_steps(memory, q1, q2):
        mem = attention.prepare(memory, mask)
        prepared.append(mem)
        return attention.step(mem, q1)[0], attention.step(mem, q2)[0]

    def two_steps_backward(d1, d2):
        dq2 = attention.step_backward(d2)
        dq1 = attention.step_backward(d1)
        return attention.finish_backward(prepared[-1]), dq1, dq2

    memory = rng.normal(size=(2, 4, 6))
    error = gradcheck(two_steps, memory, rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), backward=two_steps_backward,
                      params=attention)
    assert error < GRADCHECK_TOL


@pytest.mark.parametrize("attention", ["bahdanau", "luong-dot", "luong-general"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_seq2seq_gradcheck(attention, cell):
    task = Seq2SeqTask(None, synthetic_size=100)
    batch = task.val[0]
    rows = np.flatnonzero(batch.lengths == batch.lengths.max())[:3]  # unpadded targets: the <pad> row is frozen
    model = Seq2Seq(Seq2SeqConfig(len(task.vocab), len(task.target_vocab), embedding_size=3, hidden_size=3,
                                  attention=attention, cell=cell, dtype="float64"), rng=0)

    # eps = 1e-5: over this long a chain, roundoff at eps = 1e-6 reaches ~1e-6 (it grows as eps shrinks)
    error = gradcheck(model.forward, batch.source[rows], batch.source_lengths[rows], batch.x[rows][:, :6], eps=1e-5,
                      backward=model.backward, params=model)
    assert error < GRADCHECK_TOL


@pytest.fixture(scope="module")
def reversal_model(tmp_path_factory):
    """A seq2seq model trained on short digit reversals, with its task."""
    root = tmp_path_factory.mktemp("s2s")
    data = root / "pairs.txt"
    data.write_text("\n".join(f"{s}\t{t}" for s, t in reversal_pairs(3000, np.random.default_rng(0), 2, 5)))
    task = Seq2SeqTask(data, batch_size=32)
    model = Seq2Seq(Seq2SeqConfig(len(task.vocab), len(task.target_vocab), embedding_size=16, hidden_size=32),
                    rng=0)
    trainer = Trainer(model, task, TrainConfig(lr=5e-3, epochs=6, eval_every=10**6, progress=False), root)
    trainer.fit()
    return model, task, trainer.last_eval


def test_seq2seq_learns_short_reversals_and_beam_search_agrees(reversal_model):
    model, task, last_eval = reversal_model
    assert last_eval["exact_match"] > 0.95
    model.config.beam_size = 3
    try:
        assert model.evaluate(task)["exact_match"] > 0.95
    finally:
        model.config.beam_size = 1


def test_beam_search_of_width_one_is_greedy_decoding(reversal_model):
    model, task, _ = reversal_model
    batch = task.val[0]
    for b in range(40):
        source, length = batch.source[b], batch.source_lengths[b]
        greedy = model.greedy(source[None], length[None])[0][0]
        np.testing.assert_array_equal(model.beam_search(source, length, BOS_ID, EOS_ID, beam=1), greedy)


@pytest.mark.parametrize("width", [2, 4])
@pytest.mark.parametrize("trained", [True, False], ids=["trained", "untrained"])
def test_beam_search_never_scores_below_greedy_decoding(reversal_model, width, trained):
    """Scored the same way (mean log-probability per emitted token, <eos> included), the hypothesis beam search
    returns is never worse than greedy's — also for an untrained model, whose hypotheses differ most."""
    model, task, _ = reversal_model
    if not trained:
        model = Seq2Seq(model.config, rng=1)
    batch = task.val[0]
    for b in range(30):
        source, length = batch.source[b], batch.source_lengths[b]
        greedy = model.greedy(source[None], length[None], max_length=12)[0][0]
        beam = model.beam_search(source, length, BOS_ID, EOS_ID, beam=width, max_length=12)
        beam_score, greedy_score = (model.score(source, length, tokens, finished=len(tokens) < 12)
                                    for tokens in (beam, greedy))
        assert beam_score >= greedy_score - 1e-9, (b, beam, greedy)


def test_decoding_saves_nothing_for_a_backward(reversal_model):
    model, task, _ = reversal_model
    batch = task.val[0]
    model.translate(batch.source[:4], batch.source_lengths[:4])
    model.beam_search(batch.source[0], batch.source_lengths[0], BOS_ID, EOS_ID, beam=3)
    model.evaluate(task)
    assert all(m.pending_backwards == 0 for m in model.modules())


def test_translate_command_writes_a_heatmap(tmp_path, capsys):
    data = tmp_path / "pairs.txt"
    rng = np.random.default_rng(0)
    data.write_text("\n".join(f"{s}\t{s[::-1]}" for s in ("".join(rng.choice(list("abc"), 3)) for _ in range(64))))
    out = tmp_path / "s2s"
    code, _, err = run(["train", "seq2seq", "--data", str(data), "--hidden-size", "8", "--embedding-size", "8",
                        "--epochs", "1", "--out", str(out), "--no-progress"], capsys)
    assert code == 0, err
    assert json.loads((out / "checkpoint" / "meta.json").read_text())["kind"] == "seq2seq"
    code, stdout, err = run(["translate", str(out), "abc", "cab", "--heatmap", str(tmp_path / "att.png")], capsys)
    assert code == 0, err
    assert len(stdout.splitlines()) == 2 and (tmp_path / "att.png").stat().st_size > 1000
