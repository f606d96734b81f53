"""Program model facts: what a called object is (``FileContext.model_info``): Keras models and
their layers (BatchNormalization, Dropout), frozen models, and what stays unknown."""

from __future__ import annotations

import libcst as cst
from analysis_support import call, context, name

from tflint_grad.analysis import ModelInfo


def _info(source: str, callee: str = "model") -> ModelInfo:
    """``model_info`` of the callee of the last ``<callee>(...)`` call in ``source``."""
    ctx = context(source)
    c = [n for n in ctx.nodes if type(n) is cst.Call and ctx.code(n.func) == callee][-1]
    return ctx.model_info(c.func, c)


def test_sequential_with_batch_norm_lists_its_layers() -> None:
    info = _info(
        """
        import tensorflow as tf
        model = tf.keras.Sequential([
            tf.keras.layers.Dense(64),
            tf.keras.layers.BatchNormalization(),
            tf.keras.layers.Dense(10),
        ])
        y = model(x)
        """
    )
    assert (info.kind, info.batch_norm, info.dropout, info.frozen) == ("model", True, False, False)
    assert info.layers == ["Dense", "BatchNormalization", "Dense"]
    assert info.training_sensitive


def test_sequential_built_with_add() -> None:
    info = _info(
        """
        from tensorflow import keras
        model = keras.Sequential()
        model.add(keras.layers.Dense(8))
        model.add(keras.layers.Dropout(0.5))
        y = model(x)
        """
    )
    assert (info.kind, info.batch_norm, info.dropout) == ("model", False, True)
    assert info.layers == ["Dense", "Dropout"]


def test_sequential_of_layers_bound_to_names() -> None:
    info = _info(
        """
        import tensorflow as tf
        bn = tf.keras.layers.BatchNormalization()
        model = tf.keras.Sequential([tf.keras.layers.Dense(4), bn])
        y = model(x)
        """
    )
    assert info.batch_norm and info.layers == ["Dense", "BatchNormalization"]


def test_functional_model_sees_the_layers_built_before_it() -> None:
    info = _info(
        """
        from tensorflow import keras
        inputs = keras.Input(shape=(4,))
        h = keras.layers.Dense(16)(inputs)
        h = keras.layers.Dropout(0.2)(h)
        outputs = keras.layers.Dense(1)(h)
        model = keras.Model(inputs, outputs)
        y = model(x)
        """
    )
    assert (info.kind, info.batch_norm, info.dropout) == ("model", False, True)


def test_subclassed_model_with_batch_norm_in_init() -> None:
    info = _info(
        """
        import tensorflow as tf
        class Net(tf.keras.Model):
            def __init__(self):
                super().__init__()
                self.dense = tf.keras.layers.Dense(4)
                self.bn = tf.keras.layers.BatchNormalization()
            def call(self, x):
                return self.bn(self.dense(x))
        model = Net()
        y = model(x)
        """
    )
    assert (info.kind, info.batch_norm, info.dropout) == ("model", True, False)


def test_model_built_by_a_helper_function() -> None:
    info = _info(
        """
        import tensorflow as tf
        def build():
            return tf.keras.Sequential([tf.keras.layers.Dense(4), tf.keras.layers.BatchNormalization()])
        model = build()
        y = model(x)
        """
    )
    assert (info.kind, info.batch_norm) == ("model", True)
    assert "built by `build()`" in info.description


def test_frozen_pretrained_base_inside_a_sequential() -> None:
    info = _info(
        """
        import tensorflow as tf
        base = tf.keras.applications.MobileNetV2(include_top=False)
        base.trainable = False
        model = tf.keras.Sequential([base, tf.keras.layers.Dense(10)])
        y = model(x)
        """
    )
    assert (info.kind, info.batch_norm, info.frozen) == ("model", True, True)


def test_applications_without_batch_norm() -> None:
    info = _info(
        """
        import tensorflow as tf
        model = tf.keras.applications.VGG16(weights=None)
        y = model(x)
        """
    )
    assert (info.kind, info.batch_norm) == ("model", False)


def test_a_single_layer_and_its_trainable_flag() -> None:
    source = """
        import tensorflow as tf
        bn = tf.keras.layers.BatchNormalization(trainable=False)
        y = bn(x)
        """
    info = _info(source, "bn")
    assert (info.kind, info.batch_norm, info.frozen, info.layers) == ("layer", True, True, ["BatchNormalization"])


def test_unknown_when_the_file_does_not_say() -> None:
    param = _info(
        """
        def train_step(model, x):
            return model(x)
        """
    )
    imported = _info(
        """
        from mypackage.nets import model
        y = model(x)
        """
    )
    loaded = _info(
        """
        import tensorflow as tf
        model = tf.keras.models.load_model("saved")
        y = model(x)
        """
    )
    assert (param.kind, imported.kind, loaded.kind) == ("unknown", "unknown", "unknown")
    assert "parameter" in param.description and "imported" in imported.description
    assert not (param.batch_norm or imported.batch_norm or loaded.batch_norm)


def test_api_functions_and_local_functions_are_not_models() -> None:
    ctx = context(
        """
        import tensorflow as tf
        def helper(x):
            return x
        y = tf.nn.relu(x)
        z = helper(x)
        """
    )
    relu = call(ctx, "tf.nn.relu(x)")
    helper = call(ctx, "helper(x)")
    assert ctx.model_info(relu.func, relu).kind == "other"
    assert ctx.model_info(helper.func, helper).kind == "other"


def test_self_call_in_a_method_is_the_enclosing_class() -> None:
    ctx = context(
        """
        import tensorflow as tf
        class Net(tf.keras.Model):
            def __init__(self):
                super().__init__()
                self.drop = tf.keras.layers.Dropout(0.5)
            def train_step(self, x):
                return self(x)
        """
    )
    self_name = name(ctx, "self", line=7)
    c = ctx.parent(self_name)
    assert isinstance(c, cst.Call)
    info = ctx.model_info(self_name, c)
    assert (info.kind, info.dropout) == ("model", True)
