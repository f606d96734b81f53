from __future__ import annotations

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis import get_arg, number, string_value
from tflint_grad.analysis.producers import first_input, flow, short
from tflint_grad.analysis.targets import gradient_targets
from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive, refuted
from tflint_grad.tracer.events import event

_MAX = 5


class SqrtAtZero(Rule):
    """`sqrt` (or a Euclidean `norm`) of a distance that can be exactly zero, with no epsilon.

    ## What it does
    Flags `tf.sqrt` / `tf.math.sqrt` / `K.sqrt` / `keras.ops.sqrt` of a sum (or mean) of
    squared differences (`tf.reduce_sum(tf.square(a - b), axis=1)`, `(a - b) ** 2`,
    `tf.math.squared_difference(a, b)`, `dx ** 2 + dy ** 2`), written inline or bound to a name,
    and the Euclidean `tf.norm` / `tf.linalg.norm` of a difference (`tf.norm(a - b, axis=1)`):
    the Euclidean distance of contrastive, triplet and siamese losses, and RMSE losses;
    `sqrt(2 * tf.nn.l2_loss(a - b))` (the same norm); and the norm of a gradient that is
    differentiated again (the WGAN-GP / DRAGAN gradient penalty
    `sqrt(reduce_sum(square(grads)))` or `tf.norm(grads)`, with `grads` from `tape.gradient` or
    `tf.gradients`).

    The finding is shown (confidence `high`) when the square root visibly lies on the path to
    a gradient target; one that no gradient target uses (an evaluation RMSE, a summary, a
    numeric check) is a `low` candidate, and a gradient norm that is only logged is not
    flagged.

    ## Why is this bad?
    The derivative of `sqrt(x)` is `1 / (2 sqrt(x))`, infinite at `x = 0`. The distance is
    exactly zero whenever the two inputs coincide: a positive pair made of the same image,
    two embeddings that collapsed, a perfect prediction. The chain rule then multiplies `Inf`
    by the zero gradient of the squared difference: `0 * Inf = NaN`, and the NaN reaches every
    weight through the next optimizer step. The loss value itself looks fine (sqrt(0) = 0).

    ## Example
    ```python
    distance = tf.sqrt(tf.reduce_sum(tf.square(emb_a - emb_b), axis=1))
    ```

    Use instead:
    ```python
    distance = tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(emb_a - emb_b), axis=1), 1e-12))
    ```
    (or `tf.sqrt(d2 + 1e-12)`).

    ## Fix safety
    `sqrt(x)` becomes `sqrt(maximum(x, 1e-12))`, with `maximum` taken from the same module as
    `sqrt` (`tf.maximum`, `tf.math.maximum`, `K.maximum`). Unsafe: distances below 1e-6 are
    rounded up, and their gradient becomes 0 instead of NaN. `norm` calls get no fix.

    ## Confirmation
    `--confirm` looks for the `Sqrt` op created at the flagged line (`sqrt_input` event):
    `confirmed` when the traced graph (or the ops recorded by the tape) shows its input is a
    sum or mean of squares with no `maximum`/epsilon in between (evidence: "Sqrt ← Sum ← Square
    ← Sub at line 42, no epsilon"), with, in eager code, how many values of the radicand were
    exactly 0 in the first traced step, and the first NaN/Inf produced at that line. Identical
    pairs may not occur in the few traced steps: the unguarded root on the path of a gradient the
    script took confirms (one never differentiated: `refuted` when the script ran to its end, else
    `inconclusive`). A NaN/Inf at the flagged
    line with no recorded `Sqrt` also confirms; `refuted` when the traced `Sqrt` input is guarded.
    """

    code = "TFG403"
    name = "sqrt-at-zero"
    severity = "warning"
    requires = ("sqrt", "norm")

    VALID = [
        # an epsilon inside the sqrt
        Valid("""
            import tensorflow as tf
            d = tf.sqrt(tf.reduce_sum(tf.square(a - b), axis=1) + 1e-8)
            eps = 1e-6
            d2 = tf.reduce_sum(tf.square(a - b), axis=1)
            d3 = tf.sqrt(d2 + eps)
        """),
        # tf.maximum(x, eps) / K.maximum(x, K.epsilon()) before the sqrt (the Keras siamese example)
        Valid("""
            import tensorflow as tf
            from tensorflow.keras import backend as K
            def euclidean_distance(vects):
                x, y = vects
                sum_square = K.sum(K.square(x - y), axis=1, keepdims=True)
                return K.sqrt(K.maximum(sum_square, K.epsilon()))
            dist = tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(a - b), 1), 1e-12))
        """),
        # the norm of a single tensor (weights, gradients), not of a difference
        Valid("""
            import tensorflow as tf
            w_norm = tf.sqrt(tf.reduce_sum(tf.square(w)))
            g_norm = tf.norm(grad)
            l1 = tf.norm(a - b, ord=1)
            std = tf.sqrt(var)
        """),
        # never differentiated: an evaluation RMSE between placeholders, a summary, a numeric check,
        # a gradient norm that is only logged (issue 9)
        Valid("""
            import tensorflow as tf
            loss = tf.reduce_sum(tf.square(hypothesis - Y))
            train = tf.train.AdamOptimizer(0.01).minimize(loss)
            targets = tf.placeholder(tf.float32, [None, 1])
            predictions = tf.placeholder(tf.float32, [None, 1])
            rmse = tf.sqrt(tf.reduce_mean(tf.square(targets - predictions)))
            tf.summary.scalar('distance', tf.norm(a - b))
            error = tf.sqrt(tf.reduce_sum((approx - A) ** 2))
            grad_norm = tf.sqrt(tf.reduce_sum(tf.square(tape.gradient(loss, w))))
        """),
    ]
    INVALID = [
        Invalid(
            """
            import tensorflow as tf
            distance = tf.sqrt(tf.reduce_sum(tf.square(emb_a - emb_b), axis=1))
            loss = tf.reduce_mean(tf.maximum(margin - distance, 0.0))
            train_op = tf.train.AdamOptimizer(1e-3).minimize(loss)
            """,
            line=2,
            message="of squared differences",
            fixed="""
            import tensorflow as tf
            distance = tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(emb_a - emb_b), axis=1), 1e-12))
            loss = tf.reduce_mean(tf.maximum(margin - distance, 0.0))
            train_op = tf.train.AdamOptimizer(1e-3).minimize(loss)
            """,
        ),
        Invalid(
            """
            from tensorflow.keras import backend as K
            def euclidean_distance(vects):
                x, y = vects
                return K.sqrt(K.sum(K.square(x - y), axis=1, keepdims=True))
            """,
            line=4,
            fixed="""
            from tensorflow.keras import backend as K
            def euclidean_distance(vects):
                x, y = vects
                return K.sqrt(K.maximum(K.sum(K.square(x - y), axis=1, keepdims=True), 1e-12))
            """,
            confidence="low",  # no gradient target in the file: the distance may be a metric
        ),
        # through names: squared_difference, then sqrt
        Invalid(
            """
            import tensorflow as tf
            d2 = tf.reduce_sum(tf.math.squared_difference(anchor, positive), axis=-1)
            pos_dist = tf.math.sqrt(d2)
            """,
            line=3,
            fixed="""
            import tensorflow as tf
            d2 = tf.reduce_sum(tf.math.squared_difference(anchor, positive), axis=-1)
            pos_dist = tf.math.sqrt(tf.math.maximum(d2, 1e-12))
            """,
            confidence="low",
        ),
        # RMSE loss
        Invalid(
            """
            import tensorflow as tf
            loss = tf.sqrt(tf.reduce_mean((y - pred) ** 2))
            with tf.GradientTape() as tape:
                pred = model(x)
                rmse = tf.sqrt(tf.reduce_mean((y - pred) ** 2))
            grads = tape.gradient(rmse, model.trainable_variables)
            """,
            line=2,
            confidence="low",  # line 2 is never differentiated; line 5 is (next example)
        ),
        Invalid(
            """
            import tensorflow as tf
            with tf.GradientTape() as tape:
                pred = model(x)
                rmse = tf.sqrt(tf.reduce_mean((y - pred) ** 2))
            grads = tape.gradient(rmse, model.trainable_variables)
            """,
            line=4,
        ),
        # Euclidean norm of a difference
        Invalid(
            """
            import tensorflow as tf
            diff = left - right
            dist = tf.norm(diff, axis=1)
            loss = tf.reduce_mean(dist)
            opt.minimize(loss)
            """,
            line=3,
            message="norm",
        ),
        # sqrt(2 * l2_loss(d)) is the Euclidean norm of d
        Invalid(
            """
            import tensorflow as tf
            dist = tf.sqrt(2 * tf.nn.l2_loss(pred - target))
            train_op = tf.train.GradientDescentOptimizer(0.1).minimize(dist)
            """,
            line=2,
            fixed="""
            import tensorflow as tf
            dist = tf.sqrt(tf.maximum(2 * tf.nn.l2_loss(pred - target), 1e-12))
            train_op = tf.train.GradientDescentOptimizer(0.1).minimize(dist)
            """,
        ),
        # WGAN-GP: the gradient-penalty norm is differentiated again (double backprop)
        Invalid(
            """
            import tensorflow as tf
            with tf.GradientTape() as gp_tape:
                gp_tape.watch(interpolated)
                pred = critic(interpolated, training=True)
            grads = gp_tape.gradient(pred, [interpolated])[0]
            norm = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=[1, 2, 3]))
            gp = tf.reduce_mean((norm - 1.0) ** 2)
            with tf.GradientTape() as tape:
                d_loss = d_cost + gp * 10.0
            d_grads = tape.gradient(d_loss, critic.trainable_variables)
            """,
            line=6,
            message="gradient penalty",
        ),
        Invalid(
            """
            import tensorflow as tf
            gradients = tf.gradients(D(interpolates), [interpolates])[0]
            slopes = tf.norm(gradients, axis=1)
            gradient_penalty = tf.reduce_mean((slopes - 1.) ** 2)
            disc_cost += LAMBDA * gradient_penalty
            train_op = tf.train.AdamOptimizer(1e-4).minimize(disc_cost, var_list=disc_params)
            """,
            line=3,
            message="gradient penalty",
        ),
    ]

    def __init__(self, ctx, options=None) -> None:
        super().__init__(ctx, options)
        self.flow = flow(ctx)

    # -- static ---------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        ctx = self.ctx
        qn = ctx.call_name(node)
        if qn in tfapi.names("numerics", "sqrt"):
            x = first_input(node)
            if x is None:
                return
            if self._radicand(x, node, 0):
                on_path, assumed = self._on_path(node)
                self.report(
                    node,
                    f"`{short(ctx, node)}` takes the square root of a sum (or mean) of squared differences with no "
                    "epsilon: when the two inputs coincide the sum is exactly 0, the derivative of sqrt at 0 is "
                    f"infinite and 0 * Inf = NaN flows into every weight{assumed}; use `sqrt(maximum(x, 1e-12))` "
                    "or add a small epsilon",
                    fix=self._fix(node, x),
                    confidence="high" if on_path else "low",
                )
            elif self._radicand(x, node, 0, of_gradient=True) and self._on_path(node)[0]:
                self._report_penalty(node, self._fix(node, x))
        elif qn in tfapi.names("numerics", "norm"):
            x = first_input(node)
            if x is None or not self._euclidean(node):
                return
            if self._difference(x, node, 0):
                on_path, assumed = self._on_path(node)
                self.report(
                    node,
                    f"`{short(ctx, node)}` is the Euclidean norm of a difference with no epsilon: at a zero difference "
                    f"its gradient is 0/0 = NaN{assumed}; compute `sqrt(maximum(reduce_sum(square(d), axis), 1e-12))` "
                    "instead",
                    confidence="high" if on_path else "low",
                )
            elif self._gradient(x, node, 0) and self._on_path(node)[0]:
                self._report_penalty(node, None)

    def _on_path(self, node: cst.CSTNode) -> tuple[bool, str]:
        """Whether the op visibly feeds a gradient target (else: what the message assumes)."""
        if gradient_targets(self.ctx).reaches(self.ctx, node):
            return True, ""
        return False, " (assuming it is differentiated: no gradient target of this file visibly uses it)"

    def _report_penalty(self, node: cst.Call, fix) -> None:
        self.report(
            node,
            f"`{short(self.ctx, node)}` is the norm of a gradient (a gradient penalty) with no epsilon, and the "
            "penalty is differentiated again: where the gradient is exactly 0 the derivative of the norm is "
            "0/0 = NaN, and it reaches every weight; use `sqrt(reduce_sum(square(g), axis) + 1e-12)`",
            fix=fix,
        )

    def _gradient(self, expr: cst.BaseExpression, at: cst.CSTNode, depth: int) -> bool:
        """A value returned by ``tape.gradient`` / ``tf.gradients`` (``[0]`` of it too)."""
        ctx = self.ctx
        if depth > _MAX:
            return False
        if isinstance(expr, cst.Name):
            nxt = self._follow(expr, at)
            return nxt is not None and self._gradient(nxt[0], nxt[1], depth + 1)
        if isinstance(expr, cst.Subscript):
            return self._gradient(expr.value, at, depth + 1)
        if isinstance(expr, cst.Call):
            if ctx.call_name(expr) in tfapi.names("gradients", "tf_gradients"):
                return True
            func = expr.func
            return isinstance(func, cst.Attribute) and func.attr.value == "gradient" and ctx.is_tape(func.value, expr)
        return False

    def _euclidean(self, call: cst.Call) -> bool:
        arg = get_arg(call, tfapi.table("numerics", "norm_ord_keyword"), 1)
        if arg is None:
            return True
        v = arg.value
        if isinstance(v, cst.Name) and v.value == "None":
            return True
        s = string_value(v)
        if s is not None:
            return s in tfapi.names("numerics", "euclidean_ords")
        return number(v) == 2.0

    def _follow(self, expr: cst.BaseExpression, at: cst.CSTNode) -> tuple[cst.BaseExpression, cst.CSTNode] | None:
        if isinstance(expr, cst.Name):
            b = self.ctx.binding(expr, at)
            if b is None or b.value is None or b.kind not in ("assign", "annassign"):
                return None
            return b.value, b.node
        return expr, at

    def _difference(self, expr: cst.BaseExpression, at: cst.CSTNode, depth: int) -> bool:
        if depth > _MAX:
            return False
        if isinstance(expr, cst.Name):
            nxt = self._follow(expr, at)
            return nxt is not None and self._difference(nxt[0], nxt[1], depth + 1)
        if isinstance(expr, cst.BinaryOperation):
            return isinstance(expr.operator, cst.Subtract)
        if isinstance(expr, cst.Call):
            return self.ctx.call_name(expr) in tfapi.names("numerics", "subtract")
        return False

    def _squared_difference(
        self, expr: cst.BaseExpression, at: cst.CSTNode, depth: int, of_gradient: bool = False
    ) -> bool:
        """``square(a - b)`` (``of_gradient``: ``square(g)`` of a gradient ``g``), ``(a - b) ** 2``,
        ``squared_difference(a, b)``, ``k * l2_loss(a - b)`` (``l2_loss(t)`` is ``sum(t ** 2) / 2``)."""
        ctx = self.ctx
        base = self._gradient if of_gradient else self._difference
        if isinstance(expr, cst.Call):
            qn = ctx.call_name(expr)
            if qn in tfapi.names("numerics", "squared_difference"):
                return not of_gradient
            x = first_input(expr)
            if x is None:
                return False
            if qn in tfapi.names("numerics", "square") or qn in tfapi.names("numerics", "sum_of_squares"):
                return base(x, expr, depth + 1)
            if qn in tfapi.names("numerics", "power"):
                e = get_arg(expr, None, 1)
                return e is not None and number(e.value) == 2.0 and base(x, expr, depth + 1)
            return False
        if isinstance(expr, cst.BinaryOperation):
            if isinstance(expr.operator, cst.Power):
                return number(expr.right) == 2.0 and base(expr.left, at, depth + 1)
            if isinstance(expr.operator, cst.Multiply):
                if ctx.code(expr.left).strip() == ctx.code(expr.right).strip():
                    return base(expr.left, at, depth + 1)
                for k, other in ((expr.left, expr.right), (expr.right, expr.left)):
                    v = number(k)
                    if v is not None and v > 0:  # `2 * tf.nn.l2_loss(a - b)`
                        return self._squared_difference(other, at, depth + 1, of_gradient)
        return False

    def _radicand(self, expr: cst.BaseExpression, at: cst.CSTNode, depth: int, of_gradient: bool = False) -> bool:
        """A sum/mean of squared differences (``of_gradient``: of a gradient's squares) with no
        epsilon or clipping on the way."""
        ctx = self.ctx
        if depth > _MAX:
            return False
        if isinstance(expr, cst.Name):
            nxt = self._follow(expr, at)
            return nxt is not None and self._radicand(nxt[0], nxt[1], depth + 1, of_gradient)
        if self._squared_difference(expr, at, depth, of_gradient):
            return True
        if isinstance(expr, cst.Call):
            qn = ctx.call_name(expr)
            if qn in tfapi.names("numerics", "reductions"):
                x = first_input(expr)
                return x is not None and self._radicand(x, expr, depth + 1, of_gradient)
            return False
        if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Add):
            if self.flow.is_eps(expr.left, at) or self.flow.is_eps(expr.right, at):
                return False
            return self._radicand(expr.left, at, depth + 1, of_gradient) and self._radicand(
                expr.right, at, depth + 1, of_gradient
            )
        return False

    def _fix(self, call: cst.Call, x: cst.BaseExpression):
        func = call.func
        if not isinstance(func, cst.Attribute) or len(call.args) != 1:
            return None
        name, floor = tfapi.table("numerics", "sqrt_fix")
        prefix = self.ctx.code(func.value).strip()
        return self.replace(
            x, f"{prefix}.{name}({self.ctx.code(x).strip()}, {floor})", "Keep the radicand away from 0", "unsafe"
        )

    # -- confirmation -------------------------------------------------------------------
    OBSERVES = ("sqrt_input", "nonfinite")
    CONFIRMS = [
        Traced(
            (
                event(
                    "sqrt_input",
                    10,
                    op="Sqrt",
                    chain=["Sum", "Square", "Sub"],
                    input_op_type="Sum",
                    squares=True,
                    clipped=False,
                    zeros=4,
                    size=16,
                    zero_step=1,
                    differentiated=True,
                ),
            ),
            evidence="its input was exactly 0 for 4 of 16 values at step 1",
        ),
        Traced(  # a TF1 graph: no values, but the unguarded root is on the differentiated path
            (
                event(
                    "sqrt_input",
                    10,
                    op="Sqrt",
                    chain=["Sum", "Square", "Sub"],
                    input_op_type="Sum",
                    squares=True,
                    clipped=False,
                    differentiated=True,
                ),
            ),
            evidence="Sqrt ← Sum ← Square ← Sub at line 10, no epsilon",
        ),
        Traced(
            (event("nonfinite", 10, op="Sqrt", op_type="Sqrt", where="gradient", value="NaN"),),
            evidence="gradient became NaN",
        ),
    ]
    REFUTES = [
        Traced(
            (
                event(
                    "sqrt_input",
                    10,
                    op="Sqrt",
                    chain=["Maximum", "Sum", "Square"],
                    input_op_type="Maximum",
                    squares=True,
                    clipped=True,
                    differentiated=True,
                ),
            ),
            evidence="is guarded",
        )
    ]
    INCONCLUSIVE = [
        Traced(  # a distance only printed: never differentiated
            (
                event(
                    "sqrt_input",
                    10,
                    op="Sqrt",
                    chain=["Sum", "Square", "Sub"],
                    input_op_type="Sum",
                    squares=True,
                    clipped=False,
                    differentiated=False,
                ),
            ),
            evidence="not on the path of any gradient",
            status="stopped",
        ),
        Traced((), evidence="no Sqrt op was traced at line 10"),
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        lo, hi = finding.line, finding.end_line
        roots = trace.events_at("sqrt_input", lo, hi)
        nans = trace.events_at("nonfinite", lo, hi)
        nan = nans[0] if nans else None
        bad = [e for e in roots if e.get("squares") and not e.get("clipped")]
        live = [e for e in bad if e.get("differentiated") is True or e.get("zeros")]
        if live and (nan is not None or any(e.get("differentiated") is True for e in live)):
            e = next((x for x in live if x.get("zeros")), live[0])
            text = f"Sqrt ← {' ← '.join(e.get('chain') or ())} at line {e.get('line')}, no epsilon"
            if e.get("zeros"):
                text += (
                    f": its input was exactly 0 for {e['zeros']} of {e.get('size')} values at step "
                    f"{e.get('zero_step', e.get('step'))}"
                )
            elif e.get("size"):
                text += (
                    f", on the differentiated path: the derivative of sqrt is infinite wherever the radicand "
                    f"reaches 0 (no exact 0 among the {e['size']} values traced at step {e.get('step')})"
                )
            else:
                text += ", on the differentiated path: the derivative of sqrt is infinite where the radicand reaches 0"
            if nan is not None:
                text += f"; the {nan.get('where') or 'tensor'} became {nan.get('value') or 'NaN/Inf'} at step {nan.get('step')}"
            return confirmed(text)
        if nan is not None:
            cause = (
                ": the square root received 0" if nan.get("op_type") in tfapi.names("numerics", "sqrt_op_types") else ""
            )
            return confirmed(
                f"{nan.get('where') or 'a tensor'} became {nan.get('value') or 'NaN/Inf'} at step {nan.get('step')} "
                f"({nan.get('op_type') or nan.get('op')}, line {nan.get('line')}){cause}"
            )
        if bad:
            e = bad[0]
            text = f"Sqrt ← {' ← '.join(e.get('chain') or ())} at line {e.get('line')}, no epsilon, but "
            if e.get("differentiated") is False:
                text += "it is not on the path of any gradient the script took"
                # the whole script ran: every gradient it takes was seen (else a later one might)
                return refuted(text) if trace.status == "finished" else inconclusive(text)
            return inconclusive(text + "whether a gradient flows through it was not observed")
        if roots and all(e.get("clipped") for e in roots):
            e = roots[0]
            return refuted(
                f"the traced Sqrt at line {e.get('line')} is guarded: Sqrt ← {' ← '.join(e.get('chain') or ())}"
            )
        if roots:
            return inconclusive(f"the Sqrt at line {lo} does not take a sum of squares the trace can recognise")
        return inconclusive(f"no Sqrt op was traced at line {lo}")
