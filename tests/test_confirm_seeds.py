"""``--confirm`` end to end with real TensorFlow: the five seeds, their fixed versions, a refuted case.

ONE ``verdicts.confirm()`` call traces everything (``jobs=2``; each child costs ~5 s of
``import tensorflow``): the seeds and their fixed versions with ``confirm_all`` (so the
trace-only TFG105 is discovered), a Dense-only model that TFG101 flags statically but that
the trace refutes, and two probe exercises (an eager tape and a TF1 graph, each with one
blocked path per non-differentiable op, a disconnected variable, an unclipped log of a
softmax...) whose events are checked directly.
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest
from conftest import requires_tf

from tflint_grad.engine import lint_bytes
from tflint_grad.settings import Settings

pytestmark = [pytest.mark.tf, requires_tf]

SEEDS = Path(__file__).resolve().parent.parent / "examples" / "seeds"
NAMES = [
    "000_bn_global_variables.py",
    "001_tiny_init_relu.py",
    "002_rnn_state_grads.py",
    "003_unrun_assign_bn.py",
    "004_bn_gradient_tape.py",
]

# The model is picked from a list, so the static pass cannot see that it holds no non-trainable
# variable: TFG101 is a low-confidence candidate (linted with --min-confidence low below).
REFUTED = """\
import numpy as np
import tensorflow as tf

model = [tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(4, activation="relu"), tf.keras.layers.Dense(1)])][0]
opt = tf.keras.optimizers.Adam(0.01)
for i in range(100):
    x = np.random.randn(8, 3).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x) - 1.0))
    grads = tape.gradient(loss, model.variables)
    opt.apply_gradients(zip(grads, model.variables))
"""

EAGER = """\
import numpy as np
import tensorflow as tf

np.random.seed(0)
inp = tf.keras.Input((4,))
h = tf.keras.layers.Dense(8, activation="relu", name="d1")(inp)
unused = tf.keras.layers.Dense(3, name="unused")
out = tf.keras.layers.Dense(2, name="d2")(h)
model = tf.keras.Model(inp, out)
q = tf.Variable(tf.ones((4, 2)), name="q")
s = tf.Variable(tf.ones((4, 2)), name="s")
opt = tf.keras.optimizers.SGD(0.01)
for step in range(100):
    x = np.random.randn(16, 4).astype("float32")
    with tf.GradientTape() as tape:
        y = model(x, training=True)
        _ = unused(x)
        k = tf.cast(tf.argmax(tf.matmul(x, q), axis=1), tf.float32)
        z = tf.sign(tf.matmul(x, s))
        loss = -tf.reduce_mean(tf.math.log(tf.nn.softmax(y))) + tf.reduce_mean(k) + tf.reduce_mean(z)
    variables = model.trainable_variables + unused.trainable_variables + [q, s]
    grads = tape.gradient(loss, variables)
    opt.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
"""

GRAPH = """\
import numpy as np
import tensorflow as tf

x = tf.placeholder(tf.float32, [None, 4])
y = tf.placeholder(tf.float32, [None, 3])
early = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
h = tf.layers.dense(x, 8)
h = tf.nn.relu(tf.layers.batch_normalization(h, training=True))
probs = tf.nn.softmax(tf.layers.dense(h, 3))
loss = -tf.reduce_mean(y * tf.log(probs))
loss += tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=probs))
w2 = tf.get_variable("w2", [4, 3])
loss += tf.reduce_mean(tf.cast(tf.argmax(tf.matmul(x, w2), 1), tf.float32))
w3 = tf.get_variable("w3", [4, 3])
loss += tf.reduce_mean(tf.sign(tf.matmul(x, w3)))
loss += 0.1 * tf.reduce_mean(tf.sqrt(tf.reduce_sum(tf.square(h - 1.0), 1)))
opt = tf.train.AdamOptimizer(0.01)
gvs = opt.compute_gradients(loss)
try:
    gvs = [(tf.clip_by_value(g, -1., 1.), v) for g, v in gvs]
except ValueError:
    gvs = [(g, v) for g, v in gvs if g is not None]
with tf.control_dependencies(early):
    train = opt.apply_gradients(gvs)
sess = tf.Session()
sess.run(tf.global_variables_initializer())
for i in range(100):
    sess.run([train, loss], {x: np.random.randn(16, 4), y: np.eye(3)[np.random.randint(0, 3, 16)]})
"""


def _line(text: str, needle: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


def _trace_all(tmp: Path) -> dict:
    """lint + ONE confirm() over every case; returns JSON-able findings and traces per case."""
    from tflint_grad.settings import TraceSettings
    from tflint_grad.verdicts import confirm

    cases = {}
    for name in NAMES:
        cases[f"seed/{name}"] = SEEDS / name
        cases[f"fixed/{name}"] = SEEDS / "fixed" / name
    for name, text in (("refuted.py", REFUTED), ("eager.py", EAGER), ("graph.py", GRAPH)):
        (tmp / name).write_text(textwrap.dedent(text))
        cases[name] = tmp / name
    low = Settings.default()
    low.min_confidence = "low"
    results = {
        key: lint_bytes(path.read_bytes(), str(path), low if key == "refuted.py" else None)
        for key, path in cases.items()
    }
    for key, r in results.items():
        assert not r.errors, (key, r.errors)
    traces: dict = {}
    warnings = confirm(
        list(results.values()),
        TraceSettings(steps=5, jobs=2, cache=False, confirm_all=True, timeout=300),
        traces=traces,
    )
    out = {"warnings": warnings, "cases": {}}
    for key, path in cases.items():
        t = traces.get(str(path))
        out["cases"][key] = {
            "findings": [dict(f.to_dict(), data=f.data) for f in results[key].findings],
            "trace": t.to_dict() if t is not None else None,
        }
    return out


@pytest.fixture(scope="session")
def traced(tmp_path_factory):
    """Traced once per test session, also under pytest-xdist (-n 2): the first worker traces,
    the others wait on a file lock and read its result."""
    import json

    from filelock import FileLock

    from tflint_grad.finding import Finding
    from tflint_grad.tracer.report import TraceResult

    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent  # the same for every worker of this run
    else:
        shared = tmp_path_factory.mktemp("confirm-shared")
    data_file = shared / "confirm_seeds.json"
    with FileLock(str(shared / "confirm_seeds.lock")):
        if data_file.exists():
            data = json.loads(data_file.read_text())
        else:
            data = _trace_all(tmp_path_factory.mktemp("confirm"))
            data_file.write_text(json.dumps(data))
    findings = {k: [Finding.from_dict(d) for d in v["findings"]] for k, v in data["cases"].items()}
    traces = {
        k: TraceResult.from_dict(v["trace"]) if v["trace"] is not None else None for k, v in data["cases"].items()
    }
    return findings, traces, data["warnings"]


def _findings(traced, key):
    findings, traces, _ = traced
    return findings[key], traces[key]


def _one(findings, code, line=None):
    hits = [f for f in findings if f.code == code and (line is None or f.line == line)]
    assert len(hits) == 1, [(f.code, f.line, f.verdict, f.evidence) for f in findings]
    return hits[0]


def _describe(findings):
    return [(f.code, f.line, f.verdict, f.evidence) for f in findings]


def test_every_seed_ran_and_every_finding_is_confirmed(traced):
    for name in NAMES:
        findings, trace = _findings(traced, f"seed/{name}")
        assert trace is not None and trace.ran, (name, trace and trace.reason)
        assert findings, name
        for f in findings:
            assert f.verdict == "confirmed", (name, _describe(findings))
            assert f.evidence


def test_seed_000_none_gradients_named(traced):
    findings, trace = _findings(traced, "seed/000_bn_global_variables.py")
    assert trace.status == "stopped" and trace.steps == 5
    f101 = _one(findings, "TFG101", 32)
    assert "moving_mean" in f101.evidence and "moving_variance" in f101.evidence
    f105 = _one(findings, "TFG105", 32)  # discovered by the trace (confirm_all)
    # the leftover Keras BN layer's gamma/beta: no path to the loss (distinct from "blocked")
    assert "layer_1/batch_normalization/gamma" in f105.evidence
    assert "layer_1/batch_normalization/beta" in f105.evidence
    assert "no path" in f105.evidence and "normalizer_actor_layer1/gamma" not in f105.evidence
    (call,) = trace.events_of("gradient_call")
    grads = {v["name"]: v["grad"] for v in call["variables"]}
    assert sum(g == "none" for g in grads.values()) == 6 and len(grads) == 11
    assert call["blocked"] == []
    (apply,) = trace.events_of("apply_gradients")
    assert len(apply["none"]) == 6
    # the tf.layers BN updates run (under control_dependencies); the leftover Keras BN's never do
    stats = {e["layer"].rsplit("/", 1)[-1]: e for e in trace.events_of("moving_stats")}
    assert stats["normalizer_actor_layer1"]["changed"] is True
    assert stats["batch_normalization"]["changed"] is False
    (uo,) = trace.events_of("update_ops")
    assert uo["ancestors"] is True and len(uo["update_ops"]) == 2


def test_seed_001_vanishing_first_layer_and_counterfactual(traced):
    findings, trace = _findings(traced, "seed/001_tiny_init_relu.py")
    f = _one(findings, "TFG301", 8)
    assert "first-layer gradient norm grows" in f.evidence
    (ev,) = trace.events_of("layer_grad_norms")
    norms = {n["variable"]: n["norm"] for n in ev["norms"]}
    cf = {n["variable"]: n["norm"] for n in ev["counterfactual"]}
    assert list(norms) == ["W", "W1", "W2"]
    assert norms["W"] < 1e-4 and 1e-4 < norms["W2"] < 1e-1  # ~1e-6..1e-5 vs ~1e-3
    assert norms["W2"] / norms["W"] > 100
    assert cf["W"] >= 100 * norms["W"] and ev["first_ratio"] >= 100
    assert {x["variable"]: x["redraw"] for x in ev["flagged"]} == {"W": "he", "W1": "he", "W2": "glorot"}
    inits = {e["variable"]: e for e in trace.events_of("initializer")}
    assert set(inits) == {"W", "W1", "W2"} and all(e["init_line"] == 8 for e in inits.values())
    assert all(5e-4 < e["std"] < 2e-3 for e in inits.values())
    assert [e["line"] for e in inits.values()] == [12, 15, 18]
    # the script computes the same gradients it would without the probes: restored weights
    (call,) = trace.events_of("gradient_call")
    assert call["variables"][0]["norm"] < 1e-4


def test_seed_002_output_layer_disconnected_from_the_state(traced):
    findings, trace = _findings(traced, "seed/002_rnn_state_grads.py")
    assert trace.status == "finished"
    f = _one(findings, "TFG105", 70)
    assert "output/dense/kernel" in f.evidence and "output/dense/bias" in f.evidence
    (call,) = trace.events_of("gradient_call")
    assert call["disconnected"] == ["output/dense/kernel", "output/dense/bias"]
    assert [v["name"] for v in call["variables"] if v["grad"] == "none"] == call["disconnected"]


def test_seed_003_assign_ops_never_run(traced):
    findings, trace = _findings(traced, "seed/003_unrun_assign_bn.py")
    for line, value in ((19, "`self.pop_mean` stays [0.0]"), (20, "`self.pop_var` stays [1.0]")):
        f = _one(findings, "TFG203", line)
        assert "never ran" in f.evidence
        assert f"{value} after 5 step(s)" in f.evidence, f.evidence  # the statistic stays put
    ops = {e["line"]: e for e in trace.events_of("assign_op")}
    assert ops[19]["ran"] is False and ops[20]["ran"] is False
    assert ops[19]["moving"] and ops[19]["before"] == ops[19]["after"] == [0.0]
    assert ops[20]["before"] == ops[20]["after"] == [1.0]


def test_seed_004_inference_mode_in_the_tape(traced):
    findings, trace = _findings(traced, "seed/004_bn_gradient_tape.py")
    f201 = _one(findings, "TFG201", 17)
    assert "training=None" in f201.evidence and "in the tape" in f201.evidence
    assert "[0.0] -> [0.0] (unchanged)" in f201.evidence
    f101 = _one(findings, "TFG101", 19)
    assert re.search(r"gradient is None for .*moving_mean, .*moving_variance", f101.evidence)
    (stats,) = trace.events_of("moving_stats")
    assert stats["before"] == stats["after"] == {"moving_mean": [0.0], "moving_variance": [1.0]}
    (call,) = trace.events_of("gradient_call")
    assert call["count"] == 5
    assert [v["grad"] for v in call["variables"]] == ["ok", "ok", "none", "none"]
    assert abs(call["variables"][0]["norm"] - 9550.66) < 1  # NOTES-TF 4(a)
    assert call["unwatched"] == [
        "sequential/batch_normalization/moving_mean",
        "sequential/batch_normalization/moving_variance",
    ]


def test_fixed_seeds_have_no_confirmed_findings(traced):
    for name in NAMES:
        findings, trace = _findings(traced, f"fixed/{name}")
        assert trace is not None and trace.ran, (name, trace and trace.reason)
        assert not [f for f in findings if f.verdict == "confirmed"], (name, _describe(findings))


def test_dense_only_model_variables_is_refuted(traced):
    findings, _ = _findings(traced, "refuted.py")
    f = _one(findings, "TFG101", 10)
    assert f.verdict == "refuted" and "all 4 variables" in f.evidence
    assert not [x for x in findings if x.verdict == "confirmed"], _describe(findings)


def test_eager_tape_blocked_vs_disconnected(traced):
    _, trace = _findings(traced, "eager.py")
    (call,) = trace.events_of("gradient_call")
    grads = {v["name"]: v["grad"] for v in call["variables"]}
    assert grads["q"] == "none" and grads["s"] == "zero" and grads["unused/kernel"] == "none"
    blocked = {b["variable"]: b for b in call["blocked"]}
    assert blocked["q"]["op_type"] == "ArgMax" and blocked["q"]["line"] == _line(EAGER, "tf.argmax")
    assert blocked["s"]["op_type"] == "Sign" and blocked["s"]["line"] == _line(EAGER, "tf.sign")
    assert call["disconnected"] == ["unused/kernel", "unused/bias"]
    (log,) = trace.events_of("log_input")
    assert log["input_op_type"] == "Softmax" and log["clipped"] is False and log["line"] == _line(EAGER, "math.log")


def test_graph_update_ops_logs_logits_clip(traced):
    findings, trace = _findings(traced, "graph.py")
    (call,) = trace.events_of("gradient_call")
    blocked = {b["variable"]: b for b in call["blocked"]}
    assert blocked["w2"]["op_type"] == "ArgMax" and blocked["w2"]["line"] == _line(GRAPH, "tf.argmax")
    assert blocked["w3"]["op_type"] == "Sign" and blocked["w3"]["line"] == _line(GRAPH, "tf.sign")
    (uo,) = trace.events_of("update_ops")
    assert uo["ancestors"] is False and uo["fetched_together"] is False and len(uo["update_ops"]) == 2
    (col,) = trace.events_of("update_ops_collected")
    assert (col["line"], col["size"], col["size_at_first_step"]) == (_line(GRAPH, "early ="), 0, 2)
    (stats,) = trace.events_of("moving_stats")
    assert stats["changed"] is False
    (clip,) = trace.events_of("clip_none")
    assert clip["line"] == _line(GRAPH, "clip_by_value")
    (log,) = trace.events_of("log_input")
    assert log["input_op_type"] == "Softmax" and not log["clipped"] and log["line"] == _line(GRAPH, "tf.log(")
    (lg,) = trace.events_of("logits_input")
    assert lg["input_op_type"] == "Softmax" and lg["line"] == _line(GRAPH, "with_logits_v2")
    (sq,) = trace.events_of("sqrt_input")  # TFG403's structural evidence in a TF1 graph (no values)
    assert sq["line"] == _line(GRAPH, "tf.sqrt(") and sq["chain"] == ["Sum", "Square", "Sub"]
    assert sq["squares"] is True and sq["clipped"] is False and "zeros" not in sq
    f403 = _one(findings, "TFG403", _line(GRAPH, "tf.sqrt("))
    assert f403.verdict == "confirmed" and "Sqrt ← Sum ← Square ← Sub" in f403.evidence
    # whatever the static rules flagged here, the trace decided it
    for f in findings:
        assert f.verdict in ("confirmed", "refuted"), _describe(findings)


def test_every_recorded_event_follows_the_contract(traced):
    """The real probes emit exactly the kinds and fields tracer/events.py declares."""
    from tflint_grad.tracer.events import problems

    _, traces, _ = traced
    for key, trace in traces.items():
        if trace is None:
            continue
        for ev in trace.events:
            assert not problems(ev), (key, problems(ev), ev.get("kind"))
