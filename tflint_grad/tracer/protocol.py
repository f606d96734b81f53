"""What the parent (runner, sandbox) and the traced child (harness) share: names, limits and the
/proc reader. TF-free and standard-library only: the child imports this module, never a
parent-side one (``sandbox``, ``runner``)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

FILE_SIZE_LIMIT_MB = 1024  # RLIMIT_FSIZE for the traced process (one file)
MAX_PROCESSES = 32  # processes in a trace's tree (the harness refuses to start any; ctypes can)
READY_ENV = "TFLINT_GRAD_READY_FD"


def signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


# -- /proc -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgrp: int
    sid: int
    state: str
    start: int  # start time in clock ticks (guards against pid reuse)
    rss: int  # bytes


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def proc_table() -> dict[int, ProcInfo]:
    out: dict[int, ProcInfo] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        try:
            rest = data[data.rindex(b")") + 2 :].split()
            out[int(name)] = ProcInfo(
                int(name),
                int(rest[1]),
                int(rest[2]),
                int(rest[3]),
                rest[0].decode(),
                int(rest[19]),
                int(rest[21]) * _PAGE,
            )
        except (ValueError, IndexError):
            continue
    return out
