"""Language server: tflint-grad diagnostics and fixes in the editor (pygls 2).

Start it with ``tflint-grad server`` or ``python -m tflint_grad.lsp`` (stdio). Needs
the ``lsp`` extra: ``pip install 'tflint-grad[lsp]'``.

What it does:

* lints the **buffer** (not the file on disk) on ``didOpen``, ``didSave`` and, debounced
  per document (0.3 s), on ``didChange``; ``didClose`` clears the document's diagnostics.
  Linting runs in a worker process (libcst's parser holds the GIL: a thread would still
  stall the event loop), one run per document at a time; a run that a newer edit made
  stale is dropped and the current text linted instead;
* each diagnostic has ``code`` (``TFG101``), ``codeDescription.href`` (the rule page),
  ``source = "tflint-grad"``, a severity (Error for ``error`` findings and for findings
  the tracer confirmed, Warning, Information) and a range in the client's position
  encoding (UTF-16 by default: libcst columns are code points, so an emoji before the
  flagged expression counts 2);
* ``data`` carries the fix edits and the ``# noqa`` edit (as LSP ranges, for the
  document version that was linted), so code actions need no re-lint;
* code actions are answered from the last lint: apply the rule's fix (``quickfix``,
  preferred when safe), "Disable TFG101 for this line" (appends ``  # noqa: TFG101`` or
  merges into the line's ``# noqa:`` list) and ``source.fixAll.tflint-grad`` (every safe
  fix, via :func:`tflint_grad.fixes.fix_text`), whose edit is computed lazily by
  ``codeAction/resolve`` (at once when the request asks for fix-all kinds only);
* notebooks (LSP 3.17 ``notebookDocument/*``): the code cells are linted together and
  each cell gets its own diagnostics and quick fixes (see :mod:`tflint_grad.lsp_notebook`);
* with the setting ``{"confirm": true}`` (``initializationOptions`` or
  ``workspace/didChangeConfiguration``), every save also runs ``--confirm`` in the
  background (the tracer runs TensorFlow in a child process) and republishes the
  diagnostics with ``verdict: evidence`` appended to their messages. While ``confirm`` is
  on, the server keeps one warm tracer (``tflint_grad.tracer.warm``: a child process that
  imported TensorFlow once, started as soon as ``confirm`` is turned on), so a save costs
  the script's own run, not a TensorFlow import.

Rule selection, per-file-ignores, per-rule options and ``exclude`` come from the
closest ``[tool.tflint-grad]`` config above each file, as for ``tflint-grad check``
(re-read when a config file is saved or a watched one changes). Editor settings (flat,
or under a ``"tflint-grad"`` key) go on top: ``confirm`` (bool, default false), ``run``
(``"onType"`` | ``"onSave"``, default onType), ``select`` / ``ignore`` /
``extendSelect`` (rule selectors, as on the command line), ``debounce`` (seconds).

This process never imports TensorFlow; the ``tflint-grad.debugModules`` command
reports whether it has.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import logging
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from tflint_grad import __version__, api, lsp_notebook, suppressions
from tflint_grad.engine import lint_file
from tflint_grad.finding import Edit, Finding
from tflint_grad.settings import Settings
from tflint_grad.sourcefile import SourceFile

LOG = logging.getLogger("tflint_grad.lsp")

SOURCE = "tflint-grad"
FIX_ALL_KIND = "source.fixAll.tflint-grad"
DEBUG_MODULES_COMMAND = "tflint-grad.debugModules"
# How long a code action waits for the lint of an edited buffer before answering from the last one.
CODE_ACTION_WAIT = 0.2
DEFAULT_DEBOUNCE = 0.3
CONFIG_FILES = (".tflint-grad.toml", "tflint-grad.toml", "pyproject.toml")

_NOQA = suppressions.NOQA
_FILE_NOQA = suppressions.FILE_NOQA
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


# -- settings ------------------------------------------------------------------------
@dataclass
class Options:
    confirm: bool = False
    run: str = "onType"  # "onType" | "onSave"
    select: list[str] | None = None
    ignore: tuple[str, ...] | list[str] = ()
    extend_select: tuple[str, ...] | list[str] = ()
    debounce: float = DEFAULT_DEBOUNCE

    def update(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            return
        for key in ("tflint-grad", "tflint_grad", "tflintGrad"):
            if isinstance(raw.get(key), dict):
                raw = raw[key]
                break
        if "confirm" in raw:
            self.confirm = bool(raw["confirm"])
        if raw.get("run") in ("onType", "onSave"):
            self.run = raw["run"]
        if "select" in raw:
            self.select = _str_list(raw["select"]) if raw["select"] is not None else None
        if "ignore" in raw:
            self.ignore = _str_list(raw["ignore"])
        for key in ("extendSelect", "extend-select", "extend_select"):
            if key in raw:
                self.extend_select = _str_list(raw[key])
        if isinstance(raw.get("debounce"), (int, float)) and raw["debounce"] >= 0:
            self.debounce = float(raw["debounce"])


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v for v in re.split(r"[,\s]+", value) if v]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return []


# -- positions -----------------------------------------------------------------------
def split_lines(text: str) -> list[str]:
    """Lines without their terminators, split like libcst and LSP (\\r\\n, \\r, \\n).

    A text ending with a newline has a last, empty line: the position after it.
    """
    return _LINE_BREAK.split(text)


class PositionMap:
    """Converts tflint-grad's 1-based code-point (line, column) to LSP positions."""

    def __init__(self, lines: Sequence[str], codec: Any) -> None:
        self.lines = lines
        self.codec = codec

    def position(self, line: int, column: int) -> types.Position:
        idx = min(max(line - 1, 0), len(self.lines) - 1)
        text = self.lines[idx]
        prefix = text[: max(column - 1, 0)]
        # ASCII is one unit per character in UTF-8, UTF-16 and UTF-32 (the codec counts in Python)
        units = len(prefix) if prefix.isascii() else self.codec.client_num_units(prefix)
        return types.Position(line=idx, character=units)

    def range(self, line: int, column: int, end_line: int, end_column: int) -> types.Range:
        return types.Range(start=self.position(line, column), end=self.position(end_line, end_column))

    def end(self) -> types.Position:
        last = len(self.lines) - 1
        return self.position(last + 1, len(self.lines[last]) + 1)


def _range_dict(r: types.Range) -> dict[str, Any]:
    return {
        "start": {"line": r.start.line, "character": r.start.character},
        "end": {"line": r.end.line, "character": r.end.character},
    }


def _range_from(d: Any) -> types.Range:
    return types.Range(
        start=types.Position(line=int(d["start"]["line"]), character=int(d["start"]["character"])),
        end=types.Position(line=int(d["end"]["line"]), character=int(d["end"]["character"])),
    )


def noqa_edit(lines: Sequence[str], line: int, code: str, pmap: PositionMap) -> dict[str, Any] | None:
    """The edit that silences ``code`` on 1-based ``line``: merge into its ``# noqa:``
    list, or append ``  # noqa: CODE``. None when the line already silences it."""
    if not 0 < line <= len(lines):
        return None
    text = lines[line - 1]
    m = _NOQA.search(text)
    if m and not _FILE_NOQA.search(text):
        codes = m.group("codes")
        if not codes:
            return None  # a bare noqa directive already silences everything
        if code.upper() in {c.strip().upper() for c in codes.split(",")}:
            return None
        at = m.end("codes") + 1
        return {"range": _range_dict(pmap.range(line, at, line, at)), "newText": f", {code}"}
    stripped = len(text.rstrip())
    return {
        "range": _range_dict(pmap.range(line, stripped + 1, line, len(text) + 1)),
        "newText": f"  # noqa: {code}",
    }


# -- findings -> diagnostics ---------------------------------------------------------
def severity_of(f: Finding) -> types.DiagnosticSeverity:
    if f.verdict == "confirmed" or f.severity == "error":
        return types.DiagnosticSeverity.Error
    if f.verdict == "refuted" or f.severity == "info":
        return types.DiagnosticSeverity.Information
    return types.DiagnosticSeverity.Warning


def message_of(f: Finding) -> str:
    if f.verdict != "unconfirmed":
        return f"{f.message} [{f.verdict}: {f.evidence or 'no evidence recorded'}]"
    return f.message


def text_span(f: Finding) -> tuple[int, int, int, int]:
    """The finding's range in the linted text (notebook findings are cell-relative)."""
    first = int(f.data.get("source_line", f.line))
    return first, f.column, first + (f.end_line - f.line), f.end_column


def edit_dict(e: Edit, pmap: PositionMap) -> dict[str, Any]:
    return {"range": _range_dict(pmap.range(e.line, e.column, e.end_line, e.end_column)), "newText": e.content}


def _no_comment_for(findings: Sequence[Finding], text: str) -> set[int]:
    """The lines of ``text`` a ``# noqa`` cannot end (``suppressions.no_comment_lines``), as far
    as the findings that span several lines need it (only they can move their noqa to their
    last line): nothing to tokenize in the usual case of one-line findings."""
    last = max((text_span(f)[2] for f in findings if f.end_line != f.line), default=0)
    return suppressions.no_comment_lines(text, upto=last) if last else set()


def to_diagnostic(
    f: Finding, lines: Sequence[str], pmap: PositionMap, version: int | None, no_comment: set[int] | None
) -> types.Diagnostic:
    line, col, end_line, end_col = text_span(f)
    fix = None
    if f.fix is not None:
        fix = {
            "title": f.fix.message,
            "applicability": f.fix.applicability,
            "edits": [edit_dict(e, pmap) for e in f.fix.edits],
        }
    noqa_line = line
    if no_comment and line in no_comment and end_line not in no_comment:
        noqa_line = end_line  # the engine honours a noqa on the first or the last line
    noqa = noqa_edit(lines, noqa_line, f.code, pmap)
    return types.Diagnostic(
        range=pmap.range(line, col, end_line, end_col),
        message=message_of(f),
        severity=severity_of(f),
        code=f.code,
        code_description=types.CodeDescription(href=f.url),
        source=SOURCE,
        data={
            "version": version,
            "name": f.name,
            "verdict": f.verdict,
            "fix": fix,
            "noqa": noqa,
        },
    )


def _opcodes(a: list[str], b: list[str]) -> list[tuple[str, int, int, int, int]]:
    """Line-level differences in linear time for what fixes produce (lines rewritten in
    place: same line count between the common prefix and suffix); difflib otherwise (it
    is quadratic on the repetitive lines of big scripts)."""
    n = min(len(a), len(b))
    head = 0
    while head < n and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < n - head and a[len(a) - 1 - tail] == b[len(b) - 1 - tail]:
        tail += 1
    a_end, b_end = len(a) - tail, len(b) - tail
    if a_end - head != b_end - head:
        matcher = difflib.SequenceMatcher(None, a[head:a_end], b[head:b_end], autojunk=False)
        return [(t, i1 + head, i2 + head, j1 + head, j2 + head) for t, i1, i2, j1, j2 in matcher.get_opcodes()]
    out: list[tuple[str, int, int, int, int]] = []
    i = head
    while i < a_end:
        if a[i] == b[i]:
            i += 1
            continue
        j = i
        while j < a_end and a[j] != b[j]:
            j += 1
        out.append(("replace", i, j, i, j))
        i = j
    return out


def diff_edits(before: str, after: str, pmap: PositionMap) -> list[types.TextEdit]:
    """Minimal line-level edits turning ``before`` into ``after``."""
    a = before.splitlines(keepends=True)
    b = after.splitlines(keepends=True)
    edits: list[types.TextEdit] = []
    for tag, i1, i2, j1, j2 in _opcodes(a, b):
        if tag == "equal":
            continue
        start = types.Position(line=i1, character=0)
        if i2 < len(a) or not a or a[-1].endswith(("\n", "\r")):
            end = types.Position(line=i2, character=0)
        else:  # the last line has no terminator: end at its end
            end = pmap.end()
        edits.append(types.TextEdit(range=types.Range(start=start, end=end), new_text="".join(b[j1:j2])))
    return edits


# -- the server ----------------------------------------------------------------------
@dataclass
class Linted:
    version: int | None
    text: str
    findings: list[Finding]
    diagnostics: list[types.Diagnostic]
    errors: list[Any] = field(default_factory=list)  # engine.InternalError


class TflintServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "tflint-grad",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            notebook_document_sync=lsp_notebook.SYNC_OPTIONS,
        )
        self.notebook_cells: dict[str, set[str]] = {}  # notebook URI -> its code cells' URIs
        self.options = Options()
        self._resolver: Any = None  # tflint_grad.config.Resolver, as the CLI resolves configs
        self._last_good: dict[str, Any] = {}  # folder -> its last valid Config (a broken save keeps it)
        self._reported_config_errors: set[str] = set()
        self.open_uris: set[str] = set()
        self.cache: dict[str, Linted] = {}  # uri -> the last lint (code actions are answered from it)
        self._pending: dict[str, asyncio.Task] = {}  # debounced lints
        self._running: dict[str, asyncio.Future] = {}  # the lint in flight per document
        self._pool: Any = None  # the worker process (None: not started, False: unusable)
        # uri -> (version, findings with verdicts) from the last --confirm run
        self.confirmed: dict[str, tuple[int | None, list[Finding]]] = {}
        self._confirming: set[str] = set()
        self._confirm_again: set[str] = set()
        self._confirm_tasks: set[asyncio.Task] = set()
        self.warm: Any = None  # tflint_grad.tracer.warm.WarmPool while confirm is on

    # -- settings ----------------------------------------------------------------
    def apply_options(self, raw: Any) -> None:
        self.options.update(raw)
        self.invalidate_config()
        self.sync_warm()

    # -- the warm tracer ---------------------------------------------------------
    def sync_warm(self) -> None:
        """One warm tracer while ``confirm`` is on (TensorFlow imported before the first save)."""
        if self.options.confirm and self.warm is None:
            try:
                from tflint_grad.tracer import warm
            except Exception:
                return
            if warm.available() is not None:
                return
            self.warm = warm.WarmPool(sys.executable, threads=os.cpu_count() or 1)
            task = asyncio.ensure_future(self._start_warm(self.warm))
            self._confirm_tasks.add(task)
            task.add_done_callback(self._confirm_tasks.discard)
        elif not self.options.confirm and self.warm is not None:
            self.close_warm()

    async def _start_warm(self, pool: Any) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        if await asyncio.to_thread(pool.start):
            self.log(
                types.MessageType.Info,
                f"tflint-grad: --confirm: warm tracer ready (TensorFlow imported once, in {loop.time() - t0:.1f} s)",
            )
        elif pool is self.warm and pool.unavailable:
            self.log(
                types.MessageType.Warning,
                f"tflint-grad: --confirm: the warm tracer is unavailable ({pool.unavailable}); "
                "each save imports TensorFlow",
            )

    def close_warm(self) -> None:
        pool, self.warm = self.warm, None
        if pool is not None:
            asyncio.get_running_loop().run_in_executor(None, pool.close)

    def invalidate_config(self) -> None:
        self._resolver = None
        self._reported_config_errors.clear()
        self.cache.clear()  # lints made with the old settings

    def _report_config_error(self, message: str) -> None:
        if message in self._reported_config_errors:
            return
        self._reported_config_errors.add(message)
        self.log(types.MessageType.Error, message)
        try:
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Error, message=message))
        except Exception:
            pass

    def project_config(self, path: str | None) -> Any:
        """The closest ``[tool.tflint-grad]`` config of a document, resolved as the CLI does
        (:class:`tflint_grad.config.Resolver`). A broken config keeps the folder's last valid
        one (else the defaults), and says so."""
        from tflint_grad.config import Config, ConfigError, Resolver

        if not path:
            return Config()
        folder = os.path.dirname(os.path.abspath(path))
        if self._resolver is None:
            self._resolver = Resolver()
        try:
            cfg = self._resolver.for_folder(folder)
        except ConfigError as e:
            cfg = self._last_good.get(folder)
            fallback = "the last valid configuration" if cfg is not None else "the defaults"
            self._report_config_error(f"tflint-grad: invalid configuration: {e}; using {fallback}")
            return cfg if cfg is not None else Config()
        self._last_good[folder] = cfg
        return cfg

    def config_for(self, path: str | None) -> tuple[Settings, bool]:
        """(settings, excluded) for a document: the closest ``[tool.tflint-grad]``
        config (as the CLI finds it) with the editor's selection on top. A bad editor
        setting is reported as such and the project's own selection is kept."""
        from tflint_grad.config import ConfigError, Selection

        cfg = self.project_config(path)
        editor = Selection(
            select=list(self.options.select) if self.options.select is not None else None,
            ignore=list(self.options.ignore),
            extend_select=list(self.options.extend_select),
        )
        try:
            settings = cfg.settings(editor, cli_where="editor settings")
        except ConfigError as e:
            try:
                settings = cfg.settings()
                kept = "the project's selection"
            except ConfigError:
                settings, kept = Settings.default(), "the defaults"
            self._report_config_error(f"tflint-grad: invalid setting: {e}; using {kept}")
        excluded = bool(path) and cfg.exclude_spec().match_path_or_parents(path)
        return settings, excluded

    def trace_config_for(self, path: str | None) -> Any:
        return getattr(self.project_config(path), "trace", None)

    def log(self, level: types.MessageType, message: str) -> None:
        LOG.log({1: logging.ERROR, 2: logging.WARNING}.get(int(level), logging.INFO), message)
        try:
            self.window_log_message(types.LogMessageParams(type=level, message=message))
        except Exception:
            pass

    # -- linting -----------------------------------------------------------------
    def wants(self, uri: str) -> bool:
        doc = self.workspace.get_text_document(uri)
        if doc.language_id:
            return doc.language_id in ("python", "py")
        return uri.endswith((".py", ".pyi"))

    def lint(self, uri: str) -> Linted:
        """Lint the document now, on the calling thread (the server itself lints off the
        event loop: :meth:`lint_current`)."""
        doc = self.workspace.get_text_document(uri)
        settings, excluded = self.config_for(doc.path)
        linted = self._lint_text(uri, doc.path or uri, doc.source, doc.version, doc.position_codec, settings, excluded)
        for err in linted.errors:
            self.log(
                types.MessageType.Warning, f"tflint-grad: internal error in {err.rule} on {err.path}: {err.message}"
            )
        self._remember(uri, linted)
        return linted

    def _lint_text(
        self,
        uri: str,
        path: str,
        text: str,
        version: int | None,
        codec: Any,
        settings: Settings,
        excluded: bool,
    ) -> Linted:
        """Findings and diagnostics of one text, linted in this process."""
        if excluded:
            return Linted(version, text, [], [])
        findings, errors = api.lint_text(path, text, settings)
        return self._linted(uri, text, version, codec, findings, errors)

    def _linted(
        self, uri: str, text: str, version: int | None, codec: Any, findings: list[Finding], errors: list[Any]
    ) -> Linted:
        conf = self.confirmed.get(uri)
        if conf is not None and conf[0] == version:
            findings = conf[1]
        lines = split_lines(text)
        pmap = PositionMap(lines, codec)
        no_comment = _no_comment_for(findings, text)
        diagnostics = [to_diagnostic(f, lines, pmap, version, no_comment) for f in findings]
        return Linted(version, text, findings, diagnostics, list(errors))

    def _remember(self, uri: str, linted: Linted) -> None:
        old = self.cache.get(uri)
        if old is None or old.version is None or linted.version is None or linted.version >= old.version:
            self.cache[uri] = linted

    def fresh(self, uri: str) -> Linted | None:
        """The last lint if it is of the document's current text."""
        cached = self.cache.get(uri)
        if cached is None:
            return None
        doc = self.workspace.get_text_document(uri)
        if cached.version == doc.version and cached.text == doc.source:
            return cached
        return None

    async def lint_current(self, uri: str) -> Linted:
        """The lint of the document's current text, computed off the event loop (a worker
        thread), one run per document at a time. A run that ends stale (the buffer changed
        meanwhile) is dropped and the current text is linted instead: bursts of edits never
        queue up runs."""
        if self.workspace.get_notebook_document(cell_uri=uri) is not None:
            return self.current(uri)  # a notebook cell: the notebook is linted in this process
        while True:
            cached = self.fresh(uri)
            if cached is not None:
                return cached
            running = self._running.get(uri)
            if running is not None:
                try:
                    await asyncio.shield(running)
                except Exception:
                    pass
                continue
            doc = self.workspace.get_text_document(uri)
            settings, excluded = self.config_for(doc.path)
            future = asyncio.ensure_future(
                self._lint_off_loop(
                    uri, doc.path or uri, doc.source, doc.version, doc.position_codec, settings, excluded
                )
            )
            self._running[uri] = future
            future.add_done_callback(functools.partial(self._lint_done, uri))
            linted = await asyncio.shield(future)
            if self.fresh(uri) is linted:
                return linted

    async def _lint_off_loop(
        self,
        uri: str,
        path: str,
        text: str,
        version: int | None,
        codec: Any,
        settings: Settings,
        excluded: bool,
    ) -> Linted:
        """Lint in the worker process; the diagnostics are built here (cheap)."""
        if excluded:
            return Linted(version, text, [], [])
        findings, errors = await self.off_loop(api.lint_text, path, text, settings)
        return self._linted(uri, text, version, codec, findings, errors)

    def _worker(self) -> Any:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            from tflint_grad.nodehash import use_identity_hash

            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=use_identity_hash
            )
            self._pool.submit(api.warm_up)
        return self._pool

    async def off_loop(self, func: Any, *args: Any) -> Any:
        """Run ``func`` in the worker process (a thread if the process pool is unusable)."""
        loop = asyncio.get_running_loop()
        if self._pool is not False:
            try:
                return await loop.run_in_executor(self._worker(), func, *args)
            except Exception as e:
                from concurrent.futures.process import BrokenProcessPool

                if not isinstance(e, (BrokenProcessPool, OSError, RuntimeError)):
                    raise
                self.log(types.MessageType.Warning, f"tflint-grad: worker process unusable ({e}); linting in a thread")
                self._pool = False
        return await asyncio.to_thread(func, *args)

    def _lint_done(self, uri: str, future: asyncio.Future) -> None:
        if self._running.get(uri) is future:
            del self._running[uri]
        if future.cancelled():
            return
        if future.exception() is not None:
            e = future.exception()
            self.log(types.MessageType.Error, f"tflint-grad: linting {uri} failed: {type(e).__name__}: {e}")
            return
        linted = future.result()
        for err in linted.errors:
            self.log(
                types.MessageType.Warning, f"tflint-grad: internal error in {err.rule} on {err.path}: {err.message}"
            )
        self._remember(uri, linted)

    def current(self, uri: str) -> Linted:
        """The lint of the current text, linting synchronously if needed."""
        cached = self.fresh(uri)
        if cached is not None:
            return cached
        nb = self.workspace.get_notebook_document(cell_uri=uri)
        if nb is not None:  # a notebook cell: lint the notebook
            doc = self.workspace.get_text_document(uri)
            return lsp_notebook.lint_notebook(self, nb.uri).get(uri) or Linted(doc.version, doc.source, [], [])
        return self.lint(uri)

    def publish(self, uri: str) -> None:
        """Lint (off the event loop) and publish the document's diagnostics."""
        self.schedule(uri, 0)

    async def publish_now(self, uri: str) -> None:
        if uri in self.open_uris and self.workspace.get_notebook_document(notebook_uri=uri) is not None:
            lsp_notebook.publish_notebook(self, uri)  # notebooks are linted in this process
            return
        if uri not in self.open_uris or not self.wants(uri):
            return
        linted = await self.lint_current(uri)
        doc = self.workspace.get_text_document(uri)
        if uri not in self.open_uris or linted.version != doc.version:
            return  # a newer edit: its own debounced run publishes
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=linted.diagnostics, version=linted.version)
        )

    def clear(self, uri: str) -> None:
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    def schedule(self, uri: str, delay: float) -> None:
        self.cancel_pending(uri)
        self._pending[uri] = asyncio.ensure_future(self._lint_later(uri, delay))

    def cancel_pending(self, uri: str) -> None:
        task = self._pending.pop(uri, None)
        if task is not None:
            task.cancel()

    async def _lint_later(self, uri: str, delay: float) -> None:
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            me = asyncio.current_task()
            if self._pending.get(uri) is me:
                del self._pending[uri]
            await self.publish_now(uri)
        except asyncio.CancelledError:
            return
        except Exception as e:  # never let a lint kill the server
            self.log(types.MessageType.Error, f"tflint-grad: linting {uri} failed: {type(e).__name__}: {e}")

    # -- --confirm in the background ---------------------------------------------
    def start_confirm(self, uri: str) -> None:
        if uri in self._confirming:
            self._confirm_again.add(uri)
            return
        self._confirming.add(uri)
        task = asyncio.ensure_future(self._confirm(uri))
        self._confirm_tasks.add(task)
        task.add_done_callback(self._confirm_tasks.discard)

    async def _confirm(self, uri: str) -> None:
        try:
            doc = self.workspace.get_text_document(uri)
            if doc.path is None:
                self.log(types.MessageType.Info, f"tflint-grad: --confirm skipped for {uri}: not a file")
                return
            try:
                import tflint_grad.tracer.runner  # noqa: F401 - lazily: the tracer is optional
            except Exception as e:
                self.log(
                    types.MessageType.Info, f"tflint-grad: --confirm unavailable ({type(e).__name__}: {e}); skipped"
                )
                return
            linted = await self.lint_current(uri)
            if not linted.findings:
                return
            version = linted.version
            settings, _ = self.config_for(doc.path)
            trace = self.trace_config_for(doc.path)
            self.log(types.MessageType.Info, f"tflint-grad: --confirm: tracing {doc.path} in the background")
            t0 = asyncio.get_running_loop().time()
            pool = self.warm
            served = pool.served if pool is not None else 0
            try:
                findings, warnings = await asyncio.to_thread(run_confirm, doc.path, linted.text, settings, trace, pool)
            except Exception as e:
                self.log(
                    types.MessageType.Warning, f"tflint-grad: --confirm failed on {doc.path}: {type(e).__name__}: {e}"
                )
                return
            for w in warnings:
                self.log(types.MessageType.Warning, f"tflint-grad: {w}")
            if uri not in self.open_uris or self.workspace.get_text_document(uri).version != version:
                return  # the buffer changed while tracing: those verdicts are stale
            self.confirmed[uri] = (version, findings)
            self.cache.pop(uri, None)  # re-render with the verdicts
            self.publish(uri)
            verdicts = ", ".join(f"{f.code}:{f.line} {f.verdict}" for f in findings)
            took = asyncio.get_running_loop().time() - t0
            how = "warm tracer" if pool is not None and pool.served > served else "cold tracer or cached"
            self.log(
                types.MessageType.Info,
                f"tflint-grad: --confirm done for {doc.path} in {took:.1f} s ({how}): {verdicts}",
            )
        finally:
            self._confirming.discard(uri)
            if uri in self._confirm_again:
                self._confirm_again.discard(uri)
                if uri in self.open_uris:
                    self.start_confirm(uri)

    # -- code actions ------------------------------------------------------------
    def edit_for(self, uri: str, version: int | None, edits: list[types.TextEdit]) -> types.WorkspaceEdit:
        caps = self.client_capabilities
        document_changes = bool(
            caps and caps.workspace and caps.workspace.workspace_edit and caps.workspace.workspace_edit.document_changes
        )
        if document_changes:
            return types.WorkspaceEdit(
                document_changes=[
                    types.TextDocumentEdit(
                        text_document=types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version),
                        edits=edits,
                    )
                ]
            )
        return types.WorkspaceEdit(changes={uri: edits})

    async def code_actions(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        """Answered from the last lint. When the buffer changed since, the lint of the new
        text (debounced or in flight) is awaited for at most ``CODE_ACTION_WAIT`` seconds;
        past that, quick fixes of diagnostics of an older text are not offered (their edits
        would land in the wrong place) and the client asks again after the next publish.

        Fix-all is computed lazily: its edit is built by ``codeAction/resolve`` when the
        user picks it, unless the request asks for fix-all kinds only (``source.fixAll`` on
        save), which gets the edit at once. Clients that cannot resolve edits get fix-all on
        such requests only."""
        uri = params.text_document.uri
        if not self.wants(uri):
            return []
        doc = self.workspace.get_text_document(uri)
        linted = self.fresh(uri)
        if linted is None:
            try:
                linted = await asyncio.wait_for(asyncio.shield(self.lint_current(uri)), CODE_ACTION_WAIT)
            except TimeoutError:
                linted = None
        version = doc.version
        only = params.context.only
        actions: list[types.CodeAction] = []
        if _wanted(only, types.CodeActionKind.QuickFix):
            for diag, data in self._diagnostics_for(params, version, linted):
                actions.extend(self._quick_fixes(uri, version, diag, data))
        notebook_cell = self.workspace.get_notebook_document(cell_uri=uri) is not None
        if _wanted(only, FIX_ALL_KIND) and not notebook_cell and linted is not None and linted.version == version:
            count = sum(1 for f in linted.findings if f.fix is not None and f.fix.applicability == "safe")
            if count:
                title = f"tflint-grad: fix all safely fixable problems ({count})"
                if only and all(_wanted([k], FIX_ALL_KIND) for k in only):
                    edit = await self.fix_all_edit(uri, linted)
                    if edit is not None:
                        actions.append(types.CodeAction(title=title, kind=FIX_ALL_KIND, edit=edit))
                elif self._client_resolves_edits():
                    # lazily: the client asks for the edit (codeAction/resolve) when it is chosen;
                    # clients that cannot resolve get fix-all on request (``only: source.fixAll``)
                    actions.append(
                        types.CodeAction(title=title, kind=FIX_ALL_KIND, data={"uri": uri, "version": version})
                    )
        return actions

    def _client_resolves_edits(self) -> bool:
        caps = self.client_capabilities
        try:
            support = caps.text_document.code_action.resolve_support  # type: ignore[union-attr]
        except AttributeError:
            return False
        return bool(support is not None and "edit" in (support.properties or []))

    async def fix_all_edit(self, uri: str, linted: Linted) -> types.WorkspaceEdit | None:
        """Every safe fix of ``linted`` (the fix loop, off the event loop) as one edit."""
        doc = self.workspace.get_text_document(uri)
        settings, _ = self.config_for(doc.path)
        fixed = await self.off_loop(api.fix_buffer, doc.path or uri, linted.text, settings, linted.findings)
        if fixed.text == linted.text:
            return None
        pmap = PositionMap(split_lines(linted.text), doc.position_codec)
        return self.edit_for(uri, linted.version, diff_edits(linted.text, fixed.text, pmap))

    async def resolve_code_action(self, action: types.CodeAction) -> types.CodeAction:
        data = action.data if isinstance(action.data, dict) else {}
        uri = data.get("uri")
        if action.kind != FIX_ALL_KIND or not isinstance(uri, str) or uri not in self.open_uris:
            return action
        linted = await self.lint_current(uri)
        if linted.version != data.get("version"):
            return action  # the buffer changed: no edit (the client asks again)
        action.edit = await self.fix_all_edit(uri, linted)
        return action

    def _diagnostics_for(
        self, params: types.CodeActionParams, version: int | None, linted: Linted | None
    ) -> Iterable[tuple[types.Diagnostic, dict]]:
        """The request's diagnostics with their data; stale ones are matched in the last lint
        when that lint is of the current text."""
        stale = []
        for diag in params.context.diagnostics:
            if diag.source != SOURCE:
                continue
            data = diag.data if isinstance(diag.data, dict) else None
            if data is not None and data.get("version") == version:
                yield diag, data
            else:
                stale.append(diag)
        if stale and linted is not None and linted.version == version:
            for diag in stale:
                for fresh in linted.diagnostics:
                    if fresh.code == diag.code and _overlaps(fresh.range, diag.range):
                        yield fresh, fresh.data  # type: ignore[misc]
                        break

    def _quick_fixes(self, uri: str, version: int | None, diag: types.Diagnostic, data: dict) -> list[types.CodeAction]:
        out: list[types.CodeAction] = []
        fix = data.get("fix")
        if fix and fix.get("edits"):
            safe = fix.get("applicability") == "safe"
            edits = [types.TextEdit(range=_range_from(e["range"]), new_text=e["newText"]) for e in fix["edits"]]
            title = f"{fix.get('title') or 'Apply fix'} ({diag.code})" + ("" if safe else " [unsafe]")
            out.append(
                types.CodeAction(
                    title=title,
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[diag],
                    is_preferred=safe,
                    edit=self.edit_for(uri, version, edits),
                )
            )
        noqa = data.get("noqa")
        if noqa:
            out.append(
                types.CodeAction(
                    title=f"Disable {diag.code} for this line",
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[diag],
                    edit=self.edit_for(
                        uri, version, [types.TextEdit(range=_range_from(noqa["range"]), new_text=noqa["newText"])]
                    ),
                )
            )
        return out


def _wanted(only: Sequence[str] | None, kind: str) -> bool:
    if not only:
        return True
    return any(kind == k or kind.startswith(f"{k}.") for k in only)


def _overlaps(a: types.Range, b: types.Range) -> bool:
    def key(p: types.Position) -> tuple[int, int]:
        return (p.line, p.character)

    return not (key(a.end) < key(b.start) or key(b.end) < key(a.start))


def run_confirm(
    path: str, text: str, settings: Settings, trace: Any, pool: Any = None
) -> tuple[list[Finding], list[str]]:
    """Lint ``text`` and run ``--confirm`` on it (blocking: call it in a thread).

    The tracer runs the script in a child process (forked from ``pool``, the server's warm
    tracer, when there is one); this process never imports TensorFlow. Returns the findings
    with verdicts and the tracer's warnings.
    """
    import dataclasses

    from tflint_grad.settings import TraceSettings
    from tflint_grad.verdicts import confirm

    newline = "\r\n" if "\r\n" in text[:10000] else "\n"
    result = lint_file(SourceFile(path, text, newline=newline, raw=text.encode("utf-8")), settings)
    # [tool.tflint-grad.trace] of the file's config, as is (one trace at a time)
    options = dataclasses.replace(trace if isinstance(trace, TraceSettings) else TraceSettings(), jobs=1)
    warnings = confirm([result], options, lint_settings=settings, pool=pool)
    return result.findings, list(warnings or [])


# -- wiring --------------------------------------------------------------------------
def create_server() -> TflintServer:
    server = TflintServer()

    @server.feature(types.INITIALIZE)
    def initialize(ls: TflintServer, params: types.InitializeParams) -> None:
        ls.apply_options(params.initialization_options)
        try:
            ls._worker()  # start the worker process (and import the rules) before the first lint
        except Exception as e:
            ls._pool = False
            LOG.warning("no worker process (%s): linting in a thread", e)

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: TflintServer, params: types.DidChangeConfigurationParams) -> None:
        ls.apply_options(params.settings)
        for uri in list(ls.open_uris):
            ls.publish(uri)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    async def did_open(ls: TflintServer, params: types.DidOpenTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.open_uris.add(uri)
        ls.publish(uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    async def did_change(ls: TflintServer, params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.confirmed.pop(uri, None)
        if ls.options.run == "onType":
            ls.schedule(uri, ls.options.debounce)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    async def did_save(ls: TflintServer, params: types.DidSaveTextDocumentParams) -> None:
        uri = params.text_document.uri
        if uri.rsplit("/", 1)[-1] in CONFIG_FILES:
            ls.invalidate_config()
            for other in list(ls.open_uris):
                ls.publish(other)
            return
        ls.cancel_pending(uri)
        ls.publish(uri)
        if ls.options.confirm and ls.wants(uri):
            ls.start_confirm(uri)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(ls: TflintServer, params: types.DidChangeWatchedFilesParams) -> None:
        if any(change.uri.rsplit("/", 1)[-1] in CONFIG_FILES for change in params.changes):
            ls.invalidate_config()
            for uri in list(ls.open_uris):
                ls.publish(uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    async def did_close(ls: TflintServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.cancel_pending(uri)
        ls.open_uris.discard(uri)
        ls.cache.pop(uri, None)
        ls.confirmed.pop(uri, None)
        ls.clear(uri)

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(
            code_action_kinds=[types.CodeActionKind.QuickFix, types.CodeActionKind.SourceFixAll, FIX_ALL_KIND],
            resolve_provider=True,
        ),
    )
    async def code_action(ls: TflintServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        return await ls.code_actions(params)

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def code_action_resolve(ls: TflintServer, params: types.CodeAction) -> types.CodeAction:
        return await ls.resolve_code_action(params)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: TflintServer, *args: Any) -> None:
        if ls._pool:
            ls._pool.shutdown(wait=False, cancel_futures=True)
        ls._pool = False
        ls.close_warm()

    lsp_notebook.register(server)

    @server.command(DEBUG_MODULES_COMMAND)
    def debug_modules(ls: TflintServer, *args: Any) -> dict[str, Any]:
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
        return {"tensorflow": "tensorflow" in sys.modules, "modules": heavy[:50], "pid": __import__("os").getpid()}

    return server


def main() -> None:
    """Run the language server on stdio (``tflint-grad server``)."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="tflint-grad lsp: %(levelname)s: %(message)s")
    create_server().start_io()


if __name__ == "__main__":
    from tflint_grad.nodehash import use_identity_hash

    use_identity_hash()  # a process of its own (``tflint-grad server`` does it in cli.console)
    main()
