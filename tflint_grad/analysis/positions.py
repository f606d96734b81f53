"""Node positions, computed lazily, one top-level statement at a time.

libcst computes positions by generating the code of the whole module while tracking lines
and columns (``PositionProvider``): as costly as a third of the parse, and most files have
no finding at all. A top-level statement starts at column 0 and generates the same code
wherever it stands, so only its first line depends on the rest of the file:

- on the command line, the first lines come from CPython's ``ast`` (a C parser, a quarter of
  the cost of the code generation) and each statement that holds a finding is generated
  there; its code is compared with the text at that line, and any doubt (a text ``ast``
  rejects, statements it counts differently, code that does not match) falls back to the
  whole module, as before;
- in the language server, the positions of each statement are kept across lints of one
  buffer (as if the statement began the file) with its line count, and a statement's first
  line is the sum of the line counts above it.

Values are ``((line, col), (end_line, end_col))``: 1-based lines, 0-based columns, the
numbers of libcst's ``CodeRange`` (bench/check_traversal.py --positions compares them on
every node).
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Callable

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider
from libcst.metadata.position_provider import PositionProvidingCodegenState

Range = tuple[tuple[int, int], tuple[int, int]]
# One top-level statement's positions as if it began the file (lines from 1), and its line count.
StatementPositions = tuple[dict[cst.CSTNode, Range], int]
_NEWLINE = re.compile(r"\r\n?|\n")


class _FastPositions(PositionProvider):
    """``PositionProvider``'s positions without ``MetadataWrapper`` (whose ``resolve`` also
    runs an empty batched visit of the whole tree, as costly as the codegen itself) and with
    cheaper bookkeeping (:class:`_PositionState`)."""

    def compute(self, module: cst.Module) -> dict[cst.CSTNode, Range]:
        state = _PositionState.of(module, provider=self)
        module._codegen(state)
        return state.ranges


def _generate(module: cst.Module, stmt: cst.CSTNode, line: int) -> _PositionState:
    """The code generation of one top-level statement from ``line``: its positions
    (``ranges``), tokens and the line after it."""
    state = _PositionState.of(module, provider=_FastPositions())
    state.line = line
    stmt._codegen(state)
    return state


class _PositionState(PositionProvidingCodegenState):
    """``PositionProvidingCodegenState`` with a fast path for tokens without a newline,
    tuples instead of ``CodePosition``/``CodeRange`` objects and a slotted context manager
    instead of a generator-based one (same positions)."""

    _stack: list[tuple[int, int]]  # type: ignore[assignment]
    ranges: dict[cst.CSTNode, Range]

    @classmethod
    def of(cls, module: cst.Module, provider: _FastPositions) -> _PositionState:
        state = cls(default_indent=module.default_indent, default_newline=module.default_newline, provider=provider)
        state.ranges = {}
        return state

    def add_token(self, value: str) -> None:
        self.tokens.append(value)
        if "\n" in value or "\r" in value:
            self._update_position(value)
        else:
            self.column += len(value)

    def add_indent_tokens(self) -> None:
        for token in self.indent_tokens:
            self.add_token(token)

    def before_codegen(self, node: cst.CSTNode) -> None:
        self._stack.append((self.line, self.column))

    def after_codegen(self, node: cst.CSTNode) -> None:
        start = self._stack.pop()
        if node not in self.ranges:
            self.ranges[node] = (start, (self.line, self.column))

    def record_syntactic_position(  # type: ignore[override]
        self, node: cst.CSTNode, *, start_node: cst.CSTNode | None = None, end_node: cst.CSTNode | None = None
    ) -> _SyntacticPosition:
        return _SyntacticPosition(self, node, start_node, end_node)


class _SyntacticPosition:
    __slots__ = ("end_node", "node", "start", "start_node", "state")

    def __init__(
        self, state: _PositionState, node: cst.CSTNode, start_node: cst.CSTNode | None, end_node: cst.CSTNode | None
    ) -> None:
        self.state = state
        self.node = node
        self.start_node = start_node
        self.end_node = end_node

    def __enter__(self) -> None:
        self.start = (self.state.line, self.state.column)

    def __exit__(self, *exc: object) -> None:
        state = self.state
        ranges = state.ranges
        start = ranges[self.start_node][0] if self.start_node is not None else self.start
        end = ranges[self.end_node][1] if self.end_node is not None else (state.line, state.column)
        ranges[self.node] = (start, end)


class Positions:
    """The positions of one module's nodes, computed on first use.

    ``top``: the top-level statement that holds a node (None: the module itself, its header
    or footer, or a node outside the tree). ``known``: the language server's positions of
    top-level statements, kept across lints of one buffer and completed here."""

    def __init__(
        self,
        module: cst.Module,
        text: str,
        top: Callable[[cst.CSTNode], cst.CSTNode | None],
        known: dict[cst.CSTNode, StatementPositions] | None = None,
    ) -> None:
        self.module = module
        self.text = text
        self.top = top
        self.known = known
        self._ranges: dict[cst.CSTNode, Range] = {}
        self._generated: set[cst.CSTNode] = set()  # top-level statements whose ranges are in _ranges
        self._starts: dict[cst.CSTNode, int] | None = None  # first line of each top-level statement
        self._line_offsets: list[int] | None = None
        self._whole = False

    def __getitem__(self, node: cst.CSTNode) -> Range:
        r = self._ranges.get(node)
        if r is not None:
            return r
        if not self._whole:
            stmt = self.top(node)
            if stmt is not None and self.known is not None:
                r = self._shifted(stmt, node)
                if r is not None:
                    return r
                self._whole_module()
            elif stmt is None or stmt in self._generated or not self._statement(stmt):
                self._whole_module()
        return self._ranges[node]

    def _shifted(self, stmt: cst.CSTNode, node: cst.CSTNode) -> Range | None:
        """The server's way: the kept position of ``node`` in ``stmt``, moved to its line."""
        starts = self._first_lines()
        line = starts.get(stmt) if starts is not None else None
        rel = self._relative(stmt)[0].get(node) if line is not None else None
        if line is None or rel is None:
            return None
        (a, b), (c, d) = rel
        r = self._ranges[node] = ((a + line - 1, b), (c + line - 1, d))
        return r

    def statement(self, stmt: cst.CSTNode) -> dict[cst.CSTNode, Range]:
        """Every position inside one top-level statement (for tests and tools)."""
        if stmt not in self._generated and not self._statement(stmt):
            self._whole_module()
        return self._ranges

    # -- one statement ---------------------------------------------------------------
    def _statement(self, stmt: cst.CSTNode) -> bool:
        """Add the positions of ``stmt``; False when its first line is not certain."""
        starts = self._first_lines()
        line = starts.get(stmt) if starts is not None else None
        if line is None:
            return False
        if self.known is not None:
            rel, _ = self._relative(stmt)
            shift = line - 1
            for node, ((a, b), (c, d)) in rel.items():
                self._ranges[node] = ((a + shift, b), (c + shift, d))
        else:
            state = _generate(self.module, stmt, line)
            if not self._matches("".join(state.tokens), line):
                return False
            self._ranges.update(state.ranges)
        self._generated.add(stmt)
        return True

    def _relative(self, stmt: cst.CSTNode) -> StatementPositions:
        assert self.known is not None
        rel = self.known.get(stmt)
        if rel is None:
            state = _generate(self.module, stmt, 1)
            rel = self.known[stmt] = (state.ranges, state.line - 1)
        return rel

    def _matches(self, code: str, line: int) -> bool:
        """Whether the text holds ``code`` from the start of ``line`` (the last statement of a
        module without a final newline generates one more newline than the text has)."""
        if self._line_offsets is None:
            self._line_offsets = [0, *(m.end() for m in _NEWLINE.finditer(self.text))]
        if not 0 < line <= len(self._line_offsets):
            return False
        at = self._line_offsets[line - 1]
        if self.text.startswith(code, at):
            return True
        rest = self.text[at:]
        return code.startswith(rest) and code[len(rest) :] in ("\n", "\r\n", "\r")

    # -- first lines -----------------------------------------------------------------
    def _first_lines(self) -> dict[cst.CSTNode, int] | None:
        if self._starts is None:
            self._starts = self._from_known() if self.known is not None else _from_ast(self.module, self.text)
        return self._starts

    def _from_known(self) -> dict[cst.CSTNode, int]:
        starts: dict[cst.CSTNode, int] = {}
        line = 1 + len(self.module.header)  # a header line is one EmptyLine
        for stmt in self.module.body:
            starts[stmt] = line
            line += self._relative(stmt)[1]
        return starts

    # -- the whole module ------------------------------------------------------------
    def _whole_module(self) -> None:
        try:
            ranges = _FastPositions().compute(self.module)
        except (AttributeError, TypeError):  # libcst internals changed: the public way
            resolved = MetadataWrapper(self.module, unsafe_skip_copy=True).resolve(PositionProvider)
            ranges = {n: ((r.start.line, r.start.column), (r.end.line, r.end.column)) for n, r in resolved.items()}
        self._ranges = ranges
        self._whole = True


def _from_ast(module: cst.Module, text: str) -> dict[cst.CSTNode, int] | None:
    """The first line of each top-level statement's code (its leading blank lines and
    comments included) from CPython's parse of the same text; None when the two parsers do
    not see the same statements."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            body = ast.parse(text).body
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None
    starts: dict[cst.CSTNode, int] = {}
    i = 0
    for stmt in module.body:
        if i >= len(body):
            return None
        first = body[i].lineno
        lead = len(stmt.leading_lines)
        if isinstance(stmt, cst.SimpleStatementLine):
            i += len(stmt.body)  # `a = 1; b = 2` is two statements to ast
        else:
            decorators = getattr(stmt, "decorators", ())
            if decorators:
                first = min([first, *(d.lineno for d in getattr(body[i], "decorator_list", ()))])
                lead += len(decorators[0].leading_lines)
            i += 1
        starts[stmt] = first - lead
    return starts if i == len(body) else None
