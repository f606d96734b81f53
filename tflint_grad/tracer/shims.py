"""Adjustments the harness makes to TensorFlow before a traced script runs (child side only).

- ``tf.contrib`` (gone since TF 2.0): the handful of ``tf.contrib.layers`` / ``tf.contrib.rnn``
  names TF1 scripts use most, mapped to their ``tf.compat.v1`` equivalents (``xavier_initializer``
  -> ``glorot_uniform_initializer``, ``batch_norm`` -> ``tf.compat.v1.layers.batch_normalization``
  keeping its ``updates_collections`` semantics, ...). Anything else raises an AttributeError
  that names the missing API.
- saving: Keras ``Model.save``/``save_weights``/``save_model``, ``ModelCheckpoint``,
  ``tf.train.Saver.save``, ``tf.train.Checkpoint.save/write``, ``CheckpointManager.save``,
  ``tf.saved_model.save`` and summary writers (``tf.summary.create_file_writer``,
  ``tf.compat.v1.summary.FileWriter``) become no-ops that write nothing.
- ``keras.datasets.<name>.load_data()`` returns synthetic arrays with the real shapes and
  dtypes (mnist, fashion_mnist, cifar10, cifar100, imdb, reuters, boston_housing), offline.
- ``tf.io.gfile`` writes go through the same "inside the trace folder only" check as the
  Python file APIs (``guard_gfile``), since TF's C++ file layer raises no audit events.

Every function here is best effort: a patch target missing in some TF/Keras version is
skipped, and the list of what was applied is returned as notes.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np

NOTE_LIMIT = 50


def _get(path: str) -> Any:
    """``"pkg.mod:Class.attr"`` -> object, or None."""
    mod, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(mod)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
        return obj
    except Exception:
        return None


def _imported(mod: str) -> Any:
    """A module only if it is already imported (never pays for importing tf_keras)."""
    return sys.modules.get(mod)


def _set(owner: Any, name: str, value: Any) -> bool:
    if owner is None:
        return False
    try:
        setattr(owner, name, value)
        return True
    except Exception:
        return False


def _replace_everywhere(replacements: dict[int, Any]) -> None:
    """Rebind every module-level name bound to a replaced function (public API aliases)."""
    if not replacements:
        return
    for mod in list(sys.modules.values()):
        d = getattr(mod, "__dict__", None)
        if not isinstance(d, dict):
            continue
        for k, v in list(d.items()):
            new = replacements.get(id(v))
            if new is not None and new is not v:
                try:
                    d[k] = new
                except Exception:
                    pass


# -- tf.contrib ---------------------------------------------------------------------------


def install_contrib(tf: Any, v1: Any, notes: list[str]) -> None:
    """Give ``tf.contrib`` (and ``tensorflow.contrib`` imports) the common TF1 names."""
    contrib = types.ModuleType(
        "tensorflow.contrib", "TF1 tf.contrib names mapped to tf.compat.v1 (tflint-grad tracing)"
    )
    layers = types.ModuleType("tensorflow.contrib.layers")
    rnn = types.ModuleType("tensorflow.contrib.rnn")
    framework = types.ModuleType("tensorflow.contrib.framework")

    def xavier_initializer(uniform=True, seed=None, dtype=None):
        kw = {"seed": seed}
        if dtype is not None:
            kw["dtype"] = dtype
        if uniform:
            return v1.glorot_uniform_initializer(**kw)
        return v1.variance_scaling_initializer(1.0, "fan_avg", "truncated_normal", **kw)

    def variance_scaling_initializer(factor=2.0, mode="FAN_IN", uniform=False, seed=None, dtype=None):
        kw = {"seed": seed}
        if dtype is not None:
            kw["dtype"] = dtype
        return v1.variance_scaling_initializer(
            factor, str(mode).lower(), "uniform" if uniform else "truncated_normal", **kw
        )

    def l2_regularizer(scale, scope=None):
        return lambda w: v1.multiply(float(scale), v1.nn.l2_loss(w), name=scope)

    def l1_regularizer(scale, scope=None):
        return lambda w: v1.multiply(float(scale), v1.reduce_sum(v1.abs(w)), name=scope)

    def _activate(out, activation_fn):
        return activation_fn(out) if activation_fn is not None else out

    def batch_norm(
        inputs,
        decay=0.999,
        center=True,
        scale=False,
        epsilon=0.001,
        activation_fn=None,
        param_initializers=None,
        param_regularizers=None,
        updates_collections="__default__",
        is_training=True,
        reuse=None,
        variables_collections=None,
        outputs_collections=None,
        trainable=True,
        batch_weights=None,
        fused=None,
        data_format="NHWC",
        zero_debias_moving_mean=False,
        scope=None,
        renorm=False,
        renorm_clipping=None,
        renorm_decay=0.99,
        adjustment=None,
    ):
        update_key = v1.GraphKeys.UPDATE_OPS
        if updates_collections == "__default__":
            updates_collections = update_key
        init = param_initializers or {}
        before = len(v1.get_collection(update_key))
        out = v1.layers.batch_normalization(
            inputs,
            axis=1 if str(data_format).upper().startswith("NC") else -1,
            momentum=decay,
            epsilon=epsilon,
            center=center,
            scale=scale,
            training=is_training,
            trainable=trainable,
            name=scope or "BatchNorm",
            reuse=reuse,
            fused=fused,
            renorm=renorm,
            beta_initializer=init.get("beta", v1.zeros_initializer()),
            gamma_initializer=init.get("gamma", v1.ones_initializer()),
            moving_mean_initializer=init.get("moving_mean", v1.zeros_initializer()),
            moving_variance_initializer=init.get("moving_variance", v1.ones_initializer()),
        )
        if updates_collections != update_key:
            ref = v1.get_collection_ref(update_key)
            new = ref[before:]
            del ref[before:]
            if updates_collections is None:  # contrib: "update the moving statistics in place"
                with v1.control_dependencies(new):
                    out = v1.identity(out)
            else:
                for op in new:
                    v1.add_to_collection(updates_collections, op)
        return _activate(out, activation_fn)

    def fully_connected(
        inputs,
        num_outputs,
        activation_fn=v1.nn.relu,
        normalizer_fn=None,
        normalizer_params=None,
        weights_initializer=None,
        weights_regularizer=None,
        biases_initializer="__zeros__",
        biases_regularizer=None,
        reuse=None,
        variables_collections=None,
        outputs_collections=None,
        trainable=True,
        scope=None,
    ):
        if biases_initializer == "__zeros__":
            biases_initializer = v1.zeros_initializer()
        use_bias = biases_initializer is not None and normalizer_fn is None
        out = v1.layers.dense(
            inputs,
            num_outputs,
            activation=None,
            use_bias=use_bias,
            kernel_initializer=weights_initializer or v1.glorot_uniform_initializer(),
            bias_initializer=biases_initializer if use_bias else v1.zeros_initializer(),
            kernel_regularizer=weights_regularizer,
            bias_regularizer=biases_regularizer if use_bias else None,
            trainable=trainable,
            name=scope,
            reuse=reuse,
        )
        if normalizer_fn is not None:
            out = normalizer_fn(out, **(normalizer_params or {}))
        return _activate(out, activation_fn)

    def conv2d(
        inputs,
        num_outputs,
        kernel_size,
        stride=1,
        padding="SAME",
        data_format=None,
        rate=1,
        activation_fn=v1.nn.relu,
        normalizer_fn=None,
        normalizer_params=None,
        weights_initializer=None,
        weights_regularizer=None,
        biases_initializer="__zeros__",
        biases_regularizer=None,
        reuse=None,
        variables_collections=None,
        outputs_collections=None,
        trainable=True,
        scope=None,
    ):
        if biases_initializer == "__zeros__":
            biases_initializer = v1.zeros_initializer()
        use_bias = biases_initializer is not None and normalizer_fn is None
        out = v1.layers.conv2d(
            inputs,
            num_outputs,
            kernel_size,
            strides=stride,
            padding=str(padding).lower(),
            data_format="channels_first" if str(data_format or "NHWC").upper().startswith("NC") else "channels_last",
            dilation_rate=rate,
            activation=None,
            use_bias=use_bias,
            kernel_initializer=weights_initializer or v1.glorot_uniform_initializer(),
            bias_initializer=biases_initializer if use_bias else v1.zeros_initializer(),
            kernel_regularizer=weights_regularizer,
            bias_regularizer=biases_regularizer if use_bias else None,
            trainable=trainable,
            name=scope,
            reuse=reuse,
        )
        if normalizer_fn is not None:
            out = normalizer_fn(out, **(normalizer_params or {}))
        return _activate(out, activation_fn)

    def max_pool2d(
        inputs, kernel_size, stride=2, padding="VALID", data_format="NHWC", outputs_collections=None, scope=None
    ):
        return v1.layers.max_pooling2d(inputs, kernel_size, stride, padding=str(padding).lower(), name=scope)

    def flatten(inputs, outputs_collections=None, scope=None):
        return v1.layers.flatten(inputs, name=scope)

    def dropout(
        inputs, keep_prob=0.5, noise_shape=None, is_training=True, outputs_collections=None, scope=None, seed=None
    ):
        return v1.layers.dropout(
            inputs, rate=1.0 - keep_prob, noise_shape=noise_shape, training=is_training, seed=seed, name=scope
        )

    for name, fn in {
        "xavier_initializer": xavier_initializer,
        "xavier_initializer_conv2d": xavier_initializer,
        "variance_scaling_initializer": variance_scaling_initializer,
        "l2_regularizer": l2_regularizer,
        "l1_regularizer": l1_regularizer,
        "batch_norm": batch_norm,
        "fully_connected": fully_connected,
        "linear": lambda inputs, num_outputs, **kw: fully_connected(inputs, num_outputs, activation_fn=None, **kw),
        "conv2d": conv2d,
        "max_pool2d": max_pool2d,
        "flatten": flatten,
        "dropout": dropout,
    }.items():
        setattr(layers, name, fn)
    cell = getattr(v1.nn, "rnn_cell", None)
    for name in (
        "BasicLSTMCell",
        "LSTMCell",
        "GRUCell",
        "BasicRNNCell",
        "MultiRNNCell",
        "DropoutWrapper",
        "LSTMStateTuple",
        "RNNCell",
        "ResidualWrapper",
    ):
        try:
            setattr(rnn, name, getattr(cell, name))
        except Exception:
            pass
    for name in ("static_rnn", "static_bidirectional_rnn"):
        if hasattr(v1.nn, name):
            setattr(rnn, name, getattr(v1.nn, name))
    framework.get_or_create_global_step = v1.train.get_or_create_global_step
    framework.get_variables = lambda scope=None, **kw: v1.get_collection(v1.GraphKeys.GLOBAL_VARIABLES, scope)
    framework.get_trainable_variables = lambda scope=None, **kw: v1.get_collection(
        v1.GraphKeys.TRAINABLE_VARIABLES, scope
    )

    def _missing(modname: str) -> Callable[[str], Any]:
        def __getattr__(name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            raise AttributeError(
                f"{modname}.{name} does not exist in TensorFlow 2 and tflint-grad has no stand-in for it"
            )

        return __getattr__

    for mod in (contrib, layers, rnn, framework):
        mod.__dict__["__getattr__"] = _missing(mod.__name__.replace("tensorflow.", "tf."))
    contrib.layers, contrib.rnn, contrib.framework = layers, rnn, framework
    for mod in (contrib, layers, rnn, framework):
        sys.modules[mod.__name__] = mod
    for owner in (tf, v1):
        _set(owner, "contrib", contrib)
    notes.append("tf.contrib: stand-ins from tf.compat.v1 installed")


# -- saving -------------------------------------------------------------------------------


class _NoopFileWriter:
    """``tf.compat.v1.summary.FileWriter`` that writes nothing."""

    def __init__(self, logdir=None, graph=None, *args, **kwargs):
        self._logdir = logdir

    def get_logdir(self):
        return self._logdir

    def add_summary(self, *a, **k):
        pass

    add_session_log = add_event = add_graph = add_meta_graph = add_run_metadata = add_summary

    def flush(self):
        pass

    close = reopen = flush

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def stub_saving(tf: Any, v1: Any, notes: list[str]) -> None:
    done: list[str] = []
    replacements: dict[int, Any] = {}

    def noop(*args, **kwargs):
        return None

    def patch_method(path: str, replacement: Callable) -> None:
        owner_path, _, name = path.rpartition(".")
        owner = _get(owner_path)
        if owner is not None and hasattr(owner, name) and _set(owner, name, replacement):
            done.append(path.split(":")[-1])

    # Keras 3
    for cls in ("keras.src.models.model:Model",):
        patch_method(cls + ".save", noop)
        patch_method(cls + ".save_weights", noop)
        patch_method(cls + ".export", noop)
    patch_method("keras.src.callbacks.model_checkpoint:ModelCheckpoint._save_model", noop)
    for fn_path in (
        "keras.src.saving.saving_api:save_model",
        "keras.src.saving.saving_api:save_weights",
        "keras.src.legacy.saving.legacy_h5_format:save_model_to_hdf5",
    ):
        fn = _get(fn_path)
        if fn is not None:
            replacements[id(fn)] = noop
            done.append(fn_path.split(":")[-1])
    # tf_keras (only when the script uses it: legacy mode)
    if _imported("tf_keras") is not None:
        for cls in ("tf_keras.src.engine.training:Model", "tf_keras.src.engine.training_v1:Model"):
            patch_method(cls + ".save", noop)
            patch_method(cls + ".save_weights", noop)
        patch_method("tf_keras.src.callbacks:ModelCheckpoint._save_model", noop)
        for fn_path in ("tf_keras.src.saving.saving_api:save_model", "tf_keras.src.saving.legacy.save:save_model"):
            fn = _get(fn_path)
            if fn is not None:
                replacements[id(fn)] = noop

    # TF checkpoints
    def saver_save(self, sess, save_path, global_step=None, *args, **kwargs):
        if global_step is None:
            return save_path
        try:
            step = int(global_step) if isinstance(global_step, (int, np.integer)) else int(sess.run(global_step))
        except Exception:
            step = 0
        return f"{save_path}-{step}"

    patch_method("tensorflow.python.training.saver:Saver.save", saver_save)

    def ckpt_save(self, file_prefix, *args, **kwargs):
        n = getattr(self, "_tflint_saves", 0) + 1
        try:
            self._tflint_saves = n
        except Exception:
            pass
        return f"{file_prefix}-{n}"

    def ckpt_write(self, file_prefix, *args, **kwargs):
        return str(file_prefix)

    def manager_save(self, checkpoint_number=None, *args, **kwargs):
        return f"{getattr(self, 'directory', '.')}/ckpt-{checkpoint_number if checkpoint_number is not None else 0}"

    for cls in (
        "tensorflow.python.checkpoint.checkpoint:Checkpoint",
        "tensorflow.python.checkpoint.checkpoint:CheckpointV1",
    ):
        patch_method(cls + ".save", ckpt_save)
        patch_method(cls + ".write", ckpt_write)
    patch_method("tensorflow.python.checkpoint.checkpoint_management:CheckpointManager.save", manager_save)

    saved_model_save = _get("tensorflow.python.saved_model.save:save")
    if saved_model_save is not None:
        replacements[id(saved_model_save)] = noop
        for owner in (getattr(tf, "saved_model", None), getattr(v1, "saved_model", None) if v1 is not None else None):
            if owner is not None and getattr(owner, "save", None) is saved_model_save:
                _set(owner, "save", noop)
        done.append("tf.saved_model.save")

    # summaries
    ops = _get("tensorflow.python.ops.summary_ops_v2")
    if ops is not None and hasattr(ops, "create_noop_writer"):
        orig = ops.create_file_writer_v2

        def create_file_writer(*args, **kwargs):
            return ops.create_noop_writer()

        replacements[id(orig)] = create_file_writer
        _set(getattr(tf, "summary", None), "create_file_writer", create_file_writer)
        done.append("tf.summary.create_file_writer")
        orig_v1 = getattr(ops, "create_file_writer", None)
        if orig_v1 is not None:
            replacements[id(orig_v1)] = create_file_writer
    writer_cls = _get("tensorflow.python.summary.writer.writer:FileWriter")
    if writer_cls is not None:
        replacements[id(writer_cls)] = _NoopFileWriter
        if v1 is not None:
            _set(getattr(v1, "summary", None), "FileWriter", _NoopFileWriter)
        done.append("tf.summary.FileWriter")
    _replace_everywhere(replacements)
    notes.append("saving stubbed: " + ", ".join(sorted(set(done))))


# Keras callbacks whose only effect is writing files: removed from fit() while tracing.
FILE_CALLBACKS = frozenset(
    {"TensorBoard", "ModelCheckpoint", "BackupAndRestore", "CSVLogger", "BackupAndRestoreExperimental"}
)


def writes_files(callback: Any) -> bool:
    return any(c.__name__ in FILE_CALLBACKS for c in type(callback).__mro__)


# -- synthetic datasets -----------------------------------------------------------------------

_RNG_SEED = 0


def _rng(seed: Any = None) -> np.random.Generator:
    return np.random.default_rng(_RNG_SEED if seed is None else int(seed) % (2**32))


def _random_bytes(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Writable uint8 noise, fast (rng.integers is ~10x slower for 150 MB of CIFAR)."""
    return np.frombuffer(bytearray(rng.bytes(int(np.prod(shape)))), dtype=np.uint8).reshape(shape)


def _images(
    n_train: int, n_test: int, shape: tuple[int, ...], classes: int, label_shape: tuple[int, ...], label_dtype: str
):
    def load_data(*args, **kwargs):
        rng = _rng()
        x_train = _random_bytes(rng, (n_train, *shape))
        x_test = _random_bytes(rng, (n_test, *shape))
        y_train = rng.integers(0, classes, (n_train, *label_shape)).astype(label_dtype)
        y_test = rng.integers(0, classes, (n_test, *label_shape)).astype(label_dtype)
        return (x_train, y_train), (x_test, y_test)

    return load_data


def _sequences(n_train: int, n_test: int, classes: int, default_words: int):
    def load_data(
        path=None,
        num_words=None,
        skip_top=0,
        maxlen=None,
        seed=113,
        start_char=1,
        oov_char=2,
        index_from=3,
        test_split=None,
        **kwargs,
    ):
        rng = _rng(seed)
        vocab = int(num_words) if num_words else default_words
        hi = max(vocab, index_from + 2)
        longest = int(maxlen) if maxlen else 200
        longest = max(2, min(longest, 200))

        def make(n):
            lengths = rng.integers(max(2, longest // 4), longest + 1, n)
            flat = rng.integers(index_from + 1, hi, int(lengths.sum()))
            out = np.empty(n, dtype=object)
            pos = 0
            for i, k in enumerate(lengths):
                seq = flat[pos : pos + k].tolist()
                if start_char is not None:
                    seq[0] = int(start_char)
                out[i] = seq
                pos += k
            return out

        n_tr, n_te = n_train, n_test
        if test_split is not None:  # reuters' own split
            total = n_train + n_test
            n_tr = int(total * (1 - float(test_split)))
            n_te = total - n_tr
        return (make(n_tr), rng.integers(0, classes, n_tr).astype("int64")), (
            make(n_te),
            rng.integers(0, classes, n_te).astype("int64"),
        )

    return load_data


def _boston(path=None, test_split=0.2, seed=113, **kwargs):
    rng = _rng(seed)
    total = 506
    n_train = int(total * (1 - float(test_split)))
    x = rng.normal(size=(total, 13)) * 10 + 20
    y = rng.normal(size=(total,)) * 9 + 22
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def _word_index(path=None, **kwargs):
    return {f"w{i}": i for i in range(1, 10001)}


DATASETS: dict[str, Callable[..., Any]] = {
    "mnist": _images(60000, 10000, (28, 28), 10, (), "uint8"),
    "fashion_mnist": _images(60000, 10000, (28, 28), 10, (), "uint8"),
    "cifar10": _images(50000, 10000, (32, 32, 3), 10, (1,), "uint8"),
    "cifar100": _images(50000, 10000, (32, 32, 3), 100, (1,), "int64"),
    "imdb": _sequences(25000, 25000, 2, 88585),
    "reuters": _sequences(8982, 2246, 46, 30980),
    "boston_housing": _boston,
}


def synthetic_datasets(notes: list[str]) -> None:
    """Replace ``load_data`` in every imported ``*.datasets.<name>`` module (Keras 3, tf_keras)."""
    roots = ["keras.src.datasets", "keras.datasets"]
    if _imported("tf_keras") is not None:
        roots = ["tf_keras.src.datasets", *roots, "tf_keras.datasets"]
    for root in roots:  # the src modules first: API modules imported later bind the patched function
        for name in DATASETS:
            try:
                importlib.import_module(f"{root}.{name}")
            except Exception:
                pass
    patched = 0
    for modname, mod in list(sys.modules.items()):
        head, _, name = modname.rpartition(".")
        if name in DATASETS and head.endswith("datasets") and hasattr(mod, "load_data"):
            if _set(mod, "load_data", DATASETS[name]):
                patched += 1
            if hasattr(mod, "get_word_index"):
                _set(mod, "get_word_index", _word_index)
    notes.append(f"keras.datasets: synthetic load_data() in {patched} modules")


# -- tf.io.gfile ----------------------------------------------------------------------------


def guard_gfile(check_write: Callable[[Any], None], notes: list[str]) -> None:
    """Route ``tf.io.gfile`` writes through ``check_write(path)`` (raises PermissionError)."""
    pyw = _get("tensorflow.python.lib.io._pywrap_file_io")
    if pyw is None:
        return
    one_path = ("CreateDir", "RecursivelyCreateDir", "DeleteFile", "DeleteRecursively")
    two_paths = ("RenameFile", "CopyFile")

    def wrap1(fn):
        def guarded(path, *a, **k):
            check_write(path)
            return fn(path, *a, **k)

        return guarded

    def wrap2(fn):
        def guarded(src, dst, *a, **k):
            check_write(dst)
            if fn.__name__ == "RenameFile":
                check_write(src)
            return fn(src, dst, *a, **k)

        return guarded

    def wrap_writable(fn):
        def guarded(path, mode="w", *a, **k):
            check_write(path)
            return fn(path, mode, *a, **k)

        return guarded

    n = 0
    for name in one_path:
        if hasattr(pyw, name):
            n += _set(pyw, name, wrap1(getattr(pyw, name)))
    for name in two_paths:
        if hasattr(pyw, name):
            n += _set(pyw, name, wrap2(getattr(pyw, name)))
    if hasattr(pyw, "WritableFile"):
        n += _set(pyw, "WritableFile", wrap_writable(pyw.WritableFile))
    notes.append(f"tf.io.gfile: {n} write entry points guarded")


def apply_all(tf: Any, v1: Any, *, tf1: bool, check_write: Callable[[Any], None]) -> tuple[list[str], list[str]]:
    """Everything above; returns (notes, warnings). Never raises."""
    notes: list[str] = []
    warnings: list[str] = []
    steps: list[tuple[str, Callable[[], None]]] = [
        ("saving stubs", lambda: stub_saving(tf, v1, notes)),
        ("synthetic datasets", lambda: synthetic_datasets(notes)),
        ("tf.io.gfile guard", lambda: guard_gfile(check_write, notes)),
    ]
    if v1 is not None:
        steps.insert(0, ("tf.contrib stand-ins", lambda: install_contrib(tf, v1, notes)))
    for what, fn in steps:
        try:
            fn()
        except Exception as e:
            warnings.append(f"tracer: could not install the {what}: {type(e).__name__}: {e}")
    return notes[:NOTE_LIMIT], warnings
