"""The warm tracer: one process imports TensorFlow once, every trace runs in a fresh child forked
from it, with the cold path's confinement, and gives the verdicts a cold trace gives.

The hostile suite runs warm and cold in ``test_tracer_sandbox.py`` (the same expectations both
ways); here: TF1 and Keras 3 scripts from one worker, the examples warm against cold, the
fallback when the worker cannot start.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, requires_tf

from tflint_grad import verdicts
from tflint_grad.engine import lint_bytes
from tflint_grad.settings import Settings, TraceSettings
from tflint_grad.tracer import warm
from tflint_grad.tracer.report import TraceResult

pytestmark = [pytest.mark.tf, requires_tf]

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "warm"
# Low-confidence candidates are linted as findings here, so that their verdicts are compared too
# (the TF1 fixture's `global_variables()` list creates no visible non-trainable variable).
LINT = Settings(Settings.default().enabled, min_confidence="low")


def _confirm(paths: list[Path], options: TraceSettings, pool: warm.WarmPool | None = None):
    results = [lint_bytes(p.read_bytes(), str(p), LINT) for p in paths]
    traces: dict[str, TraceResult] = {}
    warnings = verdicts.confirm(results, options, traces=traces, pool=pool)
    return results, traces, warnings


def _verdicts(result) -> list[tuple]:
    return [(f.code, f.line, f.verdict, f.evidence) for f in result.findings]


def test_tf1_and_keras3_scripts_from_one_worker(tmp_path):
    """Keras 3, then TF1 with legacy Keras (TF_USE_LEGACY_KERAS), then Keras 3 again, from the same
    zygote: each script checks that ``from tensorflow.keras import layers`` is its own Keras and
    the Keras 3 one that eager execution is on (nothing of the TF1 trace leaked)."""
    for name in ("keras3.py", "tf1_legacy_keras.py"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    shutil.copy(FIXTURES / "keras3.py", tmp_path / "keras3_again.py")
    options = TraceSettings(steps=3, jobs=1, cache=False)
    with warm.WarmPool(sys.executable, threads=1) as pool:
        seen = []
        for name in ("keras3.py", "tf1_legacy_keras.py", "keras3_again.py"):
            (result,), traces, warnings = _confirm([tmp_path / name], options, pool)
            trace = traces[str(tmp_path / name)]
            seen.append((name, trace, result, warnings))
        zygote = pool.info.get("pid")
        assert pool.served == 3, pool.unavailable
        assert pool.running and pool.info.get("pid") == zygote
    for name, trace, result, warnings in seen:
        assert (trace.status, trace.steps) == ("stopped", 3), (name, trace.status, trace.reason)
        assert not [w for w in warnings if "warm" in w], warnings
        if name.startswith("keras3"):
            assert (trace.keras or "").startswith("keras 3"), trace.keras
            assert [(f.code, f.verdict) for f in result.findings] == [("TFG101", "confirmed")]
        else:
            assert (trace.keras or "").startswith("tf_keras"), trace.keras
            assert [(f.code, f.verdict) for f in result.findings] == [("TFG101", "refuted")]
    assert not pool.running


@pytest.mark.slow
def test_warm_and_cold_verdicts_are_identical_on_the_examples():
    paths = [p for p in sorted(EXAMPLES.rglob("*.py")) if lint_bytes(p.read_bytes(), str(p), LINT).findings]
    paths.append(FIXTURES / "tf1_legacy_keras.py")  # a TF1 script whose finding is refuted
    assert len(paths) >= 10
    runs = {}
    for mode in ("warm", "cold"):
        options = TraceSettings(jobs=2, cache=False, warm=mode == "warm")
        results, traces, warnings = _confirm(paths, options)
        assert not [w for w in warnings if "warm tracer" in w], warnings
        runs[mode] = {
            r.path: (
                _verdicts(r),
                (traces[r.path].status, traces[r.path].reason, traces[r.path].steps, traces[r.path].executed_lines),
            )
            for r in results
        }
    assert runs["warm"] == runs["cold"]
    verdicts = {v for trace in runs["warm"].values() for (_, _, v, _) in trace[0]}
    assert verdicts >= {"confirmed", "refuted"}


def test_cold_fallback_when_the_worker_cannot_start(tmp_path):
    """A zygote that does not finish importing TensorFlow in time: the traces run cold, with the
    same verdicts, and the run says the warm tracer was unavailable."""
    script = tmp_path / "keras3.py"
    shutil.copy(FIXTURES / "keras3.py", script)
    options = TraceSettings(steps=3, jobs=1, cache=False)
    with warm.WarmPool(sys.executable, threads=1, startup_timeout=0.05) as pool:
        (result,), traces, warnings = _confirm([script], options, pool)
        assert pool.served == 0 and "did not finish importing" in (pool.unavailable or "")
    assert traces[str(script)].status == "stopped"
    assert [(f.code, f.verdict) for f in result.findings] == [("TFG101", "confirmed")]
    assert any("warm tracer is unavailable" in w for w in warnings), warnings
