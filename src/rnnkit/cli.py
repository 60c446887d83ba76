"""The ``rnnkit`` command: ``train``, ``sample``, ``gradcheck``.

Errors in flags, data or checkpoints print one line (``rnnkit: error: ...``) and exit with status 2; nothing
already on disk is overwritten (a run directory holding a checkpoint is only continued with ``--resume``).
Set ``RNNKIT_DEBUG=1`` to see the full traceback instead.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click
import numpy as np
from click.core import ParameterSource

from . import checkpoint
from .builders import STRUCTURED_TASKS, build_structured, model_from_meta
from .models import CELLS, ModelConfig, SequenceModel
from .tasks import AddingTask, TextTask, Vocabulary
from .trainer import TrainConfig, Trainer, TrainingError

TASKS = ("adding", "text", "classify", "tagging", "seq2seq", "reber", "adding1997", "copy")
_TASK_DEFAULT_KEYS = ("cell", "seq_length", "batch_size", "hidden_size", "num_layers", "lr", "eval_every", "epochs")
TASK_DEFAULTS = {name: dict(zip(_TASK_DEFAULT_KEYS, values)) for name, values in {
    "adding": ("rnn", 20, 32, 64, 1, 1e-3, 1000, 100),
    "text": ("rnn", 50, 50, 128, 2, 2e-3, 250, 10),
    "classify": ("lstm", 0, 32, 64, 1, 3e-3, 100, 10),
    "tagging": ("lstm", 0, 16, 64, 1, 3e-3, 100, 10),
    "seq2seq": ("lstm", 0, 64, 128, 1, 3e-3, 250, 10),
    "reber": ("lstm", 0, 16, 16, 1, 1e-2, 160, 300),
    "adding1997": ("lstm", 100, 32, 32, 1, 3e-3, 500, 60),
    "copy": ("lstm", 50, 32, 64, 1, 3e-3, 500, 40),
}.items()}
MODEL_FLAGS = ("cell", "hidden_size", "num_layers", "dropout", "nonlinearity", "embedding_size", "dtype", "forget_bias",
               "proj_size", "peephole", "reset_after", "depth", "coupled", "transform_bias", "rounds", "rank",
               "detach_state")


class UserError(Exception):
    """An error caused by what the user asked for; printed as one line, exit status 2."""


def fail(message: str) -> None:
    raise UserError(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="rnnkit")
def cli():
    """rnnkit: recurrent neural networks from first principles (NumPy)."""


@cli.command()
@click.argument("task", type=click.Choice(TASKS), default="reber")
@click.option("--data", type=click.Path(dir_okay=False), help="UTF-8 text file (task 'text').")
@click.option("--cell", type=click.Choice(sorted(CELLS)), default=None,
              help="Recurrent cell [adding, text: rnn; classify, tagging, seq2seq: lstm].")
@click.option("--hidden-size", "--rnn-size", "hidden_size", type=click.IntRange(min=1),
              help="Units per layer [adding: 64, text: 128].")
@click.option("--num-layers", type=click.IntRange(min=1), help="Stacked layers [adding: 1, text: 2].")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True)
@click.option("--nonlinearity", type=click.Choice(["tanh", "relu"]), default="tanh", show_default=True,
              help="RNN only.")
@click.option("--detach-state", is_flag=True,
              help="Train as Elman (1990): no error is propagated back through time (the previous state is a "
                   "constant input to each step).")
@click.option("--forget-bias", type=float, default=1.0, show_default=True,
              help="LSTM/Mogrifier: initial forget-gate bias (char-rnn and Keras use 1).")
@click.option("--proj-size", type=click.IntRange(min=0), default=0, show_default=True,
              help="LSTM/Mogrifier: project h to this size (PyTorch's proj_size).")
@click.option("--peephole", is_flag=True, help="LSTM/Mogrifier: peephole connections.")
@click.option("--reset-after/--reset-before", "reset_after", default=True, show_default=True,
              help="GRU only: reset gate after (PyTorch) or before (Cho 2014) the recurrent matmul.")
@click.option("--depth", type=click.IntRange(min=1), default=3, show_default=True,
              help="RHN only: micro-cells per step.")
@click.option("--coupled/--uncoupled", "coupled", default=True, show_default=True,
              help="RHN only: carry gate 1 − t (coupled) or its own gate.")
@click.option("--transform-bias", type=float, default=-2.0, show_default=True, help="RHN only: initial t-gate bias.")
@click.option("--rounds", type=click.IntRange(min=0), default=5, show_default=True,
              help="Mogrifier only: gating rounds (0 = LSTM).")
@click.option("--rank", type=click.IntRange(min=1), default=None, help="Mogrifier only: low-rank Q and R.")
@click.option("--embedding-size", type=click.IntRange(min=0), default=0, show_default=True,
              help="Token embedding size; 0 feeds one-hot characters as char-rnn does.")
@click.option("--seq-length", type=click.IntRange(min=2), help="Sequence / BPTT chunk length [adding: 20, text: 50].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Sequences per batch [adding: 32, text: 50].")
@click.option("--lr", "--learning-rate", "lr", type=click.FloatRange(min=0, min_open=True),
              help="Learning rate [adding: 1e-3, text: 2e-3].")
@click.option("--optimizer", type=click.Choice(["adam", "rmsprop", "sgd", "adagrad"]), default="adam",
              show_default=True)
@click.option("--lr-decay", "--learning-rate-decay", "lr_decay", type=click.FloatRange(0, 1, min_open=True),
              default=1.0, show_default=True, help="Multiply the learning rate by this every epoch (char-rnn) ...")
@click.option("--lr-decay-after", "--learning-rate-decay-after", "lr_decay_after", type=click.IntRange(min=0),
              default=10, show_default=True, help="... starting at this epoch.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads for NumPy's BLAS during training [all cores].")
@click.option("--momentum", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--grad-clip", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Clip the global gradient norm (0: off).")
@click.option("--k1", type=click.IntRange(min=0), default=0,
              help="Truncated BPTT: steps between updates (default: text → seq-length, adding → full BPTT).")
@click.option("--k2", type=click.IntRange(min=0), default=0, help="Truncated BPTT: steps backpropagated (>= k1).")
@click.option("--epochs", "--max-epochs", "epochs", type=click.IntRange(min=1),
              help="Passes over the data [adding: 100 epochs of 100 batches, text: 10].")
@click.option("--max-steps", type=click.IntRange(min=0), default=0, help="Stop after this many updates (0: no limit).")
@click.option("--time-limit", type=click.FloatRange(min=0), default=0.0,
              help="Stop (with a checkpoint) after this many seconds of training.")
@click.option("--eval-every", "--eval-val-every", "eval_every", type=click.IntRange(min=1),
              help="Validate and checkpoint every N updates [adding: 1000, text: 250].")
@click.option("--val-fraction", type=float, default=0.05, show_default=True, help="Share of the data for validation.")
@click.option("--unit", type=click.Choice(["words", "chars"]), default=None,
              help="classify/seq2seq: split text into words or characters [classify: words, seq2seq: chars].")
@click.option("--pooling", type=click.Choice(["last", "mean", "max"]), default="last", show_default=True,
              help="classify: how the steps are summarised.")
@click.option("--bidirectional/--unidirectional", default=True, show_default=True, help="classify: encoder direction.")
@click.option("--val-data", type=click.Path(dir_okay=False), help="tagging: a separate CoNLL validation file.")
@click.option("--char-features/--no-char-features", default=True, show_default=True,
              help="tagging: add a character BiLSTM per word.")
@click.option("--crf/--no-crf", default=True, show_default=True, help="tagging: CRF output layer or per-token softmax.")
@click.option("--attention", type=click.Choice(["bahdanau", "luong-dot", "luong-general"]), default="bahdanau",
              show_default=True, help="seq2seq: attention scoring.")
@click.option("--beam-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="seq2seq: beam width for evaluation decoding (1: greedy).")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out", type=click.Path(file_okay=False), help="Run directory [runs/<task>-<time>].")
@click.option("--resume", is_flag=True, help="Continue the checkpoint in --out exactly where it stopped.")
@click.option("--init-from", type=click.Path(), help="Start from the weights (and config) of a checkpoint.")
@click.option("--skip-nonfinite", is_flag=True,
              help="Skip an update whose loss or gradient is NaN/Inf instead of stopping.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def train(ctx, task, data, out, resume, init_from, no_progress, **opts):
    """Train a model on TASK: 'reber' (the embedded Reber grammar, default), 'adding' / 'adding1997' / 'copy'
    (memory benchmarks), 'text' (a character language model), 'classify' (label<TAB>text lines), 'tagging'
    (CoNLL columns) or 'seq2seq' (source<TAB>target lines; without --data, the built-in digit reversal)."""
    explicit = {k for k in opts if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
    if resume and init_from:
        fail("--resume and --init-from cannot be combined (resume continues --out; init-from starts a new run)")
    if resume and not out:
        fail("--resume needs --out, the run directory to continue")
    run_dir = Path(out) if out else Path("runs") / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
    has_checkpoint = run_dir.exists() and any((run_dir / n / "meta.json").exists()
                                              for n in (checkpoint.NAME, checkpoint.OLD))
    if run_dir.exists() and not run_dir.is_dir():
        fail(f"--out {str(run_dir)!r} exists and is not a directory")
    if has_checkpoint and not resume:
        fail(f"{str(run_dir)!r} already holds a checkpoint; pass --resume to continue it or choose another --out")
    if resume and not has_checkpoint:
        fail(f"--resume: no checkpoint in {str(run_dir)!r}")

    saved = checkpoint.load(run_dir) if resume else None
    base = checkpoint.load(init_from) if init_from else None
    if saved:
        meta = saved[0]
        conflicts = [k for k in explicit & set(MODEL_FLAGS) if meta["model"].get(k) != opts[k]]
        if conflicts:
            fail("--resume keeps the checkpoint's model; these flags differ from it: " + ", ".join(
                f"--{k.replace('_', '-')} {opts[k]} (checkpoint: {meta['model'][k]})" for k in sorted(conflicts)))
        task = meta["task"]["task"]
        data = meta["task"].get("data", data)
    for key, value in TASK_DEFAULTS[task].items():
        if opts.get(key) is None:
            opts[key] = value
    if saved:  # the run's own settings win over defaults
        for key in ("seq_length", "batch_size"):
            opts[key] = saved[0]["task"][key]
        for key in ("lr", "optimizer", "momentum", "weight_decay", "grad_clip", "k1", "k2", "eval_every", "seed",
                    "epochs", "max_steps", "time_limit", "lr_decay", "lr_decay_after"):
            if key not in explicit:
                opts[key] = saved[0]["train"].get(key, opts[key])

    if opts["val_fraction"] is not None and not 0 < opts["val_fraction"] < 0.5:
        fail(f"--val-fraction must be in (0, 0.5), got {opts['val_fraction']}")
    if opts["unit"] is None:
        opts["unit"] = "chars" if task == "seq2seq" else "words"
    if task in STRUCTURED_TASKS:
        if "val_fraction" not in explicit:
            opts["val_fraction"] = 0.1
        opts["val_data"] = opts.get("val_data")
        the_task, model = build_structured(task, data, opts, saved[0] if saved else None)
        if base:
            model.load_state_dict(base[1])
        return _fit(task, the_task, model, opts, run_dir, saved, no_progress)

    vocab = None
    if base and base[0].get("vocab"):
        vocab = Vocabulary(base[0]["vocab"])
    if saved and saved[0].get("vocab"):
        vocab = Vocabulary(saved[0]["vocab"])
    if opts["cell"] == "jordan" and "num_layers" not in explicit:
        opts["num_layers"] = 1
    if task == "text":
        if not data:
            fail("task 'text' needs --data FILE (a UTF-8 text file)")
        the_task = TextTask(data, seq_length=opts["seq_length"], batch_size=opts["batch_size"],
                            val_fraction=opts["val_fraction"], vocabulary=vocab)
    else:
        if data:
            fail(f"task {task!r} generates its own data; --data is for text, classify, tagging and seq2seq")
        the_task = make_memory_task(task, opts)

    if saved:
        model_config = ModelConfig.from_dict(saved[0]["model"])
    elif base:
        model_config = ModelConfig.from_dict(base[0]["model"])
        if (model_config.input_size, model_config.output_size) != (the_task.input_size, the_task.output_size):
            fail(f"--init-from model has input/output sizes ({model_config.input_size}, {model_config.output_size}),"
                 f" the task needs ({the_task.input_size}, {the_task.output_size})")
    else:
        model_config = ModelConfig(input_size=the_task.input_size, output_size=the_task.output_size,
                                   tokens=the_task.tokens, embedding_size=opts["embedding_size"], cell=opts["cell"],
                                   hidden_size=opts["hidden_size"], num_layers=opts["num_layers"],
                                   dropout=opts["dropout"], nonlinearity=opts["nonlinearity"], dtype=opts["dtype"],
                                   forget_bias=opts["forget_bias"] if opts["cell"] in ("lstm", "mogrifier") else None,
                                   proj_size=opts["proj_size"], peephole=opts["peephole"],
                                   reset_after=opts["reset_after"], depth=opts["depth"], coupled=opts["coupled"],
                                   transform_bias=opts["transform_bias"], rounds=opts["rounds"], rank=opts["rank"],
                                   detach_state=opts["detach_state"])
    model = SequenceModel(model_config, rng=np.random.default_rng(opts["seed"]))
    if base:
        model.load_state_dict(base[1])
    _fit(task, the_task, model, opts, run_dir, saved, no_progress)


def make_memory_task(task: str, opts: dict):
    """The built-in generated tasks: adding (two-channel), adding1997, copy, reber."""
    from .memory_tasks import Adding1997Task, CopyTask, ReberTask

    if task == "reber":
        return ReberTask(batch_size=opts["batch_size"], seed=opts["seed"])
    if task == "adding1997":
        return Adding1997Task(seq_length=opts["seq_length"], batch_size=opts["batch_size"], seed=opts["seed"])
    if task == "copy":
        return CopyTask(seq_length=opts["seq_length"], batch_size=opts["batch_size"], seed=opts["seed"])
    return AddingTask(seq_length=opts["seq_length"], batch_size=opts["batch_size"], seed=opts["seed"],
                      dtype=np.dtype(opts["dtype"]))


def _fit(task, the_task, model, opts, run_dir, saved, no_progress) -> None:
    """Train ``model`` on ``the_task`` with the run's options; print a one-line summary (and a confusion matrix)."""
    config = TrainConfig(optimizer=opts["optimizer"], lr=opts["lr"], weight_decay=opts["weight_decay"],
                         momentum=opts["momentum"], grad_clip=opts["grad_clip"], epochs=opts["epochs"],
                         max_steps=opts["max_steps"], time_limit=opts["time_limit"], k1=opts["k1"], k2=opts["k2"],
                         eval_every=opts["eval_every"], seed=opts["seed"], progress=not no_progress,
                         skip_nonfinite=opts["skip_nonfinite"], lr_decay=opts["lr_decay"],
                         lr_decay_after=opts["lr_decay_after"])
    trainer = Trainer(model, the_task, config, run_dir)
    if saved:
        trainer.restore(*saved)
    click.echo(f"rnnkit: training {type(model).__name__}/{model.config.cell.upper()} ({model.num_parameters():,} "
               f"parameters) on '{task}' → {run_dir}", err=True)
    if opts.get("threads"):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(opts["threads"], user_api="blas"):
            trainer.fit()
    else:
        trainer.fit()
    scalars = {k: v for k, v in trainer.last_eval.items() if np.ndim(v) == 0}
    summary = f"done: {trainer.step} updates in {trainer.elapsed:.1f} s"
    if scalars:
        summary += ", validation " + ", ".join(f"{k.removeprefix('val_')} {v:.4f}" for k, v in scalars.items())
        if getattr(the_task, "baseline", None):
            summary += f" (trivial baseline {the_task.baseline:.4f})"
    click.echo(summary + f"; checkpoint: {run_dir / checkpoint.NAME}")
    if "confusion" in trainer.last_eval:
        names = the_task.labels.labels
        click.echo("confusion matrix (rows: true, columns: predicted): " + ", ".join(names))
        for name, row in zip(names, trainer.last_eval["confusion"]):
            click.echo(f"  {name:>12} " + " ".join(f"{v:6d}" for v in row))


@cli.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path())
@click.option("--length", "-n", type=click.IntRange(min=0), default=500, show_default=True)
@click.option("--temperature", "-t", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@click.option("--prime", "--primetext", "prime", default="", help="Text to condition on (default: a random character).")
@click.option("--seed", type=int, default=None)
def sample(checkpoint_path, length, temperature, prime, seed):
    """Print text sampled from a character-model CHECKPOINT (a run directory or its checkpoint/ folder)."""
    from .sampling import sample_text

    meta, state, _, _ = checkpoint.load(checkpoint_path)
    if not meta.get("vocab"):
        fail(f"{checkpoint_path!r} is not a character model (task {meta['task'].get('task')!r}); nothing to sample")
    model = model_from_meta(meta, state)
    text = sample_text(model, Vocabulary(meta["vocab"]), length, prime, temperature, np.random.default_rng(seed))
    click.echo(text)


from . import cli_tools  # noqa: E402,F401  (registers tag, translate, bench, experiment, diagnose, gradcheck)


def main(argv=None) -> None:
    """Entry point: one-line errors with exit status 2, never a traceback for bad input."""
    try:
        cli.main(args=argv, prog_name="rnnkit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("rnnkit: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.ClickException as e:  # bad flags, bad choices, missing arguments
        click.echo(f"rnnkit: error: {e.format_message()}", err=True)
        sys.exit(2)
    except (UserError, ValueError, TypeError, KeyError, OSError, TrainingError) as e:
        if os.environ.get("RNNKIT_DEBUG"):
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        click.echo(f"rnnkit: error: {message}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("rnnkit: interrupted", err=True)
        sys.exit(130)
