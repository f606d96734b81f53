from __future__ import annotations

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis.producers import fit_lines, flow, loss_site, origin, set_keyword, short
from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive, refuted
from tflint_grad.tracer.events import event

_ATOMS = (cst.Name, cst.Attribute, cst.Call, cst.Subscript)


class ActivationOnLogits(Rule):
    """A ReLU (or another activation) on the final layer whose output is used as logits.

    ## What it does
    Flags a `*_with_logits` loss (`tf.nn.softmax_cross_entropy_with_logits[_v2]`,
    `sparse_...`, `sigmoid_...`, TF1 `tf.losses.*_cross_entropy`) or a Keras cross-entropy with
    `from_logits=True` (called directly, as a loss object, or given to `model.compile`) whose
    logits come straight out of an activation other than softmax/sigmoid: `tf.nn.relu(...)`,
    `Dense(10, activation="relu")`, `tf.layers.dense(h, 10, activation=tf.nn.tanh)`, a final
    `ReLU()` layer, or `tf.contrib.layers.fully_connected(h, 10)` (whose default
    `activation_fn` is ReLU). Softmax/sigmoid outputs are TFG402. Helpers are read under the
    constant arguments of their call, like TFG402 (`head(h, use_relu=False)` skips
    `if use_relu: out = tf.nn.relu(out)`).

    ## Why is this bad?
    Logits must be free to take any real value. A ReLU on the output layer clamps every
    negative logit to 0 with a zero gradient: classes whose logit goes negative stop learning
    ("dead" logits) and the loss plateaus well above its minimum; `tanh` bounds the logits to
    [-1, 1] so the softmax can never become confident. The activation belongs to the hidden
    layers only.

    ## Example
    ```python
    logits = tf.nn.relu(tf.matmul(h, W2) + b2)
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits))
    ```

    Use instead:
    ```python
    logits = tf.matmul(h, W2) + b2
    ```

    ## Fix safety
    Unsafe (it changes the model): the activation call is replaced by its input, an
    `activation=`/`activation_fn=` argument of the final layer becomes `None`, and a
    `fully_connected` layer relying on its ReLU default gets `activation_fn=None`. Final
    activation layers (`ReLU()`, `Activation("relu")`) are not removed automatically.

    ## Confirmation
    `--confirm` reads the `logits_input` events of the loss (at its line, or at the
    `model.fit` lines for a compiled loss): `confirmed` when the traced logits come from an
    activation op (`Relu`, `Tanh`, `Elu`...), `refuted` when they come from a linear op
    (`MatMul`, `BiasAdd`, `Add`).
    """

    code = "TFG503"
    name = "activation-on-logits"
    severity = "warning"
    requires = ("_logits", "cross_entropy")

    VALID = [
        # ReLU on the hidden layer, none on the logits
        Valid("""
            import tensorflow as tf
            h = tf.nn.relu(tf.matmul(x, W1) + b1)
            logits = tf.matmul(h, W2) + b2
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=logits))
        """),
        Valid("""
            from tensorflow import keras
            model = keras.Sequential([keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
            model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        """),
        # explicit activation_fn=None; a ReLU model with a probability loss (not this rule)
        Valid("""
            import tensorflow as tf
            logits = tf.contrib.layers.fully_connected(h, 10, activation_fn=None)
            loss = tf.losses.softmax_cross_entropy(onehot_labels, logits)
            m = tf.keras.Sequential([tf.keras.layers.Dense(10, activation="relu")])
            m.compile(loss="categorical_crossentropy")
        """),
        # log_softmax outputs are valid logits; unknown last layer
        Valid("""
            import tensorflow as tf
            model = tf.keras.Sequential([tf.keras.layers.Dense(10, activation="log_softmax")])
            model.compile(loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True))
            other = tf.keras.Sequential([tf.keras.layers.Dense(10), CustomHead()])
            other.compile(loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True))
        """),
        # a ReLU under a branch the training call does not take (issue 9)
        Valid("""
            import tensorflow as tf
            def head(h, use_relu=True):
                out = tf.layers.dense(h, 10)
                if use_relu:
                    out = tf.nn.relu(out)
                return out
            logits = head(features, use_relu=False)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=logits))
        """),
    ]
    INVALID = [
        Invalid(
            """
            import tensorflow as tf
            h = tf.nn.relu(tf.matmul(x, W1) + b1)
            logits = tf.nn.relu(tf.matmul(h, W2) + b2)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=logits))
            """,
            line=4,
            message="relu",
            fixed="""
            import tensorflow as tf
            h = tf.nn.relu(tf.matmul(x, W1) + b1)
            logits = tf.matmul(h, W2) + b2
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=logits))
            """,
        ),
        Invalid(
            """
            from tensorflow import keras
            model = keras.Sequential([keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="relu")])
            model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            model.fit(x, y, epochs=2)
            """,
            line=3,
            message="`relu`",
            fixed="""
            from tensorflow import keras
            model = keras.Sequential([keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation=None)])
            model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            model.fit(x, y, epochs=2)
            """,
        ),
        # fully_connected applies ReLU by default
        Invalid(
            """
            import tensorflow as tf
            logits = tf.contrib.layers.fully_connected(h, 10)
            loss = tf.losses.softmax_cross_entropy(onehot_labels, logits)
            """,
            line=3,
            message="default",
            fixed="""
            import tensorflow as tf
            logits = tf.contrib.layers.fully_connected(h, 10, activation_fn=None)
            loss = tf.losses.softmax_cross_entropy(onehot_labels, logits)
            """,
        ),
        # tanh on the last layer of a functional model, custom loop with a loss object
        Invalid(
            """
            import tensorflow as tf
            inputs = tf.keras.Input((4,))
            outputs = tf.keras.layers.Dense(3, activation="tanh")(tf.keras.layers.Dense(16, activation="relu")(inputs))
            model = tf.keras.Model(inputs, outputs)
            loss_fn = tf.keras.losses.CategoricalCrossentropy(from_logits=True)
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x))
            """,
            line=7,
            message="tanh",
        ),
        # inline activation in the loss call
        Invalid(
            """
            import tensorflow as tf
            loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=tf.nn.relu(z + b))
            """,
            line=2,
            fixed="""
            import tensorflow as tf
            loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z + b)
            """,
        ),
    ]

    def __init__(self, ctx, options=None) -> None:
        super().__init__(ctx, options)
        self.flow = flow(ctx)

    # -- static ---------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        site = loss_site(self.flow, node)
        if site is None or site.expects != "logits" or site.pred.kind != "activation":
            return
        ctx = self.ctx
        s = site.pred
        act = s.activation or "activation"
        pred = (
            f"`{short(ctx, site.pred_expr, 40)}`"
            if site.pred_expr is not None
            else f"the output of `{short(ctx, site.model, 30)}`"
            if site.model is not None
            else "the prediction"
        )
        default = ""
        if s.layer is not None and s.act_arg is None:
            default = f" (the default `activation_fn` of `{short(ctx, s.layer.func, 40)}` is ReLU)"
        if act.startswith("relu") or act in ("elu", "selu", "softplus", "exponential", "abs"):
            why = "every logit is clamped to non-negative values, classes whose logit goes below zero get no gradient (dead logits) and the loss plateaus"
        else:
            why = f"`{act}` bounds the logits, so the predicted distribution can never become confident and the loss plateaus"
        lines = [ctx.line(site.report)] + fit_lines(ctx, site)
        self.report(
            site.report,
            f"{site.api} expects unconstrained logits, but {pred} comes out of a `{act}` activation{default} "
            f"({origin(ctx, s)}): {why}; remove the activation from the final layer",
            fix=self._fix(s),
            data={
                "activation": act,
                "producer_line": ctx.line(s.node) if s.node is not None else None,
                "event_lines": sorted(set(lines)),
            },
        )

    def _fix(self, s):
        ctx = self.ctx
        if s.layer is not None:
            if s.act_arg is not None:
                return self.replace(s.act_arg.value, "None", "Remove the activation of the final layer", "unsafe")
            row = next((r for r in tfapi.table("losses", "activation_layers") if r[0] == ctx.call_name(s.layer)), None)
            if row is not None:
                return set_keyword(
                    self, s.layer, row[1], "None", "Remove the default activation of the final layer", row[2]
                )
            return None
        if isinstance(s.node, cst.Call) and s.pre is not None and len(s.node.args) == 1:
            text = ctx.code(s.pre).strip()
            parent = ctx.parent(s.node)
            if not isinstance(s.pre, _ATOMS) and not isinstance(
                parent, (cst.Arg, cst.Assign, cst.AnnAssign, cst.Return, cst.Element)
            ):
                text = f"({text})"
            return self.replace(s.node, text, f"Remove the `{s.activation}` on the logits", "unsafe")
        return None

    # -- confirmation -------------------------------------------------------------------
    OBSERVES = ("logits_input",)
    CONFIRMS = [
        Traced(
            (event("logits_input", 10, function="softmax_cross_entropy_with_logits", input_op_type="Relu"),),
            evidence="comes from Relu (line 8)",
            data={"activation": "relu", "producer_line": 8, "event_lines": [10]},
        )
    ]
    REFUTES = [
        Traced(
            (event("logits_input", 10, function="softmax_cross_entropy_with_logits", input_op_type="MatMul"),),
            evidence="comes from MatMul, not from an activation",
            data={"activation": "relu", "event_lines": [10]},
        )
    ]
    INCONCLUSIVE = [
        Traced(
            (event("logits_input", 10, function="softmax_cross_entropy_with_logits", input_op_type="Concat"),),
            evidence="cannot classify",
            data={"activation": "relu", "event_lines": [10]},
        ),
        Traced((), evidence="no loss input was traced", data={"activation": "relu", "event_lines": [10]}),
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        acts = tfapi.names("losses", "activation_op_types")
        linear = tfapi.names("losses", "linear_op_types")
        lines = set(range(finding.line, finding.end_line + 1)) | set(finding.data.get("event_lines") or ())
        events = [e for e in trace.events_of("logits_input") if e.get("line") in lines]
        if not events:
            return inconclusive(f"no loss input was traced at line {finding.line}")
        for e in events:  # every loss input on the line is judged
            t = e.get("input_op_type")
            if t in acts:
                where = finding.data.get("producer_line")
                at = f" (line {where})" if where else ""
                return confirmed(f"the logits input of the loss at line {e.get('line')} comes from {t}{at}")
        if all(e.get("input_op_type") in linear for e in events):
            e = events[0]
            return refuted(
                f"the logits input of the loss at line {e.get('line')} comes from {e.get('input_op_type')}, not from an activation"
            )
        kinds = ", ".join(sorted({str(e.get("input_op_type")) for e in events}))
        return inconclusive(f"the logits input at line {finding.line} comes from {kinds}: the trace cannot classify it")
