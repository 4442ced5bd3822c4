"""Small inputs for the LM tests (tests/test_ulm*.py, tests/test_lm_errors.py, tests/test_sutlm_cra_pool.py,
tests/test_distributed.py): Markov unit sequences over K units, the fairseq-train arguments of a
few-update LM, untrained checkpoints. The ``units`` and ``lm_data`` fixtures built from them are in
tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

K = 30  # units
D = 24  # centroid dimension
USER_DIR = str(Path(__file__).resolve().parents[1] / "spokenlm_plugin")
#: One intra-op thread: on a small shared CPU, torch's spinning threads slow training ~10x.
ENV = {"OMP_NUM_THREADS": "1"}


def markov_units(rng: np.random.Generator, n: int) -> list[list[int]]:
    """Frame-like unit sequences: a sparse Markov chain over K units, each unit repeated 1-3 times."""
    trans = rng.dirichlet(np.full(K, 0.05), size=K)
    rows = []
    for _ in range(n):
        units = [int(rng.integers(K))]
        while len(units) < rng.integers(15, 45):
            units += [int(rng.choice(K, p=trans[units[-1]]))] * int(rng.integers(1, 4))
        rows.append(units)
    return rows


def train_args(data: Path, save: Path, arch: str, *extra: str) -> list[str]:
    """``fairseq-train`` arguments of an 8-update LM of ``arch`` on the binarized ``data``, saved in ``save``."""
    return [
        "fairseq-train", str(data), "--user-dir", USER_DIR, "--task", "language_modeling", "--arch", arch,
        # ZeroSpeech 2021 baseline optimisation, with a short warm-up for a few updates
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--clip-norm", "0.0",
        "--lr-scheduler", "inverse_sqrt", "--lr", "0.002", "--warmup-updates", "2", "--warmup-init-lr", "1e-07",
        "--dropout", "0.1", "--weight-decay", "0.01", "--sample-break-mode", "none",
        "--tokens-per-sample", "128", "--max-tokens", "1024", "--max-update", "8",
        "--save-dir", str(save), "--no-epoch-checkpoints", "--log-format", "simple", "--cpu", "--seed", "1", *extra,
    ]


def untrained_checkpoint(path: Path, argv: list[str]) -> Path:
    """An untrained LM saved as fairseq-train saves it, built from fairseq-train's arguments ``argv``."""
    import torch
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf

    import spokenlm_plugin

    spokenlm_plugin.register()
    torch.manual_seed(0)
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    torch.save({
        "args": None, "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "model": model.state_dict(),
        "criterion": None, "optimizer_history": [{"criterion_name": "CrossEntropyCriterion", "optimizer_name": "Adam",
                                                  "lr_scheduler_state": {}, "num_updates": 0}],
        "task_state": {}, "extra_state": {"epoch": 1}, "last_optimizer_state": None,
    }, path)
    return path
