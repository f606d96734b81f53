"""Log and Sqrt ops of graphs and eager tapes (TFG401/TFG403 inputs, on the differentiated path or not)."""

from __future__ import annotations

from typing import Any

from tflint_grad.tracer import graph as G
from tflint_grad.tracer.probes.base import _MAX_LIST_EVENTS, ProbeContext, _debug, probe


class LogProbes(ProbeContext):
    # ===================================================================================
    # log inputs
    # ===================================================================================
    def _differentiated_in_graph(self, g: Any, view: Any) -> set | None:
        """Ops of graph ``g`` that some gradient call differentiated through (ancestors of its
        targets); None when no gradient call targeted this graph (nothing observed)."""
        target_ops = []
        for site in list(self.grad_sites.values()):
            if site is None or site.graph is not g:
                continue
            for t in site.targets:
                if getattr(t, "graph", None) is g:
                    target_ops.append(t.op)
        if not target_ops:
            return None
        return G.ancestors(view, target_ops, control=False)

    @staticmethod
    def _log_source(view: Any, prod: Any, clipped: bool) -> tuple[str, bool, bool]:
        """(op type feeding the Log, clipped, complement): ``log(1 - p)`` is judged by ``p``'s producer."""
        kind = view.op_type(prod)
        if kind == "Sub":
            comp = G.complement_source(view, prod)
            if comp is not None and comp[0] is not None:
                return view.op_type(comp[0]), clipped or comp[1], True
        return kind, clipped, False

    @staticmethod
    def _mark_differentiated(ev: dict, on_path: set | None, node: Any) -> None:
        """``differentiated``: the op lies on the path of a gradient the script took (True wins
        over an earlier False); absent when no gradient target was known."""
        if on_path is None:
            return
        ev["differentiated"] = bool(ev.get("differentiated")) or node in on_path

    @probe("log_input")
    def _scan_graph_for_logs(self, g: Any) -> None:
        if g is None or id(g) in self._logs_scanned:
            return
        self._logs_scanned.add(id(g))
        view = self.view()
        try:
            on_path = self._differentiated_in_graph(g, view)
        except Exception:
            _debug("differentiated ops")
            on_path = None
        n = n_sqrt = 0
        for op in g.get_operations():
            if op.type == "Sqrt" and n_sqrt < _MAX_LIST_EVENTS:
                n_sqrt += self._emit_sqrt(view, op, view.line(op), op.name, on_path=on_path)
                continue
            if op.type not in ("Log", "Log1p") or n >= _MAX_LIST_EVENTS:
                continue
            line = view.line(op)
            if line is None:
                continue
            prod, clipped = G.feeding_type(view, op)
            if prod is None:
                continue
            kind, clipped, complement = self._log_source(view, prod, clipped)
            ev = self.rec.emit(
                "log_input",
                line,
                key=("log", op.type, kind, clipped, complement),
                op=op.name,
                input_op_type=kind,
                clipped=clipped,
                **({"complement": True} if complement else {}),
            )
            self._mark_differentiated(ev, on_path, op)
            n += 1

    @probe("log_input")
    def _scan_eager_logs(self, view: Any, target_nodes: list | None = None) -> None:
        on_path = G.ancestors(view, target_nodes, control=False) if target_nodes else None
        n_sqrt = 0
        for i, r in enumerate(view.records):
            if r["type"] == "Sqrt" and n_sqrt < _MAX_LIST_EVENTS:
                n_sqrt += self._emit_sqrt(view, i, r.get("line"), f"Sqrt_{i}", r.get("in_t") or (), on_path=on_path)
                continue
            if r["type"] not in ("Log", "Log1p"):
                continue
            prod, clipped = G.feeding_type(view, i)
            if prod is None:
                continue
            kind, clipped, complement = self._log_source(view, prod, clipped)
            ev = self.rec.emit(
                "log_input",
                r.get("line"),
                key=("log", r["type"], kind, clipped, complement),
                op=r["type"],
                input_op_type=kind,
                clipped=clipped,
                **({"complement": True} if complement else {}),
            )
            self._mark_differentiated(ev, on_path, i)

    def _emit_sqrt(
        self, view: Any, node: Any, line: int | None, name: str, ins: Any = (), on_path: set | None = None
    ) -> int:
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
            self._mark_differentiated(ev, on_path, node)
            if extra and ("zeros" not in ev or (extra["zeros"] and not ev["zeros"])):
                ev.update(extra)  # the first observation, or the first one with a zero
                if extra["zeros"]:
                    ev["zero_step"] = self.rec.step
            return 1
        except Exception:
            _debug("sqrt input")
            return 0
