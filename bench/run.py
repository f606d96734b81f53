#!/usr/bin/env python3
"""tflint-grad's speed against its peers, measured in ONE invocation: ``python bench/run.py``.

What it measures (every tool as a subprocess; wall time, CPU time = user + system of the
process and of the children it waited for, peak memory = max RSS of the largest process of
the tree, all from ``wait4``):

1. Static linting of two file sets, by tflint-grad (all rules, ``--no-cache``, default
   ``-j``), flake8 (its default checks, without tflint-grad's own flake8 plugin, which is
   installed in this environment and would otherwise run too), pylint (``-j`` the number of
   cores, default checks; its ``-j 0`` reads cgroup v1 ``cpu.shares`` as 1 CPU here), Fixit 2 (default rules, from its own venv ``bench/.venv-fixit``),
   ruff (default rules) and a bare ``libcst.parse_module`` floor (1 and 2 processes):
   a. the Python sources of the installed ``keras``, ``tf_keras`` and ``tensorflow``
      packages (found with ``importlib.util.find_spec``, nothing imported): a fixed sample
      (every Nth file of the sorted list; ``--full``: all of them), copied under
      ``bench/.corpus/packages`` (Fixit skips everything below a ``.gitignore`` that ignores
      it, and pyenv's ignores ``versions/``; the copy has the same bytes);
   b. a corpus of generated TF1/TF2/Keras training scripts (``bench/corpus.py``) under
      ``bench/.corpus/scripts``.
   ``--runs`` runs (default 3); in each run the tools are interleaved (the order rotates
   from run to run) and each tool's ratio to tflint-grad is taken within the run; the
   tables show medians.
2. Single-file latency of each tool on a typical generated training script (what a
   pre-commit user feels).
3. A cached re-run of an unchanged tree (tflint-grad with its cache) against the cold run.
4. ``--confirm``: the time per traced script against a bare ``python -c "import
   tensorflow"``, and the speed-up of ``-j 2`` over ``-j 1`` on ``examples/seeds/*.py``.
5. The zero-internal-error check: tflint-grad over ALL ``.py`` files of the installed
   tensorflow, keras and tf_keras packages (files, findings, TFG000s, internal errors).
6. The warm tracer against cold traces (``bench/warm.py``: ``--confirm`` on the examples with
   findings, the marginal cost of a script, the hostile suite, confirm on save in the editor).

It writes ``bench/RESULTS.md`` (machine, versions, tables, targets met/missed) and prints
it. The tools run with the bytecode cache on (``PYTHONDONTWRITEBYTECODE`` removed,
``PYTHONPYCACHEPREFIX=bench/.pycache``) after one untimed warm-up, as for an installed
tool; the single-file table also shows tflint-grad without a bytecode cache for its own
modules (this dev environment sets ``PYTHONDONTWRITEBYTECODE=1``).

``--quick``: a smaller sample, corpus and fewer repetitions (a few minutes).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORK = os.path.join(HERE, ".corpus")
PYCACHE = os.path.join(HERE, ".pycache")
FIXIT_VENV = os.path.join(HERE, ".venv-fixit")
PY = sys.executable
BIN = os.path.dirname(PY)  # the real interpreter's folder (not a pyenv shim)
PACKAGES = ("keras", "tf_keras", "tensorflow")
TFLINT = "tflint-grad"
try:
    CORES = len(os.sched_getaffinity(0))
except AttributeError:
    CORES = os.cpu_count() or 1

# flake8 as installed, minus tflint-grad's own flake8 plugin (an entry point of this package).
FLAKE8 = """\
import sys
import flake8.plugins.finder as finder
_find = finder._find_importlib_plugins
finder._find_importlib_plugins = lambda: (p for p in _find() if p.package != "tflint-grad")
from flake8.main.cli import main
sys.argv[0] = "flake8"
sys.exit(main())
"""
PARSE_ONE = "import sys, libcst; libcst.parse_module(open(sys.argv[1], encoding='utf-8').read())"

STATIC_TOOLS = ["tflint-grad", "flake8", "pylint", "fixit", "ruff", "parse1", "parse2"]
LABELS = {
    "tflint-grad": "tflint-grad (all rules, --no-cache, default -j)",
    "flake8": "flake8 (default checks, default -j)",
    "pylint": f"pylint -j {CORES} (all cores, default checks)",
    "fixit": "Fixit 2 (default rules)",
    "ruff": "ruff (default rules)",
    "parse1": "libcst.parse_module only, 1 process",
    "parse2": "libcst.parse_module only, 2 processes",
    "startup": "python -c pass (interpreter start-up)",
    "tflint-grad-nopyc": "tflint-grad without bytecode cache for its modules",
}


# -- measuring -------------------------------------------------------------------------------
@dataclass
class Sample:
    wall: float
    cpu: float
    rss_mb: float
    rc: int
    error: str = ""


def measure(
    cmd: list[str], cwd: str, env: dict[str, str], ok_codes=(0, 1), timeout: float = 3600, output: str | None = None
) -> Sample:
    """Run ``cmd``; wall time, CPU (user+sys incl. reaped children) and max RSS via wait4."""
    # closed explicitly after wait4 (a with-block would wrap the whole measurement)
    err = tempfile.TemporaryFile()  # noqa: SIM115
    out = open(output, "wb") if output else subprocess.DEVNULL  # noqa: SIM115
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
    )
    timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        _, status, ru = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - t0
    proc.returncode = rc = os.waitstatus_to_exitcode(status)
    if output:
        out.close()  # type: ignore[union-attr]
    error = ""
    accepted = ok_codes(rc) if callable(ok_codes) else rc in ok_codes
    if not accepted:
        err.seek(0)
        tail = err.read().decode("utf-8", "replace").strip().splitlines()[-5:]
        error = f"exit {rc}: " + " | ".join(tail)
    err.close()
    return Sample(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, rc, error)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_s(v):
    if v is None:
        return "-"
    return f"{v:.2f} s" if v < 100 else f"{v:.0f} s"


def fmt_x(v):
    return "-" if v is None else (f"{v:.2f}×" if v < 10 else f"{v:.1f}×")


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- environment -----------------------------------------------------------------------------
def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def nopyc_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPYCACHEPREFIX", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def exe(name: str) -> str | None:
    path = os.path.join(BIN, name)
    return path if os.path.exists(path) else shutil.which(name)


def setup_fixit(log: list[str]) -> str | None:
    """Fixit in its own venv (its pins conflict with ours). None + a reason in ``log`` if impossible."""
    fixit = os.path.join(FIXIT_VENV, "bin", "fixit")
    if os.path.exists(fixit):
        return fixit
    progress("installing Fixit into bench/.venv-fixit")
    try:
        subprocess.run([PY, "-m", "venv", FIXIT_VENV], check=True, capture_output=True, timeout=300)
        r = subprocess.run(
            [os.path.join(FIXIT_VENV, "bin", "pip"), "install", "-q", "fixit"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if r.returncode != 0:
            log.append(
                "Fixit skipped: `pip install fixit` in bench/.venv-fixit failed: " + r.stderr.strip().splitlines()[-1]
            )
            return None
    except (subprocess.SubprocessError, OSError) as e:
        log.append(f"Fixit skipped: could not create bench/.venv-fixit: {e}")
        return None
    return fixit if os.path.exists(fixit) else None


def version_of(dist: str, python: str = PY) -> str:
    if python == PY:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"
    r = subprocess.run(
        [python, "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"], capture_output=True, text=True
    )
    return r.stdout.strip() or "?"


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "cores": str(cores),
        "ram": ram,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


# -- file sets -------------------------------------------------------------------------------
def package_files() -> tuple[str, list[str]]:
    """(site-packages folder, sorted relative paths of every .py file of the three packages)."""
    roots = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)  # does not import the package
        if spec is None or not spec.submodule_search_locations:
            continue
        roots.extend(spec.submodule_search_locations)
    base = os.path.dirname(roots[0])
    files = []
    for root in roots:
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            files.extend(os.path.relpath(os.path.join(folder, n), base) for n in sorted(names) if n.endswith(".py"))
    return base, sorted(files)


def prepare_packages(base: str, files: list[str], every: int, cache_every: int) -> tuple[list[str], list[str]]:
    """Copy every ``gcd(every, cache_every)``-th file to bench/.corpus/packages; return the
    relative paths of every ``every``-th (the static comparison) and of every
    ``cache_every``-th file (the cache test: a bigger tree)."""
    step = math.gcd(every, cache_every)
    dest = os.path.join(WORK, "packages")
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    for rel in files[::step]:
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(base, rel), target)
    return (
        [os.path.join("packages", rel) for rel in files[::every]],
        [os.path.join("packages", rel) for rel in files[::cache_every]],
    )


def prepare_scripts(count: int) -> list[str]:
    sys.path.insert(0, HERE)
    import corpus  # bench/corpus.py

    folder = os.path.join(WORK, "scripts")
    paths = corpus.generate(folder, count)
    os.remove(os.path.join(folder, "tflint-grad.toml"))  # the corpus root's config is used
    return [os.path.relpath(p, WORK) for p in paths]


def prepare_root() -> None:
    os.makedirs(WORK, exist_ok=True)
    # The root of every tool's configuration search: default settings everywhere. The
    # pyproject.toml also marks the project root for Fixit (it would otherwise apply the
    # repository's .gitignore, which ignores bench/.corpus).
    with open(os.path.join(WORK, "pyproject.toml"), "w") as f:
        f.write("# benchmark corpus root: default settings for every tool\n")
    with open(os.path.join(WORK, "tflint-grad.toml"), "w") as f:
        f.write("# benchmark corpus root: default settings\n")
    with open(os.path.join(HERE, ".gitignore"), "w") as f:
        f.write("# bench/run.py: generated corpus, Fixit's venv, bytecode cache\n.corpus/\n.venv-fixit/\n.pycache/\n")


def total_bytes(files: list[str], cwd: str) -> int:
    return sum(os.path.getsize(os.path.join(cwd, f)) for f in files)


def typical_script(files: list[str]) -> str:
    """The tape-loop script whose line count is closest to the corpus median."""

    def lines(p):
        with open(os.path.join(WORK, p), encoding="utf-8") as f:
            return sum(1 for _ in f)

    counts = {p: lines(p) for p in files}
    mid = statistics.median(counts.values())
    pool = [p for p in files if "tape_loop" in p] or files
    return min(pool, key=lambda p: (abs(counts[p] - mid), p))


# -- the parse floor (run as `python bench/run.py _parse -j N FILES`) ----------------------------
def _parse_one(path: str) -> int:
    import libcst

    try:
        with open(path, encoding="utf-8") as f:
            libcst.parse_module(f.read())
    except Exception:
        return 1
    return 0


def parse_main(argv: list[str]) -> int:
    jobs = int(argv[1]) if argv and argv[0] == "-j" else 1
    files = argv[2:] if argv and argv[0] == "-j" else argv
    files = sorted(files, key=lambda p: -os.path.getsize(p))  # biggest first, like tflint-grad
    import libcst  # noqa: F401

    if jobs <= 1:
        failed = sum(map(_parse_one, files))
    else:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            failed = sum(pool.imap_unordered(_parse_one, files, chunksize=1))
    print(f"{len(files)} files, {failed} not parsed")
    return 0


# -- benchmark sections ----------------------------------------------------------------------
@dataclass
class Tools:
    tflint: str
    flake8: bool
    pylint: str | None
    fixit: str | None
    ruff: str | None

    def static_cmd(self, tool: str, files: list[str]) -> list[str] | None:
        if tool == "tflint-grad":
            return [self.tflint, "check", "--no-cache", "-q", "--exit-zero", *files]
        if tool == "flake8":
            return [PY, "-c", FLAKE8, *files] if self.flake8 else None
        if tool == "pylint":
            # -j 0 would mean "all cores", but pylint reads cgroup v1 cpu.shares=1024 as 1 CPU here
            return [self.pylint, "-j", str(CORES), *files] if self.pylint else None
        if tool == "fixit":
            return [self.fixit, "lint", *files] if self.fixit else None
        if tool == "ruff":
            return [self.ruff, "check", "--no-cache", "--isolated", "--exit-zero", *files] if self.ruff else None
        if tool == "parse1":
            return [PY, os.path.abspath(__file__), "_parse", "-j", "1", *files]
        if tool == "parse2":
            return [PY, os.path.abspath(__file__), "_parse", "-j", "2", *files]
        raise KeyError(tool)

    def single_cmd(self, tool: str, file: str) -> list[str] | None:
        if tool in ("tflint-grad", "tflint-grad-nopyc"):
            return [self.tflint, "check", "-q", "--exit-zero", file]
        if tool == "flake8":
            return [PY, "-c", FLAKE8, file] if self.flake8 else None
        if tool == "pylint":
            return [self.pylint, file] if self.pylint else None
        if tool == "fixit":
            return [self.fixit, "lint", file] if self.fixit else None
        if tool == "ruff":
            return [self.ruff, "check", "--no-cache", "--isolated", "--exit-zero", file] if self.ruff else None
        if tool == "parse1":
            return [PY, "-c", PARSE_ONE, file]
        if tool == "startup":
            return [PY, "-c", "pass"]
        raise KeyError(tool)


def ok_codes(tool: str):
    if tool == "pylint":
        return lambda rc: 0 <= rc < 32  # a bit mask of message categories; 32 = usage error
    return (0, 1)


def static_runs(tools: Tools, sets: dict[str, list[str]], runs: int, env) -> dict:
    """{set: {tool: [Sample per run]}}; the tools interleaved, the order rotating per run."""
    out: dict[str, dict[str, list[Sample]]] = {name: {t: [] for t in STATIC_TOOLS} for name in sets}
    for run in range(runs):
        for name, files in sets.items():
            order = STATIC_TOOLS[run % len(STATIC_TOOLS) :] + STATIC_TOOLS[: run % len(STATIC_TOOLS)]
            for tool in order:
                cmd = tools.static_cmd(tool, files)
                if cmd is None:
                    continue
                s = measure(cmd, WORK, env, ok_codes(tool))
                out[name][tool].append(s)
                progress(
                    f"run {run + 1}/{runs} {name}: {tool:12s} {s.wall:7.2f} s wall {s.cpu:7.2f} s CPU "
                    f"{s.rss_mb:6.0f} MB" + (f"  [{s.error}]" if s.error else "")
                )
    return out


def static_table(name: str, files: list[str], data: dict[str, list[Sample]]) -> tuple[str, dict]:
    base = data["tflint-grad"]
    rows = []
    summary = {}
    for tool in STATIC_TOOLS:
        samples = data[tool]
        if not samples:
            continue
        walls = [s.wall for s in samples]
        cpus = [s.cpu for s in samples]
        ratios = [s.wall / b.wall for s, b in zip(samples, base)]
        cpu_ratios = [s.cpu / b.cpu for s, b in zip(samples, base)]
        errors = sorted({s.error for s in samples if s.error})
        summary[tool] = {
            "wall": median(walls),
            "cpu": median(cpus),
            "ratio": median(ratios),
            "cpu_ratio": median(cpu_ratios),
            "ratios": ratios,
        }
        rng = f" ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else ""
        rows.append(
            f"| {LABELS[tool]} | {fmt_s(median(walls))} | {fmt_s(median(cpus))} | "
            f"{median([s.rss_mb for s in samples]):.0f} MB | {fmt_x(median(ratios))}{rng} | {fmt_x(median(cpu_ratios))} |"
            + (f" {'; '.join(errors)[:120]}" if errors else "")
        )
    head = (
        "| tool | wall (median) | CPU (median) | peak RSS | wall ÷ tflint-grad (per-run median, range) | CPU ÷ tflint-grad |\n"
        "|---|---|---|---|---|---|"
    )
    return head + "\n" + "\n".join(rows), summary


def single_file(tools: Tools, file: str, reps: int, env, env_nopyc) -> tuple[str, dict]:
    names = ["tflint-grad", "flake8", "pylint", "fixit", "ruff", "parse1", "startup", "tflint-grad-nopyc"]
    cache = os.path.join(WORK, ".tflint-grad-cache")
    res: dict[str, list[Sample]] = {n: [] for n in names}
    for rep in range(reps):
        for tool in names[rep % len(names) :] + names[: rep % len(names)]:
            cmd = tools.single_cmd(tool, file)
            if cmd is None:
                continue
            if tool.startswith("tflint-grad"):
                shutil.rmtree(cache, ignore_errors=True)  # a changed file: a cache miss
            res[tool].append(measure(cmd, WORK, env_nopyc if tool == "tflint-grad-nopyc" else env, ok_codes(tool)))
    rows = []
    summary = {}
    for tool in names:
        if not res[tool]:
            continue
        w = median([s.wall for s in res[tool]])
        summary[tool] = w
        label = {
            "parse1": "python -c 'import libcst; libcst.parse_module(...)' (floor)",
            "tflint-grad": "tflint-grad check FILE (cache miss)",
            "tflint-grad-nopyc": "tflint-grad check FILE, no bytecode cache for its own modules",
        }.get(tool, LABELS.get(tool, tool))
        if tool in ("flake8", "ruff"):
            label = tool
        if tool == "pylint":
            label = "pylint FILE"
        if tool == "fixit":
            label = "fixit lint FILE"
        rows.append(
            f"| {label} | {fmt_s(w)} | {fmt_s(median([s.cpu for s in res[tool]]))} | "
            f"{median([s.rss_mb for s in res[tool]]):.0f} MB |"
        )
    table = "| command | wall (median) | CPU | peak RSS |\n|---|---|---|---|\n" + "\n".join(rows)
    return table, summary


def cached_runs(tools: Tools, sets: dict[str, list[str]], runs: int, env) -> tuple[str, dict]:
    cache = os.path.join(WORK, ".tflint-grad-cache")
    rows = []
    summary = {}
    for name, files in sets.items():
        cold, warm, nocache, ratios = [], [], [], []
        for _ in range(runs):
            shutil.rmtree(cache, ignore_errors=True)
            c = measure([tools.tflint, "check", "-q", "--exit-zero", *files], WORK, env)
            w = measure([tools.tflint, "check", "-q", "--exit-zero", *files], WORK, env)
            n = measure([tools.tflint, "check", "--no-cache", "-q", "--exit-zero", *files], WORK, env)
            cold.append(c.wall)
            warm.append(w.wall)
            nocache.append(n.wall)
            ratios.append(w.wall / c.wall)
        shutil.rmtree(cache, ignore_errors=True)
        summary[name] = median(ratios)
        rows.append(
            f"| {name}: {len(files)} files, {total_bytes(files, WORK) / 1e6:.1f} MB | {fmt_s(median(cold))} | {fmt_s(median(warm))} | {fmt_s(median(nocache))} | "
            f"{median(ratios) * 100:.0f} % |"
        )
        progress(f"cache {name}: cold {median(cold):.2f} s, warm {median(warm):.2f} s")
    table = (
        "| tree | cold run (fills the cache) | re-run, unchanged tree | --no-cache | re-run ÷ cold (per-run median) |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows)
    )
    return table, summary


def confirm_runs(tools: Tools, reps: int, env) -> tuple[str, dict]:
    seeds = sorted(glob.glob(os.path.join(REPO, "examples", "seeds", "*.py")))
    cwd = os.path.join(REPO, "examples", "seeds")
    names = [os.path.basename(s) for s in seeds]
    tf_import: list[float] = []
    per: dict[str, list[float]] = {n: [] for n in names}
    j1: list[float] = []
    j2: list[float] = []
    errors = set()
    for rep in range(reps):
        for name in names:
            tf_import.append(measure([PY, "-c", "import tensorflow"], cwd, env, timeout=600).wall)
            s = measure(
                [tools.tflint, "check", "--confirm-all", "--no-cache", "-j", "1", "-q", "--exit-zero", name],
                cwd,
                env,
                timeout=900,
            )
            per[name].append(s.wall)
            if s.error:
                errors.add(f"{name}: {s.error}")
        for jobs, bucket in (("1", j1), ("2", j2)) if rep % 2 == 0 else (("2", j2), ("1", j1)):
            s = measure(
                [tools.tflint, "check", "--confirm-all", "--no-cache", "-j", jobs, "-q", "--exit-zero", *names],
                cwd,
                env,
                timeout=1800,
            )
            bucket.append(s.wall)
            if s.error:
                errors.add(f"-j {jobs}: {s.error}")
        progress(
            f"confirm rep {rep + 1}/{reps}: import tensorflow {tf_import[-1]:.2f} s, -j1 {j1[-1]:.2f} s, -j2 {j2[-1]:.2f} s"
        )
    imp = median(tf_import)
    rows = [f'| `python -c "import tensorflow"` | {fmt_s(imp)} | - | - |']
    worst = 0.0
    for name in names:
        m = median(per[name])
        worst = max(worst, m - imp)
        rows.append(
            f"| `tflint-grad check --confirm-all --no-cache -j 1 {name}` | {fmt_s(m)} | {m - imp:+.2f} s | "
            f"{'yes' if m < imp + 2 else 'no'} |"
        )
    table = (
        "| command | wall (median) | over the TF import | under TF import + 2 s? |\n|---|---|---|---|\n"
        + "\n".join(rows)
    )
    table += (
        f"\n\nThe bare import was measured right before each traced script ({len(tf_import)} samples, "
        f"{min(tf_import):.2f}–{max(tf_import):.2f} s): the spread of TensorFlow's import on this shared machine is as "
        "large as the tracing overhead. The traced child imports TensorFlow in the sandbox's environment "
        '(`CUDA_VISIBLE_DEVICES=""`, thread limits), so it can come out below the bare import.'
    )
    speedup = [a / b for a, b in zip(j1, j2)]
    table += (
        f"\n\n`--confirm-all` traces every script (`--confirm` alone traces only the scripts with static "
        f"findings). All {len(names)} seeds in one invocation: `-j 1` {fmt_s(median(j1))}, `-j 2` {fmt_s(median(j2))}: "
        f"speed-up of `-j 2` over `-j 1` **{median(speedup):.2f}×** (per-rep median; {len(j1)} reps)."
    )
    if errors:
        table += "\n\nErrors: " + "; ".join(sorted(errors))
    return table, {
        "import": imp,
        "worst_over": worst,
        "speedup": median(speedup),
        "per": {n: median(v) for n, v in per.items()},
    }


def zero_errors(tools: Tools, base: str, files: list[str], env) -> tuple[str, dict]:
    out = os.path.join(WORK, "all-packages.json")
    s = measure(
        [tools.tflint, "check", "--no-cache", "--format", "json", "--exit-zero", "-q", "-o", out, *files],
        base,
        env,
        ok_codes=(0, 1, 2),
        timeout=7200,
    )
    findings: list = []
    files_checked = "?"
    try:
        with open(out, encoding="utf-8") as f:
            data = json.load(f)
        findings = data.get("findings", [])
        files_checked = data.get("files_checked", "?")
    except (OSError, ValueError, AttributeError):
        pass
    # internal errors are printed on stderr; measure() keeps only the tail, so re-read them
    internal = []
    if s.rc == 2:
        r = subprocess.run(
            [tools.tflint, "check", "--no-cache", "-q", "--exit-zero", "-o", os.devnull, *files],
            cwd=base,
            env=env,
            capture_output=True,
            text=True,
        )
        internal = [line for line in r.stderr.splitlines() if "internal error" in line]
    codes: dict[str, int] = {}
    for f in findings:
        code = f.get("code") if isinstance(f, dict) else None
        codes[code] = codes.get(code, 0) + 1
    tfg000 = codes.get("TFG000", 0)
    lines = [
        f"- files: **{len(files)}**, {files_checked} checked (every `.py` of {', '.join(PACKAGES)} in `{base}`, {total_bytes(files, base) / 1e6:.1f} MB)",
        f"- findings: **{len(findings)}** ({', '.join(f'{c} {n}' for c, n in sorted(codes.items())) or 'none'})",
        f"- TFG000 (unanalyzable file): **{tfg000}**",
        f"- internal errors: **{len(internal)}**" + ("" if internal else " (exit code " + str(s.rc) + ")"),
        f"- time: {fmt_s(s.wall)} wall, {fmt_s(s.cpu)} CPU, peak RSS {s.rss_mb:.0f} MB (one run, default -j)",
    ]
    for line in internal[:50]:
        lines.append(f"  - `{line}`")
    return "\n".join(lines), {
        "internal": len(internal),
        "files": len(files),
        "findings": len(findings),
        "tfg000": tfg000,
        "wall": s.wall,
    }


# -- main ------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_parse":
        return parse_main(argv[1:])
    ap = argparse.ArgumentParser(description="tflint-grad's speed against its peers (writes bench/RESULTS.md)")
    ap.add_argument("--runs", type=int, default=3, help="runs of the static comparison and the cache test (default 3)")
    ap.add_argument("--quick", action="store_true", help="small sample and corpus, fewer repetitions (a few minutes)")
    ap.add_argument("--full", action="store_true", help="compare on ALL package files (pylint/Fixit take a long time)")
    ap.add_argument("--every", type=int, help="package sample: every Nth file (default 32; --quick 128)")
    ap.add_argument("--scripts", type=int, help="generated training scripts (default 200; --quick 80)")
    ap.add_argument("--reps", type=int, help="single-file repetitions (default 8; --quick 4)")
    ap.add_argument("--confirm-reps", type=int, help="--confirm repetitions (default 2; --quick 1)")
    ap.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["pylint", "fixit", "static", "single", "cache", "confirm", "zero-errors", "warm"],
        help="leave a part out",
    )
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    args = ap.parse_args(argv)
    every = 1 if args.full else (args.every or (128 if args.quick else 32))
    n_scripts = args.scripts or (80 if args.quick else 200)
    reps = args.reps or (4 if args.quick else 8)
    confirm_reps = args.confirm_reps or (1 if args.quick else 2)
    started = time.perf_counter()
    load_before = load_average()
    notes: list[str] = []

    tflint = exe(TFLINT)
    if tflint is None:
        print("tflint-grad is not installed (pip install -e .)", file=sys.stderr)
        return 2
    fixit = None if "fixit" in args.skip else setup_fixit(notes)
    tools = Tools(
        tflint=tflint,
        flake8=importlib.util.find_spec("flake8") is not None,
        pylint=None if "pylint" in args.skip else exe("pylint"),
        fixit=fixit,
        ruff=exe("ruff"),
    )
    for name, present in (
        ("flake8", tools.flake8),
        ("pylint", tools.pylint or "pylint" in args.skip),
        ("ruff", tools.ruff),
    ):
        if not present:
            notes.append(f"{name} is not installed: left out")
    env = tool_env()
    env_nopyc = nopyc_env()

    progress("preparing the file sets")
    prepare_root()
    base, all_files = package_files()
    cache_every = 1 if args.full else (16 if args.quick else 8)
    pkg, pkg_cache = prepare_packages(base, all_files, every, cache_every)
    scripts = prepare_scripts(n_scripts)
    sets = {"packages": pkg, "scripts": scripts}
    cache_sets = {
        f"packages (1 file in {cache_every})" if cache_every > 1 else "packages (all files)": pkg_cache,
        "scripts": scripts,
    }
    set_titles = {
        "packages": (
            f"keras + tf_keras + tensorflow sources: {'all' if every == 1 else f'1 in {every} of'} the {len(all_files)} "
            f"`.py` files ({len(pkg)} files, {total_bytes(pkg, WORK) / 1e6:.1f} MB)"
        ),
        "scripts": (
            f"generated TF training scripts ({len(scripts)} files, {total_bytes(scripts, WORK) / 1e6:.2f} MB, "
            f"`bench/corpus.py`)"
        ),
    }
    typical = typical_script(scripts)

    progress("warm-up (bytecode cache, page cache)")
    for tool in STATIC_TOOLS:
        cmd = tools.static_cmd(tool, pkg[:8] + scripts[:8])
        if cmd is not None:
            s = measure(cmd, WORK, env, ok_codes(tool))
            if s.error:
                notes.append(f"warm-up of {tool}: {s.error}")
    if "confirm" not in args.skip:
        measure([PY, "-c", "import tensorflow"], WORK, env, timeout=900)

    sections: dict[str, str] = {}
    summary: dict[str, dict] = {}
    if "static" not in args.skip:
        progress(f"static comparison: {args.runs} run(s)")
        data = static_runs(tools, sets, args.runs, env)
        for name in sets:
            sections[f"static-{name}"], summary[f"static-{name}"] = static_table(name, sets[name], data[name])
    if "single" not in args.skip:
        progress(f"single-file latency: {reps} reps on {typical}")
        sections["single"], summary["single"] = single_file(tools, typical, reps, env, env_nopyc)
    if "cache" not in args.skip:
        progress("cached re-run")
        sections["cache"], summary["cache"] = cached_runs(tools, cache_sets, args.runs, env)
    if "confirm" not in args.skip:
        progress(f"--confirm: {confirm_reps} rep(s)")
        sections["confirm"], summary["confirm"] = confirm_runs(tools, confirm_reps, env)
    if "zero-errors" not in args.skip:
        progress(f"zero-internal-error check over all {len(all_files)} files")
        sections["zero"], summary["zero"] = zero_errors(tools, base, all_files, env)
    if "warm" not in args.skip:
        progress("warm tracer against cold traces (bench/warm.py)")
        import warm as warm_bench  # bench/warm.py

        sections["warm"] = warm_bench.measure_all(confirm_reps + 1, hostile=not args.quick)

    elapsed = time.perf_counter() - started
    report = render(
        args, tools, sets, set_titles, sections, summary, notes, typical, elapsed, load_before, load_average()
    )
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(report)
    print(report)
    progress(f"wrote {os.path.relpath(args.out)} in {elapsed / 60:.1f} min")
    return 0


def targets(summary: dict) -> list[tuple[str, str, str]]:
    out = []
    for name in ("packages", "scripts"):
        s = summary.get(f"static-{name}")
        if not s or "tflint-grad" not in s:
            continue
        if "flake8" in s:
            r = s["flake8"]["ratio"]
            out.append(
                (
                    f"static tflint-grad at least as fast as flake8 ({name})",
                    f"flake8 takes {fmt_x(r)} tflint-grad's wall time",
                    "met" if r >= 1 else "missed",
                )
            )
        if "fixit" in s:
            r = s["fixit"]["ratio"]
            out.append(
                (
                    f"at least 5× faster than Fixit ({name})",
                    f"Fixit takes {fmt_x(r)} tflint-grad's wall time",
                    "met" if r >= 5 else "missed",
                )
            )
    if "single" in summary and "tflint-grad" in summary["single"]:
        w = summary["single"]["tflint-grad"]
        out.append(("single-file run under 0.4 s", f"{w:.2f} s", "met" if w < 0.4 else "missed"))
    if "cache" in summary:
        for name, r in summary["cache"].items():
            out.append(
                (
                    f"cached re-run under 20 % of the cold run ({name})",
                    f"{r * 100:.0f} %",
                    "met" if r < 0.2 else "missed",
                )
            )
    if "confirm" in summary:
        c = summary["confirm"]
        out.append(
            (
                "`--confirm` under TF import + 2 s per script",
                f"worst script: TF import + {c['worst_over']:.2f} s",
                "met" if c["worst_over"] < 2 else "missed",
            )
        )
    if "zero" in summary:
        z = summary["zero"]
        out.append(
            (
                "zero internal errors on the installed TF/Keras sources",
                f"{z['internal']} in {z['files']} files",
                "met" if z["internal"] == 0 else "missed",
            )
        )
    return out


def render(
    args, tools: Tools, sets, set_titles, sections, summary, notes, typical, elapsed, load_before, load_after
) -> str:
    m = machine()
    versions = [
        ("tflint-grad", version_of("tflint-grad")),
        ("libcst", version_of("libcst")),
        ("flake8", version_of("flake8")),
        ("pycodestyle", version_of("pycodestyle")),
        ("pyflakes", version_of("pyflakes")),
        ("pylint", version_of("pylint")),
        ("astroid", version_of("astroid")),
        ("ruff", version_of("ruff")),
    ]
    if tools.fixit:
        py = os.path.join(FIXIT_VENV, "bin", "python")
        versions.append(("Fixit", version_of("fixit", py) + f" (own venv, libcst {version_of('libcst', py)})"))
    versions += [
        ("tensorflow-cpu", version_of("tensorflow-cpu")),
        ("keras", version_of("keras")),
        ("tf_keras", version_of("tf-keras")),
    ]
    cmd = "python bench/run.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    parts = [
        "# tflint-grad speed against its peers",
        "",
        f"Generated by `{cmd}` on {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} in {elapsed / 60:.1f} min. "
        "Regenerate with the same command; `--quick` for a few-minute check.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores available; RAM {m['ram']}; {m['os']}; Python {m['python']}",
        f"- load average (1/5/15 min) before: {load_before}; after: {load_after} (the cores are shared with other "
        "engineers' jobs: absolute times are noisy, the run-by-run ratios much less)",
        "- versions: " + ", ".join(f"{n} {v}" for n, v in versions),
        "- every tool runs as a subprocess with the bytecode cache on, after one untimed warm-up; times from `wait4`: "
        "CPU = user + system of the tool and the children it waited for; peak RSS = the largest single process",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    for t, v, ok in targets(summary):
        parts.append(f"| {t} | {v} | **{ok}** |")
    facts = []
    for name in sets:
        st = summary.get(f"static-{name}", {})
        if {"tflint-grad", "flake8", "parse1", "parse2"} <= set(st):
            facts.append(
                f"- {name}: the bare libcst parse of the same files takes {st['parse1']['cpu'] / st['flake8']['cpu']:.2f}× "
                f"flake8's CPU time (1 process: {fmt_s(st['parse1']['wall'])}, 2 processes: {fmt_s(st['parse2']['wall'])}); "
                f"tflint-grad (parse + one walk + all rules + start-up) takes {st['tflint-grad']['cpu'] / st['parse1']['cpu']:.2f}× "
                f"the parse's CPU and {st['tflint-grad']['wall'] / st['parse2']['wall']:.2f}× the 2-process parse's wall time."
            )
    if facts:
        parts += [
            "",
            "What bounds the static run: a libcst-based linter cannot be faster than libcst's parser.",
            "",
        ] + facts
    for name in sets:
        if f"static-{name}" in sections:
            parts += ["", f"## Static run: {set_titles[name]}", "", sections[f"static-{name}"], ""]
    parts += [
        "Same files for every tool, passed explicitly, run from `bench/.corpus` (default configuration for every tool). "
        f"{args.runs} run(s); within a run the tools run one after the other, in an order that rotates from run to run; "
        "each ratio is taken within one run, then the median over the runs is shown. flake8 runs without "
        "tflint-grad's flake8 plugin (installed here; `flake8` alone would also run all of tflint-grad's rules)."
    ]
    if "single" in sections:
        parts += [
            "",
            f"## Single-file latency: `{typical}` (a typical generated training script)",
            "",
            sections["single"],
            "",
            f"Median of {args.reps or (4 if args.quick else 8)} repetitions, interleaved. tflint-grad runs with its cache on "
            "but emptied before each repetition (a changed file, as under pre-commit).",
        ]
    if "cache" in sections:
        parts += ["", "## Cached re-run of an unchanged tree", "", sections["cache"], ""]
    if "confirm" in sections:
        parts += [
            "",
            "## `--confirm` (`examples/seeds/*.py`, traced under TensorFlow, trace cache off)",
            "",
            sections["confirm"],
            "",
        ]
    if "zero" in sections:
        parts += ["", "## Zero-internal-error check over ALL installed TF/Keras sources", "", sections["zero"], ""]
    if "warm" in sections:
        parts += ["", sections["warm"], ""]
    if notes:
        parts += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    parts.append("")
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
