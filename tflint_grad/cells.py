"""Notebook code cells to Python, as IPython makes them before running them.

IPython's own cell transformer (``IPython.core.inputtransformer2.TransformerManager``) is
used when IPython is installed; its module only needs the standard library, so it is
loaded from IPython's folder without importing the ``IPython`` package (a few ms instead
of ~250 ms). Without IPython (or with ``TFLINT_GRAD_IPYTHON=0``) a built-in fallback
gives the same Python for the syntax notebooks use: ``%magic`` and ``!shell`` lines
(also as the only statement of an ``if``/``try`` body, and continued with ``\\``),
``x = %magic`` and ``files = !ls``, ``obj?``/``??obj`` help, cells indented as a whole.

Both paths keep the cell's line count: a magic continued over several lines becomes one
call followed by blank lines, so line N of the Python is line N of the cell. Columns
shift only where a whole-cell indentation (or a ``>>>`` prompt) was removed: ``shifts``
says by how much, per line. Lines that are not the user's Python (magics, shell
commands, help) are listed in ``changed``: no fix edits them.

Cell magics: ``%%time``, ``%%timeit``, ``%%capture``, ``%%prun`` and ``%%debug`` run their
body as Python, so the body is transformed like a cell; the body of any other cell magic
(``%%writefile``, ``%%bash``, ``%%html``...) is not Python and becomes blank lines.

Automagic: a one-line cell such as ``ls ./data`` or ``pip install x`` that is not Python
and starts with the name of one of IPython's default magics runs as that magic (IPython
applies automagic to one-line cells only).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

ENV_SWITCH = "TFLINT_GRAD_IPYTHON"  # "0": use the fallback even when IPython is installed

PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})

# IPython's default line magics and (POSIX) aliases, plus Colab's: automagic candidates.
_AUTOMAGIC_NAMES = """alias alias_magic autoawait autocall automagic bookmark cat cd clear colors conda config
    connect_info cp debug dhist dirs doctest_mode ed edit env gui hist history killbgscripts ldir
    less lf lk ll load load_ext loadpy logoff logon logstart logstate logstop ls lsmagic lx macro
    magic man matplotlib mkdir more mv notebook page pastebin pdb pdef pdoc pfile pinfo pinfo2 pip
    popd pprint precision prun psearch psource pushd pwd pycat pylab qtconsole quickref recall
    rehashx reload_ext rep rerun reset reset_selective rm rmdir run save sc set_env store sx system
    tb time timeit unalias unload_ext uv who who_ls whos xdel xmode tensorflow_version"""
AUTOMAGICS = frozenset(_AUTOMAGIC_NAMES.split())


@dataclass(frozen=True)
class CellCode:
    """A cell as Python: ``text`` has exactly the cell's lines (``source.split("\\n")``)."""

    text: str
    shifts: tuple[int, ...]  # per line (0-based): columns removed from the line's start
    changed: frozenset[int]  # 1-based lines that are not the user's text

    def shift(self, line: int) -> int:
        return self.shifts[line - 1] if 0 < line <= len(self.shifts) else 0


def backend() -> str:
    """``"ipython <path>"`` or ``"fallback"``: which transformer :func:`to_python` uses."""
    mod = _ipython()
    return f"ipython {getattr(mod, '__file__', '')}" if mod is not None else "fallback"


def backend_id() -> str:
    """Identifies the transformer without loading it (the static cache's fingerprint)."""
    if _switched_off():
        return "fallback"
    try:
        spec = importlib.util.find_spec("IPython")
    except (ImportError, ValueError):
        return "fallback"
    if spec is None or not spec.origin:
        return "fallback"
    try:
        return f"ipython {spec.origin} {os.stat(spec.origin).st_mtime_ns}"
    except OSError:
        return f"ipython {spec.origin}"


def _switched_off() -> bool:
    return os.environ.get(ENV_SWITCH, "").strip().lower() in ("0", "false", "no", "off")


def needs_transform(source: str) -> bool:
    """False when IPython would return the cell unchanged (the common case: plain Python).

    True for a line starting with an escape (``!ls``, ``%time``, ``?x``, ``,f a``), a magic
    or shell assignment (``x = !ls``), help (``x?``), leading blank lines or an indented
    first line, a ``>>>``/``In [1]:`` prompt on the first two lines. Kept cheap: it runs
    on every cell.
    """
    if not source:
        return False
    if source[0] in _FIRST_CHARS or _LINE_START.search(source):
        return True
    if "?" in source and _HELP.search(source):
        return True
    if ("!" in source or "%" in source) and _ASSIGN.search(source):
        return True
    if _PROMPT.match(source):
        return True
    nl = source.find("\n")
    return nl >= 0 and bool(_PROMPT.match(source, nl + 1))


_FIRST_CHARS = frozenset("!%?,;/ \t\r\n")
_LINE_START = re.compile(r"\n[ \t]*[!%?,;/]")
_HELP = re.compile(r"\?[ \t]*(?:\r?\n|$)")
_ASSIGN = re.compile(r"=[ \t]*[!%]")
_PROMPT = re.compile(r">>>|In \[|[ \t]*\.\.\.")


def to_python(source: str) -> CellCode:
    lines = [line[:-1] if line.endswith("\r") else line for line in source.split("\n")]
    if not needs_transform(source):
        if source.strip().count("\n") == 0 and source.strip():  # one line: maybe automagic
            first = next(i for i, line in enumerate(lines) if line.strip())
            out = lines[:first] + _automagic(lines[first:], lines[first:])
            return _finish(lines, out) if out != lines else _identity(lines)
        return _identity(lines)
    out = _cell(lines)
    return _finish(lines, out)


def _identity(lines: list[str]) -> CellCode:
    return CellCode("\n".join(lines), (0,) * len(lines), frozenset())


def _finish(lines: list[str], out: list[str]) -> CellCode:
    shifts: list[int] = []
    changed: set[int] = set()
    for i, (orig, new) in enumerate(zip(lines, out), start=1):
        if new == orig:
            shifts.append(0)
        elif new.strip() and orig.endswith(new):  # a whole-cell indentation or a prompt removed
            shifts.append(len(orig) - len(new))
        else:
            shifts.append(0)
            if orig.strip() or new.strip():
                changed.add(i)
    return CellCode("\n".join(out), tuple(shifts), frozenset(changed))


def _cell(lines: list[str]) -> list[str]:
    """The cell's lines as Python (same count). ``lines`` have no line terminators."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return list(lines)
    body = lines[first:]
    head = body[0].lstrip(" \t")
    if head.startswith("%%") and not re.match(r"%%\w+\?", head):
        name = head[2:].split(None, 1)[0] if head[2:].strip() else ""
        if name in PYTHON_CELL_MAGICS:
            return [*lines[:first], "", *_cell(body[1:])]
        return lines[:first] + [""] * len(body)
    out = _transform(body)
    if out is None or len(out) != len(body):
        out = _fallback(body)
    return lines[:first] + _automagic(body, out)


def _automagic(body: list[str], out: list[str]) -> list[str]:
    content = body[:-1] if len(body) > 1 and body[-1] == "" else body
    if len(content) != 1 or out[0].strip() != body[0].strip():
        return out
    line = body[0]
    m = re.match(r"([ \t]*)([A-Za-z_]\w*)(.*)$", line)
    if not m or m.group(2) not in AUTOMAGICS or m.group(3)[:1] in ("=", ","):
        return out
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(line.strip())
        return out  # valid Python: IPython would only run a magic if the name is not a variable
    except (SyntaxError, ValueError):
        pass
    call = f"get_ipython().run_line_magic({m.group(2)!r}, {m.group(3).strip()!r})"
    return [call, *out[1:]]


# -- IPython -------------------------------------------------------------------------------
def _transform(body: list[str]) -> list[str] | None:
    manager = _manager()
    if manager is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            text = manager.transform_cell("\n".join(body) + "\n")
    except Exception:
        return None
    return text.split("\n")[:-1]


def _ipython() -> ModuleType | None:
    return None if _switched_off() else _load_ipython()


@lru_cache(maxsize=1)
def _load_ipython() -> ModuleType | None:
    name = "IPython.core.inputtransformer2"
    if name in sys.modules:
        return sys.modules[name]
    try:
        spec = importlib.util.find_spec("IPython")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = os.path.join(folder, "core", "inputtransformer2.py")
        if not os.path.isfile(path):
            continue
        file_spec = importlib.util.spec_from_file_location("tflint_grad._ipython_inputtransformer2", path)
        if file_spec is None or file_spec.loader is None:
            break
        module = importlib.util.module_from_spec(file_spec)
        try:
            file_spec.loader.exec_module(module)
        except Exception:
            break  # a future version that needs the package: import it properly
        if hasattr(module, "TransformerManager"):
            return module
        break
    try:
        return importlib.import_module(name)  # optional dependency
    except Exception:
        return None


def _manager() -> Any:
    mod = _ipython()
    return _make_manager(mod) if mod is not None else None


@lru_cache(maxsize=2)
def _make_manager(mod: ModuleType) -> Any:
    manager = mod.TransformerManager()
    # Leading blank lines and cell magics are handled before; the rest as IPython does, but a
    # cell whose first line is indented loses that indentation on every line that has it
    # (IPython 8; IPython 9 removes only the indentation common to all lines, so such a cell
    # fails there): the lenient reading, whatever the IPython version, as the fallback does.
    manager.cleanup_transforms = [
        _dedent if t is getattr(mod, "leading_indent", None) else t
        for t in manager.cleanup_transforms
        if t is not mod.leading_empty_lines
    ]
    manager.line_transforms = []
    manager.token_transformers = [_keep_lines(cls) for cls in manager.token_transformers]
    return manager


def _keep_lines(cls: type) -> type:
    """The token transformer, followed by blank lines for the lines it joined."""

    class KeepLines(cls):
        def transform(self, lines: list[str]) -> list[str]:
            new = super().transform(lines)
            missing = len(lines) - len(new)
            if missing > 0:
                at = int(self.start_line) + 1
                new[at:at] = ["\n"] * missing
            return new

    KeepLines.__name__ = cls.__name__
    return KeepLines


# -- fallback ------------------------------------------------------------------------------
_ESCAPES = set("!?%,;/")
_HELP_END = re.compile(r"(%{0,2}(?!\d)[\w*]+(\.(?!\d)[\w*]+|\[-?[0-9]+\])*)(\?\??)$")
_ASSIGN_OPS = set("=!<>+-*/%&|^@:")


def _fallback(body: list[str]) -> list[str]:
    lines = _strip_prompts(_dedent(body))
    out = list(lines)
    depth, quote, cont = 0, None, False
    i = 0
    while i < len(out):
        line = out[i]
        if depth == 0 and quote is None and not cont:
            new = _special(out, i)
            if new is not None:
                end = _continued_end(out, i)
                out[i : end + 1] = [new] + [""] * (end - i)
                i = end + 1
                continue
        depth, quote, cont, _ = _scan(line, depth, quote)
        i += 1
    return out


def _dedent(lines: list[str]) -> list[str]:
    m = re.match(r"[ \t]+", lines[0])
    if not m:
        return list(lines)
    space = m.group(0)
    return [line[len(space) :] if line.startswith(space) else line for line in lines]


_CLASSIC_FIRST = re.compile(r"^>>>( |$)")
_CLASSIC = re.compile(r"^(>>>|\.\.\.)( |$)")
_IPY_PROMPT = re.compile(r"^(((\[nav\]|\[ins\])? )?In \[\d+\]: |\s*\.{3,}: ?)")


def _strip_prompts(lines: list[str]) -> list[str]:
    for first, prompt in ((_CLASSIC_FIRST, _CLASSIC), (_IPY_PROMPT, _IPY_PROMPT)):
        if first.match(lines[0]) or (len(lines) > 1 and prompt.match(lines[1])):
            lines = [prompt.sub("", line, count=1) for line in lines]
    return lines


def _continued_end(lines: list[str], start: int) -> int:
    end = start
    while end < len(lines) - 1 and lines[end].endswith("\\"):
        end += 1
    return end


def _joined(lines: list[str], start: int, col: int) -> str:
    end = _continued_end(lines, start)
    parts = [lines[start][col:], *lines[start + 1 : end + 1]]
    return " ".join([p.rstrip()[:-1] for p in parts[:-1]] + [parts[-1].rstrip()])


def _special(lines: list[str], i: int) -> str | None:
    """The Python for IPython syntax starting logical line ``i``, or None."""
    line = lines[i]
    stripped = line.lstrip(" \t")
    indent = line[: len(line) - len(stripped)]
    if not stripped:
        return None
    _, quote, cont, comment = _scan(line, 0, None)
    if stripped.endswith("?") and quote is None and not cont and comment is None:
        m = _HELP_END.search(stripped)
        if m:
            return indent + _help_call(m.group(1), m.group(3))
    if stripped[0] in _ESCAPES:
        text = _joined(lines, i, len(indent))
        escape = text[:2] if text[:2] in ("!!", "??") else text[:1]
        return indent + _escape_call(escape, text[len(escape) :])
    at = _assignment(line)
    if at is not None:
        rest = line[at + 1 :]
        col = at + 1 + len(rest) - len(rest.lstrip(" \t"))
        rhs_start = line[col : col + 2]
        if rhs_start[:1] == "%" and re.match(r"%[ \t]*[A-Za-z_]", rhs_start + line[col + 2 : col + 3]):
            rhs = _joined(lines, i, col)
            name, _, args = rhs[1:].partition(" ")
            return line[:col] + f"get_ipython().run_line_magic({name!r}, {args!r})"
        if rhs_start[:1] == "!" and not line[:at].strip().startswith("="):
            rhs = _joined(lines, i, col)
            return line[:col] + f"get_ipython().getoutput({rhs[1:]!r})"
    return None


def _help_call(target: str, esc: str) -> str:
    method = "pinfo2" if esc == "??" else "psearch" if "*" in target else "pinfo"
    name, _, arg = f"{method} {target}".partition(" ")
    return f"get_ipython().run_line_magic({name.lstrip('%')!r}, {arg!r})"


def _escape_call(escape: str, content: str) -> str:
    if escape == "!":
        return f"get_ipython().system({content!r})"
    if escape == "!!":
        return f"get_ipython().getoutput({content!r})"
    if escape in ("?", "??"):
        return _help_call(content, escape) if content else "get_ipython().show_usage()"
    name, _, args = content.partition(" ")
    if escape == "%":
        return f"get_ipython().run_line_magic({name!r}, {args!r})"
    if escape == ",":
        return '%s("%s")' % (name, '", "'.join(args.split()))  # noqa: UP031 - IPython's own format
    if escape == ";":
        return f'{name}("{args}")'
    return f"{name}({', '.join(args.split())})"  # "/"


def _assignment(line: str) -> int | None:
    """Index of the line's first plain ``=`` outside brackets and strings."""
    depth = 0
    quote: str | None = None
    i = 0
    n = len(line)
    while i < n:
        c = line[i]
        if quote is not None:
            if c == "\\":
                i += 2
                continue
            if line.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
        elif c == "#":
            return None
        elif c in "\"'":
            quote = c * 3 if line.startswith(c * 3, i) else c
            i += len(quote)
            continue
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(depth - 1, 0)
        elif c == "=" and depth == 0:
            before = line[i - 1] if i else ""
            after = line[i + 1] if i + 1 < n else ""
            if before not in _ASSIGN_OPS and after != "=":
                return i
            if after == "=":
                i += 2
                continue
        i += 1
    return None


def _scan(line: str, depth: int, quote: str | None) -> tuple[int, str | None, bool, int | None]:
    """Bracket depth, open string, backslash continuation and comment column after ``line``."""
    i = 0
    n = len(line)
    while i < n:
        c = line[i]
        if quote is not None:
            if c == "\\":
                i += 2
                continue
            if line.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
            i += 1
            continue
        if c == "#":
            return depth, None, False, i
        if c in "\"'":
            quote = c * 3 if line.startswith(c * 3, i) else c
            i += len(quote)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(depth - 1, 0)
        i += 1
    cont = line.endswith("\\") and (quote is None or len(quote) == 1)
    if quote is not None and len(quote) == 1 and not cont:
        quote = None  # an unterminated one-line string: a syntax error the parser reports
    return depth, quote, cont, None
