"""Resolved settings the engine runs with (the CLI and config loading build these)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tflint_grad.finding import Confidence
from tflint_grad.registry import all_rules, lookup


class SelectionError(ValueError):
    pass


class PathMatcher(Protocol):
    """A per-file-ignores pattern set (``config.RootedSpec``)."""

    def match_file(self, path: str) -> bool: ...


def expand(selectors: Iterable[str], *, what: str = "selector") -> set[str]:
    """Expand codes, prefixes (``TFG2``) and ``ALL`` to rule codes; unknown ones raise."""
    codes = [r.code for r in all_rules()]
    out: set[str] = set()
    for raw in selectors:
        sel = raw.strip().upper()
        if not sel:
            continue
        if sel == "ALL":
            out.update(codes)
            continue
        matched = [c for c in codes if c.startswith(sel)]
        if not matched:
            rule = lookup(raw.strip())
            if rule is None:
                raise SelectionError(
                    f"unknown rule {what} {raw.strip()!r} (valid: ALL, a prefix such as TFG2, or one of {', '.join(codes)})"
                )
            matched = [rule.code]
        out.update(matched)
    return out


@dataclass
class Settings:
    enabled: frozenset[str]
    rule_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_file_ignores: list[tuple[PathMatcher, frozenset[str]]] = field(default_factory=list)
    # Findings below this confidence are kept aside as candidates (``Result.candidates``).
    min_confidence: Confidence = "high"

    @classmethod
    def default(cls) -> Settings:
        return cls(frozenset(r.code for r in all_rules()))

    def enabled_for(self, path: str) -> frozenset[str]:
        enabled = self.enabled
        for spec, codes in self.per_file_ignores:
            if spec.match_file(path):
                enabled = enabled - codes
        return enabled


def default_cache_dir() -> str:
    env = os.environ.get("TFLINT_GRAD_CACHE_DIR")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tflint-grad")


@dataclass(frozen=True)
class TraceSettings:
    """How ``--confirm`` traces: one value for the CLI, the language server and the runner.

    The configuration (``[tool.tflint-grad.trace]``: steps, timeout, memory, args) produces it; the
    CLI overrides fields with ``dataclasses.replace``; the runner and the verdicts use it as is.
    """

    steps: int = 5
    timeout: float = 120.0
    memory_mb: int = 4096
    args: tuple[str, ...] = ()
    allow_read: tuple[
        str, ...
    ] = ()  # read roots granted on top of the project ([trace] allow-read, --trace-allow-read)
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    cache: bool = True
    cache_dir: str = field(default_factory=default_cache_dir)
    confirm_all: bool = False
    python: str = sys.executable
    warm: bool = True  # trace from a process that imported TensorFlow once (``tracer.warm``), else cold
