"""The --confirm sandbox: limits, containment, step counting, verdict reasons.

The first group runs plain Python children (no TensorFlow, fast). The ``tf`` group traces
every script of ``tests/fixtures/hostile/`` in ONE ``confirm()`` call (two at a time): each
trace pays a TensorFlow import, so they share one batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from conftest import requires_tf

from tflint_grad import verdicts
from tflint_grad.engine import lint_bytes
from tflint_grad.settings import TraceSettings
from tflint_grad.tracer import runner, sandbox
from tflint_grad.tracer.confine import seccomp_program
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


def _abi() -> int:
    """The Landlock ABI the traces get (0 when switched off): the signal tests kill for real only with 6+."""
    from tflint_grad.tracer.confine import landlock_abi

    return 0 if os.environ.get("TFLINT_GRAD_NO_LANDLOCK") else landlock_abi()


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
        "open at": refused + f"«{outside / 'new.txt'}»",
        "remove at": refused + f"«{outside / 'keep.txt'}»",
        "mkdir at": refused + f"«{outside / 'made'}»",
        "rename from": refused + f"«{outside / 'keep.txt'}»",
        "hard link": refused + f"«{outside / 'keep.txt'}»",
        "linked neighbour": refused + f"«keep.txt» (resolves to «{outside / 'keep.txt'}»)",
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


def test_confine_refuses_native_reads_signals_and_ptrace_outside(tmp_path):
    """The kernel (Landlock) refuses, for native calls too: reads outside the project and the
    system folders, the project's .git, signals and ptrace to processes outside the sandbox.
    The parent of the confined child is this test process: a kill that got through would end it."""
    if _abi() < 6:
        pytest.skip("Landlock ABI 6 (signal scoping, Linux 6.12) needed")
    project, outside, work = tmp_path / "project", tmp_path / "outside", tmp_path / "work"
    for folder in (project / ".git", project / "src", project / "data", outside, work):
        folder.mkdir(parents=True)
    (project / ".git" / "config").write_text(TOKEN)
    (project / "data" / "a.csv").write_text("1,2\n")
    (outside / "secret.txt").write_text("secret")
    sibling = subprocess.Popen(["sleep", "600"])
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # an abstract socket outside
    abstract = f"\0tflint-grad-test-{os.getpid()}"
    listener.bind(abstract)
    listener.listen(1)
    code = f"""
        import ctypes, errno, json, os, socket
        from tflint_grad.tracer import sandbox
        from tflint_grad.tracer.confine import confine
        c = confine(memory_mb=0, writable=[{str(work)!r}], readable=sandbox.read_roots({str(project / "src")!r}))
        libc = ctypes.CDLL(None, use_errno=True)
        def err(rc):
            return "ok" if rc >= 0 else errno.errorcode[ctypes.get_errno()]
        def native(path):
            fd = libc.open(path.encode(), os.O_RDONLY)
            if fd >= 0:
                os.close(fd)
            return err(fd)
        def python(path):
            try:
                open(path).read()
                return "ok"
            except OSError as e:
                return errno.errorcode[e.errno]
        out = {{
            "active": c.active,
            "project data": native({str(project / "data" / "a.csv")!r}),
            "project data (python)": python({str(project / "data" / "a.csv")!r}),
            ".git/config": native({str(project / ".git" / "config")!r}),
            "outside": native({str(outside / "secret.txt")!r}),
            "outside (python)": python({str(outside / "secret.txt")!r}),
            "numpy": bool(__import__("numpy").ones(2).sum() == 2),
            "kill parent": err(libc.kill(os.getppid(), 9)),
            "kill sibling": err(libc.kill({sibling.pid}, 9)),
            "ptrace sibling": err(libc.ptrace(16, {sibling.pid}, None, None)),
        }}
        try:
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect({abstract!r})
            out["abstract socket"] = "ok"
        except OSError as e:
            out["abstract socket"] = errno.errorcode[e.errno]
        pid = os.fork()
        if pid == 0:
            libc.pause()
        out["kill own child"] = err(libc.kill(pid, 9))
        os.waitpid(pid, 0)
        print(json.dumps(out))
    """
    try:
        proc = subprocess.run(_py(code), capture_output=True, text=True, timeout=120, check=False, cwd=str(work))
        alive = sibling.poll() is None
    finally:
        sibling.kill()
        sibling.wait()
        listener.close()
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {"reads", "signals", "ptrace", "abstract Unix sockets"} <= set(out.pop("active"))
    assert out == {
        "project data": "ok",
        "project data (python)": "ok",
        ".git/config": "EACCES",
        "outside": "EACCES",
        "outside (python)": "EACCES",
        "numpy": True,
        "kill parent": "EPERM",
        "kill sibling": "EPERM",
        "ptrace sibling": "EPERM",
        "abstract socket": "EPERM",
        "kill own child": "ok",
    }
    assert alive


def test_seccomp_refuses_signals_and_ptrace_where_landlock_cannot(tmp_path):
    """The fallback for kernels without Landlock's signal scoping (forced here, Landlock off):
    a seccomp filter lets the process signal itself and its group only. A kill of the parent
    (this test process) that got through would end the test."""
    import platform

    from tflint_grad.tracer.confine import seccomp_program

    if seccomp_program(platform.machine(), 1, 1) is None:
        pytest.skip(f"no seccomp filter for {platform.machine()}")
    sibling = subprocess.Popen(["sleep", "600"])
    code = f"""
        import ctypes, errno, json, os, signal
        from tflint_grad.tracer.confine import confine
        c = confine(memory_mb=0, writable=[{str(tmp_path)!r}])
        libc = ctypes.CDLL(None, use_errno=True)
        def err(rc):
            return "ok" if rc >= 0 else errno.errorcode[ctypes.get_errno()]
        got = []
        signal.signal(signal.SIGUSR1, lambda *a: got.append("handled"))
        os.kill(os.getpid(), signal.SIGUSR1)
        signal.raise_signal(signal.SIGUSR1)
        print(json.dumps({{
            "active": c.active,
            "kill parent": err(libc.kill(os.getppid(), 9)),
            "kill sibling": err(libc.kill({sibling.pid}, 9)),
            "kill everyone": err(libc.kill(-1, 0)),
            "tgkill sibling": err(libc.syscall(234 if os.uname().machine == "x86_64" else 131, {sibling.pid}, {sibling.pid}, 9)),
            "ptrace sibling": err(libc.ptrace(16, {sibling.pid}, None, None)),
            "own group": err(libc.kill(0, 0)),
            "setsid": err(libc.setsid()),
            "own signals": got,
        }}))
    """
    env = {**os.environ, "TFLINT_GRAD_NO_LANDLOCK": "1"}
    try:
        proc = subprocess.run(_py(code), capture_output=True, text=True, timeout=120, check=False, env=env)
        alive = sibling.poll() is None
    finally:
        sibling.kill()
        sibling.wait()
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "active": ["subreaper", "signals (seccomp)", "ptrace (seccomp)"],
        "kill parent": "EPERM",
        "kill sibling": "EPERM",
        "kill everyone": "EPERM",
        "tgkill sibling": "EPERM",
        "ptrace sibling": "EPERM",
        "own group": "ok",
        "setsid": "EPERM",
        "own signals": ["handled", "handled"],
    }
    assert alive


def test_read_roots_are_the_project_without_git_and_never_the_home_folder(tmp_path, monkeypatch):
    home = tmp_path / "home"
    for folder in (home / ".git", home / ".ssh", home / "proj" / ".git", home / "proj" / "src", home / "loose"):
        folder.mkdir(parents=True)
    (home / "proj" / "README.md").write_text("x")
    (home / "notes.txt").write_text("x")
    monkeypatch.setenv("HOME", str(home))
    # in a repository: its root, without .git; granted paths on top
    assert sandbox.project_root(str(home / "proj" / "src")) == str(home / "proj")
    assert sandbox.read_roots(str(home / "proj" / "src"), ("/srv/data",)) == [
        str(home / "proj" / "README.md"),
        str(home / "proj" / "src"),
        "/srv/data",
    ]
    # not in a repository (the home folder's dotfiles one does not count): the script's folder
    assert sandbox.read_roots(str(home / "loose")) == [str(home / "loose")]
    # a script in the home folder itself: its visible entries only (no .ssh, no .git)
    assert sandbox.read_roots(str(home)) == [str(home / "loose"), str(home / "notes.txt"), str(home / "proj")]


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
TOKEN = "ghs_0123456789abcdefFAKEtoken"  # in the project's .git/config: no output may carry it
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


def _check_published_formats(findings: list, check, reads_confined: bool) -> None:
    """Every output format, for the findings of a hostile run: text and JSON show the script's
    words (quoted, one line, short); SARIF and GitHub annotations never do."""
    from tflint_grad import output

    text = output.format_text(findings, traced=True)
    as_json = output.format_json(findings, len(findings))
    sarif = output.format_sarif(findings, root="/")
    github = output.format_github(findings)
    check(TOKEN not in sarif + github, "the token of .git/config was published")
    check(not reads_confined or TOKEN not in text + as_json, "the token of .git/config was read")
    check(text.count("\n") == 2 * len(findings), "text: one line per finding and one per verdict")
    check(not any(line.startswith("::") for line in text.splitlines()), "text: a line reads as a workflow command")
    check("pwned-by-output" in text and "AAAAAAAAAA" in text, "text: the script's words are shown")
    evidence = [f["evidence"] or "" for f in json.loads(as_json)["findings"]]
    check(all("\n" not in e and len(e) < 600 for e in evidence), "json: multi-line or long evidence")
    check(any("«::error file=README.md" in e for e in evidence), "json: the script's words are shown")
    for name, published in (("sarif", sarif), ("github", github)):
        for needle in ("pwned", "AAAAAAAAAA", "add-mask", "\x1b", "keep me"):
            check(needle not in published, f"{name}: the script's text {needle!r} was published")
    check(
        github.count("\n") == len(findings) and all(line.startswith("::") for line in github.splitlines()),
        "github: one workflow command per finding",
    )
    check("«script text omitted»" in github, "github: the omission is said")
    verbose = output.format_github(findings, script_text=True)
    check("pwned-by-output" in verbose and verbose.count("\n") == len(findings), "github --verbose: quoted, one line")


@pytest.mark.tf
@pytest.mark.slow
@requires_tf
@pytest.mark.parametrize("how", ["warm", "cold"])  # forked from one TensorFlow import, or one import each
def test_hostile_scripts_in_one_confirm_run(tmp_path, monkeypatch, how):
    from tflint_grad.tracer import warm

    # Sentinels: a project around copies of the fixtures (their folder and its parent are the
    # project tree a script may attack; its .git holds a token), a $HOME, a folder outside, a
    # sibling process; the real fixtures too.
    project = tmp_path / "project"
    scripts = project / "hostile"
    shutil.copytree(HOSTILE, scripts)
    (project / "README.md").write_text("the project around the scripts\n")
    (project / "data").mkdir()
    (project / "data" / "train.csv").write_text("1,2,3\n")
    (project / ".git").mkdir()  # the project root: its tree is readable, its .git is not
    (project / ".git" / "config").write_text(f'[remote "origin"]\n\turl = https://x:{TOKEN}@github.com/o/r\n')
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
    abi = _abi()
    signals = abi >= 6 or seccomp_program(platform.machine(), 1, 1) is not None
    sibling = subprocess.Popen(["sleep", "600"])  # a process of the user outside the trace: native_kill.py
    args = (
        str(outside),
        str(home),
        marker,
        "landlock" if abi else "no-landlock",
        str(sibling.pid),
        str(project),
        "signals" if signals else "no-signals",
    )
    options = TraceSettings(
        steps=STEPS,
        timeout=TIMEOUT,
        memory_mb=MEMORY_MB,
        args=args,
        jobs=2,
        cache=False,
        confirm_all=True,
        warm=how == "warm",
    )
    pool = warm.WarmPool(sys.executable, threads=1) if options.warm else None
    t0 = time.monotonic()
    try:
        warnings = verdicts.confirm([results[name] for name in batch], options, traces=traces, pool=pool)
    finally:
        if pool is not None:
            pool.close()  # the worker, its folder (under the trace folders) go; none of them may survive
        sibling_alive = sibling.poll() is None
        sibling.kill()
        sibling.wait()
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
    if pool is not None:
        check(pool.served == len(batch), f"{pool.served} of {len(batch)} traced warm ({pool.unavailable})")
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
        "URLError: network access is disabled while tracing",
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
        "missing_data.py",
        "error",
        "script stopped at line 5: FileNotFoundError: «data.csv» (No such file or directory)",
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
        f"{WRITE_REFUSED}«{project / 'predictions.csv'}»",
    )
    # deleting its neighbours and its working directory: stops at the first linked neighbour
    rmtree_line = _line("rm_neighbours.py", 'shutil.rmtree(".")')
    ends(
        "rm_neighbours.py",
        "error",
        re.compile(
            rf"script stopped at line {rmtree_line}: {re.escape(WRITE_REFUSED)}"
            rf"«(?P<name>[\w.]+)» \(resolves to «{re.escape(str(scripts))}/(?P=name)»\)"
        ),
    )

    # escapes refused (else the script raises "not contained: ..."), then TF1 training stops at N
    t = traces.get("contained.py")
    check(t is not None and (t.status, t.steps) == ("stopped", STEPS), f"contained: {summary.get('contained.py')}")

    # native code past the audit hook (ctypes): signals and ptrace against the linter (pytest
    # here: were the kill not refused, this test would not be running) and a sibling process
    line = _line("native_kill.py", "raise OSError")
    if signals:  # Landlock ABI 6, or the seccomp filter of older kernels
        ends(
            "native_kill.py",
            "error",
            f"script stopped at line {line}: PermissionError: «[Errno 1] Operation not permitted»",
        )
    else:  # today's behaviour without Landlock's signal scoping: only the audit hook (probed with signal 0)
        ends(
            "native_kill.py",
            "error",
            f"script stopped at line {line - 2}: RuntimeError: «not contained: kill parent, kill sibling»",
        )
    check(sibling_alive, "the sibling process was killed")
    # reads outside the project (Python and libc), and the project's .git/config: refused, with the path
    refused_read = "was refused by the sandbox (outside the folders a trace may read; --trace-allow-read grants more)"
    if abi:
        ends(
            "read_outside.py",
            "error",
            f"script stopped at line {_line('read_outside.py', 'raise OSError')}: "
            f"reading «{outside / 'keep.txt'}» {refused_read}",
        )
        ends(
            "git_config.py",
            "error",
            f"script stopped at line {_line('git_config.py', 'open(')}: "
            f"reading «{project / '.git' / 'config'}» {refused_read}",
        )
    # a fork bomb through libc (os.fork is refused): the tree is stopped and killed
    t = traces.get("fork_bomb.py")
    bomb = re.compile(
        rf"memory limit of {MEMORY_MB} MB exceeded by \d+ processes: the script started processes past the "
        r"sandbox's refusal \(native fork: a fork bomb\?\)"
        rf"|the script started more than {sandbox.MAX_PROCESSES} processes \(a fork bomb\?\): the sandbox killed them"
    )
    check(
        t is not None and t.status in ("memory", "killed") and bomb.fullmatch(t.reason or "") is not None,
        f"fork_bomb: {summary.get('fork_bomb.py')}",
    )
    f = finding("fork_bomb.py")
    check(f is not None and f.verdict == "inconclusive" and f.evidence == (t and t.reason), f"fork_bomb: {f}")
    # crafted payloads: an exception's message and the last output, cut short and quoted
    ends("payload.py", "error", f"script stopped at line 8: ValueError: «{'A' * 119}…»")
    ends(
        "payload_output.py",
        "crashed",
        "the script exited abruptly (exit code 3) before the trace was written; "
        "last output: «::error file=README.md,line=1::pwned-by-output»",
    )
    _check_published_formats([f for name in batch for f in results[name].findings], check, bool(abi))

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
    print(f"\n{len(results)} hostile scripts traced {how} in {elapsed:.0f} s (jobs=2)")

    assert not problems, "\n".join(problems) + f"\n\ntraces: {summary}"


@pytest.mark.tf
@pytest.mark.slow
@requires_tf
def test_the_lint_run_survives_a_native_kill_of_its_process_with_complete_output(tmp_path):
    """``tflint-grad check --confirm`` on a script that calls libc's ``kill(getppid(), 9)`` (and
    one raising a crafted payload): exit 1, every finding with its verdict, in every format; the
    payload never in SARIF or GitHub annotations. The formats after the first reuse the cached traces."""
    if _abi() < 6:
        pytest.skip("Landlock ABI 6 (signal scoping, Linux 6.12) needed: without it the kill gets through")
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / ".git" / "config").write_text(TOKEN)
    for name in ("native_kill.py", "payload.py"):
        shutil.copy(HOSTILE / name, project / name)
    sibling = subprocess.Popen(["sleep", "600"])
    env = {**os.environ, "TFLINT_GRAD_CACHE_DIR": str(tmp_path / "cache")}
    args = f"{tmp_path} {tmp_path} 1000.1 landlock {sibling.pid} {project} signals"
    reports = {}
    try:
        for fmt in ("text", "json", "sarif", "github"):
            cmd = ["tflint-grad", "check", "--confirm", "-j", "2", "--trace-steps", "2", "--format", fmt]
            proc = subprocess.run(
                [*cmd, "--trace-args", args, "."], cwd=project, env=env, capture_output=True, text=True, timeout=600
            )
            assert proc.returncode == 1, (fmt, proc.returncode, proc.stderr)
            reports[fmt] = proc.stdout
        alive = sibling.poll() is None
    finally:
        sibling.kill()
        sibling.wait()
    assert alive
    kill_line = _line("native_kill.py", "raise OSError")
    assert reports["text"].splitlines()[1::2] == [
        f"    = inconclusive: script stopped at line {kill_line}: PermissionError: «[Errno 1] Operation not permitted»",
        f"    = inconclusive: script stopped at line 8: ValueError: «{'A' * 119}…»",
    ]
    findings = json.loads(reports["json"])["findings"]
    assert [(f["path"], f["verdict"]) for f in findings] == [
        ("native_kill.py", "inconclusive"),
        ("payload.py", "inconclusive"),
    ]
    results = json.loads(reports["sarif"])["runs"][0]["results"]
    assert [r["properties"]["evidence"] for r in results] == [
        f"script stopped at line {kill_line}: PermissionError: «script text omitted»",
        "script stopped at line 8: ValueError: «script text omitted»",
    ]
    assert reports["github"].count("\n") == 2 and "AAAA" not in reports["github"]
    assert all(TOKEN not in report for report in reports.values())


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
