"""The traced child process: ``python -P -m tflint_grad.tracer.harness --script S --out R ...``.

Runs ONLY in the subprocess the runner starts (``sandbox.run``). In order:

1. ``confine.confine(...)`` before any thread exists: resource limits (``RLIMIT_DATA`` = the
   memory limit, no core files, ``RLIMIT_FSIZE``), child subreaper, Landlock (writes to the trace
   folder only; reads to Python, the system and the ``--allow-read`` roots the parent computed;
   no signal, ptrace or abstract socket out of the sandbox; see ``confine.py``), then
   faulthandler on stderr (the parent reads the script line of a segfault from it);
2. environment for TF1 scripts (``TF_USE_LEGACY_KERAS=1``, also set by the parent), then
   ``import tensorflow``; for scripts written against the TF1 API:
   ``import tensorflow.compat.v1 as v1; v1.disable_v2_behavior(); sys.modules["tensorflow"] = v1``;
3. ``shims.apply_all``: tf.contrib stand-ins, saving stubs, synthetic keras.datasets, gfile guard;
4. the recorder, then the probes (``probes.install(recorder, tf, tf1=..., steps=N)``) when the
   module exists, then the step counter (its patches wrap the probes', so the call that would be
   step N+1 stops before any probe sees it);
5. the sandbox audit hook (network, writes outside the folder, process creation), installed
   last so that TensorFlow's own import and setup are unaffected; signals that would end the
   process silently (SIGTERM, SIGALRM...) raise ``ScriptSignal`` instead, SIGINT raises
   KeyboardInterrupt;
6. signals "ready" to the parent (the wall clock starts), runs the script with
   ``runpy.run_path(copy, run_name="__main__")``, recording its executed lines;
7. ``probes.finalize(recorder)``, then the result JSON (atomically), ``kill_descendants`` and
   ``os._exit`` (threads the script left running and its atexit handlers do not hold the trace up).

Outcomes: ``StopRun`` -> "stopped"; ``sys.exit(0)`` -> "finished" ("script called sys.exit(0)
at line N"), non-zero -> "error"; an exception -> "error" ("script stopped at line N: Type:
message", ``error_line``; what the script wrote is quoted «like this», ``scripttext``; a read
the sandbox refused names the path); a terminating signal -> "error" ("script terminated by SIGTERM at
line N"); MemoryError (``RLIMIT_DATA``) -> "memory"; SIGUSR2 from the parent -> "timeout" with
the partial trace ("timed out at line N"); ``os._exit`` in the script is replaced by a function that
finalizes and writes the partial trace first ("script called os._exit(0) at line N").

How training steps are counted (``StepCounter``): each of these is a *source*; the step count
is the count of the highest-priority source that has fired (fit > session > function > apply >
gradient), and before any counted call the harness raises ``StopRun`` (a BaseException, so
``except Exception`` in the script does not swallow it) once that count reached the limit:

- ``fit``: a callback injected into Keras 3 / tf_keras ``Model.fit`` (batch begin/end);
- ``session``: TF1 ``BaseSession.run`` calls whose fetches are, or depend on, an op returned by
  an optimizer's ``apply_gradients``/``minimize`` in graph mode;
- ``function``: eager calls of a ``tf.function`` whose trace ran ``tape.gradient`` or an
  optimizer update (the Python body of a compiled step only runs while tracing);
- ``apply``: eager optimizer updates (Keras 3 ``BaseOptimizer.apply``, tf_keras optimizers'
  ``apply_gradients``, TF1 ``Optimizer.apply_gradients``);
- ``gradient``: eager ``GradientTape.gradient`` (loops that update variables by hand).

Executed lines come from a ``sys.settrace`` tracer that only traces the script's own code
objects, plus the code AutoGraph generates from them (mapped back through AutoGraph's source
map, so lines inside ``@tf.function`` bodies count).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import functools
import json
import os
import runpy
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from tflint_grad.scripttext import quote

# the kernel-side containment lives in confine.py (re-exported: tests and workers use these names)
from tflint_grad.tracer.confine import (  # noqa: F401
    Confinement,
    become_subreaper,
    confine,
    is_refused_read,
    landlock,
    landlock_abi,
    set_limits,
)

HARNESS_VERSION = 1
REASON_LIMIT = 300
PATH_LIMIT = 200  # characters of a path the script chose, in a reason


class StopRun(BaseException):
    """The step limit was reached: unwinds the script."""


class TraceTimeout(BaseException):
    """The parent's wall-clock limit (SIGUSR2): unwinds the script so the partial trace is kept."""


class ScriptSignal(BaseException):
    """A signal whose default action ends the process (the script sent it to itself, or armed an alarm)."""


# Signals that would end the process without a word; while the script runs they raise ScriptSignal
# instead ("script terminated by SIGTERM at line 12"), unless the script installs its own handler.
TERMINATING_SIGNALS = tuple(
    getattr(signal, n)
    for n in ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGALRM", "SIGUSR1", "SIGVTALRM", "SIGPROF")
    if hasattr(signal, n)
)


# -- kernel-side containment (tflint_grad/tracer/confine.py) ---------------------------------


def confine_writes(folders: list[str], files: tuple[str, ...] = ("/dev/null",)) -> str:
    """Landlock without read confinement (writes, and signals/ptrace/TCP where the kernel has
    them); a note saying what was done. Kept for callers of the first version: ``confine(...)``
    applies every protection."""
    c = landlock(folders, None)
    if not c.active:
        return "kernel write confinement (Landlock) unavailable: " + "; ".join(c.missing)
    return f"kernel write confinement (Landlock ABI {c.abi}): " + ", ".join(folders)


def _own_children() -> list[int] | None:
    """Children of this process from ``/proc/self/task/*/children`` (readable under the read
    confinement, unlike other processes' ``/proc/PID``); None where the kernel lacks the file."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    pids: set[int] = set()
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as fh:
                pids.update(int(p) for p in fh.read().split())
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            return None
    return sorted(pids)


def _reap() -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def kill_descendants() -> int:
    """SIGKILL every live process below this one (before leaving: nothing the script started
    outlives the trace). Returns how many were signalled.

    Through the children of this process only: killed children are reaped, their orphans come
    back to this process (a child subreaper), and the next round kills them."""
    me, total = os.getpid(), 0
    for _ in range(50):  # a process may fork while we look: look again
        children = _own_children()
        if children is None:
            return total + _kill_descendants_from_table(me)
        if not children:
            break
        refused = 0
        for sig in (signal.SIGSTOP, signal.SIGKILL):  # freeze first: a stopped process cannot fork
            for pid in children:
                try:
                    os.kill(pid, sig)
                except PermissionError:  # the seccomp fallback (confine.py): the parent kills them
                    refused += 1
                except OSError:
                    pass
        if refused == 2 * len(children):
            return total
        total += len(children)
        time.sleep(0.01)
        _reap()
    return total


def _kill_descendants_from_table(me: int) -> int:
    from tflint_grad.tracer.protocol import proc_table

    total = 0
    for _ in range(5):
        table = proc_table()
        children: dict[int, list[int]] = {}
        for p in table.values():
            children.setdefault(p.ppid, []).append(p.pid)
        stack, live = [me], []
        while stack:
            for c in children.get(stack.pop(), ()):
                stack.append(c)
                if table[c].state not in ("Z", "X"):
                    live.append(c)
        if not live:
            break
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in live:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
        total += len(live)
        time.sleep(0.02)
    return total


# -- the sandbox audit hook -------------------------------------------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
NETWORK_MESSAGE = "network access is disabled while tracing"


class Guard:
    """Refuses network access, writes outside ``root`` and process creation (audit hooks)."""

    NETWORK = frozenset(
        {
            "socket.connect",
            "socket.bind",
            "socket.getaddrinfo",
            "socket.gethostbyname",
            "socket.gethostbyaddr",
            "socket.getnameinfo",
            "socket.sendto",
            "socket.sendmsg",
        }
    )
    PROCESS = frozenset(
        {
            "subprocess.Popen",
            "os.system",
            "os.fork",
            "os.forkpty",
            "os.exec",
            "os.posix_spawn",
            "os.spawn",
            "os.startfile",
            "pty.spawn",
        }
    )
    ONE_PATH = frozenset(
        {
            "os.remove",
            "os.rmdir",
            "os.mkdir",
            "os.truncate",
            "os.chmod",
            "os.chown",
            "os.utime",
            "os.chflags",
            "os.lchflags",
            "os.lchmod",
            "os.setxattr",
            "os.removexattr",
            "os.mkfifo",
            "os.mknod",
            "shutil.rmtree",
            "shutil.chown",
            "shutil.make_archive",
        }
    )
    DST_PATH = frozenset(
        {"os.link", "os.symlink", "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.copytree"}
    )
    # position of the ``dir_fd`` argument in the audit event (-1: none): ``os.remove(name, dir_fd=fd)``
    # (shutil.rmtree's walk, or a script holding a descriptor of a folder outside) is relative to fd
    DIR_FD = {
        "os.remove": 1,
        "os.rmdir": 1,
        "os.mkdir": 2,
        "os.chmod": 2,
        "os.mkfifo": 2,
        "os.chown": 3,
        "os.utime": 3,
        "os.mknod": 3,
    }

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self.bypass = False  # the harness's own writes (result file)
        self.installed = False
        self.refused: list[str] = []
        self.messages: set[str] = set()

    def inside(self, path: Any) -> bool:
        if isinstance(path, int):
            return True  # an already open descriptor
        try:
            p = os.fsdecode(path)
        except TypeError:
            p = str(path)
        if "://" in p:
            return False
        if p in (os.devnull, "/dev/stdout", "/dev/stderr"):
            return True
        real = os.path.realpath(os.path.join(os.getcwd(), p))
        return real == self.root or real.startswith(self.root + os.sep)

    def check_write(self, path: Any) -> None:
        if self.bypass or self.inside(path):
            return
        shown = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
        resolved = ""
        if "://" not in shown:
            with contextlib.suppress(OSError, ValueError):
                absolute = os.path.normpath(os.path.join(os.getcwd(), shown))
                real = os.path.realpath(absolute)
                if real != absolute:  # a linked neighbour of the script, or a path through one
                    if absolute.startswith(self.root + os.sep):
                        shown = os.path.relpath(absolute, self.root)
                    resolved = f" (resolves to {quote(real, PATH_LIMIT)})"
        # the path is the script's choice: its own words (scripttext)
        self._refuse(
            f"writing outside the trace's temporary folder is disabled while tracing: {quote(shown, PATH_LIMIT)}{resolved}"
        )

    def _refuse(self, message: str) -> None:
        if len(self.refused) < 20:
            self.refused.append(message)
        if len(self.messages) < 1000:
            self.messages.add(message)
        raise PermissionError(message)

    def said(self, e: BaseException) -> bool:
        """Is ``e`` one of the guard's own refusals (its words, the script's parts quoted)?"""
        return isinstance(e, PermissionError) and len(e.args) == 1 and e.args[0] in self.messages

    def _open(self, args: tuple) -> None:
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        if (isinstance(flags, int) and flags & _WRITE_FLAGS) or (
            isinstance(mode, str) and any(c in mode for c in "wax+")
        ):
            self.check_write(path)

    def _network(self, args: tuple) -> None:
        self._refuse(NETWORK_MESSAGE)

    @staticmethod
    def at(path: Any, dir_fd: Any) -> Any:
        """``path`` as the kernel sees it when given relative to the descriptor ``dir_fd``."""
        if not isinstance(dir_fd, int) or dir_fd < 0 or isinstance(path, int):
            return path
        try:
            p = os.fsdecode(path)
        except TypeError:
            return path
        if os.path.isabs(p):
            return p
        try:
            return os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), p)
        except OSError:
            return os.path.join(f"/proc/self/fd/{dir_fd}", p)  # realpath resolves it too

    def _rename(self, args: tuple) -> None:  # os.rename / os.replace / os.link: src, dst, src_dir_fd, dst_dir_fd
        fds = tuple(args[2:4]) + (None, None)
        self.check_write(self.at(args[0], fds[0]))
        self.check_write(self.at(args[1], fds[1]))

    def _one_path(self, event: str, args: tuple) -> None:
        if args:
            i = self.DIR_FD.get(event, -1)
            self.check_write(self.at(args[0], args[i]) if 0 < i < len(args) else args[0])

    def _dst_path(self, args: tuple) -> None:
        if len(args) > 1:
            self.check_write(self.at(args[1], args[2]) if len(args) > 2 else args[1])  # os.symlink: dir_fd 3rd

    def _mkdir(self, args: tuple) -> None:
        # os.makedirs(existing, exist_ok=True) outside: the mkdir fails with EEXIST and changes nothing
        path = self.at(args[0], args[2]) if len(args) > 2 else args[0] if args else None
        if path is not None and not isinstance(path, int) and os.path.isdir(path):
            return
        self._one_path("os.mkdir", args)

    def _sqlite(self, args: tuple) -> None:
        if args and args[0] not in (":memory:", "", b":memory:"):
            self.check_write(args[0])

    def _kill(self, args: tuple) -> None:
        if args and args[0] not in (0, os.getpid()):
            self._refuse("signalling other processes is disabled while tracing")

    def _killpg(self, args: tuple) -> None:
        if args and args[0] != os.getpgrp():
            self._refuse("signalling other processes is disabled while tracing")

    def _handlers(self) -> dict[str, Callable[[tuple], None]]:
        table: dict[str, Callable[[tuple], None]] = {
            "open": self._open,
            "os.rename": self._rename,
            "sqlite3.connect": self._sqlite,
            "os.kill": self._kill,
            "os.killpg": self._killpg,
        }
        for event in self.NETWORK:
            table[event] = self._network
        for event in self.PROCESS:
            table[event] = functools.partial(self._process, event)
        for event in self.ONE_PATH:
            table[event] = functools.partial(self._one_path, event)
        table["os.mkdir"] = self._mkdir
        for event in self.DST_PATH:
            table[event] = self._dst_path
        table["os.link"] = self._rename  # src, dst, src_dir_fd, dst_dir_fd
        return table

    def _process(self, event: str, args: tuple) -> None:
        self._refuse(f"starting processes is disabled while tracing ({event})")

    def make_hook(self) -> Callable[[str, tuple], None]:
        get = self._handlers().get
        guard = self

        def hook(event: str, args: tuple) -> None:  # called for every audit event: keep it cheap
            handler = get(event)
            if handler is not None and not guard.bypass:
                handler(args)

        return hook

    def install(self) -> None:
        if not self.installed:
            sys.addaudithook(self.make_hook())
            self._patch_unaudited()
            self.installed = True

    def _patch_unaudited(self) -> None:
        """Two doors the audit events leave open to plain Python code.

        ``_posixsubprocess.fork_exec`` raises no event when called directly, as multiprocessing's
        "spawn" and "forkserver" start methods do: the new interpreter would re-run the script
        with no hooks at all. ``os.open(name, flags, dir_fd=fd)`` raises "open" without the fd.
        """
        guard = self
        try:
            import _posixsubprocess

            real_fork_exec = _posixsubprocess.fork_exec

            def fork_exec(*args, **kwargs):
                if not guard.bypass:
                    guard._refuse("starting processes is disabled while tracing (multiprocessing/_posixsubprocess)")
                return real_fork_exec(*args, **kwargs)

            _posixsubprocess.fork_exec = fork_exec
        except (ImportError, AttributeError):
            pass
        real_open = os.open

        @functools.wraps(real_open)
        def open_(path, flags, mode=0o777, *, dir_fd=None):
            if dir_fd is not None and isinstance(flags, int) and flags & _WRITE_FLAGS and not guard.bypass:
                guard.check_write(guard.at(path, dir_fd))
            return real_open(path, flags, mode, dir_fd=dir_fd)

        os.open = open_
        if real_open in os.supports_dir_fd:
            os.supports_dir_fd.add(open_)

    @contextlib.contextmanager
    def allowed(self):
        prev, self.bypass = self.bypass, True
        try:
            yield
        finally:
            self.bypass = prev


# -- executed lines and AutoGraph line maps ---------------------------------------------------


class LineTracer:
    """Lines of the script that ran (``sys.settrace``, script code objects only)."""

    def __init__(self, script: str, line_maps: dict[str, dict[int, int]]) -> None:
        self.script = script
        self.line_maps = line_maps  # AutoGraph file -> {generated line: script line}
        self.lines: set[int] = set()
        self._mapped: dict[str, Callable] = {}

    def _local(self, frame, event, arg):
        if event == "line":
            self.lines.add(frame.f_lineno)
        return self._local

    def _mapped_tracer(self, filename: str) -> Callable:
        tracer = self._mapped.get(filename)
        if tracer is None:
            mapping = self.line_maps[filename]
            lines = self.lines

            def tracer(frame, event, arg):
                if event == "line":
                    line = mapping.get(frame.f_lineno)
                    if line is not None:
                        lines.add(line)
                return tracer

            self._mapped[filename] = tracer
        return tracer

    def make_global_trace(self) -> Callable:
        script, line_maps, local, mapped = self.script, self.line_maps, self._local, self._mapped_tracer

        def global_trace(frame, event, arg):  # called for every Python call: keep it cheap
            filename = frame.f_code.co_filename
            if filename == script:
                return local  # the "call" line itself (0 for a module) is not a statement that ran
            if filename in line_maps:
                return mapped(filename)
            return None

        return global_trace

    def start(self) -> None:
        if os.environ.get("TFLINT_GRAD_NO_LINES"):  # debugging knob
            return
        trace = self.make_global_trace()
        threading.settrace(trace)
        sys.settrace(trace)

    def stop(self) -> None:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]


def capture_autograph_maps(script: str, line_maps: dict[str, dict[int, int]]) -> bool:
    """Record AutoGraph's generated-line -> script-line map for functions of ``script``."""
    try:
        from tensorflow.python.autograph.pyct import loader
    except Exception:
        return False
    orig = loader.load_ast
    real_script = os.path.realpath(script)

    def load_ast(nodes, *args, **kwargs):
        result = orig(nodes, *args, **kwargs)
        try:
            source_map = result[2]
            for loc, origin in (source_map or {}).items():
                if origin.loc.filename == script or os.path.realpath(origin.loc.filename) == real_script:
                    line_maps.setdefault(loc.filename, {})[loc.lineno] = origin.loc.lineno
        except Exception:
            pass
        return result

    loader.load_ast = load_ast
    return True


def make_recorder(script: str, line_maps: dict[str, dict[int, int]], counter_ref: list):
    """The Recorder, aware of AutoGraph-generated frames; ``uncounted()`` pauses step counting."""
    from tflint_grad.tracer.recorder import Recorder

    class HarnessRecorder(Recorder):
        def __init__(self) -> None:
            super().__init__(script)
            self.line_maps = line_maps
            self.step_limit = 0
            self._raw = script

        def _line(self, frame) -> int | None:
            filename = frame.f_code.co_filename
            if filename == self._raw or filename == self.script:
                return frame.f_lineno
            mapping = self.line_maps.get(filename)
            if mapping is not None:
                return mapping.get(frame.f_lineno)
            return None

        def user_line(self, outermost: bool = False) -> int | None:
            frame = sys._getframe(1)
            found = None
            while frame is not None:
                line = self._line(frame)
                if line is not None:
                    found = line
                    if not outermost:
                        return found
                frame = frame.f_back
            return found

        @contextlib.contextmanager
        def uncounted(self):
            """Calls made by probes themselves (extra gradients...) are not training steps."""
            counter = counter_ref[0] if counter_ref else None
            if counter is None:
                yield
                return
            prev, counter.enabled = counter.enabled, False
            try:
                yield
            finally:
                counter.enabled = prev

    return HarnessRecorder()


# -- step counting --------------------------------------------------------------------------


class StepCounter:
    PRIORITY = ("fit", "session", "function", "apply", "gradient")

    def __init__(self, recorder: Any, limit: int) -> None:
        self.recorder = recorder
        self.limit = limit
        self.counts = dict.fromkeys(self.PRIORITY, 0)
        self.stopped = False
        self.enabled = True
        self.train_ops: set[tuple[int, str]] = set()
        self.training_functions: dict[int, Any] = {}
        self.patched: list[str] = []
        self.notes: list[str] = []
        self._tls = threading.local()
        self._fetch_cache: dict[tuple[int, str], tuple[int, bool]] = {}
        self._eager: Callable[[], bool] = lambda: True

    @property
    def steps(self) -> int:
        for s in self.PRIORITY:
            if self.counts[s]:
                return self.counts[s]
        return 0

    def before(self, source: str) -> None:
        if self.enabled and self.steps >= self.limit:
            self.stopped = True
            raise StopRun(f"{self.steps} training steps reached")

    def after(self, source: str) -> None:
        if self.enabled:
            self.counts[source] += 1
            self.recorder.step = self.steps

    # thread-local state
    def _stack(self) -> list:
        st = getattr(self._tls, "stack", None)
        if st is None:
            st = self._tls.stack = []
        return st

    def _depth(self) -> dict:
        d = getattr(self._tls, "depth", None)
        if d is None:
            d = self._tls.depth = {}
        return d

    def mark_training(self) -> bool:
        """Inside a tf.function trace: the outermost eagerly-called Function trains."""
        stack = self._stack()
        if stack:
            self.training_functions[id(stack[0])] = stack[0]
            return True
        return False

    @contextlib.contextmanager
    def _counted(self, source: str):
        depth = self._depth()
        outer = depth.get(source, 0) == 0
        if outer:
            self.before(source)
        depth[source] = depth.get(source, 0) + 1
        try:
            yield
        finally:
            depth[source] -= 1
        if outer:
            self.after(source)

    def _patch(self, path: str, make: Callable[[Callable], Callable]) -> None:
        from tflint_grad.tracer.shims import _get

        owner_path, _, name = path.rpartition(".")
        owner = _get(owner_path)
        orig = getattr(owner, name, None) if owner is not None else None
        if orig is None:
            return
        wrapper = make(orig)
        try:
            wrapper.__wrapped__ = orig  # type: ignore[attr-defined]
            wrapper.__name__ = getattr(orig, "__name__", name)
            wrapper.__qualname__ = getattr(orig, "__qualname__", name)
            wrapper.__doc__ = getattr(orig, "__doc__", None)
        except (AttributeError, TypeError):
            pass
        setattr(owner, name, wrapper)
        self.patched.append(path.split(":")[-1])

    # -- sources ----------------------------------------------------------------------
    def install(self, tf1_graph: bool) -> None:
        from tensorflow.python.eager import context

        self._eager = context.executing_eagerly
        counter = self

        def gradient(orig):
            def wrapper(tape, *args, **kwargs):
                if counter._eager():
                    with counter._counted("gradient"):
                        return orig(tape, *args, **kwargs)
                counter.mark_training()
                return orig(tape, *args, **kwargs)

            return wrapper

        def optimizer_update(orig):
            def wrapper(opt, *args, **kwargs):
                if counter._eager():
                    with counter._counted("apply"):
                        return orig(opt, *args, **kwargs)
                if counter.mark_training():
                    return orig(opt, *args, **kwargs)
                result = orig(opt, *args, **kwargs)
                counter.add_train_op(result)  # TF1 graph: remember the train op
                return result

            return wrapper

        self._patch("tensorflow.python.eager.backprop:GradientTape.gradient", gradient)
        self._patch("keras.src.optimizers.base_optimizer:BaseOptimizer.apply", optimizer_update)
        self._patch("tensorflow.python.training.optimizer:Optimizer.apply_gradients", optimizer_update)
        if "tf_keras" in sys.modules:
            self._patch("tf_keras.src.optimizers.optimizer:_BaseOptimizer.apply_gradients", optimizer_update)
            self._patch("tf_keras.src.optimizers.legacy.optimizer_v2:OptimizerV2.apply_gradients", optimizer_update)

        def function_call(orig):
            def wrapper(fn, *args, **kwargs):
                if not counter._eager():
                    return orig(fn, *args, **kwargs)
                stack = counter._stack()
                outermost = not stack
                if outermost and id(fn) in counter.training_functions:
                    counter.before("function")
                stack.append(fn)
                try:
                    result = orig(fn, *args, **kwargs)
                finally:
                    stack.pop()
                if outermost and id(fn) in counter.training_functions:
                    counter.after("function")
                return result

            return wrapper

        self._patch(
            "tensorflow.python.eager.polymorphic_function.polymorphic_function:Function.__call__", function_call
        )

        def session_run(orig):
            def wrapper(sess, fetches, *args, **kwargs):
                if counter.train_ops and counter.enabled and counter.fetches_training(sess, fetches):
                    with counter._counted("session"):
                        return orig(sess, fetches, *args, **kwargs)
                return orig(sess, fetches, *args, **kwargs)

            return wrapper

        self._patch("tensorflow.python.client.session:BaseSession.run", session_run)

        self._patch_fit("keras.src.models.model:Model.fit", "keras.src.callbacks.callback:Callback")
        if "tf_keras" in sys.modules:
            self._patch_fit("tf_keras.src.engine.training:Model.fit", "tf_keras.src.callbacks:Callback")
            self._patch_fit("tf_keras.src.engine.training_v1:Model.fit", "tf_keras.src.callbacks:Callback")

    def _patch_fit(self, path: str, callback_path: str) -> None:
        import inspect

        from tflint_grad.tracer.shims import _get, writes_files

        base = _get(callback_path)
        if base is None:
            return
        counter = self

        class _CountSteps(base):  # type: ignore[misc, valid-type]
            def on_train_batch_begin(self, batch, logs=None):
                counter.before("fit")

            def on_train_batch_end(self, batch, logs=None):
                counter.after("fit")

        def make(orig):
            try:
                sig = inspect.signature(orig)
            except (TypeError, ValueError):
                sig = None

            def fit(model, *args, **kwargs):
                if sig is None:
                    return orig(model, *args, **kwargs)
                try:
                    bound = sig.bind(model, *args, **kwargs)
                except TypeError:
                    return orig(model, *args, **kwargs)
                callbacks = bound.arguments.get("callbacks")
                if callbacks is None:
                    callbacks = []
                elif not isinstance(callbacks, (list, tuple)):  # a CallbackList: leave it alone
                    return orig(*bound.args, **bound.kwargs)
                kept = [c for c in callbacks if not writes_files(c)]
                if len(kept) != len(callbacks):
                    counter.notes.append("fit(): callbacks that only write files were removed")
                bound.arguments["callbacks"] = [*kept, _CountSteps()]
                return orig(*bound.args, **bound.kwargs)

            return fit

        self._patch(path, make)

    # -- TF1 train ops ------------------------------------------------------------------
    def add_train_op(self, result: Any) -> None:
        op = getattr(result, "op", result)
        graph = getattr(op, "graph", None)
        name = getattr(op, "name", None)
        if graph is not None and isinstance(name, str):
            self.train_ops.add((id(graph), name))

    @staticmethod
    def _flatten(fetches: Any, out: list, depth: int = 0) -> list:
        if depth > 20:
            return out
        if isinstance(fetches, dict):
            for v in fetches.values():
                StepCounter._flatten(v, out, depth + 1)
        elif isinstance(fetches, (list, tuple)):
            for v in fetches:
                StepCounter._flatten(v, out, depth + 1)
        else:
            out.append(fetches)
        return out

    def fetches_training(self, sess: Any, fetches: Any) -> bool:
        graph = getattr(sess, "graph", None)
        for item in self._flatten(fetches, []):
            op = None
            try:
                if isinstance(item, str) and graph is not None:
                    item = graph.as_graph_element(item, allow_tensor=True, allow_operation=True)
                op = getattr(item, "op", None) if not hasattr(item, "node_def") else item
                if op is None or not hasattr(op, "node_def"):
                    continue
            except Exception:
                continue
            if self._depends_on_train_op(op):
                return True
        return False

    def _depends_on_train_op(self, op: Any) -> bool:
        gid = id(op.graph)
        key = (gid, op.name)
        if key in self.train_ops:
            return True
        cached = self._fetch_cache.get(key)
        if cached is not None and cached[0] == len(self.train_ops):
            return cached[1]
        from collections import deque

        seen = {op.name}
        queue = deque([op])
        found = False
        while queue and len(seen) < 200_000:
            cur = queue.popleft()
            for parent in [t.op for t in cur.inputs] + list(cur.control_inputs):
                if parent.name in seen:
                    continue
                if (gid, parent.name) in self.train_ops:
                    found = True
                    queue.clear()
                    break
                seen.add(parent.name)
                queue.append(parent)
        self._fetch_cache[key] = (len(self.train_ops), found)
        return found


# -- the run ------------------------------------------------------------------------------------


def _script_line_of(tb, script: str, line_maps: dict[str, dict[int, int]]) -> int | None:
    line = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename == script:
            line = tb.tb_lineno
        elif filename in line_maps and tb.tb_lineno in line_maps[filename]:
            line = line_maps[filename][tb.tb_lineno]
        tb = tb.tb_next
    return line


_KNOWN_MODULES = ("builtins", "tensorflow", "keras", "tf_keras", "numpy", "urllib", "http", "socket", "json")


def _type_name(e: BaseException) -> str:
    """The exception's class name; quoted as the script's words unless it is a class of Python,
    TensorFlow, Keras or NumPy (a script may name its classes anything, ``type("::x", ...)``)."""
    t = type(e)
    name, module = getattr(t, "__name__", "?"), getattr(t, "__module__", "") or ""
    known = isinstance(name, str) and name.isidentifier() and len(name) <= 60
    if known and module.split(".")[0] in _KNOWN_MODULES and getattr(sys.modules.get(module), name, None) is t:
        return name
    return quote(name, 60)


def _describe(e: BaseException, guard: Guard | None = None) -> str:
    """``Type: message`` for a reason; what the script wrote is quoted (``scripttext``)."""
    name = _type_name(e)
    if guard is not None:
        if guard.said(e):
            return f"{name}: {e.args[0]}"
        inner = getattr(e, "reason", None)  # urllib's URLError around a refusal
        if isinstance(inner, BaseException) and guard.said(inner):
            return f"{name}: {inner.args[0]}"
    try:
        if isinstance(e, OSError) and e.filename is not None and e.strerror:
            filename = os.fsdecode(e.filename) if isinstance(e.filename, (str, bytes)) else e.filename
            own = isinstance(e.errno, int) and e.strerror == os.strerror(e.errno)
            msg = f"{quote(filename, PATH_LIMIT)} ({e.strerror if own else quote(e.strerror)})"
        else:
            text = str(e).strip()
            msg = quote(text) if text else ""
    except Exception:  # a __str__ of the script's that raises
        msg = quote("<unprintable>")
    return f"{name}: {msg}" if msg else name


def _jsonable(o: Any) -> Any:
    for attr in ("tolist", "item"):
        f = getattr(o, attr, None)
        if callable(f):
            try:
                return f()
            except Exception:
                pass
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=repr)
    if isinstance(o, bytes):
        return o.decode("utf-8", "replace")
    return str(o)


class Harness:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.monotonic()
        self.script = os.path.realpath(args.script)
        self.result: dict[str, Any] = {
            "status": "crashed",
            "reason": None,
            "error_line": None,
            "steps": 0,
            "step_limit": args.steps,
            "executed_lines": [],
            "events": [],
            "tf_version": None,
            "keras": None,
            "duration": 0.0,
            "harness": HARNESS_VERSION,
            "warnings": [],
            "notes": [],
            "timings": {},
        }
        self.guard = Guard(args.workdir or os.path.dirname(self.script))
        self.line_maps: dict[str, dict[int, int]] = {}
        self.tracer = LineTracer(self.script, self.line_maps)
        self.recorder: Any = None
        self.counter: StepCounter | None = None
        self.probes: Any = None
        self.standins: Any = None
        self.written = False
        self.confinement: Confinement | None = None
        self.user_code_running = False
        self._real_exit = os._exit

    # -- output ---------------------------------------------------------------------
    def write(self) -> None:
        if self.written:
            return
        self.written = True
        self.tracer.stop()
        r = self.result
        r["executed_lines"] = sorted(self.tracer.lines)
        if self.recorder is not None:
            r["events"] = self.recorder.events
        if self.counter is not None:
            r["steps"] = self.counter.steps
            r["step_sources"] = {k: v for k, v in self.counter.counts.items() if v}
            r["notes"] = [*r["notes"], *dict.fromkeys(self.counter.notes)]
        if self.guard.refused:
            r["refused"] = self.guard.refused
        if self.standins is not None and self.standins.used:
            r["stand_ins"] = list(self.standins.used)
        r["duration"] = round(time.monotonic() - self.t0, 3)
        tmp = self.args.out + ".tmp"
        with self.guard.allowed():
            try:
                text = json.dumps(r, default=_jsonable)
            except (TypeError, ValueError) as e:  # events a probe left unserializable: keep the rest
                r["events"] = []
                r["warnings"].append(f"tracer: events dropped, not serializable: {e}")
                text = json.dumps(r, default=_jsonable)
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, self.args.out)

    def warn(self, msg: str) -> None:
        if msg not in self.result["warnings"]:
            self.result["warnings"].append(msg)

    # -- phases -----------------------------------------------------------------------
    def import_tensorflow(self) -> Any:
        if self.args.legacy_keras:
            os.environ["TF_USE_LEGACY_KERAS"] = "1"
        try:
            import tensorflow as tf
        except MemoryError:
            self.result.update(
                status="memory", reason=f"memory limit of {self.args.memory_mb} MB exceeded while importing TensorFlow"
            )
            return None
        except BaseException as e:
            self.result.update(status="unavailable", reason=f"TensorFlow could not be imported: {_describe(e)}")
            return None
        self.result["tf_version"] = getattr(tf, "__version__", None)
        try:
            keras_mod = tf.keras  # resolves Keras 3 or tf_keras (legacy)
            name = keras_mod.__name__
            if name.startswith("tf_keras"):
                import tf_keras

                self.result["keras"] = f"tf_keras {getattr(tf_keras, '__version__', '?')}"
            else:
                import keras

                self.result["keras"] = f"keras {getattr(keras, 'version', lambda: '?')()}"
        except Exception as e:
            self.warn(f"tracer: tf.keras unavailable: {_describe(e)}")
        return tf

    def setup(self, tf: Any) -> Any:
        v1 = None
        try:
            import tensorflow.compat.v1 as v1
        except Exception as e:
            self.warn(f"tracer: tf.compat.v1 unavailable: {_describe(e)}")
        if self.args.alias_v1 and v1 is not None:
            v1.disable_v2_behavior()
            sys.modules["tensorflow"] = v1
        notes, warnings = __import__("tflint_grad.tracer.shims", fromlist=["apply_all"]).apply_all(
            tf, v1, tf1=self.args.alias_v1, check_write=self.guard.check_write
        )
        self.result["notes"].extend(notes)
        for w in warnings:
            self.warn(w)
        from tflint_grad.tracer import standins

        self.standins = standins
        notes, warnings = [], []
        standins.install(self.args.origin_dir, notes, warnings)
        self.result["notes"].extend(notes)
        for w in warnings:
            self.warn(w)
        capture_autograph_maps(self.script, self.line_maps)
        counter_ref: list = []
        self.recorder = make_recorder(self.script, self.line_maps, counter_ref)
        self.recorder.step_limit = self.args.steps
        try:
            if os.environ.get("TFLINT_GRAD_NO_PROBES"):  # debugging knob
                raise ImportError("disabled by TFLINT_GRAD_NO_PROBES")
            from tflint_grad.tracer import probes
        except ImportError as e:
            self.warn(
                f"tracer: the probes are not available ({_describe(e)}): only whether flagged lines ran is checked"
            )
            probes = None
        if probes is not None:
            try:
                probes.install(self.recorder, tf, tf1=bool(self.args.alias_v1 or self.args.tf1), steps=self.args.steps)
                self.probes = probes
            except Exception as e:
                self.warn(f"tracer: the probes failed to install: {_describe(e)}")
                self.result["notes"].append(traceback.format_exc(limit=-3))
        counter = StepCounter(self.recorder, self.args.steps)
        try:
            counter.install(tf1_graph=bool(self.args.alias_v1 or self.args.tf1))
        except Exception as e:
            self.warn(f"tracer: step counting could not be installed: {_describe(e)}")
        counter_ref.append(counter)
        self.counter = counter
        return v1

    def patch_exit(self) -> None:
        harness = self

        def _exit(code: int = 0) -> None:  # os._exit: keep the trace, then leave at once
            if harness.user_code_running:
                harness.user_code_running = False
                harness.tracer.stop()
                line = harness.recorder.user_line() if harness.recorder is not None else None
                where = f" at line {line}" if line is not None else ""
                harness.result.update(
                    status="finished" if code == 0 else "error",
                    reason=f"script called os._exit({code}){where}",
                    error_line=line if code != 0 else None,
                )
                harness.finalize()
                try:
                    harness.write()
                except BaseException:
                    pass
            _flush()
            with contextlib.suppress(BaseException), harness.guard.allowed():
                kill_descendants()
            harness._real_exit(code)

        os._exit = _exit

    def finalize(self) -> None:
        if self.counter is not None:
            self.counter.enabled = False
        if self.probes is not None and hasattr(self.probes, "finalize"):
            try:
                self.probes.finalize(self.recorder)
            except BaseException as e:
                self.warn(f"tracer: the probes failed to finalize: {_describe(e)}")

    def run_script(self) -> None:
        args = self.args
        sys.argv = [self.script, *args.script_args]
        workdir = os.path.dirname(self.script)
        sys.path.insert(0, workdir)
        if args.origin_dir and args.origin_dir not in sys.path:
            sys.path.insert(1, args.origin_dir)
        os.chdir(args.workdir or workdir)

        def on_timeout(signum, frame):
            if self.user_code_running:
                raise TraceTimeout()

        def on_terminate(signum, frame):
            if self.user_code_running:
                raise ScriptSignal(signum)

        signal.signal(signal.SIGUSR2, on_timeout)
        for sig in TERMINATING_SIGNALS:
            with contextlib.suppress(OSError, ValueError):
                if signal.getsignal(sig) == signal.SIG_DFL:
                    signal.signal(sig, on_terminate)
        # Ctrl-C semantics even when the linter was started with SIGINT ignored (nohup, `cmd &`)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.guard.install()
        self._signal_ready()
        status, reason, line = "finished", None, None
        self.user_code_running = True
        self.tracer.start()
        try:
            init = {"get_ipython": NotebookShell.instance} if args.notebook else None
            runpy.run_path(self.script, init_globals=init, run_name="__main__")
        except StopRun:
            status = "stopped"
        except TraceTimeout as e:
            line = _script_line_of(e.__traceback__, self.script, self.line_maps)
            status, reason = "timeout", "timed out" + (f" at line {line}" if line is not None else "")
        except ScriptSignal as e:
            line = _script_line_of(e.__traceback__, self.script, self.line_maps)
            from tflint_grad.tracer.protocol import signal_name

            status = "error"
            reason = f"script terminated by {signal_name(e.args[0])}" + (f" at line {line}" if line is not None else "")
        except SystemExit as e:
            line = _script_line_of(e.__traceback__, self.script, self.line_maps)
            code = e.code
            where = f" at line {line}" if line is not None else ""
            if code is None or (isinstance(code, int) and code == 0):
                reason = f"script called sys.exit({code if code is not None else ''}){where}"
            else:
                status = "error"
                shown = code if isinstance(code, int) else quote(repr(code))
                reason = f"script called sys.exit({shown}){where}"
                tb = traceback.extract_tb(e.__traceback__)
                if any(f.filename.endswith(("argparse.py", "absl/flags/_flagvalues.py", "absl/app.py")) for f in tb):
                    reason += " while parsing its command line (pass arguments with --trace-args)"
        except KeyboardInterrupt as e:
            line = _script_line_of(e.__traceback__, self.script, self.line_maps)
            status, reason = (
                "error",
                "script interrupted (KeyboardInterrupt)" + (f" at line {line}" if line is not None else ""),
            )
        except MemoryError as e:
            line = _script_line_of(e.__traceback__, self.script, self.line_maps)
            status = "memory"
            reason = f"memory limit of {args.memory_mb} MB exceeded" + (f" at line {line}" if line else "")
        except BaseException as e:
            line = _script_line_of(e.__traceback__, self.script, self.line_maps)
            if isinstance(e, SyntaxError) and line is None and os.path.realpath(e.filename or "") == self.script:
                line = e.lineno
            if type(e).__name__ == "ResourceExhaustedError":
                status = "memory"
                reason = f"memory limit of {args.memory_mb} MB exceeded" + (f" at line {line}" if line else "")
            else:
                status = "error"
                where = f"at line {line}" if line is not None else "before reaching its own code"
                refused = is_refused_read(e, self.confinement)
                if refused is not None:
                    reason = (
                        f"script stopped {where}: reading {quote(refused, PATH_LIMIT)} was refused by the sandbox "
                        "(outside the folders a trace may read; --trace-allow-read grants more)"
                    )
                else:
                    reason = f"script stopped {where}: {_describe(e, self.guard)}"
        finally:
            self.user_code_running = False
            self.tracer.stop()
        if status in ("finished", "timeout") and self.counter is not None and self.counter.stopped:
            status = "stopped"  # the script swallowed StopRun (``except BaseException``) and went on
        if status == "stopped":
            reason = f"stopped after {self.counter.steps if self.counter else args.steps} training steps (the limit)"
        self.result.update(status=status, reason=reason, error_line=line if status in ("error", "memory") else None)

    def _signal_ready(self) -> None:
        from tflint_grad.tracer.protocol import READY_ENV

        fd = os.environ.pop(READY_ENV, None)
        if fd is None:
            return
        try:
            os.write(int(fd), b"R")
            os.close(int(fd))
        except (OSError, ValueError):
            pass

    def _lap(self, what: str) -> None:
        now = time.monotonic()
        self.result["timings"][what] = round(now - self._last, 3)
        self._last = now

    def main(self) -> int:
        from tflint_grad.tracer.protocol import FILE_SIZE_LIMIT_MB

        _die_with_parent()
        # before TensorFlow starts any thread: the kernel confines every later one
        out_dir = os.path.dirname(os.path.abspath(self.args.out))
        self.confinement = confine(
            memory_mb=self.args.memory_mb,
            writable=list(dict.fromkeys([self.guard.root, out_dir])),
            readable=list(self.args.allow_read),
            file_size_mb=FILE_SIZE_LIMIT_MB,
        )
        self.result["sandbox"] = self.confinement.active
        self.result["notes"].append(self.confinement.note())
        faulthandler.enable(file=sys.stderr, all_threads=True)
        self._last = self.t0
        tf = self.import_tensorflow()
        self._lap("import")
        if tf is None:
            self.write()
            return 0
        try:
            self.setup(tf)
            self.patch_exit()
            self._lap("setup")
        except BaseException as e:
            self.result.update(status="crashed", reason=f"the tracer failed to start: {_describe(e)}")
            self.warn(f"tracer: setup failed: {traceback.format_exc(limit=-4)}")
            self.write()
            return 0
        self.run_script()
        self._lap("script")
        self.finalize()
        self._lap("finalize")
        self.write()
        return 0


def _die_with_parent() -> None:
    """SIGKILL this process if the linter dies (its watchdog, hence the time limit, dies with it)."""
    try:
        parent = int(os.environ.pop("TFLINT_GRAD_PARENT", "0"))
    except ValueError:
        parent = 0
    if not parent:
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        return
    if os.getppid() != parent:  # the parent already went away
        os._exit(1)


def _flush() -> None:
    for f in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            f.flush()
        except Exception:
            pass


class NotebookShell:
    """``get_ipython()`` for a notebook run as one script: its cells became Python as IPython
    makes them (``get_ipython().run_line_magic(...)``, ``.system(...)``); here magics are
    no-ops and shell commands are not run (``files = !ls`` gets an empty list)."""

    _shared: NotebookShell | None = None

    @classmethod
    def instance(cls) -> NotebookShell:
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def system(self, cmd: str) -> None:
        return None

    def getoutput(self, cmd: str) -> list[str]:
        return []

    def run_line_magic(self, name: str, line: str) -> None:
        return None

    def run_cell_magic(self, name: str, line: str, cell: str) -> None:
        return None

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tflint_grad.tracer.harness")
    p.add_argument("--script", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--memory-mb", type=int, default=4096)
    p.add_argument("--workdir")
    p.add_argument("--origin-dir")
    p.add_argument("--tf1", action="store_true")
    p.add_argument("--alias-v1", action="store_true")
    p.add_argument("--legacy-keras", action="store_true")
    p.add_argument("--notebook", action="store_true", help="the script is a notebook's cells: define get_ipython()")
    p.add_argument("--allow-read", action="append", default=[], metavar="PATH", help="a read root (repeatable)")
    p.add_argument("script_args", nargs=argparse.REMAINDER)
    ns = p.parse_args(argv)
    if ns.script_args and ns.script_args[0] == "--":
        ns.script_args = ns.script_args[1:]
    return ns


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    harness = Harness(args)
    try:
        harness.main()
    except BaseException as e:
        harness.result.update(status="crashed", reason=f"the tracer failed: {_describe(e)}")
        try:
            harness.write()
        except BaseException:
            pass
    _flush()
    with contextlib.suppress(BaseException), harness.guard.allowed():  # (the guard refuses os.kill of others)
        kill_descendants()  # daemons the script managed to start (they are ours: subreaper)
    # Leave now: no waiting for threads the script left running, no atexit handlers of its own.
    harness._real_exit(0)


if __name__ == "__main__":
    # Run from the importable module, so probes importing it see the same StopRun class.
    from tflint_grad.tracer import harness as _harness

    _harness.main()
