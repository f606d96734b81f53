"""The --confirm sandbox: limits, containment, step counting, verdict reasons.

The first group runs plain Python children (no TensorFlow, fast). The ``tf`` group traces
every script of ``tests/fixtures/hostile/`` in ONE ``confirm()`` call (two at a time): each
trace pays a TensorFlow import, so they share one batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from conftest import requires_tf

from tflint_grad.engine import lint_bytes
from tflint_grad import verdicts
from tflint_grad.settings import TraceSettings
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
    code = "import sys, tflint_grad.tracer.runner as r; r.TraceSettings(); r.tensorflow_info(sys.executable); print('tensorflow' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
        timeout=120,
        check=False,
    )
    assert out.stdout.strip() == "False", out.stderr


def test_tf1_detection():
    tf1 = sandbox.detect_tf_mode("import tensorflow as tf\nx = tf.placeholder(tf.float32)\n")
    assert tf1.tf1 and tf1.alias_v1 and tf1.legacy_keras
    self_v1 = sandbox.detect_tf_mode("import tensorflow.compat.v1 as tf\ntf.disable_v2_behavior()\n")
    assert self_v1.tf1 and self_v1.legacy_keras and not self_v1.alias_v1
    tf2 = sandbox.detect_tf_mode(
        "import tensorflow as tf\nm = tf.keras.Sequential()\nwith tf.GradientTape() as t: pass\n"
    )
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
    out = sandbox.run(
        cmd, cwd=str(tmp_path), env=dict(os.environ), limits=sandbox.Limits(timeout=1.5, grace=0.5), ready_pipe=False
    )
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
    out = sandbox.run(
        cmd, cwd=str(tmp_path), env=dict(os.environ), limits=sandbox.Limits(timeout=60, memory_mb=200), ready_pipe=False
    )
    assert out.killed_for == "memory"
    assert out.returncode == -signal.SIGKILL
    assert out.duration < 30


def test_a_daemon_in_its_own_session_dies_with_the_trace(tmp_path):
    """setsid + the parent shell gone at once: the orphan is re-parented to the harness (a child
    subreaper), not to init, so killing the tree finds it."""
    marker = f"1000.{os.getpid() % 1000}8"
    cmd = _py(f"""
        import ctypes, time
        from tflint_grad.tracer.harness import become_subreaper
        assert become_subreaper()
        ctypes.CDLL(None).system(b"setsid sleep {marker} </dev/null >/dev/null 2>&1 &")
        print("spawned", flush=True)
        time.sleep(1000)
    """)
    try:
        out = sandbox.run(
            cmd,
            cwd=str(tmp_path),
            env=dict(os.environ),
            limits=sandbox.Limits(timeout=1.5, grace=0.5),
            ready_pipe=False,
        )
        assert out.killed_for == "timeout" and "spawned" in out.stdout
        assert _procs_with(marker) == []
    finally:
        for line in _procs_with(marker):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)


def test_guard_closes_what_audit_events_leave_open(tmp_path):
    """``dir_fd`` relative calls, hard links to outside files, linked neighbours, multiprocessing
    "spawn" (``_posixsubprocess.fork_exec`` raises no audit event): refused, with the real path."""
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (outside / "keep.txt").write_text("keep me")
    (work / "keep.txt").symlink_to(outside / "keep.txt")
    code = f"""
        import json, multiprocessing, os, shutil
        from tflint_grad.tracer.harness import Guard
        os.chdir({str(work)!r})
        Guard({str(work)!r}).install()
        out, results = {str(outside)!r}, {{}}
        def attempt(name, action):
            try:
                action()
                results[name] = "allowed"
            except PermissionError as e:
                results[name] = str(e)
        fd = os.open(out, os.O_RDONLY)
        attempt("open at", lambda: os.close(os.open("new.txt", os.O_WRONLY | os.O_CREAT, dir_fd=fd)))
        attempt("remove at", lambda: os.remove("keep.txt", dir_fd=fd))
        attempt("mkdir at", lambda: os.mkdir("made", dir_fd=fd))
        attempt("rename from", lambda: os.rename("keep.txt", "moved.txt", src_dir_fd=fd))
        attempt("hard link", lambda: os.link(os.path.join(out, "keep.txt"), "hard.txt"))
        attempt("linked neighbour", lambda: os.remove("keep.txt"))
        attempt("spawn", lambda: multiprocessing.get_context("spawn").Process(target=print).start())
        here = os.open(".", os.O_RDONLY)
        attempt("open at, inside", lambda: os.close(os.open("inside.txt", os.O_WRONLY | os.O_CREAT, dir_fd=here)))
        attempt("rmtree, inside", lambda: (os.makedirs("sub/deeper"), open("sub/deeper/f", "w").close(), shutil.rmtree("sub")))
        print(json.dumps(results))
    """
    proc = subprocess.run(_py(code), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    refused = "writing outside the trace's temporary folder is disabled while tracing: "
    assert results == {
        "open at": refused + str(outside / "new.txt"),
        "remove at": refused + str(outside / "keep.txt"),
        "mkdir at": refused + str(outside / "made"),
        "rename from": refused + str(outside / "keep.txt"),
        "hard link": refused + str(outside / "keep.txt"),
        "linked neighbour": refused + f"keep.txt (resolves to {outside / 'keep.txt'})",
        "spawn": "starting processes is disabled while tracing (multiprocessing/_posixsubprocess)",
        "open at, inside": "allowed",
        "rmtree, inside": "allowed",
    }
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"] and (outside / "keep.txt").read_text() == "keep me"
    assert sorted(p.name for p in work.iterdir()) == ["inside.txt", "keep.txt"]


def test_landlock_confines_writes_of_the_process_and_its_children(tmp_path):
    from tflint_grad.tracer.harness import landlock_abi

    if not landlock_abi():
        pytest.skip("no Landlock in this kernel: the audit hooks alone guard writes")
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    code = f"""
        import ctypes, os
        from tflint_grad.tracer.harness import confine_writes
        print(confine_writes([{str(work)!r}]))
        open({str(work / "ok.txt")!r}, "w").write("fine")
        try:
            open({str(outside / "python.txt")!r}, "w")
        except PermissionError as e:
            print("python:", e.errno)
        print("libc:", ctypes.CDLL(None).open({str(outside / "libc.txt")!r}.encode(), os.O_WRONLY | os.O_CREAT, 0o644))
        print("shell:", os.system("echo x > {outside / "shell.txt"} 2>/dev/null") != 0)
        print("devnull:", os.system("echo x > /dev/null") == 0)
    """
    proc = subprocess.run(_py(code), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"kernel write confinement (Landlock ABI {landlock_abi()}): {work}",
        "python: 13",
        "libc: -1",
        "shell: True",
        "devnull: True",
    ]
    assert list(outside.iterdir()) == [] and (work / "ok.txt").read_text() == "fine"


def test_launch_failure_is_a_result_not_an_exception(tmp_path):
    out = sandbox.run([str(tmp_path / "no-such-python")], cwd=str(tmp_path), env={}, limits=sandbox.Limits())
    assert out.launch_error and "no-such-python" in out.launch_error


def test_segfault_is_reported_with_the_script_line(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text("import ctypes, faulthandler\nfaulthandler.enable()\n\nctypes.string_at(0)\n")
    out = sandbox.run(
        [sys.executable, str(script)],
        cwd=str(tmp_path),
        env=dict(os.environ),
        limits=sandbox.Limits(timeout=60),
        ready_pipe=False,
    )
    assert out.returncode == -signal.SIGSEGV
    assert sandbox.crash_line(out.stderr, str(script)) == 4
    job = runner.TraceJob(str(script), "crash.py", script.read_bytes(), None)
    warnings: list[str] = []
    trace = runner._interpret(job, str(script), TraceSettings(), sandbox.Limits(), out, None, None, warnings)
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
    trace = runner._interpret(job, "x.py", TraceSettings(), sandbox.Limits(), out, None, "JSONDecodeError: x", [])
    assert trace.status == "crashed" and "unreadable" in trace.reason
    trace = runner._interpret(job, "x.py", TraceSettings(), sandbox.Limits(), out, None, None, [])
    assert trace.status == "crashed" and "exit code 0" in trace.reason and "ValueError: boom" in trace.reason


def test_tensorflow_missing_makes_findings_inconclusive(tmp_path):
    script = tmp_path / "s.py"
    script.write_bytes((HOSTILE / "eager_loop.py").read_bytes())
    result = lint_bytes(script.read_bytes(), str(script))
    assert result.findings
    fake_python = tmp_path / "python3"
    fake_python.write_text("#!/bin/sh\necho '{\"tensorflow\": null}'\n")
    fake_python.chmod(0o755)
    warnings = verdicts.confirm([result], TraceSettings(python=str(fake_python), cache=False))
    assert [f.verdict for f in result.findings] == ["inconclusive"] * len(result.findings)
    assert result.findings[0].evidence == "TensorFlow not installed"
    assert warnings and "TensorFlow not installed" in warnings[0]


# -- with TensorFlow: every hostile script in one confirm() call --------------------------------------
# One test function on purpose: the batch costs one TensorFlow import per script, and CI runs
# ``pytest -n 2`` (a module-scoped fixture would run once per xdist worker).

TIMEOUT = 15
MEMORY_MB = 2048
WRITE_REFUSED = "PermissionError: writing outside the trace's temporary folder is disabled while tracing: "


def _line(name: str, needle: str) -> int:
    """Line of the first occurrence of ``needle`` in the fixture ``name``."""
    for i, text in enumerate((HOSTILE / name).read_text().splitlines(), 1):
        if needle in text:
            return i
    raise AssertionError(f"{needle!r} not in {name}")


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind, size, mtime, content (files) or target (links)."""
    out: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if os.path.islink(path):
                out[path] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                out[path] = ("dir", st.st_mtime_ns)
            else:
                with open(path, "rb") as fh:
                    out[path] = ("file", st.st_size, st.st_mtime_ns, fh.read())
    return out


def _procs_under(folder: Path) -> list[str]:
    """Live processes whose environment or working directory mentions ``folder`` (the traces')."""
    needle = str(folder).encode()
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                env = fh.read()
            with open(f"/proc/{name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
            cwd = os.readlink(f"/proc/{name}/cwd").encode()
        except OSError:
            continue
        if (needle in env or needle in cwd) and state not in (b"Z", b"X"):
            found.append(name)
    return found


@pytest.mark.tf
@pytest.mark.slow
@requires_tf
def test_hostile_scripts_in_one_confirm_run(tmp_path, monkeypatch):
    from tflint_grad.tracer.harness import landlock_abi

    # Sentinels: a project around copies of the fixtures (their folder and its parent are the
    # project tree a script may attack), a $HOME, a folder outside; the real fixtures too.
    project = tmp_path / "project"
    scripts = project / "hostile"
    shutil.copytree(HOSTILE, scripts)
    (project / "README.md").write_text("the project around the scripts\n")
    (project / "data").mkdir()
    (project / "data" / "train.csv").write_text("1,2,3\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# keep\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep me")
    real_home_probe = Path(pwd.getpwuid(os.getuid()).pw_dir) / "tflint-grad-escaped.txt"
    assert not real_home_probe.exists()
    traces_root = tmp_path / "traces"  # every trace folder (the children's cwd and HOME) is made below
    traces_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(traces_root))
    monkeypatch.setenv("HOME", str(home))
    marker = f"1000.{os.getpid()}{time.time_ns() % 10**6:06d}"  # the daemon of spawn.py: ``sleep <marker>``
    sentinels = (project, home, outside, HOSTILE)
    before = {root: _snapshot(root) for root in sentinels}

    results = {p.name: lint_bytes(p.read_bytes(), str(p)) for p in sorted(scripts.glob("*.py"))}
    slow = ("pause.py", "train_hang.py", "hang.py", "print_mb.py", "memory_in_training.py")  # they run to the limits
    batch = sorted(results, key=lambda name: (name not in slow, name))  # first: no lone straggler at the end
    traces: dict[str, TraceResult] = {}
    args = (str(outside), str(home), marker, "landlock" if landlock_abi() else "no-landlock")
    options = TraceSettings(
        steps=STEPS, timeout=TIMEOUT, memory_mb=MEMORY_MB, args=args, jobs=2, cache=False, confirm_all=True
    )
    t0 = time.monotonic()
    try:
        warnings = verdicts.confirm([results[name] for name in batch], options, traces=traces)
    finally:
        strays = [
            *_procs_with(marker),
            *_procs_with("1000.5"),
            *(f"{pid}: (in the trace folders)" for pid in _procs_under(traces_root)),
        ]
        for line in strays:  # never leave them running, even when the test fails
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(line.split(":")[0]), signal.SIGKILL)
        escaped_home = real_home_probe.exists()
        with contextlib.suppress(OSError):
            real_home_probe.unlink()
    elapsed = time.monotonic() - t0
    traces = {Path(k).name: v for k, v in traces.items()}
    summary = {k: (t.status, t.reason, t.steps, round(t.duration, 1)) for k, t in traces.items()}

    problems: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    def finding(name: str):
        found = results[name].findings
        check(bool(found), f"{name}: the static pass should flag the gradient line")
        return found[0] if found else None

    def ends(name: str, status: str, reason, evidence=None) -> None:
        """The trace's status and reason, and its finding: inconclusive with ``evidence`` (default: the reason)."""
        t = traces.get(name)
        got = (t.status, t.reason) if t is not None else None
        if isinstance(reason, re.Pattern):
            check(
                got is not None and got[0] == status and reason.fullmatch(got[1] or "") is not None,
                f"{name}: {got} !~ {(status, reason.pattern)}",
            )
            reason = got[1] if got else None
        else:
            check(got == (status, reason), f"{name}: {got} != {(status, reason)}")
        f = finding(name)
        expected = evidence if evidence is not None else reason
        if f is not None:
            check(
                (f.verdict, f.evidence) == ("inconclusive", expected),
                f"{name}: {f.verdict}: {f.evidence!r} != {expected!r}",
            )

    # the run completed and every file got its trace and verdicts
    check(set(traces) == set(results), f"traced: {sorted(traces)}")
    for name, result in results.items():
        for f in result.findings:
            check(f.verdict != "unconfirmed", f"{name}: line {f.line} has no verdict")

    # infinite loops, before and during training: killed at the timeout (SIGUSR2 -> TraceTimeout),
    # the partial trace kept; steps done or not, a run cut short gives no verdict
    timed_out = f"timed out after {TIMEOUT} s"
    ends("hang.py", "timeout", f"{timed_out} at line {_line('hang.py', 'while True')}")
    check(4 in getattr(traces.get("hang.py"), "executed_lines", ()), "hang: partial executed lines lost")
    ends(
        "train_hang.py",
        "timeout",
        f"{timed_out} at line {_line('train_hang.py', 'while step')} ({min(2, STEPS)} training steps done)",
    )
    t = traces.get("train_hang.py")
    check(
        t is not None
        and t.steps == 2
        and _line("train_hang.py", "tape.gradient") in t.executed_lines
        and bool(t.events_of("gradient_call")),
        f"train_hang: partial trace lost: {t and (t.steps, t.events)}",
    )
    # megabytes through tf.print (TensorFlow's C++ stderr), forever: captured, capped, timed out
    ends("print_mb.py", "timeout", f"{timed_out} at line {_line('print_mb.py', 'while True')}")
    # SIGUSR2 (and SIGTERM) ignored, then signal.pause(): only SIGKILL ends it, no partial trace
    ends("pause.py", "timeout", timed_out)

    # signals: its own SIGALRM handler wakes signal.pause(), SIGINT raises KeyboardInterrupt,
    # then SIGTERM to itself ends it (precisely: no "crashed")
    ends("signals.py", "error", f"script terminated by SIGTERM at line {_line('signals.py', 'signal.SIGTERM)')}")

    # network: refused before any DNS lookup (socket, http.client, urllib)
    ends("network.py", "error", "script stopped at line 6: PermissionError: network access is disabled while tracing")
    ends(
        "http_download.py",
        "error",
        f"script stopped at line {_line('http_download.py', 'urlopen(')}: "
        "URLError: <urlopen error network access is disabled while tracing>",
    )

    # sys.exit(3) and os._exit(0)
    ends("exit3.py", "error", "script called sys.exit(3) at line 6")
    ends(
        "os_exit.py",
        "finished",
        "script called os._exit(0) at line 7",
        "flagged line 16 never ran: script called os._exit(0) at line 7",
    )

    # a missing data file
    ends(
        "missing_data.py", "error", "script stopped at line 5: FileNotFoundError: data.csv (No such file or directory)"
    )

    # memory: 8 GiB at once (RLIMIT_DATA: a MemoryError at the script's line); shared memory
    # growing during training (only the RSS watchdog sees it: the process group is killed)
    ends("memory.py", "memory", f"memory limit of {MEMORY_MB} MB exceeded at line 4")
    ends("memory_in_training.py", "memory", f"memory limit of {MEMORY_MB} MB exceeded")

    # processes: every Python way refused; a daemon started through C (setsid, parent gone) dies
    # with the trace although the script exits at once
    exit_line = _line("spawn.py", "sys.exit(0)")
    ends(
        "spawn.py",
        "finished",
        f"script called sys.exit(0) at line {exit_line}",
        f"flagged line {_line('spawn.py', 'tape.gradient')} never ran: script called sys.exit(0) at line {exit_line}",
    )

    # writes to its folder, the parent, $HOME (and, with Landlock, through TensorFlow's C++ and libc)
    ends(
        "project_writes.py",
        "error",
        f"script stopped at line {_line('project_writes.py', 'np.savetxt')}: "
        f"{WRITE_REFUSED}{project / 'predictions.csv'}",
    )
    # deleting its neighbours and its working directory: stops at the first linked neighbour
    rmtree_line = _line("rm_neighbours.py", 'shutil.rmtree(".")')
    ends(
        "rm_neighbours.py",
        "error",
        re.compile(
            rf"script stopped at line {rmtree_line}: {re.escape(WRITE_REFUSED)}"
            rf"(?P<name>[\w.]+) \(resolves to {re.escape(str(scripts))}/(?P=name)\)"
        ),
    )

    # escapes refused (else the script raises "not contained: ..."), then TF1 training stops at N
    t = traces.get("contained.py")
    check(t is not None and (t.status, t.steps) == ("stopped", STEPS), f"contained: {summary.get('contained.py')}")

    # nothing outside the trace folders changed, nothing survived
    for root, snap in before.items():
        after = _snapshot(root)
        changed = sorted(k for k in snap.keys() | after.keys() if snap.get(k) != after.get(k))
        check(not changed, f"changed under {root}: {changed}")
    check(not escaped_home, f"a script wrote {real_home_probe}")
    check(not strays, f"stray processes: {strays}")
    check(list(traces_root.iterdir()) == [], f"trace folders left: {list(traces_root.iterdir())}")
    check(not Path("/tmp/never-written.keras").exists(), "model.save wrote a file")

    # well behaved, in the same run: an eager loop whose finding gets its verdict, a compiled
    # tf.function loop; both stop after N steps
    t = traces.get("eager_loop.py")
    check(
        t is not None and (t.status, t.steps, t.step_limit) == ("stopped", STEPS, STEPS),
        f"eager: {summary.get('eager_loop.py')}",
    )
    check(
        t is not None and t.reason == f"stopped after {STEPS} training steps (the limit)",
        f"eager reason: {t and t.reason}",
    )
    check(
        t is not None and 11 in t.executed_lines and 13 not in t.executed_lines,
        f"eager lines: {t and sorted(t.executed_lines)}",
    )
    check(
        t is not None and bool(t.tf_version) and (t.keras or "").startswith("keras 3"),
        f"eager versions: {t and (t.tf_version, t.keras)}",
    )
    f = finding("eager_loop.py")
    check(
        f is not None and f.code == "TFG101" and f.verdict == "confirmed" and "moving_mean" in (f.evidence or ""),
        f"eager finding: {f and (f.code, f.verdict, f.evidence)}",
    )
    t = traces.get("function_loop.py")
    check(
        t is not None and (t.status, t.steps) == ("stopped", STEPS), f"tf.function: {summary.get('function_loop.py')}"
    )
    check(
        t is not None and {12, 13, 14} <= t.executed_lines, f"tf.function body lines: {t and sorted(t.executed_lines)}"
    )

    # within the limits: a trace takes its TensorFlow import, the timeout and the grace at most
    for name, t in traces.items():
        check(t.duration < sandbox.STARTUP_TIMEOUT + TIMEOUT + sandbox.GRACE, f"{name} took {t.duration:.0f} s")
    check(all("Traceback" not in w and "tracer failed" not in w for w in warnings), f"warnings: {warnings}")
    print(f"\n{len(results)} hostile scripts traced in {elapsed:.0f} s (jobs=2)")

    assert not problems, "\n".join(problems) + f"\n\ntraces: {summary}"


@pytest.mark.tf
@requires_tf
def test_cache_reuses_a_trace(tmp_path):
    """A cached trace is returned without running anything (the entry is planted)."""
    script = HOSTILE / "eager_loop.py"
    options = TraceSettings(steps=STEPS, cache_dir=str(tmp_path / "cache"))
    job = runner.TraceJob(str(script), "eager_loop.py", script.read_bytes(), str(HOSTILE))
    key = runner.cache_key(job, options, runner.tensorflow_info(sys.executable))
    planted = TraceResult("finished", executed_lines={1, 2, 3}, steps=1, step_limit=STEPS)
    runner._cache_store(options, key, planted, [])
    assert json.loads(Path(runner._cache_path(options, key)).read_text())["trace"]["status"] == "finished"
    result = lint_bytes(script.read_bytes(), str(script))
    traces: dict[str, TraceResult] = {}
    verdicts.confirm([result], options, traces=traces)
    assert traces[str(script)].executed_lines == {1, 2, 3}
    assert result.findings[0].evidence.startswith("flagged line 11 never ran")
