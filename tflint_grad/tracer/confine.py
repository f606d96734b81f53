"""Kernel confinement of a traced process: one call, ``confine(...)``, made by the child itself.

Runs in the traced child (the harness, or any worker that runs user code) before any thread
exists: a Landlock domain covers the calling thread and everything it starts later, threads and
processes alike, and no code of the script (Python or native, ``ctypes`` included) can leave it.

What ``confine`` does, each part only where the kernel has it (the returned ``Confinement``
says which parts are active, for the trace's notes and ``--verbose``):

==========================  ===================================================================
resource limits             ``RLIMIT_DATA`` = the memory limit, no core files, ``RLIMIT_FSIZE``.
child subreaper             orphans of the script's processes stay below the harness.
writes (Landlock ABI 1+)    only beneath the writable folders (the trace folder) and /dev/null.
reads (Landlock ABI 1+)     only beneath the readable paths: the Python installation and its
                            import path, system libraries, ``/usr``, a few files of ``/etc``,
                            ``/proc/self``, CPU/memory facts of ``/proc`` and ``/sys``,
                            ``/dev/null|zero|urandom``, the trace folder, the script's project
                            tree without ``.git`` and what the user grants
                            (``--trace-allow-read``). Anything else: ``EACCES``.
ptrace (Landlock ABI 1+)    no process outside the domain can be traced (``ptrace``,
                            ``/proc/PID/mem``, ``process_vm_readv``).
TCP (Landlock ABI 4+)       ``bind`` and ``connect`` refused (also without a network namespace).
signals (Landlock ABI 6+)   no signal reaches a process outside the domain (the linter, the
                            editor, other CI steps): ``kill`` fails with ``EPERM``.
signals, older kernels      a seccomp filter (x86_64, aarch64): signals only to the process
                            itself or its group; no ptrace, ``process_vm_*``, ``setsid``.
abstract Unix sockets (6+)  no connection to an abstract socket created outside the domain.
==========================  ===================================================================
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

# Landlock (Linux >= 5.13): the same syscall numbers on every architecture
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS, _PR_SET_CHILD_SUBREAPER = 38, 36

FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = (1 << i for i in range(4))
FS_REMOVE_DIR, FS_REMOVE_FILE, FS_MAKE_CHAR, FS_MAKE_DIR, FS_MAKE_REG = (1 << i for i in range(4, 9))
FS_MAKE_SOCK, FS_MAKE_FIFO, FS_MAKE_BLOCK, FS_MAKE_SYM, FS_REFER, FS_TRUNCATE = (1 << i for i in range(9, 15))
NET_BIND_TCP, NET_CONNECT_TCP = 1, 2
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1, 2

READ = FS_READ_FILE | FS_READ_DIR
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE  # what a rule on a file may grant

# What a training script needs to read besides Python's own folders (see ``python_paths``).
SYSTEM_READ = (
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ssl",
    "/etc/pki",
    "/etc/ca-certificates",
    "/etc/fonts",
    "/etc/mime.types",
    "/etc/os-release",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/hosts",
    "/etc/matplotlibrc",
    "/proc/self",  # resolved: this process's own folder (/proc/thread-self lies beneath it)
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/sys/devices/system/cpu",
    "/sys/devices/system/node",
    "/sys/bus/cpu",
    "/sys/bus/node",
    "/sys/kernel/mm/transparent_hugepage",
    "/sys/fs/cgroup",
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
)
WRITE_FILES = ("/dev/null",)


@dataclass
class Confinement:
    """What ``confine`` put in place (``active``) and what it could not (``missing``)."""

    abi: int = 0
    active: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    readable: list[str] = field(default_factory=list)  # the read roots granted (empty: reads unrestricted)
    writable: list[str] = field(default_factory=list)

    @property
    def reads_confined(self) -> bool:
        return "reads" in self.active

    def note(self) -> str:
        text = "sandbox: " + (", ".join(self.active) or "no kernel confinement")
        if self.missing:
            text += "; not available: " + ", ".join(self.missing)
        return text

    def may_read(self, path: str) -> bool:
        """Would the confinement let this process read ``path``? (True when reads are unrestricted.)"""
        if not self.reads_confined:
            return True
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError):
            return False
        return any(real == root or real.startswith(root.rstrip("/") + "/") for root in self.readable)


# -- limits ------------------------------------------------------------------------------------


def set_limits(memory_mb: int, file_size_mb: int = 1024) -> None:
    def lower(res: int, value: int) -> None:
        try:
            _, hard = resource.getrlimit(res)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(res, (value, hard if hard != resource.RLIM_INFINITY else value))
        except (ValueError, OSError):
            pass

    if memory_mb > 0:
        lower(resource.RLIMIT_DATA, memory_mb * 1024 * 1024)
    lower(resource.RLIMIT_CORE, 0)
    lower(resource.RLIMIT_FSIZE, file_size_mb * 1024 * 1024)
    with contextlib.suppress(Exception):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # too big a file: EFBIG, not death


def become_subreaper() -> bool:
    """Orphans of the script's processes (a daemon's double fork) are re-parented to this process
    instead of init, so they stay in its tree: the parent's watchdog sees them, and they are
    killed with it."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except Exception:
        return False


# -- Landlock ----------------------------------------------------------------------------------


def _libc():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _syscall(libc, *args) -> int:
    import ctypes

    return int(libc.syscall(*(ctypes.c_long(a) if isinstance(a, int) else a for a in args)))


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 without Landlock (probing restricts nothing)."""
    try:
        return max(0, _syscall(_libc(), _CREATE_RULESET, None, 0, 1))  # LANDLOCK_CREATE_RULESET_VERSION
    except Exception:
        return 0


def without_git(root: str) -> list[str]:
    """``root`` as read roots, leaving out its ``.git`` (a checkout's credentials and history):
    ``root`` itself when it has none, else each of its entries but ``.git``."""
    if not os.path.lexists(os.path.join(root, ".git")):
        return [root]
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    return [os.path.join(root, n) for n in names if n != ".git"]


def python_paths() -> list[str]:
    """What this interpreter imports from: its installation, its venv, ``sys.path`` (each
    without a ``.git``: an editable install's source checkout), the linter's own package."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    out: list[str] = []
    for root in roots:
        out.append(root)
    for entry in sys.path:
        if entry and os.path.isabs(entry):
            out.extend(without_git(entry) if os.path.isdir(entry) else [entry])
    import tflint_grad

    out.extend(getattr(tflint_grad, "__path__", []))
    with contextlib.suppress(Exception):
        import importlib.util

        spec = importlib.util.find_spec("tflint_grad.rules")
        out.extend(spec.submodule_search_locations or [] if spec else [])
    return out


def _add_rule(libc, ruleset: int, path: str, access: int) -> str | None:
    """Grant ``access`` beneath ``path`` (file rights only when it is a file); None or an error."""
    import ctypes
    import stat

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None  # absent on this system: nothing to grant
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= FILE_RIGHTS
        if not access:
            return None
        rule = PathBeneath(access, fd)
        if _syscall(libc, _ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) < 0:
            return f"{path}: {os.strerror(ctypes.get_errno())}"
        return None
    finally:
        os.close(fd)


def _unique_real(paths: Iterable[str]) -> list[str]:
    out: dict[str, None] = {}
    for p in paths:
        try:
            out[os.path.realpath(p)] = None
        except (OSError, ValueError):
            continue
    return list(out)


def landlock(writable: list[str], readable: list[str] | None) -> Confinement:
    """Restrict this process and everything it starts (see the module docstring).

    ``writable``: folders the process may modify (and read). ``readable``: extra read roots;
    None leaves reads unrestricted (the system and Python paths are added here otherwise).
    """
    c = Confinement(writable=list(writable))
    if os.environ.get("TFLINT_GRAD_NO_LANDLOCK"):
        c.missing.append("Landlock (disabled by TFLINT_GRAD_NO_LANDLOCK)")
        return c
    try:
        import ctypes

        libc = _libc()
        c.abi = abi = landlock_abi()
        if abi < 1:
            c.missing.append("Landlock (this kernel has none)")
            return c
        write = (
            FS_WRITE_FILE
            | FS_REMOVE_DIR
            | FS_REMOVE_FILE
            | FS_MAKE_CHAR
            | FS_MAKE_DIR
            | FS_MAKE_REG
            | FS_MAKE_SOCK
            | FS_MAKE_FIFO
            | FS_MAKE_BLOCK
            | FS_MAKE_SYM
            | (FS_REFER if abi >= 2 else 0)
            | (FS_TRUNCATE if abi >= 3 else 0)
        )
        fs = write | (READ if readable is not None else 0)
        net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
        scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0

        class RulesetAttr(ctypes.Structure):
            _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

        attr = RulesetAttr(fs, net, scoped)
        size = 24 if abi >= 6 else 16 if abi >= 4 else 8
        ruleset = _syscall(libc, _CREATE_RULESET, ctypes.byref(attr), size, 0)
        if ruleset < 0:
            c.missing.append(f"Landlock ({os.strerror(ctypes.get_errno())})")
            return c
        try:
            grants = [(p, fs) for p in _unique_real(writable)]
            grants += [(p, write | READ) for p in WRITE_FILES]
            if readable is not None:
                c.readable = _unique_real([*writable, *SYSTEM_READ, *python_paths(), *readable])
                grants += [(p, READ) for p in c.readable]
            for path, access in grants:
                error = _add_rule(libc, ruleset, path, access & fs)
                if error and access & write:  # without it the trace could not write its result
                    c.missing.append(f"Landlock (rule refused: {error})")
                    c.readable = []
                    return c
                # a read root the kernel will not take (an odd file system): it stays unreadable
            if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                c.missing.append(f"Landlock (no_new_privs: {os.strerror(ctypes.get_errno())})")
                return c
            if _syscall(libc, _RESTRICT_SELF, ruleset, 0) < 0:
                c.missing.append(f"Landlock ({os.strerror(ctypes.get_errno())})")
                c.readable = []
                return c
        finally:
            os.close(ruleset)
    except Exception as e:
        c.missing.append(f"Landlock ({type(e).__name__}: {e})")
        c.readable = []
        return c
    c.active += [f"Landlock ABI {abi}: writes", "ptrace"]
    if readable is not None:
        c.active.append("reads")
    if net:
        c.active.append("TCP")
    else:
        c.missing.append("TCP scoping (Landlock ABI 4)")
    if scoped:
        c.active += ["signals", "abstract Unix sockets"]
    else:
        c.missing.append("signal scoping (Landlock ABI 6)")
    return c


# -- seccomp: signals and ptrace where Landlock cannot scope them (ABI < 6) ----------------------

# (audit architecture, syscall numbers) of the little-endian architectures handled
_SECCOMP_ARCH = {
    "x86_64": (
        0xC000003E,
        {"kill": 62, "tgkill": 234, "sigqueue": 129, "tgsigqueue": 297, "tkill": 200, "ptrace": 101, "setsid": 112},
        (310, 311),  # process_vm_readv, process_vm_writev
    ),
    "aarch64": (
        0xC00000B7,
        {"kill": 129, "tgkill": 131, "sigqueue": 138, "tgsigqueue": 240, "tkill": 130, "ptrace": 117, "setsid": 157},
        (270, 271),
    ),
}
_PIDFD_SEND_SIGNAL = 424  # the same on both
_X32_BIT = 0x40000000


def seccomp_program(arch: str, me: int, pgrp: int) -> list[tuple[int, int, int, int]] | None:
    """The BPF filter (code, jt, jf, k) of ``seccomp_signals`` for process ``me`` of group ``pgrp``."""
    if arch not in _SECCOMP_ARCH:
        return None
    audit_arch, nr, vm = _SECCOMP_ARCH[arch]
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    allow, deny = 0x7FFF0000, 0x00050000 | errno.EPERM  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    # jumps count from the next instruction
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, audit_arch), (ret, 0, 0, allow)]  # another ABI (i386): untouched
    prog += [(ld, 0, 0, 0), (jge, 0, 1, _X32_BIT), (ret, 0, 0, deny)]  # x32 numbers: refused
    # signal senders: allowed only toward this process or its own group (first argument)
    checked = [nr["kill"], nr["tgkill"], nr["sigqueue"], nr["tgsigqueue"]]
    for i, n in enumerate(checked):
        prog.append((jeq, len(checked) - 1 - i, 6 if i == len(checked) - 1 else 0, n))
    prog += [(ld, 0, 0, 16), (jeq, 2, 0, me), (jeq, 1, 0, 0), (jeq, 0, 1, (-pgrp) & 0xFFFFFFFF)]
    prog += [(ret, 0, 0, allow), (ret, 0, 0, deny)]
    # refused outright
    # (setsid: every process stays in the harness's session, where the parent's watchdog finds
    # and kills it, the harness being unable to signal its own children any more)
    denied = [nr["tkill"], nr["ptrace"], *vm, _PIDFD_SEND_SIGNAL, nr["setsid"]]
    prog += [(jeq, len(denied) - i, 0, n) for i, n in enumerate(denied)]
    prog += [(ret, 0, 0, allow), (ret, 0, 0, deny)]
    return prog


def seccomp_signals() -> str | None:
    """A seccomp filter for this process and all it starts: ``kill``, ``tgkill`` and
    ``rt_(tg)sigqueueinfo`` only toward this process (or its own process group); no ``tkill``,
    ``ptrace``, ``process_vm_readv/writev``, ``pidfd_send_signal`` nor ``setsid`` (EPERM). For
    kernels whose Landlock cannot scope signals; the process can no longer signal its own
    children, which all stay in its session: the parent's watchdog kills them. Returns None when
    applied, else why not."""
    import ctypes
    import platform

    prog = seccomp_program(platform.machine(), os.getpid(), os.getpgrp())
    if prog is None:
        return f"no seccomp filter for {platform.machine()}"

    class Filter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]

    filters = (Filter * len(prog))(*(Filter(*f) for f in prog))
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"no_new_privs: {os.strerror(ctypes.get_errno())}"
    program = Prog(len(prog), filters)
    if libc.prctl(22, 2, ctypes.byref(program), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        return os.strerror(ctypes.get_errno())
    return None


def confine(
    *,
    memory_mb: int,
    writable: list[str],
    readable: list[str] | None = None,
    file_size_mb: int = 1024,
    seccomp: bool | None = None,
) -> Confinement:
    """Everything the kernel can enforce on a traced process, in one call from the child itself
    (before any thread exists): limits, subreaper, Landlock, and a seccomp filter for signals and
    ptrace when Landlock cannot scope them (``seccomp=None``: only then). ``readable=None``:
    reads unrestricted."""
    set_limits(memory_mb, file_size_mb)
    subreaper = become_subreaper()
    c = landlock(writable, readable)
    if subreaper:
        c.active.insert(0, "subreaper")
    if seccomp or (seccomp is None and "signals" not in c.active):
        try:
            why = seccomp_signals()
        except Exception as e:
            why = f"{type(e).__name__}: {e}"
        if why is None:
            c.active += ["signals (seccomp)", "ptrace (seccomp)"]
            c.missing = [m for m in c.missing if not m.startswith("signal scoping")]
        else:
            c.missing.append(f"seccomp ({why})")
    return c


def is_refused_read(e: BaseException, c: Confinement | None) -> str | None:
    """The path of a read the confinement refused (``EACCES`` outside the read roots), else None."""
    if c is None or not c.reads_confined or not isinstance(e, OSError) or e.errno != errno.EACCES:
        return None
    path = e.filename
    if not isinstance(path, (str, bytes)) or not path:
        return None
    path = os.fsdecode(path)
    return None if c.may_read(path) else path
