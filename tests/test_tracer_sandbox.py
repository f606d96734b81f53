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
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent, timeout=120, check=False)
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
# One test function on purpose: the batch costs nine TensorFlow imports, and CI runs
# ``pytest -n 2`` (a module-scoped fixture would run once per xdist worker).


@pytest.mark.tf
@pytest.mark.slow
@requires_tf
def test_hostile_scripts_in_one_confirm_run(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep me")
    before = {p.name: p.read_bytes() for p in HOSTILE.iterdir()}
    results = {p.name: lint_bytes(p.read_bytes(), str(p)) for p in sorted(HOSTILE.glob("*.py"))}
    traces: dict[str, TraceResult] = {}
    options = runner.TraceOptions(steps=STEPS, timeout=15, memory_mb=2048, args=(str(outside),), jobs=2,
                                  cache=False, confirm_all=True)
    warnings = runner.confirm(list(results.values()), options, traces=traces)
    traces = {Path(k).name: v for k, v in traces.items()}

    problems: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    def finding(name: str):
        found = results[name].findings
        check(bool(found), f"{name}: the static pass should flag the gradient line")
        return found[0] if found else None

    def evidence_is(name: str, expected: str) -> None:
        f = finding(name)
        if f is not None:
            check((f.verdict, f.evidence) == ("inconclusive", expected), f"{name}: {f.verdict}: {f.evidence!r} != {expected!r}")

    # the run completed and every file got its trace and verdicts
    check(set(traces) == set(results), f"traced: {sorted(traces)}")
    for name, result in results.items():
        for f in result.findings:
            check(f.verdict != "unconfirmed", f"{name}: line {f.line} has no verdict")
    summary = {k: (t.status, t.reason, t.steps) for k, t in traces.items()}

    # a hang: killed at the timeout, the partial trace kept (SIGUSR2 -> TraceTimeout -> result)
    t = traces.get("hang.py")
    check(t is not None and t.status == "timeout" and t.reason == "timed out after 15 s", f"hang: {summary.get('hang.py')}")
    check(t is not None and 4 in t.executed_lines, "hang: partial executed lines lost")
    evidence_is("hang.py", "timed out after 15 s")

    # network: refused before any DNS lookup
    t = traces.get("network.py")
    check(t is not None and t.status == "error" and t.error_line == 6, f"network: {summary.get('network.py')}")
    evidence_is("network.py", "script stopped at line 6: PermissionError: network access is disabled while tracing")

    # sys.exit(3) and os._exit(0)
    evidence_is("exit3.py", "script called sys.exit(3) at line 6")
    t = traces.get("os_exit.py")
    check(t is not None and t.status == "finished" and t.reason == "script called os._exit(0) at line 7", f"os_exit: {summary.get('os_exit.py')}")
    evidence_is("os_exit.py", "flagged line 16 never ran: script called os._exit(0) at line 7")

    # a missing data file
    evidence_is("missing_data.py", "script stopped at line 5: FileNotFoundError: data.csv (No such file or directory)")

    # 8 GiB at once: RLIMIT_DATA turns it into a MemoryError at the script's line
    t = traces.get("memory.py")
    check(t is not None and t.status == "memory" and t.error_line == 4, f"memory: {summary.get('memory.py')}")
    evidence_is("memory.py", "memory limit of 2048 MB exceeded at line 4")

    # escapes refused (else the script raises "not contained: ..."), then TF1 training stops at N
    t = traces.get("contained.py")
    check(t is not None and (t.status, t.steps) == ("stopped", STEPS), f"contained: {summary.get('contained.py')}")
    check(sorted(p.name for p in outside.iterdir()) == ["keep.txt"], f"outside: {sorted(p.name for p in outside.iterdir())}")
    check((outside / "keep.txt").read_text() == "keep me", "outside/keep.txt changed")
    check(not (Path.home() / "tflint-grad-home-probe.txt").exists(), "a file appeared in the real $HOME")
    check({p.name: p.read_bytes() for p in HOSTILE.iterdir()} == before, "a fixture changed (write through a linked neighbour)")
    check(_procs_with("1000.5") == [], f"stray processes: {_procs_with('1000.5')}")

    # well behaved: an eager loop and a compiled tf.function loop stop after N steps
    t = traces.get("eager_loop.py")
    check(t is not None and (t.status, t.steps, t.step_limit) == ("stopped", STEPS, STEPS), f"eager: {summary.get('eager_loop.py')}")
    check(t is not None and t.reason == f"stopped after {STEPS} training steps (the limit)", f"eager reason: {t and t.reason}")
    check(t is not None and 11 in t.executed_lines and 13 not in t.executed_lines, f"eager lines: {t and sorted(t.executed_lines)}")
    check(t is not None and bool(t.tf_version) and (t.keras or "").startswith("keras 3"), f"eager versions: {t and (t.tf_version, t.keras)}")
    f = finding("eager_loop.py")
    check(f is not None and f.verdict in ("confirmed", "refuted", "inconclusive") and bool(f.evidence), f"eager finding: {f}")
    t = traces.get("function_loop.py")
    check(t is not None and (t.status, t.steps) == ("stopped", STEPS), f"tf.function: {summary.get('function_loop.py')}")
    check(t is not None and {12, 13, 14} <= t.executed_lines, f"tf.function body lines: {t and sorted(t.executed_lines)}")

    # nothing leaked
    check(not Path("/tmp/never-written.keras").exists(), "model.save wrote a file")
    check(_procs_with("tflint_grad.tracer.harness") == [], "a harness process survived")
    check(all("Traceback" not in w for w in warnings), f"warnings: {warnings}")

    assert not problems, "\n".join(problems) + f"\n\ntraces: {summary}"


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
