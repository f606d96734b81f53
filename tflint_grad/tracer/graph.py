"""Graph walks the probes use (runs in the traced child; imports nothing from TensorFlow).

Two views of a dataflow graph share one set of algorithms:

- :class:`TFGraphView` over real ``tf.Operation`` objects (TF1 graphs, ``tf.function``
  FuncGraphs): edges are ``op.inputs`` (+ ``op.control_inputs`` for "does it run"
  questions) and ``tensor.consumers()``; the user line comes from ``op.traceback``.
- :class:`EagerView` over the eager ops recorded by an op callback while a
  ``GradientTape`` was recording (nodes are record indices, tensors are keyed by the
  EagerTensor ``_id``; the user line was taken from the Python stack when the op ran).

The main question is NOTES-TF 6(b): a variable's gradient is None (or zero) — is there
no path at all from the variable to the target (*disconnected*), or is the path cut by
an op with no / a zero gradient (*blocked*, name the op)? It is answered without adding
ops to the user's graph: the first op on the variable→target path that leaves the float
domain (Cast to int, ArgMax, comparisons...) or whose gradient is None/zero by definition
(StopGradient, Round, Floor, Sign...) is the blocker.
"""

# Graph facts are best effort: an attribute that cannot be read is skipped.

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

# Ops whose registered gradient is None (or that are not differentiable at all).
NONE_GRAD_OPS = frozenset(
    {
        "StopGradient",
        "PreventGradient",
        "ArgMax",
        "ArgMin",
        "Round",
        "Floor",
        "Ceil",
        "Rint",
        "Equal",
        "NotEqual",
        "Greater",
        "GreaterEqual",
        "Less",
        "LessEqual",
        "ApproximateEqual",
        "LogicalAnd",
        "LogicalOr",
        "LogicalNot",
        "IsNan",
        "IsInf",
        "IsFinite",
        "OnesLike",
        "ZerosLike",
        "Shape",
        "ShapeN",
        "Size",
        "Rank",
        "RandomUniformInt",
        "Multinomial",
        "TopKV2",
        "UniqueV2",
        "Unique",
        "Bucketize",
        "FloorDiv",
        "FloorMod",
        "TruncateDiv",
        "HistogramFixedWidth",
        "InTopKV2",
        "InTopK",
        "OneHot",
    }
)
# Ops whose gradient exists but is identically zero.
ZERO_GRAD_OPS = frozenset({"Sign"})
# Ops that only forward a value (skipped when looking at "what feeds X").
PASS_THROUGH = frozenset(
    {"Identity", "Reshape", "ExpandDims", "Squeeze", "IdentityN", "Snapshot", "Enter", "Switch", "Merge"}
)
ASSIGN_OPS = frozenset(
    {
        "Assign",
        "AssignSub",
        "AssignAdd",
        "AssignVariableOp",
        "AssignSubVariableOp",
        "AssignAddVariableOp",
        "ScatterUpdate",
        "ScatterAdd",
        "ScatterSub",
        "ResourceScatterUpdate",
        "ResourceScatterAdd",
    }
)
VARIABLE_OPS = frozenset({"VariableV2", "Variable", "VarHandleOp", "Placeholder"})
RELU_OPS = frozenset({"Relu", "Relu6", "LeakyRelu", "Elu", "Selu"})
# What a Sqrt's radicand is made of (TFG403): squares, the reductions that sum them, guards.
SQUARE_OPS = frozenset({"Square", "SquaredDifference", "Pow"})
REDUCE_OPS = frozenset({"Sum", "Mean"})
GUARD_OPS = frozenset({"ClipByValue", "Maximum"})
ADD_OPS = frozenset({"Add", "AddV2"})
MAX_NODES = 200_000
_SAME: dict[tuple[str, str], bool] = {}


def bfs(start: Iterable[Any], step: Callable[[Any], Iterable[Any]], limit: int = MAX_NODES) -> set:
    seen = set()
    queue = deque()
    for s in start:
        if s not in seen:
            seen.add(s)
            queue.append(s)
    while queue and len(seen) < limit:
        n = queue.popleft()
        for m in step(n):
            if m not in seen:
                seen.add(m)
                queue.append(m)
    return seen


def _is_float(dtype: Any) -> bool:
    try:
        dtype = getattr(dtype, "base_dtype", dtype)
        return bool(dtype.is_floating or dtype.is_complex)
    except Exception:
        return False


# ---------------------------------------------------------------------------------------
# views


class TFGraphView:
    """Nodes are ``tf.Operation``s."""

    def __init__(self, script: str, line_maps: dict | None = None) -> None:
        self.script = os.path.realpath(script)
        self.line_maps = line_maps or None
        self._line_cache: dict[Any, int | None] = {}

    # edges
    def preds(self, op: Any) -> list:
        return [t.op for t in op.inputs]

    def preds_all(self, op: Any) -> list:
        return [t.op for t in op.inputs] + list(op.control_inputs)

    def succs(self, op: Any) -> list:
        out = []
        for t in op.outputs:
            out.extend(t.consumers())
        return out

    # facts
    def op_type(self, op: Any) -> str:
        return op.type

    def name(self, op: Any) -> str:
        return op.name

    def in_edges(self, op: Any) -> list[tuple[Any, Any]]:
        """(producer node, dtype) per data input."""
        return [(t.op, t.dtype) for t in op.inputs]

    def out_dtypes(self, op: Any) -> list:
        return [t.dtype for t in op.outputs]

    def in_tensor(self, op: Any, k: int) -> Any:
        try:
            return op.inputs[k]
        except Exception:
            return None

    def attr(self, op: Any, name: str) -> Any:
        try:
            return op.get_attr(name)
        except Exception:
            return None

    def line(self, op: Any) -> int | None:
        if op in self._line_cache:
            return self._line_cache[op]
        line = op_line(op, self.script, line_maps=self.line_maps)
        self._line_cache[op] = line
        return line


def op_line(op: Any, script: str, outermost: bool = False, line_maps: dict | None = None) -> int | None:
    """The user-script line that created ``op`` (innermost script frame of op.traceback).

    ``line_maps``: AutoGraph-generated file -> {generated line: script line}.
    """
    try:
        frames = list(op.traceback)
    except Exception:
        return None
    found = None
    for fr in frames:  # outermost first
        fn = getattr(fr, "filename", None)
        if fn is None:
            try:
                fn = fr[0]
            except Exception:
                continue
        lineno = getattr(fr, "lineno", None) if hasattr(fr, "lineno") else fr[1]
        ln = None
        same = _SAME.get((fn, script))
        if same is None:
            same = _SAME[(fn, script)] = fn == script or os.path.realpath(fn) == script
        if same:
            ln = lineno
        elif line_maps and fn in line_maps:
            ln = line_maps[fn].get(lineno)
        if ln is not None:
            found = ln
            if outermost:
                return found
    return found


class EagerView:
    """Eager ops recorded while a tape was recording.

    ``records``: list of dicts {"type", "ins": [tensor id], "in_dtypes", "outs": [tensor id],
    "out_dtypes", "attrs", "line"}; ``producer``/``consumers`` are built lazily.
    """

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.producer: dict[int, int] = {}
        self.consumers: dict[int, list[int]] = {}
        for i, r in enumerate(records):
            for t in r["outs"]:
                self.producer[t] = i
            for t in r["ins"]:
                self.consumers.setdefault(t, []).append(i)

    def preds(self, i: int) -> list:
        return [self.producer[t] for t in self.records[i]["ins"] if t in self.producer]

    preds_all = preds

    def succs(self, i: int) -> list:
        out = []
        for t in self.records[i]["outs"]:
            out.extend(self.consumers.get(t, ()))
        return out

    def op_type(self, i: int) -> str:
        return self.records[i]["type"]

    def name(self, i: int) -> str:
        r = self.records[i]
        return r.get("name") or f"{r['type']}_{i}"

    def in_edges(self, i: int) -> list[tuple[Any, Any]]:
        r = self.records[i]
        return [(self.producer.get(t), d) for t, d in zip(r["ins"], r["in_dtypes"])]

    def out_dtypes(self, i: int) -> list:
        return self.records[i]["out_dtypes"]

    def in_tensor(self, i: int, k: int) -> Any:
        ins = self.records[i].get("in_t") or ()
        return ins[k] if k < len(ins) else None

    def attr(self, i: int, name: str) -> Any:
        attrs = self.records[i].get("attrs") or ()
        try:
            for k in range(0, len(attrs) - 1, 2):
                if attrs[k] == name:
                    return attrs[k + 1]
        except Exception:
            pass
        return None

    def line(self, i: int) -> int | None:
        return self.records[i].get("line")

    def consumers_of_tensor(self, tid: int) -> list[int]:
        return list(self.consumers.get(tid, ()))


# ---------------------------------------------------------------------------------------
# algorithms


def blocker_kind(view: Any, node: Any, on_path: set) -> str | None:
    """'none' / 'zero' when ``node`` cuts the gradient along the path, else None."""
    t = view.op_type(node)
    if isinstance(t, bytes):
        t = t.decode()
    if t in ZERO_GRAD_OPS:
        return "zero"
    if t in NONE_GRAD_OPS:
        return "none"
    ins = [(p, d) for p, d in view.in_edges(node) if p is not None and p in on_path]
    float_in = any(_is_float(d) for _, d in ins)
    if t == "Cast":
        dst = view.attr(node, "DstT")
        try:
            from_float = float_in
            if from_float and dst is not None and not _is_float(_as_dtype(dst)):
                return "none"
        except Exception:
            pass
        return None
    outs = view.out_dtypes(node)
    if float_in and outs and not any(_is_float(d) for d in outs):
        return "none"
    return None


def _as_dtype(d: Any) -> Any:
    if hasattr(d, "is_floating"):
        return d
    try:
        from tensorflow.python.framework import dtypes  # already imported in the child

        return dtypes.as_dtype(d)
    except Exception:
        return d


def path_analysis(view: Any, start: Iterable[Any], target: Any, want: str = "none") -> dict[str, Any]:
    """Is ``target`` reachable from ``start`` (data edges)? If so, which op cuts the path.

    Returns {"connected": bool, "blockers": [node]} where blockers are the first ops on
    the path (closest to the variable) of kind ``want`` ('none' or 'zero'; 'any' for both).
    """
    start = [s for s in start if s is not None]
    fwd = bfs(start, view.succs)
    if target not in fwd:
        return {"connected": False, "blockers": []}
    bwd = bfs([target], view.preds)
    on = fwd & bwd
    cands = []
    for n in on:
        if n in start:
            continue
        k = blocker_kind(view, n, on)
        if k is not None and (want == "any" or k == want):
            cands.append(n)
    if len(cands) > 1:
        cset = set(cands)
        first = []
        for c in cands:
            up = bfs([p for p in view.preds(c) if p in on], lambda n: [p for p in view.preds(n) if p in on])
            if not (up & (cset - {c})):
                first.append(c)
        cands = first or cands
    return {"connected": True, "blockers": cands}


def ancestors(view: Any, nodes: Iterable[Any], control: bool = True) -> set:
    return bfs(nodes, view.preds_all if control else view.preds)


def feeding_type(view: Any, node: Any, skip: frozenset = PASS_THROUGH, depth: int = 6) -> tuple[Any, bool]:
    """Walk up the first data input through pass-through and clipping ops.

    Returns (producer node, clipped?) where clipped says a ClipByValue/Maximum/Minimum or an
    add of a constant (epsilon) was crossed.
    """
    clipped = False
    cur = node
    for _ in range(depth):
        edges = [p for p, _d in view.in_edges(cur) if p is not None]
        if not edges:
            return None, clipped
        t = view.op_type(cur)
        if isinstance(t, bytes):
            t = t.decode()
        nxt = edges[0]
        nt = view.op_type(nxt)
        if isinstance(nt, bytes):
            nt = nt.decode()
        if nt in skip:
            cur = nxt
            continue
        if nt in ("ClipByValue", "Maximum", "Minimum"):
            clipped = True
            cur = nxt
            continue
        if nt in ("RealDiv", "Div"):
            # x / reduce_sum(x): Keras' renormalisation of "probabilities" before the log
            ins = [p for p, _d in view.in_edges(nxt) if p is not None]
            if len(ins) == 2 and view.op_type(ins[1]) == "Sum":
                cur = nxt
                continue
        if nt in ("Add", "AddV2", "BiasAdd"):
            # x + eps: one side is a constant
            ins = [p for p, _d in view.in_edges(nxt) if p is not None]
            consts = [p for p in ins if view.op_type(p) == "Const"]
            if consts and len(ins) == 2:
                clipped = True
                cur = nxt
                # continue from the non-constant input
                other = [p for p in ins if p not in consts]
                if other:
                    nt2 = view.op_type(other[0])
                    if isinstance(nt2, bytes):
                        nt2 = nt2.decode()
                    if nt2 in skip or nt2 in ("ClipByValue", "Maximum", "Minimum"):
                        cur = other[0]
                        continue
                    return other[0], clipped
                continue
        return nxt, clipped
    return None, clipped


def complement_source(view: Any, sub: Any) -> tuple[Any, bool] | None:
    """``1 - p`` (a Sub whose first input is a constant): the producer of ``p`` through pass-through
    and clipping ops, and whether a clip was crossed; None when ``sub`` is not such a complement."""
    edges = list(view.in_edges(sub))
    if len(edges) != 2 or edges[1][0] is None or not _is_constant_input(view, sub, 0, edges[0][0]):
        return None
    b = edges[1][0]
    t = _type(view, b)
    if t in PASS_THROUGH or t in ("ClipByValue", "Maximum", "Minimum"):
        prod, clipped = feeding_type(view, b)
        return prod, clipped or t in ("ClipByValue", "Maximum", "Minimum")
    return b, False


def near_activation(view: Any, start: Iterable[Any], depth: int = 4) -> str | None:
    """The first activation-like op within ``depth`` data hops downstream of ``start``."""
    frontier = list(start)
    seen = set(frontier)
    for _ in range(depth):
        nxt = []
        for n in frontier:
            for m in view.succs(n):
                if m in seen:
                    continue
                seen.add(m)
                t = view.op_type(m)
                if isinstance(t, bytes):
                    t = t.decode()
                if t in RELU_OPS:
                    return t
                if t in ("Tanh", "Sigmoid", "Softmax", "Softplus"):
                    return t
                nxt.append(m)
        frontier = nxt
    return None


def _type(view: Any, node: Any) -> str:
    t = view.op_type(node)
    return t.decode() if isinstance(t, bytes) else t


def _is_constant_input(view: Any, node: Any, k: int, producer: Any) -> bool:
    """Input ``k`` of ``node`` is a constant: a Const op (graphs), or, eager, a scalar no recorded op produced."""
    if producer is not None:
        return _type(view, producer) == "Const"
    t = view.in_tensor(node, k) if hasattr(view, "in_tensor") else None
    try:
        return t is not None and len(t.shape) == 0
    except Exception:
        return False


def _is_square(view: Any, node: Any) -> bool:
    t = _type(view, node)
    if t in SQUARE_OPS:
        return True
    if t == "Mul":  # x * x (tf.norm: tensor * conj(tensor))
        ins = [p for p, _d in view.in_edges(node)]
        return len(ins) == 2 and ins[0] is not None and ins[0] == ins[1]
    return False


def sqrt_radicand(view: Any, node: Any, depth: int = 8) -> dict[str, Any] | None:
    """What a ``Sqrt`` takes the root of (TFG403's ``sqrt_input`` event).

    Walks up the data input through pass-through ops and guards (``ClipByValue``/``Maximum``,
    an ``Add`` of a constant: ``x + eps``). Returns None when no op produced the input (eager:
    computed before the tape recorded), else ``{"chain": [op types, nearest first, e.g. Sum,
    Square, Sub], "squares": bool, "clipped": bool}``: ``squares`` when the radicand is a
    Sum/Mean of squares (Square, SquaredDifference, Pow, x*x), a sum of such terms
    (``dx**2 + dy**2``) or a square itself.
    """
    chain: list[str] = []
    clipped = False
    edges = view.in_edges(node)
    cur = edges[0][0] if edges else None
    for _ in range(depth):
        if cur is None:
            break
        t = _type(view, cur)
        ins = [p for p, _d in view.in_edges(cur)]
        if t in PASS_THROUGH:
            cur = ins[0] if ins else None
            continue
        if t in GUARD_OPS or (
            t in ADD_OPS and len(ins) == 2 and any(_is_constant_input(view, cur, k, p) for k, p in enumerate(ins))
        ):
            clipped = True
            chain.append(t)
            rest = [p for k, p in enumerate(ins) if p is not None and not _is_constant_input(view, cur, k, p)]
            cur = rest[0] if rest else None
            continue
        break
    if cur is None:
        return {"chain": chain, "squares": False, "clipped": clipped} if chain else None

    def first_in(n: Any) -> Any:
        for _ in range(depth):
            e = view.in_edges(n)
            p = e[0][0] if e else None
            if p is None or _type(view, p) not in PASS_THROUGH:
                return p
            n = p
        return None

    def square_chain(n: Any) -> list[str] | None:
        """[Square, Sub] when ``n`` is a square (of a difference)."""
        if n is None or not _is_square(view, n):
            return None
        inner = first_in(n)
        return [_type(view, n)] + ([_type(view, inner)] if inner is not None else [])

    t = _type(view, cur)
    chain.append(t)
    squares = False
    sq = square_chain(cur)
    if sq is not None:
        squares = True
        chain.extend(sq[1:])
    elif t in REDUCE_OPS:
        sq = square_chain(first_in(cur))
        if sq is not None:
            squares = True
            chain.extend(sq)
    elif t in ADD_OPS:
        terms = [p for p, _d in view.in_edges(cur)]
        chains = [square_chain(p) for p in terms]
        if terms and all(c is not None for c in chains):
            squares = True
            chain.extend(chains[0])
    return {"chain": chain, "squares": squares, "clipped": clipped}
