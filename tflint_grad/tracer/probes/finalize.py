"""End of run: moving statistics, assign ops, update ops, log inputs of TF1 graphs."""

from __future__ import annotations

from typing import Any

from tflint_grad.tracer import graph as G
from tflint_grad.tracer.probes.base import _FIRST_VALUES, ProbeContext, _debug, _short, probe


class FinalizeProbes(ProbeContext):
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

    @probe("moving_stats")
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

    @probe("assign_op")
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

    @probe("update_ops")
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

    @probe("log_input")
    def _final_logs(self) -> None:
        for g in self._graphs():
            try:
                if not self._is_func_graph(g):
                    self._scan_graph_for_logs(g)
            except Exception:
                pass
