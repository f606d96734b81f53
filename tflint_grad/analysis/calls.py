"""Calls resolved to definitions: binding a call's arguments to a function's parameters.

One implementation for every rule (models through call sites, the gradient-flow analysis of
TFG104, weights and producers): positional and keyword arguments, defaults, ``*args`` and
``**kwargs`` collecting the rest, and a call that unpacks ``*seq``/``**mapping`` (then every
parameter may receive any argument: the binding is not exact).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst


@dataclass
class Binding:
    """Parameter name → the expressions the call passes for it (its default when not passed)."""

    args: dict[str, list[cst.BaseExpression]] = field(default_factory=dict)
    exact: bool = True  # False: the call unpacks *seq/**mapping, any argument may reach any parameter
    defaulted: set[str] = field(default_factory=set)  # parameters that got their default value
    # when not exact: the parameters the call still binds for sure (a keyword, a leading positional)
    sure: dict[str, cst.BaseExpression] = field(default_factory=dict)

    def one(self, name: str) -> cst.BaseExpression | None:
        """The single expression bound to ``name`` (None when absent or ambiguous)."""
        values = self.args.get(name, [])
        return values[0] if self.exact and len(values) == 1 else None

    def passed(self, name: str) -> cst.BaseExpression | bool | None:
        """The expression the call passes for parameter ``name``; ``None`` when it passes none
        (the default applies); ``False`` when it cannot be told (the call unpacks ``*seq``/``**mapping``)."""
        if not self.exact:
            return self.sure.get(name, False)
        if name in self.defaulted:
            return None
        values = self.args.get(name, [])
        return values[0] if len(values) == 1 else None


def parameters(fn: cst.FunctionDef | cst.Lambda, *, skip_self: bool = False) -> list[cst.Param]:
    params = [*fn.params.posonly_params, *fn.params.params]
    return params[1:] if skip_self and params else params


def bind_arguments(fn: cst.FunctionDef | cst.Lambda, call: cst.Call, *, skip_self: bool = False) -> Binding:
    """Bind ``call``'s arguments to ``fn``'s parameters (``skip_self``: a method called on an object)."""
    params = parameters(fn, skip_self=skip_self)
    kwonly = list(fn.params.kwonly_params)
    out = Binding()
    args = list(call.args)
    if any(a.star for a in args):
        values = [a.value for a in args]
        for p in [*params, *kwonly]:
            out.args[p.name.value] = values
        for star in (fn.params.star_arg, fn.params.star_kwarg):
            if isinstance(star, cst.Param):
                out.args[star.name.value] = values
        out.exact = False
        for p, a in zip(params, [a for a in args if a.keyword is None]):
            if a.star:
                break
            out.sure[p.name.value] = a.value
        out.sure.update((a.keyword.value, a.value) for a in args if a.keyword is not None)
        return out
    positional = [a for a in args if a.keyword is None]
    keywords = {a.keyword.value: a for a in args if a.keyword is not None}
    for p, a in zip(params, positional):
        out.args[p.name.value] = [a.value]
    for p in [*params, *kwonly]:
        name = p.name.value
        if name in keywords:
            out.args[name] = [keywords[name].value]
        elif name not in out.args and p.default is not None:
            out.args[name] = [p.default]
            out.defaulted.add(name)
    star = fn.params.star_arg
    if isinstance(star, cst.Param):
        out.args[star.name.value] = [a.value for a in positional[len(params) :]]
    if isinstance(fn.params.star_kwarg, cst.Param):
        known = {p.name.value for p in [*params, *kwonly]}
        out.args[fn.params.star_kwarg.name.value] = [a.value for k, a in keywords.items() if k not in known]
    return out
