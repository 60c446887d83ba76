"""More ``rnnkit`` commands: ``tag``, ``translate``, ``experiment``, ``diagnose``, ``bench``, ``gradcheck``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np

from . import checkpoint
from .builders import model_from_meta
from .cli import cli, fail


def load_kind(path: str, kind: str, what: str):
    """(meta, model) of a checkpoint of the given kind, or a one-line error naming what it is instead."""
    meta, state, _, _ = checkpoint.load(path)
    if meta.get("kind", "sequence") != kind:
        fail(f"{path!r} is not {what} (kind {meta.get('kind', 'sequence')!r})")
    return meta, model_from_meta(meta, state)


def refuse_existing(path, flag: str) -> None:
    if path and Path(path).exists():
        fail(f"{flag} {str(path)!r} already exists; choose another name (nothing is overwritten)")


@cli.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path())
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="CoNLL file: one token per line (first column), blank lines between sentences.")
@click.option("--output", type=click.Path(dir_okay=False), help="Write 'token<TAB>tag' lines here [stdout].")
def tag(checkpoint_path, input_path, output):
    """Tag the sentences of a CoNLL file with a tagging CHECKPOINT; with gold tags present, print entity F1."""
    from .tagging import encode_sentences, entity_scores, make_tag_batches, read_conll
    from .vocab import TokenVocabulary

    refuse_existing(output, "--output")
    meta, model = load_kind(checkpoint_path, "tagger", "a tagging model")
    sentences, gold = read_conll(input_path, require_tags=False)
    chars = TokenVocabulary(meta["chars_vocab"]) if meta.get("chars_vocab") else None
    seqs, char_seqs = encode_sentences(sentences, TokenVocabulary(meta["tokens"]), chars)
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
        tmp = Path(output).with_name(f".{Path(output).name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, output)
    else:
        click.echo(text, nl=False)
    if all(len(g) == len(s) for g, s in zip(gold, sentences)) and any(gold):
        scores = entity_scores(gold, predicted)
        click.echo("entity precision {precision:.4f} recall {recall:.4f} F1 {f1:.4f}".format(**scores), err=True)


@cli.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path())
@click.argument("sources", nargs=-1, required=True)
@click.option("--heatmap", type=click.Path(dir_okay=False),
              help="Save the attention weights of the first source as a PNG heatmap.")
@click.option("--beam-size", type=click.IntRange(min=1), default=None, help="Beam width [the checkpoint's].")
def translate(checkpoint_path, sources, heatmap, beam_size):
    """Decode SOURCES (one or more strings) with a seq2seq CHECKPOINT; print one output per line."""
    from .classify import tokenize
    from .plotting import plot_attention
    from .seq2seq import BOS_ID, EOS_ID
    from .sequences import pad_sequences
    from .vocab import TokenVocabulary

    refuse_existing(heatmap, "--heatmap")
    meta, model = load_kind(checkpoint_path, "seq2seq", "a seq2seq model")
    if beam_size:
        model.config.beam_size = beam_size
    unit = meta["task"].get("unit", "chars")
    src_vocab, tgt_vocab = TokenVocabulary(meta["tokens"]), TokenVocabulary(meta["target_tokens"])
    tokens = [tokenize(s, unit) for s in sources]
    if not all(tokens):
        fail("every source must contain at least one token")
    ids, lengths = pad_sequences([src_vocab.encode(t) for t in tokens], dtype=np.int64)
    outputs = model.translate(ids, lengths, BOS_ID, EOS_ID)
    joiner = "" if unit == "chars" else " "
    for out in outputs:
        click.echo(joiner.join(tgt_vocab.decode(out)))
    if heatmap:
        predicted, weights = model.greedy(ids[:1], lengths[:1], BOS_ID, EOS_ID)
        plot_attention(weights[0], tokens[0], tgt_vocab.decode(predicted[0]) + ["<eos>"], heatmap)
        click.echo(f"attention heatmap: {heatmap}", err=True)


@cli.command()
@click.argument("name", type=click.Choice(["reber", "adding", "adding1997", "copy"]))
@click.option("--out", "out", type=click.Path(file_okay=False), default="experiments", show_default=True)
@click.option("--seeds", type=click.IntRange(min=1), help="Seeds per (cell, length) [experiment's own].")
@click.option("--length", "lengths", type=click.IntRange(min=1), multiple=True, help="Sequence length(s) T.")
@click.option("--cell", "cells", type=click.Choice(["elman", "rnn", "lstm", "gru", "rhn", "mogrifier"]),
              multiple=True, help="Cells to compare [experiment's own]; elman = RNN trained without BPTT (Elman 1990).")
@click.option("--time-budget", type=click.FloatRange(min=1),
              help="Seconds of training per run; a run also stops once it succeeds [reber 30, adding 75, copy 60, "
                   "adding1997 60].")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs in parallel, one process and one BLAS thread each.")
def experiment(name, out, seeds, lengths, cells, time_budget, jobs):
    """Compare cells on a memory benchmark (several seeds and lengths); write NAME.md and NAME.png to --out."""
    from .experiments import EXPERIMENTS, markdown, run_experiment

    target = Path(out)
    if (target / f"{name}.md").exists():
        fail(f"{str(target / (name + '.md'))!r} already exists; choose another --out (nothing is overwritten)")
    rows = run_experiment(name, target, seeds=seeds, lengths=lengths, cells=cells, time_budget=time_budget,
                          jobs=jobs, log=lambda line: click.echo(line, err=True))
    click.echo(markdown(EXPERIMENTS[name], rows))
    click.echo(f"written: {target / (name + '.md')}, {target / (name + '.png')}", err=True)


@cli.command()
@click.argument("checkpoints", nargs=-1, type=click.Path())
@click.option("--cell", "cells", type=click.Choice(["rnn", "lstm", "gru", "rhn", "mogrifier"]), multiple=True,
              help="Freshly initialised models of these cells (in addition to any CHECKPOINTS).")
@click.option("--task", "task_name", type=click.Choice(["adding", "adding1997", "copy", "reber"]), default="adding",
              show_default=True, help="Data for fresh models (checkpoints use their own task's data).")
@click.option("--seq-length", type=click.IntRange(min=2), default=100, show_default=True)
@click.option("--hidden-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out", type=click.Path(file_okay=False), default="diagnostics", show_default=True)
def diagnose(checkpoints, cells, task_name, seq_length, hidden_size, seed, out):
    """Plot ‖∂L/∂h_t‖ against t, gate saturation, and spectral radii for CHECKPOINTS and/or fresh --cell models."""
    from .cli import make_memory_task
    from .diagnostics import diagnose as run_diagnose
    from .models import ModelConfig, SequenceModel

    if not checkpoints and not cells:
        fail("give CHECKPOINTS and/or --cell (e.g. --cell rnn --cell lstm)")
    target = Path(out)
    if (target / "grad_norms.png").exists():
        fail(f"{str(target)!r} already holds diagnostics; choose another --out (nothing is overwritten)")
    opts = {"seq_length": seq_length, "batch_size": 64, "seed": seed, "dtype": "float64"}
    task = make_memory_task(task_name, opts)
    models = {}
    for path in checkpoints:
        meta, state, _, _ = checkpoint.load(path)
        if meta.get("kind", "sequence") != "sequence" or meta["task"]["task"] not in ("adding", "adding1997", "copy",
                                                                                       "reber"):
            fail(f"{path!r}: diagnose takes models of the adding, adding1997, copy or reber tasks")
        task = make_memory_task(meta["task"]["task"], {**opts, **meta["task"]})
        models[f"{Path(path).name} ({meta['model']['cell']})"] = model_from_meta(meta, state)
    for cell in cells:
        config = ModelConfig(task.input_size, task.output_size, tokens=task.tokens, cell=cell,
                             hidden_size=hidden_size, forget_bias=1.0 if cell == "lstm" else None)
        models[f"{cell} (initial)"] = SequenceModel(config, rng=np.random.default_rng(seed))
    summary = run_diagnose(models, task, target)
    for label, s in summary.items():
        sat = ", ".join(f"{g} {v:.0%}" for g, v in s["saturation"].items())
        rho = ", ".join(f"{g} {v:.2f}" for g, v in s["spectral_radius"].items())
        click.echo(f"{label}: ‖∂L/∂h‖ at t=0 is {s['grad_norm_first_step']:.2e} vs {s['grad_norm_last_step']:.2e} "
                   f"at the loss (ratio {s['decay_first_over_last']:.1e}); saturated: {sat}; spectral radius: {rho}")
    click.echo(f"plots: {target / 'grad_norms.png'}, {target / 'saturation.png'}", err=True)


@cli.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path())
@click.option("--text", "text", default=None, help="The text to colour (default: the first 1000 characters of "
              "--text-file).")
@click.option("--text-file", type=click.Path(dir_okay=False), help="Read the text from a UTF-8 file.")
@click.option("--unit", "units", type=click.IntRange(min=0), multiple=True, help="Hidden unit(s) [0 .. 7].")
@click.option("--length", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Characters taken from --text-file.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default="units.html", show_default=True)
def visualize(checkpoint_path, text, text_file, units, length, out):
    """Write an HTML page colouring a text by hidden-unit activations of a character-model CHECKPOINT."""
    from .tasks import Vocabulary, read_text
    from .visualize import unit_page

    if (text is None) == (text_file is None):
        fail("give exactly one of --text or --text-file")
    refuse_existing(out, "--out")
    meta, state, _, _ = checkpoint.load(checkpoint_path)
    if not meta.get("vocab"):
        fail(f"{checkpoint_path!r} is not a character model (task {meta['task'].get('task')!r})")
    model = model_from_meta(meta, state)
    vocab = Vocabulary(meta["vocab"])
    if text_file:
        text = read_text(text_file)[:length]
    kept = "".join(ch for ch in text if ch in vocab.index)
    if len(kept) < len(text):
        click.echo(f"rnnkit: note: dropped {len(text) - len(kept)} characters that are not in the model's "
                   "vocabulary", err=True)
    text = kept
    page = unit_page(model, vocab, text, list(units) or list(range(min(8, model.config.hidden_size))))
    tmp = Path(out).with_name(f".{Path(out).name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    click.echo(f"written: {out}", err=True)


@cli.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path())
@click.option("--onnx", "onnx_path", required=True, type=click.Path(dir_okay=False), help="The .onnx file to write.")
@click.option("--initial-state", is_flag=True, help="Add h0 (and c0) inputs.")
@click.option("--lengths", is_flag=True, help="Add a 'lengths' (B,) int32 input for ragged batches.")
def export(checkpoint_path, onnx_path, initial_state, lengths):
    """Export a CHECKPOINT (RNN, LSTM or GRU model) to ONNX's standard recurrent operators."""
    from .onnx_export import export_onnx

    refuse_existing(onnx_path, "--onnx")
    _, model = load_kind(checkpoint_path, "sequence", "a sequence model (RNN/LSTM/GRU with an optional head)")
    model.eval()
    tmp = Path(onnx_path).with_name(f".{Path(onnx_path).name}.tmp")
    export_onnx(model, tmp, initial_state=initial_state, lengths=lengths)
    os.replace(tmp, onnx_path)
    click.echo(f"written: {onnx_path}", err=True)


@cli.command("gradcheck")
@click.option("--tol", type=float, default=1e-6, show_default=True)
def gradcheck_command(tol):
    """Check every layer's backward pass against float64 central differences."""
    from .gradcheck_suite import run_suite

    worst = 0.0
    for name, err in run_suite():
        worst = max(worst, err)
        click.echo(f"{name:<52} {err:9.2e}  {'ok' if err < tol else 'FAIL'}")
    click.echo(f"worst relative error {worst:.2e} (tolerance {tol:g})")
    sys.exit(0 if worst < tol else 1)


@cli.command()
@click.option("--cells", default="rnn,lstm,gru", show_default=True, help="Comma-separated subset of rnn,lstm,gru.")
@click.option("--batch", "batches", default="1,16,64", show_default=True, help="Comma-separated batch sizes.")
@click.option("--hidden", "hiddens", default="64,256,512", show_default=True,
              help="Comma-separated hidden sizes (input size = hidden size).")
@click.option("--steps", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads for both NumPy's BLAS and torch [all cores].")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--no-torch", is_flag=True, help="Time rnnkit alone.")
@click.option("--no-memory", is_flag=True, help="Skip the peak-memory measurement.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the results as JSON.")
def bench(cells, batches, hiddens, steps, threads, repeats, no_torch, no_memory, json_path):
    """Time forward and forward+backward of RNN, LSTM and GRU against torch (see docs/performance.md)."""
    from . import bench as bench_lib

    def ints(text, name):
        try:
            values = tuple(int(v) for v in text.split(","))
        except ValueError:
            fail(f"--{name} takes comma-separated integers, got {text!r}")
        if min(values) < 1:
            fail(f"--{name} values must be >= 1, got {text!r}")
        return values

    cell_list = tuple(c.strip() for c in cells.split(","))
    unknown = sorted(set(cell_list) - set(bench_lib.GATES))
    if unknown:
        fail(f"--cells must be a subset of rnn,lstm,gru, got {', '.join(unknown)}")
    batch_sizes, hidden_sizes = ints(batches, "batch"), ints(hiddens, "hidden")
    if os.environ.get("RNNKIT_BENCH_CHILD") != "1":  # time in a child whose BLAS/OpenMP threads do not spin
        args = ["bench", "--cells", cells, "--batch", batches, "--hidden", hiddens, "--steps", str(steps),
                "--repeats", str(repeats)] + (["--threads", str(threads)] if threads else []) \
            + (["--no-torch"] if no_torch else []) + (["--no-memory"] if no_memory else []) \
            + (["--json", json_path] if json_path else [])
        child = subprocess.run([sys.executable, "-m", "rnnkit", *args], env=bench_lib.child_environment())
        if child.returncode:
            sys.exit(child.returncode)
        return

    records = list(bench_lib.run(cell_list, batch_sizes, hidden_sizes, steps=steps,
                                 threads=threads, repeats=repeats, with_torch=not no_torch, memory=not no_memory))
    click.echo(bench_lib.format_table(records))
    if json_path:
        meta = {"steps": steps, "threads": threads or os.cpu_count(), "repeats": repeats,
                "numpy": np.__version__, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        tmp = Path(json_path).with_name(f".{Path(json_path).name}.tmp")
        tmp.write_text(bench_lib.to_json(records, meta), encoding="utf-8")
        os.replace(tmp, json_path)


