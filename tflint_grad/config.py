"""Configuration: ``[tool.tflint-grad]`` in ``pyproject.toml`` (or a ``tflint-grad.toml``).

Discovery follows ruff: starting from a directory and walking up, the *closest* file
that configures tflint-grad wins (``.tflint-grad.toml``, then ``tflint-grad.toml``,
then a ``pyproject.toml`` that has a ``[tool.tflint-grad]`` table). Parent files are not
merged. Patterns (``exclude``, ``per-file-ignores``) are relative to the directory of
that file (or to the working directory when there is none).

Every key is validated: an unknown key, a wrong type, an unknown rule code or an
unknown per-rule option raises :class:`ConfigError`, which the CLI turns into exit 2.

Layout::

    [tool.tflint-grad]
    select = ["ALL"]                 # codes, prefixes (TFG2), ALL
    ignore = ["TFG302"]
    extend-select = []
    extend-ignore = []
    per-file-ignores = { "tests/*" = ["TFG101"] }
    exclude = [...]                  # replaces DEFAULT_EXCLUDE
    extend-exclude = ["legacy/"]
    respect-gitignore = true
    output-format = "text"           # text | json | sarif | github
    min-confidence = "high"          # high | low: also show findings whose premise was assumed

    [tool.tflint-grad.rules.TFG301]  # per-rule options (the rule's ``options``)
    min-stddev = 1e-3

    [tool.tflint-grad.trace]         # --confirm defaults
    steps = 5
    timeout = 120                    # seconds
    memory = 4096                    # MB
    args = "--epochs 1"              # argv for the traced script (shlex-split), or a list
    allow-read = ["../datasets"]     # more the traced script may read (relative: to this file)
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import shlex
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tflint_grad.settings import SelectionError, Settings, TraceSettings, expand

if TYPE_CHECKING:
    import pathspec

SECTION = "tool.tflint-grad"
CONFIG_FILES = (".tflint-grad.toml", "tflint-grad.toml", "pyproject.toml")
FORMATS = ("text", "json", "sarif", "github", "junit", "gitlab")
CONFIDENCES = ("high", "low")

# Folders never descended into when walking a directory (whatever ``exclude`` says).
ALWAYS_SKIP_DIRS = frozenset({".git", ".hg", ".svn", ".bzr", "__pycache__"})

# Default ``exclude`` (ruff's list plus notebook checkpoints and our cache). Setting
# ``exclude`` replaces it; ``extend-exclude`` adds to it.
DEFAULT_EXCLUDE = (
    ".bzr",
    ".direnv",
    ".eggs",
    ".git",
    ".hg",
    ".ipynb_checkpoints",
    ".mypy_cache",
    ".nox",
    ".pants.d",
    ".pytest_cache",
    ".ruff_cache",
    ".svn",
    ".tflint-grad-cache",
    ".tox",
    ".venv",
    "__pycache__",
    "__pypackages__",
    "_build",
    "buck-out",
    "build",
    "dist",
    "node_modules",
    "site-packages",
    "venv",
)

_TOP_KEYS = (
    "select",
    "ignore",
    "extend-select",
    "extend-ignore",
    "per-file-ignores",
    "exclude",
    "extend-exclude",
    "respect-gitignore",
    "output-format",
    "min-confidence",
    "rules",
    "trace",
)
_TRACE_KEYS = ("steps", "timeout", "memory", "args", "allow-read")


class ConfigError(Exception):
    """Invalid configuration (exit 2)."""


@dataclass
class Selection:
    """One layer of rule selection (the config file, then the command line)."""

    select: list[str] | None = None
    ignore: list[str] = field(default_factory=list)
    extend_select: list[str] = field(default_factory=list)
    extend_ignore: list[str] = field(default_factory=list)
    # findings below this confidence are hidden (kept as candidates for --confirm); None: inherit
    min_confidence: str | None = None

    def apply(self, enabled: set[str], where: str) -> set[str]:
        try:
            if self.select is not None:
                enabled = expand(self.select)
            enabled = enabled | expand(self.extend_select)
            enabled = enabled - expand([*self.ignore, *self.extend_ignore])
        except SelectionError as e:
            raise ConfigError(f"{where}: {e}") from None
        return enabled


class RootedSpec:
    """A gitignore-style :class:`pathspec.GitIgnoreSpec` whose patterns are relative to ``root``.

    ``match_file`` takes a path as the engine sees it (relative to the working
    directory, or absolute) and matches it relative to ``root``.
    """

    def __init__(self, patterns: Iterable[str], root: Path | str) -> None:
        self.patterns = list(patterns)
        self.root = os.path.abspath(root)
        self._spec: pathspec.GitIgnoreSpec | None = None

    @property
    def spec(self) -> pathspec.GitIgnoreSpec:
        """Compiled on first use: a run on explicit files never needs the excludes
        (``pathspec`` costs ~20 ms of start-up)."""
        if self._spec is None:
            import pathspec

            self._spec = pathspec.GitIgnoreSpec.from_lines(self.patterns)
        return self._spec

    def relative(self, path: str) -> str:
        absolute = os.path.abspath(path)
        rel = os.path.relpath(absolute, self.root)
        if rel == os.curdir:
            return ""
        if rel.startswith(os.pardir + os.sep) or rel == os.pardir or os.path.isabs(rel):
            rel = absolute.lstrip("/\\")  # outside the root: patterns without a slash still match names
        return rel.replace(os.sep, "/")

    def match_file(self, path: str, is_dir: bool = False) -> bool:
        rel = self.relative(path)
        if not rel:
            return False
        return self.spec.match_file(rel + "/" if is_dir else rel)

    def check(self, path: str, is_dir: bool = False) -> tuple[bool, int | None]:
        """(matches, index of the deciding pattern)."""
        rel = self.relative(path)
        if not rel:
            return False, None
        return check_spec(self.spec, rel + "/" if is_dir else rel)

    def matching_patterns(self, folder: str) -> set[int]:
        """Indexes of the patterns that match ``folder`` or a folder above it (up to the root)."""
        rel = self.relative(folder)
        if not rel:
            return set()
        parts = rel.split("/")
        out = set()
        for i in range(1, len(parts) + 1):
            hit, index = check_spec(self.spec, "/".join(parts[:i]) + "/")
            if hit and index is not None:
                out.add(index)
        return out

    def match_path_or_parents(self, path: str) -> bool:
        """The file or any folder above it (up to the root) matches."""
        rel = self.relative(path)
        if not rel:
            return False
        parts = rel.split("/")
        if self.spec.match_file(rel):
            return True
        return any(self.spec.match_file("/".join(parts[:i]) + "/") for i in range(1, len(parts)))

    def __repr__(self) -> str:
        return f"RootedSpec({self.patterns!r}, root={self.root!r})"


def check_spec(spec: pathspec.GitIgnoreSpec, rel: str) -> tuple[bool, int | None]:
    """(matches, deciding pattern index); negated patterns count (gitignore rules)."""
    res = spec.check_file(rel)
    return bool(res.include), res.index


@dataclass
class Config:
    path: Path | None = None  # the config file, None when there is none (or --isolated)
    root: Path = field(default_factory=Path.cwd)
    selection: Selection = field(default_factory=Selection)
    per_file_ignores: dict[str, list[str]] = field(default_factory=dict)
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    extend_exclude: list[str] = field(default_factory=list)
    respect_gitignore: bool = True
    output_format: str | None = None
    rule_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    trace: TraceSettings = field(default_factory=TraceSettings)

    @property
    def display_name(self) -> str:
        return str(self.path) if self.path else "(none: defaults)"

    def exclude_spec(self) -> RootedSpec:
        return RootedSpec([*self.exclude, *self.extend_exclude], self.root)

    def settings(self, cli: Selection | None = None, cli_where: str = "command line") -> Settings:
        """The engine's settings: config selection, then the command line's (or the editor's) on top."""
        from tflint_grad.registry import all_rules

        enabled: set[str] = {r.code for r in all_rules()}
        enabled = self.selection.apply(enabled, self._where())
        if cli is not None:
            enabled = cli.apply(enabled, cli_where)
        pfi: list[tuple[Any, frozenset[str]]] = []
        for pattern, codes in self.per_file_ignores.items():
            try:
                expanded = expand(codes)
            except SelectionError as e:
                raise ConfigError(f"{self._where()} per-file-ignores[{pattern!r}]: {e}") from None
            pfi.append((RootedSpec([pattern], self.root), frozenset(expanded)))
        settings = Settings(frozenset(enabled), {k: dict(v) for k, v in self.rule_options.items()}, pfi)
        settings.min_confidence = self.min_confidence(cli)  # type: ignore[assignment]
        return settings

    def min_confidence(self, cli: Selection | None = None) -> str:
        """The command line's ``--min-confidence``, else the config's, else ``high``."""
        if cli is not None and cli.min_confidence is not None:
            return cli.min_confidence
        return self.selection.min_confidence or "high"

    def _where(self) -> str:
        return _where(self.path)


def _where(path: Path | None) -> str:
    if path is None:
        return "configuration"
    return f"{_display(path)}"


def _display(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
        return rel if not rel.startswith(os.pardir) else str(path)
    except ValueError:
        return str(path)


# -- discovery --------------------------------------------------------------------------
def _table(data: dict[str, Any], filename: str) -> dict[str, Any] | None:
    if filename != "pyproject.toml":
        return data
    tool = data.get("tool")
    if not isinstance(tool, dict):
        return None
    table = tool.get("tflint-grad")
    if table is None:
        table = tool.get("tflint_grad")
        if table is not None:
            raise ConfigError(
                "pyproject.toml: the section is spelled [tool.tflint-grad] (with a dash), not [tool.tflint_grad]"
            )
    return table


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{_display(path)} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {_display(path)}: {e.strerror or e}") from None


def find_config(start: str | os.PathLike[str]) -> Path | None:
    """The closest config file at or above ``start`` (a folder or a file)."""
    here = Path(os.path.abspath(start))
    if not here.is_dir():
        here = here.parent
    for folder in (here, *here.parents):
        for name in CONFIG_FILES:
            candidate = folder / name
            if not candidate.is_file():
                continue
            if name != "pyproject.toml":
                return candidate
            try:
                with open(candidate, "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            if b"tflint-grad" in raw or b"tflint_grad" in raw:
                try:
                    data = tomllib.loads(raw.decode("utf-8", "replace"))
                except tomllib.TOMLDecodeError as e:
                    raise ConfigError(f"{_display(candidate)} is not valid TOML: {e}") from None
                if _table(data, name) is not None:
                    return candidate
    return None


def load(
    path: str | os.PathLike[str] | None = None, *, start: str | os.PathLike[str] | None = None, isolated: bool = False
) -> Config:
    """Load ``path`` (``--config``), else the closest config above ``start`` (default: cwd)."""
    if isolated:
        return Config(root=Path.cwd())
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        p = p.resolve()
    else:
        found = find_config(start if start is not None else Path.cwd())
        if found is None:
            return Config(root=Path.cwd())
        p = found
    data = _read_toml(p)
    table = _table(data, p.name)
    if table is None:
        if path is not None and p.name == "pyproject.toml":
            raise ConfigError(f"{_display(p)} has no [tool.tflint-grad] section")
        table = {}
    return parse(table, p)


def parse(table: dict[str, Any], path: Path | None = None, root: Path | None = None) -> Config:
    """Validate one config table (the contents of ``[tool.tflint-grad]``)."""
    prefix = f"{SECTION}." if path is None or path.name == "pyproject.toml" else ""
    fname = _display(path) if path is not None else "configuration"  # nested configs: name the folder
    cfg = Config(path=path, root=root or (path.parent if path is not None else Path.cwd()))

    def key_error(key: str, valid: Iterable[str], where: str) -> ConfigError:
        valid = list(valid)
        hint = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        if not hint and key.replace("_", "-") in valid:
            hint = [key.replace("_", "-")]
        did = f" (did you mean {hint[0]!r}?)" if hint else f" (valid keys: {', '.join(valid)})"
        return ConfigError(f"unknown key '{where}{key}' in {fname}{did}")

    def want(key: str, value: Any, kind: str) -> Any:
        full = f"'{prefix}{key}' in {fname}"
        if kind == "str-list":
            if isinstance(value, str):
                raise ConfigError(f"{full} must be a list of strings, e.g. [{value!r}]")
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{full} must be a list of strings, got {_tname(value)}")
            return list(value)
        if kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"{full} must be true or false, got {_tname(value)}")
            return value
        raise AssertionError(kind)

    if not isinstance(table, dict):
        raise ConfigError(f"'{SECTION}' in {fname} must be a table")
    for key, value in table.items():
        if key not in _TOP_KEYS:
            raise key_error(key, _TOP_KEYS, prefix)
        if key == "select":
            cfg.selection.select = want(key, value, "str-list")
        elif key == "ignore":
            cfg.selection.ignore = want(key, value, "str-list")
        elif key == "extend-select":
            cfg.selection.extend_select = want(key, value, "str-list")
        elif key == "extend-ignore":
            cfg.selection.extend_ignore = want(key, value, "str-list")
        elif key == "exclude":
            cfg.exclude = want(key, value, "str-list")
        elif key == "extend-exclude":
            cfg.extend_exclude = want(key, value, "str-list")
        elif key == "respect-gitignore":
            cfg.respect_gitignore = want(key, value, "bool")
        elif key == "output-format":
            if value not in FORMATS:
                raise ConfigError(f"'{prefix}{key}' in {fname} must be one of {', '.join(FORMATS)}, got {value!r}")
            cfg.output_format = value
        elif key == "min-confidence":
            if value not in CONFIDENCES:
                raise ConfigError(
                    f"'{prefix}{key}' in {fname} must be one of {', '.join(CONFIDENCES)}, got {_tname(value)}"
                )
            cfg.selection.min_confidence = value
        elif key == "per-file-ignores":
            if not isinstance(value, dict):
                raise ConfigError(f"'{prefix}{key}' in {fname} must be a table of glob = [codes]")
            for pattern, codes in value.items():
                cfg.per_file_ignores[pattern] = want(f"{key}.{pattern}", codes, "str-list")
        elif key == "rules":
            cfg.rule_options = _parse_rules(value, prefix, fname)
        elif key == "trace":
            cfg.trace = _parse_trace(value, prefix, fname, key_error)
            cfg.trace = dataclasses.replace(
                cfg.trace,
                allow_read=tuple(os.path.join(str(cfg.root), os.path.expanduser(p)) for p in cfg.trace.allow_read),
            )
    # Validate selectors now so a typo is reported even if the CLI overrides it.
    checks = [
        ("select", cfg.selection.select or []),
        ("extend-select", cfg.selection.extend_select),
        ("ignore", cfg.selection.ignore),
        ("extend-ignore", cfg.selection.extend_ignore),
    ]
    checks += [(f"per-file-ignores.{p!r}", codes) for p, codes in cfg.per_file_ignores.items()]
    for key, codes in checks:
        try:
            expand(codes)
        except SelectionError as e:
            raise ConfigError(f"'{prefix}{key}' in {fname}: {e}") from None
    return cfg


def _tname(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__) + f" ({value!r})"


def _parse_rules(value: Any, prefix: str, fname: str) -> dict[str, dict[str, Any]]:
    from tflint_grad.registry import all_rules, lookup

    if not isinstance(value, dict):
        raise ConfigError(f"'{prefix}rules' in {fname} must be a table of [{prefix}rules.TFGxxx] tables")
    out: dict[str, dict[str, Any]] = {}
    for code, options in value.items():
        rule = lookup(code)
        if rule is None:
            names = [r.code for r in all_rules()] + [r.name for r in all_rules()]
            hint = difflib.get_close_matches(code, names, n=1, cutoff=0.6)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"unknown rule '{prefix}rules.{code}' in {fname}{did}")
        where = f"{prefix}rules.{code}"
        if not isinstance(options, dict):
            raise ConfigError(f"'{where}' in {fname} must be a table of options")
        declared = dict(rule.options)
        if not declared and options:
            raise ConfigError(
                f"rule {rule.code} ({rule.name}) has no options, but '{where}' in {fname} sets {', '.join(options)}"
            )
        resolved = out.setdefault(rule.code, {})
        for key, opt in options.items():
            name = _option_name(key, declared)
            if name is None:
                hint = difflib.get_close_matches(key, list(declared), n=1, cutoff=0.6)
                did = f" (did you mean {hint[0]!r}?)" if hint else f" (valid options: {', '.join(declared)})"
                raise ConfigError(f"unknown key '{where}.{key}' in {fname}{did}")
            resolved[name] = _check_option(opt, declared[name], f"'{where}.{key}' in {fname}")
    return out


def _option_name(key: str, declared: dict[str, Any]) -> str | None:
    if key in declared:
        return key
    for name in declared:
        if name.replace("_", "-") == key.replace("_", "-"):
            return name
    return None


def _check_option(value: Any, default: Any, where: str) -> Any:
    if default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {_tname(value)}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {_tname(value)}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {_tname(value)}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {_tname(value)}")
        return value
    if isinstance(default, (list, tuple, frozenset, set)):
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {_tname(value)}")
        sample = next(iter(default), None)
        if sample is not None and not all(isinstance(v, type(sample)) for v in value):
            raise ConfigError(f"{where} must be a list of {type(sample).__name__}")
        return type(default)(value) if not isinstance(default, list) else value
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {_tname(value)}")
        return value
    return value


def _parse_trace(
    value: Any, prefix: str, fname: str, key_error: Callable[[str, Iterable[str], str], ConfigError]
) -> TraceSettings:
    if not isinstance(value, dict):
        raise ConfigError(f"'{prefix}trace' in {fname} must be a table")
    tc = TraceSettings()
    for key, v in value.items():
        where = f"'{prefix}trace.{key}' in {fname}"
        if key not in _TRACE_KEYS:
            raise key_error(key, _TRACE_KEYS, f"{prefix}trace.")
        if key in ("steps", "memory"):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{where} must be a positive integer, got {_tname(v)}")
            tc = dataclasses.replace(tc, memory_mb=v) if key == "memory" else dataclasses.replace(tc, steps=v)
        elif key == "timeout":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise ConfigError(f"{where} must be a positive number of seconds, got {_tname(v)}")
            tc = dataclasses.replace(tc, timeout=float(v))
        elif key == "allow-read":
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list) or not all(isinstance(a, str) and a for a in v):
                raise ConfigError(f"{where} must be a path or a list of paths, got {_tname(v)}")
            tc = dataclasses.replace(tc, allow_read=tuple(v))
        elif key == "args":
            if isinstance(v, str):
                try:
                    tc = dataclasses.replace(tc, args=tuple(shlex.split(v)))
                except ValueError as e:
                    raise ConfigError(f"{where}: cannot split {v!r}: {e}") from None
            elif isinstance(v, list) and all(isinstance(a, str) for a in v):
                tc = dataclasses.replace(tc, args=tuple(v))
            else:
                raise ConfigError(f"{where} must be a string or a list of strings, got {_tname(v)}")
    return tc


class Resolver:
    """The configuration of each file, as ruff resolves it: the closest config file above
    the file's folder (``--config`` or ``--isolated``: one configuration for every file).

    Results are cached per folder, so a run over many files reads each config file once.
    The command line, the language server and the flake8 plugin all resolve through this.
    """

    def __init__(
        self,
        config_file: str | os.PathLike[str] | None = None,
        *,
        isolated: bool = False,
        exclude: list[str] | None = None,
        extend_exclude: list[str] | None = None,
    ) -> None:
        # command-line --exclude / --extend-exclude: applied to every configuration, as if
        # written in it (patterns relative to its folder)
        self.exclude = exclude
        self.extend_exclude = list(extend_exclude or [])
        self.fixed: Config | None = None
        if isolated or config_file is not None:
            self.fixed = self._override(load(config_file, isolated=isolated))
        self._by_folder: dict[str, Config] = {}
        self._by_file: dict[Path, Config] = {}

    def _override(self, cfg: Config) -> Config:
        if self.exclude is not None:
            cfg.exclude = list(self.exclude)
        cfg.extend_exclude = [*cfg.extend_exclude, *self.extend_exclude]
        return cfg

    def for_folder(self, folder: str | os.PathLike[str]) -> Config:
        if self.fixed is not None:
            return self.fixed
        key = os.path.abspath(folder)
        cfg = self._by_folder.get(key)
        if cfg is None:
            found = find_config(key) if os.path.isdir(key) else _find_above(key)
            if found is None:
                cfg = self._by_file.get(Path("<none>"))
                if cfg is None:
                    cfg = self._by_file[Path("<none>")] = self._override(Config(root=Path.cwd()))
            else:
                cfg = self._by_file.get(found)
                if cfg is None:
                    cfg = self._by_file[found] = self._override(load(found))
            self._by_folder[key] = cfg
        return cfg

    def for_path(self, path: str | os.PathLike[str]) -> Config:
        """The configuration of a file (or of a folder: its own closest config)."""
        absolute = os.path.abspath(path)
        if os.path.isdir(absolute):
            return self.for_folder(absolute)
        return self.for_folder(os.path.dirname(absolute))

    def configs(self) -> list[Config]:
        """Every configuration resolved so far."""
        out: list[Config] = []
        for cfg in (self.fixed, *self._by_file.values()):
            if cfg is not None and all(cfg is not c for c in out):
                out.append(cfg)
        return out


def _find_above(folder: str) -> Path | None:
    """The closest config of a folder that does not exist (stdin's --stdin-filename)."""
    here = Path(folder)
    while not here.is_dir() and here.parent != here:
        here = here.parent
    return find_config(here)


def settings_for(
    path: str | os.PathLike[str] | None = None, *, config_file: str | None = None, isolated: bool = False
) -> Settings:
    """Convenience for editors and plugins: the settings that apply to ``path``."""
    cfg = load(config_file, start=path if path is not None else None, isolated=isolated)
    return cfg.settings()
