"""``--confirm``: trace files in sandboxed TensorFlow subprocesses and give findings verdicts.

Parent side: this module never imports TensorFlow (``tests/test_tracer_sandbox.py`` checks).

``trace(jobs, settings)`` traces each script in its own child (``sandbox.run`` + ``harness``),
``settings.jobs`` at a time (with ``settings.warm``, the default, each child is forked from one
process that imported TensorFlow once, ``warm.WarmPool``; when the warm path cannot take a script,
it runs cold, in a new Python), and returns one :class:`TraceResult` per script ("script stopped at
line 12: FileNotFoundError: data.csv", "timed out after 120 s at line 60 (2 training steps done)",
"memory limit of 4096 MB exceeded", "TensorFlow not installed"...). It gives no verdicts: that is
:mod:`tflint_grad.verdicts`, which imports this module, never the reverse.

Traces are cached under ``options.cache_dir`` keyed by the traced bytes, the names/sizes/mtimes
of the files next to the script, the options that change a trace (steps, args), the
TensorFlow/Keras versions (package metadata, no import) and a fingerprint of the tracer's source.
Only deterministic outcomes are cached (finished, stopped, error), never timeouts or crashes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tflint_grad.scripttext import clean, quote
from tflint_grad.settings import TraceSettings
from tflint_grad.tracer import sandbox, warm
from tflint_grad.tracer.events import TraceResult
from tflint_grad.tracer.protocol import signal_name

CACHE_VERSION = 1
MAX_RESULT_BYTES = 64 * 1024 * 1024
MAX_SIBLINGS = 2000
CACHEABLE = ("finished", "stopped", "error")
RESULT_TEXT_LIMIT = 600  # characters of a reason or warning read from a result file
TF_DISTRIBUTIONS = (
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-intel",
    "tensorflow-macos",
    "tensorflow-aarch64",
    "tf-nightly",
    "tf-nightly-cpu",
    "intel-tensorflow",
)


TraceOptions = TraceSettings  # the old name, kept for scripts that import it


# -- the TensorFlow the child will import -----------------------------------------------------------

_INFO_SNIPPET = r"""
import importlib.metadata as m, importlib.util as u, json, sys
def v(names):
    for n in names:
        try:
            return m.version(n)
        except Exception:
            pass
    return None
print(json.dumps({"tensorflow": v(DISTS) if u.find_spec("tensorflow") else None,
                  "keras": v(["keras"]), "tf_keras": v(["tf-keras", "tf_keras"]),
                  "python": ".".join(map(str, sys.version_info[:3]))}))
""".replace("DISTS", repr(TF_DISTRIBUTIONS))


def _metadata_version(names: Iterable[str]) -> str | None:
    import importlib.metadata as md

    for n in names:
        try:
            return md.version(n)
        except md.PackageNotFoundError:
            continue
        except Exception:
            continue
    return None


@functools.lru_cache(maxsize=8)
def tensorflow_info(python: str) -> dict[str, Any]:
    """Versions of TF/Keras for ``python`` without importing TensorFlow; ``tensorflow`` None = absent."""
    same = False
    try:
        same = os.path.realpath(python) == os.path.realpath(sys.executable)
    except OSError:
        pass
    if same:
        import importlib.util

        has_tf = importlib.util.find_spec("tensorflow") is not None
        return {
            "tensorflow": (_metadata_version(TF_DISTRIBUTIONS) or "unknown") if has_tf else None,
            "keras": _metadata_version(["keras"]),
            "tf_keras": _metadata_version(["tf-keras", "tf_keras"]),
            "python": ".".join(map(str, sys.version_info[:3])),
        }
    try:
        r = subprocess.run(
            [python, "-c", _INFO_SNIPPET],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        info = json.loads(r.stdout.strip().splitlines()[-1])
        if not isinstance(info, dict):
            raise ValueError("not a dict")
        return info
    except Exception as e:
        return {"tensorflow": None, "error": f"{python}: {type(e).__name__}: {e}"}


@functools.lru_cache(maxsize=1)
def tracer_fingerprint() -> str:
    """Hash of the tracer's own source (harness, shims, probes...): edits invalidate the cache."""
    h = hashlib.sha256(f"cache-v{CACHE_VERSION}".encode())
    folder = os.path.dirname(os.path.abspath(__file__))
    for sub, dirs, files in os.walk(folder):  # the tracer's subpackages (probes/) too
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        for name in sorted(files):
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(sub, name), folder)
                try:
                    with open(os.path.join(sub, name), "rb") as fh:
                        h.update(rel.encode() + b"\0" + fh.read())
                except OSError:
                    pass
    with open(os.path.join(os.path.dirname(folder), "scripttext.py"), "rb") as fh:  # how reasons quote the script
        h.update(b"scripttext.py\0" + fh.read())
    return h.hexdigest()


# -- one trace ------------------------------------------------------------------------------------


@dataclass
class TraceJob:
    path: str  # as reported
    name: str  # file name of the traced copy
    data: bytes  # the exact bytes to run
    origin_dir: str | None  # the script's folder (siblings are linked into the trace folder)
    notebook: bool = False


def _siblings_fingerprint(origin_dir: str | None, skip: str) -> list[list[str | int]]:
    if not origin_dir:
        return []
    out: list[list[str | int]] = []
    try:
        with os.scandir(origin_dir) as it:
            for i, entry in enumerate(sorted(it, key=lambda e: e.name)):
                if i >= MAX_SIBLINGS:
                    break
                if entry.name == skip or entry.name.startswith("."):
                    continue
                try:
                    st = entry.stat()
                    out.append([entry.name, st.st_size, int(st.st_mtime)])
                except OSError:
                    out.append([entry.name])
    except OSError:
        pass
    return out


def cache_key(job: TraceJob, options: TraceSettings, info: dict[str, Any]) -> str:
    payload = {
        "data": hashlib.sha256(job.data).hexdigest(),
        "name": job.name,
        "siblings": _siblings_fingerprint(job.origin_dir, os.path.basename(job.path)),
        "steps": options.steps,
        "args": list(options.args),
        "allow_read": list(options.allow_read),
        "tf": info,
        "python": os.path.realpath(options.python) if options.python else None,
        "tracer": tracer_fingerprint(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _cache_path(options: TraceSettings, key: str) -> str:
    return os.path.join(options.cache_dir, "traces", key[:2], key + ".json")


def _cache_load(options: TraceSettings, key: str) -> tuple[TraceResult, list[str]] | None:
    try:
        with open(_cache_path(options, key), encoding="utf-8") as fh:
            d = json.load(fh)
        return TraceResult.from_dict(d["trace"]), list(d.get("warnings") or [])
    except Exception:
        return None


def _cache_store(options: TraceSettings, key: str, trace: TraceResult, warnings: list[str]) -> None:
    path = _cache_path(options, key)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"trace": trace.to_dict(), "warnings": warnings}, fh)
        os.replace(tmp, path)
    except Exception:
        pass


def safe_name(name: str, notebook: bool) -> str:
    base = os.path.basename(name) or "script.py"
    if notebook:
        base = os.path.splitext(base)[0] + ".py"
    base = re.sub(r"[^\w.\-]", "_", base)
    if not base.endswith(".py"):
        base += ".py"
    if base.startswith("."):
        base = "_" + base
    return base


def _link_siblings(origin_dir: str | None, workdir: str, skip: set[str]) -> None:
    """Symlink the script's neighbours (data files, modules) into the trace folder: reads work,
    writes through the links resolve outside the folder and are refused."""
    if not origin_dir:
        return
    try:
        with os.scandir(origin_dir) as it:
            entries = sorted(it, key=lambda e: e.name)[:MAX_SIBLINGS]
    except OSError:
        return
    for entry in entries:
        if entry.name in skip or entry.name.startswith("."):
            continue
        try:
            os.symlink(entry.path, os.path.join(workdir, entry.name))
        except OSError:
            pass


def _load_result(path: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        size = os.path.getsize(path)
    except OSError:
        return None, None  # no result file
    if size > MAX_RESULT_BYTES:
        return None, f"{size} bytes, over the {MAX_RESULT_BYTES // 2**20} MB limit"
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as e:
        return None, f"{type(e).__name__}: {e}"
    if not isinstance(data, dict) or not isinstance(data.get("status"), str):
        return None, "not a trace result object"
    if not isinstance(data.get("executed_lines", []), list) or not isinstance(data.get("events", []), list):
        return None, "malformed fields"
    return data, None


def _package_root() -> str:
    import tflint_grad

    return os.path.dirname(os.path.dirname(os.path.abspath(tflint_grad.__file__)))


def run_trace(
    job: TraceJob, options: TraceSettings, *, jobs: int = 1, pool: warm.WarmPool | None = None
) -> tuple[TraceResult, list[str]]:
    """Trace one script in a fresh sandbox (forked from ``pool``'s zygote if it can). Never raises."""
    try:
        return _run_trace(job, options, jobs, pool)
    except Exception as e:
        return TraceResult("crashed", reason=f"the tracer failed: {type(e).__name__}: {e}", step_limit=options.steps), [
            f"{job.path}: the tracer failed: {type(e).__name__}: {e}"
        ]


def _launch(
    pool: warm.WarmPool | None, cmd: list[str], *, cwd: str, env: dict[str, str], limits: sandbox.Limits
) -> sandbox.Outcome:
    outcome = pool.run(cmd, cwd=cwd, env=env, limits=limits) if pool is not None else None
    if outcome is None:  # no warm path for this one: a cold child imports TensorFlow itself
        outcome = sandbox.run(cmd, cwd=cwd, env=env, limits=limits)
    return outcome


def _run_trace(
    job: TraceJob, options: TraceSettings, jobs: int, pool: warm.WarmPool | None = None
) -> tuple[TraceResult, list[str]]:
    warnings: list[str] = []
    text = job.data.decode("utf-8", "replace")
    mode = sandbox.detect_tf_mode(text)
    root = tempfile.mkdtemp(prefix="tflint-grad-trace-")
    try:
        root = os.path.realpath(root)
        work = os.path.join(root, "work")
        os.makedirs(os.path.join(work, ".tmp"))
        script = os.path.join(work, job.name)
        with open(script, "wb") as fh:
            fh.write(job.data)
        _link_siblings(job.origin_dir, work, {job.name, os.path.basename(job.path)})
        out = os.path.join(root, "result.json")
        cmd = [
            *sandbox.netns_prefix(),
            options.python,
            "-P",
            "-m",
            "tflint_grad.tracer.harness",
            "--script",
            script,
            "--out",
            out,
            "--steps",
            str(int(options.steps)),
            "--memory-mb",
            str(int(options.memory_mb)),
            "--workdir",
            work,
        ]
        if job.origin_dir:
            cmd += ["--origin-dir", job.origin_dir]
        for path in sandbox.read_roots(job.origin_dir, options.allow_read):
            cmd += ["--allow-read", path]
        if mode.tf1:
            cmd.append("--tf1")
        if mode.alias_v1:
            cmd.append("--alias-v1")
        if mode.legacy_keras:
            cmd.append("--legacy-keras")
        if job.notebook:
            cmd.append("--notebook")
        cmd += ["--", *map(str, options.args)]
        threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
        env = sandbox.child_env(work, legacy_keras=mode.legacy_keras, threads=threads, extra_pythonpath=_package_root())
        limits = sandbox.Limits(timeout=float(options.timeout), memory_mb=int(options.memory_mb))
        outcome = _launch(pool, cmd, cwd=work, env=env, limits=limits)
        data, garbled = _load_result(out)
        prefix = sandbox.netns_prefix()
        if (
            data is None
            and prefix
            and not outcome.ready
            and outcome.killed_for is None
            and "unshare:" in outcome.stderr
        ):
            # the network namespace could not be created this time: run with the audit hooks only
            warnings.append(f"{job.path}: {sandbox.last_line(outcome.stderr)}; traced without a network namespace")
            outcome = _launch(pool, cmd[len(prefix) :], cwd=work, env=env, limits=limits)
            data, garbled = _load_result(out)
        trace = _interpret(job, script, options, limits, outcome, data, garbled, warnings)
        return trace, warnings
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _interpret(
    job: TraceJob,
    script: str,
    options: TraceSettings,
    limits: sandbox.Limits,
    outcome: sandbox.Outcome,
    data: dict[str, Any] | None,
    garbled: str | None,
    warnings: list[str],
) -> TraceResult:
    timeout_reason = f"timed out after {options.timeout:g} s"
    memory_reason = f"memory limit of {options.memory_mb} MB exceeded"
    stderr_hint = sandbox.last_line(outcome.stderr)

    def failed(status: str, reason: str) -> TraceResult:
        return TraceResult(status, reason=reason, step_limit=options.steps, duration=round(outcome.duration, 3))

    if outcome.launch_error:
        warnings.append(f"{job.path}: could not start the tracer: {outcome.launch_error}")
        return failed("crashed", f"could not start the tracer: {outcome.launch_error}")
    if data is not None:
        # the result file is written in the script's own process: a script written to escape can
        # forge it. Its text is kept to one line without control characters, whoever wrote it.
        if data.get("reason") is not None:
            data["reason"] = clean(data["reason"], RESULT_TEXT_LIMIT, keep_quotes=True)
        data["warnings"] = [
            clean(w, RESULT_TEXT_LIMIT, keep_quotes=True) for w in data.get("warnings") or () if isinstance(w, str)
        ]
        trace = TraceResult.from_dict(data)
        if trace.status == "timeout":  # the harness wrote "timed out at line 12": where the script was
            at_line = re.search(r"\bat line \d+", trace.reason or "")
            trace.reason = timeout_reason + (f" {at_line.group(0)}" if at_line else "")
            if trace.steps:
                trace.reason += f" ({trace.steps} training step{'s' if trace.steps != 1 else ''} done)"
        for w in data.get("warnings") or ():
            if isinstance(w, str):
                warnings.append(w if w.startswith("tracer:") else f"tracer: {w}")
        if trace.status == "crashed" or trace.status == "unavailable":
            warnings.append(f"{job.path}: {trace.reason}")
        return trace
    if outcome.killed_for == "memory" and outcome.peak_processes > 1:
        return failed(
            "memory",
            f"{memory_reason} by {outcome.peak_processes} processes: the script started processes past the "
            "sandbox's refusal (native fork: a fork bomb?)",
        )
    if outcome.killed_for == "memory":
        return failed("memory", memory_reason)
    if outcome.killed_for == "timeout":
        return failed("timeout", timeout_reason)
    if outcome.killed_for == "startup":
        return failed("timeout", f"TensorFlow did not finish starting within {limits.startup_timeout:g} s")
    if outcome.killed_for == "processes":
        return failed(
            "killed",
            f"the script started more than {limits.max_processes} processes (a fork bomb?): the sandbox killed them",
        )
    rc = outcome.returncode
    if rc is not None and rc < 0:
        sig = -rc
        name = signal_name(sig)
        if name == "SIGKILL":
            return failed("killed", "the traced process was killed (SIGKILL; out of memory?)")
        line = sandbox.crash_line(outcome.stderr, script)
        where = f" at line {line}" if line is not None else ""
        reason = f"the traced process crashed ({name}){where}"
        warnings.append(f"{job.path}: {reason}" + (f": {quote(stderr_hint)}" if stderr_hint else ""))
        trace = failed("crashed", reason)
        trace.error_line = line
        return trace
    if garbled:
        warnings.append(f"{job.path}: the tracer's result was unreadable ({garbled})")
        return failed("crashed", f"the tracer's result was unreadable ({garbled})")
    reason = f"the script exited abruptly (exit code {rc}) before the trace was written"
    if stderr_hint:
        reason += f"; last output: {quote(stderr_hint)}"
    return failed("crashed", reason)


# -- many traces ----------------------------------------------------------------------------------


def sandbox_summary(traces: dict[str, TraceResult]) -> str | None:
    """Which protections the traces ran under (``--verbose``): those every trace had, and the
    network namespace when it was used."""
    ran = [t.sandbox for t in traces.values() if t.sandbox]
    if not ran:
        return None
    common = [p for p in ran[0] if all(p in other for other in ran[1:])]
    wanted = ("reads", "signals", "ptrace")
    absent = [w for w in wanted if not any(p == w or p.startswith(f"{w} (") or p.endswith(f": {w}") for p in common)]
    net = "network namespace" if sandbox.netns_prefix() else "no network namespace (audit hooks only)"
    text = f"sandbox: {net}, " + ", ".join(common)
    if absent:
        text += "; NOT confined by the kernel: " + ", ".join(absent)
    return text


def _unavailable_reason(info: dict[str, Any]) -> str:
    if info.get("error"):
        return f"TensorFlow not available ({info['error']})"
    return "TensorFlow not installed"


def trace(
    jobs: list[TraceJob], options: TraceSettings, *, pool: warm.WarmPool | None = None
) -> tuple[list[tuple[TraceResult, list[str]]], list[str]]:
    """Trace every job (``options.jobs`` at a time, through the trace cache).

    Returns one (TraceResult, warnings) per job, in order, and the run's own warnings. Without
    TensorFlow every job gets an ``unavailable`` result whose reason says so. ``pool``: a warm
    tracer to use (the language server keeps one); by default, with ``options.warm``, one is
    started on the first trace that is not cached and closed before returning.
    """
    if not jobs:
        return [], []
    info = tensorflow_info(options.python or sys.executable)
    if not info.get("tensorflow"):
        reason = _unavailable_reason(info)
        return [(TraceResult("unavailable", reason=reason, step_limit=options.steps), []) for _ in jobs], [
            f"--confirm: {reason}; findings left inconclusive"
        ]

    sandbox.netns_prefix()  # probe once, before the workers start
    workers = max(1, min(int(options.jobs or 1), len(jobs)))
    lock = threading.Lock()
    warnings: list[str] = []
    own_pool = None
    if not options.warm:
        pool = None
    elif pool is None and warm.available() is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
        pool = own_pool = warm.WarmPool(options.python or sys.executable, threads=threads)
    errors_before = len(pool.errors) if pool is not None else 0
    if pool is not None and any(sandbox.detect_tf_mode(j.data.decode("utf-8", "replace")).legacy_keras for j in jobs):
        pool.expect(legacy=True)

    def work(job: TraceJob) -> tuple[TraceResult, list[str]]:
        key = cache_key(job, options, info) if options.cache else None
        if key is not None:
            hit = _cache_load(options, key)
            if hit is not None:
                return hit
        result, warns = run_trace(job, options, jobs=workers, pool=pool)
        if key is not None and result.status in CACHEABLE:
            with lock:
                _cache_store(options, key, result, warns)
        return result, warns

    try:
        if workers == 1:
            outcomes = [work(job) for job in jobs]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tflint-grad-trace") as executor:
                futures = [executor.submit(work, job) for job in jobs]
                try:
                    outcomes = [f.result() for f in futures]
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
    except BaseException:  # Ctrl-C: the children live in their own sessions, end them now
        sandbox.kill_all()
        raise
    finally:
        if own_pool is not None:
            own_pool.close()
    if pool is not None and pool.unavailable and pool.served == 0 and warm.available() is None:
        warnings.append(
            f"--confirm: the warm tracer is unavailable ({pool.unavailable}); each script imported TensorFlow"
        )
    elif pool is not None and len(pool.errors) > errors_before:
        failed = pool.errors[errors_before:]
        warnings.append(
            f"--confirm: the warm tracer failed {len(failed)} time(s) ({failed[-1]}); those scripts were traced cold"
        )
    return outcomes, warnings
