"""TF1: optimizers (``compute_gradients``/``minimize``/``apply_gradients``) and ``Session.run`` (piggy-backed fetches, snapshots, first train step, TF1 initializers)."""

from __future__ import annotations

import weakref
from typing import Any

from tflint_grad.tracer import graph as G
from tflint_grad.tracer.probes.base import (
    _MAX_LIST_EVENTS,
    _STAT_SAMPLE,
    ProbeContext,
    _debug,
    _fan,
    _shape,
    _short,
    probe,
)


class SessionProbes(ProbeContext):
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
                    # one event per (line, class, step): instances created within one step (graph
                    # building, one per tower) are told apart from one per training step
                    P.rec.emit(
                        "optimizer_created",
                        line,
                        key=(type(opt).__name__, P.rec.step),
                        **{"class": type(opt).__name__},
                    )
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

    @probe("apply_gradients")
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
