#!/usr/bin/env python3
"""The warm tracer against cold traces, side by side in ONE run: ``python bench/warm.py``.

1. ``tflint-grad check --confirm --no-cache`` on the example scripts with findings, ``-j 2`` and
   ``-j 1``, warm (the default) and cold (``TFLINT_GRAD_NO_WARM=1``), interleaved, ``--reps``
   times; the verdicts and evidence of every warm run are compared with the cold runs' (JSON);
2. the marginal cost of one more script (Python API, ``-j 1``, trace cache off): the wall time of
   ``confirm()`` for the script minus the script's own run under the tracer (from the harness's
   "ready" to its exit: the script's steps, the probes' finalisation, the result file), warm from
   one worker and cold;
3. the hostile suite, warm and cold: ``pytest tests/test_tracer_sandbox.py -k hostile`` (every
   hostile script contained, nothing outside the trace folders changed, nothing left running);
4. the editor: ``tflint-grad server`` with ``confirm`` on, a seed script opened, the time from
   its first save to the diagnostics carrying verdicts (the worker was started when ``confirm``
   turned on), then from a second save after an edit; the same with the warm path off.

Writes its section into ``bench/RESULTS.md`` between ``<!-- warm:begin -->`` and
``<!-- warm:end -->`` (``bench/run.py`` runs it too) and prints it. ``--quick``: 1 rep, no
hostile suite.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BEGIN, END = "<!-- warm:begin -->", "<!-- warm:end -->"
TARGET_J2 = 8.0
TARGET_MARGINAL = 1.0
TARGET_EDITOR = 2.0


def progress(msg: str) -> None:
    print(f"[bench/warm] {msg}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def tflint() -> str:
    exe = shutil.which("tflint-grad") or os.path.join(os.path.dirname(sys.executable), "tflint-grad")
    if not os.path.exists(exe):
        raise SystemExit("tflint-grad is not installed (pip install -e .)")
    return exe


def env_for(warm: bool, cache_dir: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TFLINT_GRAD_NO_WARM", None)
    if not warm:
        env["TFLINT_GRAD_NO_WARM"] = "1"
    env["TFLINT_GRAD_CACHE_DIR"] = cache_dir or tempfile.mkdtemp(prefix="tflint-grad-bench-cache-")
    return env


def example_files() -> list[str]:
    sys.path.insert(0, REPO)
    from tflint_grad.engine import lint_bytes

    out = []
    for path in sorted(glob.glob(os.path.join(REPO, "examples", "**", "*.py"), recursive=True)):
        with open(path, "rb") as fh:
            if lint_bytes(fh.read(), path).findings:
                out.append(os.path.relpath(path, REPO))
    return out


# -- 1. the CLI ------------------------------------------------------------------------------------


def cli_run(files: list[str], jobs: int, warm: bool) -> tuple[float, float, dict]:
    """Wall time, CPU time (user + system of the run and every process it waited for) and verdicts."""
    cmd = [tflint(), "check", "--confirm", "--no-cache", "-j", str(jobs), "--exit-zero", "--format", "json", *files]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env_for(warm), stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}\n{stderr[-2000:]}")
    report = json.loads(stdout)
    verdicts = {(f["path"], f["line"], f["code"]): (f["verdict"], f["evidence"]) for f in report["findings"]}
    return wall, usage.ru_utime + usage.ru_stime, verdicts


def cli_section(files: list[str], reps: int) -> tuple[str, dict]:
    walls: dict[tuple[str, int], list[float]] = {}
    cpus: dict[tuple[str, int], list[float]] = {}
    verdicts: dict[str, list[dict]] = {"warm": [], "cold": []}
    order = [("warm", 2), ("cold", 2), ("warm", 1), ("cold", 1)]
    for rep in range(reps):
        for how, jobs in order if rep % 2 == 0 else list(reversed(order)):
            wall, cpu, v = cli_run(files, jobs, how == "warm")
            walls.setdefault((how, jobs), []).append(wall)
            cpus.setdefault((how, jobs), []).append(cpu)
            verdicts[how].append(v)
            progress(f"CLI rep {rep + 1}/{reps}: {how} -j {jobs}: {wall:.2f} s (CPU {cpu:.1f} s)")
    reference = verdicts["cold"][0]
    identical = all(v == reference for runs in verdicts.values() for v in runs)
    differences = sorted(
        f"{k[0]}:{k[1]} {k[2]}: warm {w.get(k)} / cold {reference.get(k)}"
        for w in verdicts["warm"]
        for k in set(w) | set(reference)
        if w.get(k) != reference.get(k)
    )
    counts: dict[str, int] = {}
    for verdict, _ in reference.values():
        counts[verdict] = counts.get(verdict, 0) + 1
    rows = [
        "| command | warm: wall | cold: wall | cold ÷ warm | warm: CPU | cold: CPU |",
        "|---|---|---|---|---|---|",
    ]
    for jobs in (2, 1):
        w, c = median(walls[("warm", jobs)]), median(walls[("cold", jobs)])
        wc, cc = median(cpus[("warm", jobs)]), median(cpus[("cold", jobs)])
        rows.append(
            f"| `tflint-grad check --confirm --no-cache -j {jobs}` on the {len(files)} examples | "
            f"**{w:.2f} s** | {c:.2f} s | {c / w:.1f}× | {wc:.1f} s | {cc:.1f} s |"
        )
    text = "\n".join(rows)
    text += (
        f"\n\n{reps} rep(s), warm and cold interleaved; each run a fresh `tflint-grad` process (the warm one starts "
        "its worker and pays one TensorFlow import). Medians. CPU = user + system time of the run and of every "
        "process it waited for (`wait4`; the worker's traces included): the work done, which the load of the "
        "shared cores does not inflate the way it inflates wall time; on 2 idle cores a run takes at least "
        f"half its CPU time. Files: {', '.join(f'`{f}`' for f in files)}. "
        f"Verdicts ({len(reference)} findings: "
        + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        + f") and evidence: **{'identical' if identical else 'DIFFERENT'}** in all {sum(map(len, verdicts.values()))} runs."
    )
    if differences:
        text += "\n\nDifferences:\n" + "\n".join(f"- {d}" for d in differences[:20])
    return text, {
        "j2_warm": median(walls[("warm", 2)]),
        "j2_warm_cpu": median(cpus[("warm", 2)]),
        "j2_cold_cpu": median(cpus[("cold", 2)]),
        "j2_cold": median(walls[("cold", 2)]),
        "j1_warm": median(walls[("warm", 1)]),
        "j1_cold": median(walls[("cold", 1)]),
        "identical": identical,
    }


# -- 2. the marginal cost of a script ---------------------------------------------------------------


def marginal_section(files: list[str]) -> tuple[str, dict]:
    sys.path.insert(0, REPO)
    from tflint_grad import verdicts
    from tflint_grad.engine import lint_bytes
    from tflint_grad.settings import TraceSettings
    from tflint_grad.tracer import sandbox, warm

    captured: list = []

    def capture(fn):
        def wrapped(*args, **kwargs):
            outcome = fn(*args, **kwargs)
            if outcome is not None:
                captured.append(outcome)
            return outcome

        return wrapped

    cold_run = sandbox.run
    sandbox.run = capture(cold_run)
    pool = warm.WarmPool(sys.executable, threads=os.cpu_count() or 1)
    t0 = time.monotonic()
    if not pool.start():
        raise SystemExit(f"the warm tracer is unavailable: {pool.unavailable}")
    start = time.monotonic() - t0
    pool.expect(legacy=True)  # as the runner does when TF1 scripts are among those to trace
    pool.run = capture(pool.run)  # type: ignore[method-assign]
    first_legacy: int | None = None
    rows = []
    over: dict[str, list[float]] = {"warm": [], "cold": []}
    try:
        for path in files:
            line = [f"`{path}`"]
            for how in ("warm", "cold"):
                with open(os.path.join(REPO, path), "rb") as fh:
                    source = fh.read()
                result = lint_bytes(source, os.path.join(REPO, path))
                options = TraceSettings(jobs=1, cache=False, warm=how == "warm")
                captured.clear()
                t0 = time.monotonic()
                verdicts.confirm([result], options, pool=pool if how == "warm" else None)
                wall = time.monotonic() - t0
                own = sum(o.run_duration for o in captured)
                over[how].append(wall - own)
                if (
                    how == "warm"
                    and first_legacy is None
                    and sandbox.detect_tf_mode(source.decode("utf-8", "replace")).legacy_keras
                ):
                    first_legacy = len(over[how]) - 1
                line += [
                    f"{own:.2f} s",
                    f"{wall:.2f} s",
                    f"**{wall - own:.2f} s**" if how == "warm" else f"{wall - own:.2f} s",
                ]
            rows.append("| " + " | ".join(line) + " |")
            progress(f"marginal: {path}: warm +{over['warm'][-1]:.2f} s, cold +{over['cold'][-1]:.2f} s")
    finally:
        sandbox.run = cold_run
        pool.close()
    head = (
        "| script | warm: own run | warm: wall | warm: cost beyond its run | cold: own run | cold: wall | "
        "cold: cost beyond its run |\n|---|---|---|---|---|---|---|"
    )
    text = head + "\n" + "\n".join(rows)
    text += (
        f"\n\nOne worker, started once before the loop ({start:.1f} s: `import tensorflow` and the tracer's modules; "
        f"the worker reported {pool.info.get('import_s', '?')} s for its import). Own run = from the harness's "
        "\"ready\" to its exit (the script's steps, the probes' finalisation, the result file); wall = the whole "
        "`confirm()` of that script (trace folder, fork or Python start, limits, Landlock, shims and probes, the "
        "watchdog, the verdicts). Median cost beyond the own run: warm "
        f"**{median(over['warm']):.2f} s** (max {max(over['warm']):.2f} s), cold {median(over['cold']):.2f} s."
    )
    others = [v for i, v in enumerate(over["warm"]) if i != first_legacy]
    if first_legacy is not None:
        text += (
            f" The first TF1 script ({over['warm'][first_legacy]:.2f} s) also waits for the legacy-Keras worker "
            "(forked from the worker once, it imports tf_keras); the others cost at most "
            f"{max(others):.2f} s."
        )
    return text, {
        "warm": median(over["warm"]),
        "warm_max": max(over["warm"]),
        "warm_max_steady": max(others),
        "cold": median(over["cold"]),
    }


# -- 3. the hostile suite --------------------------------------------------------------------------


def hostile_section() -> tuple[str, dict]:
    out: dict[str, tuple[bool, float, str]] = {}
    for how in ("warm", "cold"):
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_tracer_sandbox.py"]
        cmd += ["-k", f"hostile and {how}", "-s"]
        t0 = time.monotonic()
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3600, check=False)
        wall = time.monotonic() - t0
        traced = next((line.strip() for line in r.stdout.splitlines() if "hostile scripts traced" in line), "")
        out[how] = (r.returncode == 0, wall, traced or sandbox_last(r.stdout))
        progress(f"hostile suite {how}: {'passed' if r.returncode == 0 else 'FAILED'} in {wall:.0f} s")
    rows = ["| hostile suite | result | pytest wall | |", "|---|---|---|---|"]
    for how, (ok, wall, line) in out.items():
        rows.append(f"| {how} | **{'contained (passed)' if ok else 'FAILED'}** | {wall:.0f} s | {line} |")
    text = "\n".join(rows) + (
        "\n\n`pytest tests/test_tracer_sandbox.py -k hostile`: every script of `tests/fixtures/hostile` in one "
        "`confirm()` call (`-j 2`), the same exact expectations warm and cold (status, reason, verdict and evidence "
        "of each; nothing changed outside the trace folders; no process left; the warm run also checks that every "
        "script was traced by the worker)."
    )
    return text, {how: ok for how, (ok, _, _) in out.items()}


def sandbox_last(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


# -- 4. the editor ---------------------------------------------------------------------------------


class Lsp:
    """A minimal LSP client over stdio (what an editor sends)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [tflint(), "server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        self.inbox: queue.Queue = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        while True:
            length = None
            while True:
                line = stream.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            message = json.loads(stream.read(length or 0))
            if "id" in message and "method" in message:  # a request of the server: accept it
                self._write({"jsonrpc": "2.0", "id": message["id"], "result": None})
            else:
                self.inbox.put((time.monotonic(), message))

    def _write(self, message: dict) -> None:
        data = json.dumps(message).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
        self.proc.stdin.flush()

    def notify(self, method: str, params: dict) -> None:
        self._write({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: dict) -> int:
        self.next_id += 1
        self._write({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        return self.next_id

    def wait(self, match, timeout: float = 600.0) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit("the language server did not answer in time")
            at, message = self.inbox.get(timeout=left)
            if match(message):
                return at, message

    def close(self) -> None:
        try:
            self.request("shutdown", {})
            self.notify("exit", {})
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()


def _log(needle: str):
    return lambda m: m.get("method") == "window/logMessage" and needle in m["params"]["message"]


def _verdicts_for(uri: str, version: int):
    def match(m: dict) -> bool:
        if m.get("method") != "textDocument/publishDiagnostics" or m["params"]["uri"] != uri:
            return False
        if m["params"].get("version") != version:
            return False
        return any("[confirmed" in d["message"] or "[refuted" in d["message"] for d in m["params"]["diagnostics"])

    return match


def editor_once(warm: bool, script: str) -> dict[str, float]:
    folder = tempfile.mkdtemp(prefix="tflint-grad-bench-editor-")
    try:
        path = os.path.join(folder, "train.py")
        with open(script, encoding="utf-8") as fh:
            text = fh.read()
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        uri = "file://" + path
        t_start = time.monotonic()
        lsp = Lsp(env_for(warm, os.path.join(folder, ".cache")))
        try:
            rid = lsp.request(
                "initialize",
                {
                    "processId": os.getpid(),
                    "rootUri": None,
                    "capabilities": {},
                    "initializationOptions": {"confirm": True},
                },
            )
            lsp.wait(lambda m: m.get("id") == rid)
            lsp.notify("initialized", {})
            doc = {"uri": uri, "languageId": "python", "version": 1, "text": text}
            lsp.notify("textDocument/didOpen", {"textDocument": doc})
            ready = float("nan")
            if warm:
                at, _ = lsp.wait(_log("warm tracer ready"))
                ready = at - t_start
            t_save = time.monotonic()
            lsp.notify("textDocument/didSave", {"textDocument": {"uri": uri}})
            at, _ = lsp.wait(_verdicts_for(uri, 1))
            first = at - t_save
            edited = text + "\n# edited\n"
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(edited)
            lsp.notify(
                "textDocument/didChange",
                {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": edited}]},
            )
            time.sleep(0.5)
            t_save = time.monotonic()
            lsp.notify("textDocument/didSave", {"textDocument": {"uri": uri}})
            at, _ = lsp.wait(_verdicts_for(uri, 2))
            second = at - t_save
        finally:
            lsp.close()
        return {"ready": ready, "first": first, "second": second}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def editor_section(reps: int) -> tuple[str, dict]:
    script = os.path.join(REPO, "examples", "seeds", "004_bn_gradient_tape.py")
    runs: dict[str, list[dict[str, float]]] = {"warm": [], "cold": []}
    for rep in range(reps):
        for how in ("warm", "cold") if rep % 2 == 0 else ("cold", "warm"):
            r = editor_once(how == "warm", script)
            runs[how].append(r)
            progress(f"editor rep {rep + 1}/{reps} {how}: first save {r['first']:.2f} s, second {r['second']:.2f} s")

    def m(how: str, key: str) -> float:
        return median([r[key] for r in runs[how]])

    rows = [
        "| language server, `confirm` on | worker ready after start | first save → verdicts | save after an edit → verdicts |",
        "|---|---|---|---|",
        f"| warm (default) | {m('warm', 'ready'):.1f} s | **{m('warm', 'first'):.2f} s** | {m('warm', 'second'):.2f} s |",
        f"| cold (`TFLINT_GRAD_NO_WARM=1`) | – | {m('cold', 'first'):.2f} s | {m('cold', 'second'):.2f} s |",
    ]
    text = "\n".join(rows) + (
        f"\n\n`tflint-grad server` driven over stdio by a minimal client (`bench/warm.py`), medians of {reps} rep(s): "
        "`initializationOptions: {confirm: true}`, `didOpen` of `examples/seeds/004_bn_gradient_tape.py` (a copy), "
        "then `didSave`; the time runs from the save notification to the `publishDiagnostics` whose messages carry "
        "the verdicts (the static re-lint comes before it). The worker starts when `confirm` turns on (the warm row "
        'saves once it is ready: "worker ready" is the time from the server\'s start); the second save follows an '
        "edit (new bytes: no cached trace)."
    )
    return text, {"first": m("warm", "first"), "second": m("warm", "second"), "cold_first": m("cold", "first")}


# -- report ----------------------------------------------------------------------------------------


def targets(s: dict) -> str:
    rows = ["| target | measured | |", "|---|---|---|"]

    def row(what: str, value: str, ok: bool) -> None:
        rows.append(f"| {what} | {value} | **{'met' if ok else 'missed'}** |")

    if "cli" in s:
        c = s["cli"]
        row(
            f"`--confirm` on the examples with findings, `-j 2`, at most {TARGET_J2:g} s",
            f"{c['j2_warm']:.2f} s at load {LOAD_AT_START}, CPU {c['j2_warm_cpu']:.1f} s (cold: {c['j2_cold']:.2f} s, "
            f"CPU {c['j2_cold_cpu']:.1f} s)",
            c["j2_warm"] <= TARGET_J2,
        )
        row("identical verdicts warm and cold", "identical" if c["identical"] else "different", c["identical"])
    if "marginal" in s:
        g = s["marginal"]
        row(
            f"marginal cost per extra script at most {TARGET_MARGINAL:g} s beyond its own run",
            f"median {g['warm']:.2f} s, max {g['warm_max_steady']:.2f} s after the one-time start of the "
            f"legacy-Keras worker (with it: {g['warm_max']:.2f} s; cold: {g['cold']:.2f} s)",
            g["warm_max_steady"] <= TARGET_MARGINAL,
        )
    if "hostile" in s:
        h = s["hostile"]
        row(
            "every hostile script still contained (warm and cold)",
            ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in h.items()),
            all(h.values()),
        )
    if "editor" in s:
        e = s["editor"]
        row(
            f"the editor confirms a saved seed script in at most {TARGET_EDITOR:g} s after the first save",
            f"{e['first']:.2f} s (after an edit: {e['second']:.2f} s; cold: {e['cold_first']:.2f} s)",
            e["first"] <= TARGET_EDITOR,
        )
    return "\n".join(rows)


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


LOAD_AT_START = "?"


def measure_all(reps: int, hostile: bool) -> str:
    global LOAD_AT_START
    started = time.monotonic()
    load_before = load_average()
    LOAD_AT_START = load_before.split()[0]
    files = example_files()
    sections, summary = {}, {}
    progress(f"CLI: {len(files)} example scripts with findings, {reps} rep(s)")
    sections["cli"], summary["cli"] = cli_section(files, reps)
    progress("marginal cost per script")
    sections["marginal"], summary["marginal"] = marginal_section(files)
    if hostile:
        progress("hostile suite (pytest), warm and cold")
        sections["hostile"], summary["hostile"] = hostile_section()
    progress("editor")
    sections["editor"], summary["editor"] = editor_section(reps)
    parts = [
        BEGIN,
        "## Warm tracer: `--confirm` from one TensorFlow import (`bench/warm.py`)",
        "",
        f"Measured side by side in one run of `python bench/warm.py` ({(time.monotonic() - started) / 60:.1f} min; "
        f"load average before {load_before}, after {load_average()}: the 2 cores are shared, absolute times are "
        "noisy). Why forking a trace from a process that imported TensorFlow is safe, and what must not exist "
        'before the fork: `bench/PROFILE.md`, "Warm tracer".',
        "",
        targets(summary),
        "",
        "### `--confirm` on the examples with findings, warm and cold",
        "",
        sections["cli"],
        "",
        "### Marginal cost of one more script (`-j 1`)",
        "",
        sections["marginal"],
        "",
    ]
    if "hostile" in sections:
        parts += ["### The hostile suite, warm and cold", "", sections["hostile"], ""]
    parts += ["### The editor: confirm on save", "", sections["editor"], "", END]
    return "\n".join(parts)


def write_section(section: str, path: str) -> None:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        text = ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the warm tracer against cold traces (writes its section of RESULTS.md)")
    ap.add_argument("--reps", type=int, help="repetitions of the CLI and editor runs (default 3; --quick 1)")
    ap.add_argument("--quick", action="store_true", help="1 rep, no hostile suite")
    ap.add_argument("--no-hostile", action="store_true", help="leave the hostile suite out")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    args = ap.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    section = measure_all(reps, hostile=not (args.quick or args.no_hostile))
    write_section(section, args.out)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
