"""Where a tensor comes from: shared by the NaN/Inf and loss-input rules (TFG401-403, TFG502-503).

Not a rule (the registry skips modules whose name starts with ``_``).

:class:`Flow` answers "what produced this expression?" for the handful of expressions a
rule asks about (the argument of ``tf.log``, the ``logits=`` of a loss, the output of the
model passed to ``compile``). It follows, within a small budget:

- names bound by assignment (``y_conv = tf.nn.softmax(logits)``), ``self.attr`` bindings;
- pass-through ops (``tf.reshape``, ``tf.nn.dropout``), ``x @ W + b`` and ``1 - p``;
- functional TF1 layers (``tf.layers.dense(h, 10)``), Keras layers called inline or bound to
  a name, the last layer of a ``Sequential`` (list and ``.add``), the ``outputs`` of a
  functional ``Model``, a subclassed model's ``call`` return, a helper that builds a model;
- ONE level of local functions: a call's ``return`` value, a parameter's arguments at the
  function's call sites (and ``y_pred`` of a function given to ``compile(loss=...)``).

Everything unknown is ``Source("unknown")``; nothing here raises on odd code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from typing import Literal, cast

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis.calls import bind_arguments
from tflint_grad.analysis.context import Binding, FileContext, dotted, get_arg, number, string_value
from tflint_grad.analysis.facts import memo
from tflint_grad.analysis.models import sequential_layers
from tflint_grad.analysis.targets import gradient_targets

PROB = ("softmax", "sigmoid")
MAX_DEPTH = 12
MAX_HOPS = 2  # local-function parameters / returns followed
MAX_CALL_SITES = 8


@dataclass(frozen=True)
class Source:
    """What produced a value.

    ``kind``: softmax | sigmoid (probabilities), activation (relu, tanh...: neither logits nor
    probabilities), logits (a linear layer with no activation, ``x @ W + b``), safe (clipped
    or offset by an epsilon), unknown.
    """

    kind: str
    node: cst.CSTNode | None = None  # the op call / layer constructor that decided the kind
    activation: str | None = None
    pre: cst.BaseExpression | None = None  # input of an inline activation call (its logits)
    act_arg: cst.Arg | None = None  # the `activation=` argument of the deciding layer
    layer: cst.Call | None = None  # the deciding layer's constructor (default activations)
    complement: bool = False  # 1 - p
    direct: bool = True  # the expression itself is the deciding call (no name / model hop)
    # how the value was reached, outermost first: ("`y_conv`", node), ("the last layer of `model`", node)
    via: tuple[tuple[str, cst.CSTNode | None], ...] = ()

    @property
    def prob(self) -> bool:
        return self.kind in PROB

    def hop(self, via: str, node: cst.CSTNode | None) -> Source:
        if self.kind == "unknown":
            return self
        return replace(self, direct=False, via=((via, node),) + self.via[:3])

    def via_text(self) -> str:
        return " ".join(t for t, _ in self.via)


UNKNOWN = Source("unknown")


@cache
def _table_dict(section: str, key: str) -> dict[str, tuple]:
    return {row[0]: tuple(row[1:]) for row in tfapi.table(section, key)}


@lru_cache(maxsize=1)
def _eps_name() -> re.Pattern[str]:
    return re.compile(tfapi.table("numerics", "epsilon_name_pattern"), re.IGNORECASE)


def names(section: str, key: str) -> frozenset[str]:
    return tfapi.names(section, key)


def first_input(call: cst.Call) -> cst.BaseExpression | None:
    arg = get_arg(call, None, 0)
    if arg is None:
        for kw in ("logits", "x", "features", "input", "inputs", "tensor", "a"):
            arg = get_arg(call, kw)
            if arg is not None:
                break
    return arg.value if arg is not None else None


def literal_bool(expr: cst.BaseExpression | None) -> bool | None:
    if isinstance(expr, cst.Name) and expr.value in ("True", "False"):
        return expr.value == "True"
    return None


def short(ctx: FileContext, node: cst.CSTNode, limit: int = 60) -> str:
    text = " ".join(ctx.code(node).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def loop_ancestors(ctx: FileContext, node: cst.CSTNode, stop: cst.CSTNode | None = None) -> list[cst.CSTNode]:
    """For/While statements whose BODY runs ``node``, innermost first, up to ``stop``/a def."""
    out: list[cst.CSTNode] = []
    child = node
    for a in ctx.ancestors(node):
        if a is stop or isinstance(a, (cst.FunctionDef, cst.Lambda, cst.ClassDef)):
            break
        if isinstance(a, (cst.For, cst.While)) and child is a.body:
            out.append(a)
        child = a
    return out


def flow(ctx: FileContext) -> Flow:
    """The file's :class:`Flow`, built once and shared by every rule."""
    return memo(ctx, "flow", Flow)


class Flow:
    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx
        self._memo: dict[tuple, Source] = {}
        # literal arguments a helper is read under: id(FunctionDef) -> {parameter: value}
        self._env: dict[int, dict[str, object]] = {}
        self._env_key: tuple = ()
        self._sites: dict[int, LossSite | None] = {}  # id(call) -> loss_site(self, call)

    # -- public ---------------------------------------------------------------------------
    def source(self, expr: cst.BaseExpression | None, at: cst.CSTNode | None = None) -> Source:
        if expr is None:
            return UNKNOWN
        try:
            return self._source(expr, at if at is not None else expr, 0, 0)
        except RecursionError:
            return UNKNOWN

    def model_output(self, model: cst.BaseExpression, at: cst.CSTNode) -> Source:
        """The last layer's kind of the model object ``model`` (a name bound to a model)."""
        try:
            return self._object(model, at, None, 0, 0)
        except RecursionError:
            return UNKNOWN

    def is_eps(self, expr: cst.BaseExpression, at: cst.CSTNode, depth: int = 0) -> bool:
        """A positive constant offset: ``1e-8``, ``eps``, ``K.epsilon()``, ``np.finfo(...).eps``."""
        ctx = self.ctx
        v = number(expr)
        if v is not None:
            return v > 0
        if isinstance(expr, cst.Call):
            return ctx.call_name(expr) in names("numerics", "epsilon_calls")
        if isinstance(expr, (cst.Name, cst.Attribute)):
            last = expr.value if isinstance(expr, cst.Name) else expr.attr.value
            if isinstance(expr, cst.Attribute) and last in names("numerics", "epsilon_attrs"):
                return True
            if _eps_name().search(last):
                return True
            if depth < 3:
                b = ctx.binding(expr, at)
                if b is not None and b.value is not None and b.kind in ("assign", "annassign"):
                    return self.is_eps(b.value, b.node, depth + 1)
        if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, (cst.Multiply, cst.Divide, cst.Add)):
            return self.is_eps(expr.left, at, depth + 1) and self.is_eps(expr.right, at, depth + 1)
        return False

    def calls_named(self, name: str) -> list[cst.Call]:
        """Calls ``name(...)`` or ``obj.name(...)`` anywhere in the file (built once)."""
        return self.ctx.calls_named(name)

    def portable(self, expr: cst.BaseExpression, src_at: cst.CSTNode, dst_at: cst.CSTNode) -> bool:
        """Whether ``expr`` (evaluated at ``src_at``) may be copied to ``dst_at`` unchanged:
        only names bound the same way at both places, and deterministic ops that create no
        variables."""
        ctx = self.ctx
        pure = names("losses", "pure_ops")
        for n in ctx.descendants(expr):
            t = type(n)
            if t is cst.Call:
                if ctx.call_name(n) not in pure:
                    return False
            elif t is cst.Name:
                p = ctx.parent(n)
                if isinstance(p, cst.Attribute) and p.attr is n:
                    continue
                if isinstance(p, cst.Arg) and p.keyword is n:
                    continue
                b1 = ctx.binding(cast(cst.Name, n), src_at)
                b2 = ctx.binding(cast(cst.Name, n), dst_at)
                if (b1 is None) != (b2 is None) or (b1 is not None and _key(b1) != _key(b2)):  # type: ignore[arg-type]
                    return False
            elif t in (
                cst.Lambda,
                cst.Await,
                cst.Yield,
                cst.NamedExpr,
                cst.ListComp,
                cst.GeneratorExp,
                cst.DictComp,
                cst.SetComp,
            ):
                return False
        return True

    # -- internals ---------------------------------------------------------------------------
    def _source(self, expr: cst.BaseExpression, at: cst.CSTNode, depth: int, hops: int) -> Source:
        if depth > MAX_DEPTH:
            return UNKNOWN
        key = (id(expr), hops, self._env_key)
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = UNKNOWN  # cycle guard
        result = self._compute(expr, at, depth, hops)
        self._memo[key] = result
        return result

    def _compute(self, expr: cst.BaseExpression, at: cst.CSTNode, depth: int, hops: int) -> Source:
        ctx = self.ctx
        t = type(expr)
        if t is cst.Name or t is cst.Attribute:
            if t is cst.Name and cast(cst.Name, expr).value in ("None", "True", "False"):
                return UNKNOWN
            if ctx.qualname(expr) is not None:
                return UNKNOWN  # an API object, not a tensor
            b = self._live_binding(expr, at)
            if b is None or (b.value is None and b.kind != "param"):
                return UNKNOWN
            label = f"`{dotted(expr) or short(ctx, expr)}`"
            if b.kind in ("assign", "annassign") and b.value is not None:
                return self._source(b.value, b.node, depth + 1, hops).hop(label, b.node)
            if b.kind == "param" and hops < MAX_HOPS:
                return self._param(b, depth + 1, hops + 1)
            if b.kind == "unpack" and t is cst.Name and isinstance(b.value, cst.Call) and hops < MAX_HOPS:
                # `D_prob, D_logit = discriminator(x)`: the matching element of the helper's return
                i = _unpack_position(b.node, cast(cst.Name, expr).value)
                if i is not None:
                    return self._returned_element(b.value, i, depth + 1, hops + 1).hop(label, b.node)
            if b.kind == "unpack" and t is cst.Name and isinstance(b.value, (cst.ListComp, cst.GeneratorExp)):
                # `a, b = [tf.expand_dims(x, 1) for x in [a, b]]`: the comprehension over a literal list
                i = _unpack_position(b.node, cast(cst.Name, expr).value)
                element = _comprehension_element(ctx, b.value, i) if i is not None else None
                if element is not None:
                    return self._source(element[0], b.node, depth + 1, hops).hop(label, b.node)
            return UNKNOWN
        if t is cst.Call:
            return self._call(cast(cst.Call, expr), at, depth, hops)
        if t is cst.BinaryOperation:
            return self._binop(cast(cst.BinaryOperation, expr), at, depth, hops)
        if t is cst.Subscript:
            return self._source(cast(cst.Subscript, expr).value, at, depth + 1, hops)
        return UNKNOWN

    def _binop(self, expr: cst.BinaryOperation, at: cst.CSTNode, depth: int, hops: int) -> Source:
        op = type(expr.operator)
        if op is cst.Add:
            if self.is_eps(expr.left, at) or self.is_eps(expr.right, at):
                return Source("safe", expr)
            left = self._source(expr.left, at, depth + 1, hops)
            right = self._source(expr.right, at, depth + 1, hops)
            if "logits" in (left.kind, right.kind) and not (
                left.prob or right.prob or "activation" in (left.kind, right.kind)
            ):
                return Source("logits", expr)
            return UNKNOWN
        if op is cst.MatrixMultiply:
            return Source("logits", expr)
        if op is cst.Subtract:
            if number(expr.left) == 1.0:
                s = self._source(expr.right, at, depth + 1, hops)
                if s.prob:
                    return replace(s, complement=True, direct=False)
            return UNKNOWN
        if op is cst.Divide:
            hand = self._hand_sigmoid(expr, expr.left, expr.right)
            if hand is not None:
                return hand
        if op in (cst.Multiply, cst.Divide):
            left = self._source(expr.left, at, depth + 1, hops)
            right = self._source(expr.right, at, depth + 1, hops) if op is cst.Multiply else UNKNOWN
            for a, b in ((left, right), (right, left)):
                if a.prob and not b.prob and b.kind != "safe":
                    return replace(a, direct=False)
                if a.kind == "logits" and b.kind == "unknown":
                    return Source("logits", expr)
            return UNKNOWN
        return UNKNOWN

    def _hand_sigmoid(self, node: cst.CSTNode, num: cst.BaseExpression | None, den: cst.BaseExpression | None):
        """``1 / (1 + exp(z))``: a sigmoid written by hand (of ``-z``; either way a probability)."""
        if num is None or den is None or number(num) != 1.0:
            return None
        ctx = self.ctx
        while isinstance(den, cst.Name):  # `den = 1. + tf.exp(-z)`
            b = ctx.binding(den, node)
            if b is None or b.kind not in ("assign", "annassign") or b.value is None:
                return None
            den = b.value
        parts: tuple[cst.BaseExpression, cst.BaseExpression] | None = None
        if isinstance(den, cst.BinaryOperation) and isinstance(den.operator, cst.Add):
            parts = (den.left, den.right)
        elif isinstance(den, cst.Call) and ctx.call_name(den) in names("numerics", "add"):
            a, b2 = get_arg(den, "x", 0), get_arg(den, "y", 1)
            parts = (a.value, b2.value) if a is not None and b2 is not None else None
        if parts is None:
            return None
        for one, e in (parts, parts[::-1]):
            if number(one) == 1.0 and isinstance(e, cst.Call) and ctx.call_name(e) in names("numerics", "exp"):
                return Source("sigmoid", node, "sigmoid", pre=first_input(e))
        return None

    def _call(self, call: cst.Call, at: cst.CSTNode, depth: int, hops: int) -> Source:
        ctx = self.ctx
        qn = ctx.call_name(call)
        if qn is not None:
            if qn in names("numerics", "divide"):
                x, y = get_arg(call, "x", 0), get_arg(call, "y", 1)
                hand = self._hand_sigmoid(call, x.value if x else None, y.value if y else None)
                if hand is not None:
                    return hand
            if qn in names("numerics", "reciprocal"):
                one = cst.Integer("1")
                hand = self._hand_sigmoid(call, one, first_input(call))
                if hand is not None:
                    return hand
            if qn in names("losses", "softmax"):
                return Source("softmax", call, "softmax", pre=first_input(call))
            if qn in names("losses", "sigmoid"):
                return Source("sigmoid", call, "sigmoid", pre=first_input(call))
            if qn in names("losses", "activations"):
                return Source("activation", call, qn.rsplit(".", 1)[-1], pre=first_input(call))
            if qn in names("numerics", "clip"):
                return Source("safe", call)
            if qn in names("losses", "passthrough_ops"):
                inner = first_input(call)
                return self._source(inner, call, depth + 1, hops) if inner is not None else UNKNOWN
            if qn in names("losses", "select_ops"):
                inner = first_input(call)
                s = self._source(inner, call, depth + 1, hops) if inner is not None else UNKNOWN
                return replace(s, direct=False) if s.prob else UNKNOWN
            if qn in names("losses", "linear_ops"):
                return Source("logits", call)
            row = _table_dict("losses", "activation_layers").get(qn)
            if row is not None and qn.rsplit(".", 1)[-1][:1].islower():
                return self._with_activation(call, row)  # functional TF1 layer: returns a tensor
            return UNKNOWN  # another API call, or a layer/model constructor (not a tensor)
        func = call.func
        if isinstance(func, (cst.Name, cst.Attribute)):
            b = ctx.binding(func, call)
            if b is not None and b.kind == "def" and isinstance(b.node, cst.FunctionDef):
                if hops >= MAX_HOPS:
                    return UNKNOWN
                with self._constants(b.node, call, skip_self=False):
                    ret = self._returns(b.node, depth + 1, hops + 1)
                return ret.hop(f"the return value of `{b.node.name.value}()`", call)
        if isinstance(func, cst.Attribute) and func.attr.value in names("numerics", "tensor_array_reads"):
            stacked = self._tensor_array(func.value, call, depth, hops)
            if stacked is not None:
                return stacked
        return self._object(func, call, call, depth + 1, hops)

    def _tensor_array(self, arr: cst.BaseExpression, at: cst.CSTNode, depth: int, hops: int) -> Source | None:
        """``ta.stack()`` of a ``tf.TensorArray`` built in this scope: the kind shared by every
        value written to it (``ta = ta.write(t, probs[0, a])``). None: not a TensorArray."""
        ctx = self.ctx
        name = dotted(arr)
        if not name or "." in name:
            return None
        scope = ctx.scope_of(at)
        bound = ctx.bindings_of(name, scope)
        ctor = names("numerics", "tensor_array")
        if not any(isinstance(b.value, cst.Call) and ctx.call_name(b.value) in ctor for b in bound):
            return None
        found: list[Source] = []
        for c in self.calls_named("write"):
            f = c.func
            if not (isinstance(f, cst.Attribute) and dotted(f.value) == name and ctx.scope_of(c) is scope):
                continue
            value = get_arg(c, "value", 1)
            if value is None or value.star:
                return UNKNOWN
            found.append(self._source(value.value, c, depth + 1, hops))
        if not found or len({s.kind for s in found}) != 1:
            return UNKNOWN
        return found[0].hop(f"the values written to the TensorArray `{name}`", at)

    def _object(self, obj: cst.BaseExpression, at: cst.CSTNode, use: cst.Call | None, depth: int, hops: int) -> Source:
        """The output of calling the object ``obj`` (a layer or model) at ``use``."""
        ctx = self.ctx
        if depth > MAX_DEPTH:
            return UNKNOWN
        label = None
        ctor: cst.BaseExpression | None = obj
        where = at
        for _ in range(6):
            if isinstance(ctor, (cst.Name, cst.Attribute)) and ctx.qualname(ctor) is None:
                b = ctx.binding(ctor, where)
                if b is not None and b.kind == "param" and hops < MAX_HOPS:
                    return self._param(b, depth + 1, hops + 1, use=use or False)
                if b is None or b.value is None or b.kind not in ("assign", "annassign"):
                    return UNKNOWN
                label = label or f"`{dotted(ctor) or short(ctx, ctor)}`"
                ctor, where = b.value, b.node
                continue
            break
        if not isinstance(ctor, cst.Call):
            return UNKNOWN
        s = self._constructed(ctor, use, depth + 1, hops)
        if s.kind != "unknown" and label is not None:
            s = s.hop(label if s.layer is None or s.layer is ctor else f"the last layer of {label}", at)
        return s

    def _constructed(self, ctor: cst.Call, use: cst.Call | None, depth: int, hops: int) -> Source:
        """Output kind of the layer/model that ``ctor`` constructs, when called (at ``use``)."""
        ctx = self.ctx
        if depth > MAX_DEPTH:
            return UNKNOWN
        qn = ctx.call_name(ctor)
        if qn is not None:
            if qn in names("layers", "sequential_models"):
                return self._sequential(ctor, depth + 1, hops)
            if qn in names("layers", "functional_models"):
                out = get_arg(ctor, "outputs", 1)
                if out is None:
                    return UNKNOWN
                v = out.value
                if isinstance(v, (cst.List, cst.Tuple)):
                    if len(v.elements) != 1:
                        return UNKNOWN
                    v = v.elements[0].value
                return self._source(v, ctor, depth + 1, hops)
            if qn.startswith("keras.applications."):
                inc = get_arg(ctor, "include_top", 0)
                if inc is not None and literal_bool(inc.value) is not True:
                    return UNKNOWN
                kw, default = tfapi.table("losses", "application_activation")
                arg = get_arg(ctor, kw)
                return self._kind_from_activation(arg.value if arg else None, default, ctor, arg, ctor)
            layer = self._layer(ctor, qn)
            if layer is None:  # pass-through layer: the output is its input's
                x = first_input(use) if use is not None else None
                return self._source(x, use, depth + 1, hops) if x is not None and use is not None else UNKNOWN
            return layer
        func = ctor.func
        if isinstance(func, cst.Name):
            b = ctx.binding(func, ctor)
            if b is not None and b.kind == "class" and isinstance(b.node, cst.ClassDef):
                return self._class_output(b.node, depth + 1, hops, use)
            if b is not None and b.kind == "def" and isinstance(b.node, cst.FunctionDef):
                # a helper that builds the model: follow its return to a constructor
                rets = self._return_values(b.node)
                if len(rets) == 1:
                    ret, expr = rets[0]
                    built = ctx.value_of(expr, ret)
                    if isinstance(built, cst.Call):
                        return self._constructed(built, use, depth + 1, hops)
        return UNKNOWN

    def _layer(self, ctor: cst.Call, qn: str) -> Source | None:
        """A layer constructor's output kind; None for pass-through layers."""
        row = _table_dict("losses", "activation_layers").get(qn)
        if row is not None:
            return self._with_activation(ctor, row)
        only = _table_dict("losses", "activation_only_layers").get(qn)
        if only is not None:
            act = only[0]
            if act == "":
                arg = get_arg(ctor, "activation", 0)
                if arg is not None and self._activation_name(arg.value, ctor) in names("losses", "linear_strings"):
                    return None  # `Activation('linear')` is the identity (a dtype cast, in mixed precision)
                return self._kind_from_activation(arg.value if arg else None, None, ctor, None, ctor)
            return Source(self._kind_of(act), ctor, act, layer=ctor)
        last = qn.rsplit(".", 1)[-1]
        if qn.startswith("keras.layers.") and (
            last in names("losses", "passthrough_layers")
            or last in names("layers", "dropout_classes")
            or last in names("layers", "batch_norm_classes")
        ):
            return None
        return UNKNOWN

    def _with_activation(self, call: cst.Call, row: tuple) -> Source:
        keyword, position, default = row
        arg = get_arg(call, keyword, position if position >= 0 else None)
        if arg is None and any(a.star == "**" for a in call.args):
            return UNKNOWN
        return self._kind_from_activation(arg.value if arg is not None else None, default, call, arg, call)

    def _kind_from_activation(self, value, default, at, arg, layer) -> Source:
        name = self._activation_name(value, at) if value is not None else default
        if name is None:
            return UNKNOWN
        kind = self._kind_of(name)
        if kind == "unknown":
            return UNKNOWN
        return Source(kind, layer, name, act_arg=arg, layer=layer)

    def _activation_name(self, value: cst.BaseExpression, at: cst.CSTNode) -> str | None:
        ctx = self.ctx
        v = ctx.value_of(value, at) if isinstance(value, cst.Name) and value.value != "None" else value
        if isinstance(v, cst.Name) and v.value == "None":
            return "linear"
        s = string_value(v)
        if s is not None:
            return s.lower()
        qn = ctx.qualname(v) if isinstance(v, (cst.Name, cst.Attribute)) else None
        if qn is None:
            return None
        if qn in names("losses", "softmax"):
            return "softmax"
        if qn in names("losses", "sigmoid"):
            return "sigmoid"
        if qn in names("losses", "activations"):
            return qn.rsplit(".", 1)[-1]
        return None

    @staticmethod
    def _kind_of(name: str) -> str:
        if name in names("losses", "softmax_strings"):
            return "softmax"
        if name in names("losses", "sigmoid_strings"):
            return "sigmoid"
        if name in names("losses", "linear_strings"):
            return "logits"
        if name in names("losses", "activation_strings") or name in {"prelu", "tanh"}:
            return "activation"
        return "unknown"

    def _sequential(self, ctor: cst.Call, depth: int, hops: int) -> Source:
        ctx = self.ctx
        listing = sequential_layers(ctx, ctor, this_binding=True)
        if not listing.literal:
            return UNKNOWN
        layers = listing.layers
        for layer in reversed(layers):
            if not isinstance(layer, cst.Call):
                return UNKNOWN
            qn = ctx.call_name(layer)
            if qn is None:
                return UNKNOWN
            if qn in names("layers", "sequential_models"):
                return self._sequential(layer, depth + 1, hops)
            s = self._layer(layer, qn)
            if s is None:
                continue
            return s
        return UNKNOWN

    def _class_output(self, cls: cst.ClassDef, depth: int, hops: int, use: cst.Call | None = None) -> Source:
        for stmt in cls.body.body:
            if isinstance(stmt, cst.FunctionDef) and stmt.name.value == "call":
                with self._constants(stmt, use, skip_self=True):
                    return self._returns(stmt, depth + 1, hops)
        return UNKNOWN

    # -- helpers read under constant arguments ---------------------------------------------------
    @contextmanager
    def _constants(self, fn: cst.FunctionDef, use: cst.Call | None, *, skip_self: bool) -> Iterator[None]:
        """Read ``fn`` with the literal arguments of ``use`` (and its literal defaults):
        ``model(x, is_training=True)`` skips ``if not is_training: x = softmax(x)``."""
        consts = _literal_params(fn, use, skip_self)
        if not consts or id(fn) in self._env:
            yield
            return
        saved = self._env_key
        self._env[id(fn)] = consts
        self._env_key = (*saved, (id(fn), tuple(sorted(consts.items(), key=repr))))
        try:
            yield
        finally:
            del self._env[id(fn)]
            self._env_key = saved

    def _dead(self, node: cst.CSTNode) -> bool:
        """Whether ``node`` sits in an ``if`` branch that the constant arguments rule out."""
        if not self._env:
            return False
        ctx = self.ctx
        child = node
        for a in ctx.ancestors(node):
            if isinstance(a, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
                return False
            if isinstance(a, cst.If) and child is not a.test:
                value = self._truth(a.test, ctx.scope_of(a))
                if value is not None and value != (child is a.body):
                    return True
            child = a
        return False

    def _truth(self, test: cst.BaseExpression, fn: cst.CSTNode) -> bool | None:
        env = self._env.get(id(fn))
        if env is None:
            return None
        if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
            v = self._truth(test.expression, fn)
            return None if v is None else not v
        if isinstance(test, cst.Name) and test.value in env:
            return bool(env[test.value])
        if (
            isinstance(test, cst.Comparison)
            and len(test.comparisons) == 1
            and isinstance(test.left, cst.Name)
            and test.left.value in env
        ):
            comp = test.comparisons[0]
            right = _literal(comp.comparator)
            if right is _NOT_LITERAL:
                return None
            left = env[test.left.value]
            if isinstance(comp.operator, (cst.Equal, cst.Is)):
                return left == right
            if isinstance(comp.operator, (cst.NotEqual, cst.IsNot)):
                return left != right
        return None

    def _live_binding(self, expr: cst.BaseExpression, at: cst.CSTNode) -> Binding | None:
        """``ctx.binding``, skipping assignments in branches the constant arguments rule out."""
        ctx = self.ctx
        b = ctx.binding(expr, at)
        if b is None or not self._env or not self._dead(b.node):
            return b
        earlier = [x for x in ctx.bindings_of(b.name, b.scope) if x.index < b.index and not self._dead(x.node)]
        return earlier[-1] if earlier else None

    def _return_values(self, fn: cst.FunctionDef) -> list[tuple[cst.Return, cst.BaseExpression]]:
        out = []
        for n in self.ctx.descendants(fn):
            if type(n) is cst.Return and n.value is not None and self.ctx.scope_of(n) is fn and not self._dead(n):
                out.append((n, n.value))
        return out

    def _returns(self, fn: cst.FunctionDef, depth: int, hops: int) -> Source:
        rets = self._return_values(fn)
        if not rets or len(rets) > 4:
            return UNKNOWN
        found = [self._source(v, r, depth + 1, hops) for r, v in rets]
        kinds = {s.kind for s in found}
        if len(kinds) != 1:
            return UNKNOWN  # e.g. returns logits when training, softmax otherwise
        return replace(found[0], direct=False)

    def _returned_element(self, call: cst.Call, i: int, depth: int, hops: int) -> Source:
        ctx = self.ctx
        if not isinstance(call.func, cst.Name):
            return UNKNOWN
        fb = ctx.binding(call.func, call)
        if fb is None or fb.kind != "def" or not isinstance(fb.node, cst.FunctionDef):
            return UNKNOWN
        found = []
        for ret, value in self._return_values(fb.node)[:4]:
            if not isinstance(value, (cst.Tuple, cst.List)) or len(value.elements) <= i:
                return UNKNOWN
            el = value.elements[i]
            if isinstance(el, cst.StarredElement):
                return UNKNOWN
            found.append(self._source(el.value, ret, depth + 1, hops))
        if not found or len({s.kind for s in found}) != 1:
            return UNKNOWN
        return replace(found[0], direct=False).hop(f"the return value of `{fb.node.name.value}()`", call)

    def _param(self, b: Binding, depth: int, hops: int, use: cst.Call | Literal[False] | None = None) -> Source:
        """A parameter of a local function: the arguments passed at its call sites. With
        ``use`` (not None) the parameter is a layer/model object called at ``use``."""
        ctx = self.ctx
        fn = b.scope
        if not isinstance(fn, cst.FunctionDef) or not isinstance(b.node, cst.Param):
            return UNKNOWN
        params = list(fn.params.posonly_params) + list(fn.params.params)
        idx = next((i for i, p in enumerate(params) if p is b.node), None)
        kwonly = any(p is b.node for p in fn.params.kwonly_params)
        if idx is None and not kwonly:
            return UNKNOWN
        is_method = isinstance(ctx.scope_of(fn), cst.ClassDef)
        if is_method and idx is not None:
            idx -= 1
            if idx < 0:
                return UNKNOWN
        fname = fn.name.value
        found: list[Source] = []
        on_path: list[bool] = []
        for site in self.calls_named(fname)[: MAX_CALL_SITES * 4]:
            if len(found) >= MAX_CALL_SITES:
                break
            func = site.func
            if isinstance(func, cst.Name):
                fb = ctx.binding(func, site)
                if fb is None or fb.node is not fn:
                    continue
            elif not (is_method and isinstance(func, cst.Attribute)):
                continue
            value = bind_arguments(fn, site, skip_self=is_method).passed(b.name)
            if not isinstance(value, cst.BaseExpression):
                continue
            if use is None:
                s = self._source(value, site, depth + 1, hops)
            else:
                s = self._object(value, site, use or None, depth + 1, hops)
            found.append(s.hop(f"the argument `{short(ctx, value, 40)}` of `{fname}()`", site))
            on_path.append(gradient_targets(ctx).reaches(ctx, site))
        # a Keras custom loss: `model.compile(loss=fn)` passes the model's output as y_pred
        if idx == 1 and not is_method and use is None:
            for ref in ctx.references(fname):
                arg = ctx.parent(ref)
                call = ctx.parent(arg) if isinstance(arg, cst.Arg) else None
                if not isinstance(call, cst.Call) or not isinstance(call.func, cst.Attribute):
                    continue
                method, kw, pos = tfapi.table("losses", "compile_method")
                if call.func.attr.value != method or get_arg(call, kw, pos) is not arg:
                    continue
                s = self._object(call.func.value, call, None, depth + 1, hops)
                found.append(s.hop(f"y_pred of `{fname}` in `{short(ctx, call.func, 30)}`", call))
                on_path.append(True)  # Keras differentiates the compiled loss
        # the calls that training differentiates, not a printed evaluation (when they are known)
        differentiated = [s for s, on in zip(found, on_path) if on and s.kind != "unknown"]
        if differentiated:
            found = differentiated
        for want in (PROB, ("activation",), ("logits",)):
            for s in found:
                if s.kind in want:
                    return s
        return UNKNOWN


_NOT_LITERAL = object()


def _literal(expr: cst.BaseExpression | None) -> object:
    """The value of ``True``/``False``/``None``, a number or a string literal."""
    if isinstance(expr, cst.Name) and expr.value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[expr.value]
    v = number(expr)
    if v is not None:
        return v
    s = string_value(expr)
    return s if s is not None else _NOT_LITERAL


def _literal_params(fn: cst.FunctionDef, use: cst.Call | None, skip_self: bool) -> dict[str, object]:
    """Parameters of ``fn`` bound to literals at the call ``use`` (or by their defaults)."""
    params = list(fn.params.posonly_params) + list(fn.params.params)
    if skip_self and params:
        params = params[1:]
    every = params + list(fn.params.kwonly_params)
    out: dict[str, object] = {}
    for p in every:
        # Keras passes `training` itself (True in `fit`): its default says nothing
        if p.default is not None and p.name.value != "training":
            v = _literal(p.default)
            if v is not _NOT_LITERAL:
                out[p.name.value] = v
    if use is None:
        return out
    bound = bind_arguments(fn, use, skip_self=skip_self)
    for p in every:
        value = bound.passed(p.name.value)
        if value is None:
            continue  # the default applies
        out.pop(p.name.value, None)
        v = _literal(value) if isinstance(value, cst.BaseExpression) else _NOT_LITERAL
        if v is not _NOT_LITERAL:
            out[p.name.value] = v
    return out


def _comprehension_element(
    ctx: FileContext, comp: cst.ListComp | cst.GeneratorExp, i: int
) -> tuple[cst.BaseExpression, cst.BaseExpression] | None:
    """``[f(x) for x in [a, b, c]]``, element ``i``: the comprehension's value when ``x`` is a
    pass-through (``f`` keeps ``x``'s kind: the caller checks), as (``x``'s i-th value, elt).
    Only a single ``for`` over a literal list with a plain name target and no ``if``."""
    f = comp.for_in
    if f.inner_for_in is not None or f.ifs or not isinstance(f.target, cst.Name):
        return None
    if not isinstance(f.iter, (cst.List, cst.Tuple)) or i >= len(f.iter.elements):
        return None
    el = f.iter.elements[i]
    if isinstance(el, cst.StarredElement):
        return None
    # the element expression must be the target itself, or a pass-through op of it
    elt = comp.elt
    name = f.target.value
    if isinstance(elt, cst.Name) and elt.value == name:
        return el.value, elt
    if isinstance(elt, cst.Call) and ctx.call_name(elt) in names("losses", "passthrough_ops"):
        x = first_input(elt)
        if isinstance(x, cst.Name) and x.value == name:
            return el.value, elt
    return None


def _unpack_position(stmt: cst.CSTNode, name: str) -> int | None:
    """Index of ``name`` in the flat tuple target of ``a, b = f(...)``."""
    if not isinstance(stmt, cst.Assign) or len(stmt.targets) != 1:
        return None
    target = stmt.targets[0].target
    if not isinstance(target, (cst.Tuple, cst.List)):
        return None
    for i, el in enumerate(target.elements):
        if isinstance(el, cst.StarredElement):
            return None
        if isinstance(el.value, cst.Name) and el.value.value == name:
            return i
    return None


def _key(b: Binding) -> tuple:
    return (b.index, b.kind, b.name, id(b.scope))


# -- loss call sites (TFG402, TFG503) --------------------------------------------------------


@dataclass
class LossSite:
    call: cst.Call  # the loss call, or `model.compile(...)`
    report: cst.CSTNode  # where the finding goes
    api: str  # how the message names the loss
    expects: str  # "logits" | "probabilities"
    pred: Source
    pred_expr: cst.BaseExpression | None  # the argument holding the prediction (None for compile)
    from_logits: cst.Arg | None = None  # the `from_logits=` argument as written
    owner: cst.Call | None = None  # the Keras call/constructor that owns `from_logits`
    owner_position: int = -1  # position of from_logits in `owner`
    string: cst.BaseExpression | None = None  # `loss="..."` in compile
    keras_class: str | None = None
    model: cst.BaseExpression | None = None  # the compiled model


def _keras_loss(ctx: FileContext, qn: str | None) -> tuple[str, tuple] | None:
    """("class"|"function", row) for a Keras cross-entropy class or function name."""
    if not qn or "." not in qn:
        return None
    module, last = qn.rsplit(".", 1)
    if module in names("losses", "keras_class_modules"):
        row = _table_dict("losses", "keras_classes").get(last)
        if row is not None:
            return "class", row
    if module in names("losses", "keras_function_modules"):
        row = _table_dict("losses", "keras_functions").get(last)
        if row is not None:
            return "function", row
    return None


def _from_logits(call: cst.Call, position: int) -> tuple[cst.Arg | None, bool | None]:
    """The from_logits argument and its literal value (False when absent; None: not literal)."""
    kw = tfapi.table("losses", "from_logits_keyword")
    arg = get_arg(call, kw, position if position >= 0 else None)
    if arg is None:
        if any(a.star == "**" for a in call.args):
            return None, None
        return None, False
    return arg, literal_bool(arg.value)


def loss_site(flow: Flow, call: cst.Call) -> LossSite | None:
    """Describe ``call`` if it computes a cross-entropy whose prediction kind is checkable
    (once per call and file: TFG402 and TFG503 both ask, the one ``Flow`` keeps the answer)."""
    sites = flow._sites
    key = id(call)
    if key not in sites:
        sites[key] = _loss_site(flow, call)
    return sites[key]


def _loss_site(flow: Flow, call: cst.Call) -> LossSite | None:
    ctx = flow.ctx
    qn = ctx.call_name(call)
    if qn is not None:
        row = _table_dict("losses", "with_logits").get(qn)
        if row is not None:
            arg = get_arg(call, row[0], row[1])
            if arg is None or arg.star:
                return None
            return LossSite(call, call, f"`{qn}`", "logits", flow.source(arg.value, call), arg.value)
        k = _keras_loss(ctx, qn)
        if k is not None and k[0] == "function":
            pos, fl_pos = k[1]
            arg = _y_pred(call, pos)
            if arg is None:
                return None
            fl_arg, value = _from_logits(call, fl_pos)
            if value is None:
                return None
            api = f"`{qn.rsplit('.', 1)[-1]}`" + (" with `from_logits=True`" if value else "")
            return LossSite(
                call,
                call,
                api,
                "logits" if value else "probabilities",
                flow.source(arg.value, call),
                arg.value,
                fl_arg,
                call,
                fl_pos,
            )
        return None
    func = call.func
    if isinstance(func, cst.Attribute):
        method, kw, pos = tfapi.table("losses", "compile_method")
        if func.attr.value == method:
            return _compile_site(flow, call, get_arg(call, kw, pos))
    # a Keras loss object: `loss_fn(y, pred)` or `CategoricalCrossentropy(...)(y, pred)`
    ctor = (
        func
        if isinstance(func, cst.Call)
        else ctx.value_of(func, call)
        if isinstance(func, (cst.Name, cst.Attribute))
        else None
    )
    if not isinstance(ctor, cst.Call):
        return None
    k = _keras_loss(ctx, ctx.call_name(ctor))
    if k is None or k[0] != "class":
        return None
    arg = _y_pred(call, 1)
    if arg is None:
        return None
    fl_pos = k[1][0]
    fl_arg, value = _from_logits(ctor, fl_pos)
    if value is None:
        return None
    cls = ctx.call_name(ctor).rsplit(".", 1)[-1]  # type: ignore[union-attr]
    api = f"`{cls}({'from_logits=True' if value else ''})`"
    return LossSite(
        call,
        call,
        api,
        "logits" if value else "probabilities",
        flow.source(arg.value, call),
        arg.value,
        fl_arg,
        ctor,
        fl_pos,
    )


def _y_pred(call: cst.Call, position: int) -> cst.Arg | None:
    for kw in tfapi.table("losses", "y_pred_keywords"):
        arg = get_arg(call, kw)
        if arg is not None:
            return arg
    arg = get_arg(call, None, position)
    return None if arg is None or arg.star else arg


def _compile_site(flow: Flow, call: cst.Call, loss: cst.Arg | None) -> LossSite | None:
    ctx = flow.ctx
    if loss is None or loss.star:
        return None
    model = call.func.value  # type: ignore[attr-defined]
    value = loss.value
    s = string_value(value)
    if s is not None:
        cls = dict(tfapi.table("losses", "compile_strings")).get(s)
        if cls is None:
            return None
        pred = flow.model_output(model, call)
        return LossSite(
            call, value, f"`loss='{s}'`", "probabilities", pred, None, string=value, keras_class=cls, model=model
        )
    ctor = (
        value
        if isinstance(value, cst.Call)
        else ctx.value_of(value, call)
        if isinstance(value, (cst.Name, cst.Attribute))
        else None
    )
    qn = ctx.qualname(value) if isinstance(value, (cst.Name, cst.Attribute)) else None
    k = _keras_loss(ctx, qn)
    if k is not None and k[0] == "function":
        pred = flow.model_output(model, call)
        return LossSite(call, value, f"`loss={short(ctx, value)}`", "probabilities", pred, None, model=model)
    if not isinstance(ctor, cst.Call):
        return None
    k = _keras_loss(ctx, ctx.call_name(ctor))
    if k is None or k[0] != "class":
        return None
    fl_arg, fl = _from_logits(ctor, k[1][0])
    if fl is None:
        return None
    pred = flow.model_output(model, call)
    cls = ctx.call_name(ctor).rsplit(".", 1)[-1]  # type: ignore[union-attr]
    api = f"`{cls}({'from_logits=True' if fl else ''})`"
    return LossSite(
        call, value, api, "logits" if fl else "probabilities", pred, None, fl_arg, ctor, k[1][0], model=model
    )


def fit_lines(ctx: FileContext, site: LossSite) -> list[int]:
    """Lines of ``model.fit(...)``-like calls of a compiled model (where Keras builds the loss)."""
    if site.model is None:
        return []
    name = dotted(site.model)
    if not name:
        return []
    methods = names("losses", "fit_methods")
    out = []
    for n in ctx.nodes_of(cst.Call):
        if isinstance(n.func, cst.Attribute) and n.func.attr.value in methods and dotted(n.func.value) == name:
            out.append(ctx.line(n))
    return sorted(set(out))[:10]


def origin(ctx: FileContext, s: Source) -> str:
    """``the `Dense(10, activation='softmax')` layer (line 5)`` / ```tf.nn.softmax` (line 12)``."""
    parts = []
    if s.node is not None:
        if s.layer is not None:
            parts.append(f"`{short(ctx, s.layer)}` (line {ctx.line(s.layer)})")
        elif isinstance(s.node, cst.Call):
            parts.append(f"`{short(ctx, s.node.func, 50)}` (line {ctx.line(s.node)})")
        else:
            parts.append(f"`{short(ctx, s.node)}` (line {ctx.line(s.node)})")
    if s.via:
        hops = [f"{text} (line {ctx.line(node)})" if node is not None else text for text, node in s.via]
        parts.append("reached through " + " ← ".join(hops))
    return ", ".join(parts)


def replace_arg_value(rule, call: cst.Call, arg: cst.Arg, new_value: str, title: str):
    return rule.replace(arg.value, new_value, title, "unsafe")


def set_keyword(rule, call: cst.Call, keyword: str, value: str, title: str, position: int = -1):
    """A fix that sets ``keyword=value`` in ``call`` (replacing it, or appending it)."""
    ctx = rule.ctx
    arg = get_arg(call, keyword, position if position >= 0 else None)
    if arg is not None:
        return rule.replace(arg.value, value, title, "unsafe")
    if any(a.star for a in call.args):
        return None
    new_arg = cst.Arg(
        value=cst.parse_expression(value),
        keyword=cst.Name(keyword),
        equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")),
    )
    args = list(call.args)
    if args:
        last = args[-1]
        if isinstance(last.comma, cst.Comma):
            new_arg = new_arg.with_changes(comma=last.comma)
            args[-1] = last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        else:
            args[-1] = last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
    args.append(new_arg)
    return rule.replace(call, ctx.module.code_for_node(call.with_changes(args=args)), title, "unsafe")
