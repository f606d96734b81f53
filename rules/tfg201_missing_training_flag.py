from __future__ import annotations

from functools import cached_property

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis import (
    GradientCall,
    ModelInfo,
    dotted,
    gradient_targets,
    has_keyword,
    model_attribute_owners,
    modelish_name,
)
from tflint_grad.analysis.modes import mode_at
from tflint_grad.evidence import inference_mode, layer_calls, model_layers
from tflint_grad.finding import Edit, Fix
from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive, refuted
from tflint_grad.tracer.events import event


class MissingTrainingFlag(Rule):
    """A model with BatchNormalization or Dropout is called inside a GradientTape without `training=`.

    ## What it does
    Flags a call of a Keras model or layer made directly in the body of a
    `with tf.GradientTape() as tape:` block, without a `training=` argument, when the
    model visibly contains `BatchNormalization` or `Dropout` (Sequential lists, `model.add`,
    functional `Model(inputs, outputs)`, subclassed models whose layers are built in
    `__init__`, models returned by helper functions or passed in as arguments at the call
    sites of the file, classes imported from sibling modules, `keras.applications`). In TF1
    graph code, also a model whose output reaches the loss of `minimize`/`compute_gradients`.
    Not flagged: frozen models (`base.trainable = False`), tapes whose gradients are taken
    w.r.t. an input or activation (saliency, Grad-CAM, style transfer, adversarial examples:
    inference mode is intended), `tf.Module`s and loss/metric callables. When the layers
    cannot be seen (a model loaded from disk, a parameter with no call site) the finding is
    `low` confidence (hidden by default) and its message says what was assumed.

    ## Why is this bad?
    Keras decides the mode from the `training` argument of the outermost call. Without
    it, `BatchNormalization` runs in inference mode: it normalizes with its moving
    statistics, which then never update (they stay at 0 and 1), and `Dropout` does
    nothing. The gradients are those of the inference-mode network, and the model
    behaves differently from what was trained (seed 004). Layers called inside a
    model's `call` need no flag: Keras propagates the outer call's value to them.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        y = model(x)
        loss = tf.reduce_mean(tf.square(y - target))
    ```

    Use instead:
    ```python
    with tf.GradientTape() as tape:
        y = model(x, training=True)
        loss = tf.reduce_mean(tf.square(y - target))
    ```

    ## Fix safety
    Adding `training=True` is unsafe: it is what a training step needs, but it changes
    what the model computes (batch statistics, active dropout), and a tape can also be
    used on purpose around an inference-mode model (adversarial examples, saliency).

    ## Confirmation
    During the traced steps the BatchNormalization/Dropout layers called at the flagged
    line (found through the call stack, also inside `tf.function` and subclassed `call`s)
    run with `training` falsy, and a consequence is seen: the moving statistics are unchanged
    after the steps, or the layers ran in inference mode while the tape recorded (evidence:
    layer names, the training value seen, moving_mean before/after). `refuted` when they ran
    in training mode, or when the called model object holds no such layer (searched
    recursively). A call whose layers were not observed is `inconclusive`, never refuted.
    """

    code = "TFG201"
    name = "missing-training-flag"
    severity = "warning"
    requires = ("GradientTape", "minimize", "compute_gradients", "gradients(")

    VALID = [
        # training=True
        Valid("""
            import tensorflow as tf
            model = tf.keras.Sequential([tf.keras.layers.Dense(4), tf.keras.layers.BatchNormalization()])
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
        """),
        # any non-literal value
        Valid("""
            import tensorflow as tf
            def step(model, x, is_training):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(model(x, training=is_training))
                return tape.gradient(loss, model.trainable_variables)
        """),
        # model.fit: Keras passes training=True itself
        Valid("""
            import tensorflow as tf
            model = tf.keras.Sequential([tf.keras.layers.Dense(4), tf.keras.layers.Dropout(0.5)])
            model.compile("adam", "mse")
            model.fit(x, y, epochs=3)
        """),
        # frozen BN (fine-tuning on purpose)
        Valid("""
            import tensorflow as tf
            bn = tf.keras.layers.BatchNormalization(trainable=False)
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(bn(x))
        """),
        # model.trainable = False, and transfer learning with training=False
        Valid("""
            import tensorflow as tf
            from tensorflow import keras
            base_model = keras.applications.MobileNetV2(include_top=False, weights="imagenet")
            base_model.trainable = False
            head = keras.layers.Dense(10)
            with tf.GradientTape() as tape:
                features = base_model(x, training=False)
                frozen = base_model(x)
                loss = tf.reduce_mean(head(features))
            grads = tape.gradient(loss, head.trainable_variables)
        """),
        # a frozen base inside a Sequential, with a Dense head
        Valid("""
            import tensorflow as tf
            base = tf.keras.applications.ResNet50(include_top=False, pooling="avg")
            base.trainable = False
            model = tf.keras.Sequential([base, tf.keras.layers.Dense(1)])
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(x))
        """),
        # transfer learning (Keras guide): frozen base called with training=False in a functional model
        Valid("""
            import tensorflow as tf
            from tensorflow import keras
            base_model = keras.applications.Xception(weights="imagenet", include_top=False)
            base_model.trainable = False
            inputs = keras.Input(shape=(150, 150, 3))
            x = base_model(inputs, training=False)
            x = keras.layers.GlobalAveragePooling2D()(x)
            model = keras.Model(inputs, keras.layers.Dense(1)(x))
            critic = keras.Model(inputs, keras.layers.BatchNormalization()(x))
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(images))
            grads = tape.gradient(loss, model.trainable_variables)
        """),
        # inner layers called in `call` without training=: Keras propagates the outer value
        Valid("""
            import tensorflow as tf
            class Net(tf.keras.Model):
                def __init__(self):
                    super().__init__()
                    self.dense = tf.keras.layers.Dense(4)
                    self.bn = tf.keras.layers.BatchNormalization()
                    self.drop = tf.keras.layers.Dropout(0.2)
                def call(self, x, training=None):
                    return self.drop(self.bn(self.dense(x)))
            model = Net()
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(x, training=True))
        """),
        # layers inside a nested def in the tape block
        Valid("""
            import tensorflow as tf
            model = tf.keras.Sequential([tf.keras.layers.BatchNormalization()])
            with tf.GradientTape() as tape:
                def forward(v):
                    return model(v)
                loss = tf.reduce_mean(model(x, training=True))
        """),
        # a known model without BatchNormalization/Dropout
        Valid("""
            import tensorflow as tf
            model = tf.keras.Sequential([tf.keras.layers.Dense(16, activation="relu"), tf.keras.layers.Dense(1)])
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(x) - y))
            grads = tape.gradient(loss, model.trainable_variables)
        """),
        # unknown callables that are not plausibly models, TF functions, losses
        Valid("""
            import tensorflow as tf
            loss_fn = tf.keras.losses.MeanSquaredError()
            def step(f, x, y):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = loss_fn(y, f(x)) + tf.reduce_sum(tf.square(x))
                return tape.gradient(loss, x)
        """),
        # call outside the tape (evaluation)
        Valid("""
            import tensorflow as tf
            model = tf.keras.Sequential([tf.keras.layers.BatchNormalization()])
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(x, training=True))
            preds = model(x_test)
        """),
        # training passed through **kwargs; misspelled flag is TFG204's finding
        Valid("""
            import tensorflow as tf
            model = tf.keras.Sequential([tf.keras.layers.Dropout(0.3)])
            with tf.GradientTape() as tape:
                a = model(x, **call_kwargs)
                b = model(x, is_training=True)
        """),
        # custom train_step of a subclassed model
        Valid("""
            import tensorflow as tf
            class Net(tf.keras.Model):
                def __init__(self):
                    super().__init__()
                    self.bn = tf.keras.layers.BatchNormalization()
                def call(self, x, training=None):
                    return self.bn(x, training=training)
                def train_step(self, data):
                    x, y = data
                    with tf.GradientTape() as tape:
                        loss = self.compiled_loss(y, self(x, training=True))
                    grads = tape.gradient(loss, self.trainable_variables)
                    self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
                    return {"loss": loss}
        """),
        # loss helpers are not models, whatever their names (`self.generator_loss` is a method)
        Valid("""
            import tensorflow as tf
            class DCGAN:
                def __init__(self):
                    self.generator = tf.keras.Sequential([tf.keras.layers.Dense(4)])
                def generator_loss(self, fake_output):
                    return tf.reduce_mean(fake_output)
                def train_step(self, noise):
                    with tf.GradientTape() as tape:
                        fake = self.generator(noise, training=True)
                        loss = self.generator_loss(fake)
                    return tape.gradient(loss, self.generator.trainable_variables)
        """),
        # a VGG19 wrapper (no BatchNormalization, frozen), differentiated w.r.t. the image
        Valid("""
            import tensorflow as tf
            def vgg_layers(names):
                vgg = tf.keras.applications.VGG19(include_top=False, weights="imagenet")
                vgg.trainable = False
                outputs = [vgg.get_layer(name).output for name in names]
                return tf.keras.Model([vgg.input], outputs)
            class StyleContentModel(tf.keras.models.Model):
                def __init__(self, layers):
                    super().__init__()
                    self.vgg = vgg_layers(layers)
                def call(self, inputs):
                    x = tf.keras.applications.vgg19.preprocess_input(inputs * 255.0)
                    return self.vgg(x)
            extractor = StyleContentModel(["block1_conv1"])
            image = tf.Variable(content_image)
            with tf.GradientTape() as tape:
                outputs = extractor(image)
                loss = tf.add_n([tf.reduce_mean(o) for o in outputs])
            grad = tape.gradient(loss, image)
        """),
        # Grad-CAM: the gradient is taken w.r.t. an activation; inference mode is intended
        Valid("""
            import tensorflow as tf
            model = tf.keras.applications.ResNet50(weights="imagenet")
            grad_model = tf.keras.Model(model.inputs, [model.get_layer("conv5").output, model.output])
            with tf.GradientTape() as tape:
                conv_out, preds = grad_model(img)
                score = preds[:, 3]
            grads = tape.gradient(score, conv_out)
        """),
        # models passed in as parameters: resolved through the call sites (Dense only; a tf.Module)
        Valid("""
            import tensorflow as tf
            class Linear(tf.Module):
                def __init__(self):
                    self.w = tf.Variable(5.0)
                def __call__(self, x):
                    return self.w * x
            def train(model, x, y):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.square(model(x) - y))
                return tape.gradient(loss, model.trainable_variables)
            net = tf.keras.Sequential([tf.keras.layers.Dense(5)])
            train(net, x, y)
            train(Linear(), x, y)
        """),
    ]
    INVALID = [
        # seed 004
        Invalid(
            """
            import numpy as np
            import tensorflow as tf
            model = tf.keras.Sequential([
                tf.keras.layers.InputLayer(input_shape=(1,)),
                tf.keras.layers.BatchNormalization()
            ])
            opt = tf.keras.optimizers.Adam(0.5)
            for i in range(1000):
                x = np.random.randint(100, 110, 10).astype(np.float32)
                with tf.GradientTape() as tape:
                    y = model(np.expand_dims(x, axis=1))
                    loss = tf.reduce_mean(tf.square(y - 150))
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))
            """,
            line=11,
            message="without `training=`",
            fixed="""
            import numpy as np
            import tensorflow as tf
            model = tf.keras.Sequential([
                tf.keras.layers.InputLayer(input_shape=(1,)),
                tf.keras.layers.BatchNormalization()
            ])
            opt = tf.keras.optimizers.Adam(0.5)
            for i in range(1000):
                x = np.random.randint(100, 110, 10).astype(np.float32)
                with tf.GradientTape() as tape:
                    y = model(np.expand_dims(x, axis=1), training=True)
                    loss = tf.reduce_mean(tf.square(y - 150))
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))
            """,
        ),
        # model.add + Dropout
        Invalid(
            """
            from tensorflow import keras
            import tensorflow as tf
            model = keras.Sequential()
            model.add(keras.layers.Dense(32, activation="relu"))
            model.add(keras.layers.Dropout(0.5))
            with tf.GradientTape() as tape:
                loss = keras.losses.mse(y, model(x))
            """,
            line=7,
            message="Dropout",
            fixed="""
            from tensorflow import keras
            import tensorflow as tf
            model = keras.Sequential()
            model.add(keras.layers.Dense(32, activation="relu"))
            model.add(keras.layers.Dropout(0.5))
            with tf.GradientTape() as tape:
                loss = keras.losses.mse(y, model(x, training=True))
            """,
        ),
        # functional model built by a helper function; multi-line call keeps its layout
        Invalid(
            """
            import tensorflow as tf
            from tensorflow.keras import layers
            def make_model():
                inputs = tf.keras.Input(shape=(8,))
                h = layers.Dense(16)(inputs)
                h = layers.BatchNormalization()(h)
                return tf.keras.Model(inputs, layers.Dense(1)(h))
            net = make_model()
            with tf.GradientTape() as tape:
                out = net(
                    x,
                    mask=None,
                )
            """,
            line=10,
            message="BatchNormalization",
            fixed="""
            import tensorflow as tf
            from tensorflow.keras import layers
            def make_model():
                inputs = tf.keras.Input(shape=(8,))
                h = layers.Dense(16)(inputs)
                h = layers.BatchNormalization()(h)
                return tf.keras.Model(inputs, layers.Dense(1)(h))
            net = make_model()
            with tf.GradientTape() as tape:
                out = net(
                    x,
                    mask=None,
                    training=True,
                )
            """,
        ),
        # subclassed model (layers built in __init__), used through self.model
        Invalid(
            """
            import tensorflow as tf
            class Net(tf.keras.Model):
                def __init__(self):
                    super().__init__()
                    self.conv = tf.keras.layers.Conv2D(8, 3)
                    self.bn = tf.keras.layers.BatchNormalization()
                def call(self, x, training=None):
                    return self.bn(self.conv(x), training=training)
            class Trainer:
                def __init__(self):
                    self.model = Net()
                def step(self, x, y):
                    with tf.GradientTape() as tape:
                        loss = tf.reduce_mean(tf.square(self.model(x) - y))
                    return tape.gradient(loss, self.model.trainable_variables)
            """,
            line=14,
            message="class `Net`",
        ),
        # keras.applications
        Invalid(
            """
            import tensorflow as tf
            backbone = tf.keras.applications.ResNet50(weights=None, classes=10)
            with tf.GradientTape() as tape:
                logits = backbone(images)
            """,
            line=4,
            message="ResNet50",
        ),
        # unknown content: a function parameter, plausibly a model
        Invalid(
            """
            import tensorflow as tf
            @tf.function
            def train_step(model, opt, x, y):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.square(model(x) - y))
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))
            """,
            line=5,
            message="could not see the layers of `model` (a function parameter): assumed it may contain BatchNormalization/Dropout",
            confidence="low",
        ),
        # unknown content: its variables are used in the same function
        Invalid(
            """
            import tensorflow as tf
            def step(f, x):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(f(x))
                return tape.gradient(loss, f.trainable_weights)
            """,
            line=4,
            message="assumed",
            confidence="low",
        ),
        # a layer instance
        Invalid(
            """
            import tensorflow as tf
            drop = tf.keras.layers.Dropout(0.5)
            dense = tf.keras.layers.Dense(1)
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(dense(drop(x)))
            """,
            line=5,
            message="`drop`",
            count=1,
            fixed="""
            import tensorflow as tf
            drop = tf.keras.layers.Dropout(0.5)
            dense = tf.keras.layers.Dense(1)
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(dense(drop(x, training=True)))
            """,
        ),
        # a model passed to __init__ and stored on self: resolved through the constructor call
        Invalid(
            """
            import tensorflow as tf
            from tensorflow import keras
            discriminator = keras.Sequential([keras.layers.Conv2D(8, 3), keras.layers.Dropout(0.2)])
            class GAN(keras.Model):
                def __init__(self, discriminator, latent_dim):
                    super().__init__()
                    self.discriminator = discriminator
                def train_step(self, images):
                    with tf.GradientTape() as tape:
                        predictions = self.discriminator(images)
                        loss = tf.reduce_mean(predictions)
                    return {"d_loss": loss}
            gan = GAN(discriminator=discriminator, latent_dim=128)
            """,
            line=10,
            message="contains Dropout",
        ),
        # TF1 graph code: a Keras model with BatchNormalization trained by `minimize` in a Session
        Invalid(
            """
            import tensorflow.compat.v1 as tf
            tf.disable_v2_behavior()
            model = tf.keras.Sequential([tf.keras.layers.Dense(8), tf.keras.layers.BatchNormalization()])
            x = tf.placeholder(tf.float32, [None, 4])
            y = tf.placeholder(tf.float32, [None, 8])
            loss = tf.reduce_mean(tf.square(model(x) - y))
            train_op = tf.train.AdamOptimizer(1e-3).minimize(loss)
            with tf.Session() as sess:
                sess.run(tf.global_variables_initializer())
                sess.run(train_op, {x: xs, y: ys})
            """,
            line=6,
            message="in the graph that",
        ),
        # a custom train_step calling self(...) without training
        Invalid(
            """
            import tensorflow as tf
            class Net(tf.keras.Model):
                def __init__(self):
                    super().__init__()
                    self.drop = tf.keras.layers.Dropout(0.1)
                def call(self, x, training=None):
                    return self.drop(x, training=training)
                def train_step(self, data):
                    x, y = data
                    with tf.GradientTape() as tape:
                        loss = self.compiled_loss(y, self(x))
                    return {"loss": loss}
            """,
            line=11,
            message="`self`",
        ),
    ]

    def __init__(self, ctx, options=None) -> None:
        super().__init__(ctx, options)
        self._owners: dict[int, set[str]] = {}
        self._infos: dict[tuple[str | None, int], ModelInfo | None] = {}
        self._misspelled = tfapi.names("layers", "misspelled_training_kwargs")

    # -- static ---------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        ctx = self.ctx
        if not (ctx.tapes or ctx.gradient_calls) or has_keyword(node, "training"):
            return
        if any(a.keyword is not None and a.keyword.value in self._misspelled for a in node.args):
            return  # TFG204 reports the misspelled flag
        callee = node.func
        if not isinstance(callee, (cst.Name, cst.Attribute, cst.Call)):
            return
        if isinstance(callee, (cst.Name, cst.Attribute)) and ctx.qualname(callee) is not None:
            return  # a TF/Keras API function
        name = dotted(callee) if not isinstance(callee, cst.Call) else None
        if isinstance(callee, cst.Attribute) and not (name and name.startswith("self.")) and not modelish_name(name):
            return  # `model.predict(...)`, `tape.watch(...)`...
        tape = ctx.enclosing_tape(node)
        where = "inside the GradientTape block"
        if tape is None:
            # TF1 graph code: a Keras model whose output reaches the loss that `minimize` trains
            step = self._graph_training_step(node)
            if step is None:
                return
            where = f"in the graph that `{ctx.code(step.node.func)[-40:]}` (line {ctx.line(step.node)}) trains"
        elif self._inference_intended(tape):
            return
        if self._positional_training(node):
            return
        info = self._model_info(callee, node)
        if info is None:
            return
        shown = name or ctx.code(callee)
        if info.kind in ("model", "layer") and (info.training_sensitive or not info.unseen):
            if not info.training_sensitive or info.frozen:
                return
            message = self._known_message(shown, info, where)
            assumed = False
        elif tape is not None and info.kind in ("unknown", "model"):
            if isinstance(callee, cst.Call) or not self._plausible_model(name, node):
                return
            reason = info.description if info.kind == "unknown" else f"{info.description}, which holds {info.unseen[0]}"
            prefix = f"`{shown}` is "
            if reason.startswith(prefix):
                reason = reason[len(prefix) :]
            message = (
                f"`{shown}(...)` is called inside the GradientTape block without `training=`; "
                f"could not see the layers of `{shown}` ({reason}): assumed it may contain BatchNormalization/Dropout, "
                "which would then run in inference mode (moving statistics never update, no dropout); "
                "pass `training=True` in the training step"
            )
            assumed = True
        else:
            return
        self.report(
            node,
            message,
            fix=self._fix(node),
            data={
                "call_line": ctx.line(node),
                "end_line": ctx.range(node)[2],
                "callee": shown,
                "batch_norm": info.batch_norm,
                "dropout": info.dropout,
                "assumed": assumed,
            },
            confidence="low" if assumed else "high",
        )

    def _inference_intended(self, tape) -> bool:
        """Every gradient taken from this tape is w.r.t. a watched input or an activation
        (saliency, Grad-CAM, style transfer, adversarial examples): inference mode is intended."""
        calls = self.ctx.gradient_calls_of(tape)
        return bool(calls) and all(gc.wrt_input for gc in calls)

    def _model_info(self, callee: cst.BaseExpression, at: cst.CSTNode) -> ModelInfo | None:
        """``ctx.model_info``, cached per binding (a model is usually called at several places)."""
        key = None
        if isinstance(callee, (cst.Name, cst.Attribute)):
            b = self.ctx.binding(callee, at)
            if b is not None and b.kind != "param":
                key = (dotted(callee), id(b.node))
        if key is not None and key in self._infos:
            return self._infos[key]
        try:
            info = self.ctx.model_info(callee, at)
        except RecursionError:
            info = None
        if key is not None:
            self._infos[key] = info
        return info

    @cached_property
    def _graph_steps(self) -> bool:
        return any(gc.kind in ("minimize", "compute_gradients", "tf_gradients") for gc in self.ctx.gradient_calls)

    @cached_property
    def _sets_learning_phase(self) -> bool:
        return "set_learning_phase" in self.ctx.source

    def _graph_training_step(self, node: cst.Call) -> GradientCall | None:
        """The ``minimize``/``compute_gradients``/``tf.gradients`` whose loss this call's output
        reaches, in graph mode (where Keras's learning phase defaults to inference)."""
        ctx = self.ctx
        if not self._graph_steps:
            return None
        if self._sets_learning_phase or mode_at(ctx, node) != "graph":
            return None
        gc = gradient_targets(ctx).reaching(ctx, node)
        if gc is None or gc.kind not in ("minimize", "compute_gradients", "tf_gradients"):
            return None
        return gc

    @staticmethod
    def _known_message(shown: str, info: ModelInfo, where: str = "inside the GradientTape block") -> str:
        kinds = [k for k, on in (("BatchNormalization", info.batch_norm), ("Dropout", info.dropout)) if on]
        what = info.description or "a Keras model"
        if info.kind != "layer":
            what += f", contains {' and '.join(kinds)}"
        effects = []
        if info.batch_norm:
            effects.append(
                "BatchNormalization then runs in inference mode (it normalizes with its moving statistics and never updates them)"
            )
        if info.dropout:
            effects.append("Dropout is disabled")
        return (
            f"`{shown}` ({what}) is called {where} without `training=`: "
            + " and ".join(effects)
            + ", so the gradients are those of the inference-mode network; pass `training=True` in the training step"
        )

    def _positional_training(self, call: cst.Call) -> bool:
        """``model(x, True)`` / ``model(x, is_training)``: training may be passed by position."""
        positional = [a for a in call.args if a.keyword is None and not a.star]
        for a in positional[1:]:
            v = a.value
            if isinstance(v, cst.Name) and v.value in ("True", "False"):
                return True
            d = dotted(v)
            if d and "train" in d.split(".")[-1].lower():
                return True
        return False

    def _plausible_model(self, name: str | None, at: cst.CSTNode) -> bool:
        if not name:
            return False
        if modelish_name(name):
            return True
        scope = self.ctx.scope_of(at)
        owners = self._owners.get(id(scope))
        if owners is None:
            owners = model_attribute_owners(self.ctx, scope)
            self._owners[id(scope)] = owners
        return name in owners

    def _fix(self, call: cst.Call) -> Fix | None:
        """Insert `training=True` after the last argument, keeping the call's layout."""
        args = list(call.args)
        if not args:
            return None
        ctx = self.ctx
        _, _, line, col = ctx.range(args[-1])
        sep = ", "
        if isinstance(args[-1].comma, cst.Comma) and len(args) >= 2:
            # multi-line call with a trailing comma: reuse the separator between the last two arguments
            _, _, l0, c0 = ctx.range(args[-2])
            l1, c1, _, _ = ctx.range(args[-1])
            text = self._source_between(l0, c0, l1, c1)
            if text is not None and text.strip() == ",":
                sep = text
        edit = Edit(line, col, line, col, f"{sep}training=True")
        return Fix("Pass `training=True`", (edit,), "unsafe")

    def _source_between(self, l0: int, c0: int, l1: int, c1: int) -> str | None:
        lines = self.ctx.source_lines
        if not (1 <= l0 <= l1 <= len(lines)):
            return None
        if l0 == l1:
            return lines[l0 - 1][c0 - 1 : c1 - 1]
        return lines[l0 - 1][c0 - 1 :] + "".join(lines[l0 : l1 - 1]) + lines[l1 - 1][: c1 - 1]

    # -- confirmation -------------------------------------------------------------------
    OBSERVES = ("layer_call", "model_layers", "moving_stats")
    CONFIRMS = [
        Traced(
            (
                event(
                    "layer_call",
                    10,
                    layer="bn",
                    training=None,
                    in_tape=True,
                    keras="keras3",
                    stack=[10],
                    **{"class": "BatchNormalization"},
                ),
                event(
                    "moving_stats",
                    4,
                    layer="bn",
                    before={"moving_mean": [0.0]},
                    after={"moving_mean": [0.0]},
                    changed=False,
                ),
            ),
            evidence="`bn` moving_mean [0.0] -> [0.0] (unchanged)",
            data={"call_line": 10, "end_line": 10},
        ),
        Traced(  # a layer inside a tf.function / subclassed call, attributed to the model call by the stack
            (
                event(
                    "layer_call",
                    40,
                    layer="drop",
                    training=False,
                    in_tape=True,
                    stack=[31, 10, 40],
                    **{"class": "Dropout"},
                ),
            ),
            evidence="Dropout `drop` ran with training=False in the tape",
            data={"call_line": 10, "end_line": 10},
        ),
    ]
    REFUTES = [
        Traced(
            (event("layer_call", 10, layer="bn", training=True, in_tape=True, **{"class": "BatchNormalization"}),),
            evidence="ran in training mode (bn: training=True)",
            data={"call_line": 10, "end_line": 10},
        ),
        Traced(  # the model object holds no BN/Dropout layer, searched recursively
            (event("model_layers", 10, model="mlp", layers=[], classes=[]),),
            evidence="holds no BatchNormalization/Dropout layer",
            data={"call_line": 10, "end_line": 10},
        ),
    ]
    INCONCLUSIVE = [
        Traced(  # issue 10: the call ran, but no layer call was observed: absence is not proof
            (),
            evidence="no BatchNormalization/Dropout call was observed",
            data={"call_line": 10, "end_line": 10},
        ),
        Traced(  # the model holds BN, yet its calls were not seen (e.g. compiled away)
            (event("model_layers", 10, model="net", layers=["bn"], classes=["BatchNormalization"]),),
            evidence="holds BatchNormalization `bn`, but the trace saw none of their calls",
            data={"call_line": 10, "end_line": 10},
        ),
        Traced(  # inference mode, but another call trains the statistics
            (
                event("layer_call", 10, layer="bn", training=None, in_tape=True, **{"class": "BatchNormalization"}),
                event(
                    "moving_stats",
                    4,
                    layer="bn",
                    before={"moving_mean": [0.0]},
                    after={"moving_mean": [0.3]},
                    changed=True,
                ),
            ),
            evidence="updated by another call in training mode",
            data={"call_line": 10, "end_line": 10},
        ),
        Traced(  # a frozen BatchNormalization runs in inference mode whatever the flag: not this bug's doing
            (
                event(
                    "layer_call",
                    10,
                    layer="bn",
                    training=None,
                    in_tape=True,
                    trainable=False,
                    **{"class": "BatchNormalization"},
                ),
                event(
                    "moving_stats",
                    4,
                    layer="bn",
                    before={"moving_mean": [0.0]},
                    after={"moving_mean": [0.0]},
                    changed=False,
                ),
            ),
            evidence="frozen",
            data={"call_line": 10, "end_line": 10},
        ),
        Traced(  # outside any tape and statistics unknown: no consequence observed
            (event("layer_call", 10, layer="drop", training=None, in_tape=False, **{"class": "Dropout"}),),
            evidence="no consequence",
            data={"call_line": 10, "end_line": 10},
        ),
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        line = finding.data.get("call_line", finding.line)
        end = finding.data.get("end_line", line)
        calls = layer_calls(trace, line, end)
        if not calls:
            models = model_layers(trace, line, end)
            held = sorted({f"{c} `{n}`" for m in models for n, c in zip(m.get("layers") or [], m.get("classes") or [])})
            if "layer_call" in trace.probe_failures():
                return inconclusive(f"the layer-call probe failed, so the calls at line {line} were not observed")
            if models and not held:
                names = ", ".join(sorted({str(m.get("model")) for m in models}))
                return refuted(
                    f"the model called at line {line} ({names}) holds no BatchNormalization/Dropout layer "
                    "(searched through its nested models and layers): the missing `training=` changes nothing"
                )
            if held:
                return inconclusive(
                    f"the model called at line {line} holds {', '.join(held[:6])}, but the trace saw none of their calls"
                )
            return inconclusive(f"no BatchNormalization/Dropout call was observed at line {line}")
        falsy = [e for e in calls if not e.get("training")]
        if not falsy:
            names = ", ".join(sorted({str(e.get("layer")) for e in calls})[:8])
            return refuted(f"the layers called at line {line} ran in training mode ({names}: training=True)")
        mode = inference_mode(trace, falsy)
        evidence = f"at line {line}: " + "; ".join(mode.parts)
        if mode.moves:
            evidence += f"; after {trace.steps} step(s): " + "; ".join(mode.moves)
        if mode.updated_elsewhere:
            return inconclusive(evidence + " (the statistics are updated by another call in training mode)")
        if not mode.harmful:
            return inconclusive(
                evidence + " (no consequence observed: frozen layers, or outside a tape with no moving statistics read)"
            )
        return confirmed(evidence)
