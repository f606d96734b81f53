"""Runs every rule's VALID and INVALID examples (Fixit's style): one test per example."""

from __future__ import annotations

import pytest

from tflint_grad.engine import lint_source
from tflint_grad.fixes import fix_text
from tflint_grad.registry import all_rules
from tflint_grad.rule import Invalid, Valid, dedent
from tflint_grad.settings import Settings


def _cases(kind: str):
    for rule in all_rules():
        for i, case in enumerate(getattr(rule, kind)):
            yield pytest.param(rule, case, id=f"{rule.code}-{kind.lower()}-{i}")


def _settings(rule, case) -> Settings:
    return Settings(
        frozenset({rule.code}),
        {rule.code: dict(case.options)} if case.options else {},
        min_confidence=getattr(case, "confidence", "high"),
    )


@pytest.mark.parametrize("rule,case", list(_cases("VALID")))
def test_valid(rule, case):
    case = Valid(case) if isinstance(case, str) else case
    findings = lint_source(dedent(case.code), "example.py", _settings(rule, case))
    assert findings == [], f"{rule.code} flagged valid code:\n" + "\n".join(f"{f.line}: {f.message}" for f in findings)


@pytest.mark.parametrize("rule,case", list(_cases("INVALID")))
def test_invalid(rule, case: Invalid):
    code = dedent(case.code)
    findings = lint_source(code, "example.py", _settings(rule, case))
    assert findings, f"{rule.code} did not flag:\n{code}"
    assert all(f.code == rule.code for f in findings)
    assert findings[0].confidence == case.confidence, (findings[0].confidence, findings[0].message)
    if case.line is not None:
        assert findings[0].line == case.line, [(f.line, f.message) for f in findings]
    if case.message is not None:
        assert case.message in findings[0].message, findings[0].message
    if case.count is not None:
        assert len(findings) == case.count, [(f.line, f.message) for f in findings]
    if case.fixed is not None:
        result = fix_text(code, "example.py", _settings(rule, case), unsafe=True, codes={rule.code})
        assert result.text == dedent(case.fixed)
        again = fix_text(result.text, "example.py", _settings(rule, case), unsafe=True, codes={rule.code})
        assert again.text == result.text, "fixing twice must equal fixing once"


def test_every_rule_is_documented_and_has_examples():
    required = ["## What it does", "## Why is this bad?", "## Example", "Use instead"]
    codes = set()
    names = set()
    for rule in all_rules():
        assert rule.code not in codes and rule.name not in names
        codes.add(rule.code)
        names.add(rule.name)
        doc = rule.docs()
        for section in required:
            assert section in doc, f"{rule.code} docs lack {section!r}"
        if not rule.trace_only:
            assert rule.VALID and rule.INVALID, f"{rule.code} needs VALID and INVALID examples"
