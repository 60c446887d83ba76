"""The process that runs a submission's exercise cells for `rnnkit.teaching.grade`, and the JSON the two exchange.

The parent (`rnnkit.teaching.run_submission`) starts ``python -I teaching_child.py`` and writes one JSON request on
its stdin: ``{"path": [...], "cells": [source, ...], "cases": {exercise: [[argument, ...], ...]}}``. This process
runs the cells in one namespace that starts with ``np``, calls each exercise function it finds on each case's
arguments, and writes one JSON answer to the pipe that was its stdout (what the submission prints goes to
stderr)::

    {"cell_errors": {"0": "ValueError: ..."},
     "results": {"linear_backward": {"outputs": [value, ...]} | {"raised": "..."} | {"not_implemented": true}
                                    | {"not_callable": "int"}}}

It computes no reference and compares nothing: the parent does both with its own objects, so nothing the
submission replaces here changes a verdict. Values travel as `encode` writes them (arrays as shape + float64 list;
never pickle). This module imports nothing from rnnkit, so it runs without importing the package.
"""

from __future__ import annotations

import json
import os
import sys


def encode(value):
    """A JSON-able form of an exercise's argument or result: arrays and numbers as ``{"shape", "data"}``
    (float64), tuples and lists as ``{"items", "tuple"}``, dicts of str keys as ``{"dict"}``; anything else as
    ``{"other": type name}`` (the parent reports it as not numeric)."""
    import numpy as np

    if isinstance(value, (tuple, list)):
        return {"items": [encode(v) for v in value], "tuple": isinstance(value, tuple)}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: encode(v) for k, v in value.items()}}
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 - whatever a submission returns is described, not raised
        return {"other": type(value).__name__}
    if array.dtype.kind not in "biuf":
        return {"other": type(value).__name__}
    return {"shape": list(array.shape), "data": array.astype(np.float64).ravel().tolist()}


def decode(obj):
    """The value `encode` wrote: float64 arrays, tuples, lists, dicts, or `Unreadable` for ``{"other"}``."""
    import numpy as np

    if not isinstance(obj, dict):
        raise ValueError(f"expected an encoded value, got {type(obj).__name__}")
    if "items" in obj:
        items = [decode(v) for v in obj["items"]]
        return tuple(items) if obj.get("tuple") else items
    if "dict" in obj:
        return {k: decode(v) for k, v in obj["dict"].items()}
    if "other" in obj:
        return Unreadable(str(obj["other"]))
    return np.asarray(obj["data"], dtype=np.float64).reshape(obj["shape"])


class Unreadable:
    """A value the submission returned that is not numeric (its type's name is all that crossed the pipe)."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


def run_cells(cells: list[str]) -> tuple[dict, dict]:
    """The namespace after running ``cells`` in order, and {cell index: error} of the cells that raised."""
    import numpy as np

    namespace: dict = {"np": np, "__name__": "exercises"}
    errors = {}
    for index, source in enumerate(cells):
        try:
            exec(compile(source, f"<exercise cell {index + 1}>", "exec"), namespace)  # noqa: S102 - grading
        except BaseException as e:  # noqa: BLE001 - SystemExit from a student's cell is a failure, not an exit
            errors[str(index)] = f"{type(e).__name__}: {e}"
    return namespace, errors


def call_exercise(fn, cases: list) -> dict:
    """The answer for one exercise function over its cases (see the module's docstring)."""
    if not callable(fn):
        return {"not_callable": type(fn).__name__}
    outputs = []
    for arguments in cases:
        try:
            outputs.append(encode(fn(*decode(arguments))))
        except NotImplementedError:
            return {"not_implemented": True}
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001 - a student's function may raise anything, SystemExit included
            return {"raised": f"{type(e).__name__}: {e}"}
    return {"outputs": outputs}


def main() -> None:
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the submission's prints go to stderr, the answer to the pipe
    request = json.loads(sys.stdin.read())
    sys.path[:0] = [p for p in request["path"] if p not in sys.path]
    namespace, cell_errors = run_cells(request["cells"])
    results = {name: call_exercise(namespace[name], cases) for name, cases in request["cases"].items()
               if name in namespace}
    try:
        text = json.dumps({"cell_errors": cell_errors, "results": results})
    except BaseException as e:  # noqa: BLE001 - an answer that cannot be written is reported, not raised
        text = json.dumps({"unwritable": f"{type(e).__name__}: {e}"})
    answers.write(text)
    answers.flush()
    os._exit(0)  # threads or exit handlers the submission left behind do not keep this process alive


if __name__ == "__main__":
    main()
