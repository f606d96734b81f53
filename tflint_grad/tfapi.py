"""Loads the TF/Keras API tables of ``data/tf_api.toml`` once and canonicalizes names."""

from __future__ import annotations

import tomllib
from functools import cache, lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=1)
def tables() -> dict[str, Any]:
    with resources.files("tflint_grad.data").joinpath("tf_api.toml").open("rb") as f:
        return tomllib.load(f)


def table(section: str, key: str) -> Any:
    return tables()[section][key]


@cache
def names(section: str, key: str) -> frozenset[str]:
    return frozenset(tables()[section][key])


@lru_cache(maxsize=1)
def _prefixes() -> tuple[tuple[str, str], ...]:
    pairs = [tuple(p) for p in tables()["canonical"]["prefixes"]]
    return tuple(sorted(pairs, key=lambda p: -len(p[0])))


@lru_cache(maxsize=4096)
def canonical(dotted: str) -> str:
    """Rewrite an import-resolved dotted name to its canonical form (see the TOML)."""
    changed = True
    while changed:
        changed = False
        for old, new in _prefixes():
            if dotted == old or dotted.startswith(old + "."):
                rewritten = new + dotted[len(old) :]
                if rewritten != dotted:
                    dotted, changed = rewritten, True
                    break
    return dotted


def roots() -> frozenset[str]:
    return names("canonical", "roots")
