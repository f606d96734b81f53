"""Reading a file into analyzable text: encodings, notebooks, and syntax diagnoses.

Nothing here raises on bad input: every problem becomes a :class:`Problem` that the
engine reports as TFG000.
"""

from __future__ import annotations

import ast
import io
import json
import re
import tokenize
import warnings
from dataclasses import dataclass, field
from typing import Any

from tflint_grad.cells import CellCode, to_python


@dataclass(frozen=True)
class Problem:
    line: int
    column: int
    message: str


@dataclass(frozen=True)
class CellSpan:
    """A code cell's place in the notebook's Python (``SourceFile.text``).

    Line N of the cell is line ``start + N - 1`` of the text (cells keep their line
    count when made Python: see :mod:`tflint_grad.cells`); columns differ by
    ``code.shift(N)`` where a whole-cell indentation was removed.
    """

    cell: int  # 0-based index over ALL cells of the notebook
    start: int  # 1-based first line of this cell in the concatenated text
    lines: int
    source: str = ""  # the cell's source as the notebook holds it
    code: CellCode | None = None  # the cell as Python


@dataclass
class SourceFile:
    path: str
    text: str
    cells: list[CellSpan] | None = None  # notebooks only
    problem: Problem | None = None
    newline: str = "\n"
    raw: bytes = field(default=b"", repr=False)

    @property
    def is_notebook(self) -> bool:
        return self.cells is not None

    def locate(self, line: int) -> tuple[int | None, int]:
        """Map a line of ``text`` to (cell index, line in cell); (None, line) for .py files."""
        if self.cells is None:
            return None, line
        for span in self.cells:
            if span.start <= line < span.start + max(span.lines, 1):
                return span.cell, line - span.start + 1
        return (self.cells[-1].cell if self.cells else None), line

    def span(self, line: int) -> CellSpan | None:
        """The cell holding ``line`` of ``text`` (None for .py files and between cells)."""
        for span in self.cells or ():
            if span.start <= line < span.start + max(span.lines, 1):
                return span
        return None

    def cell_position(self, line: int, column: int) -> tuple[int | None, int, int]:
        """(cell, line in cell, column in cell) of a position in ``text``."""
        span = self.span(line)
        if span is None:
            return (None, line, column) if self.cells is None else (self.locate(line)[0], line, column)
        cell_line = line - span.start + 1
        shift = span.code.shift(cell_line) if span.code is not None else 0
        return span.cell, cell_line, column + shift

    def where(self, line: int) -> str:
        """``line 12``, or ``cell 3, line 4`` (1-based cell number) in a notebook."""
        if self.cells is not None:
            cell, cell_line = self.locate(line)
            if cell is not None:
                return f"cell {cell + 1}, line {cell_line}"
        return f"line {line}"

    def without_cells(self, cells: set[int]) -> SourceFile:
        """The same notebook with the given cells' Python replaced by blank lines."""
        lines = self.text.split("\n")
        for span in self.cells or ():
            if span.cell in cells:
                for i in range(span.start - 1, min(span.start - 1 + span.lines, len(lines))):
                    lines[i] = ""
        return SourceFile(self.path, "\n".join(lines), cells=self.cells, newline=self.newline, raw=self.raw)


def decode(raw: bytes) -> tuple[str | None, Problem | None]:
    """Decode Python source bytes honouring a BOM and a PEP 263 coding cookie."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    except SyntaxError as e:
        return None, Problem(1, 1, f"cannot determine the file's encoding: {e.msg}")
    try:
        text = raw.decode(encoding)
    except (UnicodeDecodeError, LookupError) as e:
        offset = getattr(e, "start", 0)
        line = raw[:offset].count(b"\n") + 1
        col = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
        byte = f" (byte 0x{raw[offset]:02x})" if offset < len(raw) else ""
        return None, Problem(line, col, f"the file is not valid {encoding}{byte}: {getattr(e, 'reason', e)}")
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, None


def load(path: str, raw: bytes) -> SourceFile:
    if path.endswith(".ipynb"):
        return load_notebook(path, raw)
    text, problem = decode(raw)
    if text is None:
        return SourceFile(path, "", problem=problem, raw=raw)
    newline = "\r\n" if "\r\n" in text[:10000] else "\n"
    return SourceFile(path, text, newline=newline, raw=raw)


def cell_source(cell: dict[str, Any]) -> str | None:
    """A code cell's source as one string (nbformat stores a string or a list of lines)."""
    if cell.get("cell_type") != "code":
        return None
    src = cell.get("source", "")
    if isinstance(src, list):
        src = "".join(s for s in src if isinstance(s, str))
    return src if isinstance(src, str) else None


def load_notebook(path: str, raw: bytes) -> SourceFile:
    text, problem = decode(raw)
    if text is None:
        return SourceFile(path, "", cells=[], problem=problem, raw=raw)
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as e:
        return SourceFile(
            path, "", cells=[], problem=Problem(e.lineno, e.colno, f"the notebook is not valid JSON: {e.msg}"), raw=raw
        )
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        return SourceFile(path, "", cells=[], problem=Problem(1, 1, "the notebook has no 'cells' list"), raw=raw)
    sources = [(i, cell_source(cell) if isinstance(cell, dict) else None) for i, cell in enumerate(cells)]
    return from_cells(path, [(i, src) for i, src in sources if src is not None], raw=raw)


def from_cells(path: str, cells: list[tuple[int, str]], raw: bytes = b"") -> SourceFile:
    """A notebook from its code cells, in execution order: (index over all cells, source).

    The text is the cells' Python (see :mod:`tflint_grad.cells`) one after the other, so
    names bound in a cell are seen by the cells after it.
    """
    chunks: list[str] = []
    spans: list[CellSpan] = []
    line = 1
    for i, src in cells:
        code = to_python(src)
        count = code.text.count("\n") + 1
        spans.append(CellSpan(i, line, count, src, code))
        chunks.append(code.text)
        line += count
    return SourceFile(path, "\n".join(chunks) + ("\n" if chunks else ""), cells=spans, raw=raw)


_PY2_HINTS = [
    (re.compile(r"^\s*print\s+[^\s(=,.\[)]"), "a Python 2 `print` statement"),
    (re.compile(r"^\s*print\s*$"), "a Python 2 `print` statement"),
    (re.compile(r"^\s*exec\s+[\"'\w]"), "a Python 2 `exec` statement"),
    (re.compile(r"except\s+[\w.]+\s*,\s*\w+\s*:"), "a Python 2 `except X, e:` clause"),
    (re.compile(r"^\s*raise\s+[\w.]+\s*,"), "a Python 2 `raise E, msg` statement"),
    (re.compile(r"<>"), "the Python 2 `<>` operator"),
    (re.compile(r"`[^`]+`"), "Python 2 backquotes"),
    (re.compile(r"\b0[0-7]+\b"), "a Python 2 octal literal"),
    (re.compile(r"\bur['\"]"), "a Python 2 `ur''` string"),
]


def diagnose(text: str, line: int, column: int, parser_message: str) -> Problem:
    """Explain a parse failure: name the Python 2 construct if there is one."""
    lines = text.splitlines()
    cpython_msg = None
    cpython_line = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(text)
    except SyntaxError as e:
        cpython_msg, cpython_line = e.msg, e.lineno
    except (ValueError, RecursionError, MemoryError) as e:
        cpython_msg = str(e) or type(e).__name__
    if cpython_line:
        line, column = cpython_line, 1
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    for pattern, what in _PY2_HINTS:
        if pattern.search(src):
            snippet = src.strip()
            if len(snippet) > 60:
                snippet = snippet[:57] + "..."
            return Problem(
                line,
                len(src) - len(src.lstrip()) + 1,
                f"cannot parse: {what} at line {line} (`{snippet}`); this looks like Python 2 code: "
                "convert it to Python 3 (e.g. with `2to3`) to lint it",
            )
    reason = cpython_msg or parser_message.strip().splitlines()[0]
    return Problem(line, max(column, 1), f"cannot parse: {reason} at line {line}")
