"""The language server with LSP 3.17 notebook documents: a real client (pytest-lsp) over stdio
sends ``notebookDocument/didOpen|didChange|didSave|didClose``; diagnostics and quick fixes
come per cell, with cell-local ranges."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

pytest.importorskip("pygls")
pytest_lsp = pytest.importorskip("pytest_lsp")

from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

from tests.test_lsp import _actions, _apply, _edits, _env  # noqa: E402

pytestmark = pytest.mark.asyncio

SETUP = (
    "try:\n  %tensorflow_version 2.x\nexcept Exception:\n  pass\nimport tensorflow as tf\n!pip install foo \\\n   bar"
)
PY2 = 'print "hello"'
TRAIN = (
    "model = tf.keras.Sequential([tf.keras.layers.BatchNormalization()])\n"
    "with tf.GradientTape() as tape:\n"
    "    loss = tf.reduce_mean(model(x, training=True))\n"
    "grads = tape.gradient(loss, model.variables)"
)


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=[sys.executable, "-m", "tflint_grad.lsp"], server_env=_env()),
)
async def client(lsp_client: LanguageClient):
    result = await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                notebook_document=types.NotebookDocumentClientCapabilities(
                    synchronization=types.NotebookDocumentSyncClientCapabilities()
                )
            ),
            initialization_options={"debounce": 0.2},
        )
    )
    lsp_client.server_capabilities = result.capabilities  # type: ignore[attr-defined]
    yield
    await lsp_client.shutdown_session()


def _cell_uri(nb: Path, i: int) -> str:
    return f"vscode-notebook-cell:{nb.as_posix()}#W{i}sZmlsZQ%3D%3D"


async def _diagnostics_for(client: LanguageClient, uris: set[str], action, timeout: float = 15.0) -> dict:
    """Run ``action``; the next diagnostics published for each of ``uris`` (the server
    publishes one notification per cell, in a burst: read them from the client's store)."""
    for uri in uris:
        client.diagnostics.pop(uri, None)
    action()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not uris <= set(client.diagnostics):
        assert loop.time() < deadline, f"no diagnostics for {uris - set(client.diagnostics)}"
        await asyncio.sleep(0.05)
    return {uri: list(client.diagnostics[uri]) for uri in uris}


def _open_params(nb: Path) -> types.DidOpenNotebookDocumentParams:
    code = [SETUP, PY2, TRAIN]
    cells = [
        types.NotebookCell(kind=types.NotebookCellKind.Code, document=_cell_uri(nb, 0)),
        types.NotebookCell(kind=types.NotebookCellKind.Markup, document=_cell_uri(nb, 1)),
        types.NotebookCell(kind=types.NotebookCellKind.Code, document=_cell_uri(nb, 2)),
        types.NotebookCell(kind=types.NotebookCellKind.Code, document=_cell_uri(nb, 3)),
    ]
    docs = [types.TextDocumentItem(uri=_cell_uri(nb, 1), language_id="markdown", version=1, text="# Train")]
    docs += [
        types.TextDocumentItem(uri=_cell_uri(nb, i), language_id="python", version=1, text=text)
        for i, text in zip((0, 2, 3), code)
    ]
    return types.DidOpenNotebookDocumentParams(
        notebook_document=types.NotebookDocument(
            uri=nb.as_uri(), notebook_type="jupyter-notebook", version=1, cells=cells
        ),
        cell_text_documents=docs,
    )


async def test_notebook_documents_diagnostics_fixes_change_close(client: LanguageClient, tmp_path: Path):
    assert client.server_capabilities.notebook_document_sync is not None  # type: ignore[attr-defined]
    nb = tmp_path / "train.ipynb"
    code_uris = {_cell_uri(nb, i) for i in (0, 2, 3)}
    got = await _diagnostics_for(client, code_uris, lambda: client.notebook_document_did_open(_open_params(nb)))

    # the Colab set-up cell (magic as an `except` body, `!cmd \` continuation) is fine
    assert got[_cell_uri(nb, 0)] == []
    # one bad cell: its own TFG000 at its own line, and the other cells are still analysed
    (bad,) = got[_cell_uri(nb, 2)]
    assert bad.code == "TFG000" and "Python 2 `print`" in bad.message and bad.range.start.line == 0
    # the finding in the last cell uses `tf` from the first cell; its range is cell-local
    (diag,) = got[_cell_uri(nb, 3)]
    col = len("grads = tape.gradient(loss, ")
    assert diag.code == "TFG101"
    assert (diag.range.start.line, diag.range.start.character) == (3, col)
    assert (diag.range.end.line, diag.range.end.character) == (3, col + len("model.variables"))

    # quick fix: an edit of that cell
    actions = await _actions(client, _cell_uri(nb, 3), diag)
    (fix,) = [a for a in actions if a.is_preferred]
    fixed = _apply(TRAIN, _edits(fix, _cell_uri(nb, 3)))
    assert fixed == TRAIN.replace("model.variables", "model.trainable_variables")
    noqa = [a for a in actions if a.title.startswith("Disable TFG101")]
    assert noqa and _apply(TRAIN, _edits(noqa[0], _cell_uri(nb, 3))).endswith("model.variables)  # noqa: TFG101")
    assert not [a for a in actions if a.kind == "source.fixAll.tflint-grad"]

    # didChange: the cell now holds the fixed code -> its diagnostics are gone (debounced re-lint)
    change = types.DidChangeNotebookDocumentParams(
        notebook_document=types.VersionedNotebookDocumentIdentifier(version=2, uri=nb.as_uri()),
        change=types.NotebookDocumentChangeEvent(
            cells=types.NotebookDocumentCellChanges(
                text_content=[
                    types.NotebookDocumentCellContentChanges(
                        document=types.VersionedTextDocumentIdentifier(uri=_cell_uri(nb, 3), version=2),
                        changes=[types.TextDocumentContentChangeWholeDocument(text=fixed)],
                    )
                ]
            )
        ),
    )
    got = await _diagnostics_for(client, {_cell_uri(nb, 3)}, lambda: client.notebook_document_did_change(change))
    assert got[_cell_uri(nb, 3)] == []

    # didSave re-lints now; the bad cell is still reported
    save = types.DidSaveNotebookDocumentParams(notebook_document=types.NotebookDocumentIdentifier(uri=nb.as_uri()))
    got = await _diagnostics_for(client, {_cell_uri(nb, 2)}, lambda: client.notebook_document_did_save(save))
    assert [d.code for d in got[_cell_uri(nb, 2)]] == ["TFG000"]

    # didClose clears every cell
    close = types.DidCloseNotebookDocumentParams(
        notebook_document=types.NotebookDocumentIdentifier(uri=nb.as_uri()),
        cell_text_documents=[types.TextDocumentIdentifier(uri=_cell_uri(nb, i)) for i in range(4)],
    )
    got = await _diagnostics_for(client, code_uris, lambda: client.notebook_document_did_close(close))
    assert all(d == [] for d in got.values())
