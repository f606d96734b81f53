"""Re-parse only what changed: libcst parses cached per top-level statement.

The language server lints a buffer again after every edit; libcst's parser is the biggest
single cost on a big file. An edit changes a few top-level statements, so the module text is
split at top-level statement boundaries (CPython's ``ast`` line numbers), each chunk is parsed
alone once and cached by its text, and the ``cst.Module`` is rebuilt from the cached
statements (libcst nodes are immutable, so sharing them between lints is safe).

A chunk is the statement with the blank lines and column-0 comments above it (libcst gives
those to the statement's ``leading_lines``; comments indented under the previous block stay
with it). The rebuilt module must be the tree a full parse gives; whenever that is not certain
(a carriage return, a BOM, an encoding cookie, ``__future__`` imports, mixed default indents,
a chunk that does not parse alone or that leaves a footer), :func:`parse` parses the whole text.

After an edit only the text between the unchanged chunks at the start and at the end is cut
and parsed again (``ast`` on a whole 5,000-line text costs ~0.1 s): a chunk parses alone, so
the end of the unchanged start is a statement boundary of the new text; the changed middle
must parse alone too (no string, bracket or block left open into the unchanged end), or the
whole text is cut again.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from itertools import pairwise

import libcst as cst

from tflint_grad import parsing
from tflint_grad.analysis.positions import StatementPositions

_COOKIE = re.compile(r"^[ \t\f]*#.*coding[:=]", re.MULTILINE)
_MAX_PATHS = 8


@dataclass(frozen=True)
class _Chunk:
    header: tuple[cst.EmptyLine, ...]
    body: tuple[cst.SimpleStatementLine | cst.BaseCompoundStatement, ...]
    footer: tuple[cst.EmptyLine, ...]
    indent: str | None  # the chunk's default indent when it has an indented block, else None
    has_trailing_newline: bool
    default_newline: str


class ParseCache:
    """Chunk parses of the last text of each path (a few paths, least recently used out)."""

    def __init__(self) -> None:
        self._paths: OrderedDict[str, list[tuple[str, _Chunk]]] = OrderedDict()  # (key, chunk) in order
        # per path: the positions of the last module's top-level statements (FileContext fills it)
        self._positions: dict[str, dict[cst.CSTNode, StatementPositions]] = {}
        self.reused = 0  # chunks taken from the cache by the last parse (for tests and the bench)

    def parse(self, path: str, text: str) -> cst.Module:
        """The module of ``text``: the tree ``cst.parse_module(text)`` gives (raises as it does)."""
        self.reused = 0
        old = self._paths.pop(path, [])
        module, chunks = self._incremental(text, old)
        self._paths[path] = chunks
        while len(self._paths) > _MAX_PATHS:
            gone, _ = self._paths.popitem(last=False)
            self._positions.pop(gone, None)
        if module is None:
            self._positions[path] = {}
            return parsing.parse_module(text)
        known = self._positions.get(path, {})
        self._positions[path] = {s: known[s] for s in module.body if s in known}
        return module

    def statement_positions(self, path: str) -> dict[cst.CSTNode, StatementPositions] | None:
        """The statement positions of the last parse of ``path`` (to hand to FileContext)."""
        return self._positions.get(path)

    def parser(self, path: str) -> PathParser:
        return PathParser(self, path)

    def _incremental(
        self, text: str, old: list[tuple[str, _Chunk]]
    ) -> tuple[cst.Module | None, list[tuple[str, _Chunk]]]:
        if not _rebuildable(text):
            return None, []
        pieces = _changed(text, old) or _whole(text)
        if pieces is None:
            return None, []
        # a node appears once in a tree: a chunk kept in place is not re-used elsewhere, and
        # equal chunks of one text get their own parses
        kept = {id(piece[1]) for piece in pieces if not isinstance(piece, str)}
        by_key: dict[str, list[_Chunk]] = {}
        for old_key, old_chunk in reversed(old):
            if id(old_chunk) not in kept:
                by_key.setdefault(old_key, []).append(old_chunk)
        new: list[tuple[str, _Chunk]] = []
        for piece in pieces:
            if not isinstance(piece, str):
                new.append(piece)
                self.reused += 1
                continue
            key = piece if new else "\0first\0" + piece  # the first chunk keeps its header
            cached = by_key.get(key)
            if cached:
                chunk: _Chunk | None = cached.pop()
                self.reused += 1
            else:
                chunk = _parse_chunk(piece, first=not new)
            if chunk is None:
                return None, new
            new.append((key, chunk))
        parts = [chunk for _, chunk in new]
        if any(p.footer for p in parts[:-1]):
            return None, new
        indents = {p.indent for p in parts if p.indent is not None}
        if len(indents) > 1:
            return None, new
        body = [stmt for p in parts for stmt in p.body]
        module = cst.Module(
            body=body,
            header=parts[0].header,
            footer=parts[-1].footer,
            encoding="utf-8",
            default_indent=indents.pop() if indents else "    ",
            default_newline=parts[0].default_newline,
            has_trailing_newline=parts[-1].has_trailing_newline,
        )
        return module, new


def _changed(text: str, old: list[tuple[str, _Chunk]]) -> list[str | tuple[str, _Chunk]] | None:
    """The unchanged chunks at the start and at the end of the last text, and the changed
    middle cut into chunk texts; None when there is no last text or the middle does not cut.

    The middle is widened by a chunk on each side (a few times at most) when it may not
    stand alone: blank lines or comments at its end lead the next statement, an indented
    comment at its start may close the previous block."""
    if not old:
        return None
    texts = [key.removeprefix("\0first\0") if n == 0 else key for n, (key, _) in enumerate(old)]
    i, start = 0, 0
    while i < len(old) and text.startswith(texts[i], start):
        start += len(texts[i])
        i += 1
    j, end = len(old), len(text)
    # the first chunk was parsed as the first (its header is the module's): it stays in place or goes
    while j > max(i, 1) and end - len(texts[j - 1]) >= start and text.endswith(texts[j - 1], 0, end):
        end -= len(texts[j - 1])
        j -= 1
    for _ in range(4):
        middle = text[start:end]
        if not middle:
            if i == 0 and j < len(old):
                return None  # a chunk that followed others now begins the text: its header differs
            return [*old[:i], *old[j:]]
        if _stands_alone(middle, after=j < len(old)):
            cut = split(middle, at_least=1)
            if cut is not None:
                return [*old[:i], *cut, *old[j:]]
        if i == 0 and j == len(old):
            return None
        if i > 0:
            i -= 1
            start -= len(texts[i])
        if j < len(old):
            end += len(texts[j])
            j += 1
    return None


def _stands_alone(middle: str, after: bool) -> bool:
    """Whether the changed text between unchanged chunks begins and ends as its own chunks."""
    lines = middle.split("\n")
    if lines[0][:1] in (" ", "\t", "\f") and lines[0].strip().startswith("#"):
        return False  # may be the footer of the block above
    if not after:
        return True
    if lines[-1] != "":
        return False  # the middle ends inside a line
    return len(lines) > 1 and not _trivia(lines[-2])  # trailing blank lines and comments lead the next chunk


def _whole(text: str) -> list[str | tuple[str, _Chunk]] | None:
    cut = split(text)
    return list(cut) if cut is not None else None


def _rebuildable(text: str) -> bool:
    """Whether chunks can rebuild ``text`` exactly (else the whole text is parsed)."""
    if not text or "\r" in text or text.startswith("\ufeff") or "__future__" in text:
        return False
    return not _COOKIE.search("\n".join(text.split("\n", 2)[:2]))


def split(text: str, at_least: int = 2) -> list[str] | None:
    """The text cut before each top-level statement's leading blank lines and column-0
    comments; None when the text is not one the chunks can rebuild exactly, or has fewer
    than ``at_least`` statements."""
    if not _rebuildable(text):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    starts: list[tuple[int, int]] = []  # (first line, last line before it), 1-based
    last = 0
    for stmt in tree.body:
        first = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", ()))])
        if first > last:
            starts.append((first, last))
        last = max(last, stmt.end_lineno or stmt.lineno)
    if len(starts) < at_least:
        return None
    lines = text.split("\n")
    cuts = [0]
    for start, before in starts[1:]:
        at = start - 1  # 0-based line of the statement
        while at > max(cuts[-1], before) and _trivia(lines[at - 1]):
            at -= 1
        if at > cuts[-1]:
            cuts.append(at)
    cuts.append(len(lines))
    chunks = ["\n".join(lines[a:b]) + "\n" for a, b in pairwise(cuts)]
    chunks[-1] = chunks[-1][:-1]  # the last piece of split("\n") has no newline after it
    if "".join(chunks) != text:
        return None
    return [c for c in chunks if c]


def _trivia(line: str) -> bool:
    """A blank line or a comment at column 0 (libcst's leading lines of the next statement)."""
    stripped = line.strip(" \t\f")
    return not stripped or line.startswith("#")


def _parse_chunk(text: str, first: bool) -> _Chunk | None:
    try:
        module = parsing.parse_module(text)
    except Exception:
        return None
    if not module.body or module.code != text:
        return None
    body = list(module.body)
    header = tuple(module.header)
    if not first and header:  # in the whole module these lines lead the statement
        body[0] = body[0].with_changes(leading_lines=[*header, *body[0].leading_lines])
        header = ()
    indent = module.default_indent if any(_has_block(s) for s in body) else None
    return _Chunk(
        header, tuple(body), tuple(module.footer), indent, module.has_trailing_newline, module.default_newline
    )


def _has_block(node: cst.CSTNode) -> bool:
    """Whether a statement holds an indented block (its parse saw an INDENT token)."""
    if isinstance(node, cst.IndentedBlock):
        return True
    if isinstance(node, (cst.BaseExpression, cst.SimpleStatementLine, cst.SimpleStatementSuite)):
        return False
    return any(_has_block(c) for c in node.children)


class PathParser:
    """``cst.parse_module`` for one path through a :class:`ParseCache` (``engine.lint_file``'s
    ``parse``), with the positions of the statements it re-used."""

    def __init__(self, cache: ParseCache, path: str) -> None:
        self.cache = cache
        self.path = path

    def __call__(self, text: str) -> cst.Module:
        return self.cache.parse(self.path, text)

    @property
    def statement_positions(self) -> dict[cst.CSTNode, StatementPositions] | None:
        return self.cache.statement_positions(self.path)
