"""``--confirm`` on the development corpora's files with findings: verdicts and inconclusive causes.

    python bench/confirm/run.py [--corpora DIR] [--write bench/CONFIRM.md] [--steps 3] [-j 2]

Lints the corpora (see ``bench/precision/run.py``), then runs ``tflint-grad check --confirm
--format json`` on every file with a finding other than TFG000 (TFG000 files cannot run), one
corpus at a time from the corpus folder (read-only: traces run in temporary folders). It tabulates
the verdicts per rule, classifies every ``inconclusive`` evidence into a cause, and matches each
finding with the hand judgments of ``bench/precision/judged*.json``: a judged true positive that
is ``refuted`` or a judged false positive that is ``confirmed`` is listed as a wrong verdict.
Exits 1 when a verdict is wrong or more than ``--max-inconclusive`` of the findings are
inconclusive.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
PRECISION = HERE.parent / "precision"

# (cause, pattern on the evidence), first match wins
CAUSES: list[tuple[str, str]] = [
    ("flagged line not reached within the traced steps", r"not reached within"),
    ("flagged line never ran (the script finished without it)", r"never ran"),
    ("module not installed", r"No module named"),
    ("data file missing", r"FileNotFoundError|No such file|NotFoundError"),
    ("network access refused", r"network|urlopen|URLError|socket|Connection|download"),
    ("timed out", r"timed out"),
    ("memory limit", r"memory limit"),
    ("script needs arguments or input", r"argparse|required|usage:|EOFError|stdin"),
    ("script error", r"script stopped at line|stopped at line|raised"),
    (
        "no gradient/op event recorded for the flagged line",
        r"no (gradient call|Log op|Sqrt op|loss input|assign op|optimizer)",
    ),
    ("layers or probes not observed", r"no BatchNormalization/Dropout call|saw none of their calls|probe"),
    ("shape without an observed consequence", r"not on the path|no consequence|not observed|was not measured|unseen"),
    ("trace could not classify", r"cannot classify|cannot tell|could not"),
]


def _precision_module():
    spec = importlib.util.spec_from_file_location("precision_run", PRECISION / "run.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def cause_of(evidence: str) -> str:
    for cause, pattern in CAUSES:
        if re.search(pattern, evidence or "", re.IGNORECASE):
            if cause == "module not installed":
                m = re.search(r"No module named '([\w.]+)'", evidence)
                return f"module not installed: {m.group(1).split('.')[0]}" if m else cause
            return cause
    return "other"


def confirm(root: Path, files: list[str], steps: int, jobs: int, timeout: float) -> tuple[list[dict], str]:
    cmd = [sys.executable, "-m", "tflint_grad", "check", "--confirm", "--format", "json", "--exit-zero"]
    cmd += ["--isolated", "-j", str(jobs), "--trace-steps", str(steps), "--trace-timeout", str(timeout), *files]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"tflint-grad failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)["findings"], proc.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", type=Path, default=None)
    parser.add_argument("--write", type=Path, help="write the report (markdown) to this file")
    parser.add_argument("--json", type=Path, help="write the judged findings to this file")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--max-inconclusive", type=float, default=0.35)
    args = parser.parse_args(argv)

    prec = _precision_module()
    corpora_dir = args.corpora or prec.DEFAULT_CORPORA
    names = [name for name, _ in prec.corpora(PRECISION / "commits.txt")]
    static = prec.lint(corpora_dir, names, [])
    by_corpus: dict[str, list[str]] = defaultdict(list)
    for path in sorted({f["path"] for f in static if f["code"] != "TFG000"}):
        corpus, _, rel = path.partition("/")
        by_corpus[corpus].append(rel)

    t0 = time.monotonic()
    findings: list[dict] = []
    for corpus, files in sorted(by_corpus.items()):
        got, _ = confirm(corpora_dir / corpus, files, args.steps, args.jobs, args.timeout)
        for f in got:
            f["path"] = f"{corpus}/{f['path']}"
        findings.extend(f for f in got if f["code"] != "TFG000")
    elapsed = time.monotonic() - t0

    files = [PRECISION / "judged.json", *sorted(PRECISION.glob("judged-*.json"))]
    judged = [j for file in files for j in json.loads(file.read_text())]
    pairs, _, _ = prec.match(findings, judged, 3)
    truth = {id(f): j["verdict"] for f, j in pairs}
    wrong = [
        (f, truth.get(id(f)))
        for f in findings
        if (f["verdict"] == "refuted" and truth.get(id(f)) == "TP")
        or (f["verdict"] == "confirmed" and truth.get(id(f)) == "FP")
    ]
    per_rule: dict[str, Counter] = defaultdict(Counter)
    causes: Counter = Counter()
    examples: dict[str, str] = {}
    for f in findings:
        per_rule[f["code"]][f["verdict"]] += 1
        if f["verdict"] == "inconclusive":
            c = cause_of(f.get("evidence") or "")
            causes[c] += 1
            examples.setdefault(c, f"{f['path']}:{f['line']} {f['code']}: {(f.get('evidence') or '')[:160]}")
    total = Counter()
    for c in per_rule.values():
        total.update(c)
    n = sum(total.values())
    share = total["inconclusive"] / n if n else 0.0

    rows = ["| rule | findings | confirmed | refuted | inconclusive |", "|---|---:|---:|---:|---:|"]
    for code in sorted(per_rule):
        c = per_rule[code]
        rows.append(f"| {code} | {sum(c.values())} | {c['confirmed']} | {c['refuted']} | {c['inconclusive']} |")
    rows.append(
        f"| **all** | {n} | {total['confirmed']} | {total['refuted']} | {total['inconclusive']} ({share:.0%}) |"
    )
    lines = [
        f"`tflint-grad check --confirm --trace-steps {args.steps}` on the {sum(map(len, by_corpus.values()))} files "
        f"with findings (other than TFG000) of the development corpora ({', '.join(sorted(by_corpus))}); "
        f"{n} findings, {elapsed:.0f} s with -j {args.jobs}.",
        "",
        *rows,
        "",
        f"Inconclusive: {total['inconclusive']} of {n} ({share:.0%}; target at most {args.max_inconclusive:.0%}).",
        "",
        "| cause of an inconclusive verdict | findings | example |",
        "|---|---:|---|",
        *[f"| {c} | {k} | {examples[c].replace('|', '/')} |" for c, k in causes.most_common()],
        "",
        f"Wrong verdicts against the hand judgments (refuted TP or confirmed FP): {len(wrong)}",
        *[f"- {f['path']}:{f['line']} {f['code']} {f['verdict']} (judged {t}): {f.get('evidence')}" for f, t in wrong],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.write_text("# --confirm on the development corpora\n\n" + text)
    if args.json:
        args.json.write_text(json.dumps(findings, indent=1))
    return 1 if wrong or share > args.max_inconclusive else 0


if __name__ == "__main__":
    sys.exit(main())
