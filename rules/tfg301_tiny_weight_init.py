from __future__ import annotations

import math

import libcst as cst

from tflint_grad.analysis.weights import (
    InitSource,
    WeightUse,
    fan_in_initializer,
    uses_relu,
    weight_index,
)
from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive, refuted
from tflint_grad.tracer.events import event

_CONFIRM_RATIO = 100.0  # RULES.md: the counterfactual first-layer gradient grows at least 100x


class TinyWeightInit(Rule):
    """Stacked weight layers start from a random draw far smaller than the fan-in scale.

    ## What it does
    Flags an initializer or initial value drawn from a normal, truncated normal or uniform
    distribution whose scale is far below the fan-in scale of He/Glorot initialization
    (about `1/sqrt(fan_in)`): `tf.random_normal_initializer(0, 1e-3)`,
    `RandomNormal(stddev=0.001)`, `tf.Variable(tf.random.normal(shape, stddev=0.001))`,
    `np.random.randn(784, 256) * 0.001`... The initializer is followed through names,
    function parameters and one-weight helper functions (`def weight_variable(shape)`) to
    the weights it initializes (`tf.get_variable(initializer=...)`, `tf.Variable(...)`,
    `Dense(kernel_initializer=...)`, `tf.layers.dense`, `add_weight`).

    With the fan-in known, a weight is tiny when `stddev * sqrt(fan_in) < threshold`; with
    an unknown fan-in (the first Keras layer, a shape computed at run time) when
    `stddev <= max-unknown-scale`. The fan-in comes from a literal kernel shape (or names
    bound to literals, or a helper's arguments), `input_dim=` / `input_shape=(n,)`, or the
    width of the layer feeding a Dense/Conv layer (`Dense(10)` after `Dense(256)`, through
    Dropout, BatchNormalization, activations and pooling). For a uniform draw the standard
    deviation is `(maxval - minval) / sqrt(12)`.

    It reports only when at least two tiny weight layers are stacked: one feeds the other
    (followed through the file's assignments, or by order in the same function or
    `Sequential` list when the layers are not named), or the tiny layer is created in a loop.
    The finding points at the initializer's construction and gives the fan-in and ratio.

    Not a finding: biases (bias keywords, 1-D shapes, names such as `b`, `b1`, `bias`),
    batch-norm parameters, embeddings, a single-layer model, a small-init output head
    (a policy or value head, a detection box head) when the layers before it are well scaled,
    and layers followed by batch normalization (built in the same `Sequential` list, class
    or function): BN re-scales their output, so a small init does not compound.

    ## Why is this bad?
    Each layer multiplies the signal by about `stddev * sqrt(fan_in)` (times `1/sqrt(2)`
    for ReLU). Far below 1, activations shrink layer after layer, and so does the gradient
    flowing back: the first layers barely receive any gradient. In seed 001 (a 3-layer
    ReLU net with N(0, 1e-3) weights) the first layer's gradient norm is 7.5e-6 instead of
    about 0.6 with Glorot weights; after 10000 steps the net outputs the same constant for
    every input.

    ## Example
    ```python
    initia = tf.random_normal_initializer(0, 1e-3)
    W = tf.get_variable('W', shape=[1, 16], initializer=initia)
    W1 = tf.get_variable('W1', shape=[16, 16], initializer=initia)
    W2 = tf.get_variable('W2', shape=[16, 1], initializer=initia)
    ```

    Use instead:
    ```python
    initia = tf.variance_scaling_initializer(scale=2.0)  # He, for ReLU networks
    ```

    ## Fix safety
    Unsafe: it changes the network's initial weights (and every run's results). An
    initializer object is replaced by a fan-in-scaled one: He (`HeNormal()`,
    `tf.variance_scaling_initializer(scale=2.0)` in TF1 scripts) when the file uses
    ReLU-like activations, Glorot (`GlorotUniform()`, `tf.glorot_uniform_initializer()`)
    otherwise. If the same initializer also initializes biases, they get the new
    initializer too. A value drawn with a literal shape (`tf.random.normal([784, 256],
    stddev=0.001)`, `np.random.randn(784, 256) * 0.001`) gets its standard deviation
    replaced by `(2.0 / fan_in) ** 0.5` (He) or `(2.0 / (fan_in + fan_out)) ** 0.5`
    (Glorot). No fix when the fan-in differs between the uses or is unknown.

    ## Options
    - `threshold` (number, default `0.1`): a weight with a known fan-in is tiny when
      `stddev * sqrt(fan_in)` is below this (He gives about 1.41, Glorot about 1).
    - `max-unknown-scale` (number, default `0.01`): when the fan-in is unknown, a weight is
      tiny when its standard deviation is at most this.

    ## Confirmation
    At initialization, on one traced batch, the first-layer gradient norm is compared with
    the same network whose weights are re-drawn fan-in scaled (He for ReLU, Glorot
    otherwise): `confirmed` when it grows at least 100x (seed 001: 7.5e-6 -> ~0.6), with
    the per-layer norms of both initializations as evidence; `refuted` when the gradient
    reaches the first layer at a healthy scale (less than 100x).
    """

    code = "TFG301"
    name = "tiny-weight-init"
    severity = "warning"
    requires = ("normal", "Normal", "uniform", "Uniform", "randn")
    options = {"threshold": 0.1, "max-unknown-scale": 0.01}

    VALID = [
        # The TF "Deep MNIST" tutorial: stddev 0.1 through helper functions.
        Valid("""
            import tensorflow as tf
            def weight_variable(shape):
                initial = tf.truncated_normal(shape, stddev=0.1)
                return tf.Variable(initial)
            def bias_variable(shape):
                initial = tf.constant(0.1, shape=shape)
                return tf.Variable(initial)
            W_conv1 = weight_variable([5, 5, 1, 32])
            b_conv1 = bias_variable([32])
            W_conv2 = weight_variable([5, 5, 32, 64])
            b_conv2 = bias_variable([64])
            W_fc1 = weight_variable([7 * 7 * 64, 1024])
            b_fc1 = bias_variable([1024])
            W_fc2 = weight_variable([1024, 10])
            b_fc2 = bias_variable([10])
        """),
        # Biases with a tiny init (1-D shapes, bias names, bias keywords).
        Valid("""
            import tensorflow as tf
            small = tf.random_normal_initializer(0, 1e-3)
            W1 = tf.get_variable('W1', [784, 256], initializer=tf.glorot_uniform_initializer())
            b1 = tf.get_variable('b1', [256], initializer=small)
            W2 = tf.get_variable('W2', [256, 10], initializer=tf.glorot_uniform_initializer())
            b2 = tf.get_variable('b2', [1, 10], initializer=small)
            model = tf.keras.Sequential([
                tf.keras.layers.Dense(64, activation='relu', bias_initializer=tf.keras.initializers.RandomNormal(stddev=1e-4)),
                tf.keras.layers.Dense(10, bias_initializer=tf.keras.initializers.RandomNormal(stddev=1e-4)),
            ])
        """),
        # Embeddings drawn small on purpose.
        Valid("""
            import tensorflow as tf
            emb_init = tf.random_normal_initializer(stddev=0.001)
            embedding = tf.get_variable('embedding', [50000, 128], initializer=emb_init)
            tokens = tf.nn.embedding_lookup(embedding, ids)
            table = tf.Variable(tf.random.normal([1000, 64], stddev=0.001))
            rows = tf.nn.embedding_lookup(table, ids)
            model = tf.keras.Sequential([
                tf.keras.layers.Embedding(50000, 128, embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=1e-3)),
                tf.keras.layers.LSTM(64),
                tf.keras.layers.Dense(10),
            ])
        """),
        # A single-layer model (softmax regression) with a tiny init.
        Valid("""
            import tensorflow as tf
            x = tf.placeholder(tf.float32, [None, 784])
            W = tf.Variable(tf.random_normal([784, 10], stddev=0.001))
            b = tf.Variable(tf.zeros([10]))
            y = tf.nn.softmax(tf.matmul(x, W) + b)
        """),
        # Small-init policy and value heads on a well-scaled torso.
        Valid("""
            import tensorflow as tf
            from tensorflow.keras import layers, initializers
            inp = layers.Input(shape=(8,))
            x = layers.Dense(64, activation='relu')(inp)
            x = layers.Dense(64, activation='relu')(x)
            pi = layers.Dense(4, kernel_initializer=initializers.RandomNormal(stddev=0.01))(x)
            v = layers.Dense(1, kernel_initializer=initializers.RandomNormal(stddev=0.01))(x)
            model = tf.keras.Model(inp, [pi, v])
        """),
        # DDPG-style final layers with uniform(-3e-3, 3e-3), one per network.
        Valid("""
            import tensorflow as tf
            def actor(s):
                net = tf.layers.dense(s, 400, activation=tf.nn.relu)
                net = tf.layers.dense(net, 300, activation=tf.nn.relu)
                return tf.layers.dense(net, 2, activation=tf.nn.tanh,
                                       kernel_initializer=tf.random_uniform_initializer(-3e-3, 3e-3))
            def critic(s, a):
                net = tf.layers.dense(tf.concat([s, a], 1), 400, activation=tf.nn.relu)
                net = tf.layers.dense(net, 300, activation=tf.nn.relu)
                return tf.layers.dense(net, 1, kernel_initializer=tf.random_uniform_initializer(-3e-3, 3e-3))
        """),
        # stddev 0.01 with a large literal fan-in is within the threshold (0.01 * sqrt(784) = 0.28).
        Valid("""
            import tensorflow as tf
            W1 = tf.Variable(tf.random_normal([784, 256], stddev=0.01))
            W2 = tf.Variable(tf.random_normal([256, 256], stddev=0.01))
            W3 = tf.Variable(tf.random_normal([256, 10], stddev=0.01))
        """),
        # Keras layers: the fan-in comes from the layer feeding them (512 and 64 channels, 3x3 kernel),
        # so N(0, 0.01) is within the threshold; only the first layer's fan-in is unknown.
        Valid("""
            import tensorflow as tf
            from tensorflow.keras import layers, initializers
            init = initializers.RandomNormal(stddev=0.01)
            model = tf.keras.Sequential([
                layers.Dense(512, activation='relu', kernel_initializer=init),
                layers.Dropout(0.5),
                layers.Dense(256, activation='relu', kernel_initializer=init),
                layers.Dense(10, kernel_initializer=init),
            ])
            features = layers.Input(shape=(None, None, 64))
            shared = layers.Conv2D(512, 3, padding='same', activation='relu', kernel_initializer=init)(features)
            cls = layers.Conv2D(9, (1, 1), kernel_initializer=init)(shared)
            reg = layers.Conv2D(36, 1, kernel_initializer=init)(shared)
        """),
        # Fan-in scaled NumPy draws, and He-scaled Keras layers.
        Valid("""
            import numpy as np
            import tensorflow as tf
            W1 = np.random.randn(784, 256) / np.sqrt(784)
            W2 = np.random.randn(256, 10) * np.sqrt(2.0 / 256)
            model = tf.keras.Sequential([
                tf.keras.layers.Dense(256, activation='relu', kernel_initializer='he_normal'),
                tf.keras.layers.Dense(10, kernel_initializer=tf.keras.initializers.RandomNormal(stddev=0.05)),
            ])
        """),
        # A threshold option that accepts the draw.
        Valid(
            """
            import tensorflow as tf
            init = tf.random_normal_initializer(0, 0.02)
            W1 = tf.get_variable('W1', [64, 64], initializer=init)
            W2 = tf.get_variable('W2', [64, 64], initializer=init)
            h = tf.matmul(tf.matmul(x, W1), W2)
        """,
            options={"threshold": 0.15},
        ),
        # Non-trainable random projections are not weights.
        Valid("""
            import tensorflow as tf
            P1 = tf.Variable(tf.random.normal([64, 64], stddev=0.001), trainable=False)
            P2 = tf.Variable(tf.random.normal([64, 64], stddev=0.001), trainable=False)
        """),
        # small-init convs each followed by batch normalization (scale-invariant), and a small-init
        # output head on its own (RetinaNet/EfficientDet box nets, issue 9)
        Valid("""
            import tensorflow as tf
            class BoxNet(tf.keras.layers.Layer):
                def __init__(self, repeats, num_filters, num_anchors):
                    super().__init__()
                    self.conv_ops, self.bns = [], []
                    for i in range(repeats):
                        self.conv_ops.append(tf.keras.layers.Conv2D(
                            num_filters, 3, padding='same',
                            kernel_initializer=tf.random_normal_initializer(stddev=0.01)))
                        self.bns.append(build_batch_norm(name='box-%d-bn' % i))
                def call(self, image, training):
                    for conv, bn in zip(self.conv_ops, self.bns):
                        image = tf.nn.swish(bn(conv(image), training=training))
                    return image
            def box_head(num_anchors):
                return tf.keras.layers.Conv2D(4 * num_anchors, 3, padding='same',
                                              kernel_initializer=tf.random_normal_initializer(stddev=0.01))
        """),
    ]
    INVALID = [
        # Seed 001.
        Invalid(
            """
            import tensorflow as tf
            initia = tf.random_normal_initializer(0, 1e-3)
            I = tf.placeholder(tf.float32, shape=[None, 1])
            W = tf.get_variable('W', shape=[1, 16], initializer=initia)
            b = tf.get_variable('b', shape=[16], initializer=initia)
            O = tf.nn.relu(tf.matmul(I, W) + b)
            W1 = tf.get_variable('W1', shape=[16, 16], initializer=initia)
            b1 = tf.get_variable('b1', shape=[16], initializer=initia)
            O1 = tf.nn.relu(tf.matmul(O, W1) + b1)
            W2 = tf.get_variable('W2', shape=[16, 1], initializer=initia)
            O2 = tf.matmul(O1, W2)
            """,
            line=2,
            message="fan-in 1",
            count=1,
            fixed="""
            import tensorflow as tf
            initia = tf.variance_scaling_initializer(scale=2.0)
            I = tf.placeholder(tf.float32, shape=[None, 1])
            W = tf.get_variable('W', shape=[1, 16], initializer=initia)
            b = tf.get_variable('b', shape=[16], initializer=initia)
            O = tf.nn.relu(tf.matmul(I, W) + b)
            W1 = tf.get_variable('W1', shape=[16, 16], initializer=initia)
            b1 = tf.get_variable('b1', shape=[16], initializer=initia)
            O1 = tf.nn.relu(tf.matmul(O, W1) + b1)
            W2 = tf.get_variable('W2', shape=[16, 1], initializer=initia)
            O2 = tf.matmul(O1, W2)
            """,
        ),
        # Keras: unknown fan-in, stddev 0.001 in a Sequential stack.
        Invalid(
            """
            import tensorflow as tf
            init = tf.keras.initializers.RandomNormal(stddev=0.001)
            model = tf.keras.Sequential([
                tf.keras.layers.Dense(128, activation='tanh', kernel_initializer=init),
                tf.keras.layers.Dense(128, activation='tanh', kernel_initializer=init),
                tf.keras.layers.Dense(10, kernel_initializer=init),
            ])
            """,
            line=2,
            message="fan-in 128",
            fixed="""
            import tensorflow as tf
            init = tf.keras.initializers.GlorotUniform()
            model = tf.keras.Sequential([
                tf.keras.layers.Dense(128, activation='tanh', kernel_initializer=init),
                tf.keras.layers.Dense(128, activation='tanh', kernel_initializer=init),
                tf.keras.layers.Dense(10, kernel_initializer=init),
            ])
            """,
        ),
        # Initial values with a literal shape: one finding per draw, stddev rewritten.
        Invalid(
            """
            import tensorflow as tf
            x = tf.placeholder(tf.float32, [None, 784])
            W1 = tf.Variable(tf.random.normal([784, 256], stddev=0.001))
            W2 = tf.Variable(tf.random.normal([256, 10], stddev=0.001))
            h = tf.nn.relu(tf.matmul(x, W1))
            logits = tf.matmul(h, W2)
            """,
            line=3,
            message="784",
            count=2,
            fixed="""
            import tensorflow as tf
            x = tf.placeholder(tf.float32, [None, 784])
            W1 = tf.Variable(tf.random.normal([784, 256], stddev=(2.0 / 784) ** 0.5))
            W2 = tf.Variable(tf.random.normal([256, 10], stddev=(2.0 / 256) ** 0.5))
            h = tf.nn.relu(tf.matmul(x, W1))
            logits = tf.matmul(h, W2)
            """,
        ),
        # NumPy draws scaled by a literal.
        Invalid(
            """
            import numpy as np
            import tensorflow as tf
            W1 = tf.Variable((np.random.randn(100, 50) * 0.001).astype(np.float32))
            W2 = tf.Variable((np.random.randn(50, 50) * 0.001).astype(np.float32))
            out = tf.matmul(tf.tanh(tf.matmul(x, W1)), W2)
            """,
            line=3,
            message="ratio",
            fixed="""
            import numpy as np
            import tensorflow as tf
            W1 = tf.Variable((np.random.randn(100, 50) * (2.0 / (100 + 50)) ** 0.5).astype(np.float32))
            W2 = tf.Variable((np.random.randn(50, 50) * (2.0 / (50 + 50)) ** 0.5).astype(np.float32))
            out = tf.matmul(tf.tanh(tf.matmul(x, W1)), W2)
            """,
        ),
        # A helper function with a tiny draw, called for each layer (fan-in per call site).
        Invalid(
            """
            import tensorflow as tf
            def weight_variable(shape):
                initial = tf.truncated_normal(shape, stddev=0.001)
                return tf.Variable(initial)
            W_fc1 = weight_variable([784, 512])
            W_fc2 = weight_variable([512, 512])
            W_fc3 = weight_variable([512, 10])
            h1 = tf.nn.relu(tf.matmul(x, W_fc1))
            h2 = tf.nn.relu(tf.matmul(h1, W_fc2))
            y = tf.matmul(h2, W_fc3)
            """,
            line=3,
            message="`W_fc2`",
        ),
        # Stacked layers built in a loop.
        Invalid(
            """
            from tensorflow import keras
            model = keras.Sequential()
            for units in (256, 128, 64):
                model.add(keras.layers.Dense(units, activation='relu',
                                             kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.001)))
            model.add(keras.layers.Dense(10))
            """,
            line=5,
            message="fan-in unknown",
            fixed="""
            from tensorflow import keras
            model = keras.Sequential()
            for units in (256, 128, 64):
                model.add(keras.layers.Dense(units, activation='relu',
                                             kernel_initializer=keras.initializers.HeNormal()))
            model.add(keras.layers.Dense(10))
            """,
        ),
        # The threshold option.
        Invalid(
            """
            import tensorflow as tf
            init = tf.random_normal_initializer(0, 0.02)
            W1 = tf.get_variable('W1', [64, 64], initializer=init)
            W2 = tf.get_variable('W2', [64, 64], initializer=init)
            h = tf.matmul(tf.matmul(x, W1), W2)
            """,
            line=2,
            message="0.16",
            options={"threshold": 0.2},
        ),
    ]

    # -- static -----------------------------------------------------------------------------
    def _option(self, key: str) -> float:
        value = self.opts.get(key, type(self).options[key])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
            raise ValueError(f"{self.code} option {key!r} must be a non-negative number, got {value!r}")
        return float(value)

    def _ratio(self, use: WeightUse) -> float | None:
        if use.fan_in is None or use.source is None or use.source.scale is None:
            return None
        return use.source.scale * math.sqrt(use.fan_in)

    def _tiny(self, use: WeightUse, threshold: float, unknown: float) -> bool:
        src = use.source
        if use.role != "weight" or src is None or src.kind != "random" or not src.scale:
            return False
        ratio = self._ratio(use)
        return ratio < threshold if ratio is not None else src.scale <= unknown

    def finish(self) -> None:
        threshold = self._option("threshold")
        unknown = self._option("max-unknown-scale")
        idx = weight_index(self.ctx)
        # a layer followed by batch normalization is scale-invariant: its small init does not compound
        tiny = [u for u in idx.uses if self._tiny(u, threshold, unknown) and not idx.normalized(u)]
        if not tiny:
            return
        stacked = [u for u in tiny if u.repeated or any(idx.feeds(u, v) or idx.feeds(v, u) for v in tiny if v is not u)]
        groups: dict[int, list[WeightUse]] = {}
        for u in stacked:
            groups.setdefault(id(u.source.node), []).append(u)  # type: ignore[union-attr]
        relu = uses_relu(self.ctx)
        for group in groups.values():
            connected = [v for v in stacked if any(v is u or idx.feeds(u, v) or idx.feeds(v, u) for u in group)]
            self._report(group, len(connected), threshold, unknown, relu)

    def _report(self, group: list[WeightUse], stack_size: int, threshold: float, unknown: float, relu: bool) -> None:
        ctx = self.ctx
        src: InitSource = group[0].source  # type: ignore[assignment]
        known = [u for u in group if self._ratio(u) is not None]
        worst = min(known, key=lambda u: self._ratio(u) or 0.0) if known else group[0]
        what = "stddev" if src.dist == "normal" else "std"
        scale = f"{src.scale:.3g}"
        text = ctx.code(src.node)
        if len(text) > 60:
            text = text[:57] + "..."
        if known:
            ratio = self._ratio(worst) or 0.0
            detail = (
                f"for {worst.label(ctx)} (fan-in {worst.fan_in}) the ratio {what}*sqrt(fan_in) = {ratio:.2g}, "
                f"below {threshold:g} (He gives about 1.41, Glorot about 1)"
            )
        else:
            ratio = None
            detail = f"fan-in unknown, and {what} {scale} <= {unknown:g}"
        names: list[str] = []
        for u in group:
            label = u.label(ctx)
            if label not in names:
                names.append(label)
        layers = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        loop = " (created in a loop)" if any(u.repeated for u in group) else ""
        fix_text = self._fix_text(group, src, relu)
        family = "He, for ReLU networks" if relu else "Glorot"
        advice = f"use a fan-in-scaled initializer ({family})"
        fix = None
        if fix_text is not None:
            node, new = fix_text
            advice = f"use a fan-in-scaled initializer ({family}): `{new}`"
            fix = self.replace(node, new, f"Use `{new}`", "unsafe")
        self.report(
            src.node,
            f"`{text}` draws weights with {what} {scale}, far below the fan-in scale 1/sqrt(fan_in): {detail}; "
            f"it initializes {layers}{loop}, in a stack of {max(stack_size, 2)} tiny weight layers, "
            f"so activations and gradients shrink at every layer and the first layers barely train; {advice}",
            fix=fix,
            data={
                "use_lines": sorted({ctx.line(u.call) for u in group}),
                "variables": [u.name for u in group if u.name],
                "scale": src.scale,
                "fan_in": worst.fan_in,
                "ratio": ratio,
            },
        )

    def _fix_text(self, group: list[WeightUse], src: InitSource, relu: bool) -> tuple[cst.CSTNode, str] | None:
        if not src.is_value:
            new = fan_in_initializer(self.ctx, src, relu)
            return (src.node, new) if new else None
        if src.dist != "normal" or src.scale_node is None or any(u.sites for u in group):
            return None
        fans = {(u.fan_in, u.fan_out) for u in group}
        if len(fans) != 1:
            return None
        fan_in, fan_out = fans.pop()
        if fan_in is None or (not relu and fan_out is None):
            return None
        new = f"(2.0 / {fan_in}) ** 0.5" if relu else f"(2.0 / ({fan_in} + {fan_out})) ** 0.5"
        return src.scale_node, new

    # -- confirmation -------------------------------------------------------------------------
    OBSERVES = ("layer_grad_norms", "initializer")
    CONFIRMS = [
        Traced(
            (
                event("initializer", 12, variable="W", shape=[784, 100], std=0.001),
                event(
                    "layer_grad_norms",
                    30,
                    norms=[{"variable": "W", "norm": 1e-6}],
                    counterfactual=[{"variable": "W", "norm": 1e-3}],
                    first_ratio=1000.0,
                    flagged=[],
                ),
            ),
            evidence="the first-layer gradient norm grows 1e+03x",
            line=12,
            data={"use_lines": [12]},
        )
    ]
    REFUTES = [
        Traced(
            (
                event("initializer", 12, variable="W", shape=[784, 100], std=0.05),
                event(
                    "layer_grad_norms",
                    30,
                    norms=[{"variable": "W", "norm": 0.1}],
                    counterfactual=[{"variable": "W", "norm": 0.2}],
                    first_ratio=2.0,
                    flagged=[],
                ),
            ),
            evidence="changes only 2x",
            line=12,
            data={"use_lines": [12]},
        )
    ]
    INCONCLUSIVE = [
        Traced(  # the only measured gradient call does not involve the flagged weights
            (
                event("initializer", 12, variable="W", shape=[784, 100], std=0.001),
                event(
                    "layer_grad_norms",
                    30,
                    norms=[{"variable": "other", "norm": 0.1}],
                    counterfactual=[{"variable": "other", "norm": 0.1}],
                    first_ratio=1.0,
                    flagged=[],
                ),
            ),
            evidence="none of the measured gradient calls involves",
            line=12,
            data={"use_lines": [12]},
        ),
        Traced((), evidence="no gradient norms were measured", line=12, data={"use_lines": [12]}),
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        events = trace.events_of("layer_grad_norms")
        if not events:
            return inconclusive("no gradient norms were measured at initialization")
        lines = set(finding.data.get("use_lines") or [])
        ours = {e.get("variable") for e in trace.events_of("initializer") if e.get("line") in lines}
        ours.discard(None)
        chosen = next((e for e in events if any(n.get("variable") in ours for n in e.get("norms") or [])), None)
        if chosen is None:
            if ours or len(events) != 1:
                names = ", ".join(sorted(map(str, ours))[:6]) or "the flagged weights"
                return inconclusive(f"none of the measured gradient calls involves {names}")
            chosen = events[0]  # one gradient call and the flagged weights unnamed: the one measured
        ratio = chosen.get("first_ratio")
        if not isinstance(ratio, (int, float)):
            return inconclusive("the counterfactual with fan-in-scaled weights could not be evaluated")

        def fmt(norms) -> str:
            return ", ".join(
                f"{n.get('variable')} {n.get('norm'):.2g}"
                if isinstance(n.get("norm"), (int, float))
                else f"{n.get('variable')} ?"
                for n in (norms or [])[:8]
            )

        per_layer = f"per-layer gradient norms at init: {fmt(chosen.get('norms'))}; fan-in scaled: {fmt(chosen.get('counterfactual'))}"
        if ratio >= _CONFIRM_RATIO:
            return confirmed(
                f"with fan-in-scaled weights the first-layer gradient norm grows {ratio:.3g}x "
                f"(gradient call at line {chosen.get('line')}); {per_layer}"
            )
        return refuted(
            f"the first-layer gradient changes only {ratio:.3g}x with fan-in-scaled weights: "
            f"it reaches the first layer at a healthy scale; {per_layer}"
        )
