"""Every rule's oracle on synthetic traces, without TensorFlow: the CONFIRMS / REFUTES / INCONCLUSIVE
examples in each rule file go through the one verdict layer (tflint_grad.verdicts.judge), exactly
as a real trace would, and their events must follow the event contract (tracer/events.py)."""

from __future__ import annotations

import pytest

from tflint_grad.finding import Finding, Verdict
from tflint_grad.registry import all_rules
from tflint_grad.rule import Rule, Traced
from tflint_grad.tracer.events import event, problems
from tflint_grad.verdicts import judge

KINDS = {"CONFIRMS": Verdict.CONFIRMED, "REFUTES": Verdict.REFUTED, "INCONCLUSIVE": Verdict.INCONCLUSIVE}


def _cases():
    for rule in all_rules():
        for kind, verdict in KINDS.items():
            for i, case in enumerate(getattr(rule, kind)):
                yield pytest.param(rule, case, verdict, id=f"{rule.code}-{kind.lower()}-{i}")


def _finding(rule, case: Traced) -> Finding:
    end = case.end_line or case.line
    data = {"source_line": case.line, **case.data}
    return Finding(rule.code, rule.name, "example.py", case.line, 1, end, 80, "message", data=data)


@pytest.mark.parametrize("rule,case,verdict", list(_cases()))
def test_oracle_example(rule, case: Traced, verdict: Verdict):
    for ev in case.events:
        assert not problems(ev), problems(ev)
    outcome = judge(_finding(rule, case), rule, case.trace())
    assert outcome.verdict is verdict, outcome
    assert case.evidence in outcome.evidence, outcome.evidence


def test_every_oracle_has_confirms_and_inconclusive_examples():
    for rule in all_rules():
        if rule.confirm.__func__ is Rule.confirm.__func__:
            continue  # no oracle (TFG000)
        assert rule.CONFIRMS, f"{rule.code} has no CONFIRMS example"
        assert rule.INCONCLUSIVE, f"{rule.code} has no INCONCLUSIVE example"
        if not rule.trace_only:
            assert rule.REFUTES, f"{rule.code} has no REFUTES example"


def test_a_refutation_with_a_failed_probe_is_inconclusive():
    rule = next(r for r in all_rules() if r.code == "TFG101")
    case = rule.REFUTES[0]
    trace = case.trace()
    trace.events.append(event("probe_failed", None, probe="gradient_call", error="RuntimeError: boom"))
    outcome = judge(_finding(rule, case), rule, trace)
    assert outcome.verdict is Verdict.INCONCLUSIVE and "gradient_call failed" in outcome.evidence


def test_a_line_that_never_ran_is_inconclusive_whatever_the_events():
    rule = next(r for r in all_rules() if r.code == "TFG101")
    case = rule.CONFIRMS[0]
    trace = case.trace()
    trace.executed_lines = {1, 2}
    trace.status = "stopped"
    outcome = judge(_finding(rule, case), rule, trace)
    assert outcome.verdict is Verdict.INCONCLUSIVE and "not reached within 5 training steps" in outcome.evidence


def test_stand_ins_are_named_in_the_evidence():
    rule = next(r for r in all_rules() if r.code == "TFG101")
    case = rule.CONFIRMS[0]
    trace = case.trace()
    trace.stand_ins = ["synthetic MNIST for input_data.read_data_sets"]
    outcome = judge(_finding(rule, case), rule, trace)
    assert outcome.verdict is Verdict.CONFIRMED and "synthetic MNIST" in outcome.evidence


def test_unknown_event_fields_are_reported():
    assert problems(event("layer_call", 3, layer="bn", trainig=True)) == ["layer_call: unknown field 'trainig'"]
    assert problems({"kind": "nope"}) == ["unknown event kind 'nope'"]


def test_a_failed_probe_the_oracle_does_not_read_leaves_the_refutation():
    rule = next(r for r in all_rules() if r.code == "TFG101")
    case = rule.REFUTES[0]
    trace = case.trace()
    trace.events.append(event("probe_failed", None, probe="sqrt_input", error="RuntimeError: boom"))
    assert judge(_finding(rule, case), rule, trace).verdict is Verdict.REFUTED


def test_every_observed_kind_is_an_event_kind():
    from tflint_grad.tracer.events import EVENT_TYPES

    for rule in all_rules():
        assert set(rule.OBSERVES) <= set(EVENT_TYPES), rule.code


def test_oracles_read_a_notebook_finding_at_its_traced_line():
    rule = next(r for r in all_rules() if r.code == "TFG401")
    case = rule.CONFIRMS[0]  # a Log event at line 10 of the traced text
    finding = _finding(rule, case)
    finding.line, finding.end_line, finding.cell = 3, 3, 2  # line 3 of cell 2 is line 10 of the traced text
    outcome = judge(finding, rule, case.trace())
    assert outcome.verdict is Verdict.CONFIRMED, outcome
