"""The probes' shared context: state, script-line lookup, patch helpers, the ``@probe`` wrapper."""

# A probe failure must never change the script's behaviour: the probes that produce events run
# under ``@probe(kind)``, which records ``probe_failed`` in the trace (a verdict that relied on those
# events becomes inconclusive, never refuted); the remaining patch glue swallows its errors
# (TFLINT_GRAD_PROBE_DEBUG=1 prints them).

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.util
import os
import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

from tflint_grad.tracer import graph as G

_DEBUG = bool(os.environ.get("TFLINT_GRAD_PROBE_DEBUG"))
_MAX_CAPTURE_OPS = 50_000
_MAX_CAPTURES = 3
_FIRST_VALUES = 8
_MAX_LIST_EVENTS = 60
_STAT_SAMPLE = 200_000


def _debug(what: str) -> None:
    if _DEBUG:
        sys.stderr.write(f"[tflint-grad probe] {what} failed:\n{traceback.format_exc()}\n")


def probe(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The one error wrapper of a probe body: a failure never reaches the script; it is recorded
    in the trace (``probe_failed``, ``name`` = the event kind the probe owns), so the oracles that
    read those events say inconclusive instead of reading an absence as a clean observation."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return fn(self, *args, **kwargs)
            except Exception:
                self.failed(name)
                return None

        return run

    return wrap


def _same_face(new: Any, orig: Any, attr: str = "") -> Any:
    """A wrapper with exactly the original's signature, calling ``new``.

    Keras reads ``inspect.getfullargspec(cls.__init__)`` (auto-config), the ``call`` and
    ``build`` signatures (whether to pass ``training=``/``mask=``; build-shape argument
    names, through its own ``functools.wraps(obj.build)``), and tf_keras uses
    getfullargspec on ``call``. Neither ``__wrapped__`` (a bound method proxies it to the
    unbound original) nor ``__signature__`` (``functools.wraps`` copies it onto Keras'
    wrapper, self included) survives all of these, so the wrapper is generated with the
    original's parameter list and forwards positionals positionally (same semantics).
    """
    import inspect

    face = new
    try:
        sig = inspect.signature(orig)
        ns: dict[str, Any] = {"_tflint_impl": new}
        params, args = [], []
        kinds = [p.kind for p in sig.parameters.values()]
        star_done = False
        for i, p in enumerate(sig.parameters.values()):
            if not p.name.isidentifier():
                raise ValueError(p.name)
            text = p.name
            if p.default is not inspect.Parameter.empty:
                ns[f"_tflint_d{i}"] = p.default
                text += f"=_tflint_d{i}"
            if p.kind is inspect.Parameter.VAR_POSITIONAL:
                text, star_done = "*" + p.name, True
                args.append("*" + p.name)
            elif p.kind is inspect.Parameter.VAR_KEYWORD:
                text = "**" + p.name
                args.append("**" + p.name)
            elif p.kind is inspect.Parameter.KEYWORD_ONLY:
                if not star_done:
                    params.append("*")
                    star_done = True
                args.append(f"{p.name}={p.name}")
            else:
                args.append(p.name)
            params.append(text)
            if p.kind is inspect.Parameter.POSITIONAL_ONLY and (
                i + 1 == len(kinds) or kinds[i + 1] is not inspect.Parameter.POSITIONAL_ONLY
            ):
                params.append("/")
        name = getattr(orig, "__name__", attr) or "wrapper"
        if not name.isidentifier():
            name = "wrapper"
        src = f"def {name}({', '.join(params)}):\n    return _tflint_impl({', '.join(args)})\n"
        exec(compile(src, f"<tflint-grad probe {name}>", "exec"), ns)
        face = ns[name]
    except Exception:
        face = new
    face._tflint_probe = True
    face._tflint_orig = orig
    for a in ("__name__", "__qualname__", "__doc__", "__module__"):
        try:
            setattr(face, a, getattr(orig, a))
        except Exception:
            pass
    return face


def _short(name: Any) -> str:
    s = name.decode() if isinstance(name, bytes) else str(name)
    return s.removesuffix(":0")


def _shape(x: Any) -> list:
    try:
        return [None if d is None else int(d) for d in x.shape]
    except Exception:
        try:
            return list(x.shape.as_list())
        except Exception:
            return []


def _fan(shape: list) -> tuple[int, int]:
    """(fan_in, fan_out) of a kernel: Dense (in, out), Conv (k..., in, out)."""
    dims = [d or 1 for d in shape]
    if len(dims) < 2:
        n = dims[0] if dims else 1
        return n, n
    rf = 1
    for d in dims[:-2]:
        rf *= d
    return dims[-2] * rf, dims[-1] * rf


# ---------------------------------------------------------------------------------------
# post-import hooks: Keras modules are patched when (if) the script imports them


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def __init__(self, hooks: dict[str, Callable[[Any], None]]) -> None:
        self.hooks = hooks
        self._busy: set[str] = set()

    def find_spec(self, name, path=None, target=None):
        if name not in self.hooks or name in self._busy:
            return None
        self._busy.add(name)
        try:
            spec = importlib.util.find_spec(name)
        except Exception:
            spec = None
        finally:
            self._busy.discard(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        loader = spec.loader
        hook = self.hooks[name]
        orig_exec = loader.exec_module

        class _Wrapped(importlib.abc.Loader):
            def __getattr__(self, attr):  # get_source, get_filename... for tracebacks
                return getattr(loader, attr)

            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                orig_exec(module)
                try:
                    hook(module)
                except Exception:
                    _debug(f"post-import hook {name}")

        spec.loader = _Wrapped()
        return spec


# ---------------------------------------------------------------------------------------


class _GradCall:
    """One recorded gradient call site (the event plus what later steps need)."""

    def __init__(self, event: dict, sources: list, grads: list, targets: list, graph: Any) -> None:
        self.event = event
        self.sources = sources
        self.grads = grads
        self.targets = targets
        self.graph = graph
        self.evaluated = False


class ProbeContext:
    def __init__(self, rec: Any, tf: Any, *, tf1: bool, steps: int) -> None:
        self.rec = rec
        self.tf = tf
        self.tf1 = tf1
        self.steps = steps
        self.script = rec.script
        self.local = threading.local()
        self._model_calls: set[tuple[int, int]] = set()
        self._failed: set[str] = set()
        self._is_script: dict[str, bool] = {}
        import numpy as np

        self.np = np
        self.rng = np.random.default_rng(12345)  # never the script's RNG
        from tensorflow.python.framework import ops

        self.ops = ops
        # gradient calls
        self.grad_sites: dict[tuple, _GradCall | None] = {}
        self.pending: list[_GradCall] = []  # graph-mode calls whose values are not known yet
        self.layer_norms_done = False
        self.lgn: dict | None = None
        # TF1 graph state
        self.train_ops: dict[Any, dict] = {}  # op -> {"line", "api"}
        self.fetch_sets: dict[Any, set] = {}  # graph -> {frozenset(ops)}
        self.graphs: weakref.WeakSet = weakref.WeakSet()
        self.first_step_done: set = set()  # graph ids
        self.snap_before: dict[str, Any] = {}  # "graphid:varname" -> values
        self.snap_after: dict[str, Any] = {}
        self.collected: list[tuple[dict, Any]] = []  # update_ops_collected events + graph
        self.init_calls: dict[tuple, dict] = {}  # (graph id, tensor name) -> initializer info
        self.nonfinite_done = False
        self.known_targets: dict[tuple, str] = {}  # (graph id, tensor name) -> where
        self.sessions: list = []
        # Keras layers
        self.bn_layers: list = []  # (layer, line, before)
        self.layer_lines: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # eager capture
        self.capture: dict | None = None
        self.captures_done = 0
        self._cb_installed = False
        self.finalized = False
        self.orig: dict[str, Any] = {}
        self._logs_scanned: set = set()
        self._train_fetch_cache: dict = {}
        self.optimizer_ops: dict[int, set] = {}  # graph id -> names of ops an optimizer created
        self._assign_targets: dict[int, list] = {}
        self.train_session = None

    # -- helpers ---------------------------------------------------------------------
    def line(self, outermost: bool = False) -> int | None:
        """Script line of the innermost (outermost) script frame; AutoGraph frames mapped back."""
        f = sys._getframe(1)
        found = None
        cache = self._is_script
        script = self.script
        maps = getattr(self.rec, "line_maps", None) or None
        while f is not None:
            fn = f.f_code.co_filename
            v = cache.get(fn)
            if v is None:
                try:
                    v = os.path.realpath(fn) == script
                except Exception:
                    v = False
                cache[fn] = v
            ln = f.f_lineno if v else (maps[fn].get(f.f_lineno) if maps and fn in maps else None)
            if ln is not None:
                found = ln
                if not outermost:
                    return found
            f = f.f_back
        return found

    def stack_lines(self) -> list[int]:
        """Script lines of every script frame on the stack, innermost first (AutoGraph mapped):
        a layer call inside a subclassed ``call`` or a ``tf.function`` is attributed to each
        call site it ran under, down to the ``model(x)`` line of the training loop."""
        f = sys._getframe(1)
        out: list[int] = []
        cache = self._is_script
        maps = getattr(self.rec, "line_maps", None) or None
        while f is not None:
            fn = f.f_code.co_filename
            v = cache.get(fn)
            if v is None:
                try:
                    v = os.path.realpath(fn) == self.script
                except Exception:
                    v = False
                cache[fn] = v
            ln = f.f_lineno if v else (maps[fn].get(f.f_lineno) if maps and fn in maps else None)
            if ln is not None and ln not in out:
                out.append(ln)
            f = f.f_back
        return out

    def view(self) -> G.TFGraphView:
        return G.TFGraphView(self.script, getattr(self.rec, "line_maps", None))

    def caller_is_script(self, depth: int = 2) -> bool:
        try:
            fn = sys._getframe(depth).f_code.co_filename
        except ValueError:
            return False
        v = self._is_script.get(fn)
        if v is None:
            v = self._is_script[fn] = os.path.realpath(fn) == self.script
        return v

    _LIB_MARKERS = (
        os.sep + "tensorflow" + os.sep,
        os.sep + "keras" + os.sep,
        os.sep + "tf_keras" + os.sep,
        os.sep + "tflint_grad" + os.sep,
        "<frozen ",
        "<tflint-grad probe",
    )

    _KERAS_MARKERS = (os.sep + "keras" + os.sep, os.sep + "tf_keras" + os.sep)

    def direct_user_call(self) -> bool:
        """The script called TensorFlow directly: the first frame outside TensorFlow (and this
        package) is the script, with no Keras frame in between (Keras' add_weight is recorded
        by its own probe)."""
        f = sys._getframe(2)
        while f is not None:
            fn = f.f_code.co_filename
            if any(m in fn for m in self._KERAS_MARKERS):
                return False
            if not any(m in fn for m in self._LIB_MARKERS):
                v = self._is_script.get(fn)
                if v is None:
                    v = self._is_script[fn] = os.path.realpath(fn) == self.script
                return v
            f = f.f_back
        return False

    def called_from_script(self) -> bool:
        """The nearest frame outside the probes package (and its generated wrappers) is the script."""
        f = sys._getframe(1)
        here = os.path.dirname(__file__)
        while f is not None:
            fn = f.f_code.co_filename
            if os.path.dirname(fn) != here and not fn.startswith("<tflint-grad probe"):
                v = self._is_script.get(fn)
                if v is None:
                    v = self._is_script[fn] = os.path.realpath(fn) == self.script
                return v
            f = f.f_back
        return False

    def busy(self) -> bool:
        return getattr(self.local, "busy", 0) > 0

    @contextmanager
    def _quiet(self):
        """The probes' own TF work: ignored by the other patches and by the harness's step counter."""
        self.local.busy = getattr(self.local, "busy", 0) + 1
        uncounted = getattr(self.rec, "uncounted", None)
        try:
            if uncounted is not None:
                with uncounted():
                    yield
            else:
                yield
        finally:
            self.local.busy -= 1

    @contextmanager
    def _api(self):
        self.local.api = getattr(self.local, "api", 0) + 1
        try:
            yield
        finally:
            self.local.api -= 1

    def in_api(self) -> bool:
        return getattr(self.local, "api", 0) > 0

    def _patch(self, owner: Any, attr: str, make: Callable[[Any], Any]) -> None:
        try:
            orig = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        except (KeyError, AttributeError):
            return
        if getattr(orig, "_tflint_probe", False):
            return
        try:
            new = _same_face(make(orig), orig, attr)
            setattr(owner, attr, new)
        except Exception:
            _debug(f"patch {owner}.{attr}")

    def _patch_functions(self, replacements: dict[int, tuple[Any, Any]], attr_names: set[str]) -> None:
        """Replace module-level references to functions (tf.gradients etc.) in every TF module."""
        for mname, mod in list(sys.modules.items()):
            if mod is None or not mname.startswith(("tensorflow", "tf_keras", "keras")):
                continue
            try:
                d = vars(mod)
            except TypeError:
                continue
            # public API modules: every attribute (exported aliases such as v1
            # nn.softmax_cross_entropy_with_logits_v2 = ..._v2_helper); elsewhere by name
            api = mname == "tensorflow" or mname.startswith(("tensorflow._api", "tensorflow.compat"))
            items = list(d.items()) if api else [(a, d.get(a)) for a in attr_names]
            for attr, val in items:
                if val is not None and id(val) in replacements and replacements[id(val)][0] is val:
                    try:
                        setattr(mod, attr, replacements[id(val)][1])
                    except Exception:
                        pass

    def var_name(self, v: Any) -> str:
        try:
            p = getattr(v, "path", None)
            if isinstance(p, str) and p:
                return _short(p)
        except Exception:
            pass
        try:
            return _short(v.name)
        except Exception:
            return type(v).__name__

    def tf_var(self, v: Any) -> Any:
        """The underlying tf.Variable of a Keras 3 variable (or ``v`` itself)."""
        try:
            from tensorflow.python.ops import variables

            if isinstance(v, variables.Variable):
                return v
        except Exception:
            pass
        inner = getattr(v, "_value", None)
        if inner is not None and hasattr(inner, "handle"):
            return inner
        return v

    def is_variable(self, v: Any) -> bool:
        try:
            from tensorflow.python.ops import variables

            if isinstance(v, variables.Variable):
                return True
        except Exception:
            pass
        return hasattr(v, "_value") and hasattr(v._value, "handle")

    def trainable(self, v: Any) -> bool:
        try:
            t = v.trainable
            if isinstance(t, bool) and (not t or not self.tf1):
                return t
        except Exception:
            t = None
        try:  # TF1: membership in the collection decides
            g = v.graph
            coll = g.get_collection("trainable_variables")
            return any(c is v for c in coll) if coll is not None else bool(t)
        except Exception:
            return True if t is None else bool(t)

    def values_of(self, x: Any):
        np = self.np
        if x is None:
            return None
        try:
            if hasattr(x, "values") and hasattr(x, "indices") and not hasattr(x, "numpy"):
                x = x.values
            return np.asarray(x)
        except Exception:
            return None

    def norm(self, a: Any) -> float | None:
        """L2 norm; None when not finite (the entry then carries ``nonfinite: true``)."""
        np = self.np
        try:
            a = np.asarray(a, dtype=np.float64)
            n = float(np.sqrt(np.sum(np.square(a))))
            return n if np.isfinite(n) else None
        except Exception:
            return None

    def failed(self, probe: str) -> None:
        """Record that a probe raised: the oracles relying on it say inconclusive, never refuted."""
        _debug(probe)
        try:
            if probe not in self._failed:
                self._failed.add(probe)
                err = sys.exc_info()[1]
                self.rec.emit(
                    "probe_failed", None, probe=probe, error=f"{type(err).__name__}: {err}" if err else "unknown"
                )
        except Exception:
            pass
