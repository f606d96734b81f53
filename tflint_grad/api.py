"""Small entry points shared by the integrations (the language server's worker process).

They take and return plain picklable values, so the language server can run them in a
separate process: a lint of a big file then never holds the server's event loop (libcst's
parser holds the GIL for the whole parse, so a thread would not do).
"""

from __future__ import annotations

from tflint_grad.engine import InternalError, lint_file
from tflint_grad.finding import Finding
from tflint_grad.fixes import FixResult, fix_text
from tflint_grad.incremental import ParseCache
from tflint_grad.settings import Settings
from tflint_grad.sourcefile import SourceFile

# This process's parses of the buffers it linted last: an edit re-parses only the changed statements.
_PARSES = ParseCache()


def lint_text(path: str, text: str, settings: Settings | None = None) -> tuple[list[Finding], list[InternalError]]:
    """Lint an editor buffer: its findings and the internal errors of the rules."""
    newline = "\r\n" if "\r\n" in text[:10000] else "\n"
    result = lint_file(SourceFile(path, text, newline=newline), settings, parse=_PARSES.parser(path))
    return result.findings, result.errors


def fix_buffer(
    path: str, text: str, settings: Settings | None = None, findings: list[Finding] | None = None
) -> FixResult:
    """Every safe fix of a buffer (the fix loop; ``findings``: the buffer's last lint)."""
    return fix_text(text, path, settings, findings=findings)


def warm_up() -> bool:
    """Import the rules in a fresh worker process before the first real request."""
    lint_text("<warm-up>", "import tensorflow as tf\n")
    return True
