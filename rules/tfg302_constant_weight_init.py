from __future__ import annotations

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis.facts import tf_alias
from tflint_grad.analysis.weights import (
    InitSource,
    WeightUse,
    fan_in_initializer,
    uses_relu,
    weight_index,
)
from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive, refuted
from tflint_grad.tracer.events import event


class ConstantWeightInit(Rule):
    """Hidden-layer weights start from zeros, ones or another constant.

    ## What it does
    Flags the weights of a hidden layer (a weight layer whose output feeds another weight
    layer) initialized with a constant: `tf.zeros_initializer()`, `tf.ones_initializer()`,
    `tf.constant_initializer(0.1)`, `keras.initializers.Zeros()` / `Constant(...)`, the
    strings `'zeros'` / `'ones'`, or an initial value such as `tf.zeros([784, 256])`,
    `np.ones(...)`, `tf.fill(...)` or `tf.random_uniform(shape, 1., 1.)` (a draw of width 0).
    The initializer is followed through names, parameters and one-weight helper functions
    to the weights it initializes, like TFG301. Only weights that multiply activations count:
    a layer's kernel, or a variable read as an operand of `tf.matmul` / `@` / a convolution
    (or of a local helper that applies one). The finding is shown (confidence `high`) when
    the layer visibly feeds a gradient target; otherwise it is a `low` candidate.

    Not a finding: biases (bias keywords, 1-D shapes, names such as `b`, `b1`, `bias`),
    batch-norm `gamma`/`beta` and other normalization parameters, embeddings, the output
    layer (the last weight layer: zero-initializing it is a common, harmless choice),
    single-layer models (softmax regression's `W = tf.Variable(tf.zeros([784, 10]))`),
    layers of a single unit (`Dense(1)`: no symmetry to break), non-trainable variables, recurrent kernels (`recurrent_initializer`: the input kernel
    already makes the units differ), `tf.constant_initializer(array)` (pretrained
    weights), biases added with `+ b` whatever their shape (`[1, n]` LSTM gate biases), and
    variables the file updates itself (`v.assign(...)`: optimizer slots, RNN state buffers,
    simulation state).

    ## Why is this bad?
    When every weight of a layer starts equal, every unit of that layer computes the same
    output and receives the same gradient, so the units stay identical forever: the layer
    behaves like a single unit (symmetry is never broken). With zeros and ReLU the layer's
    output and gradients are exactly zero and it never trains.

    ## Example
    ```python
    W1 = tf.Variable(tf.zeros([784, 256]))
    b1 = tf.Variable(tf.zeros([256]))
    W2 = tf.Variable(tf.zeros([256, 10]))
    h = tf.nn.relu(tf.matmul(x, W1) + b1)
    logits = tf.matmul(h, W2)
    ```

    Use instead:
    ```python
    W1 = tf.Variable(tf.random.truncated_normal([784, 256], stddev=(2.0 / 784) ** 0.5))
    b1 = tf.Variable(tf.zeros([256]))
    W2 = tf.Variable(tf.zeros([256, 10]))  # the output layer may start at zero
    ```

    ## Fix safety
    Unsafe: it changes the network's initial weights. A constant initializer object or
    string used only for hidden weights is replaced by a fan-in-scaled one (He when the file
    uses ReLU-like activations, Glorot otherwise; TF1 names in TF1 scripts). A
    `tf.zeros`/`tf.ones` initial value with a literal shape becomes
    `tf.random.truncated_normal(shape, stddev=...)` scaled by the fan-in. No fix when the
    initializer is shared with biases or the output layer.

    ## Confirmation
    The traced `initializer` events of the flagged variables show a measured standard
    deviation of 0 at initialization, and the traced gradient of such a variable has identical
    columns (every unit gets the same gradient): `confirmed`, with the variable names and shapes.
    `refuted` when the traced weights are not constant, or when the units' gradients differ
    (an output layer: symmetry is broken downstream); no gradient measured: `inconclusive`.
    """

    code = "TFG302"
    name = "constant-weight-init"
    severity = "warning"
    requires = ("zeros", "ones", "Zeros", "Ones", "onstant", "fill", "full", "uniform", "Uniform", "normal", "Normal")

    VALID = [
        # Softmax regression: a single weight layer.
        Valid("""
            import tensorflow as tf
            x = tf.placeholder(tf.float32, [None, 784])
            W = tf.Variable(tf.zeros([784, 10]))
            b = tf.Variable(tf.zeros([10]))
            y = tf.nn.softmax(tf.matmul(x, W) + b)
        """),
        # Biases and batch-norm gamma/beta.
        Valid("""
            import tensorflow as tf
            W1 = tf.get_variable('W1', [784, 256], initializer=tf.glorot_uniform_initializer())
            b1 = tf.get_variable('b1', [256], initializer=tf.zeros_initializer())
            gamma = tf.Variable(tf.ones([256]))
            beta = tf.Variable(tf.zeros([256]))
            W2 = tf.get_variable('W2', [256, 10], initializer=tf.glorot_uniform_initializer())
            b2 = tf.get_variable('b2', [1, 10], initializer=tf.constant_initializer(0.1))
            model = tf.keras.Sequential([
                tf.keras.layers.Dense(64, bias_initializer='zeros'),
                tf.keras.layers.BatchNormalization(gamma_initializer='ones', beta_initializer='zeros'),
                tf.keras.layers.Dense(10, bias_initializer=tf.keras.initializers.Constant(0.1)),
            ])
        """),
        # The output layer starts at zero on purpose.
        Valid("""
            import tensorflow as tf
            from tensorflow.keras import layers
            model = tf.keras.Sequential([
                layers.Dense(256, activation='relu'),
                layers.Dense(256, activation='relu'),
                layers.Dense(10, kernel_initializer='zeros'),
            ])
            W1 = tf.Variable(tf.random.normal([784, 256], stddev=0.05))
            W2 = tf.Variable(tf.zeros([256, 10]))
            logits = tf.matmul(tf.nn.relu(tf.matmul(x, W1)), W2)
        """),
        # Layers of a single unit have no symmetry to break.
        Valid("""
            import tensorflow as tf
            model = tf.keras.Sequential([tf.keras.layers.Dense(1, kernel_initializer='ones', use_bias=False) for _ in range(3)])
            w1 = tf.Variable(tf.ones([8, 1]))
            w2 = tf.Variable(tf.random.normal([1, 4]))
            y = tf.matmul(tf.matmul(x, w1), w2)
        """),
        # Seed 003's hand-written batch norm: constant 1-D scale/offset and population statistics.
        Valid("""
            import tensorflow as tf
            class batch_norm:
                def __init__(self, inputs, size):
                    self.scale = tf.Variable(tf.random_uniform([size], 1., 1.))
                    self.beta = tf.Variable(tf.random_uniform([size], 0., 0.))
                    self.pop_mean = tf.Variable(tf.random_uniform([size], 0., 0.))
                    self.pop_var = tf.Variable(tf.random_uniform([size], 1., 1.))
            w = tf.Variable(tf.random_normal([1, 1]))
            bn = batch_norm(tf.matmul(x, w), 1)
        """),
        # Pretrained values, non-trainable constants and recurrent kernels.
        Valid("""
            import numpy as np
            import tensorflow as tf
            pretrained = np.load('w.npy')
            W1 = tf.get_variable('W1', [784, 256], initializer=tf.constant_initializer(pretrained))
            mask = tf.Variable(tf.ones([256, 256]), trainable=False)
            W2 = tf.get_variable('W2', [256, 10])
            model = tf.keras.Sequential([
                tf.keras.layers.LSTM(64, recurrent_initializer='zeros', return_sequences=True),
                tf.keras.layers.LSTM(64),
                tf.keras.layers.Dense(10),
            ])
        """),
        # not weights that multiply activations (issue 9): LSTM gate biases of shape [1, n] added with `+ b`,
        # RNN state buffers and simulation state the file assigns itself, hand-written optimizer slots
        Valid("""
            import numpy as np
            import tensorflow as tf
            ix = tf.Variable(tf.truncated_normal([vocabulary_size, num_nodes], -0.1, 0.1))
            im = tf.Variable(tf.truncated_normal([num_nodes, num_nodes], -0.1, 0.1))
            ib = tf.Variable(tf.zeros([1, num_nodes]))
            saved_output = tf.Variable(tf.zeros([1, num_nodes]))
            def lstm_cell(i, o):
                return tf.sigmoid(tf.matmul(i, ix) + tf.matmul(o, im) + ib)
            output = lstm_cell(sample_input, saved_output)
            reset = saved_output.assign(tf.zeros([1, num_nodes]))
            w = tf.Variable(tf.truncated_normal([num_nodes, vocabulary_size], -0.1, 0.1))
            logits = tf.matmul(output, w)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits))
            train_op = tf.train.GradientDescentOptimizer(1.0).minimize(loss)
            U = tf.Variable(np.zeros([500, 500], dtype=np.float32))
            Ut = tf.Variable(np.zeros([500, 500], dtype=np.float32))
            step = tf.group(U.assign(U + eps * Ut), Ut.assign(Ut + eps * tf.matmul(U, kernel)))
            class Adam(tf.Module):
                def apply_gradients(self, grads, vars):
                    for var in vars:
                        v = tf.Variable(tf.zeros(shape=var.shape))
                        s = tf.Variable(tf.zeros(shape=var.shape))
                        self.v_dvar.append(v)
                        self.s_dvar.append(s)
        """),
    ]
    INVALID = [
        Invalid(
            """
            import tensorflow as tf
            x = tf.placeholder(tf.float32, [None, 784])
            W1 = tf.Variable(tf.zeros([784, 256]))
            b1 = tf.Variable(tf.zeros([256]))
            W2 = tf.Variable(tf.zeros([256, 10]))
            b2 = tf.Variable(tf.zeros([10]))
            h = tf.nn.relu(tf.matmul(x, W1) + b1)
            logits = tf.matmul(h, W2) + b2
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=logits))
            train_op = tf.train.GradientDescentOptimizer(0.5).minimize(loss)
            """,
            line=3,
            message="`W1`",
            count=1,
            fixed="""
            import tensorflow as tf
            x = tf.placeholder(tf.float32, [None, 784])
            W1 = tf.Variable(tf.random.truncated_normal([784, 256], stddev=(2.0 / 784) ** 0.5))
            b1 = tf.Variable(tf.zeros([256]))
            W2 = tf.Variable(tf.zeros([256, 10]))
            b2 = tf.Variable(tf.zeros([10]))
            h = tf.nn.relu(tf.matmul(x, W1) + b1)
            logits = tf.matmul(h, W2) + b2
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=logits))
            train_op = tf.train.GradientDescentOptimizer(0.5).minimize(loss)
            """,
        ),
        Invalid(
            """
            from tensorflow import keras
            model = keras.Sequential([
                keras.layers.Dense(128, activation='tanh', kernel_initializer='zeros'),
                keras.layers.Dense(128, activation='tanh', kernel_initializer=keras.initializers.Constant(0.5)),
                keras.layers.Dense(10, kernel_initializer='zeros'),
            ])
            model.compile(optimizer='sgd', loss='mse')
            """,
            line=3,
            message="symmetry",
            count=2,
            fixed="""
            from tensorflow import keras
            model = keras.Sequential([
                keras.layers.Dense(128, activation='tanh', kernel_initializer='glorot_uniform'),
                keras.layers.Dense(128, activation='tanh', kernel_initializer=keras.initializers.GlorotUniform()),
                keras.layers.Dense(10, kernel_initializer='zeros'),
            ])
            model.compile(optimizer='sgd', loss='mse')
            """,
        ),
        Invalid(
            """
            import tensorflow as tf
            w_init = tf.zeros_initializer()
            h1 = tf.layers.dense(x, 64, activation=tf.nn.relu, kernel_initializer=w_init)
            h2 = tf.layers.dense(h1, 64, activation=tf.nn.relu, kernel_initializer=tf.glorot_uniform_initializer())
            out = tf.layers.dense(h2, 1)
            train_op = tf.train.AdamOptimizer().minimize(tf.losses.mean_squared_error(y, out))
            """,
            line=2,
            message="`h1`",
            fixed="""
            import tensorflow as tf
            w_init = tf.variance_scaling_initializer(scale=2.0)
            h1 = tf.layers.dense(x, 64, activation=tf.nn.relu, kernel_initializer=w_init)
            h2 = tf.layers.dense(h1, 64, activation=tf.nn.relu, kernel_initializer=tf.glorot_uniform_initializer())
            out = tf.layers.dense(h2, 1)
            train_op = tf.train.AdamOptimizer().minimize(tf.losses.mean_squared_error(y, out))
            """,
        ),
        # A helper shared by every layer: no fix (it also initializes the output layer).
        Invalid(
            """
            import tensorflow as tf
            def layer(x, n_in, n_out):
                W = tf.get_variable('W', [n_in, n_out], initializer=tf.constant_initializer(0.01))
                b = tf.get_variable('b', [n_out], initializer=tf.zeros_initializer())
                return tf.nn.sigmoid(tf.matmul(x, W) + b)
            with tf.variable_scope('l1'):
                h1 = layer(x, 784, 100)
            with tf.variable_scope('l2'):
                y = layer(h1, 100, 10)
            """,
            line=3,
            message="constant",
            confidence="low",  # nothing in the file differentiates it
        ),
    ]

    # -- static -------------------------------------------------------------------------------
    def finish(self) -> None:
        idx = weight_index(self.ctx)
        exempt = tfapi.names("initializers", "constant_exempt_keywords")
        # only weights that multiply activations: not biases added with `+ b` (even of shape [1, n]),
        # optimizer slots, state buffers or simulation state that the file updates itself
        weights = [u for u in idx.uses if u.role == "weight" and idx.multiplies(u)]
        groups: dict[int, list[tuple[WeightUse, WeightUse]]] = {}
        for u in weights:
            src = u.source
            if src is None or src.kind != "constant" or u.keyword in exempt or u.width == 1:
                continue  # a single unit has no symmetry to break
            fed = next((v for v in weights if idx.feeds(u, v)), None)
            if fed is None:
                continue
            groups.setdefault(id(src.node), []).append((u, fed))
        if not groups:
            return
        relu = uses_relu(self.ctx)
        for group in groups.values():
            on_path = any(idx.on_gradient_path(u) for u, _ in group)
            self._report(group, idx.uses, relu, on_path)

    def _report(
        self, group: list[tuple[WeightUse, WeightUse]], uses: list[WeightUse], relu: bool, on_path: bool
    ) -> None:
        ctx = self.ctx
        src: InitSource = group[0][0].source  # type: ignore[assignment]
        text = ctx.code(src.node)
        if len(text) > 60:
            text = text[:57] + "..."
        value = f" ({src.value:g})" if src.value is not None else ""
        labels: list[str] = []
        for u, _ in group:
            label = u.label(ctx)
            if label not in labels:
                labels.append(label)
        fed = group[0][1]
        feeds = f"feeding {fed.label(ctx)}"
        layers = ", ".join(labels[:6]) + (", ..." if len(labels) > 6 else "")
        hidden = "a hidden layer" if len(labels) == 1 else "hidden layers"
        fix = None
        family = "He, for ReLU networks" if relu else "Glorot"
        advice = (
            f"initialize weights randomly with a fan-in-scaled initializer ({family}) and keep constants for biases"
        )
        new = self._fix_text(group, src, uses, relu)
        if new is not None:
            fix = self.replace(src.node, new, f"Use `{new}`", "unsafe")
            advice = f"initialize weights randomly, e.g. `{new}` ({family}), and keep constants for biases"
        self.report(
            src.node,
            f"`{text}` sets every weight of {layers} ({hidden}, {feeds}) to the same constant{value}: every unit "
            f"of the layer computes the same output and receives the same gradient, so the units stay identical "
            f"(symmetry is never broken)"
            + ("" if on_path else " (assuming the layer is trained: no gradient target of this file visibly uses it)")
            + f"; {advice}",
            fix=fix,
            confidence="high" if on_path else "low",
            data={
                "use_lines": sorted({ctx.line(u.call) for u, _ in group}),
                "variables": [u.name for u, _ in group if u.name],
            },
        )

    def _fix_text(self, group, src: InitSource, uses: list[WeightUse], relu: bool) -> str | None:
        ours = {id(u) for u, _ in group}
        if any(u.source is not None and u.source.node is src.node and id(u) not in ours for u in uses):
            return None  # shared with biases or the output layer
        if not src.is_value:
            return fan_in_initializer(self.ctx, src, relu)
        if len(group) != 1 or group[0][0].sites or not isinstance(src.node, cst.Call):
            return None
        use = group[0][0]
        alias = tf_alias(self.ctx)
        shape = src.node.args[0].value if src.node.args and src.node.args[0].keyword is None else None
        if (
            alias is None
            or shape is None
            or use.fan_in is None
            or not src.api.startswith("tf.")
            or src.api not in tfapi.names("initializers", "value_shape_args")
        ):
            return None
        if relu or use.fan_out is None:
            std = f"(2.0 / {use.fan_in}) ** 0.5"
        else:
            std = f"(2.0 / ({use.fan_in} + {use.fan_out})) ** 0.5"
        return f"{alias}.random.truncated_normal({self.ctx.code(shape)}, stddev={std})"

    # -- confirmation ---------------------------------------------------------------------------
    OBSERVES = ("initializer", "gradient_call")
    CONFIRMS = [
        Traced(
            (
                event("initializer", 12, variable="h/kernel", shape=[4, 8], std=0.0, init="Zeros"),
                event("gradient_call", 30, variables=[{"name": "h/kernel", "grad": "ok", "units_identical": True}]),
            ),
            evidence="every unit of the layer gets the same gradient",
            line=12,
            data={"use_lines": [12]},
        )
    ]
    REFUTES = [
        Traced(
            (event("initializer", 12, variable="h/kernel", shape=[4, 8], std=0.05),),
            evidence="not constant at initialization: h/kernel std 0.05",
            line=12,
            data={"use_lines": [12]},
        ),
        Traced(  # constant, but the gradients differ per unit (an output layer): symmetry does not bind
            (
                event("initializer", 12, variable="out/kernel", shape=[4, 3], std=0.0, init="Zeros"),
                event("gradient_call", 30, variables=[{"name": "out/kernel", "grad": "ok", "units_identical": False}]),
            ),
            evidence="the units' gradients differ",
            line=12,
            data={"use_lines": [12]},
        ),
    ]
    INCONCLUSIVE = [
        Traced(  # constant, but no gradient of it was measured: the consequence is unseen
            (event("initializer", 12, variable="h/kernel", shape=[4, 8], std=0.0, init="Zeros"),),
            evidence="no gradient of",
            line=12,
            data={"use_lines": [12]},
        ),
        Traced((), evidence="no initial value was measured", line=12, data={"use_lines": [12]}),
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        lines = set(finding.data.get("use_lines") or [])
        events = [
            e
            for e in trace.events_of("initializer")
            if e.get("line") in lines and isinstance(e.get("std"), (int, float))
        ]
        if not events:
            return inconclusive("no initial value was measured for the flagged weights")
        constant = [e for e in events if e["std"] <= 1e-12]
        if not constant:
            names = ", ".join(f"{e.get('variable')} std {e['std']:.3g}" for e in events[:6])
            return refuted(f"the traced weights are not constant at initialization: {names}")
        names = ", ".join(f"{e.get('variable')} {e.get('shape')}" for e in constant[:6])
        shape = f"measured at initialization: {names} start with standard deviation 0 (init {constant[0].get('init')})"
        wanted = {str(e.get("variable")) for e in constant}
        seen: dict[str, bool] = {}
        for call in trace.events_of("gradient_call"):
            for v in call.get("variables") or []:
                name = str(v.get("name"))
                if name in wanted and isinstance(v.get("units_identical"), bool) and name not in seen:
                    seen[name] = v["units_identical"]
        same = [n for n, identical in seen.items() if identical]
        if same:
            return confirmed(f"{shape}; every unit of the layer gets the same gradient ({', '.join(same[:6])})")
        if seen:
            return refuted(
                f"{shape}, but the units' gradients differ ({', '.join(list(seen)[:6])}): symmetry is broken downstream"
            )
        return inconclusive(
            f"{shape}; no gradient of {', '.join(sorted(wanted)[:6])} was measured, so identical units are unseen"
        )
