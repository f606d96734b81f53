from __future__ import annotations

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis import get_arg, number
from tflint_grad.analysis.producers import Flow, Source, origin, short, tf_alias
from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive, refuted
from tflint_grad.tracer.events import event


class UnstableLogProbability(Rule):
    """The log of a softmax or sigmoid output, with no clipping or epsilon.

    ## What it does
    Flags `tf.log` / `tf.math.log` / `K.log` / `keras.ops.log` whose argument is the output
    of a softmax or a sigmoid (or `1 - sigmoid`), with no `tf.clip_by_value`, `tf.maximum`
    or `+ eps` in between. The probability is found through names
    (`y_conv = tf.nn.softmax(logits)`, the classic TF1 MNIST tutorial), pass-through ops,
    functional TF1 layers (`tf.layers.dense(..., activation=tf.nn.softmax)`), the last layer of
    a Keras `Sequential` / functional model called in the script, and one level of local
    functions: a helper's return value, a helper's parameter at its call sites, and the
    `y_pred` of a custom loss given to `model.compile(loss=...)`.

    ## Why is this bad?
    Softmax and sigmoid outputs underflow to exactly 0 (or 1) in float32 once the logits
    are a few dozen apart, which happens after some hundred steps of confident training.
    `log(0)` is `-inf`; `y * log(p)` is then `0 * -inf = NaN` and the loss and every
    gradient become NaN, usually long after the start of training. The fused
    `*_cross_entropy_with_logits` losses compute the same value from the logits with the
    log-sum-exp trick and never overflow.

    ## Example
    ```python
    y_conv = tf.nn.softmax(tf.matmul(h_fc1, W_fc2) + b_fc2)
    cross_entropy = -tf.reduce_sum(y_ * tf.log(y_conv))
    ```

    Use instead:
    ```python
    logits = tf.matmul(h_fc1, W_fc2) + b_fc2
    cross_entropy = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels=y_, logits=logits))
    ```
    or, keeping the probabilities, `tf.log(tf.clip_by_value(y_conv, 1e-10, 1.0))`.

    ## Fix safety
    When the whole cross-entropy is written `-tf.reduce_sum(y * tf.log(tf.nn.softmax(z)))`
    (directly or through a name bound to the softmax) and the logits `z` can be copied to
    the loss (names bound the same way there, only `matmul`/`+`/`reshape`-like ops), it is
    rewritten to `tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=z))`
    (with `axis=1` / `reduction_indices=[1]`, the per-example cross-entropy without the outer
    sum). The fix is unsafe: the value is the same up to rounding, but the gradient no longer
    flows into `y` (use `tf.stop_gradient` semantics if labels are learned), and the
    clipping some scripts rely on for stability is gone. No fix is offered otherwise.

    ## Confirmation
    `--confirm` looks for the `Log` op created at the flagged line (`log_input` event):
    `confirmed` when its input comes from a `Softmax`/`Sigmoid` op (or `1 -` one) with no
    clipping in between and the `Log` lies on the path of a gradient the script took, or a
    NaN/Inf appears at that line (evidence: "Log ← Softmax (line 12), no clipping, on the
    differentiated path"; a NaN/Inf in the loss or gradients is added). Several logs on one
    line are judged each by its own kind (`log(h)`, `log(1 - h)`). `refuted` when every traced
    `Log` at the line is clipped, or when the script ran to its end without differentiating it
    (a printed cost); a `Log` fed by an op the trace cannot classify is `inconclusive`.
    """

    code = "TFG401"
    name = "unstable-log-probability"
    severity = "warning"
    requires = ("log",)

    VALID = [
        # clipping
        Valid("""
            import tensorflow as tf
            y_conv = tf.nn.softmax(tf.matmul(h, W) + b)
            cross_entropy = -tf.reduce_sum(y_ * tf.log(tf.clip_by_value(y_conv, 1e-10, 1.0)))
        """),
        # an epsilon
        Valid("""
            import tensorflow as tf
            y = tf.nn.softmax(logits)
            loss = -tf.reduce_mean(tf.reduce_sum(labels * tf.math.log(y + 1e-8), axis=1))
        """),
        Valid("""
            import tensorflow as tf
            EPS = 1e-7
            p = tf.sigmoid(z)
            loss = -tf.reduce_mean(y * tf.log(p + EPS) + (1 - y) * tf.log(1 - p + EPS))
        """),
        # *_cross_entropy_with_logits
        Valid("""
            import tensorflow as tf
            logits = tf.matmul(h, W) + b
            y_conv = tf.nn.softmax(logits)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=y_, logits=logits))
        """),
        # Keras: K.clip / tf.maximum before the log, log_softmax
        Valid("""
            from tensorflow.keras import backend as K
            def loss(y_true, y_pred):
                y_pred = K.clip(y_pred, K.epsilon(), 1 - K.epsilon())
                return -K.sum(y_true * K.log(y_pred), axis=-1)
        """),
        Valid("""
            import tensorflow as tf
            probs = tf.nn.softmax(logits)
            logp = tf.math.log(tf.maximum(probs, 1e-12))
            logp2 = tf.nn.log_softmax(logits)
        """),
        # the log of something that is not a probability
        Valid("""
            import tensorflow as tf
            var = tf.exp(log_var)
            nll = 0.5 * tf.math.log(var) + tf.square(y - mu) / var
        """),
        # a helper that returns logits when training and probabilities otherwise: unknown
        Valid("""
            import tensorflow as tf
            def net(x, training):
                logits = tf.matmul(x, W)
                if training:
                    return logits
                return tf.nn.softmax(logits)
            out = tf.log(net(x, True))
        """),
    ]
    INVALID = [
        # the classic TF1 MNIST tutorial; fix: fused loss on the visible logits
        Invalid(
            """
            import tensorflow as tf
            x = tf.placeholder(tf.float32, [None, 784])
            y_ = tf.placeholder(tf.float32, [None, 10])
            y_conv = tf.nn.softmax(tf.matmul(h_fc1_drop, W_fc2) + b_fc2)
            cross_entropy = -tf.reduce_sum(y_ * tf.log(y_conv))
            """,
            line=5,
            message="softmax",
            fixed="""
            import tensorflow as tf
            x = tf.placeholder(tf.float32, [None, 784])
            y_ = tf.placeholder(tf.float32, [None, 10])
            y_conv = tf.nn.softmax(tf.matmul(h_fc1_drop, W_fc2) + b_fc2)
            cross_entropy = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels=y_, logits=tf.matmul(h_fc1_drop, W_fc2) + b_fc2))
            """,
        ),
        # per-example form (reduction_indices=[1])
        Invalid(
            """
            import tensorflow as tf
            y = tf.nn.softmax(tf.matmul(x, W) + b)
            cross_entropy = tf.reduce_mean(-tf.reduce_sum(y_ * tf.log(y), reduction_indices=[1]))
            """,
            line=3,
            fixed="""
            import tensorflow as tf
            y = tf.nn.softmax(tf.matmul(x, W) + b)
            cross_entropy = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y_, logits=tf.matmul(x, W) + b))
            """,
        ),
        # TF2 names, sigmoid and 1 - sigmoid: two findings, no fix
        Invalid(
            """
            import tensorflow as tf
            p = tf.math.sigmoid(z)
            loss = -tf.reduce_mean(y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p))
            """,
            line=3,
            message="sigmoid",
            count=2,
        ),
        # Keras: the last layer of a Sequential, called in a tape
        Invalid(
            """
            import tensorflow as tf
            from tensorflow.keras import layers
            model = tf.keras.Sequential([layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax")])
            with tf.GradientTape() as tape:
                probs = model(x, training=True)
                loss = -tf.reduce_mean(tf.reduce_sum(y * tf.math.log(probs), axis=1))
            """,
            line=6,
            message="last layer of `model`",
        ),
        # a custom Keras loss given to compile: y_pred is the model's softmax output
        Invalid(
            """
            from tensorflow import keras
            from tensorflow.keras import backend as K
            inputs = keras.Input((20,))
            outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(8)(inputs))
            model = keras.Model(inputs, outputs)
            def my_loss(y_true, y_pred):
                return -K.sum(y_true * K.log(y_pred), axis=-1)
            model.compile(optimizer="adam", loss=my_loss)
            """,
            line=7,
            message="y_pred",
        ),
        # a helper computing the loss, called with a softmax output (one level)
        Invalid(
            """
            import tensorflow as tf
            def cross_entropy(p, labels):
                return -tf.reduce_sum(labels * tf.log(p))
            pred = tf.layers.dense(h, 10, activation=tf.nn.softmax)
            loss = cross_entropy(pred, y)
            """,
            line=3,
            message="cross_entropy()",
        ),
        # a GAN discriminator helper returning (probability, logits): 1 - D(G(z)) as well
        Invalid(
            """
            import tensorflow as tf
            def discriminator(x):
                D_logit = tf.matmul(tf.nn.relu(tf.matmul(x, D_W1) + D_b1), D_W2) + D_b2
                return tf.nn.sigmoid(D_logit), D_logit
            D_real, D_logit_real = discriminator(X)
            D_fake, D_logit_fake = discriminator(G_sample)
            D_loss = -tf.reduce_mean(tf.log(D_real) + tf.log(1. - D_fake))
            """,
            line=7,
            message="return value of `discriminator()`",
            count=2,
        ),
        # policy gradient: log of the probability of the taken action
        Invalid(
            """
            import tensorflow as tf
            all_act_prob = tf.nn.softmax(all_act, name='act_prob')
            neg_log_prob = tf.reduce_sum(-tf.log(all_act_prob) * tf.one_hot(acts, n_actions), axis=1)
            """,
            line=3,
        ),
    ]

    def __init__(self, ctx, options=None) -> None:
        super().__init__(ctx, options)
        self.flow = Flow(ctx)

    # -- static ---------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        ctx = self.ctx
        if ctx.call_name(node) not in tfapi.names("numerics", "log"):
            return
        arg = get_arg(node, "x", 0)
        if arg is None or arg.star:
            return
        src = self.flow.source(arg.value, node)
        if not src.prob:
            return
        what = f"1 - a {src.kind}" if src.complement else f"a {src.kind}"
        assumed = ""
        if "y_pred" in src.via_text():
            assumed = " (assuming this loss is only used for that model)"
        producer = "Softmax" if src.kind == "softmax" else "Sigmoid"
        self.report(
            node,
            f"`{short(ctx, node)}` takes the log of {what} output ({origin(ctx, src)}){assumed} with no clipping "
            f"or epsilon: once the probability {'saturates to 1' if src.complement else 'underflows to 0'}, the log is -inf and the loss "
            "and gradients become NaN; compute the loss from the logits with a `*_cross_entropy_with_logits` "
            + ("loss (or `tf.nn.log_softmax`)" if src.kind == "softmax" else "loss")
            + ", or clip first (`tf.clip_by_value(p, 1e-10, 1.0)`)",
            fix=self._fix(node, src),
            data={
                "producer": producer,
                "producer_line": ctx.line(src.node) if src.node is not None else None,
                "complement": bool(src.complement),
            },
        )

    def _fix(self, log_call: cst.Call, src: Source):
        """`-tf.reduce_sum(y * tf.log(softmax(z))[, axis=1])` -> the fused loss on z."""
        ctx = self.ctx
        if src.kind != "softmax" or src.complement or src.pre is None or not isinstance(src.node, cst.Call):
            return None
        if len(src.node.args) != 1:  # an axis / name argument: keep it simple
            return None
        tf = tf_alias(ctx)
        if tf is None:
            return None
        mul = ctx.parent(log_call)
        if not (isinstance(mul, cst.BinaryOperation) and isinstance(mul.operator, cst.Multiply)):
            return None
        labels = mul.left if mul.right is log_call else mul.right
        if labels is log_call or mul.lpar or mul.rpar:
            return None
        arg = ctx.parent(mul)
        reduce = ctx.parent(arg) if isinstance(arg, cst.Arg) else None
        if not isinstance(reduce, cst.Call) or ctx.call_name(reduce) not in tfapi.names("losses", "reduce_sum"):
            return None
        if not reduce.args or reduce.args[0] is not arg or arg.keyword is not None:
            return None
        neg = ctx.parent(reduce)
        if not (isinstance(neg, cst.UnaryOperation) and isinstance(neg.operator, cst.Minus)):
            return None
        per_example = False
        rest = list(reduce.args[1:])
        if len(rest) > 1:
            return None
        if rest:
            a = rest[0]
            if a.keyword is not None and a.keyword.value not in tfapi.names("losses", "axis_keywords"):
                return None
            v = a.value
            if isinstance(v, (cst.List, cst.Tuple)) and len(v.elements) == 1:
                v = v.elements[0].value
            if number(v) not in (1.0, -1.0):
                return None
            per_example = True
        if not self.flow.portable(src.pre, src.node, neg):
            return None
        fused = f"{tf}.{tfapi.table('losses', 'softmax_cross_entropy_fix')}(labels={ctx.code(labels).strip()}, logits={ctx.code(src.pre).strip()})"
        new = fused if per_example else f"{tf}.reduce_sum({fused})"
        return self.replace(neg, new, "Compute the cross-entropy from the logits with the fused loss", "unsafe")

    # -- confirmation -------------------------------------------------------------------
    OBSERVES = ("log_input", "nonfinite")
    CONFIRMS = [
        Traced(
            (event("log_input", 10, op="Log", input_op_type="Softmax", clipped=False, differentiated=True),),
            evidence="Log ← Softmax (line 9), no clipping, on the differentiated path",
            data={"producer_line": 9},
        ),
        Traced(  # issue 10: `log(h)` and `log(1 - h)` on one line: each finding is judged by its own Log
            (
                event("log_input", 10, op="Log", input_op_type="Sigmoid", clipped=True, differentiated=True),
                event(
                    "log_input",
                    10,
                    op="Log_1",
                    input_op_type="Sigmoid",
                    clipped=False,
                    differentiated=True,
                    complement=True,
                ),
            ),
            evidence="Log ← 1 - Sigmoid",
            data={"complement": True},
        ),
        Traced(  # an older trace without `complement`: a Sub-fed Log does not hide the Sigmoid-fed one
            (
                event("log_input", 10, op="Log", input_op_type="Sub", clipped=False, differentiated=True),
                event("log_input", 10, op="Log_1", input_op_type="Sigmoid", clipped=False, differentiated=True),
            ),
            evidence="Log ← Sigmoid",
        ),
        Traced(
            (event("nonfinite", 10, op="Log", op_type="Log", where="forward", value="Inf"),),
            evidence="forward became Inf",
        ),
    ]
    REFUTES = [
        Traced(
            (event("log_input", 10, op="Log", input_op_type="Softmax", clipped=True, differentiated=True),),
            evidence="the traced Log at line 10 is clipped",
        ),
        Traced(  # issue 10: a cost printed but never differentiated, and the script ran to its end
            (event("log_input", 10, op="Log", input_op_type="Sigmoid", clipped=False, differentiated=False),),
            evidence="the instability cannot reach training",
            status="finished",
        ),
    ]
    INCONCLUSIVE = [
        Traced(  # issue 10: a cost printed but never differentiated, in a run stopped at the step limit
            (event("log_input", 10, op="Log", input_op_type="Sigmoid", clipped=False, differentiated=False),),
            evidence="not on the path of any gradient",
            status="stopped",
        ),
        Traced(  # a Log fed by an op the trace cannot classify: not proof of safety
            (event("log_input", 10, op="Log", input_op_type="Sub", clipped=False, differentiated=True),),
            evidence="fed by Sub",
        ),
        Traced((), evidence="no Log op was traced at line 10"),
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        probs = set(tfapi.names("losses", "probability_op_types"))
        logs = trace.events_at("log_input", finding.line, finding.end_line)
        # several logs on one line (`log(h)` and `log(1 - h)`): judge the ones of this finding's kind
        want = bool(finding.data.get("complement"))
        logs = [e for e in logs if bool(e.get("complement")) == want] or logs
        hits = trace.events_at("nonfinite", finding.line, finding.end_line)
        nan = _nonfinite_text(hits[0]) if hits else _nonfinite_note(trace)
        risky = [e for e in logs if e.get("input_op_type") in probs and not e.get("clipped")]
        where = finding.data.get("producer_line")
        at = f" (line {where})" if where else ""
        for e in risky:  # the consequence: on the differentiated path, or a NaN/Inf at this line
            if e.get("differentiated") is True or hits:
                of = "1 - " if e.get("complement") else ""
                path = ", on the differentiated path" if e.get("differentiated") is True else ""
                return confirmed(
                    f"Log ← {of}{e.get('input_op_type')}{at}, no clipping{path}" + (f"; {nan}" if nan else "")
                )
        if hits:
            return confirmed(_nonfinite_text(hits[0]))
        if risky:
            e = risky[0]
            if e.get("differentiated") is False:
                text = (
                    f"Log ← {e.get('input_op_type')} at line {e.get('line')}, no clipping, but it is not on the path "
                    "of any gradient the script took: the instability cannot reach training"
                )
                # the whole script ran: every gradient it takes was seen (else a later one might)
                return refuted(text) if trace.status == "finished" else inconclusive(text)
            return inconclusive(
                f"Log ← {e.get('input_op_type')} at line {e.get('line')}, no clipping; "
                "whether a gradient flows through it was not observed"
            )
        if logs and all(e.get("clipped") for e in logs):
            return refuted(f"the traced Log at line {logs[0].get('line')} is clipped")
        unknown = [e for e in logs if not e.get("clipped")]
        if unknown:
            kinds = ", ".join(sorted({str(e.get("input_op_type")) for e in unknown}))
            return inconclusive(
                f"the Log at line {unknown[0].get('line')} is fed by {kinds}, which the trace cannot classify as "
                "a probability or a guarded value"
            )
        return inconclusive(f"no Log op was traced at line {finding.line}")


def _nonfinite_text(e: dict) -> str:
    where = e.get("where") or "a tensor"
    value = e.get("value") or "NaN/Inf"
    op = e.get("op_type") or e.get("op")
    at = f" ({op}, line {e.get('line')})" if op else ""
    return f"{where} became {value} at step {e.get('step')}{at}"


def _nonfinite_note(trace) -> str | None:
    for e in trace.events_of("nonfinite"):
        if e.get("where") in ("loss", "gradient"):
            return _nonfinite_text(e)
    return None
