"""The README's commands stay in step with the code.

Every ``spokenlm`` command line in the README's bash blocks must parse with the real argument
parser, every fairseq command must name registered components, and CI must run exactly the
README's test command. (Each command's behaviour is tested by the stage's own tests.)
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import spokenlm_plugin  # noqa: F401  (registers the plugin's fairseq components)
from spokenlm_plugin import cli

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _bash_commands(text: str) -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands.extend(part.strip() for part in line.split("&&"))
    return commands


COMMANDS = _bash_commands(README)


def _argv(command: str) -> list[str]:
    return shlex.split(command.replace("$", ""))


def test_readme_opens_with_the_two_commands() -> None:
    assert COMMANDS[:3] == ["bash setup.sh", ".venv/bin/spokenlm demo --out demo_out", ".venv/bin/python -m pytest"]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert "bash setup.sh" in ci and ".venv/bin/python -m pytest" in ci


SPOKENLM = [c for c in COMMANDS if _argv(c)[0] in ("spokenlm", ".venv/bin/spokenlm")]


@pytest.mark.parametrize("command", SPOKENLM)
def test_spokenlm_commands_parse(command: str) -> None:
    argv = _argv(command)[1:]
    parser = cli.build_parser(argv)
    try:
        parser.parse_args(argv)
    except SystemExit as e:  # argparse reports the bad option on stderr
        pytest.fail(f"README command does not parse: {command} (exit {e.code})")


FAIRSEQ = [c for c in COMMANDS if _argv(c)[0].startswith("fairseq-")]


@pytest.mark.parametrize("command", FAIRSEQ)
def test_fairseq_commands_name_registered_components(command: str) -> None:
    from fairseq.criterions import CRITERION_REGISTRY
    from fairseq.models import ARCH_MODEL_REGISTRY
    from fairseq.tasks import TASK_REGISTRY

    argv = _argv(command)
    registries = {"--task": TASK_REGISTRY, "--arch": ARCH_MODEL_REGISTRY, "--criterion": CRITERION_REGISTRY}
    for flag, registry in registries.items():
        if flag in argv:
            name = argv[argv.index(flag) + 1]
            assert name in registry, f"{command}: {flag} {name} is not registered"
    if "--user-dir" in argv:
        assert argv[argv.index("--user-dir") + 1] == "spokenlm_plugin"
