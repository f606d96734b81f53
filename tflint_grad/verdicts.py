"""``--confirm``: the one place where findings get verdicts.

It sits above both the engine and the tracer. ``confirm(results, settings)`` chooses the files to
trace (those with findings other than TFG000; with ``confirm_all`` every TensorFlow script that
parsed), asks :func:`tflint_grad.tracer.runner.trace` for one :class:`TraceResult` per file, and
gives every finding its verdict with :func:`judge`:

- its line (``finding.data["source_line"]``, the line in the traced text) never ran, or the trace
  failed before it → ``inconclusive`` with the reason ("script stopped at line 12:
  FileNotFoundError: data.csv", "flagged line 57 not reached within 5 training steps");
- the trace was cut short by a limit or died (timeout, memory, killed, crashed), even after the
  line ran → ``inconclusive`` with that reason;
- otherwise the rule's oracle ``confirm(finding, trace)`` decides. An oracle that fails, returns
  nothing, or refutes while one of the trace's probes failed gives ``inconclusive``: a refutation
  needs an observation that was made and came out clean (``../shared/RULES.md``).

Trace-only rules (``rule.trace_only``) add ``confirmed`` findings from ``rule.discover(trace)``,
built by the engine's finding factory and filtered by the file's noqa comments. Findings are never
mutated: each verdict is a new value (``dataclasses.replace``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import TYPE_CHECKING

from tflint_grad.finding import Finding, Verdict
from tflint_grad.rule import Outcome, Rule
from tflint_grad.settings import TraceSettings
from tflint_grad.tracer.events import TraceResult

if TYPE_CHECKING:
    from tflint_grad.engine import Result
    from tflint_grad.settings import Settings
    from tflint_grad.sourcefile import SourceFile
    from tflint_grad.tracer.runner import TraceJob
    from tflint_grad.tracer.warm import WarmPool

# Ended by a limit of the tracer (or died): the run was cut short, so even a flagged line that ran
# gets no verdict (an oracle judges the steps it asked for, not a fragment of the first one).
CUT_SHORT = ("timeout", "memory", "killed", "crashed")

_LINE_REF = re.compile(r"\bline (\d+)\b")


def _display_line(src: SourceFile | None, line: int) -> str:
    if src is not None and src.is_notebook:
        cell, cell_line = src.locate(line)
        if cell is not None:
            return f"cell {cell + 1}, line {cell_line}"
    return f"line {line}"


def _map_reason(src: SourceFile | None, reason: str | None) -> str | None:
    if reason is None or src is None or not src.is_notebook:
        return reason
    return _LINE_REF.sub(lambda m: _display_line(src, int(m.group(1))), reason)


def _not_reached(trace: TraceResult, src: SourceFile | None, line: int) -> str:
    where = _display_line(src, line)
    if trace.status == "stopped":
        return f"flagged {where} not reached within {trace.steps} training steps"
    if trace.status == "finished":
        if trace.reason:  # "script called sys.exit(0) at line 12"
            return f"flagged {where} never ran: {_map_reason(src, trace.reason)}"
        ran = f" after {trace.steps} training steps" if trace.steps else ""
        return f"flagged {where} never ran (the script finished{ran} without reaching it)"
    return _map_reason(src, trace.reason) or f"the trace ended ({trace.status}) before flagged {where} ran"


def _with_stand_ins(outcome: Outcome, trace: TraceResult) -> Outcome:
    """Say so when the run used stand-ins (synthetic data, stubbed modules)."""
    if not trace.stand_ins or outcome.verdict is Verdict.INCONCLUSIVE:
        return outcome
    return Outcome(outcome.verdict, f"{outcome.evidence} (traced with {'; '.join(trace.stand_ins)})")


def judge(finding: Finding, rule: type[Rule] | None, trace: TraceResult, src: SourceFile | None = None) -> Outcome:
    """The verdict for one finding from one trace. Never raises."""
    line = finding.data.get("source_line", finding.line) if isinstance(finding.data, dict) else finding.line
    if not trace.executed(line):
        return Outcome(Verdict.INCONCLUSIVE, _not_reached(trace, src, line))
    if trace.status in CUT_SHORT:
        return Outcome(Verdict.INCONCLUSIVE, _map_reason(src, trace.reason) or f"the trace ended ({trace.status})")
    outcome = None
    if rule is not None:
        # the oracle reads the finding at its lines in the traced text (a notebook's cell lines
        # are not the trace's lines)
        traced = dataclasses.replace(finding, line=line, end_line=line + (finding.end_line - finding.line), cell=None)
        try:
            outcome = rule.confirm(traced, trace)
        except Exception as e:
            return Outcome(Verdict.INCONCLUSIVE, f"the {finding.code} oracle failed: {type(e).__name__}: {e}")
    if not isinstance(outcome, Outcome):
        evidence = "the trace recorded no evidence for this rule"
        if not trace.ran and trace.reason:
            evidence += f" ({_map_reason(src, trace.reason)})"
        return Outcome(Verdict.INCONCLUSIVE, evidence)
    evidence = _map_reason(src, outcome.evidence) or outcome.evidence  # notebooks: cell lines
    failed = [p for p in trace.probe_failures() if rule is None or not rule.OBSERVES or p in rule.OBSERVES]
    if outcome.verdict is Verdict.REFUTED and failed:
        return Outcome(
            Verdict.INCONCLUSIVE,
            f"{evidence}; but probe(s) {', '.join(sorted(set(failed)))} failed, so the observation is incomplete",
        )
    return _with_stand_ins(Outcome(outcome.verdict, evidence), trace)


def give_verdicts(findings: list[Finding], trace: TraceResult, src: SourceFile | None = None) -> list[Finding]:
    """New findings with verdicts (TFG000 and already judged findings are kept as they are)."""
    from tflint_grad.registry import by_code

    rules = by_code()
    out = []
    for f in findings:
        if f.code == "TFG000" or f.verdict != Verdict.UNCONFIRMED:
            out.append(f)
            continue
        outcome = judge(f, rules.get(f.code), trace, src)
        out.append(dataclasses.replace(f, verdict=outcome.verdict, evidence=outcome.evidence))
    return out


def discovered(
    result: Result, src: SourceFile | None, trace: TraceResult, settings: Settings | None, warnings: list[str]
) -> list[Finding]:
    """Findings of trace-only rules (``rule.discover``), noqa-filtered, not already in ``result``."""
    from tflint_grad import suppressions
    from tflint_grad.engine import make_finding
    from tflint_grad.registry import all_rules

    rules = [r for r in all_rules() if r.trace_only]
    if not rules or not trace.events:
        return []
    enabled = settings.enabled_for(result.path) if settings is not None else None
    text = src.text if src is not None else ""
    noqa = suppressions.parse(text)  # the same noqa rules as the static findings
    existing = {
        (f.code, f.data.get("source_line", f.line) if isinstance(f.data, dict) else f.line) for f in result.findings
    }
    out: list[Finding] = []
    for rule in rules:
        if enabled is not None and rule.code not in enabled:
            continue
        try:
            found = rule.discover(trace) or []
        except Exception as e:
            warnings.append(f"{rule.code} discovery failed on {result.path}: {type(e).__name__}: {e}")
            continue
        for item in found:
            try:
                line, message, evidence = item
                line = int(line)
            except (TypeError, ValueError):
                continue
            if (rule.code, line) in existing or noqa.suppresses(rule.code, line):
                continue
            existing.add((rule.code, line))
            f = make_finding(rule, result.path, src, line, message)
            out.append(dataclasses.replace(f, verdict=Verdict.CONFIRMED, evidence=evidence))
    return out


# -- choosing the files ----------------------------------------------------------------------------


def _source_of(result: Result) -> SourceFile | None:
    if result.source is not None:
        return result.source
    try:
        from tflint_grad.sourcefile import load

        with open(result.path, "rb") as fh:
            return load(result.path, fh.read())
    except OSError:
        return None


def _wants_trace(result: Result, src: SourceFile | None, settings: TraceSettings) -> bool:
    if any(f.code == "TFG000" for f in result.findings):
        return False  # not analyzable (Python 2, bad encoding...): it cannot run either
    if result.findings or result.candidates:
        return True
    if settings.confirm_all and src is not None and src.problem is None:
        from tflint_grad.engine import is_tf_source

        return is_tf_source(src.text)
    return False


def _job_for(result: Result, src: SourceFile | None) -> TraceJob | None:
    from tflint_grad.tracer.runner import TraceJob, safe_name

    if src is None or src.problem is not None:
        return None
    path = result.path
    notebook = bool(src.is_notebook)
    data = src.text.encode("utf-8") if notebook else (src.raw or src.text.encode("utf-8"))
    origin = os.path.dirname(os.path.abspath(path)) if os.path.exists(path) else None
    return TraceJob(path=path, name=safe_name(path, notebook), data=data, origin_dir=origin, notebook=notebook)


def confirm(
    results: list[Result],
    settings: TraceSettings | None = None,
    *,
    lint_settings: Settings | None = None,
    traces: dict[str, TraceResult] | None = None,
    pool: WarmPool | None = None,
) -> list[str]:
    """Trace the files of ``results`` and give each finding its verdict; returns warnings.

    Each result's ``findings`` list is replaced by a new list of new findings. ``lint_settings``
    (optional) filters trace-only rules per file; ``traces``, when a dict is given, receives the
    TraceResult of every traced path; ``pool``: a warm tracer to use (``tracer.warm.WarmPool``).
    """
    from tflint_grad.tracer import runner

    settings = settings or TraceSettings()
    warnings: list[str] = []
    selected = []
    for result in results:
        src = _source_of(result)
        if not _wants_trace(result, src, settings):
            continue
        job = _job_for(result, src)
        if job is not None:
            selected.append((result, src, job))
    if not selected:
        return warnings
    outcomes, run_warnings = runner.trace([job for _, _, job in selected], settings, pool=pool)
    warnings.extend(run_warnings)
    for (result, src, job), (trace, warns) in zip(selected, outcomes):
        warnings.extend(warns)
        if traces is not None:
            traces[result.path] = trace
        if job.notebook and trace.status == "error" and trace.reason:  # which cell stopped "Run all"
            reason = _map_reason(src, trace.reason) or trace.reason
            warnings.append(f"{result.path}: the notebook {reason.removeprefix('script ')}")
        try:
            findings = give_verdicts(result.findings, trace, src)
            findings += discovered(result, src, trace, lint_settings, warnings)
            result.findings = sorted(findings, key=Finding.sort_key)
            if result.candidates:  # low-confidence findings kept aside: judged too
                judged = give_verdicts(result.candidates, trace, src)
                # a candidate is reported only when the trace confirms it
                promoted = [f for f in judged if f.verdict == Verdict.CONFIRMED]
                result.candidates = [f for f in judged if f.verdict != Verdict.CONFIRMED]
                result.findings = sorted([*result.findings, *promoted], key=Finding.sort_key)
        except Exception as e:
            warnings.append(f"{result.path}: could not apply the trace: {type(e).__name__}: {e}")
    return list(dict.fromkeys(warnings))
