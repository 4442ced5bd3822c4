"""Bad inputs to the vocoder commands: one line on stderr naming the file (and line), exit 2,
no traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from spokenlm_plugin import cli
from spokenlm_plugin.core.io import read_manifest
from spokenlm_plugin.vocoder.synth import Vocoder

from .conftest import run_cli
from .vocoder_support import K, phone_km, tiny_train


@pytest.fixture(scope="module")
def setup(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("vocoder_errors")
    km = phone_km(corpus_dir, work / "km")
    tiny_train(corpus_dir, km["train"], work / "voc", steps=1)
    tiny_train(corpus_dir, km["train"], work / "multi", steps=1, multispeaker=True)
    return {"work": work, **km, "vocoder": work / "voc" / "vocoder.pt", "config": work / "voc" / "config.json",
            "multi": work / "multi", "test_tsv": corpus_dir / "manifests" / "test.tsv",
            "train_tsv": corpus_dir / "manifests" / "train.tsv", "corpus": corpus_dir}


def _error(capsys: pytest.CaptureFixture, *argv: str) -> str:
    code = cli.main(list(argv))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _synth(setup: dict[str, Path], units: Path, *extra: str) -> list[str]:
    return ["vocoder-synth", "--vocoder", str(setup["vocoder"]), "--config", str(setup["config"]),
            "--units", str(units), "--out", str(setup["work"] / "wavs"), "--no-progress", *extra]


def test_unit_outside_the_embedding_table(setup, capsys, tmp_path) -> None:
    bad = tmp_path / "bad.km"
    bad.write_text("1 2 3\n4 5 99\n")
    err = _error(capsys, *_synth(setup, bad))
    assert f"{bad}:2" in err and "99" in err


def test_empty_unit_line(setup, capsys, tmp_path) -> None:
    bad = tmp_path / "empty.km"
    bad.write_text("1 2 3\n\n4 5\n")
    assert f"{bad}:2" in _error(capsys, *_synth(setup, bad))


def test_km_rows_differ_from_the_manifest(setup, capsys, tmp_path) -> None:
    short = tmp_path / "short.km"
    short.write_text("".join(setup["test"].read_text().splitlines(keepends=True)[:-1]))
    err = _error(capsys, *_synth(setup, short, "--manifest", str(setup["test_tsv"])))
    assert str(short) in err and "rows" in err
    err = _error(capsys, "vocoder-train", "--manifest", str(setup["train_tsv"]), "--units", str(short),
                 "--num-units", str(K), "--out", str(tmp_path / "v"), "--steps", "1", "--no-progress")
    assert str(short) in err


def test_units_of_another_length_than_the_audio(setup, capsys, tmp_path) -> None:
    lines = setup["train"].read_text().splitlines()
    lines[3] = " ".join(lines[3].split()[: len(lines[3].split()) // 2])
    halved = tmp_path / "halved.km"
    halved.write_text("\n".join(lines) + "\n")
    err = _error(capsys, "vocoder-train", "--manifest", str(setup["train_tsv"]), "--units", str(halved),
                 "--num-units", str(K), "--out", str(tmp_path / "v"), "--steps", "1", "--no-progress")
    assert f"{halved}:4" in err


def test_checkpoint_that_is_not_a_vocoder(setup, capsys, tmp_path) -> None:
    not_vocoder = tmp_path / "model.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "cfg": None}, not_vocoder)
    err = _error(capsys, "vocoder-synth", "--vocoder", str(not_vocoder), "--config", str(setup["config"]),
                 "--units", str(setup["test"]), "--out", str(tmp_path / "w"))
    assert str(not_vocoder) in err and "not a vocoder" in err
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    assert str(text) in _error(capsys, *_synth(setup, setup["test"])[:2], str(text), "--config",
                               str(setup["config"]), "--units", str(setup["test"]), "--out", str(tmp_path / "w"))
    # a vocoder with the config of another one (other K): keys fit, shapes do not
    other = tmp_path / "other.json"
    other.write_text(setup["config"].read_text().replace(f'"num_embeddings": {K}', '"num_embeddings": 500'))
    err = _error(capsys, "vocoder-synth", "--vocoder", str(setup["vocoder"]), "--config", str(other),
                 "--units", str(setup["test"]), "--out", str(tmp_path / "w"))
    assert "dict.weight" in err


def test_audio_at_another_sample_rate(setup, capsys, tmp_path) -> None:
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    for utt in read_manifest(setup["test_tsv"]).utt_ids:
        sf.write(wavs / f"{utt}.wav", np.zeros(8000, dtype=np.float32), 8000)
    err = _error(capsys, "resynth-eval", "--manifest", str(setup["test_tsv"]), "--wavs", str(wavs))
    assert "8000 Hz" in err and str(wavs) in err


def test_unknown_speaker(setup, capsys) -> None:
    multi = setup["multi"]
    args = ["vocoder-synth", "--vocoder", str(multi / "vocoder.pt"), "--config", str(multi / "config.json"),
            "--units", str(setup["test"]), "--out", str(setup["work"] / "w"), "--no-progress"]
    err = _error(capsys, *args, "--speaker", "nobody")
    assert "nobody" in err and "awb-a" in err
    assert "--speaker" in _error(capsys, *args)
    known = Vocoder.load(multi / "vocoder.pt", multi / "config.json").cfg.speakers[0]
    assert cli.main([*args, "--speaker", known]) == 0


def test_resume_with_other_options_is_refused(setup, capsys, tmp_path) -> None:
    out = tmp_path / "v"
    shutil.copytree(setup["vocoder"].parent, out)
    err = _error(capsys, "vocoder-train", "--manifest", str(setup["train_tsv"]), "--units", str(setup["train"]),
                 "--num-units", str(K), "--out", str(out), "--steps", "2", "--channels", "64", "--no-progress")
    assert "train_state.pt" in err


def test_cli_error_is_one_line_in_a_real_process(setup, tmp_path) -> None:
    bad = tmp_path / "bad.km"
    bad.write_text("1 2 x\n")
    proc = run_cli("spokenlm", *_synth(setup, bad), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and f"{bad}:1" in proc.stderr


def test_durations_without_a_duration_predictor(setup, capsys, tmp_path) -> None:
    """Deduplicated units need the duration predictor: vocoder-synth --durations and the joint LM's
    voicing (sutlm-generate --vocoder) refuse a vocoder trained without one."""
    from spokenlm_plugin.core.errors import ConfigError
    from spokenlm_plugin.sutlm.generate import voice

    assert not Vocoder.load(setup["vocoder"], setup["config"]).predicts_durations
    units = tmp_path / "u.km"
    units.write_text("1 2 3\n")
    assert "no duration predictor" in _error(capsys, *_synth(setup, units, "--durations"))
    with pytest.raises(ConfigError, match="no duration predictor"):
        voice(setup["vocoder"], setup["config"], [([], [1, 2, 3])], tmp_path / "wav")
    assert not (tmp_path / "wav").exists()
