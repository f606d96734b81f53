"""The weights a file creates and the initializers they start from (shared by TFG301/TFG302).

Built once per file and cached on the :class:`FileContext`:

- every weight-creating call: ``tf.get_variable`` / ``tf.Variable`` (table
  ``initializers.weight_variables``), ``self.add_weight``, Keras weight layers
  (``layers.weight_layer_classes``) and TF1 functional layers (``layers.tf1_layer_functions``);
- followed out of *layer helpers* (a function or class that creates one weight, such as the
  TF tutorial's ``def weight_variable(shape)``) to each of their call sites, with the
  helper's parameters bound to the site's arguments;
- its role (weight, bias, norm, embedding) from keywords, names and shapes;
- its initializer, followed through names, parameters and helper arguments and classified as
  random (with the standard deviation of the draw) or constant;
- its kernel shape and fan-in when they are literal (or names bound to literals);
- which other weight layers it feeds: data flow through the file's assignments when both
  layers are named, else document order within the same scope / ``Sequential`` list.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import Any, cast

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis.calls import bind_arguments
from tflint_grad.analysis.context import (
    FileContext,
    dependencies,
    dotted,
    get_arg,
    number,
    string_value,
)
from tflint_grad.analysis.facts import memo, tf_alias
from tflint_grad.analysis.targets import gradient_targets

_LOOPS = (cst.For, cst.While, cst.CompFor, cst.ListComp, cst.GeneratorExp, cst.SetComp, cst.DictComp)
_SCOPES = (cst.Module, cst.FunctionDef, cst.Lambda, cst.ClassDef)
_BIAS = re.compile(r"(^|_)(b|bias|biases)\d*($|_)|bias")
_NORM = re.compile(
    r"(^|_)(gamma|beta|scale|offset|moving_mean|moving_variance|moving_var|pop_mean|pop_var|running_mean|running_var|bn|norm)\d*($|_)"
)
_EMB = re.compile(r"emb|lookup|vocab")
_BN_HELPER = re.compile(r"batch_?norm|(^|_)bn($|_)", re.IGNORECASE)
_MAX_SITES = 64
_MAX_USES = 500


@dataclass(frozen=True)
class Env:
    """Arguments of one call site of a helper: parameter -> (expression, its own env)."""

    func: cst.CSTNode
    args: tuple[tuple[str, tuple[cst.BaseExpression, Env | None]], ...]
    parent: Env | None

    def lookup(self, scope: cst.CSTNode, name: str) -> tuple[cst.BaseExpression, Env | None] | None:
        env: Env | None = self
        while env is not None:
            if env.func is scope:
                for k, v in env.args:
                    if k == name:
                        return v
                return None
            env = env.parent
        return None


@dataclass(frozen=True)
class InitSource:
    """How a weight's initial values are drawn."""

    kind: str  # "random" | "constant"
    node: cst.CSTNode  # the construction a finding points at
    api: str  # canonical name, or the string literal
    dist: str  # "normal" | "uniform" | "constant"
    scale: float | None = None  # standard deviation of the draw (random)
    is_value: bool = False  # an initial value (tensor/array), not an initializer object
    shape: tuple[int | None, ...] | None = None  # shape given by the value op itself
    scale_node: cst.CSTNode | None = None  # the expression a fix rewrites (value ops)
    value: float | None = None  # the constant, when known

    def scaled(self, k: float, node: cst.CSTNode, factor: cst.CSTNode | None) -> InitSource:
        if self.kind == "constant":
            v = self.value * k if self.value is not None else None
            return replace(self, node=node, value=v)
        own = self.scale_node is None and self.scale == 1.0
        return replace(self, node=node, scale=(self.scale or 0.0) * k, scale_node=factor if own else None)


@dataclass(eq=False)
class WeightUse:
    call: cst.Call  # the weight-creating call
    sites: tuple[cst.Call, ...]  # helper call sites, innermost first (empty: the call itself)
    kind: str  # "variable" | "add_weight" | "layer"
    keyword: str | None  # the initializer keyword used
    role: str  # "weight" | "bias" | "norm" | "embedding"
    name: str
    source: InitSource | None
    shape: tuple[int | None, ...] | None
    fan_in: int | None
    fan_out: int | None
    width: int | None  # number of units (last dimension), when known
    stack: cst.CSTNode
    order: tuple[int, int]
    repeated: bool
    outs: frozenset[str]  # names carrying its output (or the weight itself)
    out_stmt: int | None  # id() of the statement binding them
    inputs: tuple[cst.CSTNode, ...]  # expressions it is applied to
    applied: bool = True  # read as the operand of a matmul/conv (a layer: always)

    @property
    def site(self) -> cst.CSTNode:
        return self.sites[-1] if self.sites else self.call

    def label(self, ctx: FileContext) -> str:
        """``W1``, or ``Dense at line 4`` for an unnamed layer (computes positions)."""
        if self.kind == "layer":
            cls = (dotted(self.call.func) or "layer").rsplit(".", 1)[-1]
            if self.name:
                return f"the `{cls}` layer `{self.name}`"
            return f"the `{cls}` layer at line {ctx.line(self.site)}"
        return f"`{self.name}`" if self.name else f"the weight at line {ctx.line(self.site)}"


@dataclass(frozen=True)
class _Spec:
    kind: str
    init: cst.BaseExpression | None
    keyword: str | None
    shape: cst.BaseExpression | None
    name: cst.BaseExpression | None
    fan_in: cst.BaseExpression | None = None
    units: cst.BaseExpression | None = None


# -- tables ---------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _tables() -> dict[str, Any]:
    t = tfapi.tables()["initializers"]
    lay = tfapi.tables()["layers"]
    return {
        "random": {r[0]: (r[1], r[2], r[3]) for r in t["random"]},
        "random_values": {r[0]: (r[1], r[2], r[3]) for r in t["random_values"]},
        "defaults": dict(t.get("defaults", {})),
        "uniform_defaults": {k: tuple(v) for k, v in t.get("uniform_defaults", {}).items()},
        "constant": frozenset(t["constant"]),
        "constant_strings": frozenset(t["constant_strings"]),
        "constant_values": frozenset(t["constant_values"]),
        "constant_value_args": {r[0]: (r[1], r[2]) for r in t.get("constant_value_args", [])},
        "constant_fill": {r[0]: (r[1], r[2], r[3], r[4]) for r in t.get("constant_fill", [])},
        "value_shape_args": {k: (v[0], v[1]) for k, v in t.get("value_shape_args", {}).items()},
        "unit_random_values": frozenset(t.get("unit_random_values", [])),
        "value_wrappers": frozenset(t.get("value_wrappers", [])),
        "value_methods": frozenset(t.get("value_methods", [])),
        "weight_variables": {r[0]: tuple(r[1:]) for r in t.get("weight_variables", [])},
        "weight_methods": frozenset(t.get("weight_methods", [])),
        "kernel_keywords": tuple(t["kernel_keywords"]),
        "embedding_lookups": frozenset(t.get("embedding_lookups", [])),
        "embedding_classes": frozenset(t.get("embedding_classes", [])),
        "input_size_keywords": tuple(t.get("input_size_keywords", [])),
        "units_keywords": tuple(t.get("units_keywords", [])),
        "fan_in_layers": {r[0]: (r[1], r[2]) for r in t.get("fan_in_layers", [])},
        "width_preserving_layers": frozenset(t.get("width_preserving_layers", [])),
        "width_preserving_ops": frozenset(t.get("width_preserving_ops", [])),
        "weight_layer_classes": frozenset(lay["weight_layer_classes"]),
        "tf1_layer_functions": frozenset(lay["tf1_layer_functions"]),
        "sequential_models": frozenset(lay["sequential_models"]),
    }


def _is_false(expr: cst.BaseExpression | None) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "False"


# -- the index ------------------------------------------------------------------------------
class WeightIndex:
    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx
        self.t = _tables()
        self._by_name: dict[str, list[cst.Call]] | None = None
        self._by_method: dict[str, list[cst.Call]] | None = None
        self._reads: dict[str, list[cst.CSTNode]] | None = None
        self._helper: dict[int, bool] = {}
        self._deps: dict[int, frozenset[int]] = {}
        self._embedding_names: set[str] | None = None
        self._bn: dict[int, bool] = {}
        self._mult_fn: dict[int, bool] = {}
        self.uses: list[WeightUse] = self._collect()

    # -- call-site indexes ----------------------------------------------------------------
    def _index_calls(self) -> None:
        by_name: dict[str, list[cst.Call]] = {}
        by_method: dict[str, list[cst.Call]] = {}
        reads: dict[str, list[cst.CSTNode]] = {}
        ctx = self.ctx
        for n in ctx.nodes:
            t = type(n)
            if t is cst.Call:
                c = cast(cst.Call, n)
                f = c.func
                if isinstance(f, cst.Name):
                    by_name.setdefault(f.value, []).append(c)
                elif isinstance(f, cst.Attribute) and isinstance(f.value, cst.Name) and f.value.value == "self":
                    by_method.setdefault(f.attr.value, []).append(c)
            elif t is cst.Name:
                p = ctx.parents.get(n)
                if isinstance(p, cst.Attribute) and p.attr is n:
                    continue
                if isinstance(p, (cst.Arg, cst.Param, cst.FunctionDef, cst.ClassDef)):
                    if not (isinstance(p, cst.Arg) and p.value is n):
                        continue
                reads.setdefault(cast(cst.Name, n).value, []).append(n)
            elif t is cst.Attribute:
                a = cast(cst.Attribute, n)
                if isinstance(a.value, cst.Name) and a.value.value == "self":
                    reads.setdefault("self." + a.attr.value, []).append(n)
        self._by_name, self._by_method, self._reads = by_name, by_method, reads

    def reads(self, name: str) -> list[cst.CSTNode]:
        if self._reads is None:
            self._index_calls()
        return (self._reads or {}).get(name, [])

    # -- resolution ------------------------------------------------------------------------
    def follow(self, expr: cst.BaseExpression | None, env: Env | None, depth: int = 10):
        """Follow names (and ``self.attr``) to the expression that produced the value."""
        ctx = self.ctx
        for _ in range(depth):
            if expr is None or expr not in ctx.index:
                break
            if isinstance(expr, cst.Name):
                b = ctx.binding(expr)
                if b is None:
                    break
                if b.kind == "param":
                    hit = env.lookup(b.scope, expr.value) if env is not None else None
                    if hit is not None:
                        expr, env = hit
                        continue
                    if b.value is not None:
                        expr = b.value
                        continue
                    break
                if b.kind in ("assign", "annassign") and b.value is not None:
                    expr = b.value
                    continue
                break
            if isinstance(expr, cst.Attribute):
                d = dotted(expr)
                if d and d.startswith("self.") and d.count(".") == 1:
                    b = ctx.binding(expr)
                    if b is not None and b.kind in ("assign", "annassign") and b.value is not None:
                        expr = b.value
                        continue
            break
        return expr, env

    def num(self, expr: cst.BaseExpression | None, env: Env | None, depth: int = 0) -> float | None:
        if expr is None or depth > 8:
            return None
        expr, env = self.follow(expr, env)
        v = number(expr)
        if v is not None:
            return v
        if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
            v = self.num(expr.expression, env, depth + 1)
            return -v if v is not None else None
        if isinstance(expr, cst.BinaryOperation):
            left = self.num(expr.left, env, depth + 1)
            right = self.num(expr.right, env, depth + 1) if left is not None else None
            if left is None or right is None:
                return None
            op = expr.operator
            try:
                if isinstance(op, cst.Add):
                    return left + right
                if isinstance(op, cst.Subtract):
                    return left - right
                if isinstance(op, cst.Multiply):
                    return left * right
                if isinstance(op, cst.Divide):
                    return left / right
                if isinstance(op, cst.FloorDivide):
                    return float(left // right)
                if isinstance(op, cst.Power) and abs(right) <= 64:
                    r = left**right
                    return float(r) if isinstance(r, (int, float)) else None
            except (ArithmeticError, ValueError):
                return None
        return None

    def shape(self, expr: cst.BaseExpression | None, env: Env | None) -> tuple[int | None, ...] | None:
        if expr is None:
            return None
        expr, env = self.follow(expr, env)
        if isinstance(expr, (cst.List, cst.Tuple)):
            dims: list[int | None] = []
            for el in expr.elements:
                if isinstance(el, cst.StarredElement):
                    return None
                dims.append(self._dim(self.num(el.value, env)))
            return tuple(dims)
        v = self.num(expr, env)
        if v is not None:
            return (self._dim(v),)
        return None

    @staticmethod
    def _dim(v: float | None) -> int | None:
        if v is None or not math.isfinite(v) or v < 0 or v > 1e12 or v != int(v):
            return None
        return int(v)

    # -- initializer classification ---------------------------------------------------------
    def classify(self, expr: cst.BaseExpression | None, env: Env | None, depth: int = 0) -> InitSource | None:
        if expr is None or depth > 6:
            return None
        expr, env = self.follow(expr, env)
        if expr is None:
            return None
        t = self.t
        s = string_value(expr)
        if s is not None:
            low = s.lower()
            if low in t["constant_strings"]:
                return InitSource(
                    "constant",
                    expr,
                    repr(s),
                    "constant",
                    value=1.0 if low == "ones" else 0.0 if low == "zeros" else None,
                )
            return None
        if isinstance(expr, cst.BinaryOperation):
            op = expr.operator
            if isinstance(op, cst.Multiply):
                for this, other in ((expr.left, expr.right), (expr.right, expr.left)):
                    k = self.num(other, env)
                    if k is not None:
                        inner = self.classify(this, env, depth + 1)
                        return inner.scaled(abs(k), expr, other) if inner is not None else None
            elif isinstance(op, cst.Divide):
                k = self.num(expr.right, env)
                if k:
                    inner = self.classify(expr.left, env, depth + 1)
                    return inner.scaled(1.0 / abs(k), expr, None) if inner is not None else None
            return None
        if not isinstance(expr, cst.Call):
            return None
        ctx = self.ctx
        qn = ctx.call_name(expr)
        if qn is None:
            func = expr.func
            if isinstance(func, cst.Attribute) and func.attr.value in t["value_methods"]:
                return self.classify(func.value, env, depth + 1)
            # an initializer object called with a shape: `init([784, 256])`
            inner = self.classify(func, env, depth + 1)
            if inner is not None and not inner.is_value:
                arg = get_arg(expr, "shape", 0)
                return replace(inner, is_value=True, shape=self.shape(arg.value, env) if arg else None)
            return None
        if qn in t["random"]:
            kw, pos, dist = t["random"][qn]
            return self._random(expr, qn, env, kw, pos, dist, is_value=False, shape=None)
        if qn in t["random_values"]:
            kw, pos, dist = t["random_values"][qn]
            return self._random(expr, qn, env, kw, pos, dist, is_value=True, shape=self._value_shape(expr, qn, env))
        if qn in t["unit_random_values"]:
            positional = [a for a in expr.args if a.keyword is None and not a.star]
            size = get_arg(expr, "size")
            if size is not None:
                shape = self.shape(size.value, env)
            elif len(positional) == 1 and isinstance(self.follow(positional[0].value, env)[0], (cst.List, cst.Tuple)):
                shape = self.shape(positional[0].value, env)
            else:
                shape = tuple(self._dim(self.num(a.value, env)) for a in positional) or None
            return InitSource("random", expr, qn, "normal", scale=1.0, is_value=True, shape=shape)
        if qn in t["constant_fill"]:
            vkw, vpos, skw, spos = t["constant_fill"][qn]
            value = get_arg(expr, vkw, vpos)
            shape_arg = get_arg(expr, skw, spos)
            v = self.num(value.value, env) if value is not None else None
            if v is not None and shape_arg is not None:
                return InitSource(
                    "constant", expr, qn, "constant", is_value=True, shape=self.shape(shape_arg.value, env), value=v
                )
        if qn in t["constant"]:
            v = 1.0 if "ones" in qn.lower() else 0.0
            if qn in t["constant_value_args"]:
                kw, pos = t["constant_value_args"][qn]
                arg = get_arg(expr, kw, pos)
                if arg is not None:
                    v = self.num(arg.value, env)
                    if v is None:
                        return None  # an array value (pretrained weights) or unknown
            return InitSource("constant", expr, qn, "constant", value=v)
        if qn in t["constant_values"]:
            v = 1.0 if "ones" in qn.lower() else 0.0 if "zeros" in qn.lower() else None
            return InitSource(
                "constant", expr, qn, "constant", is_value=True, shape=self._value_shape(expr, qn, env), value=v
            )
        if qn in t["value_wrappers"]:
            arg = get_arg(expr, None, 0)
            return self.classify(arg.value, env, depth + 1) if arg is not None else None
        return None

    def _value_shape(self, call: cst.Call, qn: str, env: Env | None):
        spec = self.t["value_shape_args"].get(qn)
        if spec is None:
            return None
        arg = get_arg(call, spec[0], spec[1])
        return self.shape(arg.value, env) if arg is not None else None

    def _random(self, call, qn, env, kw, pos, dist, *, is_value, shape) -> InitSource | None:
        if dist == "normal":
            arg = get_arg(call, kw, pos)
            sd = self.num(arg.value, env) if arg is not None else self.t["defaults"].get(qn)
            if sd is None:
                return None
            sd = abs(float(sd))
            if sd == 0:
                return InitSource("constant", call, qn, "constant", is_value=is_value, shape=shape)
            return InitSource(
                "random",
                call,
                qn,
                "normal",
                scale=sd,
                is_value=is_value,
                shape=shape,
                scale_node=arg.value if arg is not None else None,
            )
        lo_kw, _, hi_kw = kw.partition(",")
        lo_arg, hi_arg = get_arg(call, lo_kw, pos), get_arg(call, hi_kw, pos + 1)
        defaults = self.t["uniform_defaults"].get(qn, (None, None))
        lo = self.num(lo_arg.value, env) if lo_arg is not None else defaults[0]
        hi = self.num(hi_arg.value, env) if hi_arg is not None else defaults[1]
        if lo is None or hi is None:
            return None
        if hi == lo:
            return InitSource("constant", call, qn, "constant", is_value=is_value, shape=shape, value=float(lo))
        return InitSource(
            "random", call, qn, "uniform", scale=abs(hi - lo) / math.sqrt(12.0), is_value=is_value, shape=shape
        )

    # -- weight-creating calls ----------------------------------------------------------------
    def _spec(self, call: cst.Call) -> _Spec | None:
        ctx, t = self.ctx, self.t
        qn = ctx.call_name(call)
        if qn is None:
            f = call.func
            if isinstance(f, cst.Attribute) and f.attr.value in t["weight_methods"]:
                if _is_false(self._arg_value(call, "trainable")):
                    return None
                return _Spec(
                    "add_weight",
                    self._arg_value(call, "initializer"),
                    "initializer",
                    self._arg_value(call, "shape"),
                    self._arg_value(call, "name"),
                )
            return None
        if qn in t["weight_variables"]:
            ikw, ipos, skw, spos, nkw, npos = t["weight_variables"][qn]
            if _is_false(self._arg_value(call, "trainable")):
                return None
            init = get_arg(call, ikw, ipos)
            shape = get_arg(call, skw, spos) if skw else None
            name = get_arg(call, nkw, npos if npos >= 0 else None)
            return _Spec(
                "variable",
                init.value if init else None,
                ikw,
                shape.value if shape else None,
                name.value if name else None,
            )
        last = qn.rsplit(".", 1)[-1]
        is_keras = (
            qn.startswith("keras.layers.") and last in t["weight_layer_classes"] and last not in t["embedding_classes"]
        )
        if is_keras or qn in t["tf1_layer_functions"]:
            keyword, kernel = None, None
            for kw in t["kernel_keywords"]:
                arg = get_arg(call, kw)
                if arg is not None:
                    keyword, kernel = kw, arg.value
                    break
            fan_in = None
            for kw in t["input_size_keywords"]:
                arg = get_arg(call, kw)
                if arg is not None:
                    fan_in = arg.value
                    break
            units = None
            for i, kw in enumerate(t["units_keywords"]):
                arg = get_arg(call, kw, (0 if is_keras else 1) if i == 0 else None)
                if arg is not None:
                    units = arg.value
                    break
            name = get_arg(call, "name")
            return _Spec("layer", kernel, keyword, None, name.value if name else None, fan_in, units)
        return None

    @staticmethod
    def _arg_value(call: cst.Call, kw: str) -> cst.BaseExpression | None:
        arg = get_arg(call, kw)
        return arg.value if arg is not None else None

    def _owner(self, node: cst.CSTNode) -> cst.FunctionDef | None:
        scope = self.ctx.scope_of(node)
        return scope if isinstance(scope, cst.FunctionDef) else None

    def _class_of(self, fn: cst.FunctionDef) -> cst.ClassDef | None:
        p = self.ctx.parent(fn)
        p = self.ctx.parent(p) if isinstance(p, cst.IndentedBlock) else p
        return p if isinstance(p, cst.ClassDef) else None

    def _sites(self, fn: cst.FunctionDef) -> tuple[list[cst.Call], cst.FunctionDef | None, bool]:
        """Call sites of a helper, the function whose parameters they bind, skip-self."""
        if self._by_name is None:
            self._index_calls()
        by_name, by_method = self._by_name or {}, self._by_method or {}
        ctx = self.ctx
        cls = self._class_of(fn)
        name = fn.name.value
        if cls is not None:
            if name in ("__init__", "build", "call", "__call__"):
                init = next((f for f in ctx.functions.get("__init__", []) if self._class_of(f) is cls), None)
                sites = [c for c in by_name.get(cls.name.value, []) if ctx.classes.get(cls.name.value) is cls]
                return sites, init, True
            sites = [c for c in by_method.get(name, []) if ctx.contains(cls, c)]
            return sites, fn, True
        sites = []
        for c in by_name.get(name, []):
            b = ctx.binding(c.func)
            if b is not None and b.kind == "def" and b.node is fn:
                sites.append(c)
        return sites, fn, False

    def _is_helper(self, fn: cst.FunctionDef, depth: int = 0) -> bool:
        """A function (or layer class) that creates exactly one weight."""
        key = id(fn)
        if key in self._helper:
            return self._helper[key]
        self._helper[key] = False  # cycle guard
        cls = self._class_of(fn)
        body = cls if cls is not None and fn.name.value in ("__init__", "build", "call", "__call__") else fn
        count = 0
        for call in self.ctx.calls_in(body):
            spec = self._spec(call)
            if spec is not None:
                if spec.kind == "layer" or self._static_role(call, spec) == "weight":
                    count += 1
            elif depth < 3 and isinstance(call.func, cst.Name):
                hints = [call.func.value] + self._targets(call)
                if any(_BIAS.search(h.lower()) or _NORM.search(h.lower()) or _EMB.search(h.lower()) for h in hints):
                    continue  # `b = bias_variable([32])`
                for other in self.ctx.functions.get(call.func.value, []):
                    if other is not fn and self._class_of(other) is None and self._is_helper(other, depth + 1):
                        count += 1
                        break
            if count > 1:
                break
        self._helper[key] = count == 1
        return count == 1

    def _static_role(self, call: cst.Call, spec: _Spec) -> str:
        names = self._names(call, spec, ())
        shape = self.shape(spec.shape, None) if spec.shape is not None else None
        if shape is None and spec.init is not None:
            source = self.classify(spec.init, None)
            shape = source.shape if source is not None else None
        return self._role(spec, names, shape)

    def _expand(self, node: cst.CSTNode, depth: int = 0) -> list[tuple[tuple[cst.Call, ...], Env | None]]:
        fn = self._owner(node)
        if fn is None or depth >= 3 or not self._is_helper(fn):
            return [((), None)]
        sites, binder, skip_self = self._sites(fn)
        if not sites:
            return [((), None)]
        out: list[tuple[tuple[cst.Call, ...], Env | None]] = []
        for site in sites[:_MAX_SITES]:
            for outer_sites, outer_env in self._expand(site, depth + 1):
                env = outer_env
                if binder is not None:
                    env = Env(
                        binder, tuple((k, (v, outer_env)) for k, v in self._bind(binder, site, skip_self)), outer_env
                    )
                out.append(((site,) + outer_sites, env))
        return out[:_MAX_SITES]

    @staticmethod
    def _bind(fn: cst.FunctionDef, site: cst.Call, skip_self: bool) -> list[tuple[str, cst.BaseExpression]]:
        out: list[tuple[str, cst.BaseExpression]] = []
        bound = bind_arguments(fn, site, skip_self=skip_self)
        for p in [*fn.params.posonly_params, *fn.params.params, *fn.params.kwonly_params]:
            value = bound.passed(p.name.value)
            if isinstance(value, cst.BaseExpression):
                out.append((p.name.value, value))
        return out

    # -- names, roles, data flow ----------------------------------------------------------------
    def _targets(self, node: cst.CSTNode) -> list[str]:
        """Names a call's result is assigned to (``W = ...``, ``self.w = ...``)."""
        p = self.ctx.parent(node)
        if isinstance(p, (cst.Assign, cst.AnnAssign)) and p.value is node:
            targets = [t.target for t in p.targets] if isinstance(p, cst.Assign) else [p.target]
            return [d for d in (dotted(t) for t in targets) if d]
        return []

    def _names(self, call: cst.Call, spec: _Spec, sites: tuple[cst.Call, ...]) -> list[str]:
        names = []
        s = string_value(spec.name) if spec.name is not None else None
        if s:
            names.append(s)
        for node in (call,) + sites:
            names.extend(self._targets(node))
        return names

    def _role(self, spec: _Spec, names: list[str], shape) -> str:
        if spec.kind == "layer":
            return "weight"
        for n in names:
            last = n.split(".")[-1].split("/")[-1].lower()
            if _EMB.search(last):
                return "embedding"
            if _NORM.search(last):
                return "norm"
            if _BIAS.search(last):
                return "bias"
        if shape is not None and len(shape) <= 1:
            return "bias"
        if names and self._embedding_names_hit(names):
            return "embedding"
        return "weight"

    def _embedding_names_hit(self, names: list[str]) -> bool:
        if self._embedding_names is None:
            found: set[str] = set()
            lookups = self.t["embedding_lookups"]
            for n in self.ctx.nodes_of(cst.Call):
                if n.args and self.ctx.call_name(n) in lookups:
                    arg = get_arg(n, "params", 0)
                    d = dotted(arg.value) if arg is not None else None
                    if d:
                        found.add(d)
            self._embedding_names = found
        return any(n in self._embedding_names for n in names)

    def _sequential_of(self, call: cst.Call) -> cst.CSTNode | None:
        ctx = self.ctx
        el = ctx.parent(call)
        lst = ctx.parent(el) if isinstance(el, cst.Element) else None
        arg = ctx.parent(lst) if isinstance(lst, (cst.List, cst.Tuple)) else None
        outer = ctx.parent(arg) if isinstance(arg, cst.Arg) else None
        if isinstance(outer, cst.Call) and ctx.call_name(outer) in self.t["sequential_models"]:
            return outer
        return None

    def _repeated(self, nodes: tuple[cst.CSTNode, ...]) -> bool:
        ctx = self.ctx
        for node in nodes:
            for a in ctx.ancestors(node):
                if isinstance(a, _SCOPES):
                    break
                if isinstance(a, _LOOPS):
                    # the loop's own iterable is evaluated once
                    if isinstance(a, (cst.For, cst.CompFor)) and ctx.contains(a.iter, node):
                        continue
                    return True
        return False

    def _dataflow(self, call: cst.Call, spec: _Spec, sites: tuple[cst.Call, ...]):
        """(names carrying the layer's output or weight, expressions feeding it)."""
        ctx = self.ctx
        outer = sites[-1] if sites else call
        inputs: list[cst.CSTNode] = []
        if spec.kind == "layer" and not sites:
            p = ctx.parent(call)
            if isinstance(p, cst.Call) and p.func is call:  # Dense(64)(x)
                return self._out(p), tuple(a.value for a in p.args)
            if ctx.call_name(call) in self.t["tf1_layer_functions"]:
                arg = get_arg(call, "inputs", 0)
                return self._out(call), ((arg.value,) if arg is not None else ())
        outs, stmt = self._out(outer)
        if sites:
            inputs.extend(a.value for a in outer.args)
        stmt_of_outer = ctx.statement_of(outer)
        applied = spec.kind == "layer"
        for name in outs:
            for ref in self.reads(name)[:16]:
                if ctx.contains(stmt_of_outer, ref) or ctx.is_store(ref):
                    continue
                operands = self._applied_to(ref)
                applied = applied or bool(operands)
                inputs.extend(operands)
        if sites and not applied:  # a helper's weight: how the helper itself uses it (`tf.matmul(x, W)`)
            scope = ctx.scope_of(call)
            for name in self._targets(call):
                for ref in self.reads(name)[:16]:
                    if ctx.scope_of(ref) is scope and not ctx.is_store(ref) and self._applied_to(ref):
                        applied = True
        self._applied = applied
        return (outs, stmt), tuple(inputs)

    def _out(self, node: cst.CSTNode) -> tuple[frozenset[str], int | None]:
        names = frozenset(self._targets(node))
        return names, (id(self.ctx.parent(node)) if names else None)

    def _applied_to(self, ref: cst.CSTNode) -> list[cst.CSTNode]:
        """What a weight (or layer object) read at ``ref`` is applied to: the other operands
        of ``tf.matmul(x, W)`` / ``x @ W`` / ``conv2d(x, W)`` (table ``weight_ops`` or a local
        helper), or the arguments of ``layer(x)``. Reads elsewhere (``var_list=[W]``,
        ``tf.nn.l2_loss(W)``, ``tf.gradients(loss, W)``) say nothing about the layer's input."""
        ctx = self.ctx
        cur = ref
        for _ in range(3):
            p = ctx.parent(cur)
            if isinstance(p, cst.Call) and p.func is cur:
                return [a.value for a in p.args] if cur is ref else []
            if isinstance(p, cst.BinaryOperation) and isinstance(p.operator, cst.MatrixMultiply):
                return [p.right if p.left is cur else p.left]
            if isinstance(p, cst.Arg) and p.value is cur:
                call = ctx.parent(p)
                if not isinstance(call, cst.Call):
                    return []
                qn = ctx.call_name(call)
                local = (
                    qn is None
                    and isinstance(call.func, cst.Name)
                    and any(self._multiplies_inside(f) for f in ctx.functions.get(call.func.value, ()))
                )
                if qn in tfapi.names("initializers", "weight_ops") or local:
                    return [a.value for a in call.args if a is not p]
                return []
            if isinstance(p, (cst.Subscript, cst.SubscriptElement, cst.Index)) or (
                isinstance(p, cst.Attribute) and p.value is cur
            ):
                cur = p  # W[:, 0], W.T
                continue
            return []
        return []

    @cached_property
    def assigned(self) -> frozenset[str]:
        """Variables the file updates itself (``v.assign(...)``, ``tf.assign(v, ...)``): state
        buffers, optimizer slots, simulation state, not weights trained by a gradient."""
        ctx = self.ctx
        methods = tfapi.names("graph", "assign_methods")
        functions = tfapi.names("graph", "assign_functions")
        out: set[str] = set()
        for n in ctx.nodes_of(cst.Call):
            f = n.func
            if isinstance(f, cst.Attribute) and f.attr.value in methods:
                d = dotted(f.value)
            elif ctx.call_name(n) in functions:
                arg = get_arg(n, "ref", 0)
                d = dotted(arg.value) if arg is not None else None
            else:
                continue
            if d:
                out.add(d)
        return frozenset(out)

    def multiplies(self, use: WeightUse) -> bool:
        """A weight that multiplies activations: a layer's kernel, or a variable read as the
        operand of a matmul/conv and not updated by the file itself."""
        if use.kind == "layer":
            return True
        return use.applied and not any(name in self.assigned for name in use.outs)

    def on_gradient_path(self, use: WeightUse) -> bool:
        """Whether the weight visibly feeds a gradient target (where it is applied, or the
        layer's construction for a Sequential list or a class)."""
        ctx = self.ctx
        targets = gradient_targets(ctx)
        if not targets.any:
            return False
        return any(targets.reaches(ctx, n) for n in use.inputs) or targets.reaches(ctx, use.site)

    def normalized(self, use: WeightUse) -> bool:
        """Whether batch normalization is built next to the layer (same ``Sequential`` list,
        class or function): its output is then re-scaled, and a small init cannot shrink the
        signal layer after layer (BN is scale-invariant)."""
        ctx = self.ctx
        container: cst.CSTNode = use.stack
        if not isinstance(container, cst.Call):
            cls = next((a for a in ctx.ancestors(use.site) if isinstance(a, cst.ClassDef)), None)
            container = cls if cls is not None else ctx.scope_of(use.site)
        key = id(container)
        got = self._bn.get(key)
        if got is None:
            got = self._bn[key] = any(
                type(n) is cst.Call and self._is_batch_norm(n) for n in ctx.descendants(container)
            )
        return got

    def _is_batch_norm(self, call: cst.Call) -> bool:
        qn = self.ctx.call_name(call)
        if qn is not None:
            last = qn.rsplit(".", 1)[-1]
            return last in tfapi.names("layers", "batch_norm_classes") or any(
                qn == row[0] for row in tfapi.table("layers", "tf1_batch_norm")
            )
        name = dotted(call.func)
        return bool(name and _BN_HELPER.search(name.rsplit(".", 1)[-1]))

    def _multiplies_inside(self, fn: cst.FunctionDef) -> bool:
        """A local helper that applies a weight op (``def conv2d(x, W): return tf.nn.conv2d(...)``),
        not one that only transforms its argument (``quantize(w, step)``)."""
        key = id(fn)
        got = self._mult_fn.get(key)
        if got is None:
            ops = tfapi.names("initializers", "weight_ops")
            got = self._mult_fn[key] = any(
                (type(n) is cst.Call and self.ctx.call_name(n) in ops)
                or (type(n) is cst.BinaryOperation and isinstance(n.operator, cst.MatrixMultiply))
                for n in self.ctx.descendants(fn)
            )
        return got

    def deps(self, use: WeightUse) -> frozenset[int]:
        """Binding statements (ids) whose values flow into what ``use`` is applied to."""
        out: set[int] = set()
        for node in use.inputs:
            key = id(node)
            got = self._deps.get(key)
            if got is None:
                got = frozenset(dependencies(self.ctx, node, budget=2500)[1])
                self._deps[key] = got
            out |= got
        return frozenset(out)

    def feeds(self, u: WeightUse, v: WeightUse) -> bool:
        """Whether layer ``u``'s output (or weight) flows into layer ``v``: through the
        file's assignments when both are named, else by order in the same scope or
        ``Sequential`` list (between two layers or two variables; never between the
        weights of one ``add_weight`` layer)."""
        if u is v:
            return False
        if u.out_stmt is not None and v.inputs:
            return u.out_stmt in self.deps(v)
        if (u.out_stmt is not None and u.inputs) or (v.out_stmt is not None and v.inputs):
            return False  # one side's data flow is known and does not connect them
        if (u.kind == "add_weight" and not u.sites) or (v.kind == "add_weight" and not v.sites):
            return False  # the weights of one custom layer are not a stack
        if (u.kind == "layer") != (v.kind == "layer"):
            return False  # a TF1 variable and a Keras layer: different models, unless data flow says so
        return u.stack is v.stack and u.order < v.order

    # -- collection -------------------------------------------------------------------------------
    def _collect(self) -> list[WeightUse]:
        ctx = self.ctx
        uses: list[WeightUse] = []
        for node in ctx.nodes_of(cst.Call):
            spec = self._spec(node)
            if spec is None:
                continue
            for sites, env in self._expand(node):
                uses.append(self._use(node, spec, sites, env))
            if len(uses) >= _MAX_USES:
                break
        self._infer_fan_in(uses)
        return uses

    # -- fan-in of layers from the layer feeding them ------------------------------------------
    def _infer_fan_in(self, uses: list[WeightUse]) -> None:
        """``Dense(10)`` fed by ``Dense(256)`` (through a Sequential list, a functional or TF1
        chain, and width-preserving layers such as Dropout or ReLU) has fan-in 256; a
        ``Conv2D(64, 3)`` fed by 32 channels has fan-in 3 * 3 * 32."""
        ctx, layers = self.ctx, self.t["fan_in_layers"]
        direct = [u for u in uses if u.kind == "layer" and not u.sites]
        if len(direct) < 2:
            return
        by_call = {id(u.call): u for u in direct}
        by_stmt = {u.out_stmt: u for u in direct if u.out_stmt is not None}
        for u in direct:
            if u.fan_in is not None:
                continue
            spec = layers.get(ctx.call_name(u.call) or "")
            if spec is None:
                continue
            width = self._input_width(u, by_call, by_stmt)
            if not width:
                continue
            dims, kpos = spec
            area = 1
            if dims:
                arg = get_arg(u.call, "kernel_size", kpos)
                k = self.shape(arg.value, None) if arg is not None else None
                if k is not None and len(k) == 1:
                    k = k * dims
                if k is None or len(k) != dims or any(not d for d in k):
                    continue
                area = math.prod(k)  # type: ignore[arg-type]
            u.fan_in = width * area

    def _preserving(self, call: cst.CSTNode) -> bool:
        qn = self.ctx.call_name(call) or ""
        return qn.startswith("keras.layers.") and qn.rsplit(".", 1)[-1] in self.t["width_preserving_layers"]

    def _input_width(self, u: WeightUse, by_call: dict[int, WeightUse], by_stmt: dict[int, WeightUse]) -> int | None:
        ctx = self.ctx
        if isinstance(u.stack, cst.Call):  # a Sequential list: the previous weight layer
            el = ctx.parent(u.call)
            lst = ctx.parent(el) if el is not None else None
            if not isinstance(lst, (cst.List, cst.Tuple)):
                return None
            elements = list(lst.elements)
            i = next((j for j, e in enumerate(elements) if e is el), 0)
            for prev in reversed(elements[:i]):
                pu = by_call.get(id(prev.value))
                if pu is not None:
                    return pu.width
                if not (isinstance(prev.value, cst.Call) and self._preserving(prev.value)):
                    return None
            return None
        p = ctx.parent(u.call)
        if isinstance(p, cst.Call) and p.func is u.call:  # Dense(10)(x)
            arg = get_arg(p, "inputs", 0)
        elif ctx.call_name(u.call) in self.t["tf1_layer_functions"]:  # tf.layers.dense(x, 10)
            arg = get_arg(u.call, "inputs", 0)
        else:
            return None
        expr = arg.value if arg is not None else None
        for _ in range(8):
            if isinstance(expr, cst.Name):
                b = ctx.binding(expr)
                if b is None or b.kind not in ("assign", "annassign") or b.value is None:
                    return None
                pu = by_stmt.get(id(b.node))
                if pu is not None:
                    return pu.width
                expr = b.value
                continue
            if not isinstance(expr, cst.Call):
                return None
            pu = by_call.get(id(expr)) or (by_call.get(id(expr.func)) if isinstance(expr.func, cst.Call) else None)
            if pu is not None:
                return pu.width
            if isinstance(expr.func, cst.Call) and self._preserving(expr.func):  # Dropout(0.5)(x)
                arg = get_arg(expr, "inputs", 0)
            elif ctx.call_name(expr) in self.t["width_preserving_ops"]:  # tf.nn.relu(x)
                arg = get_arg(expr, None, 0)
            else:
                return None
            expr = arg.value if arg is not None else None
        return None

    def _use(self, call: cst.Call, spec: _Spec, sites: tuple[cst.Call, ...], env: Env | None) -> WeightUse:
        ctx = self.ctx
        source = self.classify(spec.init, env) if spec.init is not None else None
        shape = self.shape(spec.shape, env) if spec.shape is not None else None
        if shape is None and source is not None:
            shape = source.shape
        names = self._names(call, spec, sites)
        role = self._role(spec, names, shape)
        fan_in = fan_out = None
        if shape is not None and len(shape) >= 2:
            if all(d is not None for d in shape[:-1]):
                fan_in = math.prod(shape[:-1])  # type: ignore[arg-type]
            if all(d is not None for d in shape[:-2]) and shape[-1] is not None:
                fan_out = math.prod(shape[:-2]) * shape[-1]  # type: ignore[arg-type]
        elif spec.fan_in is not None:
            size = self.shape(spec.fan_in, env)
            if size is not None and len(size) == 1:
                fan_in = size[0]
        width = shape[-1] if shape else None
        if spec.units is not None:
            units = self.shape(spec.units, env)
            width = units[0] if units is not None and len(units) == 1 else None
        site = sites[-1] if sites else call
        stack = (self._sequential_of(call) if not sites else None) or ctx.scope_of(site)
        self._applied = True
        (outs, out_stmt), inputs = self._dataflow(call, spec, sites)
        inner = self._names(call, spec, ())
        display = inner[-1] if inner else ""
        if sites:
            outer = self._targets(sites[-1])
            helper = dotted(sites[0].func) or "helper"
            if outer and display and outer[-1] != display:
                display = f"{display}` in `{helper}()` for `{outer[-1]}"
            elif outer:
                display = outer[-1]
        return WeightUse(
            call=call,
            sites=sites,
            kind=spec.kind,
            keyword=spec.keyword,
            role=role,
            name=display,
            source=source,
            shape=shape,
            fan_in=fan_in or None,
            fan_out=fan_out or None,
            width=width,
            stack=stack,
            order=(ctx.index[site], ctx.index[call]),
            # add_weight in a loop: per-variable slots or accumulators, not a stack of layers
            repeated=not (spec.kind == "add_weight" and not sites) and self._repeated((call,) + sites),
            outs=outs,
            out_stmt=out_stmt,
            inputs=inputs,
            applied=self._applied,
        )


def weight_index(ctx: FileContext) -> WeightIndex:
    """The file's :class:`WeightIndex`, built once and shared by TFG301/TFG302."""
    return memo(ctx, "weights", WeightIndex)


@lru_cache(maxsize=1)
def _relu_re() -> re.Pattern[str]:
    names = sorted(tfapi.names("initializers", "relu_like"), key=len, reverse=True)
    return re.compile(r"(?<![A-Za-z])(?:" + "|".join(map(re.escape, names)) + r")(?![A-Za-z])")


def uses_relu(ctx: FileContext) -> bool:
    """Whether the file uses ReLU-like activations (He initialization is then suggested)."""
    return bool(_relu_re().search(ctx.source))


def fan_in_initializer(ctx: FileContext, source: InitSource, relu: bool) -> str | None:
    """Code for a fan-in-scaled initializer replacing ``source`` (an initializer object)."""
    node = source.node
    if isinstance(node, cst.SimpleString):
        q = ctx.code(node)[-1:]
        return f"{q}he_normal{q}" if relu else f"{q}glorot_uniform{q}"
    if not isinstance(node, cst.Call):
        return None
    keras_style = source.api.startswith("keras.") or not ctx.is_tf1
    key = (
        ("suggest_relu" if relu else "suggest_other")
        if keras_style
        else ("suggest_tf1_relu" if relu else "suggest_tf1_other")
    )
    suggestion: str = tfapi.table("initializers", key)
    func = node.func
    if keras_style and source.api.startswith("keras.") and isinstance(func, cst.Attribute):
        # keep the user's module path: `initializers.RandomNormal` -> `initializers.HeNormal()`
        return ctx.code(func.value) + "." + suggestion.rsplit(".", 1)[-1]
    if not keras_style and isinstance(func, cst.Attribute) and ctx.qualname(func.value) == "tf":
        return ctx.code(func.value) + suggestion[len("tf") :]
    alias = tf_alias(ctx)
    if alias is None or not suggestion.startswith("tf."):
        return None
    return alias + suggestion[len("tf") :]
