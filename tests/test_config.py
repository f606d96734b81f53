"""Configuration loading/validation and file discovery (tflint_grad.config, tflint_grad.discovery)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from tflint_grad import config as C
from tflint_grad.config import Config, ConfigError, Selection, find_config, load, parse
from tflint_grad.discovery import MissingPathError, discover
from tflint_grad.engine import lint_source
from tflint_grad.rule import Rule
from tflint_grad.settings import TraceSettings

BAD = (
    "import tensorflow as tf; model = tf.keras.Sequential([tf.keras.layers.BatchNormalization()])\n"
    "with tf.GradientTape() as tape:\n"
    "    loss = model(x, training=True)\n"
    "grads = tape.gradient(loss, model.variables)\n"
)


class WithOptions(Rule):
    """Test rule with options."""

    code = "TFG994"
    name = "with-options"
    options = {"min-stddev": 1e-3, "max-layers": 3, "strict": False, "names": ["a"], "mode": "fast"}


@pytest.fixture
def with_options(monkeypatch):
    from tflint_grad import engine, registry, settings

    rules = tuple(sorted((*registry.all_rules(), WithOptions), key=lambda r: r.code))
    for mod in (registry, engine, settings):
        monkeypatch.setattr(mod, "all_rules", lambda: rules)


def write(base: Path, name: str, text: str = "") -> Path:
    p = base / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


# -- loading -------------------------------------------------------------------------------
def test_defaults_without_a_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load()
    assert cfg.path is None and cfg.root == tmp_path
    assert "build" in cfg.exclude and cfg.respect_gitignore
    assert cfg.trace == TraceSettings()
    assert "TFG101" in cfg.settings().enabled


def test_closest_config_wins_and_dedicated_files_first(tmp_path):
    write(tmp_path, "pyproject.toml", '[tool.tflint-grad]\nignore = ["TFG101"]\n')
    write(tmp_path, "a/pyproject.toml", "[tool.black]\nline-length = 100\n")  # no section: skipped
    write(tmp_path, "a/b/tflint-grad.toml", 'select = ["TFG0"]\n')
    write(tmp_path, "a/b/c/x.py")
    assert find_config(tmp_path / "a") == tmp_path / "pyproject.toml"
    assert find_config(tmp_path / "a" / "b" / "c" / "x.py") == tmp_path / "a" / "b" / "tflint-grad.toml"
    cfg = load(start=tmp_path / "a" / "b" / "c")
    assert cfg.root == tmp_path / "a" / "b"
    assert cfg.settings().enabled == frozenset({"TFG000"})
    write(tmp_path, "a/b/.tflint-grad.toml", 'ignore = ["TFG000"]\n')
    assert find_config(tmp_path / "a" / "b") == tmp_path / "a" / "b" / ".tflint-grad.toml"


def test_underscore_section_is_rejected(tmp_path):
    write(tmp_path, "pyproject.toml", '[tool.tflint_grad]\nselect = ["TFG1"]\n')
    with pytest.raises(ConfigError, match=r"\[tool.tflint-grad\] \(with a dash\)"):
        load(start=tmp_path)


def test_explicit_config_without_section(tmp_path):
    p = write(tmp_path, "pyproject.toml", '[project]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"has no \[tool\.tflint-grad\] section"):
        load(p)


def test_isolated(tmp_path):
    write(tmp_path, "pyproject.toml", "[tool.tflint-grad]\nselct = 1\n")
    assert load(start=tmp_path, isolated=True).path is None


# -- validation ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "table,message",
    [
        ({"selct": ["TFG1"]}, "unknown key 'tool.tflint-grad.selct' in pyproject.toml (did you mean 'select'?)"),
        ({"extend_select": ["TFG1"]}, "(did you mean 'extend-select'?)"),
        ({"colour": True}, "(valid keys: select, ignore"),
        ({"ignore": [1]}, "must be a list of strings"),
        ({"per-file-ignores": ["x"]}, "must be a table of glob = [codes]"),
        (
            {"per-file-ignores": {"x/*": "TFG101"}},
            "'tool.tflint-grad.per-file-ignores.x/*' in pyproject.toml must be a list of strings",
        ),
        ({"per-file-ignores": {"x/*": ["TFG77"]}}, "unknown rule selector 'TFG77'"),
        ({"rules": {"TFG101": 3}}, "must be a table of options"),
        ({"rules": {"gradient-wrt-non-trainabel": {}}}, "(did you mean 'gradient-wrt-non-trainable'?)"),
        ({"trace": {"steps": 0}}, "must be a positive integer"),
        ({"trace": {"steps": True}}, "must be a positive integer"),
        ({"trace": {"memory": 1.5}}, "must be a positive integer"),
        ({"trace": {"args": 3}}, "must be a string or a list of strings"),
        ({"trace": {"args": "'unterminated"}}, "cannot split"),
    ],
)
def test_invalid_config(tmp_path, table, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        parse(table, tmp_path / "pyproject.toml")
    assert message in str(e.value)


def test_nested_config_error_names_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    with pytest.raises(ConfigError) as e:
        parse({"selct": ["ALL"]}, tmp_path / "sub" / "pyproject.toml")
    assert "in sub/pyproject.toml" in str(e.value)


def test_rule_options_validated_against_the_rule(with_options, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = parse(
        {"rules": {"TFG994": {"min-stddev": 1, "max_layers": 5, "names": ["x", "y"]}}}, tmp_path / "pyproject.toml"
    )
    assert cfg.rule_options == {"TFG994": {"min-stddev": 1.0, "max-layers": 5, "names": ["x", "y"]}}
    assert cfg.settings().rule_options["TFG994"]["min-stddev"] == 1.0
    by_name = parse({"rules": {"with-options": {"strict": True}}}, tmp_path / "pyproject.toml")
    assert by_name.rule_options == {"TFG994": {"strict": True}}
    for opts, msg in [
        (
            {"min-stdev": 1.0},
            "unknown key 'tool.tflint-grad.rules.TFG994.min-stdev' in pyproject.toml (did you mean 'min-stddev'?)",
        ),
        ({"max-layers": 2.5}, "'tool.tflint-grad.rules.TFG994.max-layers' in pyproject.toml must be an integer"),
        ({"max-layers": True}, "must be an integer"),
        ({"strict": 1}, "must be true or false"),
        ({"min-stddev": "small"}, "must be a number"),
        ({"names": "a"}, "must be a list"),
        ({"names": [1]}, "must be a list of str"),
        ({"mode": 3}, "must be a string"),
    ]:
        with pytest.raises(ConfigError) as e:
            parse({"rules": {"TFG994": opts}}, tmp_path / "pyproject.toml")
        assert msg in str(e.value)


def test_trace_table(tmp_path):
    cfg = parse(
        {"trace": {"steps": 2, "timeout": 10, "memory": 512, "args": ["--x", "1"]}}, tmp_path / "pyproject.toml"
    )
    assert cfg.trace == TraceSettings(steps=2, timeout=10.0, memory_mb=512, args=("--x", "1"))
    assert parse({"trace": {"args": "--lr 0.1 --name 'a b'"}}).trace.args == ("--lr", "0.1", "--name", "a b")


def test_selection_layers(tmp_path):
    cfg = parse({"select": ["TFG1"], "ignore": ["TFG101"]}, tmp_path / "pyproject.toml")
    assert "TFG101" not in cfg.settings().enabled and "TFG000" not in cfg.settings().enabled
    # the command line's select replaces the config's; its ignore/extend-select add to it
    assert cfg.settings(Selection(select=["TFG101"])).enabled == frozenset({"TFG101"})
    assert "TFG000" in cfg.settings(Selection(extend_select=["TFG000"])).enabled
    assert cfg.settings(Selection(ignore=["TFG1"])).enabled == frozenset()
    ext = parse({"extend-ignore": ["TFG000"]}, tmp_path / "pyproject.toml")
    assert "TFG000" not in ext.settings().enabled and "TFG101" in ext.settings().enabled


def test_per_file_ignores_are_relative_to_the_config_root(tmp_path, monkeypatch):
    cfg = parse({"per-file-ignores": {"tests/*.py": ["TFG1"], "__init__.py": ["TFG101"]}}, tmp_path / "pyproject.toml")
    settings = cfg.settings()
    monkeypatch.chdir(tmp_path)
    assert "TFG101" not in settings.enabled_for("tests/test_x.py")
    assert "TFG101" in settings.enabled_for("src/x.py")
    assert "TFG101" not in settings.enabled_for("src/pkg/__init__.py")
    monkeypatch.chdir(write(tmp_path, "tests/x").parent)
    assert "TFG101" not in settings.enabled_for("test_x.py")  # relative to the cwd, matched from the root
    assert lint_source(BAD, "test_x.py", settings) == []
    assert lint_source(BAD, str(tmp_path / "src" / "y.py"), settings) != []
    pickle.loads(pickle.dumps(settings))  # settings go to worker processes


def test_rooted_spec(tmp_path):
    spec = C.RootedSpec(["build/", "*.gen.py", "/top.py"], tmp_path)
    assert spec.match_file(str(tmp_path / "a" / "build"), is_dir=True)
    assert not spec.match_file(str(tmp_path / "a" / "build"))
    assert spec.match_path_or_parents(str(tmp_path / "a" / "build" / "x.py"))
    assert spec.match_file(str(tmp_path / "m.gen.py"))
    assert spec.match_file(str(tmp_path / "top.py")) and not spec.match_file(str(tmp_path / "a" / "top.py"))
    assert not spec.match_file(str(tmp_path))
    assert spec.match_file("/elsewhere/x.gen.py")  # outside the root, name patterns still apply


def test_settings_for_editors(tmp_path):
    write(tmp_path, "pyproject.toml", '[tool.tflint-grad]\nignore = ["TFG101"]\n')
    assert "TFG101" not in C.settings_for(tmp_path / "x.py").enabled


# -- discovery -----------------------------------------------------------------------------
def _names(found, base: Path | None = None) -> list[str]:
    return [e.display for e in found.files]


def test_discovery_walk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in [
        "a.py",
        "b.ipynb",
        "c.txt",
        "d.pyi",
        "sub/e.py",
        "__pycache__/f.py",
        ".git/g.py",
        ".hg/h.py",
        "dist/i.py",
        ".ipynb_checkpoints/b-checkpoint.ipynb",
        "venv2/pyvenv.cfg",
        "venv2/j.py",
    ]:
        write(tmp_path, name, "x = 1\n")
    found = discover(["."], Config(root=tmp_path))
    assert _names(found) == ["a.py", "b.ipynb", "sub/e.py"]
    assert found.errors == []
    # exclude = [] still never enters VCS folders, __pycache__ or virtual environments
    found = discover(["."], Config(root=tmp_path, exclude=[]))
    assert _names(found) == [".ipynb_checkpoints/b-checkpoint.ipynb", "a.py", "b.ipynb", "dist/i.py", "sub/e.py"]


def test_discovery_paths_are_relative_and_deduplicated(tmp_path, monkeypatch):
    write(tmp_path, "proj/a.py")
    write(tmp_path, "other/b.py")
    monkeypatch.chdir(tmp_path / "proj")
    found = discover([".", "a.py", str(tmp_path / "proj" / "a.py"), "../other"], Config(root=tmp_path / "proj"))
    assert _names(found) == ["../other/b.py", "a.py"]
    with pytest.raises(MissingPathError):
        discover(["nope"], Config(root=tmp_path))


def test_nested_gitignore_and_negation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".git" / "info").mkdir(parents=True)
    write(tmp_path, ".git/info/exclude", "private.py\n")
    write(tmp_path, ".gitignore", "*.gen.py\nout/\n")
    write(tmp_path, "pkg/.gitignore", "!keep.gen.py\nlocal/\n")
    for name in [
        "private.py",
        "a.gen.py",
        "out/x.py",
        "pkg/keep.gen.py",
        "pkg/drop.gen.py",
        "pkg/local/y.py",
        "pkg/ok.py",
        "local/z.py",
    ]:
        write(tmp_path, name)
    assert _names(discover(["."], Config(root=tmp_path))) == ["local/z.py", "pkg/keep.gen.py", "pkg/ok.py"]
    # walking a subfolder applies the .gitignore files above it
    assert _names(discover(["pkg"], Config(root=tmp_path))) == ["pkg/keep.gen.py", "pkg/ok.py"]
    assert len(discover(["."], Config(root=tmp_path, respect_gitignore=False)).files) == 8


def test_force_exclude(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "legacy/deep/a.py")
    write(tmp_path, "b.py")
    cfg = Config(root=tmp_path, extend_exclude=["legacy/"])
    assert _names(discover(["legacy/deep/a.py", "b.py"], cfg)) == ["b.py", "legacy/deep/a.py"]
    found = discover(["legacy/deep/a.py", "b.py", "legacy/deep"], cfg, force_exclude=True)
    assert _names(found) == ["b.py"]
    assert sorted(found.skipped) == ["legacy/deep", "legacy/deep/a.py"]
    assert _names(discover(["legacy/deep"], cfg)) == ["legacy/deep/a.py"]  # an explicit folder is walked


def test_broken_symlink_and_symlinked_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "real/a.py")
    (tmp_path / "linkdir").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "link.py").symlink_to(tmp_path / "real" / "a.py")
    (tmp_path / "broken.py").symlink_to(tmp_path / "nowhere.py")
    found = discover(["."], Config(root=tmp_path))
    assert _names(found) == ["link.py", "real/a.py"]
    assert found.errors == ["broken.py: cannot read: broken symbolic link"]
