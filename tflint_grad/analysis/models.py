"""Models and their layers: what a callable that a training step calls holds.

:class:`ModelResolver` classifies the object a call ``callee(...)`` calls (``ctx.model_info``):

- ``model``/``layer``: a Keras model or layer whose layers are seen: Sequential lists and
  ``.add``, functional ``Model(inputs, outputs)`` (the layers on the path to its outputs,
  including another model whose tensors it wraps), subclassed models (layers built in the
  class, in local helper functions, or by classes imported from sibling modules of the
  project), models returned by helpers, ``keras.applications`` (table: VGG has no batch
  norm). ``frozen`` when ``base.trainable = False`` or every BN is ``trainable=False``.
- ``other``: not a model with a training mode: a ``tf.Module`` or plain class of
  ``tf.Variable``s, a function, a method of the class, a callable that returns a loss or
  updates metrics (whatever its name), a TF/Keras API function.
- ``unknown``: the code does not show it (an import that cannot be read, a parameter with no
  call site in the file). Rules report on it only with ``confidence="low"``.

Parameters are resolved through the call sites in the same file or notebook
(``train(model, ...)`` called with a Dense-only model); ``self.attr`` through ``__init__``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis.calls import bind_arguments
from tflint_grad.analysis.context import Binding, ScopeNode, dependencies, dotted, get_arg
from tflint_grad.analysis.facts import memo

if TYPE_CHECKING:
    from tflint_grad.analysis.context import FileContext


@dataclass
class ModelInfo:
    """What is statically known about a callable that a training step calls."""

    kind: str  # "model" | "layer" | "unknown" | "other"
    batch_norm: bool = False
    dropout: bool = False
    frozen: bool = False  # every BN is trainable=False / the model is frozen on purpose
    description: str = ""
    layers: list[str] = field(default_factory=list)  # class names of known layers, in order
    # holds non-trainable variables that the code shows (BN moving statistics, trainable=False)
    non_trainable: bool = False
    # parts whose content the code does not show (an unreadable import...): the flags may be incomplete
    unseen: list[str] = field(default_factory=list)

    @property
    def training_sensitive(self) -> bool:
        return self.batch_norm or self.dropout


_MODELISH = re.compile(
    r"model|net|encoder|decoder|generator|discriminator|classifier|critic|actor|policy|backbone|"
    r"network|mlp|cnn|rnn|resnet|vgg|unet|transformer|bert|head",
    re.IGNORECASE,
)
# A callable named like this returns a loss or updates metrics: never a model, whatever else its name says.
_NOT_A_MODEL = re.compile(r"loss|metric|accuracy|objective|penalty|criterion", re.IGNORECASE)


def modelish_name(name: str | None) -> bool:
    if not name:
        return False
    last = name.split(".")[-1]
    return bool(_MODELISH.search(last)) and not _NOT_A_MODEL.search(last)


def loss_like_name(name: str | None) -> bool:
    return bool(name and _NOT_A_MODEL.search(name.split(".")[-1]))


def model_attribute_owners(ctx: FileContext, scope: ScopeNode) -> set[str]:
    """Dotted names whose variable lists (``.trainable_variables``, ``.variables``,
    ``.trainable_weights``...) are read directly in ``scope``: evidence that they are Keras
    models or layers. Rules should cache the result per scope."""
    attrs = (
        tfapi.names("gradients", "all_variable_attrs")
        | tfapi.names("gradients", "trainable_attrs")
        | tfapi.names("gradients", "non_trainable_attrs")
    )
    out: set[str] = set()
    for n in ctx.descendants(scope):
        if type(n) is cst.Attribute and n.attr.value in attrs and ctx.scope_of(n) is scope:
            d = dotted(n.value)
            if d:
                out.add(d)
    return out


def _enclosing_class(ctx: FileContext, node: cst.CSTNode) -> cst.ClassDef | None:
    return next((a for a in ctx.ancestors(node) if isinstance(a, cst.ClassDef)), None)


def _class_methods(cls: cst.ClassDef) -> dict[str, cst.FunctionDef]:
    body = cls.body.body if isinstance(cls.body, cst.IndentedBlock) else ()
    return {s.name.value: s for s in body if isinstance(s, cst.FunctionDef)}


def _is_false(expr: cst.BaseExpression | None) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "False"


def resolver(ctx: FileContext) -> ModelResolver:
    """The file's :class:`ModelResolver` (``ctx.model_info`` asks it): one per file, so each
    constructor is classified once however many rules ask about the model it builds."""
    return memo(ctx, "model_resolver", ModelResolver)


class ModelResolver:
    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx
        # (id(call), depth) -> from_constructor(call, depth); callers get copies (they adjust
        # ``frozen``/``description`` of what they are given)
        self._constructed: dict[tuple[int, int], ModelInfo] = {}

    # -- entry --------------------------------------------------------------------------
    def info(self, callee: cst.BaseExpression, at: cst.CSTNode, depth: int = 0) -> ModelInfo:
        ctx = self.ctx
        if depth > 8:
            return ModelInfo("unknown", description="too many indirections")
        if isinstance(callee, cst.Call):
            return self.from_constructor(callee, depth)
        qn = ctx.qualname(callee)
        if qn is not None:
            # a TF/Keras API function or class used directly: not a model instance
            return ModelInfo("other", description=qn)
        b = ctx.binding(callee, at)
        name = dotted(callee) or ctx.code(callee)
        if b is None:
            if isinstance(callee, cst.Attribute) and name.startswith("self.") and name.count(".") == 1:
                cls = _enclosing_class(ctx, at)
                if cls is not None and self._method_of(cls, callee.attr.value) is not None:
                    return ModelInfo("other", description=f"`{name}` is a method of class `{cls.name.value}`")
            if loss_like_name(name):
                return ModelInfo("other", description=f"`{name}` computes a loss or metric")
            return ModelInfo("unknown", description=f"`{name}` is not defined in this file")
        if b.kind == "param":
            if name == "self":  # `self(x)` in a method: the enclosing class
                cls = _enclosing_class(ctx, at)
                if cls is not None:
                    return self.local_class(cls, depth + 1)
            if loss_like_name(name):
                return ModelInfo("other", description=f"`{name}` computes a loss or metric")
            return self.parameter(b, name, depth)
        if b.kind == "import":
            return self.imported(name, depth)
        if b.kind == "def":
            return ModelInfo("other", description=f"`{name}` is a function")
        if b.kind == "class":
            return ModelInfo("other", description=f"`{name}` is a class")
        if b.value is None or b.kind in ("for", "unpack", "augassign"):
            return ModelInfo("unknown", description=f"`{name}` is bound by {b.kind}")
        info = self.info(b.value, b.node, depth + 1)
        if info.kind in ("model", "layer") and self._frozen_by_assignment(name):
            info.frozen = True
        return info

    def _method_of(self, cls: cst.ClassDef, name: str) -> cst.FunctionDef | None:
        m = _class_methods(cls).get(name)
        if m is not None:
            return m
        for base in cls.bases:
            if isinstance(base.value, cst.Name):
                local = self.ctx.classes.get(base.value.value)
                if local is not None and local is not cls:
                    m = _class_methods(local).get(name)
                    if m is not None:
                        return m
        return None

    def _frozen_by_assignment(self, name: str) -> bool:
        """``name.trainable = False`` somewhere in the file (frozen fine-tuning)."""
        return f"{name}.trainable" in self.ctx._false_assigned

    # -- parameters through call sites --------------------------------------------------------
    def parameter(self, b: Binding, name: str, depth: int) -> ModelInfo:
        ctx = self.ctx
        fn = b.scope
        unknown = ModelInfo("unknown", description=f"`{name}` is a function parameter")
        if not isinstance(fn, cst.FunctionDef) or depth > 6:
            return unknown
        sites, skip_self = self._call_sites(fn)
        if not sites:
            return unknown
        infos: list[tuple[cst.Call, ModelInfo]] = []
        for call in sites[:8]:
            bound = bind_arguments(fn, call, skip_self=skip_self)
            if not bound.exact:
                return unknown
            arg = bound.one(b.name)
            if arg is None or (isinstance(arg, cst.Name) and arg.value == "None"):
                continue  # not passed, no default (or None): nothing this call site shows
            infos.append((call, self.info(arg, fn if b.name in bound.defaulted else call, depth + 1)))
        if not infos:
            return unknown
        for call, info in infos:
            if info.kind == "unknown":
                info.description = f"{unknown.description} bound at line {ctx.line(call)} to {info.description}"
                return info
        models = [i for _, i in infos if i.kind in ("model", "layer")]
        if not models:
            first = infos[0][1]
            return ModelInfo("other", description=first.description)
        call0, first = next((c, i) for c, i in infos if i.kind in ("model", "layer"))
        out = ModelInfo(
            "model" if any(i.kind == "model" for i in models) else "layer",
            batch_norm=any(i.batch_norm for i in models),
            dropout=any(i.dropout for i in models),
            non_trainable=any(i.non_trainable for i in models),
            description=first.description
            if "passed at line" in first.description
            else f"{first.description}, passed at line {ctx.line(call0)}",
            layers=first.layers,
            unseen=[u for i in models for u in i.unseen],
        )
        sensitive = [i for i in models if i.training_sensitive]
        out.frozen = bool(sensitive) and all(i.frozen for i in sensitive)
        return out

    def _call_sites(self, fn: cst.FunctionDef) -> tuple[list[cst.Call], bool]:
        """Calls of ``fn`` in the file: ``f(...)``; ``Cls(...)`` for ``__init__``; ``self.m(...)``
        for a method. Second value: the first parameter (self) is not passed explicitly."""
        ctx = self.ctx
        owner = ctx.scope_of(fn)
        name = fn.name.value
        out: list[cst.Call] = []
        if isinstance(owner, cst.ClassDef):
            if name == "__init__":
                for c in ctx.calls_named(owner.name.value):
                    if isinstance(c.func, cst.Name):
                        b = ctx.binding(c.func, c)
                        if b is not None and b.node is owner:
                            out.append(c)
                return out, True
            for c in ctx.calls_named(name):
                f = c.func
                is_self = isinstance(f, cst.Attribute) and isinstance(f.value, cst.Name) and f.value.value == "self"
                if is_self and ctx.contains(owner, c):
                    out.append(c)
            return out, True
        for c in ctx.calls_named(name):
            if isinstance(c.func, cst.Name):
                b = ctx.binding(c.func, c)
                if b is not None and b.node is fn:
                    out.append(c)
        return out, False

    # -- imports from sibling modules -------------------------------------------------------
    def imported(self, name: str, depth: int, *, call: cst.Call | None = None) -> ModelInfo:
        """``name`` (or ``name(...)`` when ``call``) where ``name`` comes from an import."""
        from tflint_grad.analysis import siblings

        ctx = self.ctx
        root = name.split(".")[0]
        full = ctx.imports.get(root)
        unknown = ModelInfo("unknown", description=f"`{name}` is imported from another module")
        if full is None:
            return unknown
        target = full + name[len(root) :]
        found = siblings.resolve(ctx, target)
        if found is None:
            return unknown
        sib, attr = found
        resolver = ModelResolver(sib)
        cls = sib.classes.get(attr)
        if cls is not None:
            if call is None:
                return ModelInfo("other", description=f"`{name}` is a class")
            info = resolver.local_class(cls, depth + 1)
            info.description += f" (from {sib.path.rsplit('/', 1)[-1]})"
            return info
        fns = sib.functions.get(attr)
        if fns:
            if call is None:
                return ModelInfo("other", description=f"`{name}` is a function")
            return resolver.local_function(fns[-1], depth + 1)
        return unknown

    # -- constructors -------------------------------------------------------------------
    def from_constructor(self, call: cst.Call, depth: int) -> ModelInfo:
        key = (id(call), depth)
        info = self._constructed.get(key)
        if info is None:
            info = self._constructed[key] = self._from_constructor(call, depth)
        return replace(info, layers=list(info.layers), unseen=list(info.unseen))

    def _from_constructor(self, call: cst.Call, depth: int) -> ModelInfo:
        ctx = self.ctx
        qn = ctx.call_name(call)
        if qn is not None:
            last = qn.split(".")[-1]
            if qn.startswith("keras.layers.") or qn.startswith("keras.Layer"):
                info = ModelInfo("layer", description=f"a `{last}` layer", layers=[last])
                self._classify_layer(call, last, info)
                return info
            if qn in tfapi.names("layers", "sequential_models"):
                return self.sequential(call, depth)
            if qn in tfapi.names("layers", "functional_models"):
                return self.functional(call, depth)
            if qn.startswith("keras.applications.") and last[:1].isupper():
                has_bn = last not in tfapi.names("layers", "applications_without_bn")
                return ModelInfo(
                    "model",
                    batch_norm=has_bn,
                    non_trainable=has_bn,
                    description=f"`{last}` from keras.applications",
                    layers=[last],
                )
            if qn in tfapi.names("layers", "model_loaders"):
                return ModelInfo("unknown", description="a model loaded from disk")
            return ModelInfo("other", description=qn)
        func = call.func
        if isinstance(func, cst.Name):
            cls = ctx.classes.get(func.value)
            b = ctx.binding(func, call)
            if cls is not None and (b is None or b.kind == "class"):
                return self.local_class(cls, depth)
            if b is not None and b.kind == "def":
                return self.local_function(b.node, depth)  # type: ignore[arg-type]
            if b is not None and b.kind == "import":
                return self.imported(func.value, depth, call=call)
        if isinstance(func, cst.Attribute):
            d = dotted(func)
            if d and not d.startswith("self."):
                root = d.split(".")[0]
                if root in ctx.imports:
                    return self.imported(d, depth, call=call)
        if isinstance(func, cst.Call):
            # Model(...)(x) returns a tensor, not a model
            return ModelInfo("other", description="result of calling a model")
        return ModelInfo("unknown", description=f"`{ctx.code(func)}(...)` is not defined in this file")

    def _classify_layer(self, call: cst.Call, cls_name: str, info: ModelInfo) -> None:
        if cls_name in tfapi.names("layers", "batch_norm_classes"):
            info.batch_norm = True
            info.non_trainable = True
            arg = get_arg(call, "trainable")
            if arg is not None and _is_false(arg.value):
                info.frozen = True
        elif cls_name in tfapi.names("layers", "dropout_classes"):
            info.dropout = True

    def _merge(self, info: ModelInfo, calls: Iterable[cst.Call], depth: int) -> None:
        bn_frozen: list[bool] = []
        for c in calls:
            sub = self.from_constructor(c, depth + 1) if not isinstance(c.func, cst.Call) else None
            if sub is None or sub.kind == "other":
                continue
            if sub.kind == "unknown":
                d = sub.description
                if "` is " in d:  # "`hub.KerasLayer` is imported from another module" -> a noun phrase
                    name, rest = d.split("` is ", 1)
                    d = f"{name}` ({rest})"
                info.unseen.append(d)
                continue
            if sub.batch_norm and not sub.frozen:
                # `base = MobileNetV2(...)`; `base.trainable = False`; Sequential([base, ...])
                stmt = self.ctx.statement_of(c)
                if isinstance(stmt, cst.Assign) and stmt.value is c and len(stmt.targets) == 1:
                    target = dotted(stmt.targets[0].target)
                    if target and self._frozen_by_assignment(target):
                        sub.frozen = True
            info.layers.extend(sub.layers or ([sub.description] if sub.kind == "model" else []))
            if sub.batch_norm:
                info.batch_norm = True
                bn_frozen.append(sub.frozen)
            info.dropout = info.dropout or sub.dropout
            info.non_trainable = info.non_trainable or sub.non_trainable
            info.unseen.extend(sub.unseen)
        if bn_frozen and all(bn_frozen) and not info.dropout:
            info.frozen = True

    def _is_constructor(self, n: cst.Call, exclude: cst.ClassDef | None = None) -> bool:
        """A call that may build a layer or model: a Keras layer/application/model, a class or
        helper function of this file, or a name imported from a non-TF module."""
        ctx = self.ctx
        qn = ctx.call_name(n)
        if qn is not None:
            return (
                qn.startswith("keras.layers.")
                or qn.startswith("keras.applications.")
                or qn in tfapi.names("layers", "model_constructors")
            )
        f = n.func
        if isinstance(f, cst.Name):
            if exclude is not None and f.value == exclude.name.value:
                return False
            b = ctx.binding(f, n)
            if b is None:
                return f.value in ctx.classes
            return b.kind in ("class", "def", "import")
        if isinstance(f, cst.Attribute):
            d = dotted(f)
            return bool(d and not d.startswith("self.") and d.split(".")[0] in ctx.imports)
        return False

    def sequential(self, call: cst.Call, depth: int) -> ModelInfo:
        info = ModelInfo("model", description="a `Sequential` model")
        # model.add(...) on the bound name, before the model is used (notebook cells run in order)
        listing = sequential_layers(self.ctx, call)
        self._merge(info, [v for v in listing.layers if isinstance(v, cst.Call)], depth)
        return info

    def functional(self, call: cst.Call, depth: int) -> ModelInfo:
        """``keras.Model(inputs, outputs)``: the layers on the path to its outputs (the
        statements the outputs depend on), including a model whose tensors it wraps
        (``keras.Model([vgg.input], [vgg.get_layer(n).output ...])``)."""
        ctx = self.ctx
        info = ModelInfo("model", description="a functional `Model`")
        outputs = get_arg(call, "outputs", 1)
        if outputs is None:
            return ModelInfo("unknown", description="a functional `Model` whose outputs are not shown")
        _, reached = dependencies(ctx, outputs.value, budget=3000)
        roots: list[cst.CSTNode] = [outputs.value]
        stop = ctx.index[call]
        for n in ctx.nodes[:stop]:
            if id(n) in reached and not isinstance(n, (cst.FunctionDef, cst.ClassDef)):
                roots.append(n)
        calls: list[cst.Call] = []
        seen: set[int] = set()
        for r in roots:
            for c in ctx.calls_in(r):
                if id(c) not in seen and c is not call and self._is_constructor(c):
                    seen.add(id(c))
                    calls.append(c)
        self._merge(info, calls, depth)
        return info

    def local_class(self, cls: cst.ClassDef, depth: int) -> ModelInfo:
        ctx = self.ctx
        bases = [ctx.qualname(b.value) for b in cls.bases]
        is_keras = any(b and b.startswith("keras.") for b in bases)
        local_bases = [ctx.classes.get(b.value.value) for b in cls.bases if isinstance(b.value, cst.Name)]
        kind = "model" if is_keras or any(local_bases) else "other"
        what = "" if kind == "model" else " (no Keras training mode)"
        info = ModelInfo(kind, description=f"class `{cls.name.value}`{what}")
        if depth > 6:
            info.unseen.append("too many indirections")
            return info
        calls = []
        for n in ctx.calls_in(cls):
            if self._is_constructor(n, exclude=cls):
                calls.append(n)
            elif self._non_trainable_variable(n):
                info.non_trainable = True
        for lb in local_bases:
            if lb is not None and lb is not cls:
                sub = self.local_class(lb, depth + 1)
                info.batch_norm |= sub.batch_norm
                info.dropout |= sub.dropout
                info.non_trainable |= sub.non_trainable
                info.unseen.extend(sub.unseen)
                if sub.kind == "model":
                    info.kind = "model"
        self._merge(info, calls, depth)
        if info.kind == "other" and info.training_sensitive:
            info.kind = "model"
        return info

    def _non_trainable_variable(self, n: cst.Call) -> bool:
        """``tf.Variable(..., trainable=False)`` / ``self.add_weight(..., trainable=False)``."""
        arg = get_arg(n, "trainable")
        if arg is None or not _is_false(arg.value):
            return False
        f = n.func
        last = f.attr.value if isinstance(f, cst.Attribute) else f.value if isinstance(f, cst.Name) else ""
        return last in ("Variable", "add_weight", "get_variable")

    def local_function(self, fn: cst.FunctionDef, depth: int) -> ModelInfo:
        """A model built by a helper function: follow its ``return``."""
        for n in self.ctx.descendants(fn):
            if type(n) is cst.Return and n.value is not None:
                if self.ctx.scope_of(n) is not fn:
                    continue
                v = self.ctx.value_of(n.value, n)
                if isinstance(v, cst.Call):
                    info = self.from_constructor(v, depth + 1)
                    if info.kind != "other":
                        info.description += f" built by `{fn.name.value}()`"
                        return info
        return ModelInfo("other", description=f"function `{fn.name.value}`")


@dataclass
class SequentialLayers:
    """The layers of a ``Sequential(...)`` model as the code writes them."""

    layers: list[cst.BaseExpression | None]  # resolved through assignments: the listed ones, then `.add`ed
    literal: bool  # the `layers` argument, when passed, is a list/tuple without `*` unpacking


def sequential_layers(ctx: FileContext, call: cst.Call, *, this_binding: bool = False) -> SequentialLayers:
    """The layers of the ``Sequential`` model built by ``call``: its ``layers`` list, then the
    ``X.add(layer)`` calls on the name ``X`` it is assigned to. ``this_binding``: only the
    ``.add`` calls after ``call`` on this binding of ``X`` (in its scope, or on ``self.X``),
    not those on a later ``X = Sequential()``."""
    out = SequentialLayers([], True)
    arg = get_arg(call, "layers", 0)
    if arg is not None:
        if isinstance(arg.value, (cst.List, cst.Tuple)):
            for el in arg.value.elements:
                out.literal = out.literal and not isinstance(el, cst.StarredElement)
                out.layers.append(ctx.value_of(el.value, call))
        else:
            out.literal = False
    stmt = ctx.statement_of(call)
    if isinstance(stmt, cst.Assign) and len(stmt.targets) == 1:
        name = dotted(stmt.targets[0].target)
        if name:
            start = ctx.index.get(call, 0)
            for n in ctx._add_calls.get(name, ()):
                if not n.args:
                    continue
                if this_binding and not _adds_to(ctx, n, call, stmt, name, start):
                    continue
                out.layers.append(ctx.value_of(n.args[0].value, n))
    return out


def _adds_to(ctx: FileContext, add: cst.Call, call: cst.Call, stmt: cst.Assign, name: str, start: int) -> bool:
    """``name.add(...)`` comes after ``call`` and adds to the model that ``stmt`` binds."""
    if ctx.index.get(add, 0) <= start:
        return False
    if name.startswith("self."):
        return True
    if ctx.scope_of(add) is not ctx.scope_of(call):
        return False
    rb = ctx.binding(add.func.value, add)  # type: ignore[attr-defined]
    return rb is None or rb.node is stmt
