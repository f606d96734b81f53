"""flake8 plugin: ``flake8 --select TFG`` runs tflint-grad's static rules.

Registered in pyproject.toml as ``[project.entry-points."flake8.extension"] TFG =
"tflint_grad.flake8_plugin:Checker"``. The plugin only adapts the shared core
(:func:`tflint_grad.engine.lint_file`): it lints the lines flake8 already read and
yields ``(line, col, "TFGnnn message", type)`` with a **0-based** column (flake8
adds 1 when it prints, so the printed column equals ``tflint-grad check``'s).

flake8 itself applies ``--select``/``--ignore``/``--per-file-ignores`` and
``# noqa`` to what the plugin yields; every static rule is enabled here so that
flake8's selection is the only one in effect (flake8 does not read pyproject.toml).
Per-rule options (``[tool.tflint-grad.rules.TFGnnn]``) are still taken from the
closest tflint-grad config file; an invalid config is logged and the defaults are used. The engine also honours ``# noqa``
and ``# tflint-grad: noqa`` (same syntax), so ``--disable-noqa`` does not bring
back findings silenced by those comments. TensorFlow is never imported; ``--confirm``
is not available in flake8 mode (use ``tflint-grad check --confirm``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from tflint_grad import __version__
from tflint_grad.config import ConfigError
from tflint_grad.engine import is_tf_source, lint_file
from tflint_grad.settings import Settings
from tflint_grad.sourcefile import SourceFile

LOG = logging.getLogger(__name__)

_SETTINGS: dict[str, Settings] = {}  # folder -> settings (one flake8 process lints many files)


def settings_for(filename: str) -> Settings:
    folder = os.path.dirname(os.path.abspath(filename)) if filename not in ("-", "stdin", "(none)") else os.getcwd()
    cached = _SETTINGS.get(folder)
    if cached is not None:
        return cached
    rule_options: dict[str, dict[str, Any]] = {}
    min_confidence = "high"  # the CLI's default: findings whose premise was assumed stay hidden
    try:
        cfg = _resolver().for_folder(folder)
        rule_options, min_confidence = cfg.rule_options, cfg.min_confidence()
    except ConfigError as e:
        LOG.warning("tflint-grad: invalid configuration (%s); using the default rule options", e)
    settings = Settings(Settings.default().enabled, {k: dict(v) for k, v in rule_options.items()})
    settings.min_confidence = min_confidence  # type: ignore[assignment]
    _SETTINGS[folder] = settings
    return settings


_RESOLVER: Any = None


def _resolver() -> Any:
    """The closest configuration of each folder, resolved as ``tflint-grad check`` does."""
    global _RESOLVER
    if _RESOLVER is None:
        from tflint_grad.config import Resolver

        _RESOLVER = Resolver()
    return _RESOLVER


class Checker:
    name = "tflint-grad"
    version = __version__

    # flake8 injects these by parameter name; ``tree`` makes this a once-per-file plugin.
    def __init__(self, tree: Any, lines: list[str], filename: str = "(none)") -> None:
        self.lines = lines
        self.filename = filename

    def run(self) -> Iterator[tuple[int, int, str, type]]:
        text = "".join(self.lines)
        if text.startswith("\ufeff"):
            text = text[1:]
        if not is_tf_source(text):
            return  # cheap: no config lookup for files that cannot match
        newline = "\r\n" if "\r\n" in text[:10000] else "\n"
        result = lint_file(SourceFile(self.filename, text, newline=newline), settings_for(self.filename))
        for err in result.errors:
            LOG.warning("tflint-grad: internal error in %s on %s: %s", err.rule, err.path, err.message)
        for f in result.findings:
            # Finding lines/columns are 1-based; flake8 wants a 0-based column.
            line = int(f.data.get("source_line", f.line))
            message = " ".join(f.message.split())  # one line: flake8 output is line-oriented
            yield line, max(f.column - 1, 0), f"{f.code} {message}", type(self)
