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


@dataclass(frozen=True)
class Problem:
    line: int
    column: int
    message: str


@dataclass(frozen=True)
class CellSpan:
    cell: int  # 0-based index over ALL cells of the notebook
    start: int  # 1-based first line of this cell in the concatenated text
    lines: int


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


_LINE_MAGIC = re.compile(r"^\s*(%|!|\?)|^\s*\w[\w.]*\s*=\s*[!%]|^\s*[\w.]+\?\??\s*$")
_PY_CELL_MAGICS = ("%%time", "%%timeit", "%%capture", "%%prun")


def _strip_magics(lines: list[str]) -> list[str]:
    if lines and lines[0].lstrip().startswith("%%"):
        first = lines[0].strip().split()[0]
        if first not in _PY_CELL_MAGICS:
            return ["" for _ in lines]
        lines = [""] + lines[1:]
    return ["" if _LINE_MAGIC.match(line) else line for line in lines]


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
    chunks: list[str] = []
    spans: list[CellSpan] = []
    line = 1
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        if isinstance(src, list):
            src = "".join(s for s in src if isinstance(s, str))
        if not isinstance(src, str):
            continue
        cell_lines = _strip_magics(src.split("\n"))
        spans.append(CellSpan(i, line, len(cell_lines)))
        chunks.append("\n".join(cell_lines))
        line += len(cell_lines)
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
