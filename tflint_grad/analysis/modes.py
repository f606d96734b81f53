"""Execution mode per scope: does this statement run eagerly or build a graph?

- Inside ``with <graph>.as_default():`` (``tf.Graph()`` or a name bound to one): graph.
- Inside a ``@tf.function``: ``function`` (a graph whose stateful ops run through automatic
  control dependencies).
- Elsewhere, by document order (notebook cells run in order): after
  ``disable_v2_behavior()``/``disable_eager_execution()`` graph, after
  ``enable_eager_execution()``/``enable_v2_behavior()`` eager. Before any such switch: graph for
  a TF1 script (placeholders, sessions, variable initializers outside graph blocks: TF1 ran graphs by
  default and placeholders cannot run eagerly), ``unknown`` when those calls go through
  ``tf.compat.v1`` with no switch (a graph under TF1, eager under TF2), else eager (the TF2
  default).
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING, Literal

import libcst as cst

from tflint_grad.analysis.context import dotted

if TYPE_CHECKING:
    from tflint_grad.analysis.context import FileContext

# unknown: TF1 graph calls reached through ``tf.compat.v1`` with no switch: a graph under TF1,
# eager (and broken) under TF2; a rule that needs graph mode reports it with low confidence.
Mode = Literal["eager", "graph", "function", "unknown"]

_TO_GRAPH = ("disable_v2_behavior", "disable_eager_execution")
_TO_EAGER = ("enable_eager_execution", "enable_v2_behavior")
# Calls that only make sense in a TF1 graph (a script using them ran with graphs by default).
_TF1_GRAPH_CALLS = frozenset(
    {"placeholder", "Session", "InteractiveSession", "global_variables_initializer", "placeholder_with_default"}
)


class Modes:
    """Per-file execution-mode facts (``ctx.modes``)."""

    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx
        self.graph_blocks: list[cst.With] = []
        self.switches: list[tuple[int, Mode]] = []
        tf1_outside = compat_outside = False
        for n in ctx.nodes:
            t = type(n)
            if t is cst.With:
                if any(self._is_graph_default(item.item, n) for item in n.items):  # type: ignore[attr-defined]
                    self.graph_blocks.append(n)  # type: ignore[arg-type]
            elif t is cst.Call:
                name = self._call_last(n)  # type: ignore[arg-type]
                if name in _TO_GRAPH:
                    self.switches.append((ctx.index[n], "graph"))
                elif name in _TO_EAGER:
                    self.switches.append((ctx.index[n], "eager"))
                elif not tf1_outside and name in _TF1_GRAPH_CALLS and not self._in_graph_block(n):
                    if self._through_compat(n):  # type: ignore[arg-type]
                        compat_outside = True
                    else:
                        tf1_outside = True
        self.baseline: Mode = "graph" if tf1_outside else "unknown" if compat_outside else "eager"
        self._keys = [i for i, _ in self.switches]

    def _through_compat(self, call: cst.Call) -> bool:
        """``tf.compat.v1.placeholder`` / ``tf.placeholder`` after ``import tensorflow.compat.v1 as tf``."""
        d = dotted(call.func) or ""
        if ".compat." in f".{d}.":
            return True
        return "compat" in self.ctx.imports.get(d.split(".")[0], "")

    def _call_last(self, call: cst.Call) -> str | None:
        qn = self.ctx.call_name(call)
        if qn is not None:
            return qn.rsplit(".", 1)[-1]
        return None

    def _is_graph_default(self, expr: cst.BaseExpression, at: cst.CSTNode) -> bool:
        """``g.as_default()`` / ``tf.Graph().as_default()``."""
        if not (isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute)):
            return False
        if expr.func.attr.value != "as_default":
            return False
        base = self.ctx.value_of(expr.func.value, at)
        if isinstance(base, cst.Call):
            return (self.ctx.call_name(base) or "").endswith("Graph")
        d = dotted(base) or ""
        return "graph" in d.lower()

    def _in_graph_block(self, node: cst.CSTNode) -> bool:
        if not self.graph_blocks:
            return False
        blocks = {id(b) for b in self.graph_blocks}
        return any(id(a) in blocks for a in self.ctx.ancestors(node))

    def _in_tf_function(self, node: cst.CSTNode) -> bool:
        ctx = self.ctx
        for a in ctx.ancestors(node):
            if isinstance(a, cst.FunctionDef):
                for d in a.decorators:
                    dec = d.decorator.func if isinstance(d.decorator, cst.Call) else d.decorator
                    qn = ctx.qualname(dec) or dotted(dec) or ""
                    if qn.endswith("function"):
                        return True
        return False

    def mode_at(self, node: cst.CSTNode) -> Mode:
        """The execution mode in which ``node`` runs."""
        if self._in_tf_function(node):
            return "function"
        if self._in_graph_block(node):
            return "graph"
        i = bisect_right(self._keys, self.ctx.index.get(node, 0))
        return self.switches[i - 1][1] if i else self.baseline


def modes(ctx: FileContext) -> Modes:
    cached = ctx.__dict__.get("_modes")
    if cached is None:
        cached = ctx.__dict__["_modes"] = Modes(ctx)
    return cached


def mode_at(ctx: FileContext, node: cst.CSTNode) -> Mode:
    return modes(ctx).mode_at(node)
