"""`spokenlm abx` is fastabx's ZeroSpeech ABX: equal to `fastabx` / `zerospeech_abx` on the same inputs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fastabx import zerospeech_abx

from spokenlm_plugin.cli import main
from spokenlm_plugin.core.errors import FeatureError
from spokenlm_plugin.core.io import read_manifest
from spokenlm_plugin.core.phones import num_frames
from spokenlm_plugin.units.abx import abx, abx_units
from spokenlm_plugin.core.audio import read_audio
from spokenlm_plugin.core.km import write_km
from spokenlm_plugin.units.kmeans import assign_units, fit_kmeans
from tests.conftest import run_cli

ZEROSPEECH = {"max_size_group": 10, "max_x_across": 5, "distance": "angular", "frequency": 50, "progress": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def log_mel(wav: np.ndarray) -> np.ndarray:
    """40 log-mel energies at 50 Hz with HuBERT's framing (400-sample window, 320 hop, no centring),
    so an utterance has exactly num_frames(n) frames: features that do separate phones."""
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=400, hop_length=320, n_mels=40, center=False)
    return torch.log(mel(torch.from_numpy(wav)) + 1e-6).T.contiguous().numpy()


@pytest.fixture(scope="module")
def feats(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> dict[str, Path]:
    """Per-utterance log-mel features (.npy, and the same as .pt) of the train split (the largest: 6
    speakers, about 1000 triphone items), and k-means units."""
    d = tmp_path_factory.mktemp("abx")
    manifest_path = corpus_dir / "manifests" / "train.tsv"
    manifest = read_manifest(manifest_path)
    (d / "npy").mkdir()
    (d / "pt").mkdir()
    per_utt = []
    for row in manifest.rows:
        x = log_mel(read_audio(manifest.path(row)))
        assert len(x) == num_frames(row.num_samples)
        np.save(d / "npy" / f"{row.utt_id}.npy", x)
        torch.save(torch.from_numpy(x), d / "pt" / f"{row.utt_id}.pt")
        per_utt.append(x)
    centroids = fit_kmeans(np.concatenate(per_utt), k=12, niter=10)
    np.save(d / "km.npy", centroids)
    write_km(d / "train.km", [assign_units(x, centroids) for x in per_utt])
    return {"npy": d / "npy", "pt": d / "pt", "km": d / "train.km", "centroids": d / "km.npy", "root": d,
            "manifest": manifest_path, "item": corpus_dir / "items" / "train.triphone.item",
            "phoneme_item": corpus_dir / "items" / "train.phoneme.item"}


def test_equals_the_fastabx_cli(feats: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "abx.json"
    assert main(["abx", "--features", str(feats["pt"]), "--item", str(feats["item"]), "--json", str(out)]) == 0
    ours = {r["speaker"]: r["error"] for r in json.loads(out.read_text())["results"]}
    theirs = json.loads(run_cli("fastabx", str(feats["item"]), str(feats["pt"]), "--max-size-group", "10",
                                "--max-x-across", "5", "--speaker", "across", "--output", "json", "--quiet",
                                env={"FASTABX_WITH_LIBRILIGHT_BUG": "0"}).stdout)
    assert ours["across"] == theirs["score"]
    assert ours["within"] == zerospeech_abx(feats["item"], feats["pt"], speaker="within", **ZEROSPEECH)
    assert 0.0 < ours["within"] < 0.5


def test_npy_features_and_phoneme_items(feats: dict[str, Path]) -> None:
    def load(path: Path) -> torch.Tensor:
        return torch.from_numpy(np.load(path))

    for item, context in ((feats["item"], "within"), (feats["phoneme_item"], "any")):
        ours = abx(feats["npy"], item, speaker="across", context=context)
        assert ours == zerospeech_abx(item, feats["npy"], speaker="across", context=context, feature_maker=load,
                                      extension=".npy", **ZEROSPEECH)


def test_librilight_slicing(feats: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = abx(feats["pt"], feats["item"])
    old = abx(feats["pt"], feats["item"], librilight_slicing=True)
    monkeypatch.setenv("FASTABX_WITH_LIBRILIGHT_BUG", "1")
    assert old == zerospeech_abx(feats["item"], feats["pt"], **ZEROSPEECH)
    assert old != fixed
    # The option decides, whatever the environment says, and the environment is left as it was.
    assert abx(feats["pt"], feats["item"]) == fixed
    assert os.environ["FASTABX_WITH_LIBRILIGHT_BUG"] == "1"


def test_units_onehot_and_centroids(feats: dict[str, Path], tmp_path: Path) -> None:
    """Units through the CLI equal fastabx on one-hot / centroid features written independently here."""
    units = [np.asarray(line.split(), dtype=np.int64) for line in feats["km"].read_text().splitlines()]
    utt_ids = [Path(r.split("\t")[0]).stem for r in feats["manifest"].read_text().splitlines()[1:]]
    centroids = np.load(feats["centroids"])
    for name, table in (("onehot", np.eye(len(centroids), dtype=np.float32)), ("centroids", centroids)):
        (tmp_path / name).mkdir()
        for utt, u in zip(utt_ids, units):
            torch.save(torch.from_numpy(table[u]), tmp_path / name / f"{utt}.pt")
    out = tmp_path / "units.json"
    assert main(["abx", "--units", str(feats["km"]), "--manifest", str(feats["manifest"]), "--item",
                 str(feats["item"]), "--onehot", "--speaker", "within", "--json", str(out)]) == 0
    onehot = json.loads(out.read_text())
    assert onehot["representation"] == "onehot"
    assert onehot["results"][0]["error"] == zerospeech_abx(feats["item"], tmp_path / "onehot", **ZEROSPEECH)
    assert abx_units(feats["km"], feats["manifest"], feats["item"], centroids=centroids, speaker="across") == \
        zerospeech_abx(feats["item"], tmp_path / "centroids", speaker="across", **ZEROSPEECH)


def test_bad_inputs(feats: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def cli_error(*args: str) -> str:
        assert main(["abx", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    broken = tmp_path / "broken"
    shutil.copytree(feats["npy"], broken)
    victim = sorted(broken.glob("*-*.npy"))[0]
    victim.unlink()
    assert f"(e.g. {victim.stem!r})" in cli_error("--features", str(broken), "--item", str(feats["item"]))
    x = np.load(feats["npy"] / victim.name)
    x[3, 1] = np.nan
    np.save(victim, x)
    with pytest.raises(FeatureError, match="Non-finite"):
        abx(broken, feats["item"])
    item = tmp_path / "bad.item"
    item.write_text("file onset offset\nx 0 1\n")
    assert "not a ZeroSpeech item file" in cli_error("--features", str(broken), "--item", str(item))
    short_km = tmp_path / "short.km"
    short_km.write_text("\n".join(feats["km"].read_text().splitlines()[:-1]) + "\n")
    assert "lines but" in cli_error("--units", str(short_km), "--manifest", str(feats["manifest"]),
                                    "--item", str(feats["item"]))
    assert "either --features" in cli_error("--item", str(feats["item"]))
