from __future__ import annotations

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis import get_arg, number
from tflint_grad.analysis.facts import tf_alias
from tflint_grad.analysis.producers import Source, flow, origin, short
from tflint_grad.analysis.targets import gradient_targets
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
    `y_pred` of a custom loss given to `model.compile(loss=...)`. A sigmoid written by hand
    (`1 / (1 + tf.exp(-z))`, `tf.div(1., 1. + tf.exp(z))`) counts, and so do probabilities
    written to a `tf.TensorArray` and read back with `stack()`. A helper is read under the
    constant arguments of its call (`model(x, is_training=True)` skips
    `if not is_training: x = tf.nn.softmax(x)`), and of its call sites, those on the path to
    a gradient come first. It also flags the log of an unbounded linear output
    (`tf.log(tf.matmul(h, W) + b)`): NaN at the first negative value.

    The finding is shown (confidence `high`) when the log visibly lies on the path to a
    gradient target (the loss of `tape.gradient`, `tf.gradients`, `minimize`,
    `compute_gradients`, `add_loss`, or `compile`). A log that no gradient target uses (a
    TensorBoard summary, an evaluation metric, a cost that is only printed in a file that
    back-propagates by hand) is a `low` candidate, hidden by default.

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
        # never differentiated: back-propagation by hand (the cost is only printed), a summary, a metric
        Valid("""
            import tensorflow as tf
            Y_pred = tf.sigmoid(tf.matmul(X, W) + b)
            cost = -tf.reduce_mean(Y * tf.log(Y_pred) + (1 - Y) * tf.log(1 - Y_pred))
            d_Y_pred = (Y_pred - Y) / (Y_pred * (1.0 - Y_pred) + 1e-7)
            d_W = tf.matmul(tf.transpose(X), d_Y_pred * Y_pred * (1 - Y_pred))
            update = tf.assign(W, W - learning_rate * d_W)
            tf.summary.scalar('entropy', -tf.reduce_sum(Y_pred * tf.log(Y_pred)))
            with tf.Session() as sess:
                for step in range(1000):
                    _, cost_val = sess.run([update, cost], feed_dict={X: x_data, Y: y_data})
                    print(step, cost_val)
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
            train_step = tf.train.AdamOptimizer(1e-4).minimize(cross_entropy)
            """,
            line=5,
            message="softmax",
            fixed="""
            import tensorflow as tf
            x = tf.placeholder(tf.float32, [None, 784])
            y_ = tf.placeholder(tf.float32, [None, 10])
            y_conv = tf.nn.softmax(tf.matmul(h_fc1_drop, W_fc2) + b_fc2)
            cross_entropy = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels=y_, logits=tf.matmul(h_fc1_drop, W_fc2) + b_fc2))
            train_step = tf.train.AdamOptimizer(1e-4).minimize(cross_entropy)
            """,
        ),
        # per-example form (reduction_indices=[1])
        Invalid(
            """
            import tensorflow as tf
            y = tf.nn.softmax(tf.matmul(x, W) + b)
            cross_entropy = tf.reduce_mean(-tf.reduce_sum(y_ * tf.log(y), reduction_indices=[1]))
            train_step = tf.train.GradientDescentOptimizer(0.5).minimize(cross_entropy)
            """,
            line=3,
            fixed="""
            import tensorflow as tf
            y = tf.nn.softmax(tf.matmul(x, W) + b)
            cross_entropy = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y_, logits=tf.matmul(x, W) + b))
            train_step = tf.train.GradientDescentOptimizer(0.5).minimize(cross_entropy)
            """,
        ),
        # TF2 names, sigmoid and 1 - sigmoid: two findings, no fix
        Invalid(
            """
            import tensorflow as tf
            p = tf.math.sigmoid(z)
            loss = -tf.reduce_mean(y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p))
            grads = tf.gradients(loss, [w])
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
            grads = tape.gradient(loss, model.trainable_variables)
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
            train = tf.train.AdamOptimizer().minimize(loss)
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
            D_solver = tf.train.AdamOptimizer().minimize(D_loss, var_list=theta_D)
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
            loss = tf.reduce_mean(neg_log_prob * tf_vt)
            train_op = tf.train.AdamOptimizer(lr).minimize(loss)
            """,
            line=3,
        ),
        # the log of a hand-written sigmoid, 1 / (1 + exp(-z)) (issue 9)
        Invalid(
            """
            import tensorflow as tf
            hypothesis = tf.div(1., 1. + tf.exp(tf.matmul(X, W) + b))
            cost = -tf.reduce_mean(Y * tf.log(hypothesis) + (1 - Y) * tf.log(1 - hypothesis))
            train = tf.train.GradientDescentOptimizer(learning_rate=0.01).minimize(cost)
            """,
            line=3,
            message="sigmoid",
            count=2,
        ),
        Invalid(
            """
            import tensorflow as tf
            p = 1 / (1 + tf.exp(-logits))
            loss = -tf.reduce_mean(y * tf.math.log(p))
            grads = tf.gradients(loss, params)
            """,
            line=3,
            message="sigmoid",
        ),
        # probabilities written to a TensorArray and stacked (the actor-critic tutorial's shape)
        Invalid(
            """
            import tensorflow as tf
            def train_step(model, states, actions, returns):
                with tf.GradientTape() as tape:
                    action_probs = tf.TensorArray(dtype=tf.float32, size=0, dynamic_size=True)
                    for t in tf.range(n):
                        logits_t = model(states[t])
                        probs_t = tf.nn.softmax(logits_t)
                        action_probs = action_probs.write(t, probs_t[0, actions[t]])
                    action_probs = action_probs.stack()
                    loss = -tf.reduce_sum(tf.math.log(action_probs) * returns)
                grads = tape.gradient(loss, model.trainable_variables)
            """,
            line=10,
            message="TensorArray",
        ),
        # the actor-critic tutorial: TensorArray-stacked probabilities returned by a helper, reshaped in a
        # comprehension, and passed to the loss helper (two hops)
        Invalid(
            """
            import tensorflow as tf
            def run_episode(state, model, max_steps):
                action_probs = tf.TensorArray(dtype=tf.float32, size=0, dynamic_size=True)
                values = tf.TensorArray(dtype=tf.float32, size=0, dynamic_size=True)
                for t in tf.range(max_steps):
                    action_logits_t, value = model(state)
                    action = tf.random.categorical(action_logits_t, 1)[0, 0]
                    action_probs_t = tf.nn.softmax(action_logits_t)
                    values = values.write(t, tf.squeeze(value))
                    action_probs = action_probs.write(t, action_probs_t[0, action])
                return action_probs.stack(), values.stack()
            def compute_loss(action_probs, values, returns):
                action_log_probs = tf.math.log(action_probs)
                return -tf.math.reduce_sum(action_log_probs * (returns - values))
            def train_step(state, model, optimizer, max_steps):
                with tf.GradientTape() as tape:
                    action_probs, values = run_episode(state, model, max_steps)
                    returns = get_expected_return(values)
                    action_probs, values = [tf.expand_dims(x, 1) for x in [action_probs, values]]
                    loss = compute_loss(action_probs, values, returns)
                grads = tape.gradient(loss, model.trainable_variables)
            """,
            line=13,
            message="return value of `run_episode()`",
        ),
        # a method parameter fed a sigmoid output at its call sites
        Invalid(
            """
            import tensorflow as tf
            class GAN:
                def bce(self, p, y):
                    return -tf.reduce_mean(y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p))
                def train_step(self, x):
                    with tf.GradientTape() as tape:
                        d_real = tf.sigmoid(self.disc(x))
                        loss = self.bce(d_real, tf.ones_like(d_real))
                    grads = tape.gradient(loss, self.disc.trainable_variables)
            """,
            line=4,
            message="argument",
            count=2,
        ),
        # keras.ops.log of y_pred in a custom loss passed to compile
        Invalid(
            """
            import keras
            model = keras.Sequential([keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
            def bce(y_true, y_pred):
                return -keras.ops.mean(y_true * keras.ops.log(y_pred) + (1 - y_true) * keras.ops.log(1 - y_pred))
            model.compile(optimizer="adam", loss=bce)
            """,
            line=4,
            message="y_pred",
            count=2,
        ),
        # the log of an unbounded linear output: NaN at the first negative value
        Invalid(
            """
            import tensorflow as tf
            h = tf.nn.relu(tf.matmul(x, W1) + b1)
            y = tf.matmul(h, W2) + b2
            cost = -tf.reduce_sum(y_ * tf.log(y))
            train = tf.train.AdamOptimizer().minimize(cost)
            """,
            line=4,
            message="unbounded linear output",
        ),
        # the same log, printed but never differentiated: a candidate only
        Invalid(
            """
            import tensorflow as tf
            all_act_prob = tf.nn.softmax(all_act, name='act_prob')
            neg_log_prob = tf.reduce_sum(-tf.log(all_act_prob) * tf.one_hot(acts, n_actions), axis=1)
            """,
            line=3,
            confidence="low",
        ),
    ]

    def __init__(self, ctx, options=None) -> None:
        super().__init__(ctx, options)
        self.flow = flow(ctx)

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
            if src.kind == "logits" and self._unbounded(src):
                self._report_linear(node, src)
            return
        what = f"1 - a {src.kind}" if src.complement else f"a {src.kind}"
        assumed = ""
        if "y_pred" in src.via_text():
            assumed = " (assuming this loss is only used for that model)"
        confidence = "high"
        if not gradient_targets(ctx).reaches(ctx, node):
            # a metric, a summary, a printed cost: never differentiated, as far as the file shows
            confidence = "low"
            assumed += " (assuming it is differentiated: no gradient target of this file visibly uses it)"
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
            confidence=confidence,
        )

    def _unbounded(self, src: Source) -> bool:
        """The value is a matrix product (plus a bias): nothing keeps it positive."""
        node = src.node
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add):
            node = next((n for n in (node.left, node.right) if self._linear_op(n)), None)
        return node is not None and self._linear_op(node)

    def _linear_op(self, node: cst.CSTNode) -> bool:
        if isinstance(node, cst.BinaryOperation):
            return isinstance(node.operator, cst.MatrixMultiply)
        return isinstance(node, cst.Call) and self.ctx.call_name(node) in tfapi.names("numerics", "unbounded_linear")

    def _report_linear(self, node: cst.Call, src: Source) -> None:
        ctx = self.ctx
        on_path = gradient_targets(ctx).reaches(ctx, node)
        assumed = "" if on_path else " (assuming it is differentiated: no gradient target of this file visibly uses it)"
        self.report(
            node,
            f"`{short(ctx, node)}` takes the log of an unbounded linear output ({origin(ctx, src)}){assumed}: "
            "a matrix product is negative for some inputs, and the log of a negative value is NaN (of 0, -inf), "
            "so the loss and gradients become NaN; apply a softmax/sigmoid and use a `*_cross_entropy_with_logits` "
            "loss on the linear output, or `tf.nn.softplus` if a positive value is meant",
            data={"producer": "MatMul", "producer_line": ctx.line(src.node) if src.node is not None else None},
            confidence="high" if on_path else "low",
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
        Traced(  # the log of an unbounded linear output (x @ w + b), differentiated
            (event("log_input", 10, op="Log", input_op_type="BiasAdd", clipped=False, differentiated=True),),
            evidence="Log ← BiasAdd (line 9), no clipping, on the differentiated path",
            data={"producer": "MatMul", "producer_line": 9},
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
        if finding.data.get("producer") == "MatMul":  # the log of an unbounded linear output
            probs = set(tfapi.names("losses", "linear_op_types"))
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
