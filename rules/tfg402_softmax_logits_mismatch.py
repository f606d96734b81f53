from __future__ import annotations

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis.facts import keras_alias
from tflint_grad.analysis.producers import (
    LossSite,
    fit_lines,
    flow,
    literal_bool,
    loss_site,
    origin,
    set_keyword,
    short,
)
from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive, refuted
from tflint_grad.tracer.events import event


class SoftmaxLogitsMismatch(Rule):
    """Probabilities passed as logits, or logits passed as probabilities, to a cross-entropy.

    ## What it does
    Flags a cross-entropy whose prediction has the wrong kind:
    - a softmax/sigmoid output passed to a `*_with_logits` loss
      (`tf.nn.softmax_cross_entropy_with_logits[_v2]`, `sparse_...`, `sigmoid_...`,
      TF1 `tf.losses.softmax_cross_entropy`...) or to a Keras loss with `from_logits=True`;
    - raw logits (a last `Dense`/`tf.layers.dense` with no activation, `x @ W + b`) passed to
      a Keras cross-entropy with `from_logits=False` (the default): `loss_fn(y, model(x))`,
      `keras.losses.categorical_crossentropy(y, logits)`, and `model.compile(loss=...)` with a
      string (`'sparse_categorical_crossentropy'`), a loss object or a loss function, when the
      compiled model's last layer is known (`Sequential` list or `.add`, functional `Model`,
      subclassed `call`, a helper that builds the model).

    The model or helper is read under the constant arguments of the call that trains it:
    `model(x, is_training=True)` skips `if not is_training: x = tf.nn.softmax(x)`, and of a loss
    helper's call sites, those on the path to a gradient come first (a loss that is only
    printed does not decide). `Activation('linear')` (a float32 cast in mixed precision) is the
    identity over its input, and `model.add(...)` calls count only for the model bound where
    they are made (a later `model = Sequential()` in another cell is another model).

    ## Why is this bad?
    A `*_with_logits` loss applies softmax (or sigmoid) itself: feeding it probabilities
    applies it twice. The doubly squashed outputs lie in a narrow band, gradients shrink and
    training stalls at a high loss. The other way round, Keras treats raw logits as
    probabilities: it clips them to [1e-7, 1 - 1e-7] (or renormalizes them), the gradient
    of every clipped logit is zero, and the model trains on a wrong objective or not at all.
    Both run without an error. (Keras 3's own cross-entropies recover the logits when the
    prediction comes straight from a Keras softmax/sigmoid activation, and only warn;
    `tf.nn` losses, `tf.nn.softmax` outputs and TF1 code apply the activation twice.)

    ## Example
    ```python
    model = keras.Sequential([keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    ```

    Use instead:
    ```python
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ```
    and for probabilities fed to a logits loss, pass the logits from before the softmax.

    ## Fix safety
    Unsafe (it changes what is trained). Probabilities given as logits: when the softmax is
    written in the loss call, or bound to a name whose logits expression can be copied to the
    loss, the softmax is dropped (`logits=z`); otherwise, for a Keras loss, `from_logits=True`
    becomes `from_logits=False`. Logits given as probabilities: `from_logits=True` is set on the
    Keras loss (a `compile` string becomes the loss class with `from_logits=True`).

    ## Confirmation
    `--confirm` reads the `logits_input` events of the loss (at its line, or at the
    `model.fit` lines for a compiled loss). Probabilities as logits: `confirmed` when the
    traced logits input comes from a `Softmax`/`Sigmoid` op, `refuted` when it comes from a
    linear op (`MatMul`, `BiasAdd`, `Add`). Logits as probabilities (also `log_input` events):
    `confirmed` when the prediction comes from a linear op, `refuted` when from a
    `Softmax`/`Sigmoid`.
    """

    code = "TFG402"
    name = "softmax-logits-mismatch"
    severity = "warning"
    requires = ("_logits", "rossentropy", "cross_entropy")

    VALID = [
        # logits to a *_with_logits loss
        Valid("""
            import tensorflow as tf
            logits = tf.matmul(h, W) + b
            y_conv = tf.nn.softmax(logits)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y_, logits=logits))
        """),
        # raw logits with from_logits=True; probabilities with from_logits=False
        Valid("""
            from tensorflow import keras
            model = keras.Sequential([keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
            model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        """),
        Valid("""
            from tensorflow import keras
            model = keras.Sequential()
            model.add(keras.layers.Dense(64, activation="relu"))
            model.add(keras.layers.Dense(10, activation="softmax"))
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        """),
        Valid("""
            import tensorflow as tf
            inputs = tf.keras.Input((8,))
            outputs = tf.keras.layers.Dense(1, activation="sigmoid")(inputs)
            model = tf.keras.Model(inputs, outputs)
            model.compile(loss=tf.keras.losses.BinaryCrossentropy(), optimizer="sgd")
        """),
        # a Softmax layer after the last Dense; Dropout after a softmax Dense
        Valid("""
            from tensorflow import keras
            model = keras.Sequential([keras.layers.Dense(10), keras.layers.Softmax()])
            model.compile(loss="categorical_crossentropy")
            model2 = keras.Sequential([keras.layers.Dense(10, activation="softmax"), keras.layers.Dropout(0.1)])
            model2.compile(loss="categorical_crossentropy")
        """),
        # unknown content (a custom layer, a model loaded from disk), non-literal from_logits
        Valid("""
            from tensorflow import keras
            model = keras.Sequential([keras.layers.Dense(10), MyHead()])
            model.compile(loss="sparse_categorical_crossentropy")
            loaded = keras.models.load_model("m.keras")
            loaded.compile(loss="sparse_categorical_crossentropy")
            loss_fn = keras.losses.CategoricalCrossentropy(from_logits=use_logits)
            loss = loss_fn(y, keras.layers.Dense(10)(h))
        """),
        # probabilities to a probability loss
        Valid("""
            import tensorflow as tf
            probs = tf.nn.softmax(logits)
            loss = tf.keras.losses.categorical_crossentropy(y, probs)
        """),
        # helpers read under the training call's constant arguments (issue 9): the softmax runs only
        # `if not is_training`, and training calls `model(x, is_training=True)`
        Valid("""
            import tensorflow as tf
            from tensorflow.keras import Model, layers
            class NeuralNet(Model):
                def __init__(self):
                    super().__init__()
                    self.fc1 = layers.Dense(256, activation=tf.nn.relu)
                    self.out = layers.Dense(10)
                def call(self, x, is_training=False):
                    x = self.fc1(x)
                    x = self.out(x)
                    if not is_training:
                        x = tf.nn.softmax(x)
                    return x
            neural_net = NeuralNet()
            def cross_entropy_loss(x, y):
                return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x))
            def run_optimization(x, y):
                with tf.GradientTape() as g:
                    pred = neural_net(x, is_training=True)
                    loss = cross_entropy_loss(pred, y)
                gradients = g.gradient(loss, neural_net.trainable_variables)
            for step, (batch_x, batch_y) in enumerate(train_data):
                run_optimization(batch_x, batch_y)
                pred = neural_net(batch_x)  # a displayed loss, never differentiated
                print(step, cross_entropy_loss(pred, batch_y))
        """),
        # `Activation('linear')` is the identity (a float32 cast in mixed precision): the model outputs the softmax
        Valid("""
            from tensorflow import keras
            from tensorflow.keras import layers
            inputs = keras.Input(shape=(784,))
            x = layers.Dense(64, activation='relu')(inputs)
            x = layers.Dense(10)(x)
            outputs = layers.Activation('softmax')(x)
            outputs = layers.Activation('linear', dtype='float32')(outputs)
            model = keras.Model(inputs=inputs, outputs=outputs)
            model.compile(loss='sparse_categorical_crossentropy', optimizer='rmsprop')
        """),
        # a later `model = Sequential()` (another notebook cell) does not change the model compiled before it
        Valid("""
            from tensorflow.keras import layers
            from tensorflow.keras.models import Sequential
            model = Sequential()
            model.add(layers.Dense(32, activation='relu'))
            model.add(layers.Dense(1, activation='sigmoid'))
            model.compile(optimizer='rmsprop', loss='binary_crossentropy')
            model = Sequential()
            model.add(layers.Dense(32, activation='relu'))
            model.add(layers.Dense(1))
            model.compile(optimizer='rmsprop', loss='mae')
        """),
    ]
    INVALID = [
        # TF1: softmax output given as logits; fix: the logits expression
        Invalid(
            """
            import tensorflow as tf
            y = tf.nn.softmax(tf.matmul(x, W) + b)
            cross_entropy = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y_, logits=y))
            """,
            line=3,
            message="expects logits",
            fixed="""
            import tensorflow as tf
            y = tf.nn.softmax(tf.matmul(x, W) + b)
            cross_entropy = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y_, logits=tf.matmul(x, W) + b))
            """,
        ),
        # inline softmax: dropped
        Invalid(
            """
            import tensorflow as tf
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=tf.nn.softmax(z))
            """,
            line=2,
            fixed="""
            import tensorflow as tf
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z)
            """,
        ),
        # compile with a string after a last Dense with no activation
        Invalid(
            """
            from tensorflow import keras
            model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            """,
            line=3,
            message="raw logits",
            fixed="""
            from tensorflow import keras
            model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
            model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
            """,
        ),
        # custom loop: softmax model, loss object with from_logits=True
        Invalid(
            """
            import tensorflow as tf
            model = tf.keras.Sequential([tf.keras.layers.Dense(32, activation="relu"), tf.keras.layers.Dense(10, activation="softmax")])
            loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            """,
            line=5,
            message="softmax",
            fixed="""
            import tensorflow as tf
            model = tf.keras.Sequential([tf.keras.layers.Dense(32, activation="relu"), tf.keras.layers.Dense(10, activation="softmax")])
            loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=False)
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            """,
        ),
        # functional model with a Dense(1) head and a default BinaryCrossentropy object
        Invalid(
            """
            import tensorflow as tf
            inputs = tf.keras.Input((8,))
            x = tf.keras.layers.Dense(16, activation="relu")(inputs)
            outputs = tf.keras.layers.Dense(1)(x)
            model = tf.keras.Model(inputs=inputs, outputs=outputs)
            model.compile(optimizer="adam", loss=tf.keras.losses.BinaryCrossentropy())
            """,
            line=6,
            fixed="""
            import tensorflow as tf
            inputs = tf.keras.Input((8,))
            x = tf.keras.layers.Dense(16, activation="relu")(inputs)
            outputs = tf.keras.layers.Dense(1)(x)
            model = tf.keras.Model(inputs=inputs, outputs=outputs)
            model.compile(optimizer="adam", loss=tf.keras.losses.BinaryCrossentropy(from_logits=True))
            """,
        ),
        # TF1 tf.losses with a softmax layer output (no fix: the logits are inside the layer)
        Invalid(
            """
            import tensorflow as tf
            probs = tf.layers.dense(h, 10, activation=tf.nn.softmax)
            loss = tf.losses.softmax_cross_entropy(onehot_labels, probs)
            """,
            line=3,
        ),
        # Sequential built with .add, a final Activation('softmax') layer
        Invalid(
            """
            from keras.models import Sequential
            from keras.layers import Dense, Activation
            from keras.losses import CategoricalCrossentropy
            model = Sequential()
            model.add(Dense(64, input_dim=20, activation="relu"))
            model.add(Dense(10))
            model.add(Activation("softmax"))
            model.compile(loss=CategoricalCrossentropy(from_logits=True), optimizer="sgd")
            """,
            line=8,
            message='Activation("softmax")',
            fixed="""
            from keras.models import Sequential
            from keras.layers import Dense, Activation
            from keras.losses import CategoricalCrossentropy
            model = Sequential()
            model.add(Dense(64, input_dim=20, activation="relu"))
            model.add(Dense(10))
            model.add(Activation("softmax"))
            model.compile(loss=CategoricalCrossentropy(from_logits=False), optimizer="sgd")
            """,
        ),
        # a subclassed model whose call() ends in a softmax layer
        Invalid(
            """
            import tensorflow as tf
            class MyModel(tf.keras.Model):
                def __init__(self):
                    super().__init__()
                    self.d1 = tf.keras.layers.Dense(128, activation="relu")
                    self.d2 = tf.keras.layers.Dense(10, activation="softmax")
                def call(self, x):
                    return self.d2(self.d1(x))
            model = MyModel()
            loss_object = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            @tf.function
            def train_step(images, labels):
                with tf.GradientTape() as tape:
                    loss = loss_object(labels, model(images, training=True))
            """,
            line=14,
        ),
        # a Keras loss function with the default from_logits=False on raw logits
        Invalid(
            """
            import tensorflow as tf
            logits = tf.keras.layers.Dense(10)(h)
            loss = tf.reduce_mean(tf.keras.losses.categorical_crossentropy(y, logits))
            """,
            line=3,
            fixed="""
            import tensorflow as tf
            logits = tf.keras.layers.Dense(10)(h)
            loss = tf.reduce_mean(tf.keras.losses.categorical_crossentropy(y, logits, from_logits=True))
            """,
        ),
        # a helper computing the loss, its logits parameter fed a sigmoid (one level)
        Invalid(
            """
            import tensorflow as tf
            def bce(logits, labels):
                return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
            d_real = tf.sigmoid(tf.matmul(h, W) + b)
            d_loss = bce(d_real, tf.ones_like(d_real))
            """,
            line=3,
            message="bce()",
        ),
        # the same model called without `is_training` (default False) in the tape: the softmax runs
        Invalid(
            """
            import tensorflow as tf
            from tensorflow.keras import Model, layers
            class NeuralNet(Model):
                def __init__(self):
                    super().__init__()
                    self.out = layers.Dense(10)
                def call(self, x, is_training=False):
                    x = self.out(x)
                    if not is_training:
                        x = tf.nn.softmax(x)
                    return x
            net = NeuralNet()
            with tf.GradientTape() as g:
                loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=net(x))
            grads = g.gradient(loss, net.trainable_variables)
            """,
            line=14,
            message="softmax",
        ),
    ]

    def __init__(self, ctx, options=None) -> None:
        super().__init__(ctx, options)
        self.flow = flow(ctx)

    # -- static ---------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        site = loss_site(self.flow, node)
        if site is None:
            return
        s = site.pred
        ctx = self.ctx
        pred = (
            f"`{short(ctx, site.pred_expr, 40)}`"
            if site.pred_expr is not None
            else f"the output of `{short(ctx, site.model, 30)}`"
            if site.model is not None
            else "the prediction"
        )
        if site.expects == "logits" and s.prob:
            mode = "probs_as_logits"
            keras = site.owner is not None
            message = (
                f"{site.api} expects logits, but {pred} is a {s.kind} output ({origin(ctx, s)}): the loss applies "
                f"{s.kind} again, so the outputs are squashed twice, the gradients shrink and training stalls; pass the "
                f"logits from before the {s.kind}" + (" (or set `from_logits=False`)" if keras else "")
            )
            fix = self._fix_probs_as_logits(site)
        elif site.expects == "probabilities" and s.kind == "logits":
            mode = "logits_as_probs"
            act = "sigmoid" if "inary" in site.api else "softmax"
            message = (
                f"{site.api} expects probabilities (`from_logits=False` is the default), but {pred} is raw logits "
                f"({origin(ctx, s)}, no activation): Keras clips them to [1e-7, 1 - 1e-7] as if they were probabilities, "
                f"so clipped logits get no gradient and the model trains on the wrong loss; use `from_logits=True` "
                f"(or end the model with a {act} activation)"
            )
            fix = self._fix_logits_as_probs(site)
        else:
            return
        lines = [ctx.line(site.report)] + fit_lines(ctx, site)
        self.report(
            site.report,
            message,
            fix=fix,
            data={
                "mode": mode,
                "producer": s.kind,
                "producer_line": ctx.line(s.node) if s.node is not None else None,
                "event_lines": sorted(set(lines)),
            },
        )

    def _fix_probs_as_logits(self, site: LossSite):
        ctx = self.ctx
        s = site.pred
        if (
            site.pred_expr is not None
            and s.pre is not None
            and isinstance(s.node, cst.Call)
            and len(s.node.args) == 1
            and not s.complement
            and (s.node is site.pred_expr or self.flow.portable(s.pre, s.node, site.call))
        ):
            return self.replace(
                site.pred_expr, ctx.code(s.pre).strip(), f"Pass the logits from before the {s.kind}", "unsafe"
            )
        if site.from_logits is not None and literal_bool(site.from_logits.value) is True:
            return self.replace(site.from_logits.value, "False", "Set `from_logits=False`", "unsafe")
        return None

    def _fix_logits_as_probs(self, site: LossSite):
        if site.string is not None and site.keras_class:
            prefix = keras_alias(self.ctx)
            if prefix is None:
                return None
            return self.replace(
                site.string,
                f"{prefix}.losses.{site.keras_class}(from_logits=True)",
                "Use the loss with `from_logits=True`",
                "unsafe",
            )
        if site.owner is not None:
            return set_keyword(
                self,
                site.owner,
                tfapi.table("losses", "from_logits_keyword"),
                "True",
                "Set `from_logits=True`",
                site.owner_position,
            )
        return None

    # -- confirmation -------------------------------------------------------------------
    OBSERVES = ("logits_input", "log_input")
    CONFIRMS = [
        Traced(
            (event("logits_input", 10, function="softmax_cross_entropy_with_logits", input_op_type="Softmax"),),
            evidence="comes from Softmax (line 8): the activation is applied twice",
            data={"mode": "probs_as_logits", "producer_line": 8, "event_lines": [10]},
        )
    ]
    REFUTES = [
        Traced(
            (event("logits_input", 10, function="softmax_cross_entropy_with_logits", input_op_type="BiasAdd"),),
            evidence="comes from BiasAdd, not from a softmax/sigmoid",
            data={"mode": "probs_as_logits", "event_lines": [10]},
        )
    ]
    INCONCLUSIVE = [
        Traced(  # two losses on the line: one fed by a softmax, one not classified: the bad one is not hidden
            (event("logits_input", 10, function="sigmoid_cross_entropy_with_logits", input_op_type="Concat"),),
            evidence="cannot classify",
            data={"mode": "probs_as_logits", "event_lines": [10]},
        ),
        Traced((), evidence="no loss input was traced", data={"mode": "logits_as_probs", "event_lines": [10]}),
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        probs = tfapi.names("losses", "probability_op_types")
        linear = tfapi.names("losses", "linear_op_types")
        lines = set(range(finding.line, finding.end_line + 1)) | set(finding.data.get("event_lines") or ())
        mode = finding.data.get("mode")
        kinds = ("logits_input", "log_input") if mode == "logits_as_probs" else ("logits_input",)
        events = [e for e in trace.events if e.get("kind") in kinds and e.get("line") in lines]
        if not events:
            return inconclusive(f"no loss input was traced at line {finding.line}")
        # every traced input on the line is judged: one wrong input confirms, all right ones refute
        bad_types, good_types = (probs, linear) if mode == "probs_as_logits" else (linear, probs)
        for e in events:
            t = e.get("input_op_type")
            if t in bad_types:
                if mode == "probs_as_logits":
                    where = finding.data.get("producer_line")
                    at = f" (line {where})" if where else ""
                    return confirmed(
                        f"the logits input of the loss at line {e.get('line')} comes from {t}{at}: the activation is applied twice"
                    )
                return confirmed(
                    f"the loss at line {e.get('line')} receives raw logits from {t} and treats them as probabilities"
                )
        if all(e.get("input_op_type") in good_types for e in events):
            e = events[0]
            t = e.get("input_op_type")
            if mode == "probs_as_logits":
                return refuted(
                    f"the logits input of the loss at line {e.get('line')} comes from {t}, not from a softmax/sigmoid"
                )
            return refuted(f"the loss at line {e.get('line')} receives probabilities from {t}")
        kinds_seen = ", ".join(sorted({str(e.get("input_op_type")) for e in events}))
        return inconclusive(
            f"the loss input at line {finding.line} comes from {kinds_seen}: the trace cannot classify it"
        )
