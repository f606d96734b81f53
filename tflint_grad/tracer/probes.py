"""Probes: patches installed in the traced child that record what happened while the script trained.

``install(rec, tf, tf1=..., steps=...)`` runs after TensorFlow is imported and before the
user's script; ``finalize(rec)`` runs after the script stopped (normally, at the step limit
or by an exception). Event kinds and ALL their fields are documented in one place,
:mod:`tflint_grad.tracer.report`: add a field there when a probe starts emitting it.

Rules every probe follows:

- A probe never changes what the script computes: each patch calls the original with the
  original arguments (materialising a ``zip`` iterator into a list is the one liberty),
  every probe body runs in ``try/except`` and records nothing when it fails, and any TF
  work the probes do themselves runs under ``_quiet()`` so that the other patches (and the
  harness's step counters, which only count train-op fetches / user calls) ignore it.
  Extra ``Session.run`` work is either piggy-backed on a run the script makes anyway
  (fetching tensors that are already ancestors of the fetched ops: nothing extra executes)
  or, for the TFG301 counterfactual, done before the first train step on a snapshot of the
  variables that is restored afterwards.
- Expensive analysis happens once per call site (graph build time in TF1, first call in
  eager); later calls only bump ``count`` and run cheap finiteness checks.

How each event is obtained (Keras 3 / tf_keras / TF1):

- ``gradient_call``: ``GradientTape.gradient``, ``tf.gradients`` (every module reference),
  TF1 ``Optimizer.compute_gradients``/``minimize`` (the pairs of the inner compute_gradients).
  Eager: values are there (norm, none/zero). Graph (TF1): None-ness at build time; norms and
  "zero" from the first ``Session.run`` whose fetches depend on the gradients (the tensors are
  added to that run's fetches: nothing extra executes). None/zero classified by path analysis
  (graph.py): TF1 and tf.function graphs on the real graph, eager tapes on the ops recorded by an
  op callback while the first tapes recorded.
- ``apply_gradients``: Keras 3 ``BaseOptimizer.apply_gradients``/``apply``, tf_keras
  ``_BaseOptimizer``/``OptimizerV2.apply_gradients``, TF1 ``Optimizer.apply_gradients`` (direct
  calls only).
- ``layer_call``: BN/Dropout ``call`` (the argument Keras resolved; tf_keras: also
  ``_get_training_value``/learning phase).
- ``moving_stats``: Keras layers in eager mode: values at ``build`` and at the end;
  graph variables named moving_mean/moving_variance: read in the script's session before the
  first train step and when the session closes (or at the end).
- ``initializer``: Keras ``add_weight`` (eager), ``tf.Variable`` created by the script (eager),
  TF1 trainable variables read at the first train step (initializer objects are tracked from
  their creation line).
- ``layer_grad_norms``: TF1: mean over the first min(steps, 5) train batches; when weights are
  flagged tiny (rms < 0.1 x Glorot std, random) the counterfactual re-draws them (He when a ReLU
  follows, else Glorot; own RNG), evaluates the same gradient tensors with the same feed, and
  restores every variable it or the gradients touched, before the script's own run. Eager: the
  first call; the counterfactual replays the recorded ops with re-drawn weights (assign, restore).
- ``assign_op`` / ``update_ops`` / ``update_ops_collected``: TF1 graphs, ancestors over inputs +
  control inputs of everything ``Session.run`` fetched; optimizer-internal and Saver-restore
  assigns are skipped; the targets' values come from the session snapshots above.
- ``optimizer_created``: the optimizers' ``__init__`` (Keras 3, tf_keras, TF1).
- ``clip_none``, ``logits_input``: wrappers of the clip / ``*_with_logits`` functions.
- ``log_input``, ``sqrt_input``: Log and Sqrt ops of TF1/tf.function graphs (after the run, or
  when their gradient is taken) and of the ops recorded by the first eager tapes (graph.py walks
  their inputs: ``feeding_type``, ``sqrt_radicand``).
- ``nonfinite``: eager: loss and gradient values of each ``tape.gradient`` (culprit op from the
  recording); TF1: loss values the script fetched and the piggy-backed gradient values.
"""

# Every probe body is wrapped in a blind ``except Exception``: by design (a probe failure must
# never change the script's behaviour; TFLINT_GRAD_PROBE_DEBUG=1 prints them).

from __future__ import annotations

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

_state: _Probes | None = None


def install(rec: Any, tf: Any, *, tf1: bool, steps: int) -> None:
    """Patch TensorFlow / Keras so that ``rec`` receives the events of report.py."""
    global _state
    try:
        p = _Probes(rec, tf, tf1=tf1, steps=steps)
    except Exception:
        _debug("probes init")
        return
    _state = p
    p.install()


def finalize(rec: Any) -> None:
    """Emit the end-of-run events (moving statistics, assign ops, update ops, log inputs)."""
    p = _state
    if p is None or p.rec is not rec:
        return
    p.finalize()


def _debug(what: str) -> None:
    if _DEBUG:
        sys.stderr.write(f"[tflint-grad probe] {what} failed:\n{traceback.format_exc()}\n")


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


class _Probes:
    def __init__(self, rec: Any, tf: Any, *, tf1: bool, steps: int) -> None:
        self.rec = rec
        self.tf = tf
        self.tf1 = tf1
        self.steps = steps
        self.script = rec.script
        self.local = threading.local()
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
        """The nearest frame outside this module (and its generated wrappers) is the script."""
        f = sys._getframe(1)
        here = __file__
        while f is not None:
            fn = f.f_code.co_filename
            if fn != here and not fn.startswith("<tflint-grad probe"):
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

    # -- install ---------------------------------------------------------------------
    def install(self) -> None:
        for step in (
            self._install_tape,
            self._install_gradients,
            self._install_tf1_optimizer,
            self._install_session,
            self._install_functions,
            self._install_initializers,
            self._install_variables,
            self._install_keras_hooks,
        ):
            try:
                step()
            except Exception:
                _debug(step.__name__)

    # ===================================================================================
    # GradientTape
    # ===================================================================================
    def _install_tape(self) -> None:
        from tensorflow.python.eager import backprop, context

        P = self
        T = backprop.GradientTape

        def make_enter(orig):
            def __enter__(tape):
                res = orig(tape)
                if not P.busy():
                    try:
                        P._maybe_start_capture(tape, context)
                    except Exception:
                        _debug("tape enter")
                return res

            return __enter__

        def make_exit(orig):
            def __exit__(tape, *exc):
                try:
                    if P.capture is not None and P.capture.get("tape") is tape:
                        P._stop_capture()
                except Exception:
                    _debug("tape exit")
                return orig(tape, *exc)

            return __exit__

        def make_gradient(orig):
            def gradient(tape, target, sources, *args, **kwargs):
                if P.busy() or P.in_api():
                    result = orig(tape, target, sources, *args, **kwargs)
                    return result
                line = P.line()
                try:
                    if P.capture is not None and P.capture.get("tape") is tape:
                        P._stop_capture()
                except Exception:
                    pass
                with P._api():
                    result = orig(tape, target, sources, *args, **kwargs)
                try:
                    P._on_gradient("tape.gradient", line, target, sources, result, tape=tape)
                except Exception:
                    _debug("tape.gradient probe")
                if not getattr(tape, "_persistent", False) and getattr(tape, "_tflint_capture", None) is not None:
                    tape._tflint_capture = None  # the recorded tensors are not needed any more
                return result

            return gradient

        self._patch(T, "__enter__", make_enter)
        self._patch(T, "__exit__", make_exit)
        self._patch(T, "gradient", make_gradient)

    # ---- eager op capture (for path analysis and the TFG301 counterfactual) ----------
    def _maybe_start_capture(self, tape: Any, context: Any) -> None:
        if self.capture is not None or self.captures_done >= _MAX_CAPTURES:
            return
        if not context.executing_eagerly():
            return
        from tensorflow.python.framework import op_callbacks

        cap = {"tape": tape, "records": [], "overflow": False, "numpy": []}
        self.capture = cap
        tape._tflint_capture = cap
        self.captures_done += 1
        if not self._cb_installed:
            op_callbacks.add_op_callback(self._op_callback)
            self._cb_installed = True

    def _stop_capture(self) -> None:
        self.capture = None
        if self._cb_installed:
            try:
                from tensorflow.python.framework import op_callbacks

                op_callbacks.remove_op_callback(self._op_callback)
            except Exception:
                _debug("remove op callback")
            self._cb_installed = False

    def _op_callback(self, op_type, inputs, attrs, outputs, op_name=None, graph=None):
        cap = self.capture
        if cap is None or graph is not None or self.busy():
            return
        try:
            recs = cap["records"]
            if len(recs) >= _MAX_CAPTURE_OPS:
                cap["overflow"] = True
                return
            ins = list(inputs or ())
            outs = list(outputs or ())
            recs.append(
                {
                    "type": op_type.decode() if isinstance(op_type, bytes) else op_type,
                    "ins": [getattr(t, "_id", id(t)) for t in ins],
                    "in_dtypes": [getattr(t, "dtype", None) for t in ins],
                    "in_t": ins,
                    "outs": [getattr(t, "_id", id(t)) for t in outs],
                    "out_dtypes": [getattr(t, "dtype", None) for t in outs],
                    "out_t": outs,
                    "attrs": attrs,
                    "line": self.line(),
                }
            )
        except Exception:
            _debug("op callback")
        return

    def _record_numpy(self, t: Any) -> None:
        """The script itself converted a recorded tensor to NumPy (the value leaves TensorFlow)."""
        cap = self.capture
        if cap is None or self.busy() or not self.called_from_script():
            return
        tid = getattr(t, "_id", None)
        if tid is None:
            return
        cap["records"].append(
            {
                "type": ".numpy()",
                "ins": [tid],
                "in_dtypes": [getattr(t, "dtype", None)],
                "in_t": [t],
                "outs": [],
                "out_dtypes": [],
                "out_t": [],
                "attrs": (),
                "line": self.line(),
            }
        )

    # ===================================================================================
    # gradient calls: analysis shared by tape.gradient, tf.gradients, compute_gradients, minimize
    # ===================================================================================
    def _on_gradient(
        self,
        api: str,
        line: int | None,
        target: Any,
        sources: Any,
        result: Any,
        *,
        tape: Any = None,
        pairs: bool = False,
    ) -> None:
        from tensorflow.python.util import nest

        key = (api, line)
        if key in self.grad_sites:
            self.rec.emit("gradient_call", line, key=api)
            site = self.grad_sites[key]
            if site is not None and not self.nonfinite_done and tape is not None:
                self._check_nonfinite_eager(target, nest.flatten(result) if not pairs else [g for g, _ in result], tape)
            return
        self.grad_sites[key] = None
        if pairs:
            pairs_l = list(result)
            flat_sources = [v for _, v in pairs_l]
            flat_grads = [g for g, _ in pairs_l]
        else:
            flat_sources = nest.flatten(sources)
            flat_grads = nest.flatten(result)
            if len(flat_grads) != len(flat_sources):
                flat_grads = list(result) if isinstance(result, (list, tuple)) else flat_grads
        targets = [t for t in nest.flatten(target) if t is not None]
        symbolic = any(self._is_symbolic(g) for g in flat_grads if g is not None) or any(
            self._is_symbolic(t) for t in targets
        )
        variables = []
        for s, g in zip(flat_sources, flat_grads):
            entry = {
                "name": self.var_name(s),
                "trainable": self.trainable(s) if self.is_variable(s) else True,
                "shape": _shape(s),
                "grad": "none" if g is None else "ok",
                "norm": None,
            }
            if not self.is_variable(s):
                entry["kind"] = "tensor"
            if g is not None and not symbolic:
                vals = self.values_of(g)
                if vals is not None:
                    n = self.norm(vals)
                    entry["norm"] = n
                    if n == 0.0:
                        entry["grad"] = "zero"
                    self._unit_check(entry, vals)
                    if not self.np.all(self.np.isfinite(vals)):
                        entry["nonfinite"] = True
            variables.append(entry)
        event = self.rec.emit("gradient_call", line, key=api, api=api, variables=variables, blocked=[], disconnected=[])
        site = _GradCall(event, flat_sources, flat_grads, targets, self._graph_of(targets, flat_grads))
        self.grad_sites[key] = site
        if symbolic:
            event["evaluated"] = False
            self._classify_graph(site, want="none")
            if site.graph is not None and not self._is_func_graph(site.graph):
                self.pending.append(site)
                self.graphs.add(site.graph)
                for t in targets:
                    try:
                        self.known_targets[(id(t.graph), t.name)] = "loss"
                    except Exception:
                        pass
            else:
                self._scan_graph_for_logs(site.graph)
        else:
            event["evaluated"] = True
            self._classify_eager(site, tape)
            if not self.nonfinite_done:
                self._check_nonfinite_eager(target, flat_grads, tape)
            if not self.layer_norms_done:
                self._layer_norms_eager(site, tape)

    def _unit_check(self, entry: dict, vals: Any) -> None:
        np = self.np
        try:
            if vals.ndim >= 2 and vals.shape[-1] > 1:
                entry["units_identical"] = bool(np.allclose(vals, vals[..., :1], rtol=1e-6, atol=1e-12))
        except Exception:
            pass

    def _is_symbolic(self, t: Any) -> bool:
        if t is None:
            return False
        try:
            from tensorflow.python.framework import ops

            if isinstance(t, ops.EagerTensor):
                return False
            if hasattr(t, "values") and hasattr(t, "indices"):
                t = t.values
            return hasattr(t, "graph") and hasattr(t, "op") and not isinstance(t, ops.EagerTensor)
        except Exception:
            return False

    def _is_func_graph(self, g: Any) -> bool:
        return type(g).__name__ == "FuncGraph" or (hasattr(g, "captures") and hasattr(g, "outer_graph"))

    def _graph_of(self, targets: list, grads: list) -> Any:
        for t in list(targets) + [g for g in grads if g is not None]:
            try:
                if self._is_symbolic(t):
                    return (t.values if hasattr(t, "indices") else t).graph
            except Exception:
                pass
        return None

    def _tensor_op_name(self, targets: list) -> str | None:
        try:
            return targets[0].op.name
        except Exception:
            try:
                return targets[0].name
            except Exception:
                return None

    # ---- graph-mode classification (TF1 graphs and tf.function FuncGraphs) -----------
    def _var_start_ops(self, g: Any, v: Any) -> list:
        """Ops in graph ``g`` where variable/tensor ``v`` enters the dataflow."""
        starts = []
        try:
            tv = self.tf_var(v)
            if self._is_func_graph(g):
                handle = getattr(tv, "handle", None)
                for ext, internal in g.captures:
                    if ext is handle or ext is tv:
                        starts.append(internal.op)
                if not starts and getattr(tv, "graph", None) is g:
                    starts.append(tv.op)
                return starts
            if hasattr(tv, "op") and getattr(tv, "graph", None) is g:
                starts.append(tv.op)
                try:
                    h = tv.handle
                    if getattr(h, "op", None) is not None and h.op is not tv.op:
                        starts.append(h.op)
                except Exception:
                    pass
            elif hasattr(v, "op"):
                starts.append(v.op)
        except Exception:
            _debug("var start ops")
        return starts

    def _classify_graph(self, site: _GradCall, want: str) -> None:
        g = site.graph
        if g is None:
            return
        view = self.view()
        try:
            target_ops = [t.op for t in site.targets if getattr(t, "graph", None) is g]
        except Exception:
            target_ops = []
        if not target_ops:
            return
        event = site.event
        tape_func = self._is_func_graph(g) and event.get("api") == "tape.gradient"
        for entry, v, gr in zip(event["variables"], site.sources, site.grads):
            if want == "none" and gr is not None:
                continue
            if want == "zero" and entry.get("grad") != "zero":
                continue
            if want == "none" and tape_func and entry.get("trainable") is False and self.is_variable(v):
                event.setdefault("unwatched", []).append(entry["name"])
                continue
            starts = self._var_start_ops(g, v)
            if not starts:
                if want == "none":
                    event["disconnected"].append(entry["name"])
                continue
            res = self._path_multi(view, starts, target_ops, want)
            if not res["connected"]:
                if want == "none":
                    event["disconnected"].append(entry["name"])
                continue
            blockers = res["blockers"]
            if not blockers and want == "zero":
                continue
            if not blockers:
                event["blocked"].append({"variable": entry["name"], "op": None, "op_type": None, "line": None})
            for b in blockers[:3]:
                event["blocked"].append(
                    {"variable": entry["name"], "op": view.name(b), "op_type": view.op_type(b), "line": view.line(b)}
                )

    def _path_multi(self, view: Any, starts: list, targets: list, want: str) -> dict:
        fwd_hit = None
        for t in targets:
            r = G.path_analysis(view, starts, t, want=want)
            if r["connected"]:
                if r["blockers"]:
                    return r
                fwd_hit = r
        return fwd_hit or {"connected": False, "blockers": []}

    # ---- eager classification ---------------------------------------------------------
    def _classify_eager(self, site: _GradCall, tape: Any) -> None:
        event = site.event
        cap = getattr(tape, "_tflint_capture", None) if tape is not None else None
        try:
            watched = tape.watched_variables() if tape is not None else ()
        except Exception:
            watched = ()
        watched_ids = {id(self.tf_var(w)) for w in watched} | {id(w) for w in watched}
        auto_watch = getattr(tape, "_watch_accessed_variables", True)
        view = None
        target_nodes = []
        if cap is not None and not cap.get("overflow"):
            view = G.EagerView(cap["records"])
            for t in site.targets:
                tid = getattr(t, "_id", None)
                if tid in view.producer:
                    target_nodes.append(view.producer[tid])
        for entry, v, gr in zip(event["variables"], site.sources, site.grads):
            want = None
            if gr is None:
                want = "none"
            elif entry.get("grad") == "zero":
                want = "zero"
            else:
                continue
            is_var = self.is_variable(v)
            tv = self.tf_var(v) if is_var else v
            if want == "none" and is_var and id(tv) not in watched_ids and id(v) not in watched_ids:
                if not entry.get("trainable", True) or not auto_watch:
                    event.setdefault("unwatched", []).append(entry["name"])
                else:  # never read while the tape recorded: no path
                    event["disconnected"].append(entry["name"])
                continue
            if view is None:
                if want == "none":
                    event.setdefault("unclassified", []).append(entry["name"])
                continue
            if is_var:
                hid = getattr(getattr(tv, "handle", None), "_id", None)
                starts = (
                    [i for i in view.consumers_of_tensor(hid) if view.op_type(i) not in G.ASSIGN_OPS]
                    if hid is not None
                    else []
                )
            else:
                tid = getattr(v, "_id", None)
                starts = [view.producer[tid]] if tid in view.producer else list(view.consumers_of_tensor(tid))
            if not target_nodes or not starts:
                if want == "none":
                    event["disconnected"].append(entry["name"])
                continue
            res = self._path_multi(view, starts, target_nodes, want)
            if not res["connected"]:
                if want == "zero":
                    continue
                # does the value leave through .numpy() on its way?
                fwd = G.bfs(starts, view.succs)
                sinks = [i for i in fwd if view.op_type(i) == ".numpy()"]
                if sinks:
                    s = sinks[0]
                    event["blocked"].append(
                        {"variable": entry["name"], "op": ".numpy()", "op_type": ".numpy()", "line": view.line(s)}
                    )
                else:
                    event["disconnected"].append(entry["name"])
                continue
            if not res["blockers"]:
                if want == "none":
                    event["blocked"].append({"variable": entry["name"], "op": None, "op_type": None, "line": None})
                continue
            for b in res["blockers"][:3]:
                event["blocked"].append(
                    {"variable": entry["name"], "op": view.name(b), "op_type": view.op_type(b), "line": view.line(b)}
                )
        if view is not None:
            self._scan_eager_logs(view)

    # ---- nonfinite ----------------------------------------------------------------------
    _ZERO_SENSITIVE = frozenset(
        {
            "Sqrt",
            "Rsqrt",
            "Log",
            "RealDiv",
            "Div",
            "DivNoNan",
            "Reciprocal",
            "Pow",
            "EuclideanNorm",
            "Xlogy",
            "Xdivy",
            "Acos",
            "Asin",
            "Atan2",
        }
    )

    def _check_nonfinite_eager(self, target: Any, grads: list, tape: Any = None) -> None:
        """First NaN/Inf in the loss or the gradients (values the call returned anyway).

        With the op capture of this tape, the culprit is named: the first op whose output is
        not finite (``where="forward"``), else an op like Sqrt/Log/Div that received a zero.
        """
        np = self.np
        from tensorflow.python.util import nest

        try:
            bad, where = None, None
            for t in nest.flatten(target):
                a = self.values_of(t)
                if a is not None and a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
                    bad, where = a, "loss"
                    break
            if bad is None:
                for g in grads:
                    a = self.values_of(g) if g is not None else None
                    if a is not None and a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
                        bad, where = a, "gradient"
                        break
            if bad is None:
                return
            line, op, op_type = self.line(), None, None
            cap = getattr(tape, "_tflint_capture", None) if tape is not None else None
            if cap is not None:
                found = self._eager_nonfinite_source(cap)
                if found is not None:
                    r, kind = found
                    op, op_type, line = r["type"], r["type"], r.get("line") or line
                    if kind == "forward":
                        where = "forward"
            self._emit_nonfinite(line, op, op_type, where, bad)
        except Exception:
            _debug("nonfinite eager")

    def _eager_nonfinite_source(self, cap: dict) -> tuple[dict, str] | None:
        np = self.np
        with self._quiet():
            for r in cap["records"]:
                for t in r.get("out_t") or ():
                    a = self.values_of(t)
                    if a is not None and a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
                        return r, "forward"
            for r in cap["records"]:
                if r["type"] not in self._ZERO_SENSITIVE:
                    continue
                ins = r.get("in_t") or ()
                check = ins[1:2] if r["type"] in ("RealDiv", "Div", "DivNoNan", "Xdivy") else ins[:1]
                for t in check:
                    a = self.values_of(t)
                    if a is not None and a.dtype.kind in "fc" and a.size and np.any(a == 0):
                        return r, "gradient"
        return None

    def _emit_nonfinite(self, line, op, op_type, where, value: Any = None) -> None:
        if self.nonfinite_done:
            return
        self.nonfinite_done = True
        text = None
        try:
            a = self.np.asarray(value)
            text = "NaN" if self.np.isnan(a).any() else "Inf"
        except Exception:
            pass
        self.rec.emit("nonfinite", line, op=op, op_type=op_type, where=where, value=text)

    # ---- TFG301: per-layer gradient norms and the fan-in counterfactual (eager) --------
    def _weight_entries(self, site: _GradCall) -> list[tuple[dict, Any, Any]]:
        out = []
        for entry, v, g in zip(site.event["variables"], site.sources, site.grads):
            if self.is_variable(v) and len(entry.get("shape") or []) >= 2 and entry.get("trainable", True):
                out.append((entry, v, g))
        return out

    def _flag_tiny(self, v: Any, vals: Any) -> str | None:
        """'he' / 'glorot' when the variable is drawn far below the fan-in scale, else None."""
        np = self.np
        shape = list(vals.shape)
        fan_in, fan_out = _fan(shape)
        flat = np.asarray(vals, dtype=np.float64).reshape(-1)[:_STAT_SAMPLE]
        std = float(np.std(flat)) if flat.size else 0.0
        rms = float(np.sqrt(np.mean(np.square(flat)))) if flat.size else 0.0
        glorot = (2.0 / (fan_in + fan_out)) ** 0.5
        # random (std > 0: constants are TFG302's business) and small in magnitude, not only in spread
        if std == 0.0 or std < 1e-3 * rms or rms >= 0.1 * glorot:
            return None
        return "he" if getattr(v, "_tflint_relu", None) else "glorot"

    def _redraw(self, kind: str, shape: list, dtype: Any) -> Any:
        fan_in, fan_out = _fan(shape)
        std = (2.0 / fan_in) ** 0.5 if kind == "he" else (2.0 / (fan_in + fan_out)) ** 0.5
        return self.rng.normal(0.0, std, size=shape).astype(getattr(dtype, "as_numpy_dtype", "float32"))

    def _layer_norms_eager(self, site: _GradCall, tape: Any) -> None:
        weights = self._weight_entries(site)
        if len(weights) < 2:
            return
        norms = [{"variable": e["name"], "norm": e.get("norm")} for e, _, _ in weights]
        if any(n["norm"] is None for n in norms):
            return
        self.layer_norms_done = True
        event = self.rec.emit(
            "layer_grad_norms", site.event["line"], norms=norms, counterfactual=None, first_ratio=None, flagged=[]
        )
        cap = getattr(tape, "_tflint_capture", None) if tape is not None else None
        view = G.EagerView(cap["records"]) if cap is not None and not cap.get("overflow") else None
        flagged = []
        for e, v, _g in weights:
            tv = self.tf_var(v)
            try:
                vals = self.np.asarray(tv.numpy())
            except Exception:
                return
            if view is not None:
                hid = getattr(getattr(tv, "handle", None), "_id", None)
                starts = view.consumers_of_tensor(hid) if hid is not None else []
                if G.near_activation(view, starts, depth=4) in G.RELU_OPS:
                    kind_act = True
                else:
                    kind_act = False
            else:
                kind_act = False
            try:
                tv._tflint_relu = kind_act
            except Exception:
                pass
            kind = self._flag_tiny(tv, vals)
            if kind is not None:
                flagged.append((e, tv, vals, kind))
        event["flagged"] = [{"variable": e["name"], "redraw": k} for e, _, _, k in flagged]
        if not flagged or view is None:
            return
        try:
            cf = self._replay_counterfactual(cap, site, weights, flagged)
        except Exception:
            _debug("eager counterfactual")
            cf = None
        if cf is None:
            return
        event["counterfactual"] = cf
        if norms[0]["norm"] and cf[0]["norm"] is not None:
            event["first_ratio"] = cf[0]["norm"] / norms[0]["norm"] if norms[0]["norm"] > 0 else None

    def _replay_counterfactual(self, cap: dict, site: _GradCall, weights: list, flagged: list) -> list | None:
        """Re-run the recorded forward ops with the flagged weights re-drawn; restore after."""
        from tensorflow.python.eager import backprop, context, execute, imperative_grad

        targets = [getattr(t, "_id", None) for t in site.targets]
        originals = []
        with self._quiet():
            try:
                for _e, tv, vals, kind in flagged:
                    originals.append((tv, vals))
                    tv.assign(self._redraw(kind, list(vals.shape), tv.dtype))
                tvars = [self.tf_var(v) for _, v, _ in weights]
                tape = backprop.GradientTape(watch_accessed_variables=False, persistent=False)
                tape._push_tape()
                try:
                    for v in tvars:
                        tape.watch(v)
                    mapping: dict[int, Any] = {}
                    ctx = context.context()
                    for r in cap["records"]:
                        t = r["type"]
                        if t in G.ASSIGN_OPS or t.startswith("Assign") or t == ".numpy()":
                            continue
                        ins = [mapping.get(i, x) for i, x in zip(r["ins"], r["in_t"])]
                        outs = execute.execute(t, len(r["outs"]), ins, r["attrs"], ctx)
                        if outs:
                            execute.record_gradient(t, ins, r["attrs"], outs)
                        for old, new in zip(r["outs"], outs or ()):
                            mapping[old] = new
                finally:
                    tape._pop_tape()
                new_targets = [mapping.get(t) for t in targets]
                if any(t is None for t in new_targets):
                    return None
                grads = imperative_grad.imperative_grad(
                    tape._tape, new_targets, [v.handle for v in tvars], sources_raw=tvars
                )
                out = []
                for (e, _v, _g), gr in zip(weights, grads):
                    out.append({"variable": e["name"], "norm": None if gr is None else self.norm(self.values_of(gr))})
                return out
            finally:
                for tv, vals in originals:
                    try:
                        tv.assign(vals)
                    except Exception:
                        _debug("restore weight")

    # ===================================================================================
    # tf.gradients (TF1 graph / tf.function)
    # ===================================================================================
    def _install_gradients(self) -> None:
        from tensorflow.python.ops import gradients_impl

        P = self
        repl: dict[int, tuple[Any, Any]] = {}

        def make(orig, api):
            def gradients(ys, xs, *args, **kwargs):
                if P.busy() or P.in_api():
                    result = orig(ys, xs, *args, **kwargs)
                    return result
                line = P.line()
                with P._api():
                    result = orig(ys, xs, *args, **kwargs)
                try:
                    P._on_gradient("tf.gradients", line, ys, xs, result)
                except Exception:
                    _debug("tf.gradients probe")
                return result

            return _same_face(gradients, orig)

        for fn in (gradients_impl.gradients, gradients_impl.gradients_v2):
            repl[id(fn)] = (fn, make(fn, "tf.gradients"))
        self._patch_functions(repl, {"gradients", "gradients_v2"})

    # ===================================================================================
    # TF1 optimizers
    # ===================================================================================
    def _install_tf1_optimizer(self) -> None:
        from tensorflow.python.training import optimizer as tf1opt

        P = self
        opt_cls = tf1opt.Optimizer
        self._patch(opt_cls, "__init__", lambda orig: P._make_opt_init(orig))

        def make_cg(orig):
            def compute_gradients(opt, loss, *args, **kwargs):
                if P.busy():
                    return orig(opt, loss, *args, **kwargs)
                if P.in_api():  # inside minimize: hand the pairs to the outer call
                    result = orig(opt, loss, *args, **kwargs)
                    try:
                        stash = getattr(P.local, "stash_cg", None)
                        if isinstance(stash, list):
                            stash.append(result)
                    except Exception:
                        pass
                    return result
                line = P.line()
                with P._api():
                    result = orig(opt, loss, *args, **kwargs)
                try:
                    P._on_gradient("compute_gradients", line, loss, None, result, pairs=True)
                except Exception:
                    _debug("compute_gradients probe")
                return result

            return compute_gradients

        def make_min(orig):
            def minimize(opt, loss, *args, **kwargs):
                if P.busy() or P.in_api():
                    return orig(opt, loss, *args, **kwargs)
                line = P.line()
                P.local.stash_cg = stash = []
                mark = P._op_mark()
                try:
                    with P._api():
                        result = orig(opt, loss, *args, **kwargs)
                finally:
                    P.local.stash_cg = None
                P._op_mark_done(mark)
                try:
                    if stash:
                        P._on_gradient("minimize", line, loss, None, stash[0], pairs=True)
                    P._register_train_op(result, line, "minimize")
                except Exception:
                    _debug("minimize probe")
                return result

            return minimize

        def make_apply(orig):
            def apply_gradients(opt, grads_and_vars, *args, **kwargs):
                if P.busy():
                    return orig(opt, grads_and_vars, *args, **kwargs)
                nested = P.in_api()
                try:
                    grads_and_vars = list(grads_and_vars)
                except Exception:
                    return orig(opt, grads_and_vars, *args, **kwargs)
                line = P.line()
                mark = P._op_mark()
                with P._api():
                    result = orig(opt, grads_and_vars, *args, **kwargs)
                P._op_mark_done(mark)
                try:
                    if not nested:
                        P._emit_apply(line, grads_and_vars, "apply_gradients")
                        P._register_train_op(result, line, "apply_gradients")
                except Exception:
                    _debug("apply_gradients probe")
                return result

            return apply_gradients

        self._patch(opt_cls, "compute_gradients", make_cg)
        self._patch(opt_cls, "minimize", make_min)
        self._patch(opt_cls, "apply_gradients", make_apply)

    def _make_opt_init(self, orig):
        P = self

        def __init__(opt, *args, **kwargs):
            orig(opt, *args, **kwargs)
            if P.busy():
                return
            try:
                if not getattr(opt, "_tflint_seen", False):
                    try:
                        object.__setattr__(opt, "_tflint_seen", True)
                    except Exception:
                        pass
                    line = P.line()
                    P.rec.emit("optimizer_created", line, key=type(opt).__name__, **{"class": type(opt).__name__})
            except Exception:
                _debug("optimizer init probe")

        return __init__

    def _op_mark(self) -> tuple | None:
        """(graph, op count) before an optimizer builds its update ops (TF1 graphs)."""
        try:
            from tensorflow.python.eager import context

            if context.executing_eagerly():
                return None
            g = self.ops.get_default_graph()
            return g, len(g.get_operations())
        except Exception:
            return None

    def _op_mark_done(self, mark: tuple | None) -> None:
        if mark is None:
            return
        try:
            g, n = mark
            names = self.optimizer_ops.setdefault(id(g), set())
            for op in g.get_operations()[n:]:
                names.add(op.name)
        except Exception:
            pass

    def _emit_apply(self, line: int | None, grads_and_vars: list, api: str) -> None:
        names, none = [], []
        for g, v in grads_and_vars:
            n = self.var_name(v)
            names.append(n)
            if g is None:
                none.append(n)
        self.rec.emit("apply_gradients", line, key=api, api=api, variables=names, none=none)

    def _register_train_op(self, op: Any, line: int | None, api: str) -> None:
        if op is None:
            return
        try:
            real = op.op if hasattr(op, "op") and not hasattr(op, "control_inputs") else op
            if not hasattr(real, "graph"):
                return
            if self._is_func_graph(real.graph):
                return
            self.train_ops[real] = {"line": line, "api": api}
            self.graphs.add(real.graph)
        except Exception:
            _debug("register train op")

    # ===================================================================================
    # Session: piggy-backed evaluation, first-step snapshots, fetch sets, close snapshots
    # ===================================================================================
    def _install_session(self) -> None:
        from tensorflow.python.client import session

        P = self
        S = session.BaseSession
        self.orig["run"] = S.__dict__["run"]

        def make_run(orig):
            def run(sess, fetches, feed_dict=None, options=None, run_metadata=None):
                if P.busy():
                    return orig(sess, fetches, feed_dict, options, run_metadata)
                extra = None
                try:
                    extra = P._before_run(sess, fetches, feed_dict)
                except Exception:
                    _debug("before run")
                if extra:
                    res = orig(sess, (fetches, [t for t, _ in extra]), feed_dict, options, run_metadata)
                    result, values = res
                    try:
                        P._after_extra(sess, extra, values)
                    except Exception:
                        _debug("after extra")
                else:
                    result = orig(sess, fetches, feed_dict, options, run_metadata)
                if P.known_targets and not P.nonfinite_done:
                    try:
                        P._after_run(sess, fetches, result)
                    except Exception:
                        _debug("after run")
                return result

            return run

        def make_close(orig):
            def close(sess):
                if not P.busy():
                    try:
                        P._snapshot_after(sess)
                    except Exception:
                        _debug("close snapshot")
                return orig(sess)

            return close

        def make_init(orig):
            def __init__(sess, *args, **kwargs):
                orig(sess, *args, **kwargs)
                try:
                    P.sessions.append(weakref.ref(sess))
                    P.graphs.add(sess.graph)
                except Exception:
                    pass

            return __init__

        self._patch(S, "run", make_run)
        self._patch(S, "close", make_close)
        self._patch(S, "__init__", make_init)
        self.orig["run_raw"] = self.orig["run"]

    def _raw_run(self, sess: Any, fetches: Any, feed_dict: Any = None) -> Any:
        with self._quiet():
            return self.orig["run_raw"](sess, fetches, feed_dict)

    def _fetch_ops(self, sess: Any, fetches: Any) -> list:
        from tensorflow.python.util import nest

        g = sess.graph
        out = []
        for f in nest.flatten(fetches):
            try:
                el = g.as_graph_element(f, allow_tensor=True, allow_operation=True)
            except Exception:
                try:
                    el = f._as_graph_element() if hasattr(f, "_as_graph_element") else None
                except Exception:
                    el = None
            if el is None:
                continue
            op = el if hasattr(el, "control_inputs") else getattr(el, "op", None)
            if op is not None:
                out.append(op)
        return out

    def _before_run(self, sess: Any, fetches: Any, feed_dict: Any) -> list | None:
        g = sess.graph
        ops = self._fetch_ops(sess, fetches)
        if not ops:
            return None
        key = frozenset(ops)
        fs = self.fetch_sets.setdefault(g, set())
        if key not in fs and len(fs) < 500:
            fs.add(key)
        self.graphs.add(g)
        is_train = self._is_train_fetch(key)
        if is_train and id(g) not in self.first_step_done:
            self.first_step_done.add(id(g))
            self.train_session = weakref.ref(sess)
            try:
                self._first_train_step(sess, g, feed_dict)
            except Exception:
                _debug("first train step")
        extra = []
        anc_cache: list = []

        def anc() -> set:
            if not anc_cache:
                anc_cache.append(G.ancestors(self.view(), ops, control=True))
            return anc_cache[0]

        lgn = self.lgn
        if is_train and lgn is not None and lgn["graph"] is g and lgn["n"] < lgn["k"]:
            try:
                if lgn["flagged"]:
                    self._lgn_explicit(sess, feed_dict)
                elif all(t.op in anc() for t in lgn["grads"]):
                    for i, t in enumerate(lgn["grads"]):
                        extra.append((t, (None, "lgn", i)))
            except Exception:
                _debug("layer norms step")
        pend = [s for s in self.pending if s.graph is g and not s.evaluated]
        for site in pend:
            tensors = [gr for gr in site.grads if gr is not None and not hasattr(gr, "indices")]
            if not tensors or not all(t.op in anc() for t in tensors):
                continue
            site.evaluated = True
            for i, gr in enumerate(site.grads):
                if gr is not None and not hasattr(gr, "indices"):
                    extra.append((gr, (site, "grad", i)))
            for j, t in enumerate(site.targets):
                if hasattr(t, "dtype") and t.op in anc():
                    extra.append((t, (site, "target", j)))
        if pend:
            self.pending = [s for s in self.pending if not s.evaluated]
        return extra or None

    def _is_train_fetch(self, key: frozenset) -> bool:
        """The run fetches a train op, or something that depends on one (tf.group(train, ...))."""
        if not self.train_ops:
            return False
        cache = self._train_fetch_cache
        hit = cache.get(key)
        if hit is not None and hit[0] == len(self.train_ops):
            return hit[1]
        found = any(op in self.train_ops for op in key)
        if not found:
            anc = G.ancestors(self.view(), key, control=True)
            found = any(op in anc for op in self.train_ops)
        if len(cache) < 1000:
            cache[key] = (len(self.train_ops), found)
        return found

    def _after_run(self, sess: Any, fetches: Any, result: Any) -> None:
        """Cheap finiteness check of loss values the script fetched anyway."""
        from tensorflow.python.util import nest

        np = self.np
        gid = id(sess.graph)
        flat_f = nest.flatten(fetches)
        flat_r = nest.flatten(result)
        if len(flat_f) != len(flat_r):
            return
        for f, r in zip(flat_f, flat_r):
            name = getattr(f, "name", None) if hasattr(f, "op") else None
            if name is None or (gid, name) not in self.known_targets:
                continue
            a = np.asarray(r)
            if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
                self._emit_nonfinite(self.view().line(f.op) or self.line(), f.op.name, f.op.type, "loss", a)
                return

    def _after_extra(self, sess: Any, extra: list, values: list) -> None:
        np = self.np
        sites = {}
        lgn_vals = []
        for (t, (site, what, i)), val in zip(extra, values):
            if what == "lgn":
                lgn_vals.append(val)
                continue
            sites.setdefault(id(site), site)
            a = np.asarray(val)
            if what == "grad":
                entry = site.event["variables"][i]
                n = self.norm(a)
                entry["norm"] = n
                entry["grad"] = "zero" if n == 0.0 else "ok"
                self._unit_check(entry, a)
                if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
                    entry["nonfinite"] = True
                    self._emit_nonfinite(
                        site.event["line"], getattr(t.op, "name", None), getattr(t.op, "type", None), "gradient", a
                    )
            elif a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
                self._emit_nonfinite(self.view().line(t.op) or site.event["line"], t.op.name, t.op.type, "loss", a)
        if lgn_vals and self.lgn is not None:
            self._lgn_accumulate([self.norm(v) for v in lgn_vals], None)
        for site in sites.values():
            site.event["evaluated"] = True
            if any(e.get("grad") == "zero" for e in site.event["variables"]):
                self._classify_graph(site, want="zero")

    # ---- TFG301 in TF1: per-layer norms on the first K train batches, and the counterfactual
    def _lgn_start(self, sess: Any, g: Any) -> None:
        """At the first train step: pick the gradient call, measure the weights, flag tiny ones."""
        np = self.np
        site = None
        for s in self.pending:
            if s.graph is g and len(self._weight_entries(s)) >= 2:
                site = s
                break
        if site is None:
            return
        weights = [
            (e, v, gr) for e, v, gr in self._weight_entries(site) if gr is not None and not hasattr(gr, "indices")
        ]
        if len(weights) < 2:
            return
        self.layer_norms_done = True
        vals = self._raw_run(sess, [v for _, v, _ in weights])
        flagged = []
        for (e, v, _gr), a in zip(weights, vals):
            a = np.asarray(a)
            kind = self._flag_tiny(v, a)
            if kind is not None:
                flagged.append((v, self._redraw(kind, list(a.shape), v.dtype.base_dtype), kind, e["name"]))
        restore = []
        if flagged:
            # variables that evaluating the gradients may assign (control deps on update ops), restored too
            view = self.view()
            anc = G.ancestors(view, [gr.op for _, _, gr in weights], control=True)
            touched = {op.inputs[0].op for op in anc if op.type in G.ASSIGN_OPS and op.inputs}
            for v in g.get_collection("variables"):
                try:
                    if any(v is f[0] for f in flagged) or v.op in touched:
                        restore.append(v)
                except Exception:
                    pass
        self.lgn = {
            "graph": g,
            "site": site,
            "names": [e["name"] for e, _, _ in weights],
            "grads": [gr for _, _, gr in weights],
            "flagged": flagged,
            "restore": restore,
            "n": 0,
            "k": max(1, min(self.steps or 1, 5)),
            "sums": None,
            "cf_sums": None,
            "event": None,
        }

    def _lgn_explicit(self, sess: Any, feed_dict: Any) -> None:
        lgn = self.lgn
        saved = self._raw_run(sess, lgn["restore"]) if lgn["restore"] else []
        try:
            actual = self._raw_run(sess, lgn["grads"], feed_dict)
            for v, value, _kind, _n in lgn["flagged"]:
                self._load(sess, v, value)
            cf = self._raw_run(sess, lgn["grads"], feed_dict)
        finally:
            for v, val in zip(lgn["restore"], saved):
                try:
                    self._load(sess, v, val)
                except Exception:
                    _debug("restore")
        self._lgn_accumulate([self.norm(a) for a in actual], [self.norm(a) for a in cf])

    def _lgn_accumulate(self, norms: list, cf: list | None) -> None:
        lgn = self.lgn
        if any(n is None for n in norms):
            return
        lgn["sums"] = norms if lgn["sums"] is None else [a + b for a, b in zip(lgn["sums"], norms)]
        if cf is not None and all(c is not None for c in cf):
            lgn["cf_sums"] = cf if lgn["cf_sums"] is None else [a + b for a, b in zip(lgn["cf_sums"], cf)]
        lgn["n"] += 1
        n = lgn["n"]
        mean = [x / n for x in lgn["sums"]]
        ev = lgn["event"]
        if ev is None:
            ev = lgn["event"] = self.rec.emit(
                "layer_grad_norms",
                lgn["site"].event["line"],
                norms=[],
                counterfactual=None,
                first_ratio=None,
                flagged=[{"variable": nm, "redraw": k} for _v, _val, k, nm in lgn["flagged"]],
            )
        ev["norms"] = [{"variable": nm, "norm": x} for nm, x in zip(lgn["names"], mean)]
        ev["batches"] = n
        if lgn["cf_sums"] is not None:
            cfm = [x / n for x in lgn["cf_sums"]]
            ev["counterfactual"] = [{"variable": nm, "norm": x} for nm, x in zip(lgn["names"], cfm)]
            ev["first_ratio"] = cfm[0] / mean[0] if mean[0] > 0 else None

    def _load(self, sess: Any, v: Any, value: Any) -> None:
        init = v.initializer
        self._raw_run(sess, init, {init.inputs[1]: value})

    # ---- first train step (TF1) ---------------------------------------------------------
    def _first_train_step(self, sess: Any, g: Any, feed_dict: Any) -> None:
        # UPDATE_OPS size now, for update_ops_collected events
        for ev, cg in self.collected:
            if cg is g and ev.get("size_at_first_step") is None:
                try:
                    ev["size_at_first_step"] = len(g.get_collection("update_ops"))
                except Exception:
                    pass
        try:
            self._assign_targets[id(g)] = self._assign_target_vars(g)
        except Exception:
            _debug("assign targets")
        self._snapshot(sess, g, self.snap_before, overwrite=False)
        self._initializers_tf1(sess, g)
        if not self.layer_norms_done:
            try:
                self._lgn_start(sess, g)
            except Exception:
                _debug("tf1 layer norms")

    def _script_assigns(self, g: Any) -> list:
        """(op, line) of the assign ops the script created (not initializers, not Saver restores)."""
        view = self.view()
        init_ops = set()
        try:
            for v in g.get_collection("variables"):
                init_ops.add(v.initializer)
        except Exception:
            pass
        out = []
        internal = self.optimizer_ops.get(id(g), ())
        for op in g.get_operations():
            if op.type not in G.ASSIGN_OPS or op in init_ops or op.name.startswith("save/") or op.name in internal:
                continue
            line = view.line(op)
            if line is None or self._is_restore_assign(op):
                continue
            out.append((op, line))
            if len(out) >= _MAX_LIST_EVENTS:
                break
        return out

    def _assign_target_vars(self, g: Any) -> list:
        by_op = {}
        for v in g.get_collection("variables"):
            try:
                by_op[v.op] = v
            except Exception:
                pass
        out = []
        for op, _line in self._script_assigns(g):
            t = self._assign_target(op)
            v = by_op.get(getattr(t, "op", None))
            if v is not None and all(v is not w for w in out):
                out.append(v)
        return out

    def _bn_vars(self, g: Any) -> list:
        try:
            return [v for v in g.get_collection("variables") if "moving_mean" in v.name or "moving_variance" in v.name]
        except Exception:
            return []

    def _snapshot(self, sess: Any, g: Any, store: dict, overwrite: bool = True) -> None:
        vs = self._bn_vars(g)
        extra = self._assign_targets.get(id(g), [])
        allv = vs + [v for v in extra if all(v is not w for w in vs)]
        if not allv:
            return
        try:
            vals = self._raw_run(sess, allv)
        except Exception:
            vals = []
            for v in allv:
                try:
                    vals.append(self._raw_run(sess, v))
                except Exception:
                    vals.append(None)
        for v, val in zip(allv, vals):
            if val is None:
                continue
            k = f"{id(g)}:{v.name}"
            if overwrite or k not in store:
                store[k] = self.np.array(val)

    def _snapshot_after(self, sess: Any) -> None:
        g = sess.graph
        if id(g) not in self.first_step_done or getattr(sess, "_closed", False):
            return
        self._snapshot(sess, g, self.snap_after, overwrite=True)

    def _initializers_tf1(self, sess: Any, g: Any) -> None:
        np = self.np
        try:
            tvars = [v for v in g.get_collection("trainable_variables") if len(_shape(v)) >= 2]
        except Exception:
            return
        if not tvars:
            return
        vals = self._raw_run(sess, tvars)
        view = self.view()
        for v, val in zip(tvars, vals):
            a = np.asarray(val)
            shape = list(a.shape)
            fan_in, _ = _fan(shape)
            info = self._init_info_tf1(v)
            try:
                vop = v.op
                line = view.line(vop)
                relu = G.near_activation(view, [vop], depth=5) in G.RELU_OPS
                v._tflint_relu = relu
            except Exception:
                line = None
            flat = a.reshape(-1)[:_STAT_SAMPLE]
            self.rec.emit(
                "initializer",
                line,
                variable=_short(v.name),
                shape=shape,
                fan_in=fan_in,
                std=float(np.std(flat)) if flat.size > 1 else None,
                mean=float(np.mean(flat)) if flat.size else 0.0,
                **info,
            )

    def _init_info_tf1(self, v: Any) -> dict:
        try:
            iv = v.initial_value
            g = iv.graph
            info = self.init_calls.get((id(g), iv.name))
            if info is None:
                # initial value may be an Identity of the initializer output
                op = iv.op
                for _ in range(3):
                    if op.type in ("Identity",) and op.inputs:
                        op = op.inputs[0].op
                        info = self.init_calls.get((id(g), op.outputs[0].name))
                        if info:
                            break
            if info is not None:
                return dict(info)
            types = {o.type for o in G.bfs([iv.op], lambda o: [t.op for t in o.inputs], limit=50)}
            for t, name in (
                ("TruncatedNormal", "TruncatedNormal"),
                ("RandomStandardNormal", "RandomNormal"),
                ("RandomUniform", "RandomUniform"),
                ("Fill", "Constant"),
                ("Const", "Constant"),
            ):
                if t in types:
                    return {"init": name}
        except Exception:
            pass
        return {"init": None}

    # ===================================================================================
    # functions: clip_by_value / clip_by_norm, get_collection, logits losses
    # ===================================================================================
    def _install_functions(self) -> None:
        from tensorflow.python.framework import ops
        from tensorflow.python.ops import clip_ops, nn_ops

        P = self
        repl: dict[int, tuple[Any, Any]] = {}
        names: set[str] = set()

        def wrap(fn, maker):
            new = _same_face(maker(fn), fn)
            repl[id(fn)] = (fn, new)
            names.add(fn.__name__)

        def clip_maker(fn):
            def clip(t, *args, **kwargs):
                if t is None and not P.busy():
                    try:
                        P.rec.emit("clip_none", P.line(), key=fn.__name__, function=fn.__name__)
                    except Exception:
                        pass
                return fn(t, *args, **kwargs)

            return clip

        for fn in (clip_ops.clip_by_value, clip_ops.clip_by_norm):
            wrap(fn, clip_maker)

        def coll_maker(fn):
            def get_collection(key, *args, **kwargs):
                result = fn(key, *args, **kwargs)
                if not P.busy():
                    try:
                        if key == "update_ops" and P.called_from_script():
                            P._on_update_ops_collected(result)
                    except Exception:
                        _debug("get_collection probe")
                return result

            return get_collection

        wrap(ops.get_collection, coll_maker)

        def graph_coll(orig):
            def get_collection(graph, name, *args, **kwargs):
                result = orig(graph, name, *args, **kwargs)
                if name == "update_ops" and not P.busy():
                    try:
                        if P.called_from_script():
                            P._on_update_ops_collected(result, graph)
                    except Exception:
                        pass
                return result

            return get_collection

        self._patch(ops.Graph, "get_collection", graph_coll)

        # losses with logits
        logits_fns = []
        for mod, n in (
            (nn_ops, "softmax_cross_entropy_with_logits"),
            (nn_ops, "softmax_cross_entropy_with_logits_v2"),
            (nn_ops, "softmax_cross_entropy_with_logits_v2_helper"),
            (nn_ops, "sparse_softmax_cross_entropy_with_logits"),
            (nn_ops, "sparse_softmax_cross_entropy_with_logits_v2"),
        ):
            fn = getattr(mod, n, None)
            if fn is not None:
                logits_fns.append(fn)
        try:
            from tensorflow.python.ops import nn_impl

            for n in (
                "sigmoid_cross_entropy_with_logits",
                "sigmoid_cross_entropy_with_logits_v2",
                "weighted_cross_entropy_with_logits",
                "weighted_cross_entropy_with_logits_v2",
            ):
                fn = getattr(nn_impl, n, None)
                if fn is not None:
                    logits_fns.append(fn)
        except Exception:
            pass

        def logits_maker(fn):
            def loss_fn(*args, **kwargs):
                if not P.busy():
                    try:
                        P._on_logits(fn.__name__, args, kwargs)
                    except Exception:
                        _debug("logits probe")
                return fn(*args, **kwargs)

            return loss_fn

        for fn in logits_fns:
            wrap(fn, logits_maker)
        self._patch_functions(repl, names)
        self._repl = repl

    def _on_update_ops_collected(self, result: Any, graph: Any = None) -> None:
        if graph is None:
            graph = self.ops.get_default_graph()
        line = self.line()
        ev = self.rec.emit(
            "update_ops_collected", line, key="update_ops", size=len(result or ()), size_at_first_step=None
        )
        if ev.get("count", 1) == 1:
            self.collected.append((ev, graph))

    def _on_logits(self, fname: str, args: tuple, kwargs: dict) -> None:
        logits = kwargs.get("logits")
        if logits is None:
            # sparse/softmax v1 use keyword-only in practice; positional: (labels, logits) or (_sentinel, labels, logits)
            pos = [a for a in args if a is not None and hasattr(a, "dtype")]
            logits = pos[1] if len(pos) >= 2 else None
        if logits is None:
            return
        kind = None
        if self._is_symbolic(logits):
            view = self.view()
            node = logits.op
            if node.type in G.PASS_THROUGH:
                prod, _ = G.feeding_type(view, node)
                node = prod if prod is not None else node
            kind = node.type
        elif self.capture is not None:
            tid = getattr(logits, "_id", None)
            view = G.EagerView(self.capture["records"])
            i = view.producer.get(tid)
            if i is not None:
                if view.op_type(i) in G.PASS_THROUGH:
                    prod, _ = G.feeding_type(view, i)
                    i = prod if prod is not None else i
                kind = view.op_type(i)
        if kind is None:
            return
        self.rec.emit("logits_input", self.line(), key=fname, function=fname, input_op_type=kind)

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
                    line = P.line(outermost=True)
                    fields = {
                        "layer": getattr(layer, "name", type(layer).__name__),
                        "class": type(layer).__name__,
                        "training": resolved,
                        "in_tape": in_tape,
                        "keras": flavor,
                    }
                    if kind:
                        fields["training_kind"] = kind
                    if is_bn:
                        fields["trainable"] = bool(getattr(layer, "trainable", True))
                    P.rec.emit("layer_call", line, key=(fields["layer"], resolved, in_tape), **fields)
                except Exception:
                    _debug("layer call probe")
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
            return self.np.array(tv.numpy())
        except Exception:
            return None

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

    # ===================================================================================
    # log inputs
    # ===================================================================================
    def _scan_graph_for_logs(self, g: Any) -> None:
        if g is None or id(g) in self._logs_scanned:
            return
        self._logs_scanned.add(id(g))
        view = self.view()
        n = n_sqrt = 0
        for op in g.get_operations():
            if op.type == "Sqrt" and n_sqrt < _MAX_LIST_EVENTS:
                n_sqrt += self._emit_sqrt(view, op, view.line(op), op.name)
                continue
            if op.type not in ("Log", "Log1p") or n >= _MAX_LIST_EVENTS:
                continue
            line = view.line(op)
            if line is None:
                continue
            prod, clipped = G.feeding_type(view, op)
            if prod is None:
                continue
            self.rec.emit(
                "log_input",
                line,
                key=("log", op.type, prod.type, clipped),
                op=op.name,
                input_op_type=prod.type,
                clipped=clipped,
            )
            n += 1

    def _scan_eager_logs(self, view: Any) -> None:
        n_sqrt = 0
        for i, r in enumerate(view.records):
            if r["type"] == "Sqrt" and n_sqrt < _MAX_LIST_EVENTS:
                n_sqrt += self._emit_sqrt(view, i, r.get("line"), f"Sqrt_{i}", r.get("in_t") or ())
                continue
            if r["type"] not in ("Log", "Log1p"):
                continue
            prod, clipped = G.feeding_type(view, i)
            if prod is None:
                continue
            self.rec.emit(
                "log_input",
                r.get("line"),
                key=("log", r["type"], view.op_type(prod), clipped),
                op=r["type"],
                input_op_type=view.op_type(prod),
                clipped=clipped,
            )

    def _emit_sqrt(self, view: Any, node: Any, line: int | None, name: str, ins: Any = ()) -> int:
        """``sqrt_input`` for a Sqrt op (TFG403); eager: whether its input held an exact 0."""
        if line is None:
            return 0
        try:
            rad = G.sqrt_radicand(view, node)
            if rad is None:
                return 0
            extra: dict[str, Any] = {}
            if ins:
                np = self.np
                with self._quiet():
                    a = self.values_of(ins[0])
                if a is not None and a.dtype.kind in "fc" and a.size:
                    extra = {"zeros": int(np.count_nonzero(a == 0)), "size": int(a.size)}
            ev = self.rec.emit(
                "sqrt_input",
                line,
                key=("sqrt", tuple(rad["chain"]), rad["clipped"]),
                op=name,
                input_op_type=rad["chain"][0] if rad["chain"] else None,
                **rad,
            )
            if extra and ("zeros" not in ev or (extra["zeros"] and not ev["zeros"])):
                ev.update(extra)  # the first observation, or the first one with a zero
                if extra["zeros"]:
                    ev["zero_step"] = self.rec.step
            return 1
        except Exception:
            _debug("sqrt input")
            return 0

    # ===================================================================================
    # finalize
    # ===================================================================================
    def finalize(self) -> None:
        if self.finalized:
            return
        self.finalized = True
        try:
            self._stop_capture()
        except Exception:
            pass
        with self._quiet():
            for step in (
                self._final_snapshots,
                self._final_moving_stats,
                self._final_assign_ops,
                self._final_update_ops,
                self._final_logs,
            ):
                try:
                    step()
                except Exception:
                    _debug(step.__name__)

    def _graphs(self) -> list:
        out = []
        try:
            out.extend(list(self.graphs))
        except Exception:
            pass
        try:
            g = self.ops.get_default_graph()
            if all(g is not x for x in out):
                out.append(g)
        except Exception:
            pass
        return out

    def _final_snapshots(self) -> None:
        for ref in self.sessions:
            sess = ref()
            if sess is None or getattr(sess, "_closed", False):
                continue
            try:
                self._snapshot_after(sess)
            except Exception:
                pass

    def _firsts(self, a: Any) -> list | None:
        if a is None:
            return None
        try:
            return [float(x) for x in self.np.asarray(a).reshape(-1)[:_FIRST_VALUES]]
        except Exception:
            return None

    def _final_moving_stats(self) -> None:
        np = self.np
        # Keras layers in eager mode
        for layer, line, before in self.bn_layers:
            after = {
                "moving_mean": self._read_eager(layer.moving_mean),
                "moving_variance": self._read_eager(layer.moving_variance),
            }
            changed = any(
                before[k] is not None and after[k] is not None and not np.array_equal(before[k], after[k])
                for k in before
            )
            self.rec.emit(
                "moving_stats",
                line,
                layer=self.var_name(layer) if not hasattr(layer, "name") else layer.name,
                before={k: self._firsts(v) for k, v in before.items()},
                after={k: self._firsts(v) for k, v in after.items()},
                changed=bool(changed),
                keras=True,
            )
        # graph variables (TF1 tf.layers / tf_keras BN in graphs), from the session snapshots
        view = self.view()
        for g in self._graphs():
            groups: dict[str, dict] = {}
            for v in self._bn_vars(g):
                name = v.name
                kind = "moving_mean" if "moving_mean" in name else "moving_variance"
                prefix = name.split("/moving_")[0] if "/moving_" in name else name.rsplit("/", 1)[0]
                k = f"{id(g)}:{name}"
                if k not in self.snap_before:
                    continue
                grp = groups.setdefault(prefix, {"line": None, "before": {}, "after": {}})
                grp["before"][kind] = self.snap_before[k]
                grp["after"][kind] = self.snap_after.get(k)
                if grp["line"] is None:
                    try:
                        grp["line"] = view.line(v.op)
                    except Exception:
                        pass
            for prefix, grp in groups.items():
                if all(v is None for v in grp["after"].values()):
                    continue
                changed = any(
                    grp["after"].get(k) is not None and not np.array_equal(grp["before"][k], grp["after"][k])
                    for k in grp["before"]
                )
                self.rec.emit(
                    "moving_stats",
                    grp["line"],
                    layer=prefix,
                    before={k: self._firsts(v) for k, v in grp["before"].items()},
                    after={k: self._firsts(v) for k, v in grp["after"].items()},
                    changed=bool(changed),
                )

    def _final_assign_ops(self) -> None:
        view = self.view()
        for g in self._graphs():
            if self._is_func_graph(g):
                continue
            fsets = self.fetch_sets.get(g)
            if not fsets:
                continue
            fetched = set()
            for s in fsets:
                fetched |= s
            anc = G.ancestors(view, fetched, control=True)
            for op, line in self._script_assigns(g):
                target = self._assign_target(op)
                tname = _short(target.name) if target is not None else None
                moving = self._is_moving(op, target)
                ev = {"op": op.name, "target": tname, "ran": op in anc, "moving": moving, "op_type": op.type}
                kb = f"{id(g)}:{target.name}" if target is not None and hasattr(target, "name") else None
                if kb and kb in self.snap_before:
                    ev["before"] = self._firsts(self.snap_before[kb])
                    ev["after"] = self._firsts(self.snap_after.get(kb))
                self.rec.emit("assign_op", line, **ev)

    def _assign_target(self, op: Any) -> Any:
        try:
            t = op.inputs[0]
            for _ in range(8):
                if (
                    t.op.type
                    in ("Identity", "ReadVariableOp", "Switch", "RefSwitch", "Enter", "RefEnter", "RefIdentity")
                    and t.op.inputs
                ):
                    t = t.op.inputs[0]
                else:
                    break
            return t.op.outputs[0] if t.op.outputs else t
        except Exception:
            return None

    def _is_restore_assign(self, op: Any) -> bool:
        try:
            return any(t.op.type in ("RestoreV2", "Restore", "RestoreSlice") for t in op.inputs[1:]) or any(
                t.op.type == "Identity" and t.op.inputs and t.op.inputs[0].op.type in ("RestoreV2", "Restore")
                for t in op.inputs[1:]
            )
        except Exception:
            return False

    def _is_moving(self, op: Any, target: Any) -> bool:
        name = (getattr(target, "name", "") or "").lower()
        if any(k in name for k in ("moving", "running", "pop_", "ema", "average")):
            return True
        # v * decay + x * (1 - decay): the new value reads the target and multiplies
        try:
            tgt_op = target.op
            value = op.inputs[1].op
            seen = G.bfs([value], lambda o: [t.op for t in o.inputs], limit=40)
            has_mul = any(o.type == "Mul" for o in seen)
            reads = tgt_op in seen
            return bool(has_mul and reads)
        except Exception:
            return False

    def _final_update_ops(self) -> None:
        view = self.view()
        for op, info in self.train_ops.items():
            g = op.graph
            try:
                coll = list(g.get_collection("update_ops"))
            except Exception:
                coll = []
            uops = [u if hasattr(u, "control_inputs") else getattr(u, "op", None) for u in coll]
            uops = [u for u in uops if u is not None]
            anc = G.ancestors(view, [op], control=True)
            all_anc = all(u in anc for u in uops)
            together = None
            fsets = [s for s in self.fetch_sets.get(g, ()) if op in s]
            if fsets:
                together = True
                for s in fsets:
                    a = anc if s == frozenset([op]) else G.ancestors(view, s, control=True)
                    if not all(u in a for u in uops):
                        together = False
                        break
            self.rec.emit(
                "update_ops",
                info["line"],
                key=("update_ops", op.name),
                train_op=op.name,
                update_ops=[u.name for u in uops],
                ancestors=bool(all_anc),
                fetched_together=together,
                fetched=bool(fsets),
                api=info["api"],
            )

    def _final_logs(self) -> None:
        for g in self._graphs():
            try:
                if not self._is_func_graph(g):
                    self._scan_graph_for_logs(g)
            except Exception:
                pass
