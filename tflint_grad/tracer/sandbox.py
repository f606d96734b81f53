"""Running one traced script in a contained child process (parent side, TF-free).

What contains a trace, and who enforces it:

==========================  ===================================================================
wall clock                  parent. The clock starts when the harness signals (pipe) that it is
                            about to run the user's code, so a slow ``import tensorflow`` on a
                            busy machine does not eat the budget (TF's import has its own
                            ``STARTUP_TIMEOUT``). At the limit the parent sends SIGUSR2 (the
                            harness turns it into an exception, so the partial trace is written),
                            waits ``GRACE`` seconds, then SIGKILLs the whole process group.
memory                      two layers. Kernel: the harness sets ``RLIMIT_DATA`` (private
                            writable memory: heap, anonymous mmaps, thread stacks) to the limit,
                            so ``bytearray(8 << 30)`` fails at once with MemoryError and the
                            script's line is reported. Parent: a watchdog sums the RSS of every
                            process of the trace's session every ``POLL`` s and SIGKILLs the
                            group above the limit (shared memory, file mappings, children).
                            ``RLIMIT_AS`` is NOT used: TF reserves virtual memory in proportion
                            to the thread count (measured: VmPeak 2.2 GB for a tiny Keras fit on
                            2 cores, 3.2 GB with 64+64 TF threads, while RSS stays ~580 MB), so
                            an address-space limit breaks TF on big machines for no reason.
signals, ptrace             the kernel's Landlock (``confine.py``): from ABI 6 (Linux 6.12) no signal
                            from the traced tree reaches a process outside it (``kill(getppid(),
                            9)`` through ctypes fails with EPERM; the linter, the editor, other CI
                            steps live on), nor an abstract Unix socket; from ABI 1 no process
                            outside can be ptraced. Older kernels (x86_64, aarch64): a seccomp
                            filter lets the tree signal only itself and its group, and refuses
                            ptrace and ``setsid`` (so every process stays in the session).
processes                   the child is a session leader (``start_new_session``) and a child
                            subreaper (a daemon's orphans stay in its tree); after it ends, for
                            any reason, every process of its session, of its process group, and
                            every descendant the watchdog saw is SIGKILLed (``kill_tree``: the
                            child is stopped first and killed last). Before leaving, the harness
                            kills what is below it. In the child, the harness refuses process
                            creation (audit hooks, and ``_posixsubprocess.fork_exec``, which
                            multiprocessing's "spawn" calls without an audit event). A tree of
                            more than ``MAX_PROCESSES`` (a fork bomb through ctypes) is stopped
                            (SIGSTOP of its process group first: nothing forks any more) and killed.
network                     if ``unshare --net`` works (root, or an unprivileged user
                            namespace), the child runs in an empty network namespace; in any
                            case the harness refuses socket connect/bind/DNS (audit hooks).
files                       the script runs in a fresh temporary folder (cwd, ``HOME``,
                            ``TMPDIR``); writes outside it are refused by audit hooks (Python
                            file APIs, ``dir_fd`` relative ones included, and ``tf.io.gfile``)
                            and, where the kernel has Landlock (Linux >= 5.13), by the kernel
                            for everything the child and its descendants do (TensorFlow's C++
                            file layer, ctypes). ``RLIMIT_FSIZE`` caps one file. Reads, with
                            Landlock: only the Python installation and import path, system
                            folders, ``/proc/self``, the trace folder, the script's project tree
                            without ``.git`` (``read_roots``) and ``--trace-allow-read`` paths.
output                      stdout/stderr go to pipes the parent drains, keeping the first and
                            last ``OUTPUT_KEEP`` bytes of each: a script printing gigabytes
                            costs neither memory nor disk.
==========================  ===================================================================

The Python-level guards (audit hooks, patched APIs) stop what ordinary training scripts do by
accident (saving checkpoints to absolute paths, downloading datasets, spawning tensorboard);
they are not a security boundary against code written to escape (ctypes can do anything).
The kernel-enforced parts (namespace, Landlock, limits, process-group kill) hold regardless;
one gap remains without a PID namespace: a daemon started through ctypes whose harness then
leaves through ctypes' own ``_exit`` (no cleanup) within one watchdog poll.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tflint_grad.tracer.protocol import (  # shared with the traced child; re-exported here
    FILE_SIZE_LIMIT_MB,  # noqa: F401
    MAX_PROCESSES,
    READY_ENV,
    ProcInfo,
    proc_table,
    signal_name,  # noqa: F401
)

POLL = 0.2  # seconds between watchdog checks
GRACE = 5.0  # seconds between SIGUSR2 (write what you have) and SIGKILL
STARTUP_TIMEOUT = 300.0  # python start + import tensorflow + harness setup, before the script runs
OUTPUT_KEEP = 32 * 1024  # bytes kept from the start and from the end of stdout and of stderr
TIMEOUT_SIGNAL = signal.SIGUSR2

# -- TF1 detection (shared with the harness; text only) -----------------------------------------

# Names only the TF1 API has on the ``tf`` module: the script needs ``sys.modules["tensorflow"]``
# aliased to ``tf.compat.v1`` (+ disable_v2_behavior) to run at all.
_TF1_NAMES = (
    r"(?:placeholder|placeholder_with_default|Session|InteractiveSession|get_variable|"
    r"variable_scope|get_variable_scope|layers\.|contrib\b|global_variables_initializer|"
    r"initialize_all_variables|local_variables_initializer|set_random_seed|GraphKeys|"
    r"get_collection|add_to_collection|trainable_variables\(|global_variables\(|"
    r"train\.(?:GradientDescent|Momentum|Adam|RMSProp|Adagrad|Adadelta|Ftrl|ProximalAdagrad)Optimizer|"
    r"train\.Saver|train\.MonitoredTrainingSession|random_normal\b|truncated_normal\b|random_uniform\b|"
    r"to_float|to_int32|to_int64|nn\.rnn_cell|nn\.dynamic_rnn|summary\.FileWriter|summary\.merge_all|"
    r"squared_difference|assign\(|assign_add\(|assign_sub\(|log\(|reset_default_graph|"
    r"glorot_uniform_initializer|glorot_normal_initializer|uniform_unit_scaling_initializer|"
    r"app\.run|flags\.|losses\.get_regularization_loss|div\(|mod\(|arg_max|arg_min|"
    r"sparse_tensor_to_dense|py_func|Print\()"
)
_TF_ALIAS = re.compile(r"^\s*import\s+tensorflow\s+as\s+(\w+)", re.MULTILINE)
_CONTRIB_IMPORT = re.compile(r"^\s*(?:from|import)\s+tensorflow\.contrib\b", re.MULTILINE)
# The script switches to graph mode itself (compat.v1): it only needs the legacy Keras.
_V1_IMPORT = re.compile(r"import\s+tensorflow\.compat\.v1\b|from\s+tensorflow\.compat\s+import\s+v1\b")
_V1_SWITCH = re.compile(r"\b(?:disable_v2_behavior|disable_eager_execution)\b")
_LEGACY_HINT = re.compile(r"\bimport\s+tf_keras\b|\bfrom\s+tf_keras\b|compat\.v1\.layers\b|compat\.v1\.nn\.rnn_cell\b")


@dataclass(frozen=True)
class TFMode:
    tf1: bool  # run as a TF1 graph script: legacy Keras, and the aliasing below
    alias_v1: bool  # sys.modules["tensorflow"] = tf.compat.v1 (+ disable_v2_behavior) before the script
    legacy_keras: bool  # TF_USE_LEGACY_KERAS=1 (tf.keras = tf_keras, Keras 2)


def detect_tf_mode(text: str) -> TFMode:
    """How to run the script, from its text (NOTES-TF 7: alias only scripts written for TF1)."""
    names = {"tf", *_TF_ALIAS.findall(text)}
    tf1_only = re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, names))) + r")\." + _TF1_NAMES)
    alias = bool(tf1_only.search(text) or _CONTRIB_IMPORT.search(text))
    self_v1 = bool(_V1_IMPORT.search(text) or ("compat.v1" in text and _V1_SWITCH.search(text)))
    legacy = alias or self_v1 or bool(_LEGACY_HINT.search(text))
    return TFMode(tf1=alias or self_v1, alias_v1=alias, legacy_keras=legacy)


# -- network namespace -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def netns_prefix() -> tuple[str, ...]:
    """Command prefix that runs a program in an empty network namespace, or () if impossible."""
    if os.environ.get("TFLINT_GRAD_NO_NETNS"):
        return ()
    exe = shutil.which("unshare")
    if not exe:
        return ()
    for prefix in ((exe, "--net", "--"), (exe, "--net", "--map-root-user", "--")):
        try:
            r = subprocess.run(
                [*prefix, "true"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if r.returncode == 0:
            return prefix
    return ()


# -- what a trace may read ------------------------------------------------------------------------


def project_root(folder: str) -> str:
    """The script's project: the closest folder at or above ``folder`` holding a ``.git``, but
    never the home folder or ``/`` (a dotfiles repository); else ``folder`` itself."""
    folder = os.path.realpath(folder)
    stop = {os.path.realpath(os.path.expanduser("~")), os.path.realpath(os.sep)}
    here = folder
    while here not in stop:
        if os.path.lexists(os.path.join(here, ".git")):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    return folder


def read_roots(origin_dir: str | None, granted: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Read roots of a trace besides the system and Python folders the harness adds itself: the
    script's project tree without ``.git`` (without any dot entry when the project is the home
    folder or ``/``), and what the user granted (``--trace-allow-read``)."""
    from tflint_grad.tracer.confine import without_git

    roots: list[str] = []
    if origin_dir:
        root = project_root(origin_dir)
        exposed = root in (os.path.realpath(os.path.expanduser("~")), os.path.realpath(os.sep))
        entries = without_git(root)
        if exposed:
            entries = [e for e in entries if not os.path.basename(e).startswith(".")]
        roots.extend(entries)
    roots.extend(os.path.realpath(os.path.expanduser(p)) for p in granted)
    return list(dict.fromkeys(roots))


# -- environment -----------------------------------------------------------------------------------

_PASS_ENV = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_NUMERIC",
    "TZ",
    "LD_LIBRARY_PATH",
    "SYSTEMROOT",
    "TERM",
)


def child_env(workdir: str, *, legacy_keras: bool, threads: int, extra_pythonpath: str | None = None) -> dict[str, str]:
    """A small, explicit environment (no credentials or proxies of the caller leak through)."""
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    env.update(
        {
            k: v
            for k, v in os.environ.items()
            if k
            in ("TFLINT_GRAD_NO_PROBES", "TFLINT_GRAD_NO_LINES", "TFLINT_GRAD_PROBE_DEBUG", "TFLINT_GRAD_NO_LANDLOCK")
        }
    )
    env.update(
        {
            "HOME": workdir,
            "TMPDIR": os.path.join(workdir, ".tmp"),
            "XDG_CACHE_HOME": os.path.join(workdir, ".cache"),
            "XDG_CONFIG_HOME": os.path.join(workdir, ".config"),
            "MPLCONFIGDIR": os.path.join(workdir, ".config", "matplotlib"),
            "MPLBACKEND": "Agg",
            "KERAS_BACKEND": "tensorflow",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": "",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONIOENCODING": "utf-8",
            "PYTHONWARNINGS": "ignore::DeprecationWarning",
            "TF_NUM_INTRAOP_THREADS": str(max(1, threads)),
            "TF_NUM_INTEROP_THREADS": str(max(1, min(2, threads))),
            "OMP_NUM_THREADS": str(max(1, threads)),
            "OPENBLAS_NUM_THREADS": str(max(1, threads)),
            "MKL_NUM_THREADS": str(max(1, threads)),
        }
    )
    env["TFLINT_GRAD_PARENT"] = str(os.getpid())  # the harness dies with us (PR_SET_PDEATHSIG)
    if legacy_keras:
        env["TF_USE_LEGACY_KERAS"] = "1"
    if extra_pythonpath:
        env["PYTHONPATH"] = extra_pythonpath
    return env


# -- /proc -------------------------------------------------------------------------------------


def _tree(table: dict[int, ProcInfo], root: int) -> list[ProcInfo]:
    """Processes of ``root``'s session or process group, and its descendants."""
    members = {p.pid for p in table.values() if p.sid == root or p.pgrp == root or p.pid == root}
    children: dict[int, list[int]] = {}
    for p in table.values():
        children.setdefault(p.ppid, []).append(p.pid)
    stack = list(members)
    while stack:
        for c in children.get(stack.pop(), ()):
            if c not in members:
                members.add(c)
                stack.append(c)
    return [table[p] for p in members if p in table]


def kill_tree(root: int, known: dict[int, int] | None = None) -> int:
    """SIGKILL the process group/session of ``root``, its descendants and ``known`` {pid: start}.

    ``root`` is stopped first and killed last: a stopped process cannot fork, and while it exists
    the orphans of a daemon's double fork stay in its tree (the harness is a child subreaper),
    where the next look finds them.

    Returns how many live processes (not zombies) were signalled, ``root`` excluded.
    """

    def others() -> list[int]:
        table = proc_table()
        victims = {p.pid: p for p in _tree(table, root)}
        for pid, start in (known or {}).items():
            p = table.get(pid)
            if p is not None and p.start == start:
                victims[pid] = p
        return [pid for pid, p in victims.items() if p.state not in ("Z", "X") and pid not in (root, os.getpid())]

    for kill in (os.killpg, os.kill):  # freeze root's group and root
        with contextlib.suppress(OSError):
            kill(root, signal.SIGSTOP)
    signalled: set[int] = set()
    for _ in range(5):  # a process may fork while we look: look again
        pids = others()
        if not pids:
            break
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
        signalled.update(pids)
        time.sleep(0.05)
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(OSError):
            kill(root, signal.SIGKILL)
    return len(signalled)


# -- output capture --------------------------------------------------------------------------


class CappedBuffer:
    """Keeps the first and the last ``keep`` bytes written to it."""

    def __init__(self, keep: int = OUTPUT_KEEP) -> None:
        self.keep = keep
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_size = 0
        self.total = 0

    def write(self, data: bytes) -> None:
        self.total += len(data)
        room = self.keep - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data:
            return
        self.tail.append(data)
        self.tail_size += len(data)
        while self.tail and self.tail_size - len(self.tail[0]) >= self.keep:
            self.tail_size -= len(self.tail.popleft())

    def text(self) -> str:
        tail = b"".join(self.tail)[-self.keep :]
        omitted = self.total - len(self.head) - len(tail)
        mid = f"\n[... {omitted} bytes omitted ...]\n".encode() if omitted > 0 else b""
        return (bytes(self.head) + mid + tail).decode("utf-8", "replace")


# -- running ---------------------------------------------------------------------------------

_active: set[int] = set()  # pids of running children (for kill_all)
_active_lock = threading.Lock()


def kill_all() -> None:
    """Kill every running trace (the parent is being interrupted or is exiting)."""
    with _active_lock:
        pids = list(_active)
    for pid in pids:
        kill_tree(pid)


atexit.register(kill_all)


@dataclass
class Outcome:
    returncode: int | None = None
    launch_error: str | None = None
    killed_for: str | None = None  # "timeout" | "startup" | "memory" | "processes"
    ready: bool = False  # the harness reached the user's code
    duration: float = 0.0
    run_duration: float = 0.0  # since ready
    peak_rss_mb: float = 0.0
    peak_processes: int = 0  # live processes in the trace's tree, at most (the harness: 1)
    strays: int = 0  # processes still alive after the child ended (killed)
    stdout: str = ""
    stderr: str = ""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    pid: int | None = None


@dataclass
class Limits:
    timeout: float = 120.0
    memory_mb: int = 4096
    startup_timeout: float = STARTUP_TIMEOUT
    grace: float = GRACE
    output_keep: int = OUTPUT_KEEP
    max_processes: int = MAX_PROCESSES


def run(
    cmd: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    limits: Limits,
    ready_pipe: bool = True,
    launcher: Callable[..., Any] = subprocess.Popen,
) -> Outcome:
    """Run ``cmd`` contained; never raises for anything the child does.

    ``launcher`` starts the child (``subprocess.Popen``'s signature and the parts of its result
    used here: ``pid``, ``stdout``, ``stderr``, ``wait``, ``returncode``); the warm tracer passes
    one that forks the harness from a process that has already imported TensorFlow.
    """
    out = Outcome()
    t0 = time.monotonic()
    ready_r = ready_w = None
    env = dict(env)
    if ready_pipe:
        ready_r, ready_w = os.pipe()
        env[READY_ENV] = str(ready_w)
    try:
        proc = launcher(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            pass_fds=(ready_w,) if ready_w is not None else (),
        )
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        for fd in (ready_r, ready_w):
            if fd is not None:
                os.close(fd)
        out.launch_error = f"{type(e).__name__}: {e}"
        return out
    if ready_w is not None:
        os.close(ready_w)
    out.pid = proc.pid
    with _active_lock:
        _active.add(proc.pid)
    assert proc.stdout is not None and proc.stderr is not None  # both are PIPE
    bufs = {
        proc.stdout.fileno(): CappedBuffer(limits.output_keep),
        proc.stderr.fileno(): CappedBuffer(limits.output_keep),
    }
    open_fds = set(bufs)
    if ready_r is not None:
        open_fds.add(ready_r)
    else:
        out.ready = True
    known: dict[int, int] = {}
    limit_bytes = limits.memory_mb * 1024 * 1024
    ready_at = t0 if out.ready else None
    term_sent_at: float | None = None
    next_poll = 0.0
    exited = False
    try:
        while True:
            now = time.monotonic()
            if _exited(proc.pid):  # not reaped yet: its pid, group and session cannot be reused
                exited = True
                break
            # watchdog
            if now >= next_poll:
                next_poll = now + POLL
                table = proc_table()
                members = [p for p in _tree(table, proc.pid) if p.state not in ("Z", "X")]
                for p in members:
                    known.setdefault(p.pid, p.start)
                rss = sum(p.rss for p in members)
                out.peak_rss_mb = max(out.peak_rss_mb, rss / 2**20)
                out.peak_processes = max(out.peak_processes, len(members))
                if len(members) > limits.max_processes:  # a fork bomb (ctypes' fork has no audit event)
                    out.killed_for = "processes"
                    kill_tree(proc.pid, known)
                elif rss > limit_bytes:  # (forks of one process count its shared pages again)
                    out.killed_for = "memory"
                    kill_tree(proc.pid, known)
            if out.killed_for is None:
                if ready_at is None and now - t0 > limits.startup_timeout:
                    out.killed_for = "startup"
                    kill_tree(proc.pid, known)
                elif ready_at is not None and term_sent_at is None and now - ready_at > limits.timeout:
                    out.killed_for = "timeout"
                    term_sent_at = now
                    try:
                        os.kill(proc.pid, TIMEOUT_SIGNAL)
                    except OSError:
                        pass
            if term_sent_at is not None and now - term_sent_at > limits.grace:
                kill_tree(proc.pid, known)
                term_sent_at = float("inf")
            wait = max(0.0, min(POLL, next_poll - time.monotonic()))
            if not open_fds:
                time.sleep(wait)
                continue
            try:
                readable, _, _ = select.select(list(open_fds), [], [], wait)
            except InterruptedError:
                continue
            for fd in readable:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if fd == ready_r:
                    if data and ready_at is None:
                        ready_at = time.monotonic()
                        out.ready = True
                    if not data:
                        open_fds.discard(fd)
                    continue
                if data:
                    bufs[fd].write(data)
                else:
                    open_fds.discard(fd)
    finally:
        if not exited:
            kill_tree(proc.pid, known)
        # everything left in the session dies with the child (a daemonized grandchild, ...),
        # while the child is still unreaped
        out.strays = kill_tree(proc.pid, known)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL not delivered?
            pass
        out.returncode = proc.returncode
        with _active_lock:
            _active.discard(proc.pid)
        # drain what is left in the pipes (bounded: a surviving writer cannot keep us here)
        deadline = time.monotonic() + 2.0
        pipes = [fd for fd in bufs if fd in open_fds]
        while pipes and time.monotonic() < deadline:
            readable, _, _ = select.select(pipes, [], [], 0.1)
            for fd in readable:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if data:
                    bufs[fd].write(data)
                else:
                    pipes.remove(fd)
        for f in (proc.stdout, proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        if ready_r is not None:
            try:
                os.close(ready_r)
            except OSError:
                pass
    end = time.monotonic()
    out.duration = end - t0
    out.run_duration = end - ready_at if ready_at is not None else 0.0
    buf_out, buf_err = list(bufs.values())  # insertion order: stdout, stderr
    out.stdout, out.stderr = buf_out.text(), buf_err.text()
    out.stdout_bytes, out.stderr_bytes = buf_out.total, buf_err.total
    return out


def _exited(pid: int) -> bool:
    """Has the child exited? (``WNOWAIT``: leaves it unreaped, unlike ``Popen.poll``)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


_FAULT_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')


def crash_line(stderr: str, script: str) -> int | None:
    """Innermost line of ``script`` in a faulthandler dump (``File "...", line N in f``)."""
    if "Fatal Python error" not in stderr and "most recent call first" not in stderr:
        return None
    block = stderr[stderr.rfind("Fatal Python error") :] if "Fatal Python error" in stderr else stderr
    for m in _FAULT_FRAME.finditer(block):  # faulthandler prints the most recent call first
        if os.path.realpath(m.group("file")) == os.path.realpath(script):
            return int(m.group("line"))
    return None


def last_line(text: str, limit: int = 200) -> str:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line and not line.startswith("[... "):
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""
