"""The program model's gradient facts: ``ctx.gradient_calls`` and which one an expression reaches."""

from __future__ import annotations

import textwrap

import libcst as cst

from tflint_grad.analysis import FileContext, gradient_targets

SOURCE = textwrap.dedent("""\
    import tensorflow as tf
    def my_loss(y, p):
        return tf.reduce_mean(tf.math.log(p))
    tf.summary.scalar("x", tf.math.log(z))
    with tf.GradientTape() as tape:
        tape.watch(image)
        out = model(image)
        loss = my_loss(y, out)
    saliency = tape.gradient(loss, image)
    with tf.GradientTape() as t2:
        l2 = tf.reduce_sum(model(x, training=True))
    grads = t2.gradient(l2, model.trainable_variables)
    train = tf.compat.v1.train.AdamOptimizer().minimize(cost)
    model.compile(optimizer="adam", loss=my_loss)
    model.compile(optimizer="adam", loss="mse")
    dy = tf.gradients(ys, [w, b])
""")


def _ctx(src: str) -> FileContext:
    return FileContext(cst.parse_module(src), src, "t.py")


def test_every_kind_of_gradient_request_is_one_fact():
    ctx = _ctx(SOURCE)
    got = [
        (gc.kind, ctx.code(gc.target) if gc.target else None, gc.wrt, ctx.line(gc.node)) for gc in ctx.gradient_calls
    ]
    assert got == [
        ("tape", "loss", "input", 9),
        ("tape", "l2", "variables", 12),
        ("minimize", "cost", "variables", 13),
        ("compile", "my_loss", "variables", 14),
        ("compile", '"mse"', "variables", 15),
        ("tf_gradients", "ys", "unknown", 16),
    ]
    assert ctx.gradient_calls[0].tape is ctx.tapes[0] and ctx.gradient_calls[0].wrt_input


def test_reachability_follows_assignments_into_loss_helpers():
    ctx = _ctx(SOURCE)
    logs = [n for n in ctx.nodes if type(n) is cst.Call and ctx.code(n.func) == "tf.math.log"]
    assert [ctx.line(n) for n in logs] == [3, 4]
    targets = gradient_targets(ctx)
    assert targets.reaching(ctx, logs[0]) is ctx.gradient_calls[0]  # through `loss = my_loss(...)`
    assert targets.reaching(ctx, logs[1]) is None  # a TensorBoard summary is never differentiated


def test_activation_produced_in_the_tape_is_an_input():
    ctx = _ctx(
        textwrap.dedent("""\
        import tensorflow as tf
        with tf.GradientTape() as tape:
            conv_out, preds = grad_model(img)
            score = preds[:, 3]
        grads = tape.gradient(score, conv_out)
        """)
    )
    (gc,) = ctx.gradient_calls
    assert gc.wrt == "input"


def _mode_of(src: str, needle: str) -> str:
    from tflint_grad.analysis.modes import mode_at

    ctx = _ctx(textwrap.dedent(src))
    node = next(n for n in ctx.nodes if type(n) is cst.Call and ctx.code(n).startswith(needle))
    return mode_at(ctx, node)


def test_execution_mode_per_scope():
    tf2 = """\
        import tensorflow as tf
        graph = tf.Graph()
        with graph.as_default():
            a = tf.compat.v1.placeholder(tf.float32)
            a.assign(1)
        v.assign(2)
        @tf.function
        def f():
            w.assign(3)
        """
    assert _mode_of(tf2, "a.assign") == "graph"
    assert _mode_of(tf2, "v.assign") == "eager"
    assert _mode_of(tf2, "w.assign") == "function"
    tf1 = """\
        import tensorflow as tf
        v.assign(1)
        x = tf.placeholder(tf.float32)
        tf.enable_eager_execution()
        w.assign(2)
        """
    assert _mode_of(tf1, "v.assign") == "graph"
    assert _mode_of(tf1, "w.assign") == "eager"
    compat = """\
        import tensorflow.compat.v1 as tf
        v.assign(1)
        x = tf.placeholder(tf.float32)
        tf.disable_v2_behavior()
        w.assign(2)
        """
    assert _mode_of(compat, "v.assign") == "unknown"
    assert _mode_of(compat, "w.assign") == "graph"


def test_branches_that_no_call_site_takes():
    from tflint_grad.analysis.dataflow import is_identity_activation, never_runs

    ctx = _ctx(
        textwrap.dedent("""\
        import tensorflow as tf
        def new_fc_layer(x, n, use_relu=True):
            h = tf.matmul(x, w)
            if use_relu:
                h = tf.nn.relu(h)
            return h
        def head(x):
            if x is None:
                return tf.nn.softmax(x)
            return x
        class Net(tf.keras.Model):
            def call(self, x, is_training=False):
                if not is_training:
                    x = tf.nn.softmax(x)
                return x
        a = new_fc_layer(x, 10, use_relu=False)
        b = new_fc_layer(a, 2, False)
        net = Net()
        logits = net(x, is_training=True)
        c = head(logits)
        act = tf.keras.layers.Activation("linear")
        """)
    )
    calls = {ctx.code(n.func): n for n in ctx.nodes if type(n) is cst.Call}
    assert never_runs(ctx, calls["tf.nn.relu"])
    softmaxes = [n for n in ctx.nodes if type(n) is cst.Call and ctx.code(n.func) == "tf.nn.softmax"]
    assert never_runs(ctx, softmaxes[0]) is False  # head(logits): not a constant
    assert never_runs(ctx, softmaxes[1])  # Net.call under net(x, is_training=True)
    assert never_runs(ctx, calls["tf.matmul"]) is False
    assert is_identity_activation(ctx, calls["tf.keras.layers.Activation"])
