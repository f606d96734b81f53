"""Language server: tflint-grad diagnostics and fixes in the editor (pygls 2).

Start it with ``tflint-grad server`` or ``python -m tflint_grad.lsp`` (stdio). Needs
the ``lsp`` extra: ``pip install 'tflint-grad[lsp]'``.

What it does:

* lints the **buffer** (not the file on disk) on ``didOpen``, ``didSave`` and, debounced
  per document (0.3 s), on ``didChange``; ``didClose`` clears the document's diagnostics;
* each diagnostic has ``code`` (``TFG101``), ``codeDescription.href`` (the rule page),
  ``source = "tflint-grad"``, a severity (Error for ``error`` findings and for findings
  the tracer confirmed, Warning, Information) and a range in the client's position
  encoding (UTF-16 by default: libcst columns are code points, so an emoji before the
  flagged expression counts 2);
* ``data`` carries the fix edits and the ``# noqa`` edit (as LSP ranges, for the
  document version that was linted), so code actions need no re-lint;
* code actions: apply the rule's fix (``quickfix``, preferred when safe), "Disable
  TFG101 for this line" (appends ``  # noqa: TFG101`` or merges into the line's
  ``# noqa:`` list) and ``source.fixAll.tflint-grad`` (every safe fix, via
  :func:`tflint_grad.fixes.fix_text`);
* with the setting ``{"confirm": true}`` (``initializationOptions`` or
  ``workspace/didChangeConfiguration``), every save also runs ``--confirm`` in the
  background (the tracer runs TensorFlow in a child process) and republishes the
  diagnostics with ``verdict: evidence`` appended to their messages.

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
import io
import logging
import os
import re
import sys
import tokenize
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from tflint_grad import __version__
from tflint_grad.engine import lint_file
from tflint_grad.finding import Edit, Finding
from tflint_grad.fixes import fix_text
from tflint_grad.settings import Settings
from tflint_grad.sourcefile import SourceFile

LOG = logging.getLogger("tflint_grad.lsp")

SOURCE = "tflint-grad"
FIX_ALL_KIND = "source.fixAll.tflint-grad"
DEBUG_MODULES_COMMAND = "tflint-grad.debugModules"
DEFAULT_DEBOUNCE = 0.3
CONFIG_FILES = (".tflint-grad.toml", "tflint-grad.toml", "pyproject.toml")

_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*))?", re.IGNORECASE)
_FILE_NOQA = re.compile(r"#\s*tflint-grad:\s*noqa", re.IGNORECASE)
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
        return types.Position(line=idx, character=self.codec.client_num_units(prefix))

    def range(self, line: int, column: int, end_line: int, end_column: int) -> types.Range:
        return types.Range(start=self.position(line, column), end=self.position(end_line, end_column))

    def end(self) -> types.Position:
        last = len(self.lines) - 1
        return types.Position(line=last, character=self.codec.client_num_units(self.lines[last]))


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


def _no_comment_lines(text: str) -> set[int]:
    """1-based lines whose end a trailing comment cannot follow (inside a string, or
    continued with a backslash)."""
    bad: set[int] = set()
    comment_rows: set[int] = set()
    fstring_starts: list[int] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            kind = tok.type
            if kind == tokenize.COMMENT:
                comment_rows.add(tok.start[0])
            elif kind == tokenize.STRING and tok.end[0] > tok.start[0]:
                bad.update(range(tok.start[0], tok.end[0]))
            elif kind == getattr(tokenize, "FSTRING_START", -1):
                fstring_starts.append(tok.start[0])
            elif kind == getattr(tokenize, "FSTRING_END", -1) and fstring_starts:
                bad.update(range(fstring_starts.pop(), tok.end[0]))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass
    for i, line in enumerate(split_lines(text), start=1):
        if line.rstrip().endswith("\\") and i not in comment_rows:
            bad.add(i)
    return bad


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
            return None  # a bare `# noqa` already silences everything
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


def diff_edits(before: str, after: str, pmap: PositionMap) -> list[types.TextEdit]:
    """Minimal line-level edits turning ``before`` into ``after``."""
    a = before.splitlines(keepends=True)
    b = after.splitlines(keepends=True)
    edits: list[types.TextEdit] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
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


class TflintServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("tflint-grad", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.options = Options()
        self._configs: dict[str, Any] = {}  # folder -> tflint_grad.config.Config
        self._reported_config_errors: set[str] = set()
        self.open_uris: set[str] = set()
        self.cache: dict[str, Linted] = {}
        self._pending: dict[str, asyncio.Task] = {}
        # uri -> (version, findings with verdicts) from the last --confirm run
        self.confirmed: dict[str, tuple[int | None, list[Finding]]] = {}
        self._confirming: set[str] = set()
        self._confirm_again: set[str] = set()
        self._confirm_tasks: set[asyncio.Task] = set()

    # -- settings ----------------------------------------------------------------
    def apply_options(self, raw: Any) -> None:
        self.options.update(raw)
        self.invalidate_config()

    def invalidate_config(self) -> None:
        self._configs.clear()
        self._reported_config_errors.clear()

    def config_for(self, path: str | None) -> tuple[Settings, bool]:
        """(settings, excluded) for a document: the closest ``[tool.tflint-grad]``
        config (as the CLI finds it) with the editor's selection on top."""
        from tflint_grad.config import Config, ConfigError, Selection, load

        folder = os.path.dirname(os.path.abspath(path)) if path else None
        try:
            cfg = self._configs.get(folder) if folder else None
            if cfg is None:
                cfg = load(start=folder) if folder else Config()
                if folder:
                    self._configs[folder] = cfg
            editor = Selection(
                select=list(self.options.select) if self.options.select is not None else None,
                ignore=list(self.options.ignore),
                extend_select=list(self.options.extend_select),
            )
            settings = cfg.settings(editor)
        except ConfigError as e:
            message = f"tflint-grad: invalid configuration: {e}; using the defaults"
            if message not in self._reported_config_errors:
                self._reported_config_errors.add(message)
                self.log(types.MessageType.Error, message)
                try:
                    self.window_show_message(types.ShowMessageParams(type=types.MessageType.Error, message=message))
                except Exception:
                    pass
            return Settings.default(), False
        excluded = bool(path) and cfg.exclude_spec().match_path_or_parents(path)  # type: ignore[arg-type]
        return settings, excluded

    def trace_config_for(self, path: str | None) -> Any:
        folder = os.path.dirname(os.path.abspath(path)) if path else None
        cfg = self._configs.get(folder) if folder else None
        return getattr(cfg, "trace", None)

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
        doc = self.workspace.get_text_document(uri)
        text = doc.source
        version = doc.version
        path = doc.path or uri
        settings, excluded = self.config_for(doc.path)
        if excluded:
            linted = Linted(version, text, [], [])
            self.cache[uri] = linted
            return linted
        newline = "\r\n" if "\r\n" in text[:10000] else "\n"
        result = lint_file(SourceFile(path, text, newline=newline), settings)
        for err in result.errors:
            self.log(
                types.MessageType.Warning, f"tflint-grad: internal error in {err.rule} on {err.path}: {err.message}"
            )
        findings = result.findings
        conf = self.confirmed.get(uri)
        if conf is not None and conf[0] == version:
            findings = conf[1]
        lines = split_lines(text)
        pmap = PositionMap(lines, doc.position_codec)
        no_comment = _no_comment_lines(text) if findings else set()
        diagnostics = [to_diagnostic(f, lines, pmap, version, no_comment) for f in findings]
        linted = Linted(version, text, findings, diagnostics)
        self.cache[uri] = linted
        return linted

    def publish(self, uri: str) -> None:
        if uri not in self.open_uris or not self.wants(uri):
            return
        linted = self.lint(uri)
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=linted.diagnostics, version=linted.version)
        )

    def clear(self, uri: str) -> None:
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    def current(self, uri: str) -> Linted:
        doc = self.workspace.get_text_document(uri)
        cached = self.cache.get(uri)
        if cached is not None and cached.version == doc.version and cached.text == doc.source:
            return cached
        return self.lint(uri)

    def schedule(self, uri: str, delay: float) -> None:
        self.cancel_pending(uri)
        self._pending[uri] = asyncio.ensure_future(self._lint_later(uri, delay))

    def cancel_pending(self, uri: str) -> None:
        task = self._pending.pop(uri, None)
        if task is not None:
            task.cancel()

    async def _lint_later(self, uri: str, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            return
        me = asyncio.current_task()
        if self._pending.get(uri) is me:
            del self._pending[uri]
        self.publish(uri)

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
            linted = self.current(uri)
            if not linted.findings:
                return
            version = linted.version
            settings, _ = self.config_for(doc.path)
            trace = self.trace_config_for(doc.path)
            self.log(types.MessageType.Info, f"tflint-grad: --confirm: tracing {doc.path} in the background")
            try:
                findings, warnings = await asyncio.to_thread(run_confirm, doc.path, linted.text, settings, trace)
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
            self.publish(uri)
            verdicts = ", ".join(f"{f.code}:{f.line} {f.verdict}" for f in findings)
            self.log(types.MessageType.Info, f"tflint-grad: --confirm done for {doc.path}: {verdicts}")
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

    def code_actions(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        if not self.wants(uri):
            return []
        doc = self.workspace.get_text_document(uri)
        only = params.context.only
        actions: list[types.CodeAction] = []
        if _wanted(only, types.CodeActionKind.QuickFix):
            for diag, data in self._diagnostics_for(params, doc.version):
                actions.extend(self._quick_fixes(uri, doc.version, diag, data))
        if _wanted(only, FIX_ALL_KIND):
            linted = self.current(uri)
            if any(f.fix is not None and f.fix.applicability == "safe" for f in linted.findings):
                fixed = fix_text(linted.text, doc.path or uri, self.config_for(doc.path)[0])
                if fixed.text != linted.text:
                    pmap = PositionMap(split_lines(linted.text), doc.position_codec)
                    actions.append(
                        types.CodeAction(
                            title=f"tflint-grad: fix all safely fixable problems ({fixed.applied})",
                            kind=FIX_ALL_KIND,
                            edit=self.edit_for(uri, doc.version, diff_edits(linted.text, fixed.text, pmap)),
                        )
                    )
        return actions

    def _diagnostics_for(
        self, params: types.CodeActionParams, version: int | None
    ) -> Iterable[tuple[types.Diagnostic, dict]]:
        """The request's diagnostics with their data; stale ones are re-linted."""
        stale = []
        for diag in params.context.diagnostics:
            if diag.source != SOURCE:
                continue
            data = diag.data if isinstance(diag.data, dict) else None
            if data is not None and data.get("version") == version:
                yield diag, data
            else:
                stale.append(diag)
        if stale:
            linted = self.current(params.text_document.uri)
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


def run_confirm(path: str, text: str, settings: Settings, trace: Any) -> tuple[list[Finding], list[str]]:
    """Lint ``text`` and run ``--confirm`` on it (blocking: call it in a thread).

    The tracer runs the script in a child process; this process never imports
    TensorFlow. Returns the findings with verdicts and the tracer's warnings.
    """
    import dataclasses

    from tflint_grad.settings import TraceSettings
    from tflint_grad.verdicts import confirm

    newline = "\r\n" if "\r\n" in text[:10000] else "\n"
    result = lint_file(SourceFile(path, text, newline=newline, raw=text.encode("utf-8")), settings)
    # [tool.tflint-grad.trace] of the file's config, as is (one trace at a time)
    options = dataclasses.replace(trace if isinstance(trace, TraceSettings) else TraceSettings(), jobs=1)
    warnings = confirm([result], options, lint_settings=settings)
    return result.findings, list(warnings or [])


# -- wiring --------------------------------------------------------------------------
def create_server() -> TflintServer:
    server = TflintServer()

    @server.feature(types.INITIALIZE)
    def initialize(ls: TflintServer, params: types.InitializeParams) -> None:
        ls.apply_options(params.initialization_options)

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
            resolve_provider=False,
        ),
    )
    def code_action(ls: TflintServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        return ls.code_actions(params)

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
    main()
