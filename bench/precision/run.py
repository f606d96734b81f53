"""Precision of the static pass on the development corpora, against hand judgments.

    python bench/precision/run.py [--corpora DIR] [--write bench/PRECISION.md] [-- extra check args]

The corpora are public repositories checked out at the commits in ``commits.txt``, each in a
folder named ``owner+name`` under ``--corpora`` (default ``~/.cache/tflint-corpora``; fetch them
with ``git clone https://github.com/owner/name owner+name && git -C owner+name checkout SHA``).
Nothing of theirs is kept in this repository: only the judgments, ``judged.json`` plus any
``judged-*.json`` beside it (one object per finding ever reported: path, code, line, cell, verdict
TP/FP/DEBATABLE, reason; new judgments go in a ``judged-<topic>.json`` so parallel work merges
cleanly) and ``missed.json`` (real bugs no finding reported).

The script runs ``tflint-grad check --format json`` over every corpus (default settings unless
extra arguments are given), matches each finding with a judgment (same path, code and cell, the
nearest line within ``--slack`` lines: a finding that moved a few lines is the same finding) and
prints per-rule TP/FP counts and precision, every finding not judged yet, every judged true
positive that is no longer reported, and which known misses are now caught. It exits 1 when a
finding is unjudged or a judged TP was lost, so it can gate a change.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CORPORA = Path(os.environ.get("TFLINT_CORPORA", Path.home() / ".cache" / "tflint-corpora"))


def corpora(commits: Path) -> list[tuple[str, str]]:
    out = []
    for line in commits.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sha = line.split()
            out.append((name, sha))
    return out


def head_of(folder: Path) -> str | None:
    proc = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def lint(root: Path, names: list[str], extra: list[str]) -> list[dict]:
    cmd = [sys.executable, "-m", "tflint_grad", "check", "--format", "json", "--exit-zero", "--no-cache", "--isolated"]
    proc = subprocess.run([*cmd, *extra, *names], cwd=root, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"tflint-grad failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)["findings"]


def match(
    findings: list[dict], judged: list[dict], slack: int
) -> tuple[list[tuple[dict, dict]], list[dict], list[dict]]:
    """Pair findings with judgments: same (path, code, cell), nearest line within ``slack``."""
    pool: dict[tuple, list[dict]] = defaultdict(list)
    for j in judged:
        pool[(j["path"], j["code"], j.get("cell"))].append(j)
    pairs, unjudged, used = [], [], set()
    for f in sorted(findings, key=lambda f: (f["path"], f.get("cell") or 0, f["line"])):
        key = (f["path"], f["code"], f.get("cell"))
        best = None
        for j in pool.get(key, []):
            if id(j) in used or j.get("line") is None:
                continue
            d = abs(j["line"] - f["line"])
            if d <= slack and (best is None or d < abs(best["line"] - f["line"])):
                best = j
        if best is None:
            unjudged.append(f)
        else:
            used.add(id(best))
            pairs.append((f, best))
    lost = [j for j in judged if id(j) not in used and j["verdict"] == "TP"]
    return pairs, unjudged, lost


def table(pairs: list[tuple[dict, dict]], unjudged: list[dict]) -> tuple[str, float]:
    counts: dict[str, Counter] = defaultdict(Counter)
    for f, j in pairs:
        counts[f["code"]][j["verdict"]] += 1
    for f in unjudged:
        counts[f["code"]]["unjudged"] += 1
    rows = ["| rule | findings | TP | FP | debatable | unjudged | precision |", "|---|---:|---:|---:|---:|---:|---:|"]
    total = Counter()
    for code in sorted(counts):
        c = counts[code]
        total.update(c)
        rows.append(_row(code, c))
    rows.append(_row("**all**", total))
    tp, fp = total["TP"], total["FP"]
    return "\n".join(rows), (tp / (tp + fp) if tp + fp else 1.0)


def _row(label: str, c: Counter) -> str:
    n = sum(c.values())
    tp, fp = c["TP"], c["FP"]
    prec = f"{tp / (tp + fp):.2f}" if tp + fp else "n/a"
    return f"| {label} | {n} | {tp} | {fp} | {c['DEBATABLE']} | {c['unjudged']} | {prec} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    parser.add_argument(
        "--judged", type=Path, action="append", help="judgment files (default: judged.json and judged-*.json here)"
    )
    parser.add_argument("--missed", type=Path, default=HERE / "missed.json")
    parser.add_argument("--commits", type=Path, default=HERE / "commits.txt")
    parser.add_argument("--slack", type=int, default=3, help="lines a finding may move and stay the same finding")
    parser.add_argument("--write", type=Path, help="write the report (markdown) to this file")
    parser.add_argument("--json", type=Path, help="write the raw findings to this file")
    parser.add_argument("extra", nargs="*", help="extra arguments for tflint-grad check (after --)")
    args = parser.parse_args(argv)

    names = []
    for name, sha in corpora(args.commits):
        folder = args.corpora / name
        if not folder.is_dir():
            sys.exit(f"missing corpus {folder}: clone it at {sha} (see this script's docstring)")
        head = head_of(folder)
        if head != sha:
            print(f"warning: {name} is at {head}, judged at {sha}", file=sys.stderr)
        names.append(name)

    findings = lint(args.corpora, names, args.extra)
    if args.json:
        args.json.write_text(json.dumps(findings, indent=1))
    files = args.judged or [HERE / "judged.json", *sorted(HERE.glob("judged-*.json"))]
    judged = [j for file in files for j in json.loads(file.read_text())]
    pairs, unjudged, lost = match(findings, judged, args.slack)
    text, precision = table(pairs, unjudged)
    missed = json.loads(args.missed.read_text()) if args.missed.exists() else []
    caught = [m for m in missed if any(f["path"] == m["path"] and f["code"] == m["code"] for f in findings)]

    lines = [
        f"Static findings on {len(names)} corpora ({', '.join(names)}), `tflint-grad check` "
        f"{' '.join(args.extra) or '(default settings)'}: {len(findings)} findings, precision {precision:.2f} "
        "(TP / (TP + FP); debatable findings are left out).",
        "",
        text,
        "",
        f"Judged true positives no longer reported: {len(lost)}",
        *[f"- {j['path']}:{_pos(j)} {j['code']} ({j['reason']})" for j in lost],
        "",
        f"Findings not judged yet: {len(unjudged)}",
        *[f"- {f['path']}:{_pos(f)} {f['code']} {f['message'][:160]}" for f in unjudged],
        "",
        f"Known misses now caught: {len(caught)} of {len(missed)}",
        *[f"- {m['path']} {m['code']} ({m['reason']})" for m in caught],
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.write:
        args.write.write_text("# Precision on the development corpora\n\n" + report)
    return 1 if unjudged or lost else 0


def _pos(x: dict) -> str:
    cell = x.get("cell")
    return (f"cell {cell}:" if cell is not None else "") + str(x.get("line"))


if __name__ == "__main__":
    raise SystemExit(main())
