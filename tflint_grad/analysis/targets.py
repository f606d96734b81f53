"""Gradient requests and "does this op reach a gradient target?": the one reachability query
(TFG201, TFG401-403, TFG501-503, producers, weights).

:func:`gradient_targets` lists, once per file, the gradient requests (``ctx.gradient_calls``
from ``analysis.gradients``, the one recognizer: ``tape.gradient``, ``tf.gradients``,
``minimize``, ``compute_gradients``, ``get_gradients``, ``add_loss``, the loss of ``compile``
and the compiled model, ``create_train_op``) and the binding statements whose values flow into
their targets; an op visibly lies on the path to a gradient target when one of its enclosing
statements is among them (or the body of a function or ``self.method`` the target reads).
It over-approximates the data flow: "does not reach" is the strong answer.
``reaches`` asks about any request; ``reaching`` says which request (the first, in document order).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from tflint_grad.analysis.context import FileContext, dependencies
from tflint_grad.analysis.facts import memo
from tflint_grad.analysis.gradients import GradientCall


@dataclass
class GradientTargets:
    """The gradient requests of one file and what flows into their targets."""

    requests: list[GradientCall] = field(default_factory=list)  # those with a target
    targets: list[tuple[cst.Call, cst.CSTNode]] = field(default_factory=list)  # (call, target expression)
    reached: set[int] = field(default_factory=set)  # id() of target expressions and binding statements
    _per_request: dict[int, set[int]] = field(default_factory=dict, repr=False)  # built on demand
    _by_call: dict[int, GradientCall] | None = field(default=None, repr=False)  # id(call) -> request

    def request(self, call: cst.CSTNode) -> GradientCall | None:
        """The gradient request made by ``call``, if it is one."""
        if self._by_call is None:
            self._by_call = {id(r.node): r for r in self.requests}
        return self._by_call.get(id(call))

    @property
    def any(self) -> bool:
        return bool(self.targets)

    def reaches(self, ctx: FileContext, node: cst.CSTNode) -> bool:
        """Whether ``node`` visibly lies on the path to a gradient target: it is inside a
        target expression, or inside a statement (or function) whose value flows into one."""
        return _within(ctx, node, self.reached)

    def reaching(self, ctx: FileContext, node: cst.CSTNode) -> GradientCall | None:
        """The first request (in document order) whose target ``node`` visibly flows into."""
        if not self.reaches(ctx, node):
            return None
        chain = [id(node), *map(id, ctx.ancestors(node))]  # _within, as one set test per request
        for r in self.requests:
            reached = self._per_request.get(id(r))
            if reached is None:
                reached = self._per_request[id(r)] = _reach(ctx, [t for c, t in self.targets if c is r.node])
            if not reached.isdisjoint(chain):
                return r
        return None


def _within(ctx: FileContext, node: cst.CSTNode, reached: set[int]) -> bool:
    if id(node) in reached:
        return True
    return any(id(a) in reached for a in ctx.ancestors(node))


def _build(ctx: FileContext) -> GradientTargets:
    out = GradientTargets()
    for gc in ctx.gradient_calls:  # the one recognizer of gradient requests (analysis.gradients)
        if gc.target is None:
            continue
        out.requests.append(gc)
        out.targets.append((gc.node, gc.target))
        if gc.kind == "compile" and isinstance(gc.node.func, cst.Attribute):
            out.targets.append((gc.node, gc.node.func.value))  # the compiled model's layers feed its loss
    out.reached = _reach(ctx, [expr for _, expr in out.targets])
    return out


def _reach(ctx: FileContext, exprs: list[cst.CSTNode]) -> set[int]:
    """``id()`` of ``exprs`` and of what flows into them (statements, function and method bodies)."""
    reached: set[int] = set()
    for expr in exprs:
        reached.add(id(expr))
        reached |= dependencies(ctx, expr, budget=6000)[1]
    if exprs:
        _narrow_compound(ctx, reached)
        _follow_methods(ctx, reached)
    return reached


def _narrow_compound(ctx: FileContext, reached: set[int]) -> None:
    """A name bound by ``for x in it`` / ``with c as x`` reaches the target through ``it`` /
    ``c`` only, not through the whole body of the statement."""
    for loop in ctx.nodes_of(cst.For):
        if id(loop) in reached:
            reached.discard(id(loop))
            reached.add(id(loop.iter))
            reached.add(id(loop.target))
    for block in ctx.nodes_of(cst.With):
        if id(block) in reached:
            reached.discard(id(block))
            for item in block.items:
                reached.add(id(item))


def _follow_methods(ctx: FileContext, reached: set[int]) -> None:
    """``self.loss_fn(...)`` read on the path: the method's body is on the path too."""
    done: set[int] = set()
    for _ in range(4):
        new = False
        for c, chain, cls in memo(ctx, "self_method_calls", _self_method_calls):
            if id(c) in done or reached.isdisjoint(chain):
                continue
            done.add(id(c))
            if cls is None:
                continue
            name = c.func.attr.value  # type: ignore[attr-defined]
            for stmt in cls.body.body:
                if isinstance(stmt, cst.FunctionDef) and stmt.name.value == name and id(stmt) not in reached:
                    reached.add(id(stmt))
                    reached |= dependencies(ctx, stmt, budget=3000)[1]
                    new = True
        if not new:
            break


def _self_method_calls(ctx: FileContext) -> list[tuple[cst.Call, frozenset[int], cst.ClassDef | None]]:
    """The ``self.m(...)`` calls of the file, each with the ``id()`` of itself and its
    ancestors (``_within`` as a set test) and its class."""
    out: list[tuple[cst.Call, frozenset[int], cst.ClassDef | None]] = []
    for n in ctx.nodes_of(cst.Call):
        f = n.func
        if isinstance(f, cst.Attribute) and isinstance(f.value, cst.Name) and f.value.value == "self":
            ancestors = list(ctx.ancestors(n))
            cls = next((a for a in ancestors if isinstance(a, cst.ClassDef)), None)
            out.append((n, frozenset([id(n), *map(id, ancestors)]), cls))
    return out


def gradient_targets(ctx: FileContext) -> GradientTargets:
    return memo(ctx, "gradient_targets", _build)
