"""Scaling out on fairseq's own machinery, on CPU: ``fairseq-train --distributed-world-size 2``
(gloo, one process per rank, as a cluster scheduler starts them) trains the plugin's phoneme
classifier and a unit LM with each rank on its own part of the data, and the result loads; a
feature dump split over two processes equals one run, and ``kmeans fit`` reads every shard."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spokenlm_plugin import cli
from spokenlm_plugin.core.km import write_km
from tests.conftest import REPO, VENV_BIN
from tests.finetune_support import frame_args
from tests.ulm_support import K, markov_units, train_args
from tests.units_support import make_hubert_checkpoint, write_noise_corpus

pytestmark = pytest.mark.slow

#: fairseq-train with one observation added: every rank appends the ids of the samples it trains
#: on (one line per update; dummy batches, which a rank with fewer batches trains at weight 0, are
#: empty) to ``$SPOKENLM_TEST_IDS.<rank>``. Everything else is fairseq's own ``cli_main``.
_RECORDING_TRAIN = """
import os, sys
import fairseq.trainer

_step = fairseq.trainer.Trainer.train_step

def train_step(self, samples, raise_oom=False):
    ids = [int(i) for s in samples if s for i in s["id"].tolist()]
    with open(f"{os.environ['SPOKENLM_TEST_IDS']}.{self.data_parallel_rank}", "a") as f:
        f.write(" ".join(map(str, ids)) + "\\n")
    return _step(self, samples, raise_oom)

fairseq.trainer.Trainer.train_step = train_step
from fairseq_cli.train import cli_main
sys.argv[0] = "fairseq-train"
cli_main()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_two_ranks(args: list[str], ids: Path, *, timeout: float = 600) -> list[list[list[int]]]:
    """Run ``fairseq-train ARGS`` as ranks 0 and 1 of a 2-process gloo group on this machine, the
    way a scheduler starts one process per rank; return each rank's sample ids per update."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "SPOKENLM_TEST_IDS": str(ids)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RECORDING_TRAIN, *args, "--cpu", "--distributed-world-size", "2",
             "--distributed-rank", str(rank), "--distributed-backend", "gloo", "--distributed-no-spawn",
             "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--ddp-backend", "legacy_ddp"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
        for rank in (0, 1)
    ]
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"rank {rank} exited {p.returncode}\n{out[-4000:]}"
    return [[[int(x) for x in line.split()] for line in Path(f"{ids}.{r}").read_text().splitlines()]
            for r in (0, 1)]


def _check_disjoint(per_rank: list[list[list[int]]], *, total: int) -> None:
    """Each update, every rank trains on a batch of its own; over an epoch the two ranks' samples
    are disjoint and together cover the split (fairseq's sharded epoch iterator)."""
    assert len(per_rank[0]) == len(per_rank[1]) > 0  # ranks step together (gradients are all-reduced)
    seen = [{i for batch in rank for i in batch} for rank in per_rank]
    assert seen[0] and seen[1] and not seen[0] & seen[1], seen
    assert seen[0] | seen[1] == set(range(total))


def test_phoneme_frame_cls_on_two_ranks(corpus, tiny_base, tmp_path):
    from spokenlm_plugin.finetune.evaluate import load_frame_classifier

    base = tmp_path / "base.pt"
    shutil.copy(tiny_base, base)
    # One epoch: the train split once, each rank its half.
    train_rows = len((corpus / "manifests" / "train.tsv").read_text().splitlines()) - 1
    args = frame_args(corpus, base, tmp_path / "ckpt", max_update=1000)[1:]
    args += ["--max-epoch", "1", "--freeze-finetune-updates", "0", "--disable-validation"]
    per_rank = _train_two_ranks(args, tmp_path / "ids")
    _check_disjoint(per_rank, total=train_rows)

    base.unlink()  # the checkpoint is self-contained
    model, task = load_frame_classifier(tmp_path / "ckpt" / "checkpoint_last.pt")
    state = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert state["optimizer_history"][-1]["num_updates"] == len(per_rank[0])
    with torch.no_grad():
        out = model(torch.randn(1, 16_000), torch.zeros(1, 16_000, dtype=torch.bool))
    assert out["logits"].shape == (1, 49, len(task.phones))


def test_unit_lm_on_two_ranks(tmp_path):
    from spokenlm_plugin.ulm.score import load_unit_lm, sequence_logprobs

    rows = markov_units(np.random.default_rng(0), 120)
    (tmp_path / "km").mkdir()
    write_km(tmp_path / "km" / "train.km", rows[:100])
    write_km(tmp_path / "km" / "valid.km", rows[100:])
    assert cli.main(["lm-data", "--units-dir", str(tmp_path / "km"), "--splits", "train", "valid",
                     "--out", str(tmp_path / "bin"), "--vocab-size", str(K)]) == 0
    # --sample-break-mode eos: one sample per utterance, so sample ids are train.km line numbers.
    args = train_args(tmp_path / "bin", tmp_path / "ckpt", "unit_lstm_lm_small", "--decoder-embed-dim", "16",
                      "--decoder-hidden-size", "32", "--decoder-out-embed-dim", "16")[1:]
    args[args.index("--sample-break-mode") + 1] = "eos"
    args[args.index("--max-update") + 1] = "1000"
    args += ["--max-epoch", "1", "--max-tokens", "256"]
    per_rank = _train_two_ranks(args, tmp_path / "ids")
    _check_disjoint(per_rank, total=100)

    model, task = load_unit_lm(tmp_path / "ckpt" / "checkpoint_last.pt")
    logprobs, counts = sequence_logprobs(model, task.source_dictionary, rows[100:])
    assert np.all(np.isfinite(logprobs)) and counts.tolist() == [len(r) + 1 for r in rows[100:]]


@pytest.fixture(scope="module")
def dump_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist_dump")
    lengths = [16000, 12345, 8000, 7999, 400, 23000, 5120, 30000, 2000, 16000, 9000]
    return make_hubert_checkpoint(d / "base.pt"), write_noise_corpus(d / "noise", lengths)


def test_dump_shards_from_two_processes_equal_one_run_and_kmeans_reads_all(dump_inputs, tmp_path):
    checkpoint, manifest = dump_inputs
    common = ["--checkpoint", str(checkpoint), "--layer", "2", "--manifest", str(manifest), "--no-progress",
              "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    exe = str(VENV_BIN / "spokenlm")
    jobs = [subprocess.Popen([exe, "dump-features", *common, "--out", str(tmp_path / "two"), "--nshard", "2",
                              "--rank", str(r)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for r in (0, 1)]
    one = subprocess.run([exe, "dump-features", *common, "--out", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True)
    for p in jobs:
        out = p.communicate(timeout=600)[0]
        assert p.returncode == 0, out
    assert one.returncode == 0, one.stderr
    split = manifest.stem
    whole = np.load(tmp_path / "one" / f"{split}_0_1.npy")
    parts = [np.load(tmp_path / "two" / f"{split}_{r}_2.npy") for r in (0, 1)]
    assert len(parts[0]) and len(parts[1])
    # Equal up to float summation order: a shard batches its utterances among fewer neighbours.
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5, atol=1e-5)
    lens = [(tmp_path / "two" / f"{split}_{r}_2.len").read_text() for r in (0, 1)]
    assert lens[0] + lens[1] == (tmp_path / "one" / f"{split}_0_1.len").read_text()

    # k-means over the two shards is k-means over every frame of both: the same centroids as over
    # their concatenation written as one shard.
    (tmp_path / "cat").mkdir()
    np.save(tmp_path / "cat" / f"{split}_0_1.npy", np.concatenate(parts))
    (tmp_path / "cat" / f"{split}_0_1.len").write_text(lens[0] + lens[1])
    for name, nshard in (("cat", 1), ("two", 2)):
        assert cli.main(["kmeans", "fit", "--features", str(tmp_path / name), "--split", split,
                         "--nshard", str(nshard), "--k", "5", "--out", str(tmp_path / f"{name}.npy"),
                         "--device", "cpu"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "two.npy"), np.load(tmp_path / "cat.npy"))
    # ... and a shard left out is an error, not a fit on half the data.
    (tmp_path / "two" / f"{split}_1_2.npy").unlink()
    assert cli.main(["kmeans", "fit", "--features", str(tmp_path / "two"), "--split", split, "--nshard", "2",
                     "--k", "5", "--out", str(tmp_path / "half.npy"), "--device", "cpu"]) == 2
