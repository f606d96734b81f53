"""End-to-end tests of the language server: a real client (pytest-lsp) over stdio."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("pygls")
pytest_lsp = pytest.importorskip("pytest_lsp")

from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

from tflint_grad.fixes import fix_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.asyncio

SRC = """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.BatchNormalization()])
with tf.GradientTape() as tape:
    loss = tf.reduce_mean(model(x, training=True))
grads = tape.gradient(loss, model.variables)
"""
FLAGGED_LINE = 5  # 0-based
FLAGGED_COL = len("grads = tape.gradient(loss, ")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["TFLINT_GRAD_CACHE_DIR"] = tempfile.mkdtemp(prefix="tflint-grad-lsp-cache-")  # --confirm's trace cache
    return env


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=[sys.executable, "-m", "tflint_grad.lsp"], server_env=_env()),
)
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            initialization_options={"debounce": 0.3},
        )
    )
    yield
    await lsp_client.shutdown_session()


# -- helpers ---------------------------------------------------------------------------
def _uri(tmp_path: Path, name: str = "train.py") -> str:
    return (tmp_path / name).as_uri()


async def _next_diagnostics(client: LanguageClient, uri: str, action, timeout: float = 15.0):
    """Run ``action`` and return the next diagnostics published for ``uri``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    fut = asyncio.wrap_future(client.protocol.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS))
    action()
    while True:
        params = await asyncio.wait_for(fut, max(deadline - loop.time(), 0.01))
        if params.uri == uri:
            return params
        fut = asyncio.wrap_future(client.protocol.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS))


async def _open(client: LanguageClient, uri: str, text: str):
    return await _next_diagnostics(
        client,
        uri,
        lambda: client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
            )
        ),
    )


def _change(client: LanguageClient, uri: str, version: int, text: str) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


def _offset(text: str, pos: types.Position) -> int:
    """Offset of an LSP (UTF-16) position in ``text``."""
    lines = text.splitlines(keepends=True)
    start = sum(len(line) for line in lines[: pos.line])
    line = lines[pos.line] if pos.line < len(lines) else ""
    units = 0
    for i, ch in enumerate(line):
        if units >= pos.character:
            return start + i
        units += 2 if ord(ch) > 0xFFFF else 1
    return start + len(line.rstrip("\r\n")) if units < pos.character else start + len(line)


def _apply(text: str, edits: list[types.TextEdit]) -> str:
    spans = sorted(
        ((_offset(text, e.range.start), _offset(text, e.range.end), e.new_text) for e in edits), reverse=True
    )
    for start, end, new in spans:
        text = text[:start] + new + text[end:]
    return text


def _edits(action: types.CodeAction, uri: str) -> list[types.TextEdit]:
    assert action.edit is not None
    if action.edit.changes:
        return list(action.edit.changes[uri])
    out: list[types.TextEdit] = []
    for change in action.edit.document_changes or []:
        assert change.text_document.uri == uri
        out.extend(change.edits)
    return out


async def _actions(client: LanguageClient, uri: str, diag: types.Diagnostic | None, only=None):
    rng = (
        diag.range
        if diag
        else types.Range(start=types.Position(line=0, character=0), end=types.Position(line=0, character=0))
    )
    return (
        await client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                range=rng,
                context=types.CodeActionContext(diagnostics=[diag] if diag else [], only=only),
            )
        )
        or []
    )


# -- tests -----------------------------------------------------------------------------
async def test_open_publishes_diagnostics(client: LanguageClient, tmp_path: Path):
    uri = _uri(tmp_path)
    params = await _open(client, uri, SRC)
    assert len(params.diagnostics) == 1
    d = params.diagnostics[0]
    assert d.code == "TFG101"
    assert d.source == "tflint-grad"
    assert d.code_description is not None
    assert d.code_description.href.endswith("/TFG101.md")
    assert d.severity == types.DiagnosticSeverity.Warning
    assert "model.variables" in d.message
    assert (d.range.start.line, d.range.start.character) == (FLAGGED_LINE, FLAGGED_COL)
    assert (d.range.end.line, d.range.end.character) == (FLAGGED_LINE, FLAGGED_COL + len("model.variables"))
    assert d.data["fix"]["applicability"] == "safe"
    assert d.data["noqa"]["newText"] == "  # noqa: TFG101"


async def test_change_updates_and_close_clears(client: LanguageClient, tmp_path: Path):
    uri = _uri(tmp_path)
    await _open(client, uri, SRC)

    moved = "# a comment line\n" + SRC
    params = await _next_diagnostics(client, uri, lambda: _change(client, uri, 2, moved))
    assert [d.range.start.line for d in params.diagnostics] == [FLAGGED_LINE + 1]

    fixed = SRC.replace("model.variables", "model.trainable_variables")
    params = await _next_diagnostics(client, uri, lambda: _change(client, uri, 3, fixed))
    assert list(params.diagnostics) == []

    params = await _next_diagnostics(client, uri, lambda: _change(client, uri, 4, SRC))
    assert len(params.diagnostics) == 1

    params = await _next_diagnostics(
        client,
        uri,
        lambda: client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        ),
    )
    assert list(params.diagnostics) == []


async def test_change_is_debounced(client: LanguageClient, tmp_path: Path):
    uri = _uri(tmp_path)
    await _open(client, uri, SRC)
    seen: list[types.PublishDiagnosticsParams] = []
    loop = asyncio.get_running_loop()

    def listen() -> None:  # a notification future resolves once: re-arm it on every publish
        client.protocol.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS, callback=record)

    def record(params) -> None:
        seen.append(params)
        listen()

    listen()
    # a burst of keystrokes: one lint, of the last version, after the 0.3 s pause
    for version in range(2, 7):
        _change(client, uri, version, SRC + "#" * version + "\n")
    deadline = loop.time() + 15
    while not seen and loop.time() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # nothing else comes
    assert [p.version for p in seen] == [6]
    assert [d.code for d in seen[0].diagnostics] == ["TFG101"]


async def test_save_relints(client: LanguageClient, tmp_path: Path):
    uri = _uri(tmp_path)
    await _open(client, uri, SRC)
    params = await _next_diagnostics(
        client,
        uri,
        lambda: client.text_document_did_save(
            types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        ),
    )
    assert [d.code for d in params.diagnostics] == ["TFG101"]


async def test_quick_fix_applies_rule_fix(client: LanguageClient, tmp_path: Path):
    uri = _uri(tmp_path)
    diag = (await _open(client, uri, SRC)).diagnostics[0]
    actions = await _actions(client, uri, diag)
    fixes = [a for a in actions if a.is_preferred]
    assert len(fixes) == 1
    fix = fixes[0]
    assert fix.kind == types.CodeActionKind.QuickFix
    assert fix.diagnostics and fix.diagnostics[0].code == "TFG101"
    assert "TFG101" in fix.title
    after = _apply(SRC, _edits(fix, uri))
    assert after == SRC.replace("loss, model.variables", "loss, model.trainable_variables")


async def test_code_action_with_stale_diagnostic_uses_current_text(client: LanguageClient, tmp_path: Path):
    uri = _uri(tmp_path)
    diag = (await _open(client, uri, SRC)).diagnostics[0]
    edited = SRC.replace("grads = tape", "gradients_now = tape")  # same line, the column moves right
    _change(client, uri, 2, edited)  # code action before the debounced re-lint: `diag` is stale
    actions = await _actions(client, uri, diag)
    fix = next(a for a in actions if a.is_preferred)
    assert _apply(edited, _edits(fix, uri)) == edited.replace("model.variables", "model.trainable_variables")


async def test_noqa_action_appends_and_merges(client: LanguageClient, tmp_path: Path):
    uri = _uri(tmp_path)
    diag = (await _open(client, uri, SRC)).diagnostics[0]
    actions = await _actions(client, uri, diag, only=[types.CodeActionKind.QuickFix])
    noqa = [a for a in actions if a.title == "Disable TFG101 for this line"]
    assert len(noqa) == 1 and not noqa[0].is_preferred
    after = _apply(SRC, _edits(noqa[0], uri))
    assert after.splitlines()[FLAGGED_LINE] == "grads = tape.gradient(loss, model.variables)  # noqa: TFG101"
    params = await _next_diagnostics(client, uri, lambda: _change(client, uri, 2, after))
    assert list(params.diagnostics) == []

    # an existing noqa list (E501) gets the code merged in
    existing = SRC.replace("model.variables)\n", "model.variables)  # noqa: E501\n")
    params = await _next_diagnostics(client, uri, lambda: _change(client, uri, 3, existing))
    diag = params.diagnostics[0]
    noqa = [a for a in await _actions(client, uri, diag) if a.title.startswith("Disable")]
    merged = _apply(existing, _edits(noqa[0], uri))
    assert merged.splitlines()[FLAGGED_LINE] == "grads = tape.gradient(loss, model.variables)  # noqa: E501, TFG101"
    params = await _next_diagnostics(client, uri, lambda: _change(client, uri, 4, merged))
    assert list(params.diagnostics) == []


async def test_fix_all(client: LanguageClient, tmp_path: Path):
    uri = _uri(tmp_path)
    text = SRC + "opt.apply_gradients(zip(tape.gradient(loss, model.weights), model.weights))\n"
    params = await _open(client, uri, text)
    assert len(params.diagnostics) >= 2
    actions = await _actions(client, uri, None, only=[types.CodeActionKind.SourceFixAll])
    assert [a.kind for a in actions] == ["source.fixAll.tflint-grad"]
    after = _apply(text, _edits(actions[0], uri))
    assert after == fix_text(text, str(tmp_path / "train.py")).text
    assert "model.variables" not in after and "tape.gradient(loss, model.weights)" not in after
    params = await _next_diagnostics(client, uri, lambda: _change(client, uri, 2, after))
    assert list(params.diagnostics) == []
    # nothing left to fix: no fixAll action
    assert await _actions(client, uri, None, only=[types.CodeActionKind.SourceFixAll]) == []


async def test_utf16_ranges(client: LanguageClient, tmp_path: Path):
    uri = _uri(tmp_path)
    prefix = 'tag = "\U0001f600é"; grads = tape.gradient(loss, '  # astral char: 2 UTF-16 units
    text = SRC.replace("grads = tape.gradient(loss, ", prefix)
    diag = (await _open(client, uri, text)).diagnostics[0]
    assert diag.range.start.line == FLAGGED_LINE
    assert diag.range.start.character == len(prefix) + 1  # code points + 1 for the astral char
    assert diag.range.end.character == len(prefix) + 1 + len("model.variables")
    fix = next(a for a in await _actions(client, uri, diag) if a.is_preferred)
    after = _apply(text, _edits(fix, uri))
    assert after.splitlines()[FLAGGED_LINE] == prefix + "model.trainable_variables)"


async def test_server_never_imports_tensorflow(client: LanguageClient, tmp_path: Path):
    uri = _uri(tmp_path)
    await _open(client, uri, SRC)
    await _actions(client, uri, None)
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tflint-grad.debugModules", arguments=[])
    )
    assert result["tensorflow"] is False
    assert result["modules"] == []


async def test_did_change_configuration_selects_rules(client: LanguageClient, tmp_path: Path):
    uri = _uri(tmp_path)
    await _open(client, uri, SRC)
    params = await _next_diagnostics(
        client,
        uri,
        lambda: client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"tflint-grad": {"ignore": ["TFG101"]}})
        ),
    )
    assert list(params.diagnostics) == []
    params = await _next_diagnostics(
        client,
        uri,
        lambda: client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"ignore": []})),
    )
    assert [d.code for d in params.diagnostics] == ["TFG101"]


async def test_project_config_is_used(client: LanguageClient, tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text('[tool.tflint-grad]\nper-file-ignores = { "legacy/*" = ["TFG101"] }\n')
    (tmp_path / "legacy").mkdir()
    params = await _open(client, (tmp_path / "legacy" / "old.py").as_uri(), SRC)
    assert list(params.diagnostics) == []
    params = await _open(client, _uri(tmp_path), SRC)
    assert [d.code for d in params.diagnostics] == ["TFG101"]


@pytest_lsp.fixture(
    config=ClientServerConfig(
        server_command=[
            sys.executable,
            "-c",
            "import sys; from tflint_grad.cli import main; sys.exit(main(['server']))",
        ],
        server_env=_env(),
    ),
)
async def cli_client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities()))
    yield
    await lsp_client.shutdown_session()


@pytest.mark.skipif(not (ROOT / "tflint_grad" / "cli.py").exists(), reason="tflint_grad/cli.py is not there yet")
async def test_cli_server_subcommand(cli_client: LanguageClient, tmp_path: Path):
    params = await _open(cli_client, _uri(tmp_path), SRC)
    assert [d.code for d in params.diagnostics] == ["TFG101"]


def _have_tensorflow() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


async def _wait_for_log(client: LanguageClient, needle: str, timeout: float) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for m in client.log_messages:
            if needle in m.message:
                return m.message
        await asyncio.sleep(0.1)
    raise AssertionError(f"no log message with {needle!r}: {[m.message for m in client.log_messages]}")


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.skipif(not _have_tensorflow(), reason="needs the trace extra: pip install 'tflint-grad[trace]'")
async def test_confirm_on_save_republishes_with_verdicts(client: LanguageClient, tmp_path: Path):
    script = (ROOT / "examples" / "seeds" / "004_bn_gradient_tape.py").read_text()
    path = tmp_path / "train.py"
    path.write_text(script)
    uri = path.as_uri()
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"confirm": True}))
    first = await _open(client, uri, script)
    assert {d.code for d in first.diagnostics} == {"TFG101", "TFG201"}
    assert all("[confirmed" not in d.message for d in first.diagnostics)
    # turning confirm on starts the warm tracer (TensorFlow imported once, in a child process)
    await _wait_for_log(client, "warm tracer ready", 240)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 240
    saved = await _next_diagnostics(
        client,
        uri,
        lambda: client.text_document_did_save(
            types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        ),
    )  # the static re-lint comes first, at once
    assert all("[confirmed" not in d.message for d in saved.diagnostics)
    # the server still answers while the trace runs in the background
    status = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tflint-grad.debugModules", arguments=[])
    )
    assert status["tensorflow"] is False

    params = await _next_diagnostics(client, uri, lambda: None, timeout=max(deadline - loop.time(), 1))
    by_code = {d.code: d for d in params.diagnostics}
    d = by_code["TFG101"]
    assert "[confirmed: " in d.message and "moving_mean" in d.message, d.message
    assert d.severity == types.DiagnosticSeverity.Error
    assert d.data["verdict"] == "confirmed"
    assert "[confirmed: " in by_code["TFG201"].message
    done = await _wait_for_log(client, "--confirm done", 5)
    assert "(warm tracer)" in done, done

    status = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tflint-grad.debugModules", arguments=[])
    )
    assert status["tensorflow"] is False  # the tracer ran TensorFlow in a child process

    # an edit makes the verdicts stale: plain diagnostics again
    edited = script + "# edited\n"
    params = await _next_diagnostics(client, uri, lambda: _change(client, uri, 2, edited))
    assert {d.code for d in params.diagnostics} == {"TFG101", "TFG201"}
    assert all("[confirmed" not in d.message for d in params.diagnostics)


async def test_confirm_is_off_by_default(client: LanguageClient, tmp_path: Path):
    path = tmp_path / "train.py"
    path.write_text(SRC)
    uri = path.as_uri()
    await _open(client, uri, SRC)
    params = await _next_diagnostics(
        client,
        uri,
        lambda: client.text_document_did_save(
            types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        ),
    )
    assert [d.code for d in params.diagnostics] == ["TFG101"]
    await asyncio.sleep(0.5)
    assert not any("--confirm" in m.message for m in client.log_messages)


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=[sys.executable, "-m", "tflint_grad.lsp"], server_env=_env()),
)
async def utf8_client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                general=types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind.Utf8]),
                workspace=types.WorkspaceClientCapabilities(
                    workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True)
                ),
            )
        )
    )
    yield
    await lsp_client.shutdown_session()


async def test_utf8_client_and_versioned_edits(utf8_client: LanguageClient, tmp_path: Path):
    uri = _uri(tmp_path)
    prefix = 'tag = "\U0001f600é"; grads = tape.gradient(loss, '
    text = SRC.replace("grads = tape.gradient(loss, ", prefix)
    diag = (await _open(utf8_client, uri, text)).diagnostics[0]
    assert diag.range.start.character == len(prefix.encode("utf-8"))  # the negotiated encoding: bytes
    fix = next(a for a in await _actions(utf8_client, uri, diag) if a.is_preferred)
    assert fix.edit is not None and fix.edit.changes is None
    (change,) = fix.edit.document_changes
    assert (change.text_document.uri, change.text_document.version) == (uri, 1)
