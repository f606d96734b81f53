"""Initializer objects (class and creation line) and ``tf.Variable`` initial values in eager mode."""

from __future__ import annotations

from typing import Any

from tflint_grad.tracer.probes.base import _STAT_SAMPLE, ProbeContext, _debug, _fan, _shape, _short


class InitializerProbes(ProbeContext):
    # ===================================================================================
    # initializers (class and creation line) and tf.Variable in eager mode
    # ===================================================================================
    def _install_initializers(self) -> None:
        from tensorflow.python.ops import init_ops, init_ops_v2

        for mod, base in ((init_ops, init_ops.Initializer), (init_ops_v2, init_ops_v2.Initializer)):
            self._patch_initializer_module(mod, base)

    def _patch_initializer_module(self, mod: Any, base: type) -> None:
        P = self
        for _name, cls in list(vars(mod).items()):
            if not (isinstance(cls, type) and issubclass(cls, base)):
                continue
            if "__init__" in cls.__dict__:

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
            if "__call__" in cls.__dict__:

                def make_call(orig):
                    def __call__(obj, *args, **kwargs):
                        result = orig(obj, *args, **kwargs)
                        if not P.busy():
                            try:
                                P._on_initializer_call(obj, result)
                            except Exception:
                                pass
                        return result

                    return __call__

                self._patch(cls, "__call__", make_call)

    def _init_config(self, obj: Any) -> dict:
        info: dict[str, Any] = {"init": type(obj).__name__}
        try:
            cfg = obj.get_config()
            info["init_config"] = {k: v for k, v in cfg.items() if isinstance(v, (int, float, str, bool)) or v is None}
        except Exception:
            pass
        ln = getattr(obj, "_tflint_line", None)
        if ln is not None:
            info["init_line"] = ln
        return info

    def _on_initializer_call(self, obj: Any, result: Any) -> None:
        if self._is_symbolic(result):
            self.init_calls[(id(result.graph), result.name)] = self._init_config(obj)

    def _install_variables(self) -> None:
        """tf.Variable(tf.random.normal(...)) created by the script in eager mode."""
        from tensorflow.python.framework import ops
        from tensorflow.python.ops import resource_variable_ops

        P = self

        def make_init(orig):
            def __init__(var, *args, **kwargs):
                orig(var, *args, **kwargs)
                if P.busy() or not P.direct_user_call():
                    return
                try:
                    P._on_tf_variable(var)
                except Exception:
                    _debug("tf.Variable probe")

            return __init__

        self._patch(resource_variable_ops.ResourceVariable, "__init__", make_init)

        def make_numpy(orig):
            def numpy(t):
                if P.capture is not None:
                    P._record_numpy(t)
                return orig(t)

            return numpy

        def make_array(orig):
            def __array__(t, *args, **kwargs):
                if P.capture is not None:
                    P._record_numpy(t)
                return orig(t, *args, **kwargs)

            return __array__

        self._patch(ops._EagerTensorBase, "numpy", make_numpy)
        self._patch(ops._EagerTensorBase, "__array__", make_array)

    def _on_tf_variable(self, var: Any) -> None:
        np = self.np
        shape = _shape(var)
        if len(shape) < 2 or not getattr(var, "trainable", True):
            return
        try:
            a = np.asarray(var.numpy()).reshape(-1)[:_STAT_SAMPLE]
        except Exception:
            return  # graph mode: read at the first train step instead
        fan_in, _ = _fan(shape)
        self.rec.emit(
            "initializer",
            self.line(),
            variable=_short(var.name),
            shape=shape,
            fan_in=fan_in,
            std=float(np.std(a)) if a.size > 1 else None,
            mean=float(np.mean(a)),
            init="tf.Variable",
        )
