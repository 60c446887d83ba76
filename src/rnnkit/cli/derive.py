"""``rnnkit derive FILE.py:NAME``: print a defined cell's forward and derived backward equations (`rnnkit.define`)."""

from __future__ import annotations

import click


@click.command()
@click.argument("reference", metavar="FILE.py:NAME")
@click.option("--latex", is_flag=True, help="Print LaTeX instead of plain Unicode.")
@click.option("--code", type=click.Choice(["numpy", "numba"]), default=None,
              help="Also print the generated NumPy step or numba kernel.")
def derive(reference, latex, code):
    """Print the backward of the cell NAME defined in FILE.py (rnnkit.define.cell), derived by SymPy through the
    forward outputs (σ' = σ(1 − σ), tanh' = 1 − tanh²); δs_t is the gradient of a new state from outside the step."""
    from .. import define

    definition = define.load_cell_file(reference)
    click.echo(define.backward_text(definition, latex=latex))
    if code == "numpy":
        click.echo("\n" + define.numpy_source(definition), nl=False)
    elif code == "numba":
        click.echo("\n" + define.kernel_source(definition), nl=False)
