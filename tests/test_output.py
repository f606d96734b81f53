"""Output formats (tflint_grad.output): text, json, sarif (schema-validated), github, statistics.

No copy of the official SARIF 2.1.0 JSON schema is available offline, so SARIF output is
validated against a compact hand-written subset of it: the required fields, enums and
value ranges of every object tflint-grad emits, with ``additionalProperties: false``
where the official schema has it (so a misspelt key fails).
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from tflint_grad import __version__, output
from tflint_grad.finding import Edit, Finding, Fix
from tflint_grad.registry import all_rules


def finding(**kw) -> Finding:
    base = dict(
        code="TFG101",
        name="gradient-wrt-non-trainable",
        path="src/train.py",
        line=4,
        column=29,
        end_line=4,
        end_column=44,
        message="gradients taken w.r.t. `model.variables`",
    )
    base.update(kw)
    return Finding(**base)


FIX = Fix("Use `model.trainable_variables`", (Edit(4, 29, 4, 44, "model.trainable_variables"),), "safe")
UNSAFE = Fix("Risky", (Edit(1, 1, 1, 2, "y"),), "unsafe")

_MSG = {
    "type": "object",
    "required": ["text"],
    "properties": {"text": {"type": "string"}, "markdown": {"type": "string"}},
}
_REGION = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **{k: {"type": "integer", "minimum": 1} for k in ("startLine", "startColumn", "endLine", "endColumn")},
        "properties": {"type": "object"},  # a SARIF property bag (notebooks: the cell)
    },
    "required": ["startLine"],
}
_ARTIFACT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"uri": {"type": "string", "format": "uri-reference"}, "uriBaseId": {"type": "string"}},
    "required": ["uri"],
}
_PROPS = {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True, "items": {"type": "string"}}}}
SARIF_SUBSET = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "runs"],
    "properties": {
        "$schema": {"type": "string", "format": "uri"},
        "version": {"enum": ["2.1.0"]},
        "runs": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["tool"],
                "properties": {
                    "tool": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "version": {"type": "string"},
                                    "semanticVersion": {"type": "string"},
                                    "informationUri": {"type": "string", "format": "uri"},
                                    "rules": {
                                        "type": "array",
                                        "uniqueItems": True,
                                        "items": {
                                            "type": "object",
                                            "additionalProperties": False,
                                            "required": ["id"],
                                            "properties": {
                                                "id": {"type": "string"},
                                                "name": {"type": "string"},
                                                "shortDescription": _MSG,
                                                "fullDescription": _MSG,
                                                "help": _MSG,
                                                "helpUri": {"type": "string", "format": "uri"},
                                                "defaultConfiguration": {
                                                    "type": "object",
                                                    "additionalProperties": False,
                                                    "properties": {
                                                        "level": {"enum": ["none", "note", "warning", "error"]}
                                                    },
                                                },
                                                "properties": _PROPS,
                                            },
                                        },
                                    },
                                },
                            }
                        },
                    },
                    "originalUriBaseIds": {"type": "object", "additionalProperties": _ARTIFACT},
                    "columnKind": {"enum": ["utf16CodeUnits", "unicodeCodePoints"]},
                    "invocations": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["executionSuccessful"],
                            "properties": {
                                "executionSuccessful": {"type": "boolean"},
                                "toolExecutionNotifications": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["message"],
                                        "properties": {
                                            "message": _MSG,
                                            "level": {"enum": ["none", "note", "warning", "error"]},
                                        },
                                    },
                                },
                            },
                        },
                    },
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["message"],
                            "properties": {
                                "ruleId": {"type": "string"},
                                "ruleIndex": {"type": "integer", "minimum": -1},
                                "rank": {"type": "number", "minimum": -1, "maximum": 100},
                                "level": {"enum": ["none", "note", "warning", "error"]},
                                "message": _MSG,
                                "locations": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "properties": {
                                            "physicalLocation": {
                                                "type": "object",
                                                "additionalProperties": False,
                                                "required": ["artifactLocation"],
                                                "properties": {"artifactLocation": _ARTIFACT, "region": _REGION},
                                            }
                                        },
                                    },
                                },
                                "properties": {"type": "object"},
                                "fixes": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "required": ["artifactChanges"],
                                        "properties": {
                                            "description": _MSG,
                                            "artifactChanges": {
                                                "type": "array",
                                                "minItems": 1,
                                                "items": {
                                                    "type": "object",
                                                    "additionalProperties": False,
                                                    "required": ["artifactLocation", "replacements"],
                                                    "properties": {
                                                        "artifactLocation": _ARTIFACT,
                                                        "replacements": {
                                                            "type": "array",
                                                            "minItems": 1,
                                                            "items": {
                                                                "type": "object",
                                                                "additionalProperties": False,
                                                                "required": ["deletedRegion"],
                                                                "properties": {
                                                                    "deletedRegion": _REGION,
                                                                    "insertedContent": {
                                                                        "type": "object",
                                                                        "properties": {"text": {"type": "string"}},
                                                                    },
                                                                },
                                                            },
                                                        },
                                                    },
                                                },
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def validate_sarif(doc: dict) -> None:
    jsonschema.Draft7Validator(SARIF_SUBSET, format_checker=jsonschema.FormatChecker()).validate(doc)


# -- text --------------------------------------------------------------------------------
def test_text_format():
    fs = [
        finding(fix=FIX),
        finding(path="nb.ipynb", cell=2, line=3, column=5, fix=FIX),
        finding(
            code="TFG000",
            name="unanalyzable-file",
            path="old.py",
            line=2,
            column=1,
            message="cannot parse",
            severity="error",
        ),
        finding(fix=UNSAFE, line=9),
    ]
    assert output.format_text(fs) == (
        "src/train.py:4:29: TFG101 [*] gradients taken w.r.t. `model.variables`\n"
        "nb.ipynb:cell 3:3:5: TFG101 [*] gradients taken w.r.t. `model.variables`\n"  # --fix edits the cell
        "old.py:2:1: TFG000 cannot parse\n"
        "src/train.py:9:29: TFG101 gradients taken w.r.t. `model.variables`\n"
    )
    assert "src/train.py:9:29: TFG101 [*]" in output.format_text(fs, unsafe=True)
    shown = output.format_text(fs[:1], show_fixes=True)
    assert shown.splitlines()[1] == "    help: Use `model.trainable_variables` (safe fix)"


def test_text_format_after_tracing():
    fs = [
        finding(verdict="confirmed", evidence="moving_mean has a None gradient"),
        finding(line=7, verdict="inconclusive"),
    ]
    assert output.format_text(fs, traced=True) == (
        "src/train.py:4:29: TFG101 gradients taken w.r.t. `model.variables`\n"
        "    = confirmed: moving_mean has a None gradient\n"
        "src/train.py:7:29: TFG101 gradients taken w.r.t. `model.variables`\n"
        "    = inconclusive\n"
    )


# -- json --------------------------------------------------------------------------------
def test_json_format():
    doc = json.loads(output.format_json([finding(fix=FIX), finding(path="nb.ipynb", cell=0)], 5))
    assert list(doc) == ["version", "findings", "files_checked"]
    assert doc["version"] == __version__ and doc["files_checked"] == 5
    assert doc["findings"][0] == finding(fix=FIX).to_dict()
    assert doc["findings"][1]["cell"] == 0
    assert Finding.from_dict(doc["findings"][0]) == finding(fix=FIX)


# -- github ------------------------------------------------------------------------------
def test_github_format_and_escaping():
    fs = [
        finding(message="100% bad,\nreally: yes"),
        finding(path="a,b:c.py", severity="error"),
        finding(severity="info"),
        finding(path="nb.ipynb", cell=1, line=2, column=3),
        finding(verdict="confirmed", evidence="none grads"),
    ]
    lines = output.format_github(fs).splitlines()
    assert lines[0] == (
        "::warning title=tflint-grad (TFG101),file=src/train.py,line=4,col=29,endLine=4,endColumn=44::"
        "src/train.py:4:29: TFG101 100%25 bad,%0Areally: yes"
    )
    assert lines[1].startswith("::error title=tflint-grad (TFG101),file=a%2Cb%3Ac.py,line=4,")
    assert lines[2].startswith("::notice ")
    assert lines[3] == (
        "::warning title=tflint-grad (TFG101),file=nb.ipynb::nb.ipynb:cell 2:2:3: TFG101 "
        "gradients taken w.r.t. `model.variables`"
    )
    assert lines[4].endswith("[confirmed: none grads]")


# -- sarif -------------------------------------------------------------------------------
def test_sarif_document(tmp_path):
    (tmp_path / ".git").mkdir()
    fs = [
        finding(path=str(tmp_path / "src" / "train.py"), fix=FIX, verdict="confirmed", evidence="moving_mean: None"),
        finding(
            code="TFG000",
            name="unanalyzable-file",
            path=str(tmp_path / "old.py"),
            severity="error",
            line=2,
            column=1,
            end_line=2,
            end_column=2,
            message="cannot parse",
        ),
        finding(path=str(tmp_path / "nb.ipynb"), cell=3, severity="info", fix=FIX),
        finding(path="/elsewhere/x.py"),
    ]
    doc = output.to_sarif(fs, root=str(tmp_path))
    validate_sarif(doc)
    assert doc["$schema"].endswith("sarif-2.1.0.json") and doc["version"] == "2.1.0"
    (run,) = doc["runs"]
    driver = run["tool"]["driver"]
    assert (
        driver["name"] == "tflint-grad"
        and driver["version"] == __version__
        and driver["informationUri"].startswith("https://")
    )
    ids = [r["id"] for r in driver["rules"]]
    assert ids == [r.code for r in all_rules()]  # every rule, not only those with findings
    rule = driver["rules"][ids.index("TFG101")]
    assert rule["name"] == "gradient-wrt-non-trainable"
    assert rule["shortDescription"]["text"].startswith("Gradients are taken")
    assert "## Why is this bad?" in rule["fullDescription"]["text"]
    assert (
        rule["help"]["markdown"].startswith("<!--")
        and "# TFG101: gradient-wrt-non-trainable" in rule["help"]["markdown"]
    )
    assert rule["helpUri"] == finding().url
    assert rule["properties"]["problem.severity"] == "warning" and "gradients" in rule["properties"]["tags"]
    r0, r1, r2, r3 = run["results"]
    assert r0["ruleId"] == "TFG101" and driver["rules"][r0["ruleIndex"]]["id"] == "TFG101"
    assert r0["level"] == "warning" and r1["level"] == "error" and r2["level"] == "note"
    loc = r0["locations"][0]["physicalLocation"]
    assert loc == {
        "artifactLocation": {"uri": "src/train.py", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 4, "startColumn": 29, "endLine": 4, "endColumn": 44},
    }
    assert r0["properties"] == {"verdict": "confirmed", "evidence": "moving_mean: None", "confidence": "high"}
    assert r0["rank"] == 90.0
    (change,) = r0["fixes"][0]["artifactChanges"]
    assert change["replacements"] == [
        {
            "deletedRegion": {"startLine": 4, "startColumn": 29, "endLine": 4, "endColumn": 44},
            "insertedContent": {"text": "model.trainable_variables"},
        }
    ]
    # notebooks: the region is inside the cell (region.properties.cell), the cell is also in the message and
    # the result's properties; no SARIF fixes (cell lines are not lines of the .ipynb file)
    assert r2["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 4,
        "startColumn": 29,
        "endLine": 4,
        "endColumn": 44,
        "properties": {"cell": 3},
    }
    assert r2["message"]["text"].startswith("cell 4, line 4, column 29: ") and r2["properties"]["cell"] == 3
    assert "fixes" not in r2
    assert r3["locations"][0]["physicalLocation"]["artifactLocation"] == {"uri": "file:///elsewhere/x.py"}
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tmp_path.as_uri() + "/"
    assert run["invocations"] == [{"executionSuccessful": True}]


def test_sarif_schema_catches_mistakes():
    doc = output.to_sarif([finding()], root="/")
    doc["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        validate_sarif(doc)
    doc = output.to_sarif([finding()], root="/")
    doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] = 0
    with pytest.raises(jsonschema.ValidationError):
        validate_sarif(doc)


def test_sarif_of_a_real_run(tmp_path, monkeypatch, capsys):
    from tflint_grad import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.py").write_text(
        "import tensorflow as tf\nmodel = tf.keras.Sequential([tf.keras.layers.BatchNormalization()])\ngrads = tape.gradient(loss, model.variables)\n"
    )
    (tmp_path / "b.py").write_text("import tensorflow as tf\nprint tf.x\n")
    assert cli.main(["check", "--format", "sarif", "--no-cache"]) == 1
    doc = json.loads(capsys.readouterr().out)
    validate_sarif(doc)
    assert [r["ruleId"] for r in doc["runs"][0]["results"]] == ["TFG101", "TFG000"]
    assert doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "a.py"


def test_sarif_region_is_never_inverted():
    assert output._region(3, 10, 3, 2) == {"startLine": 3, "startColumn": 10, "endLine": 3, "endColumn": 10}
    assert output._region(0, 0, 0, 0) == {"startLine": 1, "startColumn": 1, "endLine": 1, "endColumn": 1}


# -- statistics and rules ----------------------------------------------------------------
def test_statistics():
    fs = [finding(fix=FIX), finding(), finding(code="TFG000", name="unanalyzable-file")]
    assert (
        output.format_statistics(fs) == "2\tTFG101\t[-] gradient-wrt-non-trainable\n1\tTFG000\t    unanalyzable-file\n"
    )
    assert json.loads(output.format_statistics(fs, "json"))[0] == {
        "code": "TFG101",
        "name": "gradient-wrt-non-trainable",
        "count": 2,
        "fixable": 1,
    }
    assert output.format_statistics([]) == ""


def test_rules_table():
    text = output.format_rules(all_rules())
    header, *rows = text.splitlines()
    assert header.split() == ["CODE", "NAME", "FIX", "SUMMARY"]
    assert [r.split()[0] for r in rows] == [r.code for r in all_rules()]
    info = json.loads(output.format_rules(all_rules(), "json"))
    assert info[0]["code"] == "TFG000" and info[0]["fixable"] is False


# -- the traced script's own words ----------------------------------------------------------
def test_script_text_is_shown_in_text_and_json_but_never_published():
    from tflint_grad.scripttext import LIMIT, quote

    payload = "A" * 500 + "\n::error file=README.md,line=1::pwned\n::add-mask::x\x1b[31m \u00bb \u00ab\u202e"
    evidence = f"script stopped at line 3: ValueError: {quote(payload)}"
    fs = [finding(verdict="inconclusive", evidence=evidence), finding(verdict="confirmed", evidence="none grads")]
    quoted = evidence.split(": ", 2)[2]
    assert quoted.startswith("\u00abAAAA") and quoted.endswith("\u2026\u00bb") and len(quoted) == LIMIT + 2
    assert "\n" not in quoted and "\x1b" not in quoted and "\u202e" not in quoted
    # text and JSON: the script's words, quoted, on the verdict's line
    text = output.format_text(fs, traced=True)
    assert text.splitlines()[1] == f"    = inconclusive: {evidence}"
    assert json.loads(output.format_json(fs, 1))["findings"][0]["evidence"] == evidence
    # SARIF and GitHub: the verdict and the tool's own words only
    omitted = "script stopped at line 3: ValueError: \u00abscript text omitted\u00bb"
    sarif = output.to_sarif(fs, root="/")
    assert [r["properties"]["evidence"] for r in sarif["runs"][0]["results"]] == [omitted, "none grads"]
    github = output.format_github(fs).splitlines()
    assert github[0].endswith(f"[inconclusive: {omitted}]") and "AAAA" not in "".join(github)
    assert github[1].endswith("[confirmed: none grads]")
    # --verbose: published too, still on one line
    verbose = output.format_github(fs, script_text=True)
    assert verbose.count("\n") == 2 and "AAAA" in verbose
    assert (
        output.to_sarif(fs, root="/", script_text=True)["runs"][0]["results"][0]["properties"]["evidence"] == evidence
    )
