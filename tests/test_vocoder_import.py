"""``vocoder-import``: unit-hifigan ``UnitVocoder`` files -> fairseq vocoder.

The source files are built here (tests/released_support.py): a reference forward of unit-hifigan's
layout (written from its published architecture, modules named as unit-hifigan names them, torch's
parametrized weight norm so the saved keys are ``parametrizations.weight.original0/1``), saved as
``model.safetensors`` + ``config.json``. Exactness: max |waveform difference| between that forward and
this toolkit's loaders (``vocoder-synth``'s :class:`Vocoder`, fairseq's ``CodeHiFiGANVocoder``), float32.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

from spokenlm_plugin import cli
from spokenlm_plugin.core.errors import SpokenLMError
from spokenlm_plugin.vocoder.hifigan_import import bias_fold_reach, import_vocoder
from spokenlm_plugin.vocoder.synth import Vocoder
from tests.released_support import DIM, HOP, reference

#: Allowed max |difference| (float32). Measured: 0.0 (bit-identical) except where conv_pre's input channels are
#: reordered (speakers + a built-in style / f0 bin: 6.7e-8).
TOLERANCE = 1e-5
#: Units of the reference vocoder (N_UNITS = 12 of them).
UNITS = [3, 3, 7, 0, 11, 11, 11, 5, 2, 9, 4, 4, 1, 6, 8, 10]


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


def _fairseq_wav(folder: Path, units: list[int], speaker: int | None = None) -> np.ndarray:
    from fairseq.models.text_to_speech.vocoder import CodeHiFiGANVocoder

    cfg = json.loads((folder / "config.json").read_text())
    vocoder = CodeHiFiGANVocoder(str(folder / "vocoder.pt"), cfg)
    x = {"code": torch.tensor([units])}
    if speaker is not None:
        x["spkr"] = torch.tensor([[speaker]])
    with torch.no_grad():
        return vocoder(x).numpy()


# ------------------------------------------------------------------ exactness


def test_single_speaker_equals_reference(tmp_path: Path) -> None:
    ref = reference()
    import_vocoder(ref.save(tmp_path / "src"), tmp_path / "out")
    expected = ref(UNITS)
    assert expected.shape == (len(UNITS) * HOP,) and 0.05 < np.abs(expected).max() < 0.99
    vocoder = Vocoder.load(tmp_path / "out" / "vocoder.pt", tmp_path / "out" / "config.json")
    assert not vocoder.cfg.multispkr and vocoder.cfg.embedding_dim == DIM
    assert _max_diff(vocoder(UNITS), expected) < TOLERANCE
    assert _max_diff(_fairseq_wav(tmp_path / "out", UNITS), expected) < TOLERANCE


def test_speakers_kept_by_name(tmp_path: Path) -> None:
    ref = reference(1, speakers=["alice", "bob"])
    import_vocoder(ref.save(tmp_path / "src") / "model.safetensors", tmp_path / "out")
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["speakers"] == ["alice", "bob"] and cfg["num_speakers"] == 2 and cfg["multispkr"]
    vocoder = Vocoder.load(tmp_path / "out" / "vocoder.pt", tmp_path / "out" / "config.json")
    bob = vocoder.speaker_index("bob")
    assert bob == 1
    expected = ref(UNITS, speaker=1)
    assert _max_diff(expected, ref(UNITS, speaker=0)) > 1e-3  # the speakers differ
    assert _max_diff(vocoder(UNITS, speaker=bob), expected) < TOLERANCE
    assert _max_diff(_fairseq_wav(tmp_path / "out", UNITS, speaker=bob), expected) < TOLERANCE


@pytest.mark.parametrize("speakers", [None, ["alice", "bob"]])
def test_style_and_f0_built_into_the_unit_table_exactly(tmp_path: Path, speakers: list[str] | None) -> None:
    """--fold table: exact everywhere, the first and last frames included."""
    ref = reference(2, speakers=speakers, styles=["read", "happy", "whisper"], f0_bins=[0, 1, 2, 3])
    import_vocoder(ref.save(tmp_path / "src"), tmp_path / "out", style="happy", f0_bin="2")
    vocoder = Vocoder.load(tmp_path / "out" / "vocoder.pt", tmp_path / "out" / "config.json")
    spk = {"speaker": 1} if speakers else {}
    expected = ref(UNITS, style=1, f0=2, **spk)
    assert _max_diff(expected, ref(UNITS, style=2, f0=2, **spk)) > 1e-3  # the styles differ
    got = vocoder(UNITS, speaker=1 if speakers else None)
    assert _max_diff(got, expected) < TOLERANCE
    assert _max_diff(_fairseq_wav(tmp_path / "out", UNITS, speaker=1 if speakers else None), expected) < TOLERANCE


def test_style_folded_into_the_bias_is_exact_away_from_the_edges(tmp_path: Path) -> None:
    """--fold bias: conv_pre's zero padding hides part of the style in its first / last 3 frames; that
    difference reaches at most :func:`bias_fold_reach` samples into the waveform (0.40 s at each end
    for unit-hifigan's layout), and none beyond."""
    ref = reference(1, speakers=["alice", "bob"], styles=["read", "happy"], f0_bins=[0, 1])
    import_vocoder(ref.save(tmp_path / "src"), tmp_path / "out", style="happy", f0_bin="0", fold="bias")
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["embedding_dim"] == DIM and cfg["model_in_dim"] == 2 * DIM  # the published shape
    vocoder = Vocoder.load(tmp_path / "out" / "vocoder.pt", tmp_path / "out" / "config.json")
    reach = bias_fold_reach(vocoder.cfg)
    assert reach == 6418
    units = UNITS * 4  # 20480 samples: 3644 of them beyond the reach of both ends
    diff = np.abs(vocoder(units, speaker=1) - ref(units, speaker=1, style=1, f0=0))
    assert diff[:HOP].max() > 1e-3 and diff[-HOP:].max() > 1e-3  # the edges do differ
    assert diff[reach:-reach].max() < TOLERANCE  # exact beyond the reach


# ------------------------------------------------------------------ one-line refusals


def _refused(tmp_path: Path, source: Path, *, style: str | None = None) -> str:
    """Import through the module: a SpokenLMError with a one-line message, and nothing written."""
    with pytest.raises(SpokenLMError) as e:
        import_vocoder(source, tmp_path / "out", style=style)
    assert len(str(e.value).splitlines()) == 1, str(e.value)
    assert not (tmp_path / "out").exists()
    return str(e.value)


def test_hubert_safetensors_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "hubert"
    folder.mkdir()
    save_file({"model.wav2vec2.feature_extractor.conv_layers.0.conv.weight": torch.zeros(4, 1, 10),
               "aux.weight": torch.zeros(40, 8), "aux.bias": torch.zeros(40)}, folder / "model.safetensors")
    for config in ({"num_classes": 40}, {"n_units": 40}):  # its own config, or even a lookalike one
        (folder / "config.json").write_text(json.dumps(config))
        err = _refused(tmp_path, folder / "model.safetensors")
        assert "HuBERT" in err and "convert-hubert" in err and str(folder / "model.safetensors") in err


def test_missing_config_is_refused(tmp_path: Path) -> None:
    src = reference().save(tmp_path / "src")
    (src / "config.json").unlink()
    err = _refused(tmp_path, src)
    assert str(src / "config.json") in err and "--config" in err


def test_style_model_needs_style(tmp_path: Path) -> None:
    src = reference(styles=["read", "happy"]).save(tmp_path / "src")
    err = _refused(tmp_path, src)
    assert "--style" in err and "read, happy" in err
    err = _refused(tmp_path, src, style="angry")
    assert "--style angry" in err and "read, happy" in err
    assert "drop --style" in _refused(tmp_path, reference().save(tmp_path / "plain"), style="read")


def test_other_files_are_refused(tmp_path: Path) -> None:
    src = reference(speakers=["a", "b"]).save(tmp_path / "src")
    # a torch pickle named as the weights
    torch.save({"generator": {}}, tmp_path / "vocoder.pt")
    (tmp_path / "config.json").write_text((src / "config.json").read_text())
    assert "not a readable safetensors file" in _refused(tmp_path, tmp_path / "vocoder.pt")
    # a cut-short file
    data = (src / "model.safetensors").read_bytes()
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "model.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "cut" / "config.json").write_text((src / "config.json").read_text())
    assert "cut short" in _refused(tmp_path, tmp_path / "cut")
    # a config that is not this model's
    cfg = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**cfg, "speakers": ["a", "b", "c"]}))
    assert "3 speakers" in _refused(tmp_path, src)
    (src / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    assert "no integer n_units" in _refused(tmp_path, src)


# ------------------------------------------------------------------ the command


def test_cli_import_then_synth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = reference(4, speakers=["alice", "bob"], styles=["read", "happy"])
    src = ref.save(tmp_path / "src")
    out = tmp_path / "out"
    assert cli.main(["vocoder-import", "--source", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spokenlm vocoder-import: error: ") and "read, happy" in err and len(err.splitlines()) == 1
    assert cli.main(["vocoder-import", "--source", str(src), "--out", str(out), "--style", "read"]) == 0
    (tmp_path / "u.km").write_text(" ".join(map(str, UNITS)) + "\n")
    assert cli.main(["vocoder-synth", "--vocoder", str(out / "vocoder.pt"), "--config", str(out / "config.json"),
                     "--units", str(tmp_path / "u.km"), "--out", str(tmp_path / "wav"), "--speaker", "bob",
                     "--no-progress"]) == 0
    wav, sr = sf.read(tmp_path / "wav" / "000001.wav", dtype="float32")
    assert sr == 16_000
    assert _max_diff(wav, ref(UNITS, speaker=1, style=0)) <= 2.0**-15 + TOLERANCE  # 16-bit PCM

