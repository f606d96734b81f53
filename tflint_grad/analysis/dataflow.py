"""Order and constants: code a helper never runs under the constant arguments it is called with.

``new_fc_layer(..., use_relu=False)`` skips the ``if use_relu:`` branch of ``new_fc_layer``;
``model(x, is_training=True)`` skips ``if not is_training: softmax``. :func:`never_runs` says
that a node sits under such a branch for EVERY call site of its function in the file (a
function with no call site, or a call site passing a non-constant, proves nothing).
:func:`is_identity_activation` recognises ``Activation('linear')`` / ``activation=None``-style
no-ops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from tflint_grad.analysis.calls import bind_arguments
from tflint_grad.analysis.context import get_arg, number, string_value

if TYPE_CHECKING:
    from tflint_grad.analysis.context import FileContext

_MAX_SITES = 16
_IDENTITY = frozenset({"linear", "identity"})


def constant(expr: cst.BaseExpression | None) -> object:
    """The Python value of a literal (True/False/None, numbers, strings), else ``...``."""
    if isinstance(expr, cst.Name) and expr.value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[expr.value]
    n = number(expr)
    if n is not None:
        return n
    s = string_value(expr)
    if s is not None:
        return s
    return ...


def _condition_value(test: cst.BaseExpression, env: dict[str, object]) -> object:
    """Evaluate ``p``, ``not p``, ``p == c``, ``p is None``... under constant parameters ``env``."""
    if isinstance(test, cst.Name):
        return env.get(test.value, ...)
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        v = _condition_value(test.expression, env)
        return ... if v is ... else not v
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        left = _condition_value(test.left, env) if isinstance(test.left, cst.Name) else constant(test.left)
        comp = test.comparisons[0]
        right = constant(comp.comparator)
        if left is ... or right is ...:
            return ...
        op = comp.operator
        if isinstance(op, (cst.Equal, cst.Is)):
            return left == right
        if isinstance(op, (cst.NotEqual, cst.IsNot)):
            return left != right
    return ...


def _call_sites(ctx: FileContext, fn: cst.FunctionDef) -> tuple[list[cst.Call], bool] | None:
    from tflint_grad.analysis.models import ModelResolver

    sites, skip_self = ModelResolver(ctx)._call_sites(fn)
    owner = ctx.scope_of(fn)
    if isinstance(owner, cst.ClassDef) and fn.name.value == "call":
        # a Keras `call` runs through `model(x, flag=...)`: the instances' call sites
        sites = [
            c for c in ctx.nodes_of(cst.Call) if isinstance(c.func, cst.Name) and _instance_of(ctx, c.func, c, owner)
        ]
        skip_self = True
    return (sites, skip_self) if sites else None


def _instance_of(ctx: FileContext, name: cst.Name, at: cst.CSTNode, cls: cst.ClassDef) -> bool:
    v = ctx.value_of(name, at)
    return isinstance(v, cst.Call) and isinstance(v.func, cst.Name) and ctx.classes.get(v.func.value) is cls


def never_runs(ctx: FileContext, node: cst.CSTNode) -> bool:
    """True when ``node`` is under an ``if`` on parameters of its function that no call site in
    the file (or notebook) takes, given the constant arguments (or defaults) passed."""
    fn = next((a for a in ctx.ancestors(node) if isinstance(a, cst.FunctionDef)), None)
    if fn is None:
        return False
    branches: list[tuple[cst.If, bool]] = []  # (if statement, node is in its body: True / orelse: False)
    child: cst.CSTNode = node
    for a in ctx.ancestors(node):
        if a is fn:
            break
        if isinstance(a, cst.If) and child is not a.test:
            branches.append((a, child is a.body))
        child = a
    if not branches:
        return False
    found = _call_sites(ctx, fn)
    if found is None:
        return False
    sites, skip_self = found
    if len(sites) > _MAX_SITES:
        return False
    for call in sites:
        bound = bind_arguments(fn, call, skip_self=skip_self)
        if not bound.exact:
            return False
        env = {}
        for name, values in bound.args.items():
            if len(values) == 1:
                env[name] = constant(values[0])
        if _taken(branches, env):
            return False
    return True


def _taken(branches: list[tuple[cst.If, bool]], env: dict[str, object]) -> bool:
    for stmt, in_body in branches:
        v = _condition_value(stmt.test, env)
        if v is ...:
            continue
        if bool(v) != in_body:
            return False
    return True


def is_identity_activation(ctx: FileContext, call: cst.Call) -> bool:
    """``Activation('linear')`` / ``Activation(None)``: the layer returns its input unchanged."""
    qn = ctx.call_name(call) or ""
    if not qn.endswith("Activation"):
        return False
    arg = get_arg(call, "activation", 0)
    if arg is None:
        return False
    v = constant(arg.value)
    return v is None or v in _IDENTITY
