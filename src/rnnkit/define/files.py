"""Definition files: ``FILE.py:NAME`` names a `Definition` assigned to NAME in a Python file of the user's.

Running the user's own file is what they ask for on the command line; a checkpoint never stores the file, only
the definition's text (`Definition.to_dict`), which is re-parsed safely when the model is rebuilt.
"""

from __future__ import annotations

import runpy
from pathlib import Path

from ..errors import ConfigError, DataError
from .parse import Definition


def split_reference(reference: str) -> tuple[Path, str]:
    """``FILE.py:NAME`` → (path, name); a one-line `ConfigError` for another form."""
    if not isinstance(reference, str) or ":" not in reference:
        raise ConfigError(f"a cell file must be given as FILE.py:NAME, got {reference!r}")
    path, _, name = reference.rpartition(":")
    if not path.endswith(".py") or not name.isidentifier():
        raise ConfigError(f"a cell file must be given as FILE.py:NAME (a .py file and a Python name), got "
                          f"{reference!r}")
    return Path(path), name


def load_cell_file(reference: str) -> Definition:
    """The `Definition` named by ``FILE.py:NAME`` (the file is run as a Python script of the user's)."""
    path, name = split_reference(reference)
    if not path.is_file():
        raise DataError(f"cell file {str(path)!r} does not exist or is not a file")
    try:
        namespace = runpy.run_path(str(path), run_name="rnnkit_cell_file")
    except Exception as e:  # noqa: BLE001 - the user's file: its own error, in one line
        if isinstance(e, ConfigError):
            raise ConfigError(f"{path}: {e}") from None
        raise ConfigError(f"cell file {str(path)!r} failed to run: {type(e).__name__}: {e}") from None
    if name not in namespace:
        found = sorted(k for k, v in namespace.items() if isinstance(v, Definition))
        raise ConfigError(f"cell file {str(path)!r} defines no {name!r} (its cell definitions: {found})")
    value = namespace[name]
    if not isinstance(value, Definition):
        raise ConfigError(f"{path}:{name} must be a cell definition (rnnkit.define.cell(...)), got "
                          f"{type(value).__name__}")
    return value


def with_cell_file(explicit: dict) -> dict:
    """Command-line settings with ``cell_file`` (``--cell-file FILE.py:NAME``) read into ``cell="defined"`` and the
    definition's text; unchanged without it. ``--cell`` other than ``defined`` beside it is an error."""
    if explicit.get("cell_file") is None:
        return explicit
    if explicit.get("cell") not in (None, "defined"):
        raise ConfigError(f"--cell-file defines the cell; it cannot be combined with --cell {explicit['cell']}")
    definition = load_cell_file(explicit["cell_file"])
    return {**explicit, "cell": "defined", "definition": definition.to_dict()}

