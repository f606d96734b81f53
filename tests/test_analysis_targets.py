"""The gradient-target query the numerics rules share (analysis/targets.py): which ops visibly
lie on the path to a gradient, on small programs written for it."""

from __future__ import annotations

import libcst as cst

from tflint_grad.analysis.context import FileContext
from tflint_grad.analysis.targets import gradient_targets
from tflint_grad.rule import dedent


def _reaching(code: str) -> dict[str, bool]:
    """For each call whose code starts with ``tf.log``/``tf.sqrt``: does it reach a target?"""
    src = dedent(code)
    ctx = FileContext(cst.parse_module(src), src, "example.py")
    targets = gradient_targets(ctx)
    out = {}
    for n in ctx.nodes:
        if type(n) is cst.Call and ctx.code(n).startswith(("tf.log", "tf.sqrt")):
            out[ctx.code(n)] = targets.reaches(ctx, n)
    return out


def test_loss_minimized_in_tf1_reaches_and_a_summary_does_not():
    got = _reaching("""
        import tensorflow as tf
        p = tf.nn.softmax(logits)
        cost = -tf.reduce_sum(y * tf.log(p))
        train = tf.train.AdamOptimizer().minimize(cost)
        tf.summary.scalar("entropy", -tf.reduce_sum(p * tf.log(p + 1e-9)))
        rmse = tf.sqrt(tf.reduce_mean(tf.square(a - b)))
    """)
    assert got == {"tf.log(p)": True, "tf.log(p + 1e-9)": False, "tf.sqrt(tf.reduce_mean(tf.square(a - b)))": False}


def test_no_gradient_target_means_nothing_reaches():
    got = _reaching("""
        import tensorflow as tf
        cost = -tf.reduce_mean(Y * tf.log(Y_pred))
        update = tf.assign(W, W - lr * d_W)
    """)
    assert got == {"tf.log(Y_pred)": False}


def test_helpers_methods_and_compiled_losses_reach():
    got = _reaching("""
        import tensorflow as tf
        class GAN:
            def bce(self, p, y):
                return -tf.reduce_mean(y * tf.log(p))
            def train_step(self, x):
                with tf.GradientTape() as tape:
                    loss = self.bce(tf.sigmoid(self.disc(x)), 1.0)
                return tape.gradient(loss, self.disc.trainable_variables)
        def dist(a, b):
            return tf.sqrt(tf.reduce_sum(tf.square(a - b)))
        model = make_model(dist)
        model.compile(optimizer="adam", loss="mse")
    """)
    assert got == {"tf.log(p)": True, "tf.sqrt(tf.reduce_sum(tf.square(a - b)))": True}


def test_a_loop_variable_does_not_put_the_loop_body_on_the_path():
    # `loss` in the helper is assigned, not read: the display loop's `loss` is not its input
    got = _reaching("""
        import tensorflow as tf
        def xent(p, y):
            loss = -tf.reduce_sum(y * tf.log(p))
            return loss
        def step(x, y):
            with tf.GradientTape() as g:
                loss = xent(net(x), y)
            return g.gradient(loss, net.trainable_variables)
        for i, (x, y) in enumerate(data):
            step(x, y)
            loss = tf.sqrt(tf.reduce_sum(tf.square(net(x) - y)))
            print(loss)
    """)
    assert got == {"tf.log(p)": True, "tf.sqrt(tf.reduce_sum(tf.square(net(x) - y)))": False}


def _requests_reached(code: str) -> dict[str, str | None]:
    """For each ``tf.log``/``tf.sqrt`` call: the kind and line of the request it reaches."""
    src = dedent(code)
    ctx = FileContext(cst.parse_module(src), src, "example.py")
    targets = gradient_targets(ctx)
    out: dict[str, str | None] = {}
    for n in ctx.nodes:
        if type(n) is cst.Call and ctx.code(n).startswith(("tf.log", "tf.sqrt")):
            r = targets.reaching(ctx, n)
            out[ctx.code(n)] = f"{r.kind}@{ctx.line(r.node)}" if r is not None else None
    return out


def test_reaching_names_the_request_through_a_self_method():
    got = _requests_reached("""
        import tensorflow as tf
        class Trainer:
            def loss_fn(self, p):
                return -tf.reduce_mean(tf.log(p))
            def build(self, p, q):
                self.opt = tf.train.AdamOptimizer()
                step = self.opt.minimize(self.loss_fn(p))
                grads = tf.gradients(tf.reduce_sum(tf.sqrt(q)), [q])
                return step, grads
    """)
    assert got == {"tf.log(p)": "minimize@7", "tf.sqrt(q)": "tf_gradients@8"}


def test_a_name_a_helper_assigns_is_not_a_read():
    got = _requests_reached("""
        import tensorflow as tf
        def step(x):
            loss = tf.reduce_mean(tf.square(model(x) - y))
            return loss
        train = tf.train.AdamOptimizer().minimize(step(x))
        loss = -tf.reduce_mean(tf.log(p))
        tf.summary.scalar("entropy", loss)
    """)
    assert got == {"tf.log(p)": None}
