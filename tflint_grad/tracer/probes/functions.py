"""Wrapped functions: clip functions (None gradients), ``*_with_logits`` losses (logits inputs), ``get_collection(UPDATE_OPS)``."""

from __future__ import annotations

from typing import Any

from tflint_grad.tracer import graph as G
from tflint_grad.tracer.probes.base import ProbeContext, _debug, _same_face, probe


class FunctionProbes(ProbeContext):
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

    @probe("update_ops_collected")
    def _on_update_ops_collected(self, result: Any, graph: Any = None) -> None:
        if graph is None:
            graph = self.ops.get_default_graph()
        line = self.line()
        ev = self.rec.emit(
            "update_ops_collected", line, key="update_ops", size=len(result or ()), size_at_first_step=None
        )
        if ev.get("count", 1) == 1:
            self.collected.append((ev, graph))

    @probe("logits_input")
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
