"""The language server as issue 12 wants it: the CLI's per-file configuration and noqa rules,
settings errors attributed to the editor, and latency on a 5,000-line file (the issue asks
for these bounds as tests):
a real client (pytest-lsp) over stdio, a client that resolves code actions as VS Code and
Neovim do. Code actions must answer within 0.3 s, also while the server lints an edit;
fix-all is computed only when resolved; one re-lint of the file, as the server's worker does
it (only the changed statements re-parsed), costs at most 0.6 s of CPU (about 0.3 s on an idle
machine), and the diagnostics of a burst of edits arrive after one re-lint of the final text
plus the debounce (bounded loosely: a timed test on a shared machine measures its load; the
absolute latency, the debounce + 0.5 s on an idle machine, is measured by bench/integrations.py
and recorded in bench/RESULTS.md)."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("pygls")
pytest_lsp = pytest.importorskip("pytest_lsp")

from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

from tflint_grad import api  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SEED = (ROOT / "examples" / "seeds" / "004_bn_gradient_tape.py").read_text()
DEBOUNCE = 0.3

pytestmark = pytest.mark.asyncio


def big_file(lines: int = 5000) -> str:
    """Seed 004 repeated with renamed models, as the audit built it."""
    body = SEED.split("\n", 1)[1].replace("import numpy as np\nimport tensorflow as tf\n", "")
    parts = ["import numpy as np\nimport tensorflow as tf\n"]
    i = 0
    while sum(p.count("\n") for p in parts) < lines:
        parts.append(body.replace("model", f"model{i}").replace("opt", f"opt{i}"))
        i += 1
    return "".join(parts)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["TFLINT_GRAD_CACHE_DIR"] = tempfile.mkdtemp(prefix="tflint-grad-lsp-cache-")
    return env


RESOLVING = types.ClientCapabilities(
    text_document=types.TextDocumentClientCapabilities(
        code_action=types.CodeActionClientCapabilities(
            resolve_support=types.ClientCodeActionResolveOptions(properties=["edit"]),
            data_support=True,
        )
    ),
    workspace=types.WorkspaceClientCapabilities(
        workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True)
    ),
)


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=[sys.executable, "-m", "tflint_grad.lsp"], server_env=_env()),
)
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=RESOLVING, initialization_options={"debounce": DEBOUNCE})
    )
    yield
    await lsp_client.shutdown_session()


async def _diagnostics(client: LanguageClient, uri: str, action, timeout: float = 60.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    fut = asyncio.wrap_future(client.protocol.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS))
    action()
    while True:
        params = await asyncio.wait_for(fut, max(deadline - loop.time(), 0.01))
        if params.uri == uri:
            return params
        fut = asyncio.wrap_future(client.protocol.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS))


def _open(client: LanguageClient, uri: str, text: str) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        )
    )


def _edit(client: LanguageClient, uri: str, version: int, line: int, text: str) -> None:
    """Insert ``text`` at the start of 0-based ``line`` (an incremental change, as editors send)."""
    at = types.Position(line=line, character=0)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start=at, end=at), text=text)],
        )
    )


async def _code_actions(client: LanguageClient, uri: str, diag: types.Diagnostic, only=None):
    params = types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=diag.range,
        context=types.CodeActionContext(diagnostics=[diag], only=only),
    )
    t0 = time.perf_counter()
    actions = await client.text_document_code_action_async(params) or []
    return actions, time.perf_counter() - t0


async def test_code_actions_on_a_5000_line_file_are_fast_and_fix_all_is_lazy(client: LanguageClient, tmp_path):
    text = big_file()
    assert text.count("\n") >= 5000
    uri = (tmp_path / "big.py").as_uri()
    params = await _diagnostics(client, uri, lambda: _open(client, uri, text))
    tfg101 = [d for d in params.diagnostics if d.code == "TFG101"]
    assert len(tfg101) > 200

    actions, elapsed = await _code_actions(client, uri, tfg101[-1])
    assert elapsed <= 0.3, f"code action took {elapsed:.2f}s"
    kinds = [a.kind for a in actions]
    assert kinds.count(types.CodeActionKind.QuickFix) == 2  # the rule's fix, the noqa
    (fix_all,) = [a for a in actions if a.kind == "source.fixAll.tflint-grad"]
    assert fix_all.edit is None and fix_all.data  # not computed until chosen
    assert f"({len(tfg101)})" in fix_all.title  # counts findings, as the CLI does

    resolved = await client.code_action_resolve_async(fix_all)
    assert resolved.edit is not None and resolved.edit.document_changes
    new_texts = "".join(e.new_text for change in resolved.edit.document_changes for e in change.edits)
    assert "model0.trainable_variables" in new_texts and ".variables)" not in new_texts

    # while the server lints an edit (debounce over, lint in flight), code actions still answer fast
    _edit(client, uri, 2, 0, "# an edit\n")
    await asyncio.sleep(DEBOUNCE + 0.1)
    actions, elapsed = await _code_actions(client, uri, tfg101[0])
    assert elapsed <= 0.3, f"code action during a lint took {elapsed:.2f}s"


async def test_diagnostics_after_edits_on_a_5000_line_file(client: LanguageClient, tmp_path):
    text = big_file()
    uri = (tmp_path / "big.py").as_uri()
    await _diagnostics(client, uri, lambda: _open(client, uri, text))
    path = str(tmp_path / "big.py")

    def relint(edit: int) -> tuple[float, float]:
        """An edit's lint as the server's worker does it (the previous text's parse is cached):
        (wall-clock, CPU) seconds."""
        api.lint_text(path, text)
        t0, c0 = time.perf_counter(), time.process_time()
        api.lint_text(path, f"x{edit} = {edit}\n" + text)
        return time.perf_counter() - t0, time.process_time() - c0

    before = relint(0)

    # a burst of 10 edits 20 ms apart: one lint of the final text, published once
    async def burst() -> None:
        for i in range(10):
            _edit(client, uri, 2 + i, 0, f"x{i} = {i}\n")
            await asyncio.sleep(0.02)

    fut = asyncio.wrap_future(client.protocol.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS))
    await burst()
    last_edit = time.perf_counter()
    params = await asyncio.wait_for(fut, 60)
    latency = time.perf_counter() - last_edit
    assert params.version == 11  # no publish of an intermediate text: stale runs were dropped
    first = next(i for i, line in enumerate(text.splitlines()) if "model0.variables" in line)
    tfg101 = [d for d in params.diagnostics if d.code == "TFG101"]
    assert tfg101[0].range.start.line == first + 10  # moved down by the 10 inserted lines
    after = relint(1)
    # The engine: one re-lint of this file, as the server's worker runs it, stays well inside
    # the 0.5 s (about 0.3 s of CPU on an idle machine, 0.77 s before the program
    # model's indexes; CPU time, which the load of a shared machine changes less than the
    # wall clock; bench/RESULTS.md measures edit -> diagnostics on an idle machine).
    cpu = min(before[1], after[1])
    assert cpu <= 0.6, f"one re-lint of the 5,000-line file takes {cpu:.2f}s of CPU"
    # The server: one re-lint of the final text, not one per edit (10 edits), not a full lint;
    # the bound allows for the load changing between the measurements (x2), not for queued
    # stale runs or a lint on the event loop.
    one_lint = max(before[0], after[0])
    bound = 2 * one_lint + DEBOUNCE + 0.5
    assert latency <= bound, f"{latency:.2f}s after the last edit; one re-lint takes {one_lint:.2f}s"


# -- the same configuration and noqa rules as the CLI ------------------------------------------
async def test_monorepo_configs_agree_with_the_cli(client: LanguageClient, tmp_path):
    from tflint_grad import cli

    for folder, ignored in (("A", "TFG201"), ("B", "TFG101")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "pyproject.toml").write_text(f'[tool.tflint-grad]\nignore = ["{ignored}"]\n')
        (tmp_path / folder / "train.py").write_text(SEED)
    seen = {}
    for folder in ("B", "A"):
        uri = (tmp_path / folder / "train.py").as_uri()
        params = await _diagnostics(client, uri, lambda uri=uri: _open(client, uri, SEED))
        seen[folder] = sorted(d.code for d in params.diagnostics)
    assert seen == {"A": ["TFG101"], "B": ["TFG201"]}
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        for args in (["B/train.py", "A/train.py"], ["A/train.py", "B/train.py"]):
            out = _capture_cli(cli, ["check", "--no-cache", *args])
            by_folder = {"A": [], "B": []}
            for line in out.splitlines():
                by_folder[line[0]].append(line.split(": ")[1].split()[0])
            assert {k: sorted(v) for k, v in by_folder.items()} == seen
    finally:
        os.chdir(cwd)


def _capture_cli(cli, argv: list[str]) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        cli.main(argv)
    return out.getvalue()


async def test_bad_editor_setting_is_the_editors_and_keeps_the_project_selection(client: LanguageClient, tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.tflint-grad]\nignore = ["TFG201"]\n')
    (tmp_path / "train.py").write_text(SEED)
    uri = (tmp_path / "train.py").as_uri()
    params = await _diagnostics(client, uri, lambda: _open(client, uri, SEED))
    assert [d.code for d in params.diagnostics] == ["TFG101"]
    params = await _diagnostics(
        client,
        uri,
        lambda: client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"tflint-grad": {"select": ["BOGUS"]}})
        ),
    )
    assert [d.code for d in params.diagnostics] == ["TFG101"]  # the project's ignore still applies
    shown = [m.message for m in client.messages]
    assert any("editor settings: unknown rule selector 'BOGUS'" in m for m in shown), shown
    assert not any("command line" in m for m in shown)


async def test_noqa_in_a_docstring_silences_nothing_in_the_editor(client: LanguageClient, tmp_path):
    uri = (tmp_path / "doc.py").as_uri()
    text = '"""Silence a file with # tflint-grad: noqa."""\n' + SEED
    params = await _diagnostics(client, uri, lambda: _open(client, uri, text))
    assert sorted(d.code for d in params.diagnostics) == ["TFG101", "TFG201"]
    prefix = SEED.replace("model.variables)\n", "model.variables)  # noqa: TFG1\n", 1)
    uri2 = (tmp_path / "prefix.py").as_uri()
    params = await _diagnostics(client, uri2, lambda: _open(client, uri2, prefix))
    assert "TFG101" in [d.code for d in params.diagnostics]  # codes are exact, as in the CLI
