"""Integration timings on a 5,000-line training script (issue 12): ``check`` and ``--fix``
through the console script, and the language server through a real LSP client (pygls)
over stdio: open -> diagnostics, code action (no ``only``: the request VS Code sends on
cursor moves), resolving fix-all, and edit -> diagnostics (debounce included).

    python bench/integrations.py [--runs N] [--lines N] [--write]

``--write`` appends the table to bench/RESULTS.md. Times are wall-clock medians; the
machine's load average is printed with them (the dev VM is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seeds" / "004_bn_gradient_tape.py"
DEBOUNCE = 0.3


def big_file(lines: int) -> str:
    """Seed 004 repeated with renamed models, as the integrations audit built it."""
    body = SEED.read_text().split("\n", 1)[1].replace("import numpy as np\nimport tensorflow as tf\n", "")
    parts = ["import numpy as np\nimport tensorflow as tf\n"]
    i = 0
    while sum(p.count("\n") for p in parts) < lines:
        parts.append(body.replace("model", f"model{i}").replace("opt", f"opt{i}"))
        i += 1
    return "".join(parts)


def _cli() -> list[str]:
    exe = shutil.which("tflint-grad")
    return [exe] if exe else [sys.executable, "-m", "tflint_grad"]


def time_cli(text: str, runs: int) -> dict[str, list[float]]:
    """Wall-clock and CPU seconds (user + system of the child: less sensitive to the load)."""
    import resource

    out: dict[str, list[float]] = {"check": [], "fix": [], "check-cpu": [], "fix-cpu": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.py"
        for _ in range(runs):
            for kind, args in (("check", ["check", "--no-cache"]), ("fix", ["check", "--fix", "--no-cache"])):
                path.write_text(text)
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                subprocess.run([*_cli(), *args, str(path)], capture_output=True, check=False)
                out[kind].append(time.perf_counter() - t0)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                out[f"{kind}-cpu"].append(cpu)
    return out


async def time_lsp(text: str, runs: int) -> dict[str, list[float]]:
    from lsprotocol import types
    from pygls.lsp.client import LanguageClient

    out: dict[str, list[float]] = {"open": [], "action": [], "resolve": [], "edit": []}
    published: asyncio.Queue = asyncio.Queue()
    client = LanguageClient("bench", "1")

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def _on_publish(params: types.PublishDiagnosticsParams) -> None:
        published.put_nowait((time.perf_counter(), params))

    await client.start_io(sys.executable, "-m", "tflint_grad.lsp")
    caps = types.ClientCapabilities(
        text_document=types.TextDocumentClientCapabilities(
            code_action=types.CodeActionClientCapabilities(
                resolve_support=types.ClientCodeActionResolveOptions(properties=["edit"]), data_support=True
            )
        )
    )
    await client.initialize_async(
        types.InitializeParams(capabilities=caps, initialization_options={"debounce": DEBOUNCE})
    )
    client.initialized(types.InitializedParams())
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            uri = (Path(tmp) / f"big{run}.py").as_uri()
            t0 = time.perf_counter()
            client.text_document_did_open(
                types.DidOpenTextDocumentParams(
                    text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
                )
            )
            t1, params = await published.get()
            out["open"].append(t1 - t0)
            diag = [d for d in params.diagnostics if d.code == "TFG101"][-1]
            t0 = time.perf_counter()
            actions = await client.text_document_code_action_async(
                types.CodeActionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    range=diag.range,
                    context=types.CodeActionContext(diagnostics=[diag]),
                )
            )
            out["action"].append(time.perf_counter() - t0)
            fix_all = [a for a in actions or [] if getattr(a, "kind", None) == "source.fixAll.tflint-grad"]
            if fix_all:
                t0 = time.perf_counter()
                await client.code_action_resolve_async(fix_all[0])
                out["resolve"].append(time.perf_counter() - t0)
            at = types.Position(line=0, character=0)
            t0 = time.perf_counter()
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                    content_changes=[
                        types.TextDocumentContentChangePartial(range=types.Range(start=at, end=at), text="x = 1\n")
                    ],
                )
            )
            t1, params = await published.get()
            out["edit"].append(t1 - t0)
            client.text_document_did_close(
                types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
            )
            await published.get()  # the clearing publish
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return out


def lint_in_process(text: str, runs: int) -> tuple[list[float], list[float]]:
    from tflint_grad.engine import lint_source

    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        lint_source(text, "big.py")
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def relint_in_process(text: str, runs: int) -> tuple[list[float], list[float]]:
    """The language server worker's lint after a one-line edit (``api.lint_text``: only the
    changed top-level statements are re-parsed, the others' positions re-used)."""
    from tflint_grad import api

    api.lint_text("big.py", text)
    wall, cpu = [], []
    for i in range(runs):
        text = f"x{i} = {i}\n" + text
        t0, c0 = time.perf_counter(), time.process_time()
        api.lint_text("big.py", text)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--lines", type=int, default=5000)
    ap.add_argument("--write", action="store_true", help="append the table to bench/RESULTS.md")
    args = ap.parse_args()
    text = big_file(args.lines)
    load = os.getloadavg()[0]
    cli = time_cli(text, args.runs)
    engine, engine_cpu = lint_in_process(text, args.runs)
    relint, relint_cpu = relint_in_process(text, args.runs)
    lsp = asyncio.run(time_lsp(text, args.runs))
    med = lambda xs: f"{statistics.median(xs):.2f} s" if xs else "-"  # noqa: E731
    rows = [
        ("`tflint-grad check --no-cache` (console script)", med(cli["check"]), med(cli["check-cpu"])),
        ("`tflint-grad check --fix --no-cache` (fixes every safe finding)", med(cli["fix"]), med(cli["fix-cpu"])),
        ("one lint in process (`lint_source`, no start-up)", med(engine), med(engine_cpu)),
        ("re-lint after a one-line edit in process (`api.lint_text`, the LSP worker)", med(relint), med(relint_cpu)),
        ("LSP open -> diagnostics", med(lsp["open"]), "-"),
        ("LSP code action, no `only` (quick fixes + lazy fix-all)", med(lsp["action"]), "-"),
        ("LSP `codeAction/resolve` of fix-all (the fix loop)", med(lsp["resolve"]), "-"),
        (f"LSP edit -> diagnostics ({DEBOUNCE:g} s debounce included)", med(lsp["edit"]), "-"),
    ]
    table = [
        f"## Integrations: a {text.count(chr(10))}-line training script (`bench/integrations.py`)",
        "",
        f"Median of {args.runs} runs; load average {load:.1f} at the start (2 shared cores).",
        "",
        "| what | wall clock | CPU |",
        "|---|---|---|",
        *[f"| {what} | {t} | {c} |" for what, t, c in rows],
        "",
    ]
    report = "\n".join(table)
    print(report)
    if args.write:
        with open(ROOT / "bench" / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write("\n" + report)


if __name__ == "__main__":
    main()
