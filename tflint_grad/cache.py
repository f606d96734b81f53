"""Static-result cache: skip re-linting files whose bytes have not changed.

Entries live in ``<config root>/.tflint-grad-cache/<fingerprint>/<xx>/<key>.json`` (each
nested configuration has its own; ``--cache-dir DIR``: ``DIR/<hash of the config root>/...``). The
fingerprint covers the tflint-grad version, the source files of the package and its
rules (size and mtime, so editing a rule invalidates everything) and the settings; the
key adds the file's path and bytes. An entry also records the sibling modules the program
model read (``Result.depends``: mtime and size); it is a miss once one of them changed. Folders of other fingerprints are removed when a
cache is opened. Only clean static results are cached (no internal errors); ``--fix``,
``--diff``, ``--confirm`` and standard input bypass the cache; ``--no-cache`` disables it.
Any cache problem is ignored: the file is simply linted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tflint_grad import __version__

DIRNAME = ".tflint-grad-cache"
MAX_ENTRIES = 20000


def _package_fingerprint() -> str:
    import tflint_grad
    import tflint_grad.rules
    from tflint_grad.cells import backend_id

    h = hashlib.sha256(__version__.encode())
    h.update(backend_id().encode())  # notebooks: IPython's transformer or the fallback
    package = tflint_grad.__path__[0]
    # The package and every subpackage (analysis/, data/, tracer/...), plus the rules, which an
    # editable install maps from the top-level ``rules/`` folder.
    folders = sorted({root for root, _dirs, _files in os.walk(package)} | set(tflint_grad.rules.__path__))
    for folder in folders:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            if not name.endswith((".py", ".toml", ".json")):
                continue
            try:
                st = os.stat(os.path.join(folder, name))
            except OSError:
                continue
            h.update(f"{folder}/{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _settings_fingerprint(settings: Any) -> str:
    pfi = [
        (getattr(spec, "patterns", repr(spec)), getattr(spec, "root", ""), sorted(codes))
        for spec, codes in settings.per_file_ignores
    ]
    data = {
        "enabled": sorted(settings.enabled),
        "options": settings.rule_options,
        "pfi": pfi,
        "min_confidence": settings.min_confidence,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=repr).encode()).hexdigest()


class Cache:
    def __init__(self, folder: Path, salt: str) -> None:
        self.folder = folder
        self.salt = salt

    @classmethod
    def open(cls, config: Any, settings: Any, cache_dir: str | os.PathLike[str] | None = None) -> Cache | None:
        """``cache_dir`` (``--cache-dir``): keep the cache there instead of in the
        configuration's folder (one sub-folder per configuration folder)."""
        if cache_dir is not None:
            root = hashlib.sha256(os.path.abspath(config.root).encode("utf-8", "surrogateescape")).hexdigest()[:16]
            base = Path(cache_dir) / root
        else:
            base = Path(config.root) / DIRNAME
        fingerprint = hashlib.sha256((_package_fingerprint() + _settings_fingerprint(settings)).encode()).hexdigest()[
            :20
        ]
        folder = base / fingerprint
        try:
            folder.mkdir(parents=True, exist_ok=True)
            gi = base / ".gitignore"
            if not gi.exists():
                gi.write_text("# Created by tflint-grad\n*\n", encoding="utf-8")
            for other in base.iterdir():
                if other.is_dir() and other.name != fingerprint:
                    shutil.rmtree(other, ignore_errors=True)
        except OSError:
            return None
        return cls(folder, fingerprint)

    def key(self, path: str, raw: bytes) -> str:
        """``path``: the absolute path (per-file-ignores depend on where the file is)."""
        h = hashlib.sha256(self.salt.encode())
        h.update(path.encode("utf-8", "surrogateescape") + b"\0")
        h.update(raw)
        return h.hexdigest()

    def _file(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str, path: str):
        from tflint_grad.engine import Result
        from tflint_grad.finding import Finding

        try:
            with open(self._file(key), encoding="utf-8") as f:
                data = json.load(f)
            findings = [Finding.from_dict({**d, "path": path}) for d in data["findings"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        depends = data.get("depends") or {}
        if depends:
            from tflint_grad.analysis.siblings import unchanged

            if not unchanged(depends):
                return None  # a sibling module the result depends on changed
        candidates = [Finding.from_dict({**d, "path": path}) for d in data.get("candidates", [])]
        return Result(path, findings=findings, candidates=candidates, parsed=bool(data.get("parsed")), depends=depends)

    def put(self, key: str, result: Any) -> None:
        try:
            payload = json.dumps(
                {
                    "parsed": result.parsed,
                    "findings": [{**f.to_dict(), "data": f.data} for f in result.findings],
                    "candidates": [{**f.to_dict(), "data": f.data} for f in result.candidates],
                    "depends": result.depends,
                }
            )
        except (TypeError, ValueError):
            return  # a rule put something that is not JSON in `data`: do not cache
        target = self._file(key)
        try:
            target.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(payload)
            os.replace(tmp, target)
        except OSError:
            pass

    def save(self) -> None:
        """Bound the cache's size (entries of edited files pile up)."""
        try:
            count = sum(len(os.listdir(d)) for d in self.folder.iterdir() if d.is_dir())
        except OSError:
            return
        if count > MAX_ENTRIES:
            shutil.rmtree(self.folder, ignore_errors=True)
