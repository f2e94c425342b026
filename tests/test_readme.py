"""The README holds exactly two set-up commands, and CI runs the second one verbatim."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_exactly_two_setup_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    cmds = re.findall(r"^    \$ (.+)$", readme, flags=re.M)
    assert len(cmds) == 2
    main_cmd, test_cmd = cmds
    assert "planner fit --device 8gb-gpu" in main_cmd and "pip install" in main_cmd
    assert "pytest" in test_cmd and "pip install" in test_cmd
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pytest" in ci and "README.md" in ci


def test_torch_is_pinned_in_the_install_path():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in pyproject


def test_requirements_example_is_the_committed_file():
    """README's `planner check` example is examples/requirements.yaml, the file the tests and the wheel test run."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```yaml\n# requirements.yaml\n", 1)[1].split("```", 1)[0]
    committed = (ROOT / "examples" / "requirements.yaml").read_text()
    assert committed == "# requirements.yaml\n" + block
