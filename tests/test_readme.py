"""The READMEs' commands stay in step with the code.

Every ``spokenlm`` command line in the bash blocks of README.md and of every examples/*/README.md
must parse with the real argument parser, every fairseq command must name registered components
(and evaluate a split that its recipe makes), and CI must run exactly the README's test command.
(Each command's behaviour is tested by the stage's own tests.)
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import spokenlm_plugin  # noqa: F401  (registers the plugin's fairseq components)
from spokenlm_plugin import cli

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
#: README.md and the recipes' READMEs: name -> text.
READMES = {p.relative_to(REPO).as_posix(): p.read_text()
           for p in [REPO / "README.md", *sorted((REPO / "examples").glob("*/README.md"))]}


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
#: (readme, command) of every README; placeholders (``spokenlm labels ...``, ``[--option]``) are prose.
ALL_COMMANDS = [(name, c) for name, text in READMES.items() for c in _bash_commands(text)
                if "..." not in c and "[" not in c.split("#")[0].replace("'[", "").replace('"[', "")]


def _argv(command: str) -> list[str]:
    """The command's words, without a cluster launcher in front (``srun --opt=value ... CMD``)."""
    argv = shlex.split(command.replace("$", ""))
    if argv[0] == "srun":
        argv = argv[1:]
        while argv and argv[0].startswith("-"):  # launcher options are written --name=value
            argv = argv[1:]
    return argv


def test_readme_opens_with_the_two_commands() -> None:
    assert COMMANDS[:2] == ["bash setup.sh", ".venv/bin/spokenlm demo --out demo_out"]
    assert COMMANDS[2].startswith(".venv/bin/python -m pytest")


def test_ci_runs_the_readme_full_test_command() -> None:
    """CI sets up as the README says and runs the README's test command that includes the slow tests."""
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    tests = [c for c in ci if "-m pytest" in c]
    assert "bash setup.sh" in ci and len(tests) == 1, ci
    assert tests[0] in COMMANDS and "--slow" in tests[0].split()
    assert ".venv/bin/python -m pytest" in COMMANDS  # and the fast default run is the one shown first


SPOKENLM = [(r, c) for r, c in ALL_COMMANDS if _argv(c)[0] in ("spokenlm", ".venv/bin/spokenlm")]


@pytest.mark.parametrize(("readme", "command"), SPOKENLM)
def test_spokenlm_commands_parse(readme: str, command: str) -> None:
    # A lone capital (--vocab-size K, $((L + 200))) is a quantity the prose defines, an upper-case
    # name a variable of the shell or the scheduler ($SLURM_ARRAY_TASK_ID): any number parses.
    argv = ["1" if re.fullmatch(r"[A-Z][A-Z0-9_]*", a) else a for a in _argv(command)[1:]]
    parser = cli.build_parser(argv)
    try:
        parser.parse_args(argv)
    except SystemExit as e:  # argparse reports the bad option on stderr
        pytest.fail(f"{readme} command does not parse: {command} (exit {e.code})")


FAIRSEQ = [(r, c) for r, c in ALL_COMMANDS if _argv(c)[0].startswith("fairseq-")]


@pytest.mark.parametrize(("readme", "command"), FAIRSEQ)
def test_fairseq_commands_name_registered_components(readme: str, command: str) -> None:
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


@pytest.mark.parametrize(("readme", "command"),
                         [(r, c) for r, c in FAIRSEQ if "--valid-subset" in _argv(c) or "--gen-subset" in _argv(c)])
def test_evaluated_splits_are_made_by_the_recipe(readme: str, command: str) -> None:
    """A split given to fairseq-validate / fairseq-generate is one the same README makes (a manifest
    or labels copied or written under that name, or an lm-data split)."""
    argv = _argv(command)
    flag = "--valid-subset" if "--valid-subset" in argv else "--gen-subset"
    others = " ".join(c for r, c in ALL_COMMANDS if r == readme and c != command)
    for split in argv[argv.index(flag) + 1].split(","):
        made = re.search(rf"\b{re.escape(split)}\.(tsv|phn|km)\b", others) or re.search(
            rf"--splits\b[^-]*\b{re.escape(split)}\b", others)
        assert made, f"{readme}: {command} evaluates split {split!r}, which the recipe never makes"


def test_a_hanging_test_fails_with_its_stack(tmp_path: Path) -> None:
    """The test command's per-test time limit (pytest.ini): a deadlock ends the run, stacks printed."""
    (tmp_path / "test_hang.py").write_text(
        "import threading\n\n\ndef test_deadlock():\n    lock = threading.Lock()\n    lock.acquire()\n"
        "    lock.acquire()  # waits forever on itself\n"
    )
    proc = subprocess.run([sys.executable, "-m", "pytest", "-c", str(REPO / "pytest.ini"), "--rootdir", str(tmp_path),
                           "-p", "no:cacheprovider", "-o", "timeout=2", str(tmp_path / "test_hang.py")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Timeout" in out and "lock.acquire()  # waits forever" in out, out[-3000:]
