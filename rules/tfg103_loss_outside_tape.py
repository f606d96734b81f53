from __future__ import annotations

import libcst as cst

from tflint_grad.analysis import Binding, TapeBlock, dotted
from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive, refuted
from tflint_grad.tracer.events import event

# Expressions that run TensorFlow ops (a Python subscript or name does not).
_COMPUTATION = (cst.Call, cst.BinaryOperation, cst.UnaryOperation)
# Container accessors: `outputs.get("loss")` reads a tensor computed elsewhere.
_ACCESSORS = frozenset({"get", "pop", "setdefault", "__getitem__"})


def _computes(expr: cst.BaseExpression) -> bool:
    if not isinstance(expr, _COMPUTATION):
        return False
    return not (
        isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in _ACCESSORS
    )


class LossOutsideTape(Rule):
    """The target of `tape.gradient` is computed outside the `GradientTape` block.

    ## What it does
    Flags `tape.gradient(target, ...)` when `target` is computed in the same function
    but outside every `with tf.GradientTape() as tape:` block of that tape: after the
    block has ended, before it started, or inline in a `tape.gradient(...)` call placed
    after the block (`tape.gradient(loss_fn(y, pred), ...)`). Aliases (`target = loss`)
    are followed.

    ## Why is this bad?
    A tape only records the operations executed while it is active. When the loss (or
    the last op producing it, e.g. a `tf.reduce_mean` or a regularization term added
    afterwards) runs outside the block, the tape has no path from the target to the
    variables, and every gradient is `None`. The optimizer then raises "No gradients
    provided for any variable" or silently skips the update.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
    loss = loss_fn(y, logits)
    grads = tape.gradient(loss, model.trainable_variables)
    ```

    Use instead:
    ```python
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = loss_fn(y, logits)
    grads = tape.gradient(loss, model.trainable_variables)
    ```

    ## Confirmation
    Every gradient returned by the traced `tape.gradient` call is None (evidence names
    the variables); `refuted` when at least one gradient exists.
    """

    code = "TFG103"
    name = "loss-outside-tape"
    severity = "error"
    requires = ("GradientTape",)

    VALID = [
        # computed inside the block
        Valid("""
            import tensorflow as tf
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, logits))
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
        """),
        # a loss read back from a dict of outputs computed inside the block
        Valid("""
            import tensorflow as tf
            with tf.GradientTape() as tape:
                outputs = {"loss": tf.reduce_mean(model(x)), "aux": 0.0}
            loss = outputs.get("loss")
            grads = tape.gradient(outputs.get("loss"), model.trainable_variables)
            grads = tape.gradient(loss, model.trainable_variables)
        """),
        # a persistent tape re-entered around the computation
        Valid("""
            import tensorflow as tf
            def step(model, x, y):
                with tf.GradientTape(persistent=True) as tape:
                    logits = model(x, training=True)
                with tape:
                    loss = tf.reduce_mean(tf.square(logits - y))
                grads = tape.gradient(loss, model.trainable_variables)
                del tape
                return grads
        """),
        # a gradient call inside the block, with the target computed inline
        Valid("""
            from tensorflow import keras
            import tensorflow as tf
            def step(model, x, y):
                with tf.GradientTape() as tape:
                    pred = model(x, training=True)
                    grads = tape.gradient(keras.losses.mse(y, pred), model.trainable_variables)
                return grads
        """),
        # an alias bound after the block of a loss computed inside
        Valid("""
            import keras
            import tensorflow as tf
            for x, y in dataset:
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(keras.losses.mse(y, model(x)))
                target = loss
                scaled = losses[0]
                grads = tape.gradient(target, model.trainable_variables)
        """),
        # tape.watch of an input; gradient taken inside a nested tape block (second order)
        Valid("""
            import tensorflow as tf
            x = tf.constant(3.0)
            with tf.GradientTape() as outer:
                outer.watch(x)
                with tf.GradientTape() as inner:
                    inner.watch(x)
                    y = x * x
                dy_dx = inner.gradient(y, x)
            d2y_dx2 = outer.gradient(dy_dx, x)
        """),
        # the loss is computed in another function (not the tape's scope)
        Valid("""
            import tensorflow as tf
            class Trainer:
                def step(self, x):
                    with tf.GradientTape() as tape:
                        self.loss = tf.reduce_mean(self.model(x))
                    return tape.gradient(self.loss, self.model.trainable_variables)
        """),
        # TF1 code without a tape
        Valid("""
            import tensorflow.compat.v1 as tf
            loss = tf.reduce_mean(tf.square(pred - y))
            grads = tf.gradients(loss, tf.trainable_variables())
        """),
    ]
    INVALID = [
        Invalid(
            """
            import tensorflow as tf
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, logits))
            grads = tape.gradient(loss, model.trainable_variables)
            """,
            line=4,
            message="after the `with",
        ),
        # a regularization term added after the block
        Invalid(
            """
            import tensorflow as tf
            def train_step(model, opt, x, y):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
                loss += 1e-4 * tf.add_n([tf.nn.l2_loss(v) for v in model.trainable_variables])
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))
            """,
            line=5,
        ),
        # inline target after the block
        Invalid(
            """
            from tensorflow import keras
            import tensorflow as tf
            with tf.GradientTape() as tape:
                pred = model(x, training=True)
            grads = tape.gradient(keras.losses.mse(y, pred), model.trainable_variables)
            """,
            line=5,
            message="inline",
        ),
        # computed before the block started
        Invalid(
            """
            import keras
            import tensorflow as tf
            def step(model, x, y):
                loss = keras.losses.mse(y, model(x))
                with tf.GradientTape() as tape:
                    tape.watch(x)
                grads = tape.gradient(loss, model.trainable_variables)
                return grads
            """,
            line=4,
            message="before the `with",
        ),
        # through an alias, in a loop, TF2 with tf.compat.v1 name
        Invalid(
            """
            import tensorflow as tf
            for x, y in dataset:
                with tf.GradientTape(persistent=True) as tape:
                    pred = model(x)
                total = -tf.reduce_sum(pred * y)
                target = total
                g = tape.gradient(target, model.trainable_variables)
            """,
            line=5,
        ),
    ]

    def __init__(self, ctx, options=None) -> None:
        super().__init__(ctx, options)
        self._seen: set[int] = set()

    # -- static ---------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not (isinstance(func, cst.Attribute) and func.attr.value == "gradient" and isinstance(func.value, cst.Name)):
            return
        ctx = self.ctx
        gc = ctx.gradient_call(node)
        if gc is None or gc.kind != "tape" or gc.target is None:
            return
        scope = ctx.scope_of(node)
        tape_name = func.value.value
        if not ctx.tapes_named(tape_name, scope):
            return
        target = gc.target
        if _computes(target):
            if ctx.in_tape_body(node, tape_name, scope):
                return
            block = self._nearest(tape_name, scope, node)
            self._flag(target, None, block, tape_name, node, inline=True)
            return
        found = self._outside_computation(target, node, scope, tape_name, 0)
        if found is None:
            return
        binding, value = found
        block = self._nearest(tape_name, scope, binding.node)
        self._flag(value, binding, block, tape_name, node, inline=False)

    def _outside_computation(self, expr, at, scope, tape_name, depth) -> tuple[Binding, cst.CSTNode] | None:
        """The binding (and the value it computes) of ``expr`` when it runs outside every block."""
        if depth > 5 or not isinstance(expr, (cst.Name, cst.Attribute)):
            return None
        ctx = self.ctx
        if isinstance(expr, cst.Attribute) and not (dotted(expr) or "").startswith("self."):
            return None
        b = ctx.binding(expr, at)
        if b is None or b.index < 0 or b.kind not in ("assign", "annassign", "augassign", "unpack"):
            return None
        stmt = b.node
        if ctx.scope_of(stmt) is not scope:
            return None
        if ctx.in_tape_body(stmt, tape_name, scope):
            return None
        if b.kind == "augassign":
            return (b, stmt) if isinstance(stmt, cst.AugAssign) else None
        value = b.value
        if isinstance(value, (cst.Name, cst.Attribute)):
            return self._outside_computation(value, stmt, scope, tape_name, depth + 1)
        if value is not None and _computes(value):
            return b, value
        return None

    def _nearest(self, tape_name: str, scope: cst.CSTNode, node: cst.CSTNode) -> TapeBlock:
        """The last block of the tape that starts before ``node``, else the first one."""
        return self.ctx.tape_before(tape_name, scope, node) or self.ctx.tapes_named(tape_name, scope)[0]

    def _flag(self, node, binding, block: TapeBlock, tape_name: str, call: cst.Call, inline: bool) -> None:
        if id(node) in self._seen:
            return
        self._seen.add(id(node))
        ctx = self.ctx
        call_line = ctx.line(call)
        with_line = ctx.line(block.with_node)
        head = f"`with ... as {tape_name}:` block (line {with_line})"
        where_node = call if inline else binding.node
        after = ctx.index.get(where_node, 0) > ctx.index.get(block.with_node, 0)
        when = f"after the {head} ended" if after else f"before the {head} started"
        if inline:
            where = f"is computed inline in `{tape_name}.gradient(...)`, {when}"
            what = "the target"
        else:
            where = f"is computed {when}"
            what = f"the target `{binding.name}` of `{tape_name}.gradient` (line {call_line})"
        self.report(
            node,
            f"{what} {where}: the tape did not record this computation, so every gradient is None; "
            "compute the loss inside the tape block",
            data={"call_line": call_line, "tape": tape_name},
        )

    # -- confirmation -------------------------------------------------------------------
    OBSERVES = ("gradient_call",)
    CONFIRMS = [
        Traced(
            (event("gradient_call", 10, variables=[{"name": "w", "grad": "none"}, {"name": "b", "grad": "none"}]),),
            evidence="all 2 gradients returned at line 10 are None: w, b",
            data={"call_line": 10},
        )
    ]
    REFUTES = [
        Traced(
            (event("gradient_call", 10, variables=[{"name": "w", "grad": "ok"}, {"name": "b", "grad": "none"}]),),
            evidence="1 of 2 gradients at line 10 exist (e.g. w)",
            data={"call_line": 10},
        )
    ]
    INCONCLUSIVE = [
        Traced((), evidence="no gradient call was recorded at line 10", data={"call_line": 10}),
        Traced(  # the gradient call never ran: nothing was observed
            (),
            evidence="never ran",
            data={"call_line": 10},
            executed=(3, 4),
        ),
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        line = (finding.data or {}).get("call_line", finding.line)
        calls = trace.events_at("gradient_call", line)
        if not calls:
            return inconclusive(f"no gradient call was recorded at line {line}")
        ev = calls[0]
        variables = ev.get("variables", [])
        if not variables:
            return inconclusive(f"the gradient call at line {line} recorded no variables")
        none = [v.get("name") for v in variables if v.get("grad") == "none"]
        if len(none) == len(variables):
            names = ", ".join(map(str, none[:6])) + (" ..." if len(none) > 6 else "")
            return confirmed(f"all {len(none)} gradients returned at line {ev.get('line')} are None: {names}")
        ok = [v.get("name") for v in variables if v.get("grad") != "none"]
        return refuted(f"{len(ok)} of {len(variables)} gradients at line {ev.get('line')} exist (e.g. {ok[0]})")
