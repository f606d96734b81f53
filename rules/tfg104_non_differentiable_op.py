from __future__ import annotations

import re
from dataclasses import dataclass

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis import dotted, get_arg, modelish_name, string_value
from tflint_grad.analysis.calls import bind_arguments
from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive, refuted
from tflint_grad.tracer.events import event

_WS = re.compile(r"\s+")

# Flow lattice: a value is differentiable w.r.t. some trainable source (DIFF), of unknown
# provenance (UNKNOWN: never flagged), reaches its trainable sources only through a
# blocking op (BLOCKED), or has no trainable source at all (NONE: data, constants).
DIFF, UNKNOWN, BLOCKED, NONE = "diff", "unknown", "blocked", "none"
_RANK = {DIFF: 3, UNKNOWN: 2, BLOCKED: 1, NONE: 0}


@dataclass(frozen=True)
class Block:
    """One op that cuts the gradient."""

    node: cst.CSTNode
    name: str
    zero: bool = False  # the op's gradient is zero (sign), not None
    leaves: bool = False  # the value leaves TensorFlow (.numpy(), NumPy, float())


@dataclass(frozen=True)
class Flow:
    kind: str
    blocks: tuple[Block, ...] = ()  # for BLOCKED: every op that cuts a path, in the order found


_NONE_F = Flow(NONE)
_DIFF_F = Flow(DIFF)
_UNKNOWN_F = Flow(UNKNOWN)
_MAX_BLOCKS = 8
# The gradient requests whose loss is followed (compile's loss is a function, not a value).
_ROOT_KINDS = ("tape", "tf_gradients", "minimize", "compute_gradients")


def _combine(flows) -> Flow:
    best = _NONE_F
    blocks: list[Block] = []
    for f in flows:
        if f.kind == BLOCKED:
            for b in f.blocks:
                if len(blocks) < _MAX_BLOCKS and all(x.node is not b.node for x in blocks):
                    blocks.append(b)
        if _RANK[f.kind] > _RANK[best.kind]:
            best = f
    if best.kind == BLOCKED and len(blocks) > len(best.blocks):
        return Flow(BLOCKED, tuple(blocks))
    return best


# TF op types that the tracer reports for each blocking API (by the name's last part).
_OP_TYPES = {
    "argmax": ["ArgMax"],
    "arg_max": ["ArgMax"],
    "argmin": ["ArgMin"],
    "arg_min": ["ArgMin"],
    "round": ["Round"],
    "floor": ["Floor"],
    "ceil": ["Ceil"],
    "rint": ["Rint"],
    "sign": ["Sign"],
    "cast": ["Cast"],
    "saturate_cast": ["Cast"],
    "to_int32": ["Cast"],
    "to_int64": ["Cast"],
    "greater": ["Greater"],
    "greater_equal": ["GreaterEqual"],
    "less": ["Less"],
    "less_equal": ["LessEqual"],
    "equal": ["Equal"],
    "not_equal": ["NotEqual"],
    "logical_and": ["LogicalAnd"],
    "logical_or": ["LogicalOr"],
    "logical_not": ["LogicalNot"],
    "py_function": ["EagerPyFunc", "PyFunc"],
    "py_func": ["PyFunc", "EagerPyFunc"],
    "numpy_function": ["PyFunc", "EagerPyFunc"],
    "floordiv": ["FloorDiv"],
    "floor_div": ["FloorDiv"],
    "floor_divide": ["FloorDiv"],
    "truncatediv": ["TruncateDiv"],
    "count_nonzero": ["NotEqual", "Cast"],
    "is_nan": ["IsNan"],
    "is_inf": ["IsInf"],
    "is_finite": ["IsFinite"],
    "argsort": ["TopKV2"],
    "unique": ["Unique"],
    "bincount": ["Bincount", "DenseBincount"],
    "searchsorted": ["LowerBound", "UpperBound"],
}
_COMPARE = {
    cst.GreaterThan: ("`>`", "Greater"),
    cst.GreaterThanEqual: ("`>=`", "GreaterEqual"),
    cst.LessThan: ("`<`", "Less"),
    cst.LessThanEqual: ("`<=`", "LessEqual"),
    cst.Equal: ("`==`", "Equal"),
    cst.NotEqual: ("`!=`", "NotEqual"),
}
_NEUTRAL_BUILTINS = {"len", "range", "isinstance", "print", "str", "repr", "type", "hasattr", "getattr", "enumerate"}
_PASS_BUILTINS = {
    "sum",
    "max",
    "min",
    "abs",
    "list",
    "tuple",
    "zip",
    "map",
    "sorted",
    "reversed",
    "pow",
    "iter",
    "next",
    "dict",
    "set",
}
_META_ATTRS = {"shape", "dtype", "ndim", "name", "device", "graph", "op"}
_MAX_CALL_DEPTH = 4
_BUDGET = 6000
# Nested flow() calls (expression nesting + assignment hops); ~5 Python frames each, so
# this stays well under the default recursion limit of 1000.
_MAX_DEPTH = 120


class NonDifferentiableOp(Rule):
    """The loss reaches the trainable variables only through an op with no (or a zero) gradient.

    ## What it does
    Follows the value passed as the loss to `tape.gradient`, `tf.gradients`,
    `opt.minimize` or `opt.compute_gradients` back through assignments (and through
    functions of the same file it calls) to its trainable sources: model and layer calls,
    `tf.Variable` / `get_variable` variables, TF1 layer functions, the variables of the
    gradient call's list, `tape.watch`ed tensors. Flags the blocking op when every path
    from those sources to the loss passes through `argmax`/`argmin`,
    `round`/`floor`/`ceil`/`rint`, `cast` to an integer or bool dtype, `sign`, a
    comparison (`tf.greater`, or Python `>`/`==` on tensors), floor division, `.numpy()`,
    a NumPy call, `float()`, `model.predict()`, `tf.numpy_function` / `tf.py_func`, or a
    `tf.py_function` whose Python function uses NumPy (over TF ops it is differentiable).

    Not flagged: the op feeds only a metric, or a mask multiplied with a differentiable
    term (`tf.reduce_sum(tf.cast(y > 0, tf.float32) * err)`), a straight-through estimator
    (`x + tf.stop_gradient(tf.round(x) - x)`), and ops on data with no trainable source
    (`tf.sign` of the inputs to compute sequence lengths, seed 002). In a tape, values
    computed outside the tape block are constants to it (TFG103 covers that case).

    ## Why is this bad?
    These ops have no registered gradient (TensorFlow returns `None` for everything
    upstream) or a gradient that is zero almost everywhere (`tf.sign`: silent zeros, no
    warning). The model then never learns: "No gradients provided for any variable", or
    a loss that stays flat.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        pred = tf.argmax(model(x, training=True), axis=1)
        loss = tf.reduce_mean(tf.cast(tf.not_equal(pred, y), tf.float32))
    grads = tape.gradient(loss, model.trainable_variables)
    ```

    Use instead:
    ```python
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = tf.reduce_mean(
            tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    accuracy = tf.reduce_mean(tf.cast(tf.argmax(logits, axis=1) == y, tf.float32))  # metric only
    ```

    ## Confirmation
    Path analysis on the traced graph: the `gradient_call` event's `blocked` entries name
    the blocking op, its type and its source line, and the upstream variables whose
    gradient is None (or all-zero for `sign`). For `.numpy()`/NumPy the graph is cut, so
    every gradient at the call is None. `refuted` when every gradient at the call exists
    and is non-zero.
    """

    code = "TFG104"
    name = "non-differentiable-op"
    severity = "warning"
    requires = ("gradient", "minimize")

    VALID = [
        # the op only feeds a metric
        Valid("""
            import tensorflow as tf
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
                acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))
            grads = tape.gradient(loss, model.trainable_variables)
        """),
        # a mask multiplied with a differentiable term
        Valid("""
            import tensorflow as tf
            def train_step(model, x, y):
                with tf.GradientTape() as tape:
                    out = model(x, training=True)
                    mask = tf.cast(out > 0, tf.float32)
                    loss = tf.reduce_sum(mask * tf.square(out - y))
                return tape.gradient(loss, model.trainable_variables)
        """),
        # tf.py_function over TF ops is differentiable (unlike tf.numpy_function)
        Valid("""
            import tensorflow as tf
            with tf.GradientTape() as tape:
                out = tf.py_function(lambda a: tf.tanh(a) * 2.0, [model(x)], tf.float32)
                loss = tf.reduce_sum(out)
            grads = tape.gradient(loss, model.trainable_variables)
        """),
        # straight-through estimator
        Valid("""
            import tensorflow as tf
            with tf.GradientTape() as tape:
                h = model(x)
                q = h + tf.stop_gradient(tf.round(h) - h)
                loss = tf.reduce_mean(tf.square(q - y))
            grads = tape.gradient(loss, model.trainable_variables)
        """),
        # TF1: tf.sign on placeholder-derived data for sequence lengths (seed 002)
        Valid("""
            import tensorflow as tf
            inputs = tf.placeholder(tf.float32, [None, 75, 30])
            def model(inputs):
                used = tf.sign(tf.reduce_max(tf.abs(inputs), 2))
                length = tf.cast(tf.reduce_sum(used, 1), tf.int32)
                cell = tf.nn.rnn_cell.GRUCell(64)
                output, new_state = tf.nn.dynamic_rnn(cell, inputs, dtype=tf.float32, sequence_length=length)
                output = tf.layers.dense(output, units=2)
                return output * tf.expand_dims(used, -1), new_state
            output, new_state = model(inputs)
            grads = tf.gradients(new_state, tf.trainable_variables())
        """),
        # TF1 compat: labels from argmax of the data, the loss is differentiable
        Valid("""
            import tensorflow.compat.v1 as tf
            x = tf.placeholder(tf.float32, [None, 4])
            y = tf.placeholder(tf.float32, [None, 3])
            W = tf.get_variable("W", [4, 3])
            logits = tf.matmul(x, W)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.argmax(y, 1), logits=logits))
            train_op = tf.train.AdamOptimizer(1e-3).minimize(loss)
            correct = tf.equal(tf.argmax(logits, 1), tf.argmax(y, 1))
            accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))
        """),
        # Keras 3 train_step, casts to float only, .numpy() used for logging after the tape
        Valid("""
            import keras
            import tensorflow as tf
            class Model(keras.Model):
                def train_step(self, data):
                    x, y = data
                    with tf.GradientTape() as tape:
                        y_pred = self(x, training=True)
                        loss = keras.ops.mean(keras.ops.square(keras.ops.cast(y, "float32") - y_pred))
                    grads = tape.gradient(loss, self.trainable_variables)
                    self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
                    print(float(loss.numpy()))
                    return {"loss": loss}
        """),
        # from tensorflow import keras; custom gradient around a rounding op
        Valid("""
            from tensorflow import keras
            import tensorflow as tf
            @tf.custom_gradient
            def round_ste(x):
                def grad(dy):
                    return dy
                return tf.round(x), grad
            with tf.GradientTape() as tape:
                loss = keras.losses.mse(y, round_ste(net(x)))
            grads = tape.gradient(loss, net.trainable_variables)
        """),
        # the blocking op runs outside the tape: a constant to it (not this rule's finding)
        Valid("""
            import tensorflow as tf
            labels = tf.argmax(teacher(x), axis=-1)
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(labels, student(x)))
            grads = tape.gradient(loss, student.trainable_variables)
        """),
    ]
    INVALID = [
        Invalid(
            """
            import tensorflow as tf
            with tf.GradientTape() as tape:
                pred = tf.argmax(model(x, training=True), axis=1)
                loss = tf.reduce_mean(tf.cast(tf.not_equal(pred, y), tf.float32))
            grads = tape.gradient(loss, model.trainable_variables)
            """,
            line=3,
            message="`tf.argmax`",
        ),
        # TF1: rounding before the loss (compat.v1 import)
        Invalid(
            """
            import tensorflow.compat.v1 as tf
            x = tf.placeholder(tf.float32, [None, 1])
            y = tf.placeholder(tf.float32, [None, 1])
            W = tf.get_variable("W", [1, 1])
            pred = tf.round(tf.matmul(x, W))
            loss = tf.reduce_mean(tf.square(pred - y))
            train_op = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
            """,
            line=5,
            message="`tf.round`",
        ),
        # tf.sign: a silent zero gradient
        Invalid(
            """
            import tensorflow as tf
            W = tf.Variable(tf.random.normal([3, 1]))
            def step(x, y):
                with tf.GradientTape() as tape:
                    out = tf.sign(tf.matmul(x, W))
                    loss = tf.reduce_mean(tf.square(out - y))
                return tape.gradient(loss, [W])
            """,
            line=5,
            message="zero",
        ),
        # argmax inside a loss method called from the tape (`self.accuracy_loss(...)`)
        Invalid(
            """
            import tensorflow as tf
            class Trainer:
                def __init__(self):
                    self.model = tf.keras.Sequential([tf.keras.layers.Dense(3)])
                def accuracy_loss(self, logits, labels):
                    pred = tf.argmax(logits, axis=1)
                    return tf.reduce_mean(tf.cast(tf.equal(pred, labels), tf.float32))
                def step(self, x, y):
                    with tf.GradientTape() as tape:
                        loss = self.accuracy_loss(self.model(x, training=True), y)
                    return tape.gradient(loss, self.model.trainable_variables)
            """,
            line=6,
            message="`tf.argmax`",
        ),
        # cast to int, standalone keras, in a helper function of the same file
        Invalid(
            """
            import keras
            import tensorflow as tf
            model = keras.Sequential([keras.layers.Dense(1)])
            def quantized_loss(pred, target):
                q = tf.cast(pred * 10, tf.int32)
                return tf.reduce_mean(tf.square(tf.cast(q, tf.float32) - target))
            with tf.GradientTape() as tape:
                loss = quantized_loss(model(x), y)
            grads = tape.gradient(loss, model.trainable_variables)
            """,
            line=5,
            message="int32",
        ),
        # .numpy() inside the tape (from tensorflow import keras)
        Invalid(
            """
            from tensorflow import keras
            import numpy as np
            import tensorflow as tf
            model = keras.Sequential([keras.layers.Dense(1)])
            with tf.GradientTape() as tape:
                pred = model(x).numpy()
                loss = tf.reduce_mean((pred - y) ** 2)
            grads = tape.gradient(loss, model.trainable_variables)
            """,
            line=6,
            message="`.numpy()`",
        ),
        # Python comparison on tensors, then NumPy
        Invalid(
            """
            import numpy as np
            import tensorflow as tf
            with tf.GradientTape() as tape:
                hits = tf.cast(model(x) > 0.5, tf.float32)
                loss = 1.0 - tf.reduce_mean(hits * y)
            grads = tape.gradient(loss, model.trainable_variables)
            """,
            line=4,
            message="comparison `>`",
        ),
        # a Python function that runs NumPy, wrapped as an op
        Invalid(
            """
            import numpy as np
            import tensorflow as tf
            def smooth(a):
                return np.clip(a, 0.0, 1.0)
            def step(model, x, y):
                with tf.GradientTape() as tape:
                    p = tf.numpy_function(smooth, [model(x, training=True)], tf.float32)
                    q = tf.py_function(smooth, [model(x, training=True)], tf.float32)
                    loss = tf.reduce_mean(tf.square(p - y) + tf.square(q - y))
                return tape.gradient(loss, model.trainable_variables)
            """,
            line=7,
            message="`tf.numpy_function`",
            count=2,
        ),
        Invalid(
            """
            import numpy as np
            import tensorflow as tf
            with tf.GradientTape() as tape:
                loss = tf.constant(np.mean(np.square(model(x) - y)))
            grads = tape.gradient(loss, model.trainable_variables)
            """,
            line=4,
            message="NumPy",
        ),
    ]

    def __init__(self, ctx, options=None) -> None:
        super().__init__(ctx, options)
        self._seen: set[int] = set()
        self._callee_cache: dict[tuple, str] = {}
        self._returns: dict[int, list[cst.Return]] = {}
        self._watched_in: dict[tuple[int, str], frozenset[str]] = {}  # tape -> its tape.watch(...) names

    # -- roots ------------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        root = self._root(node)
        if root is None:
            return
        api, target, var_list, tape = root
        sources = self._source_names(var_list, node)
        tape_scope = None
        if tape is not None and self.ctx.tapes_named(tape, self.ctx.scope_of(node)):
            tape_scope = self.ctx.scope_of(node)
            sources |= self._watched(tape, tape_scope)
        analyzer = _Analyzer(self, sources, tape_scope, tape)
        flow = analyzer.flow(target, ())
        if flow.kind != BLOCKED:
            return
        ctx = self.ctx
        call_line = None
        for block in flow.blocks:
            if id(block.node) in self._seen:
                continue
            self._seen.add(id(block.node))
            if call_line is None:
                call_line = ctx.line(node)
            loss = _WS.sub(" ", ctx.code(target)).strip()
            loss = loss if len(loss) <= 40 else loss[:37] + "..."
            effect = (
                "their gradients are all zero (no error, no warning)"
                if block.zero
                else "every upstream gradient is None"
            )
            self.report(
                block.node,
                f"{block.name} blocks the gradient: the loss `{loss}` passed to `{api}` (line {call_line}) "
                f"depends on the trainable variables only through {'it' if len(flow.blocks) == 1 else 'such ops'}, "
                f"so {effect}; use a differentiable surrogate (softmax/sigmoid instead of argmax/thresholds), "
                "keep the op for metrics only, or use a straight-through estimator `x + tf.stop_gradient(f(x) - x)`",
                data={
                    "call_line": call_line,
                    "op_line": ctx.line(block.node),
                    "op": block.name,
                    "op_types": self._op_types(block),
                    "zero": block.zero,
                    "leaves_graph": block.leaves,
                },
            )

    def _root(self, call: cst.Call):
        """(api, loss expression, var list expression, tape name) of a gradient call
        (``ctx.gradient_calls``: tape.gradient, tf.gradients, minimize, compute_gradients)."""
        ctx = self.ctx
        gc = ctx.gradient_call(call)
        if gc is None or gc.target is None or gc.kind not in _ROOT_KINDS:
            return None
        func = call.func
        if gc.kind == "tape":
            tape = None
            if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name):
                tape = func.value.value
            return (f"{ctx.code(func.value)}.gradient", gc.target, gc.sources, tape)  # type: ignore[attr-defined]
        api = "tf.gradients" if gc.kind == "tf_gradients" else gc.kind
        return (api, gc.target, gc.sources, None)

    def _source_names(self, var_list, at) -> set[str]:
        """Dotted names listed in the gradient call's variable list (``[W, b]``)."""
        out: set[str] = set()
        expr = var_list
        if isinstance(expr, (cst.Name, cst.Attribute)):
            d = dotted(expr)
            if d:
                out.add(d)
            b = self.ctx.binding(expr, at)
            if b is not None and b.kind in ("assign", "annassign") and isinstance(b.value, (cst.List, cst.Tuple)):
                expr = b.value
        if isinstance(expr, (cst.List, cst.Tuple)):
            for el in expr.elements:
                d = dotted(el.value)
                if d:
                    out.add(d)
        return out

    def _watched(self, tape: str, scope: cst.CSTNode) -> frozenset[str]:
        """The names the blocks of tape ``tape`` in ``scope`` watch (once per tape: a file with
        many tapes of one name asks for them once per gradient call)."""
        known = self._watched_in.get((id(scope), tape))
        if known is not None:
            return known
        out: set[str] = set()
        for block in self.ctx.tapes_named(tape, scope):
            for c in self.ctx.calls_in(block.with_node.body):
                f = c.func
                if isinstance(f, cst.Attribute) and f.attr.value == "watch" and c.args:
                    d = dotted(c.args[0].value)
                    if d:
                        out.add(d)
        known = self._watched_in[(id(scope), tape)] = frozenset(out)
        return known

    @staticmethod
    def _op_types(block: Block) -> list[str]:
        if block.name.startswith("comparison"):
            return [t for sym, t in _COMPARE.values() if sym in block.name]
        if "`//" in block.name:
            return ["FloorDiv"]
        if block.leaves:
            return [".numpy()"]  # the tracer's name for a value leaving TensorFlow eagerly
        for part in re.split(r"[.(`\s]", block.name):
            if part in _OP_TYPES:
                return _OP_TYPES[part]
        return []

    # -- shared caches used by the analyzer ---------------------------------------------
    def callee_kind(self, func: cst.BaseExpression, at: cst.CSTNode) -> str:
        """'model' (a model/layer/self), 'unknown', or 'other' for the object a call calls."""
        ctx = self.ctx
        b = ctx.binding(func, at)
        name = dotted(func) or ""
        key = (name, id(b.node) if b is not None else None, b.index if b is not None else None)
        got = self._callee_cache.get(key)
        if got is not None:
            return got
        if name == "self":
            kind = "model"
        else:
            info = ctx.model_info(func, at)
            if info.kind in ("model", "layer"):
                kind = "model"
            elif info.kind == "unknown":
                kind = "model" if modelish_name(name) else "unknown"
            else:
                kind = "other"
                v = ctx.value_of(func, at)
                if isinstance(v, cst.Call) and isinstance(v.func, cst.Name) and v.func.value in ctx.classes:
                    kind = "unknown"  # an instance of a local class: may hold variables
        self._callee_cache[key] = kind
        return kind

    def returns_of(self, fn: cst.FunctionDef) -> list[cst.Return]:
        got = self._returns.get(id(fn))
        if got is None:
            ctx = self.ctx
            got = [
                n
                for n in ctx.descendants(fn)
                if type(n) is cst.Return and n.value is not None and ctx.scope_of(n) is fn
            ]
            self._returns[id(fn)] = got
        return got

    # -- confirmation -------------------------------------------------------------------
    OBSERVES = ("gradient_call",)
    CONFIRMS = [
        Traced(
            (
                event(
                    "gradient_call",
                    12,
                    variables=[{"name": "q", "grad": "none"}],
                    blocked=[{"variable": "q", "op": "ArgMax", "op_type": "ArgMax", "line": 10}],
                ),
            ),
            evidence="blocked by op `ArgMax` (ArgMax) at line 10: 1 upstream variable(s) get a None gradient",
            data={"call_line": 12, "op_line": 10, "op": "tf.argmax", "op_types": ["ArgMax"]},
        ),
        Traced(
            (event("gradient_call", 12, variables=[{"name": "w", "grad": "none"}], blocked=[]),),
            evidence="the value left TensorFlow at .numpy()",
            data={"call_line": 12, "op_line": 10, "op": ".numpy()", "op_types": [], "leaves_graph": True},
        ),
    ]
    REFUTES = [
        Traced(
            (event("gradient_call", 12, variables=[{"name": "w", "grad": "ok"}], blocked=[]),),
            evidence="all 1 gradients at line 12 exist and are non-zero",
            data={"call_line": 12, "op_line": 10, "op": "tf.round", "op_types": ["Round"]},
        )
    ]
    INCONCLUSIVE = [
        Traced(  # a None gradient blocked elsewhere, by another kind of op: not this op's doing
            (
                event(
                    "gradient_call",
                    12,
                    variables=[{"name": "w", "grad": "none"}, {"name": "v", "grad": "ok"}],
                    blocked=[{"variable": "w", "op": "Cast", "op_type": "Cast", "line": 5}],
                ),
            ),
            evidence="the flagged op",
            data={"call_line": 12, "op_line": 10, "op": "tf.round", "op_types": ["Round"]},
        ),
        Traced((), evidence="no gradient call was recorded at line 12", data={"call_line": 12, "op_line": 10}),
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        data = finding.data or {}
        line = data.get("call_line")
        calls = trace.events_at("gradient_call", line) if line is not None else []
        if not calls:
            return inconclusive(f"no gradient call was recorded at line {line}")
        ev = calls[0]
        variables = [v for v in (ev.get("variables") or []) if isinstance(v, dict)]
        blocked = [b for b in (ev.get("blocked") or []) if isinstance(b, dict)]
        op_line = data.get("op_line", data.get("source_line", finding.line))
        types = set(data.get("op_types") or [])
        # the flagged op itself (its line), else an op of its type whose line the trace could not name
        match = [b for b in blocked if b.get("line") == op_line] or [
            b for b in blocked if b.get("op_type") in types and b.get("line") in (None, op_line)
        ]
        if match:
            b0 = match[0]
            names = sorted({str(b.get("variable")) for b in match})
            grad = {v.get("name"): v.get("grad") for v in variables}
            what = "zero" if all(grad.get(n) == "zero" for n in names) else "None"
            shown = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
            return confirmed(
                f"blocked by op `{b0.get('op')}` ({b0.get('op_type')}) at line {b0.get('line')}: "
                f"{len(names)} upstream variable(s) get a {what} gradient at line {ev.get('line')}: {shown}"
            )
        if not variables:
            return inconclusive(f"the gradient call at line {ev.get('line')} recorded no variables")
        if data.get("leaves_graph") and all(v.get("grad") == "none" for v in variables):
            return confirmed(
                f"all {len(variables)} gradients at line {ev.get('line')} are None: the value left TensorFlow "
                f"at {data.get('op')} (line {op_line})"
            )
        if all(v.get("grad") == "ok" for v in variables):
            return refuted(f"all {len(variables)} gradients at line {ev.get('line')} exist and are non-zero")
        return inconclusive(
            f"some gradients at line {ev.get('line')} are None or zero, but the trace did not attribute them to "
            f"the flagged op at line {op_line}"
        )


class _Analyzer:
    """Data flow from trainable sources to one loss expression (see the rule's docs)."""

    def __init__(self, rule: NonDifferentiableOp, sources: set[str], tape_scope, tape: str | None) -> None:
        self.rule = rule
        self.ctx = rule.ctx
        self.sources = sources
        self.tape_scope = tape_scope
        self.tape = tape
        self.memo: dict[int, Flow] = {}
        self.budget = _BUDGET
        self.depth = 0

    # env: tuple of frames, innermost last; a frame is ("comp", {name: Flow}) or
    # ("call", FunctionDef, {param: Flow}).
    def flow(self, node: cst.CSTNode | None, env: tuple) -> Flow:
        if node is None:
            return _NONE_F
        self.budget -= 1
        if self.budget <= 0 or self.depth >= _MAX_DEPTH:
            return _UNKNOWN_F  # too big or too deep to analyze: assume nothing
        self.depth += 1
        try:
            return self._flow_memo(node, env)
        finally:
            self.depth -= 1

    def _flow_memo(self, node: cst.CSTNode, env: tuple) -> Flow:
        if not env:
            key = id(node)
            got = self.memo.get(key)
            if got is not None:
                return got
            self.memo[key] = _NONE_F  # cycle guard
            result = self._flow(node, env)
            self.memo[key] = result
            return result
        return self._flow(node, env)

    def _all(self, nodes, env) -> Flow:
        return _combine(self.flow(n, env) for n in nodes)

    def _block(self, op: cst.CSTNode, name: str, inp: Flow, zero: bool = False, leaves: bool = False) -> Flow:
        if inp.kind == DIFF:
            return Flow(BLOCKED, (Block(op, name, zero, leaves),))
        return inp

    def _flow(self, node: cst.CSTNode, env: tuple) -> Flow:
        t = type(node)
        if t is cst.Name:
            return self._name(node, env)
        if t is cst.Attribute:
            return self._attribute(node, env)
        if t is cst.Call:
            return self._call(node, env)
        if t is cst.Subscript:
            return self.flow(node.value, env)
        if t is cst.BinaryOperation:
            inp = self._all((node.left, node.right), env)
            if isinstance(node.operator, cst.FloorDivide):
                return self._block(node, "floor division `//`", inp)
            return inp
        if t is cst.UnaryOperation:
            return self.flow(node.expression, env)
        if t is cst.Comparison:
            inp = self._all([node.left] + [c.comparator for c in node.comparisons], env)
            ops = [_COMPARE.get(type(c.operator)) for c in node.comparisons]
            if any(o is None for o in ops):
                return _NONE_F  # `is`, `in`: Python booleans
            return self._block(node, "comparison " + ops[0][0], inp)
        if t is cst.BooleanOperation:
            return self._all((node.left, node.right), env)
        if t is cst.IfExp:
            return self._all((node.body, node.orelse), env)
        if t in (cst.List, cst.Tuple, cst.Set):
            return self._all([e.value for e in node.elements], env)
        if t is cst.Dict:
            return self._all(
                [e.value for e in node.elements if isinstance(e, (cst.DictElement, cst.StarredDictElement))], env
            )
        if t in (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp):
            return self._comprehension(node, env)
        if t is cst.Lambda:
            return self.flow(node.body, env)
        if t in (cst.NamedExpr, cst.Await):
            return self.flow(getattr(node, "value", None) or getattr(node, "expression", None), env)
        if t is cst.Arg:
            return self.flow(node.value, env)
        return _NONE_F

    def _comprehension(self, node, env) -> Flow:
        mapping: dict[str, Flow] = {}
        frame_env = (*env, ("comp", mapping))
        comp = node.for_in
        while comp is not None:
            it = self.flow(comp.iter, frame_env)
            targets = [comp.target]
            while targets:
                tg = targets.pop()
                if isinstance(tg, cst.Name):
                    mapping[tg.value] = it
                elif isinstance(tg, (cst.Tuple, cst.List)):
                    targets.extend(e.value for e in tg.elements)
                elif isinstance(tg, cst.StarredElement):
                    targets.append(tg.value)
            comp = comp.inner_for_in
        if isinstance(node, cst.DictComp):
            return self._all((node.key, node.value), frame_env)
        return self.flow(node.elt, frame_env)

    # -- names ----------------------------------------------------------------------
    def _lookup_comp(self, name: str, env: tuple) -> Flow | None:
        for frame in reversed(env):
            if frame[0] == "comp" and name in frame[1]:
                return frame[1][name]
        return None

    def _name(self, node: cst.Name, env: tuple) -> Flow:
        name = node.value
        got = self._lookup_comp(name, env)
        if got is not None:
            return got
        if name in self.sources:
            return _DIFF_F
        b = self.ctx.binding(node)
        if b is None:
            return _NONE_F
        return self._binding(b, name, env)

    def _binding(self, b, name: str, env: tuple) -> Flow:
        ctx = self.ctx
        kind = b.kind
        if kind == "param":
            for frame in reversed(env):
                if frame[0] == "call" and frame[1] is b.scope:
                    return frame[2].get(name, _NONE_F)
            return _UNKNOWN_F if name == "self" else _NONE_F
        if kind in ("import", "class", "with"):
            return _NONE_F
        if kind == "def":
            if isinstance(b.node, cst.FunctionDef):
                return self._invoke(b.node, None, env, skip_self=False)
            return _NONE_F
        if kind == "for":
            return self.flow(b.value, env)
        stmt = b.node
        if self._outside_tape(stmt, env) and not self._holds_variables(b.value):
            return _NONE_F
        if kind == "augassign":
            if not isinstance(stmt, cst.AugAssign):
                return _UNKNOWN_F
            prev_flow = _NONE_F
            prev = ctx.binding(stmt.target, stmt) if isinstance(stmt.target, (cst.Name, cst.Attribute)) else None
            if prev is not None and prev is not b:
                prev_flow = self._binding(prev, name, env)
            inp = _combine((prev_flow, self.flow(stmt.value, env)))
            if isinstance(stmt.operator, cst.FloorDivideAssign):
                return self._block(stmt, "floor division `//=`", inp)
            return inp
        if b.value is None:
            return _UNKNOWN_F
        return self.flow(b.value, env)

    def _outside_tape(self, stmt: cst.CSTNode, env: tuple) -> bool:
        """A binding in the tape's own scope that runs outside every block of the tape."""
        if self.tape_scope is None or self.tape is None or any(f[0] == "call" for f in env):
            return False
        ctx = self.ctx
        if ctx.scope_of(stmt) is not self.tape_scope:
            return False
        if stmt not in ctx.index:
            return False
        return not ctx.in_tape_body(stmt, self.tape, self.tape_scope)

    def _holds_variables(self, value) -> bool:
        """A value that is (or holds) trainable variables wherever it is created."""
        if isinstance(value, cst.Attribute):
            return value.attr.value in tfapi.names("gradients", "trainable_attrs") | tfapi.names(
                "gradients", "all_variable_attrs"
            )
        if not isinstance(value, cst.Call):
            return False
        qn = self.ctx.call_name(value)
        if qn is not None:
            return qn in tfapi.names("graph", "variable_constructors") or self._trainable_api(qn)
        f = value.func
        if isinstance(f, cst.Attribute) and f.attr.value in tfapi.names("ops", "variable_methods"):
            return True
        return isinstance(f, cst.Name) and f.value in self.ctx.classes

    @staticmethod
    def _trainable_api(qn: str) -> bool:
        return any(qn.startswith(p) for p in tfapi.names("ops", "trainable_call_prefixes"))

    def _attribute(self, node: cst.Attribute, env: tuple) -> Flow:
        attr = node.attr.value
        if (
            attr in tfapi.names("gradients", "trainable_attrs")
            or attr in tfapi.names("gradients", "all_variable_attrs")
            or attr == "losses"
        ):
            return _DIFF_F
        if attr in _META_ATTRS:
            return _NONE_F
        d = dotted(node)
        if d is not None:
            if d in self.sources:
                return _DIFF_F
            if self.ctx.qualname(node) is not None:
                return _NONE_F  # a module constant: tf.float32, np.pi
            if d.startswith("self."):
                b = self.ctx.binding(node)
                if b is None:
                    return _UNKNOWN_F
                return self._binding(b, d, env)
        return self.flow(node.value, env)

    # -- calls ----------------------------------------------------------------------
    def _args(self, call: cst.Call) -> list[cst.BaseExpression]:
        return [a.value for a in call.args]

    def _call(self, node: cst.Call, env: tuple) -> Flow:
        ctx = self.ctx
        func = node.func
        qn = ctx.call_name(node)
        if qn is not None:
            return self._api_call(node, qn, env)
        if isinstance(func, cst.Name):
            b = ctx.binding(func, node)
            if b is None:
                if func.value in tfapi.names("ops", "python_scalar_builtins"):
                    return self._block(node, f"`{func.value}()`", self._all(self._args(node), env), leaves=True)
                if func.value in _NEUTRAL_BUILTINS:
                    return _NONE_F
            if b is not None and b.kind == "def" and isinstance(b.node, cst.FunctionDef):
                return self._invoke(b.node, node, env, skip_self=False)
            if b is None and func.value in _PASS_BUILTINS:
                return self._all(self._args(node), env)
            if b is not None and b.kind == "class":
                if ctx.model_info(node, node).kind in ("model", "layer"):
                    return _DIFF_F
                args = self._all(self._args(node), env)
                return _UNKNOWN_F if args.kind == NONE else args
            return self._object_call(func, node, env)
        if isinstance(func, cst.Attribute):
            method = func.attr.value
            obj = func.value
            if method in tfapi.names("ops", "leave_graph_methods") and (not node.args or method == "eval"):
                return self._block(node, f"`.{method}()`", self.flow(obj, env), leaves=True)
            if method in tfapi.names("ops", "variable_methods"):
                return _DIFF_F
            d = dotted(func)
            if d and d.startswith("self."):
                if ctx.binding(func, node) is not None:
                    return self._object_call(func, node, env)
                if isinstance(obj, cst.Name) and obj.value == "self":
                    fn = self._method(node, method)
                    if fn is not None:
                        return self._invoke(fn, node, env, skip_self=True)
                    return _UNKNOWN_F  # inherited: self.compute_loss(...), self.compiled_loss(...)
            if isinstance(obj, (cst.Name, cst.Attribute, cst.Call)) and self._is_model(obj, node, env):
                if method in tfapi.names("ops", "numpy_model_methods"):
                    return self._block(
                        node, f"`{self._short(obj)}.{method}()` (it returns NumPy)", _DIFF_F, leaves=True
                    )
                return _DIFF_F
            if isinstance(obj, cst.Name):
                ob = ctx.binding(obj, node)
                if ob is None or ob.kind == "import":
                    return _UNKNOWN_F  # a helper from another module, an undefined object
            return _combine([self.flow(obj, env)] + [self.flow(a, env) for a in self._args(node)])
        # Dense(3)(x), self.layers[0](x), (lambda v: v)(x)
        f = self.flow(func, env)
        if f.kind in (DIFF, UNKNOWN):
            return f
        return self._all(self._args(node), env)

    def _short(self, node: cst.CSTNode) -> str:
        text = _WS.sub(" ", self.ctx.code(node)).strip()
        return text if len(text) <= 30 else text[:27] + "..."

    def _is_model(self, obj, at, env) -> bool:
        if isinstance(obj, cst.Call):
            qn = self.ctx.call_name(obj)
            return bool(qn and self._trainable_api(qn))
        if isinstance(obj, cst.Name) and obj.value == "self":
            return True
        return self.rule.callee_kind(obj, at) == "model"

    def _object_call(self, func, node: cst.Call, env: tuple) -> Flow:
        kind = self.rule.callee_kind(func, node)
        if kind == "model":
            return _DIFF_F
        if kind == "unknown":
            return _UNKNOWN_F
        b = self.ctx.binding(func, node)
        if b is not None and b.kind == "param":
            for frame in reversed(env):
                if frame[0] == "call" and frame[1] is b.scope:
                    return _UNKNOWN_F  # a callable passed to a helper
        return self._all(self._args(node), env)

    def _method(self, call: cst.Call, name: str) -> cst.FunctionDef | None:
        ctx = self.ctx
        cls = next((a for a in ctx.ancestors(call) if isinstance(a, cst.ClassDef)), None)
        if cls is None:
            return None
        for b in ctx.bindings_of(name, cls):
            if b.kind == "def" and isinstance(b.node, cst.FunctionDef):
                return b.node
        return None

    def _api_call(self, node: cst.Call, qn: str, env: tuple) -> Flow:
        ctx = self.ctx
        if qn in tfapi.names("ops", "stop_gradient"):
            return _NONE_F
        if qn in tfapi.names("graph", "variable_constructors") or self._trainable_api(qn):
            return _DIFF_F
        if qn in tfapi.names("ops", "cast"):
            x = get_arg(node, "x", 0)
            inp = self.flow(x.value, env) if x is not None else _NONE_F
            dtype = get_arg(node, "dtype", 1)
            name = self._int_dtype(dtype.value if dtype is not None else None, node)
            if name is not None:
                return self._block(node, f"`{ctx.code(node.func)}(..., {name})`", inp)
            return inp
        for name, func_kw, inp_kw in tfapi.table("ops", "python_ops"):
            if qn != name:
                continue
            inp_arg = get_arg(node, inp_kw, 1)
            inp = self.flow(inp_arg.value, env) if inp_arg is not None else _NONE_F
            if qn in tfapi.names("ops", "differentiable_python_ops"):
                func_arg = get_arg(node, func_kw, 0)
                if func_arg is None or not self._uses_numpy(func_arg.value, node):
                    return inp  # tf.py_function over TF ops is differentiable
                return self._block(node, f"`{ctx.code(node.func)}` (its function uses NumPy)", inp)
            return self._block(node, f"`{ctx.code(node.func)}`", inp)
        if qn in tfapi.names("ops", "non_differentiable"):
            inp = self._all(self._args(node), env)
            zero = qn in tfapi.names("ops", "zero_gradient")
            return self._block(node, f"`{ctx.code(node.func)}`", inp, zero=zero)
        if qn.startswith("np."):
            return self._block(
                node, f"the NumPy call `{ctx.code(node.func)}`", self._all(self._args(node), env), leaves=True
            )
        return self._all(self._args(node), env)

    def _uses_numpy(self, func: cst.BaseExpression, at: cst.CSTNode) -> bool:
        """Whether a lambda / local function leaves TensorFlow (NumPy calls, ``.numpy()``)."""
        ctx = self.ctx
        body: cst.CSTNode | None = func if isinstance(func, cst.Lambda) else None
        if isinstance(func, cst.Name):
            b = ctx.binding(func, at)
            if b is not None and b.kind == "def" and isinstance(b.node, cst.FunctionDef):
                body = b.node
        if body is None or body not in ctx.index:
            return False
        leave = tfapi.names("ops", "leave_graph_methods")
        for c in ctx.calls_in(body):
            qn = ctx.call_name(c)
            if qn is not None and qn.startswith("np."):
                return True
            if qn is None and isinstance(c.func, cst.Attribute) and c.func.attr.value in leave and not c.args:
                return True
        return False

    def _int_dtype(self, expr, at) -> str | None:
        if expr is None:
            return None
        ints = tfapi.names("ops", "int_dtypes")
        s = string_value(expr)
        if s is not None:
            return s if s in ints else None
        v = self.ctx.value_of(expr, at) if isinstance(expr, cst.Name) else expr
        qn = self.ctx.qualname(v) if isinstance(v, (cst.Name, cst.Attribute)) else None
        if qn is None:
            s = string_value(v)
            return s if s in ints else None
        last = qn.split(".")[-1]
        return last if last in ints else None

    def _invoke(self, fn: cst.FunctionDef, call: cst.Call | None, env: tuple, skip_self: bool) -> Flow:
        """The flow of a local function's return values, its parameters bound to the call's arguments."""
        depth = sum(1 for f in env if f[0] == "call")
        if depth >= _MAX_CALL_DEPTH or any(f[0] == "call" and f[1] is fn for f in env):
            return _UNKNOWN_F
        args = [] if call is None else list(call.args)
        custom = any(
            self.ctx.qualname(d.decorator.func if isinstance(d.decorator, cst.Call) else d.decorator)
            in tfapi.names("ops", "custom_gradient")
            for d in fn.decorators
        )
        if custom:
            inp = self._all([a.value for a in args], env)
            return _DIFF_F if inp.kind == BLOCKED else inp
        bound = bind_arguments(fn, call, skip_self=skip_self) if call is not None else None
        mapping: dict[str, Flow] = {}
        if bound is not None:
            for name, values in bound.args.items():
                mapping[name] = self._all(values, env) if len(values) != 1 else self.flow(values[0], env)
        else:
            for p in [*fn.params.posonly_params, *fn.params.params, *fn.params.kwonly_params]:
                if p.default is not None:
                    mapping[p.name.value] = self.flow(p.default, env)
        frame_env = (*env, ("call", fn, mapping))
        returns = self.rule.returns_of(fn)
        if not returns:
            return _NONE_F
        return _combine(self.flow(r.value, frame_env) for r in returns)
