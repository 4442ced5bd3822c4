"""The ``spokenlm`` command line stays fast: ``--help`` of every subcommand and argument errors load
neither torch nor fairseq (seconds each). (Commands that run, and so register the plugin, are
tested by every stage's tests.)"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from spokenlm_plugin.cli import SUBCOMMANDS
from tests.conftest import run_cli

#: Modules that take a second or more to import; building any subcommand's parser must not need them.
HEAVY = ("torch", "torchaudio", "fairseq", "scipy.signal", "sklearn", "fastabx", "matplotlib")

#: A fresh interpreter that poses as the console script (``spokenlm_plugin`` defers fairseq's
#: registration only there), builds each subcommand's parser and help text, and reports which heavy
#: modules each one pulled in.
_PROBE = f"""
import json, sys
sys.argv[0] = "spokenlm"
from spokenlm_plugin import cli
loaded = {{}}
for name in cli.SUBCOMMANDS:
    cli.build_parser([name]).format_help()  # imports the subcommand's module, runs configure_parser
    loaded[name] = sorted(m for m in {HEAVY!r} if m in sys.modules)
print(json.dumps(loaded))
"""


def test_no_subcommand_parser_imports_torch_or_fairseq() -> None:
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    loaded = json.loads(proc.stdout)
    assert list(loaded) == list(SUBCOMMANDS)
    # Modules accumulate in one process: the first subcommand listing a module is the one importing it.
    assert all(not mods for mods in loaded.values()), loaded


def test_help_of_every_subcommand_is_fast() -> None:
    """The console script itself, one process per subcommand; the bound is generous (measured ~0.2 s
    on a busy 2-core machine, against 1.3-4 s when torch or fairseq loaded with the module)."""
    slow = {}
    for name in SUBCOMMANDS:
        start = time.perf_counter()
        proc = run_cli("spokenlm", name, "--help")
        seconds = time.perf_counter() - start
        assert proc.stdout.startswith(f"usage: spokenlm {name}"), proc.stdout[:200]
        if seconds > 2.0:
            slow[name] = round(seconds, 2)
    assert not slow, f"spokenlm COMMAND --help took more than 2 s: {slow}"


def test_argument_error_is_one_usage_line_without_fairseq() -> None:
    proc = run_cli("spokenlm", "dump-features", "--layer", "3", check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].startswith("spokenlm dump-features: error: the following arguments are required")
    assert "Traceback" not in proc.stderr and "fairseq" not in proc.stderr

