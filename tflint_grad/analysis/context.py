"""Per-file facts shared by all rules, built in ONE libcst traversal.

No libcst metadata providers are used on the hot path (they cost ~7x a parse):
parents, document order, import aliases and name bindings are recorded by a
single walk (not ``module.visit``, which rebuilds the tree), and positions are
computed lazily, only for files that have findings. Whitespace, comments and punctuation
(``SimpleWhitespace``, ``Newline``, ``Comment``, ``Comma``, ``Dot``, ``LeftParen``, operator
tokens such as ``Add``...) are not recorded: they are not in ``nodes``, ``index``,
``parents``... (rules read an operator as a field: ``type(binop.operator)``).

Vocabulary:
- *scope*: the nearest enclosing ``Module``, ``FunctionDef``, ``Lambda`` or ``ClassDef``.
- *binding*: an assignment of a name (or of ``self.attr`` inside a class) to a value.
- *canonical name*: an import-resolved dotted name rewritten by ``tfapi.canonical``
  (``tf.layers.dense``, ``keras.layers.BatchNormalization``).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, TypeVar

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis.positions import Positions, StatementPositions

if TYPE_CHECKING:
    from tflint_grad.analysis.gradients import GradientCall
    from tflint_grad.analysis.models import ModelInfo

ScopeNode = cst.CSTNode  # Module | FunctionDef | Lambda | ClassDef
_N = TypeVar("_N", bound=cst.CSTNode)
_SCOPES = (cst.Module, cst.FunctionDef, cst.Lambda, cst.ClassDef)
_SCOPE_TYPES = frozenset(_SCOPES)

# The collector walks the tree itself instead of ``module.visit``: libcst's visit rebuilds
# (and re-validates) every node on the way back up, even for a read-only CSTVisitor, which
# cost more than the parse. The walk visits the same nodes in the same order (libcst's:
# the order of the ``visit_*(self, "field", ...)`` calls in each node's
# ``_visit_and_replace_children``), minus trivia (below). Trees deeper than libcst's
# own visit could handle (~280-330 levels at the default recursion limit) still raise
# RecursionError, which the engine turns into TFG000 as before.
_MAX_DEPTH = 290
_CHILD_FIELDS: dict[type, tuple[str, ...] | None] = {}
# Trivia are not recorded: whitespace and comments (half of all nodes), punctuation and
# operator tokens (a fifth of the rest). No rule looks at them as nodes (an operator is read
# as a field: ``type(binop.operator)``), and every loop over ``nodes``/``descendants()`` is
# shorter. ``False`` records them too (the exact ``module.visit`` order;
# bench/check_traversal.py compares both ways).
_SKIP_TRIVIA = True
_WHITESPACE = (cst.SimpleWhitespace, cst.ParenthesizedWhitespace, cst.Newline, cst.EmptyLine, cst.TrailingWhitespace)
_PUNCTUATION = (cst.Comma, cst.Dot, cst.Colon, cst.Semicolon, cst.AssignEqual, cst.ImportStar)
_BRACKETS = (
    cst.LeftParen,
    cst.RightParen,
    cst.LeftSquareBracket,
    cst.RightSquareBracket,
    cst.LeftCurlyBrace,
    cst.RightCurlyBrace,
)
_OPERATORS = (
    *(cst.Add, cst.Subtract, cst.Multiply, cst.Divide, cst.FloorDivide, cst.Modulo, cst.Power, cst.MatrixMultiply),
    *(cst.LeftShift, cst.RightShift, cst.BitAnd, cst.BitOr, cst.BitXor, cst.And, cst.Or),
    *(cst.Plus, cst.Minus, cst.BitInvert, cst.Not),
    *(cst.Equal, cst.NotEqual, cst.LessThan, cst.LessThanEqual, cst.GreaterThan, cst.GreaterThanEqual),
    *(cst.In, cst.NotIn, cst.Is, cst.IsNot),
    *(cst.AddAssign, cst.SubtractAssign, cst.MultiplyAssign, cst.DivideAssign, cst.FloorDivideAssign),
    *(cst.ModuloAssign, cst.PowerAssign, cst.MatrixMultiplyAssign, cst.LeftShiftAssign, cst.RightShiftAssign),
    *(cst.BitAndAssign, cst.BitOrAssign, cst.BitXorAssign),
)
_TRIVIA = frozenset({*_WHITESPACE, cst.Comment, *_PUNCTUATION, *_BRACKETS, *_OPERATORS})
# Per type: whether a field value is a node the walk records (CSTNode is an ABC: isinstance is slow).
_RECORDED: dict[type, bool] = {}


def _child_fields(t: type) -> tuple[str, ...] | None:
    """The fields of node type ``t`` that hold child nodes, in libcst's visiting order.

    Read from the string constants of ``_visit_and_replace_children`` (each child is
    visited by ``visit_*(self, "<field>", ...)``, compiled in source order). None: unknown
    layout, ask ``node.children`` (libcst's own order; slow but exact)."""
    try:
        return _CHILD_FIELDS[t]
    except KeyError:
        pass
    fields: tuple[str, ...] | None = None
    try:
        owner = next(k for k in t.__mro__ if "_visit_and_replace_children" in k.__dict__)
        code = owner.__dict__["_visit_and_replace_children"].__code__
        names = {f.name for f in dataclasses.fields(t)}
        order: list[str] = []
        for const in code.co_consts:
            if type(const) is str and const in names and const not in order:
                order.append(const)
        fields = tuple(order)
    except Exception:
        fields = None
    _CHILD_FIELDS[t] = fields
    return fields


_RECORDED_FIELDS: dict[type, tuple[str, ...] | None] = {}
_TRIVIA_TYPES = (cst.BaseParenthesizableWhitespace, *_TRIVIA, cst.MaybeSentinel, type(None))


def _recorded_fields(t: type) -> tuple[str, ...] | None:
    """:func:`_child_fields` without the fields that can only hold trivia, read from the
    dataclass annotations (``whitespace_after_func: BaseParenthesizableWhitespace``,
    ``comma: Union[Comma, MaybeSentinel]``, ``lpar: Sequence[LeftParen]``): two thirds of
    libcst's child fields, not read at all by the walk."""
    try:
        return _RECORDED_FIELDS[t]
    except KeyError:
        pass
    fields = _child_fields(t)
    if fields is not None:
        try:
            annotations = {f.name: f.type for f in dataclasses.fields(t)}
            fields = tuple(f for f in fields if not _only_trivia(annotations[f]))
        except Exception:
            pass  # an annotation this cannot read: every child field
    _RECORDED_FIELDS[t] = fields
    return fields


def _only_trivia(annotation: object) -> bool:
    """Whether a field annotated so can only hold trivia (or nothing)."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is Sequence or origin in (list, tuple):
        return bool(args) and all(a is Ellipsis or _only_trivia(a) for a in args)
    return isinstance(annotation, type) and issubclass(annotation, _TRIVIA_TYPES)


@dataclass
class Binding:
    name: str
    index: int  # document order of the binding statement
    node: cst.CSTNode  # the statement (Assign, With, For, FunctionDef, ...)
    value: cst.BaseExpression | None  # the bound expression, when known
    kind: str  # assign | annassign | augassign | with | for | param | def | class | import | unpack
    scope: ScopeNode


@dataclass
class TapeBlock:
    with_node: cst.With
    name: str | None
    persistent: bool


def _binding_index(b: Binding) -> int:
    return b.index


def dotted(expr: cst.BaseExpression | None) -> str | None:
    """``a.b.c`` for a chain of Name/Attribute nodes, else None."""
    parts: list[str] = []
    while isinstance(expr, cst.Attribute):
        parts.append(expr.attr.value)
        expr = expr.value
    if isinstance(expr, cst.Name):
        parts.append(expr.value)
        return ".".join(reversed(parts))
    return None


def get_arg(call: cst.Call, keyword: str | None, position: int | None = None) -> cst.Arg | None:
    """The argument passed by keyword, or at 0-based ``position`` (positional only)."""
    if keyword is not None:
        for arg in call.args:
            if arg.keyword is not None and arg.keyword.value == keyword:
                return arg
    if position is not None and position >= 0:
        positional = [a for a in call.args if a.keyword is None and not a.star]
        if position < len(positional):
            return positional[position]
    return None


def has_keyword(call: cst.Call, keyword: str) -> bool:
    return any(a.keyword is not None and a.keyword.value == keyword for a in call.args) or any(
        a.star == "**" for a in call.args
    )


def number(expr: cst.BaseExpression | None) -> float | None:
    """The value of a numeric literal (with unary minus), else None."""
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        v = number(expr.expression)
        return -v if v is not None else None
    if isinstance(expr, (cst.Integer, cst.Float)):
        try:
            return float(expr.evaluated_value)
        except (ValueError, OverflowError):
            return None
    return None


def string_value(expr: cst.BaseExpression | None) -> str | None:
    if isinstance(expr, cst.SimpleString):
        try:
            v = expr.evaluated_value
        except Exception:
            return None
        return v if isinstance(v, str) else None
    return None


class _Collector(cst.CSTVisitor):
    """The single traversal: order, parents, scopes, imports, bindings, tapes."""

    def __init__(self, ctx: FileContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.stack: list[cst.CSTNode] = []
        self.scopes: list[ScopeNode] = []

    def walk(self, root: cst.CSTNode) -> None:
        """``root.visit(self)`` without libcst's node rebuilding: the same nodes in the same
        order (trivia left out unless ``_SKIP_TRIVIA`` is off), the same
        facts as ``on_visit``/``on_leave`` (kept as the reference, see
        bench/check_traversal.py), with the bookkeeping inlined."""
        ctx = self.ctx
        nodes, index, parents, scope_map, end = ctx.nodes, ctx.index, ctx.parents, ctx.scope_map, ctx.end
        scopes = self.scopes
        special = self._handlers()
        scope_types = _SCOPE_TYPES
        fields_of = _recorded_fields if _SKIP_TRIVIA else _child_fields
        skip = _TRIVIA if _SKIP_TRIVIA else frozenset()
        recorded = _RECORDED if _SKIP_TRIVIA else {}
        node_type = cst.CSTNode
        sequence_types = (tuple, list)

        def is_recorded(vt: type) -> bool:
            ok = recorded[vt] = issubclass(vt, node_type) and vt not in skip
            return ok

        def visit(node: cst.CSTNode, parent: cst.CSTNode | None, depth: int) -> None:
            if depth > _MAX_DEPTH:
                raise RecursionError("the syntax tree is too deep")
            index[node] = len(nodes)
            nodes.append(node)
            if parent is not None:
                parents[node] = parent
            if scopes:
                scope_map[node] = scopes[-1]
            t = type(node)
            handler = special.get(t)
            if handler is not None:
                handler(node)
            is_scope = t in scope_types
            if is_scope:
                self._enter_scope(node, t)
            names = fields_of(t)
            if names is None:
                for child in node.children:
                    if type(child) not in skip:
                        visit(child, node, depth + 1)
            else:
                for name in names:
                    value = getattr(node, name)
                    vt = type(value)
                    if vt in sequence_types:
                        for child in value:
                            ct = type(child)
                            ok = recorded.get(ct)
                            if ok is None:
                                ok = is_recorded(ct)
                            if ok:
                                visit(child, node, depth + 1)
                        continue
                    ok = recorded.get(vt)
                    if ok is None:
                        ok = is_recorded(vt)
                    if ok:
                        visit(value, node, depth + 1)
            end[node] = len(nodes)
            if is_scope:
                scopes.pop()

        try:
            visit(root, None, 0)
        finally:
            visit = None  # type: ignore[assignment]  # the recursive closure is a cycle that would keep the tree alive

    def _handlers(self) -> dict[type, object]:
        return {
            cst.Assign: self._assign,
            cst.AnnAssign: self._ann_assign,
            cst.AugAssign: self._aug_assign,
            cst.With: self._with,
            cst.For: self._for,
            cst.Import: self._import,
            cst.ImportFrom: self._import,
            cst.FunctionDef: self._def,
            cst.ClassDef: self._class,
            cst.NamedExpr: self._named_expr,
        }

    def _ann_assign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._bind_target(node.target, node.value, node, "annassign")

    def _aug_assign(self, node: cst.AugAssign) -> None:
        self._bind_target(node.target, None, node, "augassign")

    def _for(self, node: cst.For) -> None:
        self._bind_target(node.target, node.iter, node, "for")

    def _def(self, node: cst.FunctionDef) -> None:
        self._bind_name(node.name.value, node, None, "def")
        self.ctx.functions.setdefault(node.name.value, []).append(node)

    def _class(self, node: cst.ClassDef) -> None:
        self._bind_name(node.name.value, node, None, "class")
        self.ctx.classes.setdefault(node.name.value, node)

    def _named_expr(self, node: cst.NamedExpr) -> None:
        self._bind_target(node.target, node.value, node, "assign")

    def _enter_scope(self, node: cst.CSTNode, t: type) -> None:
        ctx = self.ctx
        self.scopes.append(node)
        if t is cst.FunctionDef or t is cst.Lambda:
            for p in _params(node.params):  # type: ignore[attr-defined]
                ctx.bindings.setdefault((node, p.name.value), []).append(
                    Binding(p.name.value, ctx.index[node], p, p.default, "param", node)
                )

    def on_visit(self, node: cst.CSTNode) -> bool:
        ctx = self.ctx
        ctx.index[node] = len(ctx.nodes)
        ctx.nodes.append(node)
        if self.stack:
            ctx.parents[node] = self.stack[-1]
        self.stack.append(node)
        if self.scopes:
            ctx.scope_map[node] = self.scopes[-1]
        t = type(node)
        handler = self._handlers().get(t)
        if handler is not None:
            handler(node)  # type: ignore[operator]
        if t in _SCOPE_TYPES:
            self._enter_scope(node, t)
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        self.ctx.end[original_node] = len(self.ctx.nodes)
        self.stack.pop()
        if type(original_node) in _SCOPE_TYPES:
            self.scopes.pop()

    # -- bindings ---------------------------------------------------------------
    def _bind_name(self, name: str, stmt: cst.CSTNode, value, kind: str) -> None:
        scope = self.scopes[-1] if self.scopes else self.ctx.module
        self.ctx.bindings.setdefault((scope, name), []).append(
            Binding(name, self.ctx.index[stmt], stmt, value, kind, scope)
        )

    def _bind_target(self, target: cst.BaseExpression, value, stmt: cst.CSTNode, kind: str) -> None:
        if isinstance(target, cst.Name):
            self._bind_name(target.value, stmt, value, kind)
        elif isinstance(target, cst.Attribute):
            d = dotted(target)
            if d and d.startswith("self."):
                cls = self._enclosing_class()
                if cls is not None:
                    self.ctx.bindings.setdefault((cls, d), []).append(
                        Binding(d, self.ctx.index[stmt], stmt, value, kind, cls)
                    )
            elif d:
                self._bind_name(d, stmt, value, kind)
        elif isinstance(target, (cst.Tuple, cst.List)):
            elements = [e.value for e in target.elements]
            values: Sequence[cst.BaseExpression | None]
            if isinstance(value, (cst.Tuple, cst.List)) and len(value.elements) == len(elements):
                values = [e.value for e in value.elements]
                sub_kind = kind
            else:
                values = [value] * len(elements)
                sub_kind = "unpack" if kind != "for" else "for"
            for i, (el, v) in enumerate(zip(elements, values)):
                if isinstance(el, cst.StarredElement):
                    el = el.value
                self._bind_target(el, v, stmt, sub_kind)
                if sub_kind == "unpack":
                    self.ctx.unpack_index[(stmt, i)] = el

    def _enclosing_class(self) -> cst.ClassDef | None:
        for s in reversed(self.scopes):
            if isinstance(s, cst.ClassDef):
                return s
        return None

    def _assign(self, node: cst.Assign) -> None:
        for t in node.targets:
            self._bind_target(t.target, node.value, node, "assign")

    def _with(self, node: cst.With) -> None:
        for item in node.items:
            if item.asname is not None:
                self._bind_target(item.asname.name, item.item, node, "with")
        self.ctx._with_nodes.append(node)

    def _import(self, node: cst.Import | cst.ImportFrom) -> None:
        imports = self.ctx.imports
        if isinstance(node, cst.Import):
            for alias in node.names:
                full = dotted(alias.name)
                if full is None:
                    continue
                if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                    imports[alias.asname.name.value] = full
                else:
                    top = full.split(".")[0]
                    imports[top] = top
        else:
            if node.relative or node.module is None:
                return
            base = dotted(node.module)
            if base is None or isinstance(node.names, cst.ImportStar):
                return
            for alias in node.names:
                name = dotted(alias.name)
                if name is None:
                    continue
                local = name
                if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                    local = alias.asname.name.value
                imports[local] = f"{base}.{name}"


def _params(params: cst.Parameters) -> list[cst.Param]:
    out = list(params.posonly_params) + list(params.params) + list(params.kwonly_params)
    if isinstance(params.star_arg, cst.Param):
        out.append(params.star_arg)
    if params.star_kwarg is not None:
        out.append(params.star_kwarg)
    return out


_TF1_TEXT = re.compile(
    r"compat\.v1|placeholder\(|Session\(|get_variable\(|variable_scope\(|disable_v2_behavior|"
    r"disable_eager_execution|tf\.layers\.|tf\.contrib|tf\.train\.\w+Optimizer|GraphKeys|tf\.assign\("
)


class FileContext:
    """Everything the rules may ask about one parsed file."""

    def __init__(
        self,
        module: cst.Module,
        source: str,
        path: str,
        statement_positions: dict[cst.CSTNode, StatementPositions] | None = None,
    ) -> None:
        """``statement_positions``: known positions of top-level statements, kept across
        lints of one buffer (the language server's incremental parse re-uses statements)."""
        self.module = module
        self._statement_positions = statement_positions
        self.source = source
        self.path = path
        self.nodes: list[cst.CSTNode] = []
        self.index: dict[cst.CSTNode, int] = {}
        self.end: dict[cst.CSTNode, int] = {}  # one past the last descendant's index
        self.parents: dict[cst.CSTNode, cst.CSTNode] = {}
        self.scope_map: dict[cst.CSTNode, ScopeNode] = {}
        self.imports: dict[str, str] = {}
        self.bindings: dict[tuple[ScopeNode, str], list[Binding]] = {}
        self.unpack_index: dict[tuple[cst.CSTNode, int], cst.BaseExpression] = {}
        self.functions: dict[str, list[cst.FunctionDef]] = {}
        self.classes: dict[str, cst.ClassDef] = {}
        self._with_nodes: list[cst.With] = []
        self._qualname_cache: dict[cst.CSTNode, str | None] = {}
        self._reads: dict[int, tuple[str, Binding | None] | None] = {}  # read_of, by id() of the node
        self._update_ops_mentions: dict[tuple[int, int], bool] = {}  # mentions_update_ops, by (id(), depth)
        self._positions: Positions | None = None
        _Collector(self).walk(module)

    def release(self) -> None:
        """Drop the tree and every index (the engine calls this when the file is done): a
        per-file cache that outlives the file (a dict keyed by the context whose values
        refer back to it) then keeps this hollow object, not the whole tree."""
        self.__dict__.clear()

    # -- structure ----------------------------------------------------------------
    def parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self.parents.get(node)

    def ancestors(self, node: cst.CSTNode) -> Iterator[cst.CSTNode]:
        p = self.parents.get(node)
        while p is not None:
            yield p
            p = self.parents.get(p)

    def scope_of(self, node: cst.CSTNode) -> ScopeNode:
        return self.scope_map.get(node, self.module)

    def statement_of(self, node: cst.CSTNode) -> cst.CSTNode:
        """The innermost simple or compound statement that contains ``node``."""
        cur: cst.CSTNode | None = node
        while cur is not None and not isinstance(cur, (cst.BaseSmallStatement, cst.BaseCompoundStatement)):
            cur = self.parents.get(cur)
        return cur or node

    def contains(self, outer: cst.CSTNode, inner: cst.CSTNode) -> bool:
        if inner is outer:
            return True
        start = self.index.get(outer)
        at = self.index.get(inner)
        if start is None or at is None:  # a node outside the indexed tree: walk the parents
            return any(a is outer for a in self.ancestors(inner))
        return start < at < self.end[outer]

    def descendants(self, node: cst.CSTNode) -> list[cst.CSTNode]:
        """All nodes under ``node`` (inclusive), in document order."""
        return self.nodes[self.index[node] : self.end[node]]

    @cached_property
    def _nodes_by_type(self) -> dict[type, list[cst.CSTNode]]:
        out: defaultdict[type, list[cst.CSTNode]] = defaultdict(list)
        for n in self.nodes:
            out[type(n)].append(n)
        return dict(out)

    def nodes_of(self, node_type: type[_N]) -> list[_N]:
        """Every node of exactly type ``node_type`` (``cst.Call``...), in document order
        (indexed once per file: a query over the calls does not scan every node)."""
        return self._nodes_by_type.get(node_type, [])  # type: ignore[return-value]

    @cached_property
    def _calls_by_name(self) -> dict[str, list[cst.Call]]:
        out: dict[str, list[cst.Call]] = {}
        for n in self.nodes_of(cst.Call):
            f = n.func
            key = f.value if isinstance(f, cst.Name) else f.attr.value if isinstance(f, cst.Attribute) else None
            if key is not None:
                out.setdefault(key, []).append(n)
        return out

    def calls_named(self, name: str) -> list[cst.Call]:
        """Calls ``name(...)`` or ``obj.name(...)`` anywhere in the file, in document order."""
        return self._calls_by_name.get(name, [])

    def calls_in(self, node: cst.CSTNode) -> Iterator[cst.Call]:
        for n in self.descendants(node):
            if type(n) is cst.Call:
                yield n

    # -- positions (lazy) ----------------------------------------------------------
    def range(self, node: cst.CSTNode) -> tuple[int, int, int, int]:
        """1-based (line, column, end_line, end_column) of a node; end is exclusive."""
        if self._positions is None:
            self._positions = Positions(self.module, self.source, self._top_statement, self._statement_positions)
        (line, col), (end_line, end_col) = self._positions[node]
        return line, col + 1, end_line, end_col + 1

    def _top_statement(self, node: cst.CSTNode) -> cst.CSTNode | None:
        """The top-level statement that holds ``node`` (None: the module, or not in the tree)."""
        module, parents = self.module, self.parents
        parent = parents.get(node)
        while parent is not None and parent is not module:
            node, parent = parent, parents.get(parent)
        return node if parent is module else None

    def line(self, node: cst.CSTNode) -> int:
        return self.range(node)[0]

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    @cached_property
    def source_lines(self) -> list[str]:
        """``source.splitlines(keepends=True)``, split once per file (fixes slice it)."""
        return self.source.splitlines(keepends=True)

    # -- names --------------------------------------------------------------------
    def qualname(self, expr: cst.CSTNode | None) -> str | None:
        """Canonical dotted name of a Name/Attribute chain rooted in an import."""
        if expr is None:
            return None
        if expr in self._qualname_cache:
            return self._qualname_cache[expr]
        self._qualname_cache[expr] = None  # guards against alias cycles
        result = self._qualname(expr)
        self._qualname_cache[expr] = result
        return result

    def _qualname(self, expr: cst.CSTNode) -> str | None:
        if isinstance(expr, cst.Attribute):
            base = self.qualname(expr.value)
            return tfapi.canonical(f"{base}.{expr.attr.value}") if base else None
        if isinstance(expr, cst.Name):
            name = expr.value
            b = self.binding(expr)
            if b is not None and b.kind in ("assign", "annassign") and b.value is not None:
                # `K = tf.keras.backend`, `Dense = tf.keras.layers.Dense`
                if isinstance(b.value, (cst.Name, cst.Attribute)):
                    return self.qualname(b.value)
                return None
            if b is not None and b.kind not in ("import",):
                return None
            full = self.imports.get(name)
            if full is None:
                return None
            if full.split(".")[0] not in tfapi.roots():
                return None
            return tfapi.canonical(full)
        return None

    @cached_property
    def _bound_names(self) -> frozenset[str]:
        """The names bound (assigned, defined, a parameter...) somewhere in the file."""
        return frozenset(name for _, name in self.bindings)

    def call_name(self, call: cst.CSTNode) -> str | None:
        return self.qualname(call.func) if isinstance(call, cst.Call) else None

    def bindings_of(self, name: str, scope: ScopeNode) -> list[Binding]:
        return self.bindings.get((scope, name), [])

    def binding(self, expr: cst.BaseExpression, at: cst.CSTNode | None = None) -> Binding | None:
        """The binding a Name (or ``self.attr``) refers to at ``at`` (default: the expression)."""
        at = at if at is not None else expr
        pos = self.index.get(at, len(self.nodes))
        if isinstance(expr, cst.Attribute):
            d = dotted(expr)
            if not d or not d.startswith("self."):
                return None
            cls = next((a for a in self.ancestors(at) if isinstance(a, cst.ClassDef)), None)
            if cls is None:
                return None
            found = self.bindings.get((cls, d), [])
            # prefer the last binding before the use in the same method, else any (e.g. __init__)
            method = next((a for a in self.ancestors(at) if isinstance(a, cst.FunctionDef)), None)
            same = [b for b in found if b.index < pos and method is not None and self.contains(method, b.node)]
            if same:
                return same[-1]
            return found[-1] if found else None
        if not isinstance(expr, cst.Name):
            return None
        name = expr.value
        if name not in self._bound_names:  # `tf`, `np`, `range`: its import or nothing, wherever it is read
            return Binding(name, -1, self.module, None, "import", self.module) if name in self.imports else None
        scope: cst.CSTNode | None = self.scope_of(at)
        first = True
        while scope is not None:
            found = self.bindings.get((scope, name))
            if found and not (isinstance(scope, cst.ClassDef) and not first):
                # the last binding before the use; bindings inside the statement that uses the
                # name do not count (x = f(x)). Scanned from the end: files with many bindings
                # of one name (a long script's `loss`, `grads`) would be quadratic otherwise, and
                # the bindings after the use are skipped by bisection (each list is in document
                # order; a parameter's index, its function's, is always before a use it binds).
                for i in range(bisect_left(found, pos, key=_binding_index) - 1, -1, -1):
                    b = found[i]
                    if b.kind in ("for", "with", "param") or not self.contains(b.node, at):
                        return b
                if not first or isinstance(scope, cst.Module):
                    return found[-1]
            if name in self.imports and isinstance(scope, cst.Module):
                return Binding(name, -1, self.module, None, "import", self.module)
            if isinstance(scope, cst.Module):
                break
            first = False
            scope = self.scope_of(scope)
        if name in self.imports:
            return Binding(name, -1, self.module, None, "import", self.module)
        return None

    def value_of(
        self, expr: cst.BaseExpression | None, at: cst.CSTNode | None = None, depth: int = 6
    ) -> cst.BaseExpression | None:
        """Follow Name/self.attr bindings to the expression that produced the value."""
        cur = expr
        where = at
        for _ in range(depth):
            if not isinstance(cur, (cst.Name, cst.Attribute)):
                return cur
            b = self.binding(cur, where)
            if b is None or b.value is None or b.kind not in ("assign", "annassign", "with"):
                return cur
            if self.qualname(cur) is not None:
                return cur
            where = b.node
            cur = b.value
        return cur

    def references(self, name: str, scope: ScopeNode | None = None) -> list[cst.CSTNode]:
        """Name nodes (or ``self.attr`` Attributes) that read ``name`` anywhere in the file."""
        out: list[cst.CSTNode] = []
        if name.startswith("self."):
            attr = name[5:]
            for n in self.nodes_of(cst.Attribute):
                if n.attr.value == attr and isinstance(n.value, cst.Name) and n.value.value == "self":
                    out.append(n)
            return out
        for n in self.nodes_of(cst.Name):
            if n.value == name:
                p = self.parents.get(n)
                if isinstance(p, cst.Attribute) and p.attr is n:
                    continue
                if isinstance(p, cst.Arg) and p.keyword is n:
                    continue
                if isinstance(p, (cst.FunctionDef, cst.ClassDef, cst.Param)):
                    continue
                out.append(n)
        return out

    def read_of(self, node: cst.Name | cst.Attribute) -> tuple[str, Binding | None] | None:
        """What a Name (or ``self.attr``) node reads: its name and the binding visible there.
        None: not a read (an assignment target, an attribute's or keyword's name, a def's
        name, another attribute). Memoised per node: every dependency walk of a file asks
        about the same names."""
        key = id(node)
        if key in self._reads:
            return self._reads[key]
        read: tuple[str, Binding | None] | None = None
        if type(node) is cst.Name:
            p = self.parents.get(node)
            if not (
                (isinstance(p, cst.Attribute) and p.attr is node)
                or (isinstance(p, cst.Arg) and p.keyword is node)
                or self.is_store(node)  # `loss = f(x)` in a helper binds `loss`: no read of a `loss` bound elsewhere
            ):
                read = (node.value, self.binding(node))
        else:
            d = dotted(node)
            if d and d.startswith("self.") and d.count(".") == 1 and not self.is_store(node):
                read = (d, self.binding(node))
        self._reads[key] = read
        return read

    def is_store(self, node: cst.CSTNode) -> bool:
        """Whether a Name/Attribute is an assignment target."""
        cur = node
        p = self.parents.get(cur)
        while isinstance(p, (cst.Tuple, cst.List, cst.Element, cst.StarredElement)):
            cur, p = p, self.parents.get(p)
        if isinstance(p, cst.AssignTarget) and p.target is cur:
            return True
        if isinstance(p, (cst.AnnAssign, cst.AugAssign)) and p.target is cur:
            return True
        return isinstance(p, cst.AsName) or (isinstance(p, cst.For) and p.target is cur)

    # -- per-file indexes for model_info (built once, on first use) -------------------
    @cached_property
    def _false_assigned(self) -> set[str]:
        """Dotted targets assigned the literal ``False`` (``base.trainable = False``)."""
        out: set[str] = set()
        for n in self.nodes_of(cst.Assign):
            if isinstance(n.value, cst.Name) and n.value.value == "False":
                for t in n.targets:
                    d = dotted(t.target)
                    if d:
                        out.add(d)
        return out

    @cached_property
    def _add_calls(self) -> dict[str, list[cst.Call]]:
        """``X.add(...)`` calls by the dotted receiver ``X`` (Sequential.add)."""
        out: dict[str, list[cst.Call]] = {}
        for n in self.calls_named("add"):
            if isinstance(n.func, cst.Attribute):
                d = dotted(n.func.value)
                if d:
                    out.setdefault(d, []).append(n)
        return out

    # -- TensorFlow facts ---------------------------------------------------------------
    @cached_property
    def is_tf1(self) -> bool:
        """A TF1 graph-mode script (placeholders, sessions, tf.layers, compat.v1...)."""
        return bool(_TF1_TEXT.search(self.source))

    @cached_property
    def tapes(self) -> list[TapeBlock]:
        out: list[TapeBlock] = []
        tape_names = tfapi.names("gradients", "tape")
        for w in self._with_nodes:
            for item in w.items:
                expr = item.item
                call = expr if isinstance(expr, cst.Call) else self.value_of(expr, w)
                if not (isinstance(call, cst.Call) and self.call_name(call) in tape_names):
                    continue
                name = None
                if item.asname is not None and isinstance(item.asname.name, cst.Name):
                    name = item.asname.name.value
                elif isinstance(expr, cst.Name):
                    name = expr.value
                persistent = False
                arg = get_arg(call, "persistent", 0)
                if arg is not None and not (isinstance(arg.value, cst.Name) and arg.value.value == "False"):
                    persistent = True
                out.append(TapeBlock(w, name, persistent))
        return out

    @cached_property
    def gradient_calls(self) -> list[GradientCall]:
        """Every gradient request of the file (``analysis.gradients``)."""
        from tflint_grad.analysis.gradients import gradient_calls

        return gradient_calls(self)

    @cached_property
    def _gradient_call_by_node(self) -> dict[int, GradientCall]:
        return {id(gc.node): gc for gc in self.gradient_calls}

    def gradient_call(self, call: cst.CSTNode) -> GradientCall | None:
        """The gradient request that ``call`` makes (one of ``gradient_calls``), if any."""
        return self._gradient_call_by_node.get(id(call))

    @cached_property
    def _gradient_calls_by_tape(self) -> dict[int, list[GradientCall]]:
        out: dict[int, list[GradientCall]] = {}
        for gc in self.gradient_calls:
            if gc.tape is not None:
                out.setdefault(id(gc.tape), []).append(gc)
        return out

    def gradient_calls_of(self, tape: TapeBlock) -> list[GradientCall]:
        """The ``tape.gradient`` requests recorded by ``tape``, in document order."""
        return self._gradient_calls_by_tape.get(id(tape), [])

    @cached_property
    def _tape_by_with(self) -> dict[int, TapeBlock]:
        """The tape of each ``with`` node (the last item's, for ``with tape1, tape2:``)."""
        return {id(t.with_node): t for t in self.tapes}

    @cached_property
    def _tapes_named(self) -> dict[tuple[int, str | None], list[TapeBlock]]:
        """The tapes by (``id`` of the scope of their ``with``, name), in document order."""
        out: dict[tuple[int, str | None], list[TapeBlock]] = {}
        for t in self.tapes:
            out.setdefault((id(self.scope_of(t.with_node)), t.name), []).append(t)
        return out

    def tapes_named(self, name: str | None, scope: ScopeNode) -> list[TapeBlock]:
        """The ``with ... as <name>:`` tape blocks directly in ``scope``, in document order
        (``name`` None: the tapes not bound to a name)."""
        return self._tapes_named.get((id(scope), name), [])

    def tape_before(self, name: str | None, scope: ScopeNode, node: cst.CSTNode) -> TapeBlock | None:
        """The last tape block named ``name`` in ``scope`` whose ``with`` starts before ``node``."""
        blocks = self.tapes_named(name, scope)
        if not blocks:
            return None
        index = self.index
        i = bisect_left(blocks, index.get(node, 0), key=lambda t: index[t.with_node])
        return blocks[i - 1] if i else None

    def in_tape_body(self, node: cst.CSTNode, name: str, scope: ScopeNode) -> bool:
        """Whether ``node`` is (in) the body of a tape block named ``name`` in ``scope``."""
        bodies = self._tape_bodies.get((id(scope), name))
        if not bodies or node not in self.index:
            return False
        parents = self.parents
        cur: cst.CSTNode | None = node
        while cur is not None:
            if id(cur) in bodies:
                return True
            cur = parents.get(cur)
        return False

    @cached_property
    def _tape_bodies(self) -> dict[tuple[int, str | None], set[int]]:
        """The ``id`` of the bodies of the tapes of ``_tapes_named``, by the same key."""
        return {key: {id(t.with_node.body) for t in blocks} for key, blocks in self._tapes_named.items()}

    def enclosing_tape(self, node: cst.CSTNode) -> TapeBlock | None:
        """The GradientTape ``with`` block whose body runs ``node`` (not via a nested def)."""
        by_node = self._tape_by_with
        if not by_node:
            return None
        for a in self.ancestors(node):
            if isinstance(a, (cst.FunctionDef, cst.Lambda, cst.ClassDef)):
                return None
            t = by_node.get(id(a))
            if t is not None and not any(self.contains(i, node) for i in a.items):
                return t
        return None

    def is_tape(self, expr: cst.BaseExpression, at: cst.CSTNode) -> bool:
        """Whether ``expr`` is a GradientTape object (bound by ``with ... as`` or assignment)."""
        if isinstance(expr, cst.Call):
            return self.call_name(expr) in tfapi.names("gradients", "tape")
        b = self.binding(expr, at)
        if b is not None and b.value is not None:
            v = b.value
            return isinstance(v, cst.Call) and self.call_name(v) in tfapi.names("gradients", "tape")
        name = dotted(expr)
        return bool(name and "tape" in name.split(".")[-1].lower())

    # -- models ---------------------------------------------------------------------
    def model_info(self, callee: cst.BaseExpression, at: cst.CSTNode, _depth: int = 0) -> ModelInfo:
        """Classify the object that ``callee(...)`` calls: a Keras model, a layer, unknown, other
        (``analysis.models``)."""
        from tflint_grad.analysis.models import resolver

        return resolver(self).info(callee, at, _depth)


def tf1_batch_norm_training(ctx: FileContext, call: cst.CSTNode) -> bool | None:
    """For a TF1 functional batch norm (table ``layers.tf1_batch_norm``): whether it runs in
    training mode AND adds its moving-average updates to UPDATE_OPS. A literal ``False``
    (or the default ``training=False`` of ``tf.layers.batch_normalization``) is not training
    mode; any non-literal value (a placeholder, ``**kwargs``) counts as training;
    ``updates_collections=None`` runs the updates in place. A call of a TF1 batch-norm layer
    object (``tf.layers.BatchNormalization()``) counts the same way. None: not a TF1 batch norm."""
    if not isinstance(call, cst.Call):
        return None
    qn = ctx.call_name(call)
    if qn is None:
        # `self.bn = tf.layers.BatchNormalization()` ... `self.bn(x, training=True)`
        if isinstance(call.func, (cst.Name, cst.Attribute)):
            ctor = ctx.value_of(call.func, call)
            if isinstance(ctor, cst.Call) and ctx.call_name(ctor) in tfapi.names("layers", "tf1_batch_norm_classes"):
                arg = get_arg(call, "training", 1)
                if arg is None:
                    return any(a.star == "**" for a in call.args)
                v = arg.value
                return v.value == "True" if isinstance(v, cst.Name) and v.value in ("True", "False") else True
        return None
    for name, keyword, default, bypass in tfapi.table("layers", "tf1_batch_norm"):
        if qn != name:
            continue
        if bypass:
            arg = get_arg(call, bypass)
            if arg is not None and isinstance(arg.value, cst.Name) and arg.value.value == "None":
                return False
        arg = get_arg(call, keyword)
        if arg is None:
            return bool(default) or any(a.star == "**" for a in call.args)
        v = arg.value
        if isinstance(v, cst.Name) and v.value in ("True", "False"):
            return v.value == "True"
        return True
    return None


def is_update_ops_collection(ctx: FileContext, call: cst.CSTNode) -> bool:
    """``get_collection(GraphKeys.UPDATE_OPS[, scope])`` (any alias, a graph's method, or the
    ``"update_ops"`` string key)."""
    if not isinstance(call, cst.Call):
        return False
    if ctx.call_name(call) not in tfapi.names("gradients", "get_collection"):
        func = call.func
        last = (
            func.attr.value if isinstance(func, cst.Attribute) else func.value if isinstance(func, cst.Name) else None
        )
        if last not in ("get_collection", "get_collection_ref"):
            return False
    arg = get_arg(call, "key", 0)
    if arg is None:
        return False
    key = arg.value
    if ctx.qualname(key) in tfapi.names("graph", "update_ops_key"):
        return True
    if string_value(key) == tfapi.table("graph", "update_ops_string"):
        return True
    d = dotted(key)
    return bool(d and d.split(".")[-1] == "UPDATE_OPS")


def mentions_update_ops(ctx: FileContext, node: cst.CSTNode, depth: int = 3) -> bool:
    """Whether ``node`` contains the UPDATE_OPS collection, directly or through a name (or
    ``self.attr``) bound to it (``update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)``).
    Memoised per node and depth: every train op of a script asks about every ``sess.run``."""
    key = (id(node), depth)
    known = ctx._update_ops_mentions.get(key)
    if known is None:
        known = ctx._update_ops_mentions[key] = _mentions_update_ops(ctx, node, depth)
    return known


def _mentions_update_ops(ctx: FileContext, node: cst.CSTNode, depth: int) -> bool:
    for n in ctx.descendants(node):
        t = type(n)
        if t is cst.Call:
            if is_update_ops_collection(ctx, n):
                return True
        elif depth > 0 and (t is cst.Name or t is cst.Attribute):
            p = ctx.parents.get(n)
            if isinstance(p, cst.Attribute) and p.attr is n:
                continue
            if t is cst.Attribute and not (isinstance(n.value, cst.Name) and n.value.value == "self"):
                continue
            if ctx.is_store(n):
                continue
            b = ctx.binding(n)
            if b is not None and b.value is not None and b.kind in ("assign", "annassign", "for", "unpack"):
                if (
                    b.value in ctx.index
                    and not ctx.contains(b.value, n)
                    and mentions_update_ops(ctx, b.value, depth - 1)
                ):
                    return True
    return False


def dependency_names(ctx: FileContext, expr: cst.CSTNode, budget: int = 4000) -> set[str]:
    """Names (and ``self.attr``) that flow into ``expr`` through the file's assignments.

    Follows each name to the binding visible where it is read (``x = f(x)`` reads the
    previous ``x``; ``x += y`` also reads the earlier bindings), transitively, and into the
    body of a local function or class that is read (``loss = net(x)`` reaches the
    variables ``net`` uses). Over-approximates; stops after ``budget`` visited nodes.
    """
    return dependencies(ctx, expr, budget)[0]


def dependencies(ctx: FileContext, expr: cst.CSTNode, budget: int = 4000) -> tuple[set[str], set[int]]:
    """``dependency_names`` plus the ``id()`` of every binding statement reached (the
    ``Assign``/``FunctionDef``... node of each :class:`Binding` followed): scope-exact,
    unlike names that several functions may reuse."""
    out: set[str] = set()
    reached: set[int] = set()
    seen: set[int] = set()
    todo: list[cst.CSTNode] = [expr]
    while todo and budget > 0:
        node = todo.pop()
        if id(node) in seen or node not in ctx.index:
            continue
        seen.add(id(node))
        for n in ctx.descendants(node):
            budget -= 1
            if budget <= 0:
                break
            t = type(n)
            if t is not cst.Name and t is not cst.Attribute:
                continue
            read = ctx.read_of(n)  # type: ignore[arg-type]
            if read is None:
                continue
            name, b = read
            out.add(name)
            if b is None or (b.kind in ("import", "param") and b.value is None):
                continue
            reached.add(id(b.node))
            if b.kind in ("def", "class"):
                todo.append(b.node)
                continue
            if b.value is not None:
                todo.append(b.value)
            if b.kind == "augassign":
                todo.append(b.node.value)  # type: ignore[attr-defined]
                for earlier in ctx.bindings_of(b.name, b.scope):
                    if earlier.index < b.index and earlier.value is not None:
                        reached.add(id(earlier.node))
                        todo.append(earlier.value)
    return out, reached
