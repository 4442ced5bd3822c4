"""README "Using the paper's released models": its commands run, in order, on same-format files.

The section's one bash block is read from README.md and every command in it is run as a user runs
it (the venv's ``spokenlm`` / ``fairseq-train``, ``OMP_NUM_THREADS=1``) in a fresh folder that holds
what the block expects (nothing is downloaded):

- ``released/main``: a HuBERTPhoneme (``model.safetensors`` + ``config.json``) of HuBERT Base's width
  with :data:`~tests.released_support.LAYERS` transformer layers (the paper's has 12);
- ``released/kmeans/km500-ft100h-l12.joblib``: a fairseq-recipe MiniBatchKMeans fitted on that
  model's last layer, and ``km500-base-l11.joblib`` one fitted on layer 11 of ``hubert_base_ls960.pt``
  (a tiny 11-layer fairseq HuBERT), both pickled as numpy 2 / scikit-learn 1.5.2 write them;
- ``released/vocoder-base-l11``: a narrow unit-hifigan ``UnitVocoder`` with as many units as that
  k-means has clusters;
- ``data/``: the committed corpus (``corpus_dir``) and lexical pairs (``pairs_dir``) in the Quick
  tour's names (``data/dev.tsv`` = the corpus' valid split, ``data/train.tsv`` its first train rows).

Only sizes change (:data:`SMALLER`): ``--layer 12`` reads the test model's last layer, and trainings
stop after 2 updates. Option names are the README's, so a renamed flag, subcommand or output fails
here (each command must exit 0 and write the outputs it names).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from spokenlm_plugin.cli import OUTPUT_OPTIONS
from spokenlm_plugin.core.audio import read_audio
from spokenlm_plugin.core.io import read_manifest
from tests.conftest import REPO, run_cli
from tests.released_support import LAYERS, dump_as_released, fairseq_kmeans, make_paper, reference, save_paper
from tests.units_support import make_hubert_checkpoint

SECTION = "## Using the paper's released models"
#: README value -> this test's, per option: the HuBERTPhoneme here has LAYERS layers, and a training
#: of 2 updates shows that fairseq-train runs (tri_stage needs 2: its decay phase is max_update // 2).
SMALLER: dict[str, dict[str | None, str]] = {"--layer": {"12": str(LAYERS)}, "--max-update": {None: "2"}}
#: What the section covers: each of these runs at least once.
STEPS = {"convert-hubert", "dump-features", "abx", "kmeans", "unit-quality", "lm-data", "fairseq-train", "lm-score",
         "vocoder-import", "vocoder-synth", "resynth-eval"}
#: Output options of spokenlm (cli.OUTPUT_OPTIONS) and of fairseq-train.
OUTPUTS = {"--" + name.replace("_", "-") for name in OUTPUT_OPTIONS} | {"--save-dir"}
K_FT, K_BASE = 16, 12  # clusters of the two k-means (the released ones have 500)
TRAIN_ROWS = 6  # utterances of data/train.tsv (fine-tuning and LM data)


def section_commands(readme: str) -> list[str]:
    """The commands of the section's single bash block (continuations joined, comments dropped)."""
    assert SECTION in readme, f"README.md has no section {SECTION!r}"
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, f"{SECTION}: {len(blocks)} bash blocks, expected one"
    lines = re.sub(r"\\\n\s*", " ", blocks[0]).splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def smaller(argv: list[str], used: set[str]) -> list[str]:
    """``argv`` with :data:`SMALLER`'s values; records the options it changed in ``used``."""
    out = list(argv)
    for i, word in enumerate(out[:-1]):
        values = SMALLER.get(word, {})
        new = values.get(out[i + 1], values.get(None))  # None: whatever the README's value
        if new is not None:
            out[i + 1] = new
            used.add(word)
    return out


# ------------------------------------------------------------------ the files the block starts from


def _copy_lines(src: Path, dst: Path, rows: int | None = None, *, header: bool = False) -> None:
    lines = src.read_text().splitlines()
    if rows is not None:
        lines = lines[:rows + header]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(lines) + "\n")


def make_data(corpus: Path, pairs: Path, data: Path) -> None:
    """The Quick tour's ``data/`` from the committed corpus and pairs (manifests already relocated)."""
    manifests, labels = corpus / "manifests", corpus / "labels"
    _copy_lines(manifests / "train.tsv", data / "train.tsv", TRAIN_ROWS, header=True)
    _copy_lines(labels / "train.phn", data / "train.phn", TRAIN_ROWS)
    for split, name in (("valid", "valid"), ("valid", "dev"), ("test", "test")):
        shutil.copy(manifests / f"{split}.tsv", data / f"{name}.tsv")
        shutil.copy(labels / f"{split}.phn", data / f"{name}.phn")
    shutil.copy(labels / "dict.phn.txt", data / "dict.phn.txt")
    shutil.copy(corpus / "items" / "valid.triphone.item", data / "dev.triphone.item")
    shutil.copy(pairs / "manifests" / "lexical.tsv", data / "lexical.tsv")
    (data / "lexical").mkdir()
    shutil.copy(pairs / "lexical" / "gold.csv", data / "lexical" / "gold.csv")


def _audio(manifest: Path) -> list[torch.Tensor]:
    rows = read_manifest(manifest)
    return [torch.from_numpy(read_audio(rows.path(row))) for row in rows.rows]


def make_released(work: Path) -> None:
    """``released/{main,kmeans,vocoder-base-l11}`` and ``hubert_base_ls960.pt``, in their formats."""
    from spokenlm_plugin.units.encoder import DenseModel

    paper = make_paper(rows=40)
    save_paper(paper, work / "released" / "main")
    (work / "released" / "kmeans").mkdir()
    # The paper fitted km500-ft100h-l12 on train-clean-100 features of the model's last layer.
    train = _audio(work / "data" / "train.tsv")
    feats = np.concatenate([paper.layers(wav)[LAYERS - 1].numpy() for wav in train])
    dump_as_released(fairseq_kmeans(feats, K_FT), work / "released" / "kmeans" / "km500-ft100h-l12.joblib")

    base = make_hubert_checkpoint(work / "hubert_base_ls960.pt", layers=11)
    dense = DenseModel.from_checkpoint(base, layer=11, device="cpu")
    feats = np.concatenate([dense(wav).numpy() for wav in train])
    dump_as_released(fairseq_kmeans(feats, K_BASE), work / "released" / "kmeans" / "km500-base-l11.joblib")
    reference(n_units=K_BASE).save(work / "released" / "vocoder-base-l11")


# ------------------------------------------------------------------ the test


def _outputs(argv: list[str]) -> list[Path]:
    return [Path(argv[i + 1]) for i, word in enumerate(argv[:-1]) if word in OUTPUTS]


def _written(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0 or path.is_dir() and any(path.iterdir())


def test_section_names_every_step() -> None:
    """The block covers the issue's path (released files -> ABX, units, LM scoring, resynthesis, export)
    with the programs this test can run."""
    commands = [shlex.split(c) for c in section_commands((REPO / "README.md").read_text())]
    assert {argv[0] for argv in commands} <= {"spokenlm", "fairseq-train"}, commands
    assert STEPS <= {argv[1] if argv[0] == "spokenlm" else argv[0] for argv in commands}
    text = " ".join(" ".join(argv) for argv in commands)
    for name in ("released/main", "km500-ft100h-l12.joblib", "km500-base-l11.joblib", "released/vocoder-base-l11",
                 "--to hubert-phoneme", "--mcd both"):
        assert name in text, name


@pytest.mark.slow  # 23 subprocesses (a Base-width model, two fairseq-train runs): minutes on 2 CPU cores
def test_readme_released_models_commands_run(corpus_dir: Path, pairs_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    make_data(corpus_dir, pairs_dir, work / "data")
    make_released(work)
    (work / "spokenlm_plugin").symlink_to(REPO / "spokenlm_plugin")  # --user-dir spokenlm_plugin: run from the root

    used: set[str] = set()
    for command in section_commands((REPO / "README.md").read_text()):
        argv = smaller(shlex.split(command), used)
        run_cli(*argv, cwd=work, env={"OMP_NUM_THREADS": "1"})
        for out in _outputs(argv):
            assert _written(work / out), f"{command}: wrote nothing at {out}"
    assert used == set(SMALLER), f"options of SMALLER the README no longer has: {set(SMALLER) - used}"

    # A few results, beyond "it ran": units for every row, a complete export, both MCDs.
    dev_rows = len(read_manifest(work / "data" / "dev.tsv").rows)
    assert len((work / "units" / "dev.km").read_text().splitlines()) == dev_rows
    exported = next(p for p in (work / "exported").iterdir() if p.is_dir())
    assert {p.name for p in exported.iterdir()} == {"model.safetensors", "config.json"}
    resynth = json.loads(next(work.glob("resynth*.json")).read_text())
    assert {"mcd", "mcd_sptk"} <= set(resynth["total"]), resynth["total"]
