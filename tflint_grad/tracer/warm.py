"""The warm tracer, parent side (never imports TensorFlow): one process that imported TensorFlow
once (``zygote``) forks a fresh, contained child for every trace.

``WarmPool.run`` takes the very command, folder, environment and limits the runner would give
``sandbox.run`` and returns the same ``sandbox.Outcome``; ``None`` means "the warm path cannot
take this one" (the zygote could not start, died, or the command is not the harness's) and the
runner runs it cold. Any number of traces run at once from one zygote (the runner's ``-j``): each
gets its own supervisor process, forked from the zygote, that runs ``sandbox.run`` with a launcher
forking the harness (see ``zygote``), so the watchdog, limits and kills are the cold path's code.

A pool lives for one ``confirm()`` call (the CLI) or as long as the language server confirms on
save. ``TFLINT_GRAD_NO_WARM=1`` turns the warm path off (every trace imports TensorFlow itself).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from tflint_grad.tracer import sandbox

HARNESS = "tflint_grad.tracer.harness"
ZYGOTE = "tflint_grad.tracer.zygote"
POOL_HOME_PREFIX = "tflint-grad-warm-"  # as zygote.POOL_HOME_PREFIX (that module imports TensorFlow)
CLOSE_WAIT = 5.0  # seconds the zygote gets to leave after the socket closes
REPLY_SLACK = 60.0  # beyond the trace's own limits, before a silent supervisor is given up on


def available() -> str | None:
    """None if this platform and environment allow the warm path, else why not."""
    if os.environ.get("TFLINT_GRAD_NO_WARM"):
        return "disabled by TFLINT_GRAD_NO_WARM"
    if not sys.platform.startswith("linux") or not hasattr(os, "fork") or not hasattr(socket, "send_fds"):
        return "needs Linux (fork, SCM_RIGHTS)"
    return None


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return False


def _package_root() -> str:
    import tflint_grad

    return os.path.dirname(os.path.dirname(os.path.abspath(tflint_grad.__file__)))


def split_command(cmd: list[str]) -> tuple[str, list[str]] | None:
    """(network namespace: "" | "net" | "map-root", harness command) of a runner command, or None
    if the prefix asks for a confinement the warm path does not know (it then runs cold)."""
    cmd = list(cmd)
    prefix = list(sandbox.netns_prefix())
    netns = ""
    if prefix and cmd[: len(prefix)] == prefix:
        netns = "map-root" if "--map-root-user" in prefix else "net"
        cmd = cmd[len(prefix) :]
    if len(cmd) < 4 or cmd[1:4] != ["-P", "-m", HARNESS]:
        return None
    return netns, cmd


class WarmPool:
    """A zygote for ``python`` (started on first use) and the traces it serves."""

    def __init__(self, python: str = sys.executable, *, threads: int = 1, startup_timeout: float | None = None) -> None:
        self.python = python
        self.threads = max(1, threads)
        self.startup_timeout = sandbox.STARTUP_TIMEOUT if startup_timeout is None else startup_timeout
        self.unavailable: str | None = available()  # why the warm path is off (then it stays off)
        self.info: dict[str, Any] = {}
        self.served = 0
        self.expect_legacy = False  # TF1 traces will come: the worker prepares its legacy-Keras fork early
        self.errors: list[str] = []  # traces the warm path gave up on (they ran cold)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._home: str | None = None
        self._closed = False
        atexit.register(self.close)

    # -- the zygote ---------------------------------------------------------------------------
    def start(self) -> bool:
        """Start the zygote if it is not running; False if the warm path is unavailable."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return True
            self._stop_locked()
            if self.unavailable is not None or self._closed:
                return False
            problem = self._start_locked()
            if problem is not None:
                self.unavailable = problem
                self._stop_locked(wait=0)
                return False
            return True

    def _start_locked(self) -> str | None:
        home = os.path.realpath(tempfile.mkdtemp(prefix=POOL_HOME_PREFIX))
        self._home = home
        os.makedirs(os.path.join(home, ".tmp"))
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = sandbox.child_env(home, legacy_keras=False, threads=self.threads, extra_pythonpath=_package_root())
        env.pop("TFLINT_GRAD_PARENT", None)  # the zygote leaves when its socket closes
        env["TFLINT_GRAD_ZYGOTE_FD"] = str(child.fileno())
        log = open(os.path.join(home, "zygote.log"), "wb")  # noqa: SIM115 - closed below
        try:
            self._proc = subprocess.Popen(
                [self.python, "-P", "-m", ZYGOTE],
                cwd=home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
                close_fds=True,
                pass_fds=(child.fileno(),),
            )
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            parent.close()
            return f"could not start: {type(e).__name__}: {e}"
        finally:
            child.close()
            log.close()
        self._sock = parent
        deadline = time.monotonic() + self.startup_timeout
        while True:
            wait = deadline - time.monotonic()
            if wait <= 0:
                return f"TensorFlow did not finish importing within {self.startup_timeout:g} s"
            readable, _, _ = select.select([parent], [], [], min(wait, 1.0))
            if readable:
                break
            if self._proc.poll() is not None:
                return f"exited while importing TensorFlow (exit code {self._proc.returncode}){self._log_hint()}"
        try:
            data = parent.recv(sandbox.OUTPUT_KEEP)
            info = json.loads(data)["ready"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return f"no answer from the zygote ({type(e).__name__}: {e}){self._log_hint()}"
        self.info = info if isinstance(info, dict) else {}
        problems = self.info.get("problems")
        if problems:
            return "unsafe to fork: " + "; ".join(map(str, problems))
        if self.expect_legacy:
            self._send_prepare_locked()
        return None

    def _send_prepare_locked(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.send(b'{"prepare": "legacy"}')

    def expect(self, *, legacy: bool) -> None:
        """Say that legacy-Keras (TF1) traces will come, so that the worker prepares for them
        while the first traces run (else the first TF1 trace waits for it)."""
        if legacy and not self.expect_legacy:
            with self._lock:
                self.expect_legacy = True
                if self._proc is not None and self._proc.poll() is None:
                    self._send_prepare_locked()

    def _log_hint(self) -> str:
        if not self._home:
            return ""
        try:
            with open(os.path.join(self._home, "zygote.log"), "rb") as fh:
                line = sandbox.last_line(fh.read()[-8192:].decode("utf-8", "replace"))
        except OSError:
            return ""
        return f": {line}" if line else ""

    def _stop_locked(self, wait: float = CLOSE_WAIT) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()  # the zygote's cue to leave
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait)
            if proc.poll() is None:  # still there (unreaped: its pid cannot be reused meanwhile)
                sandbox.kill_tree(proc.pid)  # and whatever it left (a supervisor, a trace)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=CLOSE_WAIT)
        if self._home:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._stop_locked()
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    def __enter__(self) -> WarmPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    # -- one trace ---------------------------------------------------------------------------
    def run(self, cmd: list[str], *, cwd: str, env: dict[str, str], limits: sandbox.Limits) -> sandbox.Outcome | None:
        """``sandbox.run(cmd, ...)`` from the zygote; None: run it cold instead."""
        split = split_command(cmd)
        if split is None or not _same_file(split[1][0], self.python):
            return None
        netns, harness_cmd = split
        if not self.start():
            return None
        request = {
            "cmd": harness_cmd,
            "cwd": cwd,
            "env": env,
            "netns": netns,
            "limits": dataclasses.asdict(limits),
        }
        reply_r, reply_w = os.pipe()
        try:
            with self._lock:
                sock = self._sock
                if sock is None:
                    return None
                try:
                    socket.send_fds(sock, [json.dumps(request).encode()], [reply_w])
                except OSError as e:  # the zygote is gone: start() restarts it next time
                    self.errors.append(f"the worker process is gone ({type(e).__name__}: {e})")
                    return None
            os.close(reply_w)
            reply_w = -1
            deadline = time.monotonic() + limits.startup_timeout + limits.timeout + limits.grace + REPLY_SLACK
            outcome = self._await(reply_r, deadline)
            if outcome is not None:
                self.served += 1
            return outcome
        finally:
            for fd in (reply_r, reply_w):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def _await(self, reply: int, deadline: float) -> sandbox.Outcome | None:
        buffer = b""
        child: int | None = None  # the running trace (its supervisor reaps it)
        registered: int | None = None
        supervisor: int | None = None
        try:
            while True:
                wait = deadline - time.monotonic()
                if wait <= 0:  # a wedged supervisor: the finally below kills the trace
                    self.errors.append("no answer from the worker in time")
                    return None
                readable, _, _ = select.select([reply], [], [], min(wait, 1.0))
                if not readable:
                    continue
                data = os.read(reply, 65536)
                if not data:
                    self.errors.append("the worker's supervisor process ended without an answer")
                    return None
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    try:
                        message = json.loads(line)
                    except ValueError:
                        self.errors.append("an unreadable answer from the worker")
                        return None
                    if "started" in message:
                        child = registered = int(message["started"])
                        supervisor = int(message.get("supervisor") or 0) or None
                        with sandbox._active_lock:  # Ctrl-C in the linter: sandbox.kill_all ends it
                            sandbox._active.add(registered)
                    elif "outcome" in message:
                        fields = set(sandbox.Outcome.__dataclass_fields__)
                        outcome = sandbox.Outcome(**{k: v for k, v in message["outcome"].items() if k in fields})
                        child = None  # ended and reaped by its supervisor: never signal that pid again
                        return outcome
                    else:
                        self.errors.append(sandbox.last_line(str(message.get("error") or message)))
                        return None
        finally:
            if child is not None:
                sandbox.kill_tree(child)
                if supervisor is not None:
                    with contextlib.suppress(OSError):
                        os.kill(supervisor, signal.SIGKILL)
            if registered is not None:
                with sandbox._active_lock:
                    sandbox._active.discard(registered)
