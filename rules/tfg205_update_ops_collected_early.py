from __future__ import annotations

import libcst as cst

from tflint_grad.analysis import is_update_ops_collection, tf1_batch_norm_training
from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive, refuted
from tflint_grad.tracer.events import event


class UpdateOpsCollectedEarly(Rule):
    """`get_collection(UPDATE_OPS)` runs before the batch-norm layers exist, so it returns an empty list.

    ## What it does
    Flags `tf.get_collection(tf.GraphKeys.UPDATE_OPS)` when, in the same scope, it is
    evaluated before the first statement that creates a TF1 batch norm in training mode
    (`tf.layers.batch_normalization`, `tf.contrib.layers.batch_norm`, `slim.batch_norm`),
    directly or through a call of a local function, method or class that creates one.
    Execution order is approximated by document order.

    ## Why is this bad?
    `get_collection` returns a snapshot of the collection *when it runs*. Collected
    before the model is built, the list is empty, so
    `with tf.control_dependencies(update_ops):` adds no dependency at all and the
    moving mean/variance are never updated, although the code looks right.

    ## Example
    ```python
    update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    logits = build_model(x, training=True)      # creates tf.layers.batch_normalization
    with tf.control_dependencies(update_ops):
        train_op = opt.minimize(loss)
    ```

    Use instead:
    ```python
    logits = build_model(x, training=True)
    update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    with tf.control_dependencies(update_ops):
        train_op = opt.minimize(loss)
    ```

    ## Confirmation
    The list traced at the flagged line is empty while UPDATE_OPS is non-empty at the
    first train step (evidence gives both sizes); `refuted` when the list was not empty,
    or when UPDATE_OPS is still empty at the first step.
    """

    code = "TFG205"
    name = "update-ops-collected-early"
    severity = "warning"
    requires = ("UPDATE_OPS", "update_ops")

    VALID = [
        # collected after the model is built
        Valid("""
            import tensorflow as tf
            h = tf.layers.batch_normalization(x, training=True)
            loss = tf.reduce_mean(h)
            update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
            with tf.control_dependencies(update_ops):
                train_op = tf.train.AdamOptimizer().minimize(loss)
        """),
        # seed 000: the batch norm is created by a method called earlier in __init__
        Valid("""
            import tensorflow as tf
            class Actor(object):
                def __init__(self, s):
                    layer_1 = self._layer(s)
                    self.loss = tf.reduce_mean(layer_1)
                    update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
                    with tf.control_dependencies(update_ops):
                        self.train = tf.train.MomentumOptimizer(0.1, 0.9).minimize(self.loss)
                def _layer(self, x):
                    return tf.layers.batch_normalization(x, name="bn", training=True)
        """),
        # a helper that collects the ops, called after the model is built (other scope)
        Valid("""
            import tensorflow as tf
            def make_train_op(loss):
                update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
                with tf.control_dependencies(update_ops):
                    return tf.train.AdamOptimizer().minimize(loss)
            def build(x):
                return tf.layers.batch_normalization(x, training=True)
            loss = tf.reduce_mean(build(x))
            train_op = make_train_op(loss)
        """),
        # a batch norm created later that is not in training mode adds no update ops
        Valid("""
            import tensorflow as tf
            update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
            h = tf.layers.batch_normalization(x, training=False)
        """),
        # a model instance built before collecting
        Valid("""
            import tensorflow as tf
            class Net:
                def __init__(self, x):
                    self.out = tf.contrib.layers.batch_norm(x, is_training=True)
            net = Net(x)
            update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
        """),
    ]
    INVALID = [
        Invalid(
            """
            import tensorflow as tf
            update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
            h = tf.layers.batch_normalization(x, training=True)
            loss = tf.reduce_mean(h)
            with tf.control_dependencies(update_ops):
                train_op = tf.train.AdamOptimizer().minimize(loss)
            """,
            line=2,
            message="before any batch normalization layer is created",
        ),
        # the model is built by a local function called after collecting
        Invalid(
            """
            import tensorflow.compat.v1 as tf
            def build_model(x, is_training):
                h = tf.layers.dense(x, 32)
                return tf.layers.batch_normalization(h, training=is_training)
            def main(x, is_training):
                with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
                    logits = build_model(x, is_training)
                    train_op = tf.train.AdamOptimizer().minimize(tf.reduce_mean(logits))
                return train_op
            """,
            line=6,
            message="`build_model(...)`",
        ),
        # a local class whose __init__ creates batch norm, instantiated after collecting
        Invalid(
            """
            import tensorflow as tf
            class Net:
                def __init__(self, x):
                    self.out = self._block(x)
                def _block(self, x):
                    return tf.contrib.layers.batch_norm(x)
            ops = tf.get_collection("update_ops")
            net = Net(x)
            """,
            line=7,
            message="line 8",
        ),
    ]

    def __init__(self, ctx, options=None) -> None:
        super().__init__(ctx, options)
        self._by_scope: dict[int, list[tuple[int, cst.Call, str | None]]] = {}
        self._fn_memo: dict[int, bool] = {}

    # -- static ---------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        ctx = self.ctx
        if not is_update_ops_collection(ctx, node):
            return
        scope = ctx.scope_of(node)
        creations = self._creations(scope)
        if not creations:
            return
        pos = ctx.index[node]
        if any(i < pos for i, _, _ in creations):
            return
        _, first, via = creations[0]
        line = ctx.line(first)
        if via is None:
            how = f"`{ctx.call_name(first) or ctx.code(first.func)}` at line {line}"
        else:
            how = f"`{via}(...)` at line {line}, which creates TF1 batch normalization"
        self.report(
            node,
            f"`{ctx.code(node.func)}(...UPDATE_OPS)` is evaluated at line {ctx.line(node)}, before any batch normalization "
            f"layer is created in this scope (the first is created by {how}): the collection is still empty, so the list "
            "is empty and `tf.control_dependencies` on it runs no moving-average update; collect the update ops after "
            "the model is built, right before creating the train op",
            data={"call_line": ctx.line(node), "end_line": ctx.range(node)[2], "first_bn_line": line},
        )

    def _creations(self, scope: cst.CSTNode) -> list[tuple[int, cst.Call, str | None]]:
        """(index, call, local callee name or None) of calls in ``scope`` that create TF1 batch norm."""
        found = self._by_scope.get(id(scope))
        if found is not None:
            return found
        ctx = self.ctx
        found = []
        for n in ctx.calls_in(scope):
            if n is scope or ctx.scope_of(n) is not scope:
                continue
            if tf1_batch_norm_training(ctx, n):
                found.append((ctx.index[n], n, None))
                continue
            name = self._creates_via(n, set())
            if name is not None:
                found.append((ctx.index[n], n, name))
        self._by_scope[id(scope)] = found
        return found

    def _creates_via(self, call: cst.Call, stack: set[int]) -> str | None:
        """The name of the local function/method/class called by ``call`` when it creates TF1 batch norm."""
        for fn in self._callees(call):
            if self._fn_creates(fn, stack):
                func = call.func
                return func.value if isinstance(func, cst.Name) else self.ctx.code(func)
        return None

    def _callees(self, call: cst.Call) -> list[cst.FunctionDef]:
        ctx = self.ctx
        func = call.func
        if isinstance(func, cst.Name):
            b = ctx.binding(func, call)
            if b is not None and b.kind == "class" and isinstance(b.node, cst.ClassDef):
                return self._methods(b.node, "__init__")
            if b is not None and b.kind == "def" and isinstance(b.node, cst.FunctionDef):
                return [b.node]
            return []
        if isinstance(func, cst.Attribute):
            owner = func.value
            if isinstance(owner, cst.Name) and owner.value == "self":
                cls = next((a for a in ctx.ancestors(call) if isinstance(a, cst.ClassDef)), None)
                return self._methods(cls, func.attr.value) if cls is not None else []
            v = ctx.value_of(owner, call)
            if isinstance(v, cst.Call) and isinstance(v.func, cst.Name) and v.func.value in ctx.classes:
                return self._methods(ctx.classes[v.func.value], func.attr.value)
        return []

    def _methods(self, cls: cst.ClassDef, name: str, depth: int = 0) -> list[cst.FunctionDef]:
        body = cls.body.body if isinstance(cls.body, cst.IndentedBlock) else []
        out = [s for s in body if isinstance(s, cst.FunctionDef) and s.name.value == name]
        if not out and depth < 4:
            for base in cls.bases:
                if isinstance(base.value, cst.Name) and base.value.value in self.ctx.classes:
                    base_cls = self.ctx.classes[base.value.value]
                    if base_cls is not cls:
                        out.extend(self._methods(base_cls, name, depth + 1))
        return out

    def _fn_creates(self, fn: cst.FunctionDef, stack: set[int]) -> bool:
        key = id(fn)
        if key in self._fn_memo:
            return self._fn_memo[key]
        if key in stack or len(stack) > 8:
            return False
        stack.add(key)
        result = False
        for n in self.ctx.calls_in(fn):
            if tf1_batch_norm_training(self.ctx, n) or self._creates_via(n, stack) is not None:
                result = True
                break
        stack.discard(key)
        self._fn_memo[key] = result
        return result

    # -- confirmation -------------------------------------------------------------------
    OBSERVES = ("update_ops_collected",)
    CONFIRMS = [
        Traced(
            (event("update_ops_collected", 10, size=0, size_at_first_step=2),),
            evidence="returned 0 ops; UPDATE_OPS held 2 op(s) at the first train step",
            data={"call_line": 10, "end_line": 10},
        )
    ]
    REFUTES = [
        Traced(
            (event("update_ops_collected", 10, size=2, size_at_first_step=2),),
            evidence="returned 2 op(s)",
            data={"call_line": 10, "end_line": 10},
        ),
        Traced(
            (event("update_ops_collected", 10, size=0, size_at_first_step=0),),
            evidence="there were no update ops to miss",
            data={"call_line": 10, "end_line": 10},
        ),
    ]
    INCONCLUSIVE = [
        Traced(  # no train step ran: the later size is unknown
            (event("update_ops_collected", 10, size=0, size_at_first_step=None),),
            evidence="no train step",
            data={"call_line": 10, "end_line": 10},
        )
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        line = finding.data.get("call_line", finding.line)
        end = finding.data.get("end_line", line)
        events = trace.events_at("update_ops_collected", line, end)
        if not events:
            return inconclusive(f"no get_collection(UPDATE_OPS) call was recorded at line {line}")
        e = events[0]
        size, later = e.get("size"), e.get("size_at_first_step")
        if size is None or later is None:
            return inconclusive("UPDATE_OPS could not be measured at the first train step (no train step ran)")
        if size == 0 and later > 0:
            return confirmed(
                f"get_collection(UPDATE_OPS) at line {e.get('line')} returned 0 ops; UPDATE_OPS held {later} op(s) at the first train step"
            )
        if size > 0:
            return refuted(f"get_collection(UPDATE_OPS) at line {e.get('line')} returned {size} op(s)")
        return refuted("UPDATE_OPS was still empty at the first train step: there were no update ops to miss")
