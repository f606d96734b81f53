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
        self._paths: OrderedDict[str, dict[str, list[_Chunk]]] = OrderedDict()
        # per path: the positions of the last module's top-level statements (FileContext fills it)
        self._positions: dict[str, dict[cst.CSTNode, StatementPositions]] = {}
        self.reused = 0  # chunks taken from the cache by the last parse (for tests and the bench)

    def parse(self, path: str, text: str) -> cst.Module:
        """The module of ``text``: the tree ``cst.parse_module(text)`` gives (raises as it does)."""
        self.reused = 0
        old = self._paths.pop(path, {})
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
        self, text: str, old: dict[str, list[_Chunk]]
    ) -> tuple[cst.Module | None, dict[str, list[_Chunk]]]:
        texts = split(text)
        if texts is None:
            return None, {}
        new: dict[str, list[_Chunk]] = {}
        parts: list[_Chunk] = []
        for i, chunk_text in enumerate(texts):
            key = chunk_text if i else "\0first\0" + chunk_text  # the first chunk keeps its header
            # a node appears once in a tree: equal chunks of one text get their own parses
            cached = old.get(key)
            chunk = cached.pop() if cached else None
            if chunk is not None:
                self.reused += 1
            else:
                chunk = _parse_chunk(chunk_text, first=i == 0)
                if chunk is None:
                    return None, new
            new.setdefault(key, []).append(chunk)
            parts.append(chunk)
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


def split(text: str) -> list[str] | None:
    """The text cut before each top-level statement's leading blank lines and column-0
    comments; None when the text is not one the chunks can rebuild exactly."""
    if not text or "\r" in text or text.startswith("\ufeff") or "__future__" in text:
        return None
    if _COOKIE.search("\n".join(text.split("\n", 2)[:2])):
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
    if len(starts) < 2:
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
