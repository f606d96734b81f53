"""LSP 3.17 notebook documents for the language server (``notebookDocument/*``).

An editor that syncs notebooks (VS Code, JupyterLab with its LSP extension) sends the
notebook's cells as text documents of their own. The server lints the code cells
together, in the notebook's order (names bound in a cell are seen by the cells after
it; magics and shell lines are read as IPython reads them), and publishes each cell's
diagnostics on the cell's URI, with cell-local ranges. Quick fixes (the rule's fix, and
``# noqa``) work per cell as in a .py file; a fix whose edits leave the cell is not
offered. ``source.fixAll`` and ``--confirm`` are for files: not offered in notebooks.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from tflint_grad.engine import lint_file
from tflint_grad.finding import Finding
from tflint_grad.sourcefile import from_cells

if TYPE_CHECKING:
    from tflint_grad.lsp import Linted, TflintServer

PYTHON_LANGUAGES = ("python", "py")

SYNC_OPTIONS = types.NotebookDocumentSyncOptions(
    notebook_selector=[
        types.NotebookDocumentFilterWithCells(notebook="*", cells=[types.NotebookCellLanguage(language="python")])
    ],
    save=True,
)


def notebook_path(uri: str) -> str | None:
    from pygls.uris import to_fs_path

    try:
        return to_fs_path(uri)
    except Exception:
        return None


def code_cells(server: TflintServer, nb: types.NotebookDocument) -> list[tuple[int, str, Any]]:
    """(index over all cells, cell URI, text document) of the notebook's Python code cells."""
    out = []
    for index, cell in enumerate(nb.cells):
        if cell.kind != types.NotebookCellKind.Code:
            continue
        doc = server.workspace.get_text_document(cell.document)
        if doc.language_id and doc.language_id not in PYTHON_LANGUAGES:
            continue
        out.append((index, cell.document, doc))
    return out


def lint_notebook(server: TflintServer, nb_uri: str) -> dict[str, Linted]:
    """Lint the notebook; the result per cell URI (also stored in ``server.cache``)."""
    from tflint_grad.lsp import Linted, PositionMap, _no_comment_for, split_lines, to_diagnostic

    nb = server.workspace.get_notebook_document(notebook_uri=nb_uri)
    if nb is None:
        return {}
    cells = code_cells(server, nb)
    path = notebook_path(nb_uri)
    settings, excluded = server.config_for(path)
    findings: list[Finding] = []
    if not excluded:
        src = from_cells(path or nb_uri, [(index, doc.source) for index, _, doc in cells])
        result = lint_file(src, settings)
        for err in result.errors:
            server.log(
                types.MessageType.Warning, f"tflint-grad: internal error in {err.rule} on {err.path}: {err.message}"
            )
        findings = result.findings
    out: dict[str, Linted] = {}
    for index, uri, doc in cells:
        mine = [f for f in findings if f.cell == index]
        lines = split_lines(doc.source)
        pmap = PositionMap(lines, doc.position_codec)
        local = [dataclasses.replace(f, data={**f.data, "source_line": f.line}) for f in mine]  # ranges in the cell
        for f in local:
            if f.fix is not None and any(e.cell != index for e in f.fix.edits):
                f.fix = None
        no_comment = _no_comment_for(local, doc.source)
        diagnostics = [to_diagnostic(f, lines, pmap, doc.version, no_comment) for f in local]
        out[uri] = Linted(doc.version, doc.source, mine, diagnostics)
    server.cache.update(out)
    return out


def publish_notebook(server: TflintServer, nb_uri: str) -> None:
    linted = lint_notebook(server, nb_uri)
    previous = server.notebook_cells.get(nb_uri, set())
    for uri, cell in linted.items():
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=cell.diagnostics, version=cell.version)
        )
    for uri in previous - set(linted):  # deleted cells, or cells no longer Python
        server.cache.pop(uri, None)
        server.clear(uri)
    server.notebook_cells[nb_uri] = set(linted)


def close_notebook(server: TflintServer, nb_uri: str, cell_uris: list[str]) -> None:
    server.cancel_pending(nb_uri)
    server.open_uris.discard(nb_uri)
    for uri in server.notebook_cells.pop(nb_uri, set()) | set(cell_uris):
        server.cache.pop(uri, None)
        server.clear(uri)


def register(server: TflintServer) -> None:
    """The ``notebookDocument/*`` handlers."""

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_OPEN)
    def did_open(ls: TflintServer, params: types.DidOpenNotebookDocumentParams) -> None:
        uri = params.notebook_document.uri
        ls.open_uris.add(uri)
        publish_notebook(ls, uri)

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_CHANGE)
    def did_change(ls: TflintServer, params: types.DidChangeNotebookDocumentParams) -> None:
        if ls.options.run == "onType":
            ls.schedule(params.notebook_document.uri, ls.options.debounce)

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_SAVE)
    def did_save(ls: TflintServer, params: types.DidSaveNotebookDocumentParams) -> None:
        uri = params.notebook_document.uri
        ls.cancel_pending(uri)
        publish_notebook(ls, uri)

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_CLOSE)
    def did_close(ls: TflintServer, params: types.DidCloseNotebookDocumentParams) -> None:
        close_notebook(ls, params.notebook_document.uri, [c.uri for c in params.cell_text_documents])
