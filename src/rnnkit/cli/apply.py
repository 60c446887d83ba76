"""Applying a trained model: ``sample`` (text), ``tag`` (CoNLL files), ``translate`` (seq2seq), ``transcribe``
(CTC), ``export`` (ONNX)."""

from __future__ import annotations

import click
import numpy as np

from ..errors import CheckpointError, DataError
from ..training.files import atomic_write
from .common import fail, load_char_model, load_kind, refuse_existing
from .options import BEAM_WIDTH, SAMPLE_LENGTH, SEED, TEMPERATURE


@click.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path())
@click.option("--length", "-n", type=SAMPLE_LENGTH, default=500, show_default=True,
              help="Characters to generate after the prime.")
@click.option("--temperature", "-t", type=TEMPERATURE, default=1.0, show_default=True,
              help="Divides the logits before sampling: below 1 more conservative, above 1 more varied.")
@click.option("--prime", "--primetext", "prime", default="", help="Text to condition on (default: a random character).")
@click.option("--seed", type=SEED, default=None, help="Seed of the sampling (default: a different text each run).")
def sample(checkpoint_path, length, temperature, prime, seed):
    """Print text sampled from a character-model CHECKPOINT (a run directory or its checkpoint/ folder)."""
    from ..training.sampling import sample_text

    _, model, vocab = load_char_model(checkpoint_path)
    click.echo(sample_text(model, vocab, length, prime, temperature, np.random.default_rng(seed)))


@click.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path())
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="CoNLL file: one token per line (first column), blank lines between sentences.")
@click.option("--output", type=click.Path(dir_okay=False), help="Write 'token<TAB>tag' lines here [stdout].")
def tag(checkpoint_path, input_path, output):
    """Tag the sentences of a CoNLL file with a tagging CHECKPOINT; with gold tags present, print entity F1."""
    from ..tasks.tagging import encode_sentences, entity_scores, make_tag_batches, read_conll
    from ..tasks.vocab import TokenVocabulary, stored

    refuse_existing(output, "--output")
    meta, model = load_kind(checkpoint_path, "tagger")
    sentences, gold = read_conll(input_path, require_tags=False)
    _check_gold_tags(input_path, gold, model.config.tag_names)
    seqs, char_seqs = encode_sentences(sentences, TokenVocabulary(meta["tokens"]),
                                       stored(meta, "chars_vocab", TokenVocabulary))
    dummy = [np.zeros(len(s), np.int64) for s in seqs]
    names = model.config.tag_names
    predicted = []
    for batch in make_tag_batches(seqs, char_seqs, dummy, np.arange(len(seqs)), 64):
        predicted += [[names[i] for i in path] for path in model.predict(batch)]
    lines = []
    for words, tags in zip(sentences, predicted):
        lines += [f"{w}\t{t}" for w, t in zip(words, tags)] + [""]
    text = "\n".join(lines)
    if output:
        atomic_write(output, text)
    else:
        click.echo(text, nl=False)
    if all(len(g) == len(s) for g, s in zip(gold, sentences)) and any(gold):
        scores = entity_scores(gold, predicted)
        click.echo("entity precision {precision:.4f} recall {recall:.4f} F1 {f1:.4f}".format(**scores), err=True)


def _check_gold_tags(path, gold: list[list[str]], names) -> None:
    """A second column read as gold tags must hold the model's tags: otherwise the file is not a CoNLL file."""
    from ..tasks.formats import FORMATS

    unknown = next((t for tags in gold for t in tags if t not in names), None)
    if unknown is not None:
        shown = ", ".join(list(names)[:4]) + (", …" if len(names) > 4 else "")
        raise DataError(f"{path}: expected {FORMATS['conll-tokens']} whose last column holds the model's tags "
                        f"({shown}), got the tag {unknown!r}")


@click.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path())
@click.argument("sources", nargs=-1, required=True)
@click.option("--heatmap", type=click.Path(dir_okay=False),
              help="Save the attention weights of the first source as a PNG heatmap.")
@click.option("--beam-size", type=BEAM_WIDTH, default=None, help="Beam width [the checkpoint's].")
def translate(checkpoint_path, sources, heatmap, beam_size):
    """Decode SOURCES (one or more strings) with a seq2seq CHECKPOINT; print one output per line."""
    from ..sequences import pad_sequences
    from ..tasks.classify import tokenize
    from ..tasks.vocab import TokenVocabulary
    from ..training.plotting import plot_attention

    refuse_existing(heatmap, "--heatmap")
    meta, model = load_kind(checkpoint_path, "seq2seq")
    if beam_size:
        model.config.beam_size = beam_size
    unit = meta["task"].get("unit", "chars")
    src_vocab, tgt_vocab = TokenVocabulary(meta["tokens"]), TokenVocabulary(meta["target_tokens"])
    tokens = [tokenize(s, unit) for s in sources]
    if not all(tokens):
        fail("every source must contain at least one token")
    unknown = sorted({t for seq in tokens for t in seq if t not in src_vocab.index})
    if unknown:  # as `sample` does: refuse rather than silently translate <unk>
        what = "characters" if unit == "chars" else "tokens"
        shown = "".join(unknown) if unit == "chars" else " ".join(unknown)
        fail(f"{what} not in the model's source vocabulary: {shown[:40]!r}")
    joiner = "" if unit == "chars" else " "
    for out in _decoded(model, [src_vocab.encode(t) for t in tokens]):
        click.echo(joiner.join(tgt_vocab.decode(out)))
    if heatmap:
        ids, lengths = pad_sequences([src_vocab.encode(tokens[0])], dtype=np.int64)
        predicted, weights = model.greedy(ids, lengths)
        plot_attention(weights[0], tokens[0], tgt_vocab.decode(predicted[0]) + ["<eos>"], heatmap)
        click.echo(f"attention heatmap: {heatmap}", err=True)


TRANSLATED_AT_ONCE = 32  # sources decoded in one batch; a bar over them on a terminal when there are more


def _decoded(model, sources: list[np.ndarray]) -> list[np.ndarray]:
    """The model's outputs (token ids) for ``sources``, decoded in batches of `TRANSLATED_AT_ONCE` under a bar (each
    row's decoding is independent of its batch's other rows)."""
    from ..sequences import pad_sequences
    from ..training.progress import progress

    outputs = []
    with progress(total=len(sources), desc="translate", unit="source",
                  enabled=len(sources) > TRANSLATED_AT_ONCE) as bar:
        for start in range(0, len(sources), TRANSLATED_AT_ONCE):
            chunk = sources[start:start + TRANSLATED_AT_ONCE]
            outputs += model.translate(*pad_sequences(chunk, dtype=np.int64))
            bar.update(len(chunk))
    return outputs


@click.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path())
@click.option("--onnx", "onnx_path", required=True, type=click.Path(dir_okay=False), help="The .onnx file to write.")
@click.option("--initial-state", is_flag=True, help="Add h0 (and c0) inputs.")
@click.option("--lengths", is_flag=True, help="Add a 'lengths' (B,) int32 input for ragged batches.")
def export(checkpoint_path, onnx_path, initial_state, lengths):
    """Export a CHECKPOINT (RNN, LSTM or GRU model) to ONNX's standard recurrent operators."""
    from ..onnx_export import export_onnx

    _onnx_installed()
    refuse_existing(onnx_path, "--onnx")
    _, model = load_kind(checkpoint_path, "sequence")
    model.eval()
    atomic_write(onnx_path, lambda tmp: export_onnx(model, tmp, initial_state=initial_state, lengths=lengths))
    click.echo(f"written: {onnx_path}", err=True)


def _onnx_installed() -> None:
    """One line and exit status 2, before any work, when the onnx package is missing."""
    from importlib.util import find_spec

    from ..errors import DependencyError

    try:
        missing = find_spec("onnx") is None
    except (ImportError, ValueError):  # a broken or stubbed-out installation
        missing = True
    if missing:
        raise DependencyError("ONNX export needs the onnx package: pip install 'rnnkit[onnx]'")


@click.command("eval")
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path())
@click.option("--data", "data", required=True, type=click.Path(dir_okay=False),
              help="UTF-8 text to score ('shakespeare': the bundled corpus).")
@click.option("--seq-length", type=click.IntRange(min=1), default=None, help="Window length [the checkpoint's].")
@click.option("--fresh-state", is_flag=True,
              help="Start every window from a zero state (default: carry it across windows, as in training).")
def evaluate(checkpoint_path, data, seq_length, fresh_state):
    """Score a character-model CHECKPOINT on a text: loss (nats per character), bits per character, perplexity."""
    from ..tasks.text import read_text
    from ..training.sampling import text_scores

    meta, model, vocab = load_char_model(checkpoint_path)
    window = seq_length or meta["task"].get("seq_length") or 50
    s = text_scores(model, vocab, read_text(data), window, carry=not fresh_state)
    state = "a zero state in every window" if fresh_state else "the state carried across windows"
    click.echo(f"loss {s['loss']:.4f} nats/char, {s['bits_per_char']:.4f} bits/char, perplexity "
               f"{s['perplexity']:.3f} over {s['characters']:,} characters (windows of {window}, {state})")


@click.command("classify")
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path())
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="UTF-8 file: one text per line, or 'label<TAB>text' lines (then the accuracy is printed too).")
@click.option("--output", type=click.Path(dir_okay=False), help="Write 'label<TAB>text' lines here [stdout].")
def classify(checkpoint_path, input_path, output):
    """Classify the lines of a file with a classifier CHECKPOINT; print 'label<TAB>text' for each line."""
    from ..sequences import pad_sequences
    from ..tasks.classify import tokenize
    from ..tasks.formats import refuse_conll
    from ..tasks.text import read_text
    from ..tasks.vocab import TokenVocabulary

    refuse_existing(output, "--output")
    meta, model = load_kind(checkpoint_path, "classifier")
    vocab, names, unit = TokenVocabulary(meta["tokens"]), list(meta["labels"]), meta["task"].get("unit", "words")
    every_line = read_text(input_path).splitlines()
    refuse_conll(input_path, every_line, "lines")
    lines = [line for line in every_line if line.strip()]
    split = [line.partition("\t") for line in lines]
    labelled = all(tab and label.strip() in names for label, tab, _ in split)
    texts = [text for _, _, text in split] if labelled else lines
    predicted = []
    for start in range(0, len(texts), 256):
        seqs = [vocab.encode(tokenize(t, unit) or ["<empty>"]) for t in texts[start:start + 256]]
        ids, lengths = pad_sequences(seqs, dtype=np.int64)
        predicted += [names[i] for i in model.predict(ids, lengths)]
    text = "".join(f"{label}\t{t}\n" for label, t in zip(predicted, texts))
    if output:
        atomic_write(output, text)
    else:
        click.echo(text, nl=False)
    if labelled:
        right = sum(p == label.strip() for p, (label, _, _) in zip(predicted, split))
        click.echo(f"accuracy {right / len(lines):.4f} ({right} of {len(lines)})", err=True)


@click.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path())
@click.option("--count", "-n", type=click.IntRange(1, 100_000), default=10, show_default=True,
              help="Fresh sequences to draw from the checkpoint's task.")
@click.option("--beam-width", type=BEAM_WIDTH, default=1, show_default=True,
              help="1: greedy (best-path) decoding; more: CTC prefix beam search.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the drawn sequences.")
def transcribe(checkpoint_path, count, beam_width, seed):
    """Transcribe fresh sequences of a CTC CHECKPOINT's task (rnnkit train ctc): print 'true<TAB>decoded' symbol
    strings, and the label error rate on stderr."""
    from ..tasks.ctc import FrameTranscriptionTask, label_errors

    meta, model = load_kind(checkpoint_path, "transcriber")
    task = FrameTranscriptionTask.from_config(meta["task"], dtype=model.config.dtype)
    sizes, wanted = (task.input_size, task.output_size), (model.config.input_size, model.config.num_classes)
    if sizes != wanted:
        raise CheckpointError(f"checkpoint task makes frames of {sizes[0]} features and {sizes[1]} classes, its model "
                              f"takes {wanted[0]} and {wanted[1]}")
    batch = task.generator.batch(np.random.default_rng([seed, 2**21]), count, task.dtype)
    decoded = model.transcribe(batch.x, batch.lengths, beam_width=beam_width)
    names = model.config.symbols or [str(i) for i in range(model.config.num_classes)]
    for row, labels in enumerate(decoded):
        truth = batch.target[row, :batch.target_lengths[row]]
        click.echo("".join(names[i] for i in truth) + "\t" + "".join(names[i] for i in labels))
    errors, total, exact = label_errors(decoded, batch)
    click.echo(f"label error rate {errors / total:.4f} ({errors} edits over {total} labels; {exact} of {count} "
               "sequences exact)", err=True)
