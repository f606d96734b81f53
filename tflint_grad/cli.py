"""The ``tflint-grad`` command line.

Subcommands: ``check`` (the default when the first argument is not a subcommand),
``rules``, ``rule``, ``config``, ``server``. Exit codes (ruff's convention): 0 no
findings, 1 findings (or, with ``--diff``, fixes that would be applied), 2 usage,
configuration, I/O or internal error (2 wins over 1; ``--exit-zero`` turns 1 into 0).

Problems with a file's *content* (a syntax error, Python 2 code, undecodable bytes, a
notebook that is not JSON) are TFG000 findings (exit 1). Problems *reading* a file
(permission denied, a broken symlink) are I/O errors: printed on stderr with the file
name, the other files are still linted, exit 2. A crash inside a rule is an internal
error: printed on stderr with the file and the rule (``-v`` adds the traceback), the run
goes on, exit 2.

``--fix`` writes through a temporary file and ``os.replace`` (mode kept, symlinks
followed) and never writes code that does not parse. In a notebook it edits code cells
only: the edited cells' ``source`` values change, everything else in the file stays byte
for byte (outputs, metadata, ids, layout); ``--diff`` shows the edited cells. Refuted
findings (``--confirm``) are still printed but do not make the exit code 1.

The static path never imports TensorFlow: ``--confirm`` imports the tracer lazily.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import gc
import importlib.util
import io
import json
import os
import shlex
import stat
import sys
import time
import tokenize
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tflint_grad import __version__
from tflint_grad.config import FORMATS, Config, ConfigError, Resolver, Selection, load
from tflint_grad.discovery import MissingPathError, discover, is_excluded
from tflint_grad.settings import TraceSettings

PROG = "tflint-grad"
SUBCOMMANDS = ("check", "rules", "rule", "config", "server")
# Below this many files a process pool costs more than it saves.
POOL_MIN_FILES = 8
CONFIRM_NEEDS_TF = (
    '--confirm needs TensorFlow: pip install "tflint-grad[trace]" && pip install --no-deps "tf-keras==2.21.*"'
)
SERVER_NEEDS_PYGLS = 'tflint-grad server needs pygls: pip install "tflint-grad[lsp]"'

EPILOG = """\
Output: path:line:col: CODE [*] message (1-based; [*] = fixable with --fix). Notebook
findings read path:cell N:line:col: with N the 1-based cell number Jupyter shows (the JSON
"cell" field is the 0-based index). The summary goes to stderr.
Exit codes: 0 no findings, 1 findings, 2 usage/config/I-O/internal error.
"""


class UsageError(Exception):
    """Bad command line (exit 2)."""


# -- worker ------------------------------------------------------------------------------
@dataclass
class WorkerState:
    settings: Any  # the settings of files without their own (Job.config == -1)
    fix: bool = False
    diff: bool = False
    unsafe: bool = False
    keep_source: bool = False
    cache: Any = None  # cache.Cache | None
    # nested configurations: Job.config -> that configuration's settings and cache
    configs: dict[int, Any] = field(default_factory=dict)
    caches: dict[int, Any] = field(default_factory=dict)

    def settings_for(self, job: Job) -> Any:
        return self.configs.get(job.config, self.settings)

    def cache_for(self, job: Job) -> Any:
        return self.caches.get(job.config, self.cache)


@dataclass
class Job:
    display: str
    abspath: str | None  # None: stdin
    raw: bytes | None = None  # stdin content
    config: int = -1  # index of the file's configuration in WorkerState.configs


@dataclass
class Outcome:
    path: str
    result: Any = None  # engine.Result
    io_error: str | None = None
    fixed: int = 0
    fixed_codes: dict[str, int] = field(default_factory=dict)
    diff: str = ""
    notes: list[str] = field(default_factory=list)
    fixed_text: str | None = None  # stdin with --fix: the fixed source


_STATE: WorkerState | None = None


def _init_worker(state: WorkerState) -> None:
    global _STATE
    _STATE = state


def _work(job: Job) -> Outcome:
    """Lint (and fix) one file. Never raises: a crash becomes an internal error (exit 2)."""
    try:
        return _work_unsafe(job)
    except Exception as e:
        import traceback

        from tflint_grad.engine import InternalError, Result

        out = Outcome(job.display)
        out.result = Result(job.display)
        out.result.errors.append(
            InternalError(job.display, "engine", f"{type(e).__name__}: {e}", traceback.format_exc())
        )
        return out


def _work_unsafe(job: Job) -> Outcome:
    from tflint_grad.engine import lint_bytes

    state = _STATE
    assert state is not None
    out = Outcome(job.display)
    raw = job.raw
    if raw is None:
        assert job.abspath is not None
        try:
            with open(job.abspath, "rb") as f:
                raw = f.read()
        except OSError as e:
            out.io_error = f"{job.display}: cannot read: {e.strerror or e}"
            return out
    fixing = state.fix or state.diff
    result = None
    key = None
    cache = state.cache_for(job)
    if cache is not None and not fixing and not state.keep_source:
        key = cache.key(os.path.abspath(job.abspath or job.display), raw)
        result = cache.get(key, job.display)
    if result is None:
        result = lint_bytes(raw, job.display, state.settings_for(job))
        if key is not None and not result.errors:
            cache.put(key, result)
    out.result = result
    if fixing:
        try:
            _fix(out, job, raw, state)
        except OSError as e:
            out.io_error = f"{job.display}: cannot write the fixed file: {e.strerror or e}"
        except Exception as e:
            import traceback

            from tflint_grad.engine import InternalError

            result.errors.append(InternalError(job.display, "fix", f"{type(e).__name__}: {e}", traceback.format_exc()))
    if not state.keep_source:
        result.source = None
    return out


def _fix(out: Outcome, job: Job, raw: bytes, state: WorkerState) -> None:
    from tflint_grad import fixes
    from tflint_grad.sourcefile import SourceFile

    result = out.result
    src = result.source
    if src is None or src.problem is not None:
        return
    todo = fixes.choose(result.findings, state.unsafe)
    if not todo:
        if job.abspath is None:
            out.fixed_text = src.text
        return
    if src.is_notebook:
        _fix_notebook(out, job, raw, state, todo)
        return
    fr = fixes.fix_text(src.text, job.display, state.settings_for(job), unsafe=state.unsafe, findings=result.findings)
    if fr.text == src.text:
        out.notes.append(f"{job.display}: {len(todo)} fix(es) not applied: the fixed code would not parse")
        if job.abspath is None:
            out.fixed_text = src.text
        return
    if not fixes.compiles(fr.text):  # fix_text guarantees this; never write broken code anyway
        out.notes.append(f"{job.display}: fixes not applied: the fixed code would not parse")
        return
    encoding = _encoding(raw)
    try:
        data = fr.text.encode(encoding)
    except UnicodeEncodeError:
        out.notes.append(f"{job.display}: fixes not applied: the fixed code cannot be encoded as {encoding}")
        return
    before = Counter(f.code for f in todo)
    after = Counter(f.code for f in fixes.choose(fr.remaining, state.unsafe))
    out.fixed_codes = {c: before[c] - after[c] for c in sorted(before) if before[c] > after[c]}
    if state.diff:
        out.diff = fixes.unified_diff(src.text, fr.text, job.display)
    elif job.abspath is None:
        out.fixed_text = fr.text
    else:
        atomic_write(job.abspath, data)
    out.fixed = sum(out.fixed_codes.values())  # findings fixed (as the summary counts them)
    result.findings = fr.remaining
    result.source = SourceFile(job.display, fr.text, newline=src.newline, raw=data)


def _fix_notebook(out: Outcome, job: Job, raw: bytes, state: WorkerState, todo: list) -> None:
    """Fix the code cells; only the edited cells' ``source`` changes in the file."""
    from tflint_grad import fixes

    result = out.result
    fr = fixes.fix_notebook(raw, job.display, state.settings_for(job), unsafe=state.unsafe)
    if fr.note:
        out.notes.append(f"{job.display}: some fixes not applied: {fr.note}")
    if fr.applied == 0 or fr.data == raw:
        if job.abspath is None:
            out.fixed_text = result.source.raw.decode("utf-8-sig", errors="replace")
        return
    before = Counter(f.code for f in todo)
    after = Counter(f.code for f in fixes.choose(fr.remaining, state.unsafe))
    out.fixed_codes = {c: before[c] - after[c] for c in sorted(before) if before[c] > after[c]}
    if state.diff:
        out.diff = fixes.notebook_diff(fr, job.display)
    elif job.abspath is None:
        out.fixed_text = fr.data.decode("utf-8-sig")
    else:
        atomic_write(job.abspath, fr.data)
    out.fixed = sum(out.fixed_codes.values())  # findings fixed (as the summary counts them)
    result.findings = fr.remaining
    result.source = fr.source


def _encoding(raw: bytes) -> str:
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    except SyntaxError:
        encoding = "utf-8"
    return encoding


def atomic_write(path: str, data: bytes) -> None:
    """Write via a temporary file in the same folder and ``os.replace``; keep the mode.

    A symlink is followed (its target is rewritten; the link stays a link). In a folder
    where no file can be created, a writable file is rewritten in place.
    """
    import tempfile

    target = os.path.realpath(path)
    mode = stat.S_IMODE(os.stat(target).st_mode)
    folder = os.path.dirname(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".tflint-grad.tmp", dir=folder)
    except PermissionError:
        # a read-only folder holding a writable file (as ruff does): rewrite the file in place
        with open(target, "r+b") as f:
            f.write(data)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _work_batch(batch: list[Job]) -> list[Outcome]:
    return [_work(j) for j in batch]


def _batches(jobs: list[Job], workers: int) -> list[list[int]]:
    """Job indexes grouped for the pool: biggest files first (so that no worker is left
    with a big file at the end), each batch about 1/(16 * workers) of the bytes (big files
    alone, small ones grouped: fewer round trips)."""
    sizes = []
    for job in jobs:
        size = len(job.raw) if job.raw is not None else 0
        if job.abspath is not None:
            try:
                size = os.stat(job.abspath).st_size
            except OSError:
                size = 0
        sizes.append(size + 2048)  # + a fixed cost per file
    order = sorted(range(len(jobs)), key=lambda i: -sizes[i])
    target = max(1, sum(sizes) // (16 * workers))
    batches: list[list[int]] = []
    current: list[int] = []
    weight = 0
    for i in order:
        current.append(i)
        weight += sizes[i]
        if weight >= target:
            batches.append(current)
            current, weight = [], 0
    if current:
        batches.append(current)
    return batches


def _cache_hit(job: Job, state: WorkerState) -> Outcome | None:
    """The cached outcome of an unchanged file (read in the parent: no pool for cache hits)."""
    if job.abspath is None or job.raw is not None:
        return None
    try:
        with open(job.abspath, "rb") as f:
            raw = f.read()
    except OSError:
        return None  # the worker reports it
    cache = state.cache_for(job)
    if cache is None:
        return None
    result = cache.get(cache.key(os.path.abspath(job.abspath), raw), job.display)
    if result is None:
        return None
    out = Outcome(job.display)
    out.result = result
    return out


def run_jobs(jobs: list[Job], state: WorkerState, n: int, warn=None) -> list[Outcome]:
    """Lint ``jobs``; the outcomes are in the order of ``jobs`` whatever ``n``."""
    if (state.cache is not None or state.caches) and not (state.fix or state.diff or state.keep_source):
        hits = [_cache_hit(j, state) for j in jobs]
        misses = [i for i, h in enumerate(hits) if h is None]
        if len(misses) < len(jobs):
            done = _run_jobs([jobs[i] for i in misses], state, n, warn)
            for i, outcome in zip(misses, done):
                hits[i] = outcome
            return hits  # type: ignore[return-value]
    return _run_jobs(jobs, state, n, warn)


def _run_jobs(jobs: list[Job], state: WorkerState, n: int, warn=None) -> list[Outcome]:
    # Everything imported so far (libcst, the rules...) lives as long as the process: move it
    # out of the cyclic GC's reach. Collections then do not traverse it again after every
    # file, and forked workers do not touch (and so copy) the pages they share with the parent.
    gc.freeze()
    if n > 1 and len(jobs) >= POOL_MIN_FILES:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
        workers = min(n, len(jobs))
        batches = _batches(jobs, workers)
        try:
            with ProcessPoolExecutor(
                max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(state,)
            ) as pool:
                outcomes: list[Outcome | None] = [None] * len(jobs)
                for batch, done in zip(batches, pool.map(_work_batch, [[jobs[i] for i in b] for b in batches])):
                    for i, outcome in zip(batch, done):
                        outcomes[i] = outcome
                return outcomes  # type: ignore[return-value]
        except Exception as e:
            if warn:
                warn(f"parallel linting failed ({type(e).__name__}: {e}); linting in one process")
    _init_worker(state)
    return [_work(j) for j in jobs]


# -- argument parsing ----------------------------------------------------------------------
def _codes(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    out: list[str] = []
    for v in values:
        out.extend(c.strip() for c in v.split(",") if c.strip())
    return out


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _jobs(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number of processes (0 = all cores), got {s!r}")
    return v


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {s!r}")
    return v


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise UsageError(message)


def _add_selection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("rule selection")
    g.add_argument(
        "--select",
        action="append",
        metavar="CODES",
        help="comma-separated rule codes, prefixes (TFG2) or ALL to enable (replaces the config's select)",
    )
    g.add_argument("--ignore", action="append", metavar="CODES", help="rule codes or prefixes to disable")
    g.add_argument(
        "--extend-select", action="append", metavar="CODES", help="rule codes or prefixes to enable on top of select"
    )
    g.add_argument(
        "--extend-ignore", action="append", metavar="CODES", help="rule codes or prefixes to disable on top of ignore"
    )
    g.add_argument(
        "--min-confidence",
        choices=("high", "low"),
        help="high (default): report a finding only when the code shows its premise; low: also findings "
        "whose premise was assumed (a model whose layers cannot be seen...)",
    )


def _add_config(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration")
    g.add_argument(
        "--config", metavar="FILE", help="use this pyproject.toml / tflint-grad.toml instead of the closest one"
    )
    g.add_argument("--isolated", action="store_true", help="ignore every configuration file")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="A linter for TensorFlow training scripts: None/zero gradients, "
        "batch-norm statistics that never update, bad initialization.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", "-V", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    check = sub.add_parser(
        "check",
        help="lint files and folders (the default command)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("paths", nargs="*", metavar="PATH", help="files or folders (default: .); - reads standard input")
    _add_selection(check)
    out = check.add_argument_group("output")
    out.add_argument(
        "--format", "--output-format", dest="format", choices=FORMATS, help="output format (default: text)"
    )
    out.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE instead of standard output")
    out.add_argument(
        "--statistics", action="store_true", help="print the number of findings per rule instead of the findings"
    )
    out.add_argument(
        "--show-fixes", action="store_true", help="show each finding's fix; with --fix, list the fixes applied"
    )
    out.add_argument(
        "--show-source", action="store_true", help="show the source line under each finding, with carets under the span"
    )
    out.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the text output (auto: on a terminal, unless NO_COLOR is set; FORCE_COLOR forces it)",
    )
    out.add_argument(
        "-q", "--quiet", action="store_true", help="print the findings and errors only (no summary, no warnings)"
    )
    out.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print the configuration used, timings and tracebacks of internal errors",
    )
    out.add_argument(
        "--exit-zero", action="store_true", help="exit 0 even when there are findings (2 still means an error)"
    )
    out.add_argument(
        "--exit-non-zero-on-fix",
        action="store_true",
        help="with --fix, exit 1 when files were fixed, even if no finding is left",
    )
    fx = check.add_argument_group("fixes")
    fx.add_argument("--fix", action="store_true", help="apply safe fixes in place")
    fx.add_argument(
        "--fix-only",
        action="store_true",
        help="apply fixes (like --fix) but do not report the findings left; exit 0 unless an error occurs",
    )
    fx.add_argument(
        "--add-noqa",
        action="store_true",
        help="append `# noqa: CODE` to every line with a finding (adopting the linter on existing code)",
    )
    fx.add_argument("--unsafe-fixes", action="store_true", help="with --fix or --diff, also apply unsafe fixes")
    fx.add_argument(
        "--diff",
        action="store_true",
        help="print the fixes as unified diffs and write nothing (exit 1 if there are any)",
    )
    _add_config(check)
    files = check.add_argument_group("files")
    files.add_argument(
        "--exclude",
        action="append",
        metavar="PATTERNS",
        help="gitignore-style patterns to exclude (replaces the configuration's exclude and the defaults)",
    )
    files.add_argument(
        "--extend-exclude",
        action="append",
        metavar="PATTERNS",
        help="patterns to exclude on top of the configuration's (and the default) exclude",
    )
    files.add_argument(
        "--force-exclude",
        action="store_true",
        help="apply exclude patterns to files passed explicitly too (pre-commit)",
    )
    files.add_argument("--stdin-filename", metavar="NAME", help="the name of the file read from standard input (-)")
    files.add_argument(
        "--no-cache", action="store_true", help="do not read or write the result cache (.tflint-grad-cache)"
    )
    files.add_argument(
        "--cache-dir", metavar="DIR", help="keep the result cache in DIR (default: .tflint-grad-cache by the config)"
    )
    files.add_argument("--watch", action="store_true", help="lint again whenever a file changes (stop with Ctrl-C)")
    files.add_argument(
        "-j", "--jobs", type=_jobs, metavar="N", help="processes to lint with (default: all cores; 1: in-process)"
    )
    tr = check.add_argument_group("tracing (needs the trace extra)")
    tr.add_argument(
        "--confirm", action="store_true", help="run each file with findings under TensorFlow to confirm or refute them"
    )
    tr.add_argument(
        "--confirm-all", action="store_true", help="trace every file, also for trace-only rules (implies --confirm)"
    )
    tr.add_argument("--trace-steps", type=_positive_int, metavar="N", help="training steps to trace (default: 5)")
    tr.add_argument(
        "--trace-timeout", type=_positive_float, metavar="S", help="seconds per traced script (default: 120)"
    )
    tr.add_argument(
        "--trace-memory", type=_positive_int, metavar="MB", help="memory limit per traced script in MB (default: 4096)"
    )
    tr.add_argument(
        "--trace-args", metavar="ARGS", help='arguments for the traced scripts, shell-split (e.g. "--epochs 1")'
    )
    tr.add_argument(
        "--trace-allow-read",
        action="append",
        metavar="PATH",
        help="let the traced scripts read PATH too (repeatable; by default they read their project without .git, "
        "Python and the system folders only)",
    )

    rules = sub.add_parser("rules", help="list the rules")
    rules.add_argument("--format", choices=("text", "json"), default="text")

    rule = sub.add_parser("rule", help="print a rule's documentation")
    rule.add_argument("rule", metavar="CODE", help="a rule code (TFG201) or name (missing-training-flag)")
    rule.add_argument("--format", choices=("text", "json"), default="text")

    cfg = sub.add_parser("config", help="show the resolved configuration and the rules enabled for a file")
    cfg.add_argument("--show", action="store_true", help="show the resolved configuration (the default)")
    cfg.add_argument(
        "path", nargs="?", default=None, metavar="PATH", help="the file or folder to resolve for (default: .)"
    )
    cfg.add_argument("--format", choices=("text", "json"), default="text")
    _add_selection(cfg)
    _add_config(cfg)

    server = sub.add_parser("server", help="start the language server (stdio; needs the lsp extra)")
    server.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


# -- entry point ---------------------------------------------------------------------------
def console() -> int:
    """The ``tflint-grad`` command and ``python -m tflint_grad``: :func:`main` in a process of
    its own, where libcst nodes get CPython's identity hash (``tflint_grad.nodehash``) before
    any exists; ``--help`` and ``--version`` stay instant (no libcst)."""
    argv = sys.argv[1:]
    if not argv or argv[0] not in ("-h", "--help", "--version", "-V"):
        from tflint_grad.nodehash import use_identity_hash

        use_identity_hash()
    return main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version", "-V"):
        argv.insert(0, "check")
    parser = build_parser()
    try:
        if not argv:
            parser.print_help(sys.stderr)
            return 2
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help / --version
            return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 2
        if args.command == "check":
            return cmd_check(args)
        if args.command == "rules":
            return cmd_rules(args)
        if args.command == "rule":
            return cmd_rule(args)
        if args.command == "config":
            return cmd_config(args)
        if args.command == "server":
            return cmd_server(args)
        parser.print_help(sys.stderr)
        return 2
    except UsageError as e:
        _error(str(e))
        return 2
    except ConfigError as e:
        _error(f"invalid configuration: {e}")
        return 2
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _selection(args: argparse.Namespace) -> Selection:
    from tflint_grad.settings import SelectionError, expand

    sel = Selection(
        select=_codes(args.select),
        ignore=_codes(args.ignore) or [],
        extend_select=_codes(args.extend_select) or [],
        min_confidence=getattr(args, "min_confidence", None),
        extend_ignore=_codes(getattr(args, "extend_ignore", None)) or [],
    )
    for flag, codes in (
        ("--select", sel.select),
        ("--ignore", sel.ignore),
        ("--extend-select", sel.extend_select),
        ("--extend-ignore", sel.extend_ignore),
    ):
        try:
            expand(codes or [])
        except SelectionError as e:
            raise UsageError(f"{flag}: {e}") from None
    return sel


def _resolver(args: argparse.Namespace) -> Resolver:
    if args.config and args.isolated:
        raise UsageError("--config and --isolated cannot be used together")
    return Resolver(
        args.config,
        isolated=args.isolated,
        exclude=_patterns(getattr(args, "exclude", None)),
        extend_exclude=_patterns(getattr(args, "extend_exclude", None)),
    )


def _patterns(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


_CONFIG_KEYS: dict[int, int] = {}


def _config_key(cfg: Config, primary: Config) -> int:
    """-1 for the run's main configuration, else a small number naming ``cfg``."""
    if cfg is primary:
        return -1
    return _CONFIG_KEYS.setdefault(id(cfg), len(_CONFIG_KEYS))


def _load_config(args: argparse.Namespace, start: str | None) -> Config:
    if args.config and args.isolated:
        raise UsageError("--config and --isolated cannot be used together")
    return load(args.config, start=start, isolated=args.isolated)


# -- check ---------------------------------------------------------------------------------
def cmd_check(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    paths = list(args.paths)
    stdin = False
    if not paths:
        paths = ["-"] if args.stdin_filename else ["."]
    if "-" in paths:
        if len(paths) > 1:
            raise UsageError("- (standard input) cannot be combined with other paths")
        stdin = True
    if args.confirm_all:
        args.confirm = True
    if args.diff and args.confirm:
        raise UsageError("--diff cannot be combined with --confirm")
    if args.stdin_filename and not stdin:
        raise UsageError("--stdin-filename needs - (standard input) as the path")
    if args.fix_only:
        args.fix = True
    if args.add_noqa and (args.fix or args.diff):
        raise UsageError("--add-noqa cannot be combined with --fix, --fix-only or --diff")
    if args.add_noqa and stdin:
        raise UsageError("--add-noqa needs files, not standard input")
    if args.watch:
        if stdin or args.fix or args.diff or args.add_noqa:
            raise UsageError("--watch lints files: it cannot be combined with -, --fix, --diff or --add-noqa")
        return _watch(args, paths)

    # Each file is linted with the closest configuration above it (ruff's hierarchical
    # configuration; --config / --isolated: one for all). Run-wide options (output format)
    # come from the configuration of the folder holding every path, whatever their order.
    resolver = _resolver(args)
    if stdin:
        # the config above where the file would be (its folder need not exist)
        start = os.path.abspath(args.stdin_filename) if args.stdin_filename else os.getcwd()
        config = resolver.for_path(start)
    else:
        existing = [os.path.abspath(p) for p in paths if os.path.exists(p)]
        config = resolver.for_path(os.path.commonpath(existing)) if existing else resolver.for_folder(os.getcwd())
    cli_selection = _selection(args)
    settings = config.settings(cli_selection)
    fmt = args.format or config.output_format or "text"
    if args.statistics and fmt not in ("text", "json"):
        raise UsageError("--statistics supports --format text or json")
    if args.verbose:
        _note(f"configuration: {config.display_name}")

    trace = None
    if args.confirm:
        trace = _tracer()  # fail fast, before linting

    # what to lint
    jobs: list[Job] = []
    io_errors: list[str] = []
    if stdin:
        name = args.stdin_filename or "<stdin>"
        raw = sys.stdin.buffer.read()
        display = name
        if args.stdin_filename:
            from tflint_grad.discovery import display_path

            display = display_path(os.path.abspath(name), name)
        if args.force_exclude and args.stdin_filename and is_excluded(name, resolver):
            if args.fix:
                sys.stdout.buffer.write(raw)
                sys.stdout.flush()
            return 0
        jobs.append(Job(display, None, raw))
    else:
        try:
            found = discover(paths, resolver, force_exclude=args.force_exclude)
        except MissingPathError as e:
            raise UsageError(f"no such file or folder: {e}") from None
        io_errors.extend(found.errors)
        jobs = [
            Job(e.display, e.abspath, config=_config_key(resolver.for_path(e.abspath), config)) for e in found.files
        ]
        if not jobs and not io_errors and not args.quiet and not found.skipped:
            _warn("no Python files found under " + ", ".join(paths))

    nested = {_config_key(c, config): c for c in resolver.configs() if c is not config}
    nested_settings = {key: c.settings(cli_selection) for key, c in nested.items()}
    cache = None
    caches: dict[int, Any] = {}
    if not args.no_cache and not stdin and not (args.fix or args.diff):
        cache = _open_cache(config, settings, args.cache_dir)
        caches = {key: _open_cache(c, nested_settings[key], args.cache_dir) for key, c in nested.items()}
    state = WorkerState(
        settings,
        fix=args.fix,
        diff=args.diff,
        unsafe=args.unsafe_fixes,
        keep_source=bool(args.confirm or args.add_noqa),
        cache=cache,
        configs=nested_settings,
        caches=caches,
    )
    n = args.jobs if args.jobs else default_jobs()
    outcomes = run_jobs(jobs, state, n, warn=None if args.quiet else _warn)
    if cache is not None:
        cache.save()

    results = []
    internal: list[str] = []
    notes: list[str] = []
    for o in outcomes:
        if o.io_error:
            io_errors.append(o.io_error)
        notes.extend(o.notes)
        if o.result is None:
            continue
        results.append(o.result)
        for err in o.result.errors:
            internal.append(_internal_error(err, args.verbose))

    traced = False
    if trace is not None:
        confirm = trace
        options = _trace_settings(args, config, n)
        # the runner picks the files to trace: those with findings (every TF script with --confirm-all)
        to_trace = results
        if to_trace:
            try:
                # settings: trace-only rules (TFG105) obey --select/--ignore/per-file-ignores too
                traces: dict = {}
                warnings = confirm(to_trace, options, lint_settings=settings, traces=traces) or []
                if args.verbose:
                    from tflint_grad.tracer.runner import sandbox_summary

                    summary = sandbox_summary(traces)
                    if summary:
                        _note(summary)
            except Exception as e:
                import traceback

                internal.append(
                    _internal_error(_TracerError(f"{type(e).__name__}: {e}", traceback.format_exc()), args.verbose)
                )
                warnings = []
            for w in warnings:
                if not args.quiet:
                    print(f"{PROG}: {w}" if not str(w).startswith(PROG) else str(w), file=sys.stderr)
            traced = True
        for r in results:
            r.findings.sort(key=lambda f: f.sort_key())
            r.source = None

    if args.add_noqa:
        return _add_noqa(args, outcomes, jobs, io_errors, internal)

    findings = [f for r in results for f in r.findings]
    files_checked = len(results)
    stdin_fix = stdin and args.fix and not args.diff
    sources = _sources(findings, jobs) if args.show_source and fmt == "text" and not args.statistics else None

    # report
    report = _render(
        fmt,
        [] if args.fix_only else findings,
        args,
        files_checked,
        traced,
        successful=not (io_errors or internal),
        notifications=[*io_errors, *internal],
        sources=sources,
        color=_report_color(args, stdin_fix),
    )
    diffs = "".join(o.diff for o in outcomes if o.diff)
    for msg in io_errors:
        _error(msg)
    for msg in internal:
        print(msg, file=sys.stderr)
    if not args.quiet:
        for msg in notes:
            _warn(msg)

    if args.diff:
        _write_report(diffs, args.output)
    elif stdin_fix:
        fixed = next((o.fixed_text for o in outcomes if o.fixed_text is not None), None)
        if fixed is None:
            sys.stdout.buffer.write(jobs[0].raw or b"")
        else:
            sys.stdout.write(fixed)
        sys.stdout.flush()
        if report:
            _write_report(report, args.output, stream=sys.stderr)
    else:
        _write_report(report, args.output)

    fixed_total = sum(o.fixed for o in outcomes)
    active = [f for f in findings if f.verdict != "refuted"]
    if not args.quiet:
        _summary(args, outcomes, findings, files_checked, fixed_total, errors=len(io_errors) + len(internal))
    if args.verbose:
        _note(
            f"linted {files_checked} file(s) in {time.perf_counter() - t0:.2f}s with "
            f"{min(n, len(jobs)) if n > 1 and len(jobs) >= POOL_MIN_FILES else 1} process(es)"
        )

    if io_errors or internal:
        return 2
    if args.diff:
        code = 1 if diffs else 0
    elif args.fix_only:
        code = 1 if args.exit_non_zero_on_fix and fixed_total else 0  # as ruff, --fix-only exits 0
    else:
        code = 1 if active or (args.exit_non_zero_on_fix and fixed_total) else 0
    return 0 if args.exit_zero else code


def _report_color(args: argparse.Namespace, stdin_fix: bool) -> bool:
    from tflint_grad.report import use_color

    if args.output:
        return args.color == "always"
    return use_color(args.color, sys.stderr if stdin_fix else sys.stdout)


def _sources(findings, jobs: list[Job]) -> dict[str, str]:
    """The analysed text of each file with findings (for --show-source; cached results hold none)."""
    from tflint_grad.sourcefile import load

    wanted = {f.path for f in findings}
    out: dict[str, str] = {}
    for job in jobs:
        if job.display not in wanted:
            continue
        raw = job.raw
        if raw is None and job.abspath is not None:
            try:
                with open(job.abspath, "rb") as fh:
                    raw = fh.read()
            except OSError:
                continue
        if raw is not None:
            out[job.display] = load(job.display, raw).text
    return out


def _add_noqa(args: argparse.Namespace, outcomes: list[Outcome], jobs: list[Job], io_errors, internal) -> int:
    """--add-noqa: append ``# noqa: CODE`` to every line with a finding (ruff's --add-noqa)."""
    from tflint_grad import suppressions

    by_display = {j.display: j for j in jobs}
    added = 0
    for o in outcomes:
        r = o.result
        job = by_display.get(o.path)
        if r is None or job is None or job.abspath is None or r.source is None or not r.findings:
            continue
        if r.source.is_notebook:
            _warn(f"{o.path}: notebooks are not edited by --add-noqa")
            continue
        if r.source.problem is not None or any(f.code == "TFG000" for f in r.findings):
            continue  # a file that cannot be parsed: nothing to add a comment to safely
        text, count = suppressions.add_noqa(r.source.text, suppressions.lines_of(r.findings, r.source.text))
        if not count:
            continue
        raw = r.source.raw
        try:
            atomic_write(job.abspath, text.encode(_encoding(raw)))
        except (OSError, UnicodeEncodeError) as e:
            io_errors.append(f"{o.path}: cannot write: {getattr(e, 'strerror', None) or e}")
            continue
        added += count
    for msg in io_errors:
        _error(msg)
    for msg in internal:
        print(msg, file=sys.stderr)
    if not args.quiet:
        print(f"Added {_plural(added, 'noqa directive')}.", file=sys.stderr)
    return 2 if io_errors or internal else 0


def _watch(args: argparse.Namespace, paths: list[str]) -> int:
    """--watch: lint, then lint again whenever a linted file or a configuration changes
    (polling, as portable as it gets). Ctrl-C stops it (exit 0)."""
    interval = float(os.environ.get("TFLINT_GRAD_WATCH_INTERVAL", "0.5"))
    args.watch = False
    previous: dict[str, tuple[int, int]] | None = None
    try:
        while True:
            snapshot = _snapshot(args, paths)
            if snapshot != previous:
                if previous is not None:
                    print(f"{PROG}: file changes detected, linting again", file=sys.stderr)
                else:
                    print(f"{PROG}: watching for file changes (Ctrl-C to stop)", file=sys.stderr)
                try:
                    cmd_check(argparse.Namespace(**vars(args)))
                except (UsageError, ConfigError) as e:
                    _error(str(e))
                sys.stdout.flush()
                sys.stderr.flush()
                previous = snapshot
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0


def _snapshot(args: argparse.Namespace, paths: list[str]) -> dict[str, tuple[int, int]]:
    from tflint_grad.config import CONFIG_FILES

    out: dict[str, tuple[int, int]] = {}
    try:
        found = discover(paths, _resolver(args), force_exclude=args.force_exclude)
        files = [e.abspath for e in found.files]
    except (MissingPathError, ConfigError, UsageError):
        files = []
    folders = {os.path.dirname(f) for f in files} | {os.path.abspath(p) for p in paths if os.path.isdir(p)}
    for folder in list(folders):
        for parent in (folder, *map(str, Path(folder).parents)):
            folders.add(parent)
    candidates = files + [os.path.join(d, name) for d in folders for name in CONFIG_FILES]
    for path in candidates:
        try:
            st = os.stat(path)
        except OSError:
            continue
        out[path] = (st.st_mtime_ns, st.st_size)
    return out


def _note(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


@dataclass
class _TracerError:
    message: str
    traceback: str
    path: str = "--confirm"
    rule: str = "tracer"


def _internal_error(err, verbose: bool) -> str:
    from tflint_grad.registry import by_code

    rule = by_code().get(err.rule)
    if rule is not None:
        where = f"rule {err.rule} ({rule.name})"
    else:
        where = {"fix": "applying fixes", "engine": "the linter", "tracer": "the tracer"}.get(err.rule, err.rule)
    msg = f"{PROG}: error: {err.path}: internal error in {where}: {err.message}"
    if verbose and err.traceback:
        msg += "\n" + "".join("    " + line + "\n" for line in err.traceback.rstrip().splitlines())
    elif err.traceback:
        msg += " (run with -v for the traceback; please report it)"
    return msg


def _render(
    fmt: str,
    findings,
    args,
    files_checked: int,
    traced: bool,
    *,
    successful: bool,
    notifications,
    sources: dict[str, str] | None = None,
    color: bool = False,
) -> str:
    from tflint_grad import output, report

    if args.statistics:
        return output.format_statistics(findings, fmt, unsafe=args.unsafe_fixes)
    if fmt == "json":
        return output.format_json(findings, files_checked)
    if fmt == "sarif":
        return output.format_sarif(
            findings, successful=successful, notifications=notifications, script_text=args.verbose
        )
    if fmt == "github":
        return output.format_github(findings, script_text=args.verbose)
    if fmt == "junit":
        return report.format_junit(findings)
    if fmt == "gitlab":
        return report.format_gitlab(findings)
    return report.format_text(
        findings, color=color, sources=sources, traced=traced, show_fixes=args.show_fixes, unsafe=args.unsafe_fixes
    )


def _write_report(text: str, path: str | None, stream: TextIO | None = None) -> None:
    if path:
        try:
            with open(path, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
        except OSError as e:
            raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
        return
    if text:
        (stream or sys.stdout).write(text)
        (stream or sys.stdout).flush()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _summary(args, outcomes: list[Outcome], findings, files_checked: int, fixed_total: int, errors: int = 0) -> None:
    from tflint_grad.output import is_fixable

    lines: list[str] = []
    if args.diff:
        n_files = sum(1 for o in outcomes if o.diff)
        if fixed_total:
            lines.append(f"Would fix {_plural(fixed_total, 'issue')} in {_plural(n_files, 'file')}")
        else:
            lines.append(f"No fixes available ({_plural(files_checked, 'file')})")
        print("\n".join(lines), file=sys.stderr)
        return
    if args.fix_only:
        lines.append(f"Fixed {_plural(fixed_total, 'issue')} ({len(findings)} remaining)")
        print("\n".join(lines), file=sys.stderr)
        return
    if args.fix:
        lines.append(f"Fixed {_plural(fixed_total, 'issue')}")
        if args.show_fixes and fixed_total:
            for o in outcomes:
                if o.fixed_codes:
                    lines.append(f"- {o.path}:")
                    for code, count in o.fixed_codes.items():
                        lines.append(f"    {count} × {code}")
    if findings:
        n_files = len({f.path for f in findings})
        extra = []
        safe = sum(1 for f in findings if is_fixable(f, args.unsafe_fixes))
        unsafe_only = sum(1 for f in findings if is_fixable(f, True) and not is_fixable(f, args.unsafe_fixes))
        refuted = sum(1 for f in findings if f.verdict == "refuted")
        confirmed = sum(1 for f in findings if f.verdict == "confirmed")
        if confirmed:
            extra.append(f"{confirmed} confirmed")
        if refuted:
            extra.append(f"{refuted} refuted by tracing")
        if safe and not args.fix:
            extra.append(
                f"{safe} fixable with --fix"
                + (
                    " --unsafe-fixes"
                    if args.unsafe_fixes
                    and any(f.fix is not None and f.fix.applicability == "unsafe" for f in findings)
                    else ""
                )
            )
        if unsafe_only:
            extra.append(f"{unsafe_only} more with --fix --unsafe-fixes")
        lines.append(
            f"Found {_plural(len(findings), 'finding')} in {_plural(n_files, 'file')}"
            + (f" ({', '.join(extra)})" if extra else "")
        )
    else:
        if errors:  # not "All checks passed": some files were not checked, or not completely
            lines.append(f"No findings in {_plural(files_checked, 'file')}, but {_plural(errors, 'error')} (see above)")
        else:
            lines.append(f"All checks passed ({_plural(files_checked, 'file')})")
    print("\n".join(lines), file=sys.stderr)


def _open_cache(config: Config, settings, cache_dir: str | None = None):
    from tflint_grad import cache

    try:
        return cache.Cache.open(config, settings, cache_dir)
    except Exception:
        return None


# -- tracing -------------------------------------------------------------------------------
def _tracer():
    if importlib.util.find_spec("tensorflow") is None:
        raise UsageError(CONFIRM_NEEDS_TF)
    try:
        from tflint_grad.verdicts import confirm
    except ImportError:
        raise UsageError(CONFIRM_NEEDS_TF) from None
    return confirm


def _trace_settings(args: argparse.Namespace, config: Config, jobs: int) -> TraceSettings:
    """The configuration's TraceSettings, overridden by the command line's flags."""
    base = config.trace
    script_args = base.args
    if args.trace_args is not None:
        try:
            script_args = tuple(shlex.split(args.trace_args))
        except ValueError as e:
            raise UsageError(f"--trace-args: cannot split {args.trace_args!r}: {e}") from None
    return dataclasses.replace(
        base,
        steps=args.trace_steps or base.steps,
        timeout=args.trace_timeout or base.timeout,
        memory_mb=args.trace_memory or base.memory_mb,
        args=script_args,
        allow_read=tuple([os.path.abspath(p) for p in args.trace_allow_read or ()] + list(base.allow_read)),
        jobs=jobs,
        confirm_all=bool(args.confirm_all),
        cache=not args.no_cache,
    )


# -- other subcommands -----------------------------------------------------------------------
def cmd_rules(args: argparse.Namespace) -> int:
    from tflint_grad.output import format_rules
    from tflint_grad.registry import all_rules

    sys.stdout.write(format_rules(all_rules(), args.format))
    return 0


def _find_rule(key: str):
    from tflint_grad.registry import all_rules, lookup

    rule = lookup(key)
    if rule is None:
        names = [r.code for r in all_rules()] + [r.name for r in all_rules()]
        hint = difflib.get_close_matches(key.upper() if key[:3].lower() == "tfg" else key, names, n=1, cutoff=0.6)
        did = f" (did you mean {hint[0]}?)" if hint else ""
        raise UsageError(f"unknown rule {key!r}{did}; `{PROG} rules` lists them")
    return rule


def cmd_rule(args: argparse.Namespace) -> int:
    from tflint_grad.docs import render_rule
    from tflint_grad.output import rules_info

    rule = _find_rule(args.rule)
    if args.format == "json":
        info = rules_info([rule])[0]
        info["docs"] = rule.docs()
        sys.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
    else:
        text = render_rule(rule)
        if text.startswith("<!--"):
            text = text.split("\n", 1)[1].lstrip("\n")
        sys.stdout.write(text)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from tflint_grad.discovery import is_excluded as excluded_by_config
    from tflint_grad.registry import by_code

    path = args.path or "."
    if not os.path.exists(path):
        raise UsageError(f"no such file or folder: {path!r}")
    config = _load_config(args, path)
    settings = config.settings(_selection(args))
    rel = os.path.relpath(os.path.abspath(path)).replace(os.sep, "/")
    enabled = sorted(settings.enabled_for(rel))
    rules = by_code()
    options = {
        code: {**dict(r.options), **settings.rule_options.get(code, {})} for code, r in rules.items() if r.options
    }
    data: dict[str, Any] = {
        "config_file": str(config.path) if config.path else None,
        "root": str(config.root),
        "select": config.selection.select,
        "ignore": config.selection.ignore,
        "extend-select": config.selection.extend_select,
        "extend-ignore": config.selection.extend_ignore,
        "per-file-ignores": config.per_file_ignores,
        "exclude": config.exclude,
        "extend-exclude": config.extend_exclude,
        "respect-gitignore": config.respect_gitignore,
        "output-format": config.output_format or "text",
        "min-confidence": settings.min_confidence,
        "trace": {  # the [tool.tflint-grad.trace] keys
            "steps": config.trace.steps,
            "timeout": config.trace.timeout,
            "memory": config.trace.memory_mb,
            "args": list(config.trace.args),
            "allow_read": list(config.trace.allow_read),
        },
        "rules": options,
        "path": rel,
        "excluded": excluded_by_config(path, config)
        if os.path.abspath(path) != os.path.abspath(config.root)
        else False,
        "enabled": enabled,
        "disabled": sorted(set(rules) - set(enabled)),
    }
    if args.format == "json":
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return 0
    w = sys.stdout.write
    w(f"config file:       {data['config_file'] or '(none: defaults)'}\n")
    w(f"root:              {data['root']}\n")
    for key in ("select", "ignore", "extend-select", "extend-ignore"):
        value = data[key]
        w(
            f"{key + ':':<19}{', '.join(value) if value else ('ALL (default)' if key == 'select' and value is None else '-')}\n"
        )
    pfi = data["per-file-ignores"]
    w("per-file-ignores:  " + ("; ".join(f"{k} = {', '.join(v)}" for k, v in pfi.items()) if pfi else "-") + "\n")
    w(f"exclude:           {', '.join(data['exclude']) or '-'}\n")
    w(f"extend-exclude:    {', '.join(data['extend-exclude']) or '-'}\n")
    w(f"respect-gitignore: {str(data['respect-gitignore']).lower()}\n")
    w(f"output-format:     {data['output-format']}\n")
    w(f"min-confidence:    {data['min-confidence']}\n")
    t = data["trace"]
    w(
        f"trace:             steps={t['steps']} timeout={t['timeout']:g}s memory={t['memory']}MB args={shlex.join(t['args']) or '-'}\n"
    )
    if t.get("allow_read"):
        w(f"trace allow-read:  {', '.join(t['allow_read'])}\n")
    if options:
        w("rule options:\n")
        for code, opts in options.items():
            for k, v in opts.items():
                mark = "" if k in settings.rule_options.get(code, {}) else " (default)"
                w(f"  {code}.{k} = {v!r}{mark}\n")
    w(f"\nfor {data['path']}{' (excluded by exclude patterns)' if data['excluded'] else ''}:\n")
    w(f"enabled rules ({len(enabled)}):\n")
    for code in enabled:
        w(f"  {code}  {rules[code].name}\n")
    if data["disabled"]:
        w(f"disabled rules ({len(data['disabled'])}):\n")
        for code in data["disabled"]:
            w(f"  {code}  {rules[code].name}\n")
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("pygls") is None or importlib.util.find_spec("lsprotocol") is None:
        raise UsageError(SERVER_NEEDS_PYGLS)
    try:
        from tflint_grad.lsp import main as lsp_main
    except ImportError as e:
        raise UsageError(f"the language server cannot start: {e}; {SERVER_NEEDS_PYGLS}") from None
    lsp_main()
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
