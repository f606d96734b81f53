"""Program model facts: name binding, qualified names, call resolution (tflint_grad.analysis)."""

from __future__ import annotations

import libcst as cst
import pytest
from analysis_support import call, context, find, name

from tflint_grad.analysis import dotted, get_arg

# -- binding: which statement a name refers to, and how it was bound ---------------------------


@pytest.mark.parametrize(
    "ident,kind,statement",
    [
        ("tf", "import", cst.Module),
        ("x", "augassign", cst.AugAssign),
        ("y", "annassign", cst.AnnAssign),
        ("i", "for", cst.For),
        ("tape", "with", cst.With),
        ("f", "def", cst.FunctionDef),
        ("C", "class", cst.ClassDef),
    ],
)
def test_binding_kind_and_statement(ident: str, kind: str, statement: type) -> None:
    ctx = context(
        """
        import tensorflow as tf
        x = 1
        y: int = 2
        x += 3
        for i in range(3):
            pass
        with tf.GradientTape() as tape:
            pass
        def f(p):
            return p
        class C:
            pass
        use(tf, x, y, i, tape, f, C)
        """
    )
    b = ctx.binding(name(ctx, ident, line=13))
    assert b is not None
    assert (b.kind, type(b.node)) == (kind, statement)


def test_binding_of_a_parameter_inside_its_function() -> None:
    ctx = context(
        """
        p = 0
        def f(p, q=1):
            return p + q
        """
    )
    b = ctx.binding(name(ctx, "p", line=3))
    assert b is not None and b.kind == "param" and isinstance(b.scope, cst.FunctionDef)


def test_reassignment_reads_the_previous_binding() -> None:
    ctx = context(
        """
        x = 1
        x = x + 1
        print(x)
        """
    )
    inner = ctx.binding(name(ctx, "x", line=2))
    after = ctx.binding(name(ctx, "x", line=3))
    assert inner is not None and ctx.code(inner.value) == "1"
    assert after is not None and ctx.code(after.value) == "x + 1"


def test_local_assignment_shadows_the_global() -> None:
    ctx = context(
        """
        lr = 0.1
        def step():
            lr = 0.5
            return lr
        print(lr)
        """
    )
    local = ctx.binding(name(ctx, "lr", line=4))
    module = ctx.binding(name(ctx, "lr", line=5))
    assert local is not None and ctx.code(local.value) == "0.5"
    assert module is not None and ctx.code(module.value) == "0.1"


def test_class_attributes_are_not_visible_in_methods() -> None:
    ctx = context(
        """
        rate = 0.1
        class M:
            rate = 0.5
            def step(self):
                return rate
        """
    )
    b = ctx.binding(name(ctx, "rate", line=5))
    assert b is not None and isinstance(b.scope, cst.Module) and ctx.code(b.value) == "0.1"


def test_a_global_defined_after_the_function_is_found() -> None:
    ctx = context(
        """
        def train(x):
            return model(x)
        model = build()
        """
    )
    b = ctx.binding(name(ctx, "model", line=2))
    assert b is not None and b.kind == "assign" and ctx.code(b.value) == "build()"


def test_self_attribute_binds_to_the_assignment_in_another_method() -> None:
    ctx = context(
        """
        import tensorflow as tf
        class Net(tf.keras.Model):
            def __init__(self):
                super().__init__()
                self.bn = tf.keras.layers.BatchNormalization()
            def call(self, x):
                return self.bn(x)
        """
    )
    b = ctx.binding(find(ctx, "self.bn", cst.Attribute, line=7))
    assert b is not None and ctx.code(b.value) == "tf.keras.layers.BatchNormalization()"


def test_tuple_unpacking_binds_each_name() -> None:
    ctx = context(
        """
        grads, variables = zip(*pairs)
        print(variables)
        """
    )
    b = ctx.binding(name(ctx, "variables", line=2))
    assert b is not None and b.kind == "unpack" and isinstance(b.node, cst.Assign)


def test_an_undefined_name_has_no_binding() -> None:
    ctx = context("print(undefined_thing)\n")
    assert ctx.binding(name(ctx, "undefined_thing")) is None


# -- qualified names: import-resolved, canonical --------------------------------------------------


@pytest.mark.parametrize(
    "source,expr,expected",
    [
        ("import tensorflow as tf\ntf.keras.layers.Dense\n", "tf.keras.layers.Dense", "keras.layers.Dense"),
        ("import tensorflow as tf\ntf.math.log\n", "tf.math.log", "tf.log"),
        ("import tensorflow.compat.v1 as tf\ntf.layers.dense\n", "tf.layers.dense", "tf.layers.dense"),
        (
            "import tensorflow as tf\ntf.compat.v1.global_variables\n",
            "tf.compat.v1.global_variables",
            "tf.global_variables",
        ),
        ("from tensorflow import keras\nkeras.optimizers.Adam\n", "keras.optimizers.Adam", "keras.optimizers.Adam"),
        ("import tf_keras\ntf_keras.layers.Dense\n", "tf_keras.layers.Dense", "keras.layers.Dense"),
        ("from tensorflow import GradientTape\nGradientTape\n", "GradientTape", "tf.GradientTape"),
        (
            "from tensorflow.keras.layers import BatchNormalization as BN\nBN\n",
            "BN",
            "keras.layers.BatchNormalization",
        ),
        ("import tensorflow as tf\nK = tf.keras.backend\nK.mean\n", "K.mean", "keras.backend.mean"),
        ("import numpy as np\nnp.log\n", "np.log", "np.log"),
    ],
)
def test_qualname_resolves_imports_and_aliases(source: str, expr: str, expected: str) -> None:
    ctx = context(source)
    node = find(ctx, expr, cst.Attribute if "." in expr else cst.Name)
    assert ctx.qualname(node) == expected


@pytest.mark.parametrize(
    "source,expr",
    [
        ("import torch\ntorch.nn.Linear\n", "torch.nn.Linear"),  # not a TensorFlow/Keras/NumPy root
        ("import tensorflow as tf\ndef f(tf):\n    return tf.reduce_sum\n", "tf.reduce_sum"),  # a parameter
        ("import tensorflow as tf\ntf = load()\ntf.reduce_sum\n", "tf.reduce_sum"),  # rebound
        ("layers.Dense\n", "layers.Dense"),  # never imported
    ],
)
def test_qualname_is_none_when_not_an_imported_api(source: str, expr: str) -> None:
    ctx = context(source)
    assert ctx.qualname(find(ctx, expr, cst.Attribute)) is None


# -- call resolution ------------------------------------------------------------------------------


def test_call_through_an_alias_resolves_to_the_api() -> None:
    ctx = context(
        """
        import tensorflow as tf
        Adam = tf.keras.optimizers.Adam
        opt = Adam(1e-3)
        """
    )
    assert ctx.qualname(call(ctx, "Adam(1e-3)").func) == "keras.optimizers.Adam"


def test_call_of_a_local_function_binds_to_its_def() -> None:
    ctx = context(
        """
        def build(units):
            return units
        net = build(4)
        """
    )
    func = call(ctx, "build(4)").func
    b = ctx.binding(func)
    assert ctx.qualname(func) is None
    assert b is not None and b.kind == "def" and isinstance(b.node, cst.FunctionDef)
    assert b.node.name.value == "build"


# -- syntax helpers -------------------------------------------------------------------------------


def test_dotted_names_only_plain_attribute_chains() -> None:
    ctx = context("a.b.c\nf().b\nx[0].y\n")
    assert dotted(find(ctx, "a.b.c", cst.Attribute)) == "a.b.c"
    assert dotted(find(ctx, "f().b", cst.Attribute)) is None
    assert dotted(find(ctx, "x[0].y", cst.Attribute)) is None
    assert dotted(None) is None


def test_get_arg_by_keyword_then_position() -> None:
    ctx = context("f(1, *rest, b=2)\ng(x, y)\n")
    f = call(ctx, "f(1, *rest, b=2)")
    g = call(ctx, "g(x, y)")
    arg_b = get_arg(f, "b", 1)
    assert arg_b is not None and ctx.code(arg_b.value) == "2"  # the keyword wins
    assert get_arg(f, "missing", 1) is None  # `*rest` is not the positional argument 1
    arg0 = get_arg(f, None, 0)
    assert arg0 is not None and ctx.code(arg0.value) == "1"
    arg_y = get_arg(g, "y", 1)
    assert arg_y is not None and ctx.code(arg_y.value) == "y"
    assert get_arg(g, None, 2) is None
