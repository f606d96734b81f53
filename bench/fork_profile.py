"""Is it safe and cheap to fork a trace from a process that imported TensorFlow? (bench/PROFILE.md)

``python bench/fork_profile.py [--forks N]`` prints a Markdown report. Every experiment runs in a
fresh Python (``-P``, the tracer's environment: ``TF_CPP_MIN_LOG_LEVEL=2``, thread variables as
for one trace on this machine) that imports TensorFlow and then forks children; a child that
does not answer within ``CHILD_TIMEOUT`` seconds is reported as hung and killed.

1. what ``import tensorflow`` leaves behind: time, threads (and whose), eager context, whether
   ``tf.keras`` is resolved, what ``TF_USE_LEGACY_KERAS`` changed at import;
2. the fork itself: ``os.fork()`` in the parent, fork to first line in the child, parent RSS;
3. children alternating a Keras 3 model (BatchNormalization, GradientTape, 3 steps) and a TF1
   graph (v2 behaviour disabled, ``TF_USE_LEGACY_KERAS=1``, ``tf.compat.v1.layers.dense``,
   ``Session``), N forks: times, hangs, which Keras each got;
4. the unsafe points: a parent that ran one eager op before forking; a parent that resolved
   ``tf.keras`` (Keras 3) before a TF1 child sets ``TF_USE_LEGACY_KERAS``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CHILD_TIMEOUT = 30.0

EXPERIMENT = r"""
import json, os, signal, sys, time

def threads():
    out = []
    for tid in sorted(os.listdir("/proc/self/task")):
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                out.append(fh.read().split(") ")[0].split(" (")[1])
        except OSError:
            pass
    return out

def rss_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

t0 = time.monotonic()
import tensorflow as tf
report = {"import_s": round(time.monotonic() - t0, 2), "threads": threads()}
from tensorflow.python.eager import context
report["eager_context"] = context.context()._context_handle is not None
report["tf_keras_resolved"] = bool(tf.__dict__["keras"].__dict__.get("_tfll_initialized"))
report["keras_dirs_on_tf_path"] = [p.split("site-packages/")[-1] for p in tf.__path__ if "keras" in p]
report["keras_modules_imported"] = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("keras", "tf_keras")})
report["rss_mb"] = round(rss_mb())

def keras3():
    import numpy as np
    keras = tf.keras
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.BatchNormalization(), keras.layers.Dense(1)])
    opt = keras.optimizers.SGD(0.01)
    x = np.random.rand(16, 4).astype("float32")
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(m(x, training=True) ** 2)
        g = tape.gradient(loss, m.trainable_variables)
        opt.apply_gradients(zip(g, m.trainable_variables))
    return tf.keras.layers.Dense.__module__.split(".")[0]

def tf1():
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    import tensorflow.compat.v1 as v1
    v1.disable_v2_behavior()
    x = v1.placeholder(tf.float32, [None, 4])
    loss = v1.reduce_mean(v1.layers.dense(x, 1) ** 2)
    op = v1.train.GradientDescentOptimizer(0.1).minimize(loss)
    with v1.Session() as s:
        s.run(v1.global_variables_initializer())
        for _ in range(3):
            s.run(op, {x: np.ones((2, 4))})
    return tf.keras.layers.Dense.__module__.split(".")[0]

def one_op():
    return float(tf.reduce_sum(tf.ones((64, 64)) @ tf.ones((64, 64))))

def big_op():  # large enough for TensorFlow to split it over its intra-op thread pool
    return float(tf.reduce_sum(tf.ones((1024, 1024)) @ tf.ones((1024, 1024))))

def fork(fn, timeout):
    r, w = os.pipe()
    t = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        started = time.monotonic() - t
        try:
            res = {"ok": True, "value": fn()}
        except BaseException as e:
            res = {"ok": False, "value": f"{type(e).__name__}: {e}"[:200]}
        res.update(start_ms=round(started * 1000, 1), body_s=round(time.monotonic() - t - started, 3))
        os.write(w, json.dumps(res).encode())
        os._exit(0)
    fork_ms = (time.monotonic() - t) * 1000
    os.close(w)
    import select
    data, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([r], [], [], 0.2)
        if ready:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
    os.close(r)
    hung = not data
    if hung:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    res = json.loads(data) if data else {"ok": False, "value": f"no answer within {timeout:g} s (hung)"}
    res.update(fork_ms=round(fork_ms, 1), total_s=round(time.monotonic() - t, 3), hung=hung, fn=fn.__name__)
    return res

MODE = sys.argv[1]
N = int(sys.argv[2])
TIMEOUT = float(sys.argv[3])
if MODE == "safe":
    report["children"] = [fork(keras3 if i % 2 == 0 else tf1, TIMEOUT) for i in range(N)]
    report["parent_after"] = {"threads": threads(), "eager_context": context.context()._context_handle is not None}
elif MODE == "after_op":
    one_op()
    report["parent_threads_after_op"] = len(threads())
    report["children"] = [fork(one_op, TIMEOUT), fork(big_op, TIMEOUT), fork(keras3, TIMEOUT)]
elif MODE == "keras_resolved":
    tf.keras.layers  # resolves tf.keras to Keras 3 in the parent
    report["children"] = [fork(tf1, TIMEOUT)]
print("REPORT " + json.dumps(report))
"""


def run(mode: str, forks: int) -> dict:
    sys.path.insert(0, ROOT)
    from tflint_grad.tracer import sandbox

    env = sandbox.child_env("/tmp", legacy_keras=False, threads=max(1, os.cpu_count() or 1), extra_pythonpath=ROOT)
    env.pop("TFLINT_GRAD_PARENT", None)
    out = subprocess.run(
        [sys.executable, "-P", "-c", EXPERIMENT, mode, str(forks), str(CHILD_TIMEOUT)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("REPORT "):
            return json.loads(line[7:])
    raise SystemExit(f"{mode}: no report\n{out.stderr[-3000:]}")


def summary(children: list[dict]) -> str:
    lines = [
        "| child | fork() in the parent | fork → child's first line | child's work | answer |",
        "|---|---|---|---|---|",
    ]
    for i, c in enumerate(children):
        lines.append(
            f"| {i + 1} {c['fn']} | {c['fork_ms']} ms | {c.get('start_ms', '–')} ms | "
            f"{c.get('body_s', '–')} s | {'ok: ' if c['ok'] else ''}{c['value']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forks", type=int, default=10)
    args = ap.parse_args()
    safe = run("safe", args.forks)
    after_op = run("after_op", 0)
    resolved = run("keras_resolved", 0)
    print(
        textwrap.dedent(f"""\
        ### After `import tensorflow` (fresh process, tracer environment)

        - import: {safe["import_s"]} s, RSS {safe["rss_mb"]} MB
        - threads: {len(safe["threads"])} ({", ".join(safe["threads"])})
        - eager context created: {safe["eager_context"]}; `tf.keras` resolved: {safe["tf_keras_resolved"]}
        - Keras packages already imported: {", ".join(safe["keras_modules_imported"]) or "none"}
        - Keras folders TensorFlow put on `tensorflow.__path__` at import: {", ".join(safe["keras_dirs_on_tf_path"])}

        ### {args.forks} children forked in turn (Keras 3, TF1 + legacy Keras, ...)

        {{children}}

        Parent afterwards: {len(safe["parent_after"]["threads"])} threads, eager context created: {safe["parent_after"]["eager_context"]}

        ### Unsafe: the parent ran one eager op before forking ({after_op["parent_threads_after_op"]} threads after it)

        {{after_op}}

        ### Unsafe: the parent resolved `tf.keras` (Keras 3) before a TF1 child set `TF_USE_LEGACY_KERAS=1`

        {{resolved}}
        """).format(
            children=summary(safe["children"]),
            after_op=summary(after_op["children"]),
            resolved=summary(resolved["children"]),
        )
    )


if __name__ == "__main__":
    main()
