"""The warm tracer's worker: imports TensorFlow once, then forks one fresh child per trace.

``python -P -m tflint_grad.tracer.zygote``, started by ``warm.WarmPool`` (parent side, TF-free)
with one end of a ``SOCK_SEQPACKET`` socket pair in ``$TFLINT_GRAD_ZYGOTE_FD``. Three kinds of
process (measurements and the reasons: ``bench/PROFILE.md``, "warm tracer"):

- the **zygote** (this module's ``main``): ``import tensorflow`` and the tracer's own modules, then
  checks that nothing a trace must own exists yet (no eager context, ``tf.keras`` unresolved,
  ``TF_USE_LEGACY_KERAS`` unset, ``tf_keras`` not imported: it registers hooks in TensorFlow that a
  Keras 3 trace must not have), says "ready" and waits. It never runs an op or a user's line.
  Each request (the harness command ``sandbox.run`` would start cold, its folder, environment and
  limits, plus the write end of a reply pipe passed with ``SCM_RIGHTS``) gets a supervisor.
  Requests for legacy-Keras traces (``TF_USE_LEGACY_KERAS=1``: TF1 scripts) go to the **legacy
  zygote**, forked from the zygote on the first one: it switches TensorFlow's Keras paths to
  ``tf_keras`` (``switch_keras``) and imports ``tf_keras``, then serves them the same way;
- a **supervisor** per trace, forked from the zygote (single-threaded, so ``unshare`` works):
  enters the empty network namespace the cold command's ``unshare --net`` prefix asks for, then
  runs ``sandbox.run`` itself, with a launcher that forks the harness instead of executing
  Python: the watchdog, the time and memory limits, output capping and the process-tree kill
  are the cold path's code. It writes ``{"started": pid}`` and then the ``Outcome`` to the
  reply pipe, and exits;
- the **harness child**, forked from the supervisor: a new session, stdio on the supervisor's
  pipes, every other descriptor closed (the zygote's socket and reply pipes included), the trace's
  folder, environment and Keras flavour (``switch_keras``), then ``harness.main(argv)``: limits,
  subreaper, Landlock, the audit guard, the script, exactly as in a cold ``python -m
  tflint_grad.tracer.harness``.

The zygote exits when the socket closes (the linter ended or died); supervisors and harness
children die with their parent (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from typing import Any

ZYGOTE_FD_ENV = "TFLINT_GRAD_ZYGOTE_FD"
POOL_HOME_PREFIX = "tflint-grad-warm-"  # the worker's folder (its cwd and $HOME)
MAX_MESSAGE = 1 << 20
# Modules the zygote imports besides TensorFlow (the harness imports them in every trace).
PRELOAD = (
    "tflint_grad.tracer.sandbox",
    "tflint_grad.tracer.harness",
    "tflint_grad.tracer.shims",
    "tflint_grad.tracer.recorder",
    "tflint_grad.tracer.probes",
)
# ... and besides those, the legacy-Keras zygote (what ``TF_USE_LEGACY_KERAS=1`` and ``tf.keras`` import).
LEGACY_PRELOAD = ("tf_keras", "tf_keras.api._v2.keras", "tf_keras.api._v1.keras")
_LEGACY_VALUES = ("true", "True", "1")
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000


# -- what must not exist before a fork ------------------------------------------------------------


def _keras_loaders(tf: Any) -> list[Any]:
    """TensorFlow's lazy ``keras`` attributes (``tf.keras``, ``tf.compat.v1.keras``...)."""
    out = []
    for name, module in list(sys.modules.items()):
        if name == "tensorflow" or name.startswith("tensorflow._api."):
            loader = getattr(module, "__dict__", {}).get("keras")
            if loader is not None and type(loader).__name__ == "KerasLazyLoader":
                out.append(loader)
    return out


def fork_problems(tf: Any) -> list[str]:
    """What would leak from this process into a forked trace (empty: safe to fork)."""
    problems = []
    if os.environ.get("TF_USE_LEGACY_KERAS") is not None:
        problems.append("TF_USE_LEGACY_KERAS is set in the zygote (the Keras flavour is the trace's choice)")
    try:
        from tensorflow.python.eager import context

        if context.context()._context_handle is not None:  # the runtime: thread pools, devices, seeds
            problems.append("the eager context exists")
    except Exception as e:
        problems.append(f"cannot inspect the eager context: {type(e).__name__}: {e}")
    if any(loader.__dict__.get("_tfll_initialized") for loader in _keras_loaders(tf)):
        problems.append("tf.keras is already resolved (Keras 3 or tf_keras)")
    if "tf_keras" in sys.modules:
        problems.append("tf_keras is imported")
    return problems


def switch_keras(legacy: bool) -> None:
    """Make this process's TensorFlow look as if it had been imported with ``TF_USE_LEGACY_KERAS``
    set to ``legacy``: its package paths, which ``from tensorflow.keras import x`` searches, point
    into ``tf_keras`` instead of Keras 3 (``tf.keras`` itself reads the variable when it is first
    touched). The zygote always imports TensorFlow without it."""
    if not legacy:
        return
    from tensorflow.python.tools import module_util

    keras_root = module_util.get_parent_dir_for_name("keras.api")
    legacy_root = module_util.get_parent_dir_for_name("tf_keras.api")
    if not keras_root or not legacy_root:
        return
    keras_api = os.path.join(keras_root, "api") + os.sep
    legacy_api = os.path.join(legacy_root, "api") + os.sep
    for name, module in list(sys.modules.items()):
        if not name.startswith("tensorflow"):
            continue
        namespace = getattr(module, "__dict__", None)
        if not namespace:
            continue
        if "_tf_uses_legacy_keras" in namespace:
            namespace["_tf_uses_legacy_keras"] = True
        path = namespace.get("__path__")
        if isinstance(path, list) and any(p.startswith(keras_api) for p in path):
            module.__path__ = [legacy_api + p[len(keras_api) :] if p.startswith(keras_api) else p for p in path]
    try:  # as TensorFlow's own import does with the legacy flavour (its SavedModel registry)
        __import__("tf_keras.src.optimizers")
    except Exception:
        pass


def rehome() -> None:
    """Point the per-user state Keras 3 computed at import (in the zygote) at this trace's $HOME,
    and create ``~/.keras/keras.json`` as a cold import would."""
    config = sys.modules.get("keras.src.backend.config")
    if config is None:
        return
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    config._KERAS_DIR = home
    config._config_path = os.path.join(home, "keras.json")
    try:
        os.makedirs(home, exist_ok=True)
        if not os.path.exists(config._config_path):
            with open(config._config_path, "w") as fh:
                fh.write(
                    json.dumps(
                        {
                            "floatx": config.floatx(),
                            "epsilon": config.epsilon(),
                            "backend": config.backend(),
                            "image_data_format": config.image_data_format(),
                        },
                        indent=4,
                    )
                )
    except (OSError, AttributeError):
        pass


# -- the harness child ------------------------------------------------------------------------------


def _close_fds_except(keep: set[int]) -> None:
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd >= 3 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _harness_child(argv: list[str], cwd: str, env: dict[str, str], out_w: int, err_w: int, keep: set[int]) -> None:
    """In the forked child: become what ``python -P -m tflint_grad.tracer.harness ARGV`` would be."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    _close_fds_except(keep)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    import tempfile

    tempfile.tempdir = None  # $TMPDIR is the trace's now
    try:
        import numpy as np

        np.random.seed()  # fresh entropy, as in a new process (Python's random reseeds itself at fork)
    except Exception:
        pass
    switch_keras(os.environ.get("TF_USE_LEGACY_KERAS") in _LEGACY_VALUES)
    rehome()
    from tflint_grad.tracer import harness

    harness.main(argv)  # leaves with os._exit


class ForkedHarness:
    """``subprocess.Popen`` look-alike for ``sandbox.run``: forks the harness from this process."""

    def __init__(
        self,
        cmd: list[str],
        *,
        cwd: str,
        env: dict[str, str],
        pass_fds: tuple[int, ...] = (),
        on_start: Any = None,
        **_popen_options: Any,  # stdin/stdout/stderr pipes, new session, close_fds: always so here
    ) -> None:
        argv = harness_argv(cmd)
        if argv is None:
            raise ValueError(f"not a harness command: {cmd[:6]}")
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
        pid = os.fork()
        if pid == 0:
            try:
                os.close(out_r)
                os.close(err_r)
                _harness_child(argv, cwd, env, out_w, err_w, set(pass_fds))
            except BaseException:
                try:
                    os.write(2, traceback.format_exc().encode("utf-8", "replace"))
                finally:
                    os._exit(70)
            os._exit(70)
        os.close(out_w)
        os.close(err_w)
        self.pid = pid
        self.args = cmd
        self.returncode: int | None = None
        self.stdout = open(out_r, "rb", buffering=0)  # noqa: SIM115 - sandbox.run closes them
        self.stderr = open(err_r, "rb", buffering=0)  # noqa: SIM115
        if on_start is not None:
            on_start(pid)

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            time.sleep(0.01)
        return self.returncode  # type: ignore[return-value]


def harness_argv(cmd: list[str]) -> list[str] | None:
    """The harness's arguments in ``[python, -P, -m, tflint_grad.tracer.harness, *argv]``."""
    if len(cmd) >= 4 and cmd[1:4] == ["-P", "-m", "tflint_grad.tracer.harness"]:
        return list(cmd[4:])
    return None


# -- the supervisor -------------------------------------------------------------------------------


def enter_network_namespace(map_root: bool) -> str | None:
    """``unshare --net [--map-root-user]`` for this process; None, or why not (as unshare says)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    flags = _CLONE_NEWNET | (_CLONE_NEWUSER if map_root else 0)
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(flags) != 0:
        return f"unshare: unshare failed: {os.strerror(ctypes.get_errno())}"
    if map_root:
        try:
            for path, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
                with open(f"/proc/self/{path}", "w") as fh:
                    fh.write(text)
        except OSError as e:
            return f"unshare: cannot map the root user: {e}"
    return None


def _write_message(fd: int, message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        n = os.write(fd, data)
        data = data[n:]


def supervise(request: dict[str, Any], reply: int) -> None:
    """One trace, in the supervisor process: ``sandbox.run`` with a forking launcher."""
    from tflint_grad.tracer import sandbox

    netns = request.get("netns") or ""
    if netns:
        problem = enter_network_namespace(map_root=netns == "map-root")
        if problem is not None:  # as the cold command fails: the runner retries without the namespace
            outcome = sandbox.Outcome(returncode=1, stderr=problem + "\n")
            _write_message(reply, {"outcome": outcome.__dict__})
            return
    env = dict(request["env"])
    env["TFLINT_GRAD_PARENT"] = str(os.getpid())  # the harness dies with its supervisor
    fields = set(sandbox.Limits.__dataclass_fields__)
    limits = sandbox.Limits(**{k: v for k, v in request["limits"].items() if k in fields})

    def started(pid: int) -> None:
        try:
            _write_message(reply, {"started": pid, "supervisor": os.getpid()})
        except OSError:  # the linter stopped listening: the trace still runs to its end, contained
            pass

    def launcher(cmd: list[str], **options: Any) -> ForkedHarness:
        return ForkedHarness(cmd, on_start=started, **options)

    outcome = sandbox.run(list(request["cmd"]), cwd=request["cwd"], env=env, limits=limits, launcher=launcher)
    _write_message(reply, {"outcome": outcome.__dict__})


def _start_supervisor(listening: list[socket.socket], request: dict[str, Any], reply: int) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            for sock in listening:
                sock.close()
            _die_with(signal.SIGKILL)
            supervise(request, reply)
        except BaseException:
            code = 70
            try:
                _write_message(reply, {"error": traceback.format_exc(limit=-6)})
            except BaseException:
                pass
        finally:
            os._exit(code)
    os.close(reply)
    return pid


def _die_with(sig: int) -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG


# -- the zygote -------------------------------------------------------------------------------------


def prepare() -> dict[str, Any]:
    t0 = time.monotonic()
    import tensorflow as tf

    for name in PRELOAD:
        __import__(name)
    return {
        "tensorflow": getattr(tf, "__version__", None),
        "import_s": round(time.monotonic() - t0, 3),
        "threads": len(os.listdir("/proc/self/task")),
        "problems": fork_problems(tf),
        "pid": os.getpid(),
    }


def prepare_legacy() -> list[str]:
    """Turn a fork of the zygote into the legacy-Keras zygote: what a cold TF1 trace has after
    ``import tensorflow`` with ``TF_USE_LEGACY_KERAS=1`` and the harness's ``tf.keras``, without
    resolving ``tf.keras`` (the trace does) or creating the eager context. Returns problems."""
    import tensorflow as tf

    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    switch_keras(True)
    for name in LEGACY_PRELOAD:
        __import__(name)
    return [p for p in fork_problems(tf) if not p.startswith(("TF_USE_LEGACY_KERAS", "tf_keras"))]


class Zygote:
    """Forks a supervisor per request until the socket closes; the main zygote hands requests for
    legacy-Keras traces to a legacy zygote it forks on the first one (``prepare_legacy``)."""

    def __init__(self, sock: socket.socket, *, legacy: bool = False) -> None:
        self.sock = sock
        self.legacy = legacy  # this is the legacy zygote
        self.children: set[int] = set()
        self.legacy_sock: socket.socket | None = None
        self.legacy_pid: int | None = None
        self.legacy_broken = False  # then this zygote serves legacy traces itself (``switch_keras``)

    def reap(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if not pid:
                return
            self.children.discard(pid)
            if pid == self.legacy_pid:
                self.legacy_broken = True  # it only leaves with this zygote, unless it failed
                self._drop_legacy()

    def wind_down(self, wait: float = 2.0) -> None:
        """Before leaving: let the legacy zygote go (its socket closes) and reap what has ended, so
        every process's CPU time reaches the linter's accounting; what still runs after ``wait``
        seconds (the linter died mid-trace) dies with this process."""
        if self.legacy_sock is not None:
            self.legacy_sock.close()
            self.legacy_sock = None
        deadline = time.monotonic() + wait
        while self.children and time.monotonic() < deadline:
            self.reap()
            if self.children:
                time.sleep(0.02)

    def _drop_legacy(self) -> None:
        if self.legacy_sock is not None:
            self.legacy_sock.close()
        self.legacy_sock, self.legacy_pid = None, None

    def _start_legacy(self) -> bool:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                mine.close()
                self.sock.close()
                _die_with(signal.SIGKILL)
                if prepare_legacy():
                    code = 70  # unsafe: the requests sent meanwhile fail and run cold
                else:
                    Zygote(theirs, legacy=True).serve()
            except BaseException:
                traceback.print_exc()
                code = 70
            finally:
                os._exit(code)
        theirs.close()
        self.legacy_sock, self.legacy_pid = mine, pid
        self.children.add(pid)
        return True

    def _forward(self, data: bytes, reply: int) -> bool:
        """Hand a legacy request to the legacy zygote (started on first use)."""
        if self.legacy_broken:
            return False
        for _ in range(2):
            if self.legacy_sock is None:
                self._start_legacy()
            try:
                socket.send_fds(self.legacy_sock, [data], [reply])  # type: ignore[arg-type]
                return True
            except OSError:
                self._drop_legacy()
        return False

    def serve(self) -> None:
        while True:
            try:
                readable, _, _ = select.select([self.sock], [], [], 1.0)
            except InterruptedError:
                continue
            self.reap()
            if not readable:
                continue
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, MAX_MESSAGE, 4)
            except OSError:
                data, fds = b"", []
            if not data:
                for fd in fds:
                    os.close(fd)
                self.wind_down()
                return  # the linter closed the pool, or died
            if len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                prepare = data == b'{"prepare": "legacy"}' and not self.legacy and not self.legacy_broken
                if prepare and self.legacy_sock is None:
                    self._start_legacy()  # TF1 traces are coming: import tf_keras meanwhile
                continue
            try:
                request = json.loads(data)
                legacy = request["env"].get("TF_USE_LEGACY_KERAS") in _LEGACY_VALUES
            except (ValueError, KeyError, TypeError, AttributeError):
                os.close(fds[0])
                continue
            if legacy and not self.legacy and self._forward(data, fds[0]):
                os.close(fds[0])
                continue
            listening = [self.sock] + ([self.legacy_sock] if self.legacy_sock is not None else [])
            self.children.add(_start_supervisor(listening, request, fds[0]))


def main() -> None:
    fd = int(os.environ.pop(ZYGOTE_FD_ENV))
    sock = socket.socket(fileno=fd)
    try:
        info = prepare()
    except BaseException as e:
        info = {"problems": [f"import failed: {type(e).__name__}: {e}"]}
    sock.sendall(json.dumps({"ready": info}).encode())
    if not info.get("problems"):
        Zygote(sock).serve()
    # The linter closed the socket, or died: leave now (no interpreter teardown of TensorFlow);
    # the supervisors and their traces follow (PR_SET_PDEATHSIG). The folder is the linter's to
    # remove, unless it died.
    home = os.getcwd()
    if os.path.basename(home).startswith(POOL_HOME_PREFIX) and os.environ.get("HOME") == home:
        shutil.rmtree(home, ignore_errors=True)
    os._exit(0)


if __name__ == "__main__":
    main()
