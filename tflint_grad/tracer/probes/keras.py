"""Keras 3 and tf_keras: optimizers, BatchNormalization/Dropout calls (training value, call stack), models' layers, moving statistics, weights added."""

from __future__ import annotations

import sys
from typing import Any

from tflint_grad.tracer.probes.base import _STAT_SAMPLE, ProbeContext, _debug, _fan, _PostImportFinder, _shape, probe


class KerasProbes(ProbeContext):
    # ===================================================================================
    # Keras 3 and tf_keras (patched when imported)
    # ===================================================================================
    def _install_keras_hooks(self) -> None:
        hooks = {
            "keras.src.optimizers.base_optimizer": self._hook_k3_optimizer,
            "keras.src.layers.normalization.batch_normalization": lambda m: self._hook_bn(
                m, "BatchNormalization", "keras3"
            ),
            "keras.src.layers.regularization.dropout": lambda m: self._hook_dropout(m, "keras3"),
            "keras.src.layers.layer": lambda m: self._hook_layer(m.Layer, "keras3"),
            "keras.src.initializers.random_initializers": lambda m: self._hook_keras_initializers(m),
            "tf_keras.src.optimizers.optimizer": self._hook_tk_optimizer,
            "tf_keras.src.optimizers.legacy.optimizer_v2": self._hook_tk_optimizer_v2,
            "tf_keras.src.layers.normalization.batch_normalization": lambda m: self._hook_bn(
                m, "BatchNormalizationBase", "tf_keras"
            ),
            "tf_keras.src.layers.regularization.dropout": lambda m: self._hook_dropout(m, "tf_keras"),
            "tf_keras.src.engine.base_layer": lambda m: self._hook_layer(m.Layer, "tf_keras"),
        }
        pending = {}
        for name, hook in hooks.items():
            mod = sys.modules.get(name)
            if mod is not None:
                try:
                    hook(mod)
                except Exception:
                    _debug(f"hook {name}")
            else:
                pending[name] = hook
        if pending:
            sys.meta_path.insert(0, _PostImportFinder(pending))

    def _hook_keras_initializers(self, mod: Any) -> None:
        try:
            from keras.src.initializers.initializer import Initializer
        except Exception:
            return
        P = self
        for _name, cls in list(vars(mod).items()):
            if isinstance(cls, type) and issubclass(cls, Initializer) and "__init__" in cls.__dict__:

                def make_init(orig):
                    def __init__(obj, *args, **kwargs):
                        orig(obj, *args, **kwargs)
                        if not P.busy() and getattr(obj, "_tflint_line", None) is None:
                            try:
                                object.__setattr__(obj, "_tflint_line", P.line())
                            except Exception:
                                pass

                    return __init__

                self._patch(cls, "__init__", make_init)

    # ---- optimizers -----------------------------------------------------------------------
    def _make_keras_apply(self, orig, api: str, grads_first: bool):
        P = self

        def apply_gradients(opt, grads_and_vars, *args, **kwargs):
            if P.busy() or P.in_api():
                return orig(opt, grads_and_vars, *args, **kwargs)
            line = P.line()
            pairs = None
            if grads_first:  # apply(grads, trainable_variables=None)
                try:
                    grads = list(grads_and_vars)
                    tv = args[0] if args else kwargs.get("trainable_variables")
                    if tv is None:
                        tv = getattr(opt, "_trainable_variables", None)
                    if tv is not None:
                        tv = list(tv)
                        pairs = list(zip(grads, tv))
                    grads_and_vars = grads
                except Exception:
                    pass
            else:
                try:
                    grads_and_vars = list(grads_and_vars)
                    pairs = grads_and_vars
                except Exception:
                    pass
            with P._api():
                result = orig(opt, grads_and_vars, *args, **kwargs)
            if pairs is not None:
                try:
                    P._emit_apply(line, pairs, api)
                except Exception:
                    _debug("keras apply probe")
            return result

        return apply_gradients

    def _hook_k3_optimizer(self, mod: Any) -> None:
        B = mod.BaseOptimizer
        self._patch(B, "__init__", self._make_opt_init)
        self._patch(B, "apply_gradients", lambda o: self._make_keras_apply(o, "apply_gradients", False))
        self._patch(B, "apply", lambda o: self._make_keras_apply(o, "apply", True))

    def _hook_tk_optimizer(self, mod: Any) -> None:
        B = getattr(mod, "_BaseOptimizer", None)
        if B is None:
            return
        self._patch(B, "__init__", self._make_opt_init)
        self._patch(B, "apply_gradients", lambda o: self._make_keras_apply(o, "apply_gradients", False))

    def _hook_tk_optimizer_v2(self, mod: Any) -> None:
        B = mod.OptimizerV2
        self._patch(B, "__init__", self._make_opt_init)
        self._patch(B, "apply_gradients", lambda o: self._make_keras_apply(o, "apply_gradients", False))

    # ---- layers -------------------------------------------------------------------------
    def _in_tape(self) -> bool:
        try:
            from tensorflow.python.eager import record

            return bool(record.could_possibly_record())
        except Exception:
            return False

    def _resolve_training(self, layer: Any, training: Any, flavor: str, is_bn: bool) -> Any:
        val = training
        if flavor == "tf_keras":
            try:
                if is_bn and hasattr(layer, "_get_training_value"):
                    val = layer._get_training_value(training)
                elif training is None:
                    from tf_keras.src import backend as K

                    val = K.learning_phase()
            except Exception:
                val = training
        if val is None or isinstance(val, bool):
            return val
        try:
            if isinstance(val, int):
                return bool(val)
        except Exception:
            pass
        try:
            from tensorflow.python.framework import smart_cond

            c = smart_cond.smart_constant_value(val)
            return None if c is None else bool(c)
        except Exception:
            return None

    def _make_layer_call(self, orig, flavor: str, is_bn: bool):
        P = self
        try:
            import inspect

            params = list(inspect.signature(orig).parameters)
            tpos = params.index("training") - 2 if "training" in params else None  # after self, inputs
            default = inspect.signature(orig).parameters["training"].default if "training" in params else None
        except Exception:
            tpos, default = None, None

        def call(layer, inputs, *args, **kwargs):
            if not P.busy():
                try:
                    if "training" in kwargs:
                        training = kwargs["training"]
                    elif tpos is not None and len(args) > tpos:
                        training = args[tpos]
                    else:
                        training = default
                    resolved = P._resolve_training(layer, training, flavor, is_bn)
                    kind = (
                        "tensor"
                        if resolved is None and training is not None and not isinstance(training, (bool, int))
                        else None
                    )
                    in_tape = P._in_tape()
                    stack = P.stack_lines()
                    line = stack[-1] if stack else None
                    fields = {
                        "layer": getattr(layer, "name", type(layer).__name__),
                        "class": type(layer).__name__,
                        "training": resolved,
                        "in_tape": in_tape,
                        "keras": flavor,
                        "stack": stack,
                    }
                    if kind:
                        fields["training_kind"] = kind
                    if is_bn:
                        fields["trainable"] = bool(getattr(layer, "trainable", True))
                    P.rec.emit("layer_call", line, key=(fields["layer"], resolved, in_tape, tuple(stack)), **fields)
                except Exception:
                    P.failed("layer_call")
            return orig(layer, inputs, *args, **kwargs)

        return call

    def _hook_bn(self, mod: Any, clsname: str, flavor: str) -> None:
        cls = getattr(mod, clsname, None)
        if cls is None:
            return
        P = self
        self._patch(cls, "call", lambda o: self._make_layer_call(o, flavor, True))

        def make_build(orig):
            def build(layer, *args, **kwargs):
                res = orig(layer, *args, **kwargs)
                if not P.busy():
                    try:
                        P._on_bn_build(layer)
                    except Exception:
                        _debug("bn build probe")
                return res

            return build

        self._patch(cls, "build", make_build)

    def _hook_dropout(self, mod: Any, flavor: str) -> None:
        cls = getattr(mod, "Dropout", None)
        if cls is not None:
            self._patch(cls, "call", lambda o: self._make_layer_call(o, flavor, False))

    def _read_eager(self, v: Any) -> Any:
        try:
            tv = self.tf_var(v)
            with self.tf.init_scope():  # also while a tf.function is being traced
                return self.np.array(tv.numpy())
        except Exception:
            return None

    @probe("moving_stats")
    def _on_bn_build(self, layer: Any) -> None:
        mm = getattr(layer, "moving_mean", None)
        mv = getattr(layer, "moving_variance", None)
        if mm is None or mv is None:
            return
        before = {"moving_mean": self._read_eager(mm), "moving_variance": self._read_eager(mv)}
        if before["moving_mean"] is None:
            return  # graph mode: handled by name in the session snapshots
        line = self.layer_line(layer) or self.line()  # where it was created (else built)
        self.bn_layers.append((layer, line, before))

    def _hook_layer(self, Layer: type, flavor: str) -> None:
        """Creation line of every layer (base ``__init__``), and the weights it adds."""
        P = self

        def make_init(orig):
            def __init__(layer, *args, **kwargs):
                if not P.busy():
                    try:
                        if layer not in P.layer_lines:
                            P.layer_lines[layer] = P.line()
                    except Exception:
                        pass
                return orig(layer, *args, **kwargs)

            return __init__

        self._patch(Layer, "__init__", make_init)
        self._hook_add_weight(Layer, flavor)
        self._patch(Layer, "__call__", self._make_model_call)

    _TRAINING_LAYERS = ("BatchNormalization", "BatchNormalizationBase", "Dropout")

    def _make_model_call(self, orig):
        """The outermost layer/model call the script makes: record (once per object and line) the
        BN/Dropout layers it holds, recursively, and start watching their moving statistics."""
        P = self

        def __call__(layer, *args, **kwargs):
            depth = getattr(P.local, "layer_depth", 0)
            if depth == 0 and not P.busy():
                try:
                    P._on_model_call(layer)
                except Exception:
                    P.failed("model_layers")
            P.local.layer_depth = depth + 1
            try:
                return orig(layer, *args, **kwargs)
            finally:
                P.local.layer_depth = depth

        return __call__

    def _on_model_call(self, layer: Any) -> None:
        line = self.line()
        if line is None:
            return
        key = (id(layer), line)
        if key in self._model_calls:
            return
        self._model_calls.add(key)
        found = []
        try:
            subs = list(layer._flatten_layers(include_self=True, recursive=True))
        except Exception:
            subs = [layer, *list(getattr(layer, "submodules", ()) or ())]
        for sub in subs:
            names = {c.__name__ for c in type(sub).__mro__}
            if names & set(self._TRAINING_LAYERS):
                found.append(sub)
                if "Dropout" not in names and getattr(sub, "built", False):
                    if not any(b[0] is sub for b in self.bn_layers):
                        self._on_bn_build(sub)
        self.rec.emit(
            "model_layers",
            line,
            model=getattr(layer, "name", type(layer).__name__),
            layers=[getattr(x, "name", "?") for x in found],
            classes=[type(x).__name__ for x in found],
        )

    def layer_line(self, layer: Any) -> int | None:
        try:
            return self.layer_lines.get(layer)
        except Exception:
            return None

    def _hook_add_weight(self, Layer: type, flavor: str) -> None:
        P = self

        def make(orig):
            def add_weight(layer, *args, **kwargs):
                var = orig(layer, *args, **kwargs)
                if not P.busy():
                    try:
                        P._on_add_weight(layer, var, kwargs)
                    except Exception:
                        _debug("add_weight probe")
                return var

            return add_weight

        self._patch(Layer, "add_weight", make)

    @probe("initializer")
    def _on_add_weight(self, layer: Any, var: Any, kwargs: dict) -> None:
        np = self.np
        shape = _shape(var)
        if len(shape) < 2:
            return
        try:
            if not var.trainable:
                return
        except Exception:
            pass
        a = self._read_eager(var)
        if a is None:
            return  # graph mode: measured at the first train step
        init = kwargs.get("initializer")
        info: dict[str, Any] = {"init": None}
        if init is not None and not isinstance(init, str):
            info = self._init_config(init)
        elif isinstance(init, str):
            info = {"init": init}
        flat = a.reshape(-1)[:_STAT_SAMPLE]
        fan_in, _ = _fan(shape)
        line = self.layer_line(layer) or self.line()  # where the layer was created (else built)
        self.rec.emit(
            "initializer",
            line,
            variable=self.var_name(var),
            shape=shape,
            fan_in=fan_in,
            std=float(np.std(flat)) if flat.size > 1 else None,
            mean=float(np.mean(flat)),
            layer=getattr(layer, "name", None),
            **info,
        )
