"""Which files to lint: walk folders for ``.py`` / ``.ipynb``, honour excludes and ``.gitignore``.

Rules (the same as ruff's):

* Folders are walked in sorted order. ``.git``/``.hg``/``.svn``/``__pycache__`` and virtual
  environments (a folder holding ``pyvenv.cfg``) are never entered; the ``exclude`` +
  ``extend-exclude`` patterns (gitignore syntax, relative to the config's folder) and, with
  ``respect-gitignore``, every ``.gitignore`` on the way (nested ones too, plus the
  ``.gitignore`` files above the walked folder up to the repository root and
  ``.git/info/exclude``) prune the walk. Symlinked folders are not followed; symlinked
  files are linted; a broken symlink named ``*.py`` is reported as an I/O error.
* A file passed explicitly is always linted (whatever its extension), unless
  ``force_exclude`` is set and it, or a folder above it, matches ``exclude``.
* Paths are shown relative to the working directory when under it, with forward
  slashes; otherwise as given.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tflint_grad.config import ALWAYS_SKIP_DIRS, Config, Resolver

if TYPE_CHECKING:
    import pathspec

EXTENSIONS = (".py", ".ipynb")


@dataclass(frozen=True)
class FileEntry:
    display: str  # the path shown to the user and given to the engine
    abspath: str


@dataclass
class Discovered:
    files: list[FileEntry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # I/O problems (exit 2)
    skipped: list[str] = field(default_factory=list)  # explicit files skipped by --force-exclude


class MissingPathError(Exception):
    pass


def display_path(abspath: str, given: str | None = None, cwd: str | None = None) -> str:
    cwd = cwd or os.getcwd()
    rel = os.path.relpath(abspath, cwd)
    if not (rel == os.pardir or rel.startswith(os.pardir + os.sep)):
        return rel.replace(os.sep, "/")
    if given is not None:
        return os.path.normpath(given).replace(os.sep, "/")
    return abspath.replace(os.sep, "/")


class _Ignores:
    """The stack of .gitignore specs that apply while walking."""

    def __init__(self) -> None:
        self.specs: list[tuple[str, pathspec.PathSpec]] = []

    def push_file(self, base: str, path: str) -> bool:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return False
        import pathspec  # only when walking folders (start-up of a run on explicit files)

        spec = pathspec.GitIgnoreSpec.from_lines(lines)
        self.specs.append((base, spec))
        return True

    def ignored(self, path: str, is_dir: bool) -> bool:
        for base, spec in reversed(self.specs):  # the deepest .gitignore decides first
            rel = os.path.relpath(path, base)
            if rel.startswith(os.pardir):
                continue
            rel = rel.replace(os.sep, "/") + ("/" if is_dir else "")
            res = spec.check_file(rel)
            if res.include is not None:
                return bool(res.include)
        return False


def _git_root(start: str) -> str | None:
    for folder in (start, *map(str, Path(start).parents)):
        if os.path.exists(os.path.join(folder, ".git")):
            return folder
    return None


def _initial_ignores(top: str) -> _Ignores:
    """.gitignore files above ``top`` (up to the repository root) and .git/info/exclude."""
    ign = _Ignores()
    root = _git_root(top)
    if root is None:
        return ign
    info = os.path.join(root, ".git", "info", "exclude")
    if os.path.isfile(info):
        ign.push_file(root, info)
    chain = []
    folder = top
    while True:
        parent = os.path.dirname(folder)
        if folder == root or parent == folder:
            break
        folder = parent
        chain.append(folder)
    for folder in reversed(chain):
        gi = os.path.join(folder, ".gitignore")
        if os.path.isfile(gi):
            ign.push_file(folder, gi)
    return ign


class _Excludes:
    """The exclude patterns of each folder's own configuration (nested configs: ruff's rules)."""

    def __init__(self, config: Config | Resolver) -> None:
        self.config = config
        self._specs: dict[int, object] = {}

    def config_at(self, folder: str) -> Config:
        if isinstance(self.config, Resolver):
            return self.config.for_folder(folder)
        return self.config

    def spec_at(self, folder: str):
        cfg = self.config_at(folder)
        spec = self._specs.get(id(cfg))
        if spec is None:
            spec = self._specs[id(cfg)] = (cfg, cfg.exclude_spec())
        return spec[1]  # type: ignore[index]


def discover(
    paths: list[str], config: Config | Resolver, *, force_exclude: bool = False, cwd: str | None = None
) -> Discovered:
    """``config``: one configuration for every file, or a :class:`Resolver` (each folder's
    closest configuration decides what is excluded under it)."""
    cwd = cwd or os.getcwd()
    out = Discovered()
    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:
        raise MissingPathError(", ".join(repr(p) for p in missing))
    excludes = _Excludes(config)
    seen: set[str] = set()

    def add(abspath: str, given: str | None) -> None:
        key = os.path.normcase(abspath)
        if key in seen:
            return
        seen.add(key)
        out.files.append(FileEntry(display_path(abspath, given, cwd), abspath))

    for given in paths:
        abspath = os.path.abspath(given)
        if not os.path.exists(given):  # a broken symlink passed explicitly
            out.errors.append(f"{display_path(abspath, given, cwd)}: cannot read: broken symbolic link")
            continue
        if os.path.isdir(given):
            if force_exclude and _dir_excluded(excludes.spec_at(os.path.dirname(abspath)), abspath):
                out.skipped.append(display_path(abspath, given, cwd))
                continue
            gitignore = excludes.config_at(abspath).respect_gitignore
            ignores = _initial_ignores(abspath) if gitignore else _Ignores()
            _walk(abspath, given, excludes, ignores, gitignore, add, out, cwd)
        else:
            if force_exclude and excludes.spec_at(os.path.dirname(abspath)).match_path_or_parents(abspath):
                out.skipped.append(display_path(abspath, given, cwd))
                continue
            add(abspath, given)
    out.files.sort(key=lambda e: e.display)
    return out


def _dir_excluded(exclude, abspath: str) -> bool:
    """The folder, or a folder above it (up to the config root), matches ``exclude``."""
    rel = exclude.relative(abspath)
    if not rel:
        return False
    parts = rel.split("/")
    return any(exclude.spec.match_file("/".join(parts[:i]) + "/") for i in range(1, len(parts) + 1))


def is_excluded(path: str, config: Config | Resolver) -> bool:
    """--force-exclude semantics for one path (stdin's --stdin-filename too)."""
    absolute = os.path.abspath(path)
    return _Excludes(config).spec_at(os.path.dirname(absolute)).match_path_or_parents(absolute)


def _walk(
    top: str, given: str, excludes: _Excludes, ignores: _Ignores, gitignore: bool, add, out: Discovered, cwd: str
) -> None:
    # A folder passed explicitly is walked even if an exclude pattern matches it (or a
    # folder above it): those patterns do not apply to what is inside either.
    inherited: dict[int, set[int]] = {}

    def excluded(path: str, is_dir: bool) -> bool:
        exclude = excludes.spec_at(os.path.dirname(path))
        if id(exclude) not in inherited:
            inherited[id(exclude)] = exclude.matching_patterns(top)
        hit, index = exclude.check(path, is_dir)
        return hit and not (index is not None and index in inherited[id(exclude)])

    def given_for(path: str) -> str:
        return os.path.join(given, os.path.relpath(path, top))

    def visit(folder: str) -> None:
        pushed = False
        if gitignore:
            gi = os.path.join(folder, ".gitignore")
            if os.path.isfile(gi):
                pushed = ignores.push_file(folder, gi)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            out.errors.append(f"{display_path(folder, given_for(folder), cwd)}: cannot list folder: {e.strerror or e}")
            entries = []
        for entry in entries:
            path = entry.path
            try:
                is_link = entry.is_symlink()
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if entry.name in ALWAYS_SKIP_DIRS or os.path.isfile(os.path.join(path, "pyvenv.cfg")):
                    continue
                if excluded(path, True) or ignores.ignored(path, True):
                    continue
                visit(path)
                continue
            if not entry.name.endswith(EXTENSIONS):
                continue
            if is_link:
                try:
                    st = os.stat(path)
                except OSError:
                    if not (excluded(path, False) or ignores.ignored(path, False)):
                        out.errors.append(
                            f"{display_path(path, given_for(path), cwd)}: cannot read: broken symbolic link"
                        )
                    continue
                if stat.S_ISDIR(st.st_mode):
                    continue  # symlinked folders are not followed
                if not stat.S_ISREG(st.st_mode):
                    continue
            else:
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue  # sockets, fifos, devices
                except OSError:
                    continue
            if excluded(path, False) or ignores.ignored(path, False):
                continue
            add(path, given_for(path))
        if pushed:
            ignores.specs.pop()

    visit(top)
