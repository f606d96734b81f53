"""Gradient calls as one fact.

Every way a script asks for gradients is recognised here, once per file
(:func:`gradient_calls`, exposed as ``ctx.gradient_calls``):

- ``tape.gradient(target, sources)`` on a GradientTape;
- ``tf.gradients(ys, xs)``;
- ``opt.compute_gradients(loss, var_list)``, ``opt.get_gradients(loss, params)``,
  ``opt.minimize(loss, var_list=...)``;
- ``model.compile(loss=...)`` (the loss that ``fit`` differentiates), ``add_loss``,
  ``create_train_op`` (the ``gradients`` tables of ``tf_api.toml``).

Each :class:`GradientCall` says what is differentiated (``target``), with respect to what
(``sources``; ``wrt``: the trainable variables of a model, a watched input such as an image
in saliency/Grad-CAM/style transfer/adversarial code, or unknown) and under which tape.

Whether an expression flows into the target of one of those calls is asked of
:func:`~tflint_grad.analysis.targets.gradient_targets` (``reaches``, ``reaching``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import libcst as cst

from tflint_grad import tfapi

if TYPE_CHECKING:
    from tflint_grad.analysis.context import FileContext, TapeBlock

GradientKind = Literal[
    "tape", "tf_gradients", "compute_gradients", "get_gradients", "minimize", "compile", "add_loss", "create_train_op"
]
Wrt = Literal["variables", "input", "unknown"]

_KINDS = {"tape.gradient": "tape", "tf.gradients": "tf_gradients"}


def _target_calls() -> dict[str, tuple[str, int, str | None, int | None, str]]:
    """Method or function name -> (target keyword, position, sources keyword, position, kind),
    from the ``gradients`` tables (``gradient_calls``, ``var_list_methods``) plus ``add_loss``
    and ``create_train_op``."""
    out: dict[str, tuple[str, int, str | None, int | None, str]] = {}
    for name, kw, pos, vkw, vpos in tfapi.table("gradients", "gradient_calls"):
        out[name] = (kw, pos, vkw, vpos, _KINDS.get(name, name))
    for method, vkw, vpos in tfapi.table("gradients", "var_list_methods"):
        if method not in out:
            out[method] = ("loss", 0, vkw, vpos if vpos >= 0 else None, method)
    out["add_loss"] = ("losses", 0, None, None, "add_loss")
    for name in tfapi.names("graph", "create_train_op"):
        out[name] = ("total_loss", 0, None, None, "create_train_op")
    return out


@dataclass
class GradientCall:
    """One request for gradients."""

    node: cst.Call
    kind: GradientKind
    target: cst.BaseExpression | None  # what is differentiated (the loss)
    sources: cst.BaseExpression | None  # with respect to what (variables, or an input)
    tape: TapeBlock | None = None  # the tape block recorded for ``tape.gradient``
    wrt: Wrt = "unknown"
    sources_keyword: str | None = None  # the keyword of the sources argument (`var_list`, `sources`...)

    @property
    def wrt_input(self) -> bool:
        """Differentiated w.r.t. a watched input or activation, not the model's variables:
        inference mode is intended (saliency, Grad-CAM, style transfer, adversarial examples)."""
        return self.wrt == "input"


def gradient_calls(ctx: FileContext) -> list[GradientCall]:
    """Every gradient request in the file, in document order."""
    from tflint_grad.analysis.context import get_arg

    table = _target_calls()
    compile_method, compile_kw, compile_pos = tfapi.table("losses", "compile_method")
    out: list[GradientCall] = []
    for n in ctx.nodes_of(cst.Call):
        qn = ctx.call_name(n)
        spec = table.get(qn) if qn is not None else None
        func = n.func
        if spec is None and qn is None and isinstance(func, cst.Attribute):
            attr = func.attr.value
            if attr == "gradient":
                if ctx.is_tape(func.value, n):
                    spec = table.get("tape.gradient")
            elif attr == compile_method:
                spec = (compile_kw, compile_pos, None, None, "compile")
            elif attr in table and "." not in attr:
                spec = table[attr]
        if spec is None:
            continue
        kw, pos, vkw, vpos, kind = spec
        arg = get_arg(n, kw, pos)
        if arg is None or arg.star:
            continue
        sources = get_arg(n, vkw, vpos) if vkw is not None else None
        gc = GradientCall(n, kind, arg.value, sources.value if sources else None, sources_keyword=vkw)  # type: ignore[arg-type]
        if kind == "tape":
            gc.tape = _tape_of(ctx, func.value, n)  # type: ignore[attr-defined]
        out.append(gc)
    for gc in out:
        gc.wrt = "variables" if gc.kind in ("compile", "add_loss", "create_train_op") else _classify_sources(ctx, gc)
    return out


def _tape_of(ctx: FileContext, receiver: cst.BaseExpression, at: cst.CSTNode) -> TapeBlock | None:
    """The ``with tf.GradientTape() as <receiver>`` block that recorded this tape (the last one
    before ``at`` with that name, in the same scope)."""
    name = receiver.value if isinstance(receiver, cst.Name) else None
    return ctx.tape_before(name, ctx.scope_of(at), at)


def _names_in(expr: cst.BaseExpression) -> list[cst.BaseExpression]:
    if isinstance(expr, (cst.List, cst.Tuple)):
        return [e.value for e in expr.elements]
    return [expr]


def _classify_sources(ctx: FileContext, gc: GradientCall) -> Wrt:
    """Variables of a model (``.trainable_variables``, var lists, ``tf.Variable`` weights)
    or a watched input (``tape.watch(x)``; a tensor fed to a call or produced inside the tape)."""
    src = gc.sources
    if src is None:
        return "variables" if gc.kind in ("minimize", "compute_gradients") else "unknown"
    var_attrs = (
        tfapi.names("gradients", "all_variable_attrs")
        | tfapi.names("gradients", "trainable_attrs")
        | tfapi.names("gradients", "non_trainable_attrs")
    )
    for n in ctx.descendants(src):
        if type(n) is cst.Attribute and n.attr.value in var_attrs:
            return "variables"
        if type(n) is cst.Call:
            qn = ctx.call_name(n)
            if qn in tfapi.names("gradients", "global_variable_calls") | tfapi.names(
                "gradients", "trainable_variable_calls"
            ) or qn in tfapi.names("gradients", "get_collection"):
                return "variables"
    elements = _names_in(src)
    if not all(isinstance(e, cst.Name) for e in elements):
        return "unknown"
    watched = _watched_names(ctx, gc)
    if all(isinstance(e, cst.Name) and e.value in watched for e in elements):
        return "input"
    if gc.tape is not None and all(
        isinstance(e, cst.Name) and _fed_or_produced_in(ctx, e.value, gc.tape.with_node) for e in elements
    ):
        return "input"
    return "unknown"


def _watched_names(ctx: FileContext, gc: GradientCall) -> set[str]:
    """Names passed to ``<tape>.watch(...)`` in the tape's block."""
    if gc.tape is None:
        return set()
    out: set[str] = set()
    for c in ctx.calls_in(gc.tape.with_node):
        f = c.func
        if isinstance(f, cst.Attribute) and f.attr.value == "watch" and c.args:
            for e in _names_in(c.args[0].value):
                if isinstance(e, cst.Name):
                    out.add(e.value)
    return out


def _fed_or_produced_in(ctx: FileContext, name: str, block: cst.With) -> bool:
    """``name`` is an argument of a call in the tape block (``model(image)``), or is assigned
    from a call there (``conv_out, preds = grad_model(img)``: an activation)."""
    for n in ctx.descendants(block):
        if type(n) is cst.Name and n.value == name:
            p = ctx.parents.get(n)
            if isinstance(p, cst.Arg) and p.value is n and isinstance(ctx.parents.get(p), cst.Call):
                return True
            if ctx.is_store(n):
                stmt = ctx.statement_of(n)
                if isinstance(stmt, cst.Assign) and isinstance(stmt.value, cst.Call):
                    return True
    return False
