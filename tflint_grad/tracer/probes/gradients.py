"""GradientTape, ``tape.gradient`` / ``tf.gradients`` calls: classification of None/zero gradients, NaN/Inf, per-layer gradient norms and the TFG301 counterfactual."""

from __future__ import annotations

from typing import Any

from tflint_grad.tracer import graph as G
from tflint_grad.tracer.probes.base import (
    _MAX_CAPTURE_OPS,
    _MAX_CAPTURES,
    _STAT_SAMPLE,
    ProbeContext,
    _debug,
    _fan,
    _GradCall,
    _same_face,
    _shape,
    probe,
)


class GradientProbes(ProbeContext):
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
    @probe("gradient_call")
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

    @probe("gradient_call")
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
    @probe("gradient_call")
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
            self._scan_eager_logs(view, target_nodes)

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

    @probe("nonfinite")
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

    @probe("layer_grad_norms")
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
