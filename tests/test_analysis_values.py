"""Program model facts: value flow (``value_of``) and what a value depends on (``dependencies``)."""

from __future__ import annotations

import libcst as cst
from analysis_support import context, find, name

from tflint_grad.analysis import dependencies


def test_value_of_follows_a_chain_of_assignments() -> None:
    ctx = context(
        """
        import tensorflow as tf
        probs = tf.nn.softmax(logits)
        p = probs
        q = p
        loss = -tf.reduce_sum(q)
        """
    )
    v = ctx.value_of(name(ctx, "q", line=5))
    assert v is not None and ctx.code(v) == "tf.nn.softmax(logits)"


def test_value_of_uses_the_binding_visible_at_the_read() -> None:
    ctx = context(
        """
        h = dense(x)
        out = h
        h = relu(h)
        """
    )
    v = ctx.value_of(name(ctx, "h", line=2))
    assert v is not None and ctx.code(v) == "dense(x)"


def test_value_of_stops_at_a_name_that_is_an_api_alias() -> None:
    ctx = context(
        """
        import tensorflow as tf
        act = tf.nn.relu
        y = act
        """
    )
    node = name(ctx, "act", line=3)
    assert ctx.value_of(node) is node  # the alias itself: its qualname says what it is
    assert ctx.qualname(node) == "tf.nn.relu"


def test_value_of_a_with_target_is_the_context_expression() -> None:
    ctx = context(
        """
        import tensorflow as tf
        with tf.GradientTape() as tape:
            pass
        tape.gradient(loss, variables)
        """
    )
    v = ctx.value_of(name(ctx, "tape", line=4))
    assert v is not None and ctx.code(v) == "tf.GradientTape()"


def test_value_of_self_attribute_set_in_init() -> None:
    ctx = context(
        """
        import tensorflow as tf
        class Trainer:
            def __init__(self):
                self.opt = tf.keras.optimizers.SGD(0.1)
            def step(self, grads):
                self.opt.apply_gradients(grads)
        """
    )
    v = ctx.value_of(find(ctx, "self.opt", cst.Attribute, line=6))
    assert v is not None and ctx.code(v) == "tf.keras.optimizers.SGD(0.1)"


def test_value_of_a_parameter_or_unknown_name_is_the_name_itself() -> None:
    ctx = context(
        """
        def f(x):
            return x
        """
    )
    node = name(ctx, "x", line=2)
    assert ctx.value_of(node) is node


def test_dependencies_reach_into_a_called_local_function() -> None:
    ctx = context(
        """
        import tensorflow as tf
        w = tf.Variable(1.0)
        unused = tf.Variable(2.0)
        def net(inputs):
            return inputs * w
        with tf.GradientTape() as tape:
            h = net(x0)
            loss = tf.reduce_mean(h)
        """
    )
    stmt = ctx.binding(name(ctx, "h", line=8))
    assert stmt is not None
    names, reached = dependencies(ctx, find(ctx, "tf.reduce_mean(h)", cst.Call))
    assert {"h", "net", "w", "x0"} <= names
    assert "unused" not in names
    w_binding = ctx.binding(name(ctx, "w", line=5))
    assert w_binding is not None and id(w_binding.node) in reached
    assert id(stmt.node) in reached


def test_dependencies_of_an_augmented_assignment_include_earlier_terms() -> None:
    ctx = context(
        """
        loss = data_loss(y)
        loss += reg_weight * l2
        total = loss
        """
    )
    names, _ = dependencies(ctx, name(ctx, "loss", line=3))
    assert {"data_loss", "y", "reg_weight", "l2"} <= names


def test_dependencies_do_not_follow_later_rebindings() -> None:
    ctx = context(
        """
        a = first()
        b = a
        a = second()
        """
    )
    names, _ = dependencies(ctx, find(ctx, "a", cst.Name, line=2))
    assert "first" in names and "second" not in names
