"""The data file formats the commands read, declared once, and the checks that recognise them positively.

A file is read only when it has the expected format; otherwise a one-line `DataError` names the expected format,
the file, the first offending line's number and its content (shortened):

- ``conll``: one token per line with its tag in the last column (``token ... tag``, separated by spaces or tabs,
  the same number of columns on every line), a blank line between sentences. ``rnnkit tag --input`` also takes a
  single column (tokens without gold tags).
- ``labelled``: ``label<TAB>text`` lines; ``lines`` (``rnnkit classify --input``): those, or one text per line.
- ``pairs``: ``source<TAB>target`` lines.
- ``text``: any UTF-8 text (the character language model reads every character, so every text file is valid).

A file whose lines are the same number of single-token columns, in blank-line-separated blocks, is a CoNLL file, and
is refused as ``labelled``, ``lines`` or ``pairs`` data; a tab-separated field with spaces in it (a
``label<TAB>text`` line), or a line with another number of columns (a sentence per line), is refused as CoNLL.
"""

from __future__ import annotations

from ..errors import DataError

FORMATS = {
    "conll": "CoNLL columns ('token ... tag' per line, a blank line between sentences)",
    "conll-tokens": "CoNLL columns (a token per line, optionally '... tag' columns; a blank line between sentences)",
    "labelled": "'label<TAB>text' lines",
    "lines": "one text per line, or 'label<TAB>text' lines",
    "pairs": "'source<TAB>target' lines",
    "text": "UTF-8 text",
}


def shorten(line: str, width: int = 60) -> str:
    """``line`` as the repr of at most ``width`` characters (with '…' when cut)."""
    return repr(line if len(line) <= width else line[:width - 1] + "…")


def refuse_line(path, number: int, line: str, kind: str, why: str = "") -> DataError:
    """The one-line error for line ``number`` of ``path`` that is not of format ``kind`` (see `FORMATS`)."""
    because = f" ({why})" if why else ""
    return DataError(f"{path}:{number}: expected {FORMATS[kind]}, got {shorten(line)}{because}")


def conll_columns(path, lines: list[str], require_tags: bool = True) -> list[list[str]]:
    """The columns of each line of a CoNLL file (empty for a blank line); `DataError` at the first line that is not
    CoNLL: a tab-separated field with spaces in it (a 'label<TAB>text' line), a column count that differs from the
    first line's (a sentence per line), or — with ``require_tags`` — a single column."""
    kind = "conll" if require_tags else "conll-tokens"
    columns, width = [], None
    for number, line in enumerate(lines, start=1):
        cols = line.split()
        columns.append(cols)
        if not cols:
            continue
        if "\t" in line and any(len(field.split()) > 1 for field in line.strip().split("\t")):
            raise refuse_line(path, number, line, kind, "a tab-separated field with spaces: a 'label<TAB>text' "
                                                        "line, not a token and its tags")
        if require_tags and len(cols) < 2:
            raise refuse_line(path, number, line, kind, "one column: no tag")
        width = width or len(cols)
        if len(cols) != width:
            raise refuse_line(path, number, line, kind, f"{len(cols)} columns after {width} on the first line: "
                                                        "a sentence per line, not a token per line")
    return columns


def refuse_conll(path, lines: list[str], kind: str) -> None:
    """`DataError` when ``lines`` meant to be of format ``kind`` are a CoNLL file: every line the same number (≥ 2)
    of single-token columns (tab- or space-separated), in blocks separated by blank lines; it names the first blank
    line between two blocks."""
    fields = [line.strip().split("\t") if "\t" in line else line.split() for line in lines if line.strip()]
    widths = {len(f) for f in fields}
    if len(widths) != 1 or widths == {1} or any(len(x.split()) != 1 for f in fields for x in f):
        return
    seen = False
    for number, line in enumerate(lines, start=1):
        if line.strip():
            seen = True
        elif seen and any(rest.strip() for rest in lines[number:]):
            raise refuse_line(path, number, line, kind, "a blank line between blocks of 'token tag' lines: this is "
                                                        "a CoNLL file (rnnkit train tagging reads those)")


def tab_fields(path, lines: list[str], kind: str) -> list[tuple[int, str, str]]:
    """(line number, first field, the rest) of each non-blank ``first<TAB>rest`` line of format ``kind``
    (``labelled`` or ``pairs``); `DataError` at the first line that is not one, or when the file is CoNLL."""
    refuse_conll(path, lines, kind)
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        first, tab, rest = line.partition("\t")
        if not tab or not first.strip() or not rest.strip():
            raise refuse_line(path, number, line, kind)
        out.append((number, first, rest))
    return out
