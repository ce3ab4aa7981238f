"""The repository's promises: two set-up commands, CI runs the README's test command, one dependency list."""

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    setup = ROOT.joinpath("README.md").read_text().split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup, flags=re.S)


def test_readme_has_exactly_two_setup_commands():
    commands = _readme_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    explorer, tests = commands
    assert "jupyter lab notebooks/" in explorer and "pytest" in tests
    for command in commands:  # the CPU torch is pinned first, never a bare requirement
        assert "torch==2.13.0" in command


def test_ci_runs_the_readme_test_command():
    ci = ROOT.joinpath(".ci/run").read_text()
    assert "set -euo pipefail" in ci
    last = [line for line in ci.splitlines() if line.strip() and not line.startswith("#")][-1]
    assert last == _readme_commands()[1]


def _normalise(requirement: str) -> str:
    return requirement.replace(" ", "").lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())["project"]
    declared = {_normalise(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    pip_section = ROOT.joinpath("environment.yml").read_text().split("- pip:", 1)[1]
    listed = {_normalise(m) for m in re.findall(r"^\s+- (\S.*)$", pip_section, flags=re.M) if m != "-e ."}
    assert listed == declared
    assert "- -e ." in pip_section


def test_torch_requirement_is_a_range_that_admits_the_pinned_build():
    project = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())["project"]
    torch = next(r for r in project["dependencies"] if r.startswith("torch"))
    assert "==" not in torch and "<" in torch  # users elsewhere pick their own build
    assert not any(r.startswith("torchvision") for r in project["dependencies"])


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, clipviz; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_ci_lints_before_the_tests():
    """.ci/run runs ruff (from the dev extra) before the README's test command."""
    text = ROOT.joinpath(".ci/run").read_text()
    ci = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    lint = next(i for i, line in enumerate(ci) if line.endswith("ruff check ."))
    assert lint < len(ci) - 1 and ci[-1] == _readme_commands()[1]
    project = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())
    assert any(r.startswith("ruff") for r in project["project"]["optional-dependencies"]["dev"])
    assert "select" in project["tool"]["ruff"]["lint"]
