"""The --confirm sandbox: limits, containment, step counting, verdict reasons.

The first group runs plain Python children (no TensorFlow, fast). The ``tf`` group traces
every script of ``tests/fixtures/hostile/`` in ONE ``confirm()`` call (two at a time): each
trace pays a TensorFlow import, so they share one batch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import requires_tf
from tflint_grad.engine import lint_bytes
from tflint_grad.tracer import runner, sandbox
from tflint_grad.tracer.report import TraceResult

HOSTILE = Path(__file__).resolve().parent / "fixtures" / "hostile"
STEPS = 3


def _procs_with(marker: str) -> list[str]:
    """Live processes whose command line contains ``marker`` (zombies excluded)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmd and state not in (b"Z", b"X") and int(name) != os.getpid():
            found.append(f"{name}: {cmd}")
    return found


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


# -- without TensorFlow ----------------------------------------------------------------------------


def test_runner_does_not_import_tensorflow():
    code = "import sys, tflint_grad.tracer.runner as r; r.TraceOptions(); r.tensorflow_info(sys.executable); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_tf1_detection():
    tf1 = sandbox.detect_tf_mode("import tensorflow as tf\nx = tf.placeholder(tf.float32)\n")
    assert tf1.tf1 and tf1.alias_v1 and tf1.legacy_keras
    self_v1 = sandbox.detect_tf_mode("import tensorflow.compat.v1 as tf\ntf.disable_v2_behavior()\n")
    assert self_v1.tf1 and self_v1.legacy_keras and not self_v1.alias_v1
    tf2 = sandbox.detect_tf_mode("import tensorflow as tf\nm = tf.keras.Sequential()\nwith tf.GradientTape() as t: pass\n")
    assert not (tf2.tf1 or tf2.alias_v1 or tf2.legacy_keras)
    assert not sandbox.detect_tf_mode("tf.compat.v1.logging.set_verbosity(0)\n").alias_v1


def test_timeout_kills_the_whole_tree_including_a_detached_grandchild(tmp_path):
    marker = f"1000.{os.getpid() % 1000}7"
    cmd = _py(f"""
        import subprocess, time
        subprocess.Popen(["sleep", "{marker}"], start_new_session=True)  # leaves our session and group
        print("spawned", flush=True)
        time.sleep(1000)
    """)
    out = sandbox.run(cmd, cwd=str(tmp_path), env=dict(os.environ), limits=sandbox.Limits(timeout=1.5, grace=0.5), ready_pipe=False)
    assert out.killed_for == "timeout"
    assert out.returncode == -signal.SIGUSR2 or out.returncode == -signal.SIGKILL
    assert "spawned" in out.stdout
    assert out.duration < 15
    assert _procs_with(marker) == []


def test_output_is_captured_but_capped(tmp_path):
    cmd = _py("""
        import os, sys
        chunk = b"y" * 1024 * 1024
        for _ in range(64):
            os.write(1, chunk)
        sys.stderr.write("last words\\n")
    """)
    out = sandbox.run(cmd, cwd=str(tmp_path), env=dict(os.environ), limits=sandbox.Limits(timeout=60), ready_pipe=False)
    assert out.returncode == 0
    assert out.stdout_bytes == 64 * 1024 * 1024
    assert len(out.stdout) < 3 * sandbox.OUTPUT_KEEP and "bytes omitted" in out.stdout
    assert out.stderr.strip() == "last words"


def test_memory_watchdog_kills_above_the_limit(tmp_path):
    # shared memory is not private data: only the parent's RSS watchdog sees it
    cmd = _py("""
        import mmap, time
        m = mmap.mmap(-1, 600 * 2**20, flags=mmap.MAP_SHARED)
        for i in range(0, len(m), 4096):
            m[i] = 1
        time.sleep(60)
    """)
    out = sandbox.run(cmd, cwd=str(tmp_path), env=dict(os.environ), limits=sandbox.Limits(timeout=60, memory_mb=200), ready_pipe=False)
    assert out.killed_for == "memory"
    assert out.returncode == -signal.SIGKILL
    assert out.duration < 30


def test_launch_failure_is_a_result_not_an_exception(tmp_path):
    out = sandbox.run([str(tmp_path / "no-such-python")], cwd=str(tmp_path), env={}, limits=sandbox.Limits())
    assert out.launch_error and "no-such-python" in out.launch_error


def test_segfault_is_reported_with_the_script_line(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text("import ctypes, faulthandler\nfaulthandler.enable()\n\nctypes.string_at(0)\n")
    out = sandbox.run([sys.executable, str(script)], cwd=str(tmp_path), env=dict(os.environ), limits=sandbox.Limits(timeout=60), ready_pipe=False)
    assert out.returncode == -signal.SIGSEGV
    assert sandbox.crash_line(out.stderr, str(script)) == 4
    job = runner.TraceJob(str(script), "crash.py", script.read_bytes(), None)
    warnings: list[str] = []
    trace = runner._interpret(job, str(script), runner.TraceOptions(), sandbox.Limits(), out, None, None, warnings)
    assert trace.status == "crashed" and trace.reason == "the traced process crashed (SIGSEGV) at line 4"
    assert warnings


def test_garbled_or_missing_result_file(tmp_path):
    bad = tmp_path / "result.json"
    bad.write_text('{"status": "fin')
    data, garbled = runner._load_result(str(bad))
    assert data is None and "JSONDecodeError" in garbled
    assert runner._load_result(str(tmp_path / "absent.json")) == (None, None)
    job = runner.TraceJob("x.py", "x.py", b"", None)
    out = sandbox.Outcome(returncode=0, stderr="Traceback ...\nValueError: boom\n")
    trace = runner._interpret(job, "x.py", runner.TraceOptions(), sandbox.Limits(), out, None, "JSONDecodeError: x", [])
    assert trace.status == "crashed" and "unreadable" in trace.reason
    trace = runner._interpret(job, "x.py", runner.TraceOptions(), sandbox.Limits(), out, None, None, [])
    assert trace.status == "crashed" and "exit code 0" in trace.reason and "ValueError: boom" in trace.reason


def test_tensorflow_missing_makes_findings_inconclusive(tmp_path):
    script = tmp_path / "s.py"
    script.write_bytes((HOSTILE / "eager_loop.py").read_bytes())
    result = lint_bytes(script.read_bytes(), str(script))
    assert result.findings
    fake_python = tmp_path / "python3"
    fake_python.write_text("#!/bin/sh\necho '{\"tensorflow\": null}'\n")
    fake_python.chmod(0o755)
    warnings = runner.confirm([result], runner.TraceOptions(python=str(fake_python), cache=False))
    assert [f.verdict for f in result.findings] == ["inconclusive"] * len(result.findings)
    assert result.findings[0].evidence == "TensorFlow not installed"
    assert warnings and "TensorFlow not installed" in warnings[0]


# -- with TensorFlow: every hostile script in one confirm() call --------------------------------------


@pytest.fixture(scope="module")
def hostile_batch(tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "keep.txt").write_text("keep me")
    before = {p.name: p.read_bytes() for p in HOSTILE.iterdir()}
    results = [lint_bytes(p.read_bytes(), str(p)) for p in sorted(HOSTILE.glob("*.py"))]
    traces: dict[str, TraceResult] = {}
    options = runner.TraceOptions(steps=STEPS, timeout=20, memory_mb=2048, args=(str(outside),), jobs=2,
                                  cache=False, confirm_all=True)
    warnings = runner.confirm(results, options, traces=traces)
    by_name = {Path(r.path).name: r for r in results}
    return {"results": by_name, "traces": {Path(k).name: v for k, v in traces.items()}, "warnings": warnings,
            "outside": outside, "before": before}


def _finding(batch, name):
    result = batch["results"][name]
    assert result.findings, f"{name}: the static pass should flag the gradient line"
    return result.findings[0]


@pytest.mark.tf
@pytest.mark.slow
@requires_tf
class TestHostileScripts:
    def test_every_script_was_traced(self, hostile_batch):
        assert set(hostile_batch["traces"]) == {p.name for p in HOSTILE.glob("*.py")}
        for name, result in hostile_batch["results"].items():
            for f in result.findings:
                assert f.verdict != "unconfirmed", (name, f)

    def test_hang_is_killed_at_the_timeout(self, hostile_batch):
        trace = hostile_batch["traces"]["hang.py"]
        assert trace.status == "timeout" and trace.reason == "timed out after 20 s"
        assert 4 in trace.executed_lines  # the partial trace survived (SIGUSR2, then the result)
        f = _finding(hostile_batch, "hang.py")
        assert (f.verdict, f.evidence) == ("inconclusive", "timed out after 20 s")

    def test_network_is_refused(self, hostile_batch):
        trace = hostile_batch["traces"]["network.py"]
        assert trace.status == "error" and trace.error_line == 6
        f = _finding(hostile_batch, "network.py")
        assert f.verdict == "inconclusive"
        assert f.evidence == "script stopped at line 6: PermissionError: network access is disabled while tracing"

    def test_sys_exit(self, hostile_batch):
        trace = hostile_batch["traces"]["exit3.py"]
        assert trace.status == "error" and trace.reason == "script called sys.exit(3) at line 6"
        assert _finding(hostile_batch, "exit3.py").evidence == "script called sys.exit(3) at line 6"

    def test_os_exit_keeps_the_partial_trace(self, hostile_batch):
        trace = hostile_batch["traces"]["os_exit.py"]
        assert trace.status == "finished" and trace.reason == "script called os._exit(0) at line 7"
        f = _finding(hostile_batch, "os_exit.py")
        assert f.verdict == "inconclusive"
        assert f.evidence == "flagged line 16 never ran: script called os._exit(0) at line 7"

    def test_missing_data_file(self, hostile_batch):
        f = _finding(hostile_batch, "missing_data.py")
        assert f.verdict == "inconclusive"
        assert f.evidence == "script stopped at line 5: FileNotFoundError: data.csv (No such file or directory)"

    def test_memory_blow_up(self, hostile_batch):
        trace = hostile_batch["traces"]["memory.py"]
        assert trace.status == "memory" and trace.error_line == 4
        f = _finding(hostile_batch, "memory.py")
        assert (f.verdict, f.evidence) == ("inconclusive", "memory limit of 2048 MB exceeded at line 4")

    def test_escapes_are_contained_and_the_tf1_script_trains(self, hostile_batch):
        trace = hostile_batch["traces"]["contained.py"]
        assert trace.status == "stopped", trace.reason  # "not contained: ..." otherwise
        assert trace.steps == STEPS
        outside = hostile_batch["outside"]
        assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
        assert (outside / "keep.txt").read_text() == "keep me"
        assert not (Path.home() / "tflint-grad-home-probe.txt").exists()
        assert {p.name: p.read_bytes() for p in HOSTILE.iterdir()} == hostile_batch["before"]
        assert _procs_with("1000.5") == []

    def test_eager_loop_stops_after_n_steps(self, hostile_batch):
        trace = hostile_batch["traces"]["eager_loop.py"]
        assert (trace.status, trace.steps, trace.step_limit) == ("stopped", STEPS, STEPS)
        assert trace.reason == f"stopped after {STEPS} training steps (the limit)"
        assert 11 in trace.executed_lines and 13 not in trace.executed_lines
        assert trace.tf_version and trace.keras.startswith("keras 3")
        f = _finding(hostile_batch, "eager_loop.py")
        assert f.verdict in ("confirmed", "refuted", "inconclusive") and f.evidence

    def test_tf_function_steps_are_counted(self, hostile_batch):
        trace = hostile_batch["traces"]["function_loop.py"]
        assert (trace.status, trace.steps) == ("stopped", STEPS)
        assert {12, 13, 14} <= trace.executed_lines  # lines inside the @tf.function body (AutoGraph)

    def test_nothing_outside_changed_and_no_strays(self, hostile_batch):
        assert not Path("/tmp/never-written.keras").exists()
        assert _procs_with("tflint_grad.tracer.harness") == []
        assert all("Traceback" not in w for w in hostile_batch["warnings"]), hostile_batch["warnings"]


@pytest.mark.tf
@requires_tf
def test_cache_reuses_a_trace(tmp_path):
    """A cached trace is returned without running anything (the entry is planted)."""
    script = HOSTILE / "eager_loop.py"
    options = runner.TraceOptions(steps=STEPS, cache_dir=str(tmp_path / "cache"))
    job = runner.TraceJob(str(script), "eager_loop.py", script.read_bytes(), str(HOSTILE))
    key = runner.cache_key(job, options, runner.tensorflow_info(sys.executable))
    planted = TraceResult("finished", executed_lines={1, 2, 3}, steps=1, step_limit=STEPS)
    runner._cache_store(options, key, planted, [])
    assert json.loads(Path(runner._cache_path(options, key)).read_text())["trace"]["status"] == "finished"
    result = lint_bytes(script.read_bytes(), str(script))
    traces: dict[str, TraceResult] = {}
    runner.confirm([result], options, traces=traces)
    assert traces[str(script)].executed_lines == {1, 2, 3}
    assert result.findings[0].evidence.startswith("flagged line 11 never ran")
