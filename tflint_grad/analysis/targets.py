"""Gradient requests and "does this op reach a gradient target?" (TFG401-403, TFG501-503).

:func:`gradient_targets` lists, once per file, the gradient requests (``tape.gradient``,
``tf.gradients``, ``minimize``, ``compute_gradients``, ``get_gradients``, ``add_loss``, the
loss of ``compile`` and the compiled model, ``create_train_op``) and the binding statements
whose values flow into their targets; an op visibly lies on the path to a gradient target when
one of its enclosing statements is among them (or the body of a function or ``self.method``
the target reads). It over-approximates the data flow: "does not reach" is the strong answer.

The requests themselves come from ``ctx.gradient_calls`` (``analysis.gradients``, the one
recognizer); this module adds the file-wide reachability the numerics rules ask for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import libcst as cst

from tflint_grad.analysis.context import FileContext, dotted
from tflint_grad.analysis.facts import memo


@dataclass
class GradientRequest:
    """One request for gradients (the shape of ``analysis.gradients.GradientCall``)."""

    node: cst.Call
    kind: (
        str  # tape | tf_gradients | compute_gradients | get_gradients | minimize | compile | add_loss | create_train_op
    )
    target: cst.BaseExpression  # what is differentiated (the loss)
    sources: cst.BaseExpression | None = None  # with respect to what (the variable list), as written
    sources_keyword: str | None = None  # its keyword (`var_list`, `sources`...)


@dataclass
class GradientTargets:
    """The gradient requests of one file and what flows into their targets."""

    requests: list[GradientRequest] = field(default_factory=list)
    targets: list[tuple[cst.Call, cst.CSTNode]] = field(default_factory=list)  # (call, target expression)
    reached: set[int] = field(default_factory=set)  # id() of target expressions and binding statements

    def request(self, call: cst.CSTNode) -> GradientRequest | None:
        """The gradient request made by ``call``, if it is one."""
        return next((r for r in self.requests if r.node is call), None)

    @property
    def any(self) -> bool:
        return bool(self.targets)

    def reaches(self, ctx: FileContext, node: cst.CSTNode) -> bool:
        """Whether ``node`` visibly lies on the path to a gradient target: it is inside a
        target expression, or inside a statement (or function) whose value flows into one."""
        reached = self.reached
        if id(node) in reached:
            return True
        return any(id(a) in reached for a in ctx.ancestors(node))


def _build(ctx: FileContext) -> GradientTargets:
    out = GradientTargets()
    for gc in ctx.gradient_calls:  # the one recognizer of gradient requests (analysis.gradients)
        if gc.target is None:
            continue
        out.requests.append(GradientRequest(gc.node, gc.kind, gc.target, gc.sources, gc.sources_keyword))
        out.targets.append((gc.node, gc.target))
        if gc.kind == "compile" and isinstance(gc.node.func, cst.Attribute):
            out.targets.append((gc.node, gc.node.func.value))  # the compiled model's layers feed its loss
    for _, expr in out.targets:
        out.reached.add(id(expr))
        out.reached |= _flow_ids(ctx, expr, budget=6000)
    if out.targets:
        _narrow_compound(ctx, out)
        _follow_methods(ctx, out)
    return out


def _flow_ids(ctx: FileContext, expr: cst.CSTNode, budget: int) -> set[int]:
    """``id()`` of the binding statements (and function/class bodies) whose values flow into
    ``expr``: :func:`dependencies`, except that a name a function body *assigns* is not a read
    (``loss = f(x)`` in a helper does not depend on a module-level ``loss`` bound later)."""
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
            if t is cst.Name:
                p = ctx.parents.get(n)
                if (isinstance(p, cst.Attribute) and p.attr is n) or (isinstance(p, cst.Arg) and p.keyword is n):
                    continue
            elif t is cst.Attribute:
                d = dotted(cast(cst.Attribute, n))
                if not d or not d.startswith("self.") or d.count(".") != 1:
                    continue
            else:
                continue
            if ctx.is_store(n):
                continue
            b = ctx.binding(cast(cst.BaseExpression, n))  # a Name or self.attr (above)
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
    return reached


def _narrow_compound(ctx: FileContext, out: GradientTargets) -> None:
    """A name bound by ``for x in it`` / ``with c as x`` reaches the target through ``it`` /
    ``c`` only, not through the whole body of the statement."""
    reached = out.reached
    for n in ctx.nodes:
        t = type(n)
        if (t is cst.For or t is cst.With) and id(n) in reached:
            reached.discard(id(n))
            if t is cst.For:
                loop = cast(cst.For, n)
                reached.add(id(loop.iter))
                reached.add(id(loop.target))
            else:
                for item in cast(cst.With, n).items:
                    reached.add(id(item))


def _follow_methods(ctx: FileContext, out: GradientTargets) -> None:
    """``self.loss_fn(...)`` read on the path: the method's body is on the path too."""
    calls = [
        n
        for n in ctx.nodes
        if type(n) is cst.Call
        and isinstance(n.func, cst.Attribute)
        and isinstance(n.func.value, cst.Name)
        and n.func.value.value == "self"
    ]
    done: set[int] = set()
    for _ in range(4):
        new = False
        for c in calls:
            if id(c) in done or not out.reaches(ctx, c):
                continue
            done.add(id(c))
            cls = next((a for a in ctx.ancestors(c) if isinstance(a, cst.ClassDef)), None)
            if cls is None:
                continue
            name = c.func.attr.value  # type: ignore[attr-defined]
            for stmt in cls.body.body:
                if isinstance(stmt, cst.FunctionDef) and stmt.name.value == name and id(stmt) not in out.reached:
                    out.reached.add(id(stmt))
                    out.reached |= _flow_ids(ctx, stmt, budget=3000)
                    new = True
        if not new:
            break


def gradient_targets(ctx: FileContext) -> GradientTargets:
    return memo(ctx, "gradient_targets", _build)
