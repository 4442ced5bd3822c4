"""Unit vocoder: fairseq loads what the plugin writes (same waveform), training resumes exactly,
a little training beats no training on MCD, and published-format vocoders load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spokenlm_plugin.core.io import read_manifest
from spokenlm_plugin.core.audio import read_audio
from spokenlm_plugin.vocoder.checkpoint import save_vocoder
from spokenlm_plugin.vocoder.config import GeneratorConfig
from spokenlm_plugin.vocoder.data import read_unit_rows
from spokenlm_plugin.vocoder.metrics import mel_cepstral_distortion
from spokenlm_plugin.vocoder.model import SharedGenerators
from spokenlm_plugin.vocoder.synth import Vocoder, synthesize

from .conftest import run_cli
from .vocoder_support import CHANNELS, K, interrupt_at_batch, phone_km, tiny_train


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def km(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return phone_km(corpus_dir, tmp_path_factory.mktemp("km"))


def _fairseq_vocoder(checkpoint: Path, config: Path):
    from fairseq.models.text_to_speech.vocoder import CodeHiFiGANVocoder

    return CodeHiFiGANVocoder(str(checkpoint), json.loads(config.read_text()))


def test_fairseq_loads_the_plugins_vocoder_and_gives_the_same_waveform(corpus_dir, km, tmp_path) -> None:
    tiny_train(corpus_dir, km["train"], tmp_path, steps=2, mel_only=False)
    state = torch.load(tmp_path / "vocoder.pt", weights_only=True)
    assert set(state) == {"generator"}
    keys = state["generator"]
    assert any(k.endswith("weight_g") for k in keys) and any(k.endswith("weight_v") for k in keys)
    assert not any("parametrizations" in k for k in keys)
    units = read_unit_rows(km["test"], num_units=K)[0]
    ours = Vocoder.load(tmp_path / "vocoder.pt", tmp_path / "config.json")(units)
    theirs = _fairseq_vocoder(tmp_path / "vocoder.pt", tmp_path / "config.json")({"code": torch.tensor(units)[None]})
    assert len(ours) == 320 * len(units)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-6)


def test_multispeaker_duration_vocoder_loads_in_fairseq(corpus_dir, km, tmp_path) -> None:
    trained = tiny_train(corpus_dir, km["train"], tmp_path, steps=2, multispeaker=True, duration_predictor=True)
    # The predictor starts at the constant mean log duration, so its first loss is near that constant's
    # MSE (fairseq's random projection starts an order of magnitude above it).
    assert 0 < trained["duration_baseline_mse"] and trained["history"][0]["dur"] < 3 * trained["duration_baseline_mse"]
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["multispkr"] and cfg["num_speakers"] == len(cfg["speakers"]) > 1 and cfg["dur_predictor_params"]
    vocoder = Vocoder.load(tmp_path / "vocoder.pt", tmp_path / "config.json")
    dedup = [3, 7, 3, 12, 5]
    speaker = vocoder.speaker_index(cfg["speakers"][1])
    ours = vocoder(dedup, speaker=speaker, durations=True)
    theirs = _fairseq_vocoder(tmp_path / "vocoder.pt", tmp_path / "config.json")(
        {"code": torch.tensor([dedup]), "spkr": torch.tensor([[speaker]])}, dur_prediction=True)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-6)
    assert len(ours) % 320 == 0 and len(ours) >= 320 * len(dedup)


def test_published_format_vocoder_loads(tmp_path) -> None:
    """A speech-resynthesis style g_XXXXXXXX + config (extra keys, its own duration predictor
    settings), written without the plugin's exporter."""
    from fairseq.models.text_to_speech.codehifigan import CodeGenerator

    cfg = {"resblock": "1", "num_gpus": 0, "batch_size": 16, "learning_rate": 0.0002, "adam_b1": 0.8,
           "adam_b2": 0.99, "lr_decay": 0.999, "seed": 1234, "upsample_rates": [5, 4, 4, 2, 2],
           "upsample_kernel_sizes": [11, 8, 8, 4, 4], "upsample_initial_channel": 64,
           "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
           "num_embeddings": 100, "embedding_dim": 128, "model_in_dim": 128, "segment_size": 8960,
           "code_hop_size": 320, "num_mels": 80, "n_fft": 1024, "hop_size": 256, "win_size": 1024,
           "sampling_rate": 16000, "dur_prediction_weight": 1.0,
           "dur_predictor_params": {"encoder_embed_dim": 128, "var_pred_hidden_dim": 128,
                                    "var_pred_kernel_size": 3, "var_pred_dropout": 0.5}}
    torch.manual_seed(0)
    generator = CodeGenerator(cfg)
    torch.save({"generator": generator.state_dict()}, tmp_path / "g_00400000")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    vocoder = Vocoder.load(tmp_path / "g_00400000", tmp_path / "config.json")
    code = [5, 5, 17, 99, 0]
    theirs = _fairseq_vocoder(tmp_path / "g_00400000", tmp_path / "config.json")({"code": torch.tensor([code])})
    np.testing.assert_allclose(vocoder(code), theirs.numpy(), rtol=0, atol=1e-6)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["generator"]


def test_training_resumes_exactly_after_an_interruption(corpus_dir, km, tmp_path, monkeypatch) -> None:
    straight = tmp_path / "straight"
    tiny_train(corpus_dir, km["train"], straight, steps=6, mel_only=False, checkpoint_every=2)

    # Interrupt a second run during its 5th step (after the step-4 checkpoint), then rerun it.
    interrupted = tmp_path / "interrupted"
    interrupt_at_batch(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        tiny_train(corpus_dir, km["train"], interrupted, steps=6, mel_only=False, checkpoint_every=2)
    monkeypatch.undo()
    assert torch.load(interrupted / "train_state.pt", weights_only=False)["step"] == 4
    assert not [p for p in interrupted.rglob("*") if ".tmp" in p.name], "half-written files left behind"
    assert not (interrupted / "vocoder.pt").exists(), "an unfinished run left a vocoder.pt"

    resumed = tiny_train(corpus_dir, km["train"], interrupted, steps=6, mel_only=False, checkpoint_every=2)
    assert resumed["steps_this_run"] == 2
    a, b = _weights(straight / "vocoder.pt"), _weights(interrupted / "vocoder.pt")
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # continuing to more steps removes the 6-step vocoder first, so an interruption leaves none
    interrupt_at_batch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        tiny_train(corpus_dir, km["train"], interrupted, steps=8, mel_only=False, checkpoint_every=2)
    monkeypatch.undo()
    assert not (interrupted / "vocoder.pt").exists() and not (interrupted / "config.json").exists()
    # one more rerun with a larger --steps continues rather than restarting
    assert tiny_train(corpus_dir, km["train"], interrupted, steps=7, mel_only=False,
                      checkpoint_every=2)["steps_this_run"] == 1
    assert (interrupted / "vocoder.pt").is_file() and (interrupted / "config.json").is_file()


def test_a_little_training_beats_no_training_on_mcd(corpus_dir, km, tmp_path) -> None:
    manifest = read_manifest(corpus_dir / "manifests" / "test.tsv")
    rows = read_unit_rows(km["test"], num_units=K)

    def mcd(vocoder: Vocoder) -> float:
        pairs = list(zip(manifest.rows, rows))[:3]
        return float(np.mean([mel_cepstral_distortion(read_audio(manifest.path(r)), vocoder(u)) for r, u in pairs]))

    cfg = GeneratorConfig(num_embeddings=K, upsample_initial_channel=CHANNELS, embedding_dim=32)
    torch.manual_seed(1)  # the trained run's seed: the untrained vocoder is its starting point
    save_vocoder(SharedGenerators([cfg]).export(0), cfg, checkpoint=tmp_path / "untrained" / "vocoder.pt",
                 config=tmp_path / "untrained" / "config.json")
    tiny_train(corpus_dir, km["train"], tmp_path / "trained", steps=40)
    untrained = mcd(Vocoder.load(tmp_path / "untrained" / "vocoder.pt", tmp_path / "untrained" / "config.json"))
    trained = mcd(Vocoder.load(tmp_path / "trained" / "vocoder.pt", tmp_path / "trained" / "config.json"))
    assert trained < untrained - 5.0, (trained, untrained)


@pytest.mark.slow  # a whole CLI integration run: CI runs it (--slow)
def test_cli_train_synth_eval(corpus_dir, km, tmp_path) -> None:
    out, wavs = tmp_path / "voc", tmp_path / "wavs"
    train = run_cli("spokenlm", "vocoder-train", "--manifest", str(corpus_dir / "manifests" / "train.tsv"),
                    "--units", str(km["train"]), "--num-units", str(K), "--out", str(out), "--steps", "2",
                    "--channels", "32", "--embedding-dim", "32", "--batch-size", "2", "--segment-units", "16",
                    "--disc-scale", "0.03", "--valid-manifest", str(corpus_dir / "manifests" / "valid.tsv"),
                    "--valid-units", str(km["valid"]), "--valid-every", "2", "--no-progress")
    assert "2 steps" in train.stdout
    assert (out / "vocoder.pt").is_file() and (out / "config.json").is_file()
    assert (out / "valid" / "step000002" / "units_mel.png").is_file()
    synth = run_cli("spokenlm", "vocoder-synth", "--vocoder", str(out / "vocoder.pt"), "--config",
                    str(out / "config.json"), "--units", str(km["test"]), "--manifest",
                    str(corpus_dir / "manifests" / "test.tsv"), "--out", str(wavs), "--no-progress")
    assert "x real time" in synth.stdout
    ids = read_manifest(corpus_dir / "manifests" / "test.tsv").utt_ids
    assert sorted(p.stem for p in wavs.glob("*.wav")) == sorted(ids)
    import soundfile as sf

    info = sf.info(wavs / f"{ids[0]}.wav")
    assert info.samplerate == 16000 and info.frames == 320 * len(read_unit_rows(km["test"], num_units=K)[0])
    # without a manifest, files are named by line number
    synthesize(Vocoder.load(out / "vocoder.pt", out / "config.json"), km["test"], tmp_path / "bynumber",
               progress=False)
    assert sorted(p.name for p in (tmp_path / "bynumber").iterdir())[0] == "000001.wav"
    report = run_cli("spokenlm", "resynth-eval", "--manifest", str(corpus_dir / "manifests" / "test.tsv"),
                     "--wavs", str(wavs), "--json", str(tmp_path / "m.json"))
    result = json.loads((tmp_path / "m.json").read_text())
    assert len(result["utterances"]) == len(ids) and "path-normalised" in report.stdout


def test_log_duration_prior_is_the_mean_and_mse_of_a_constant() -> None:
    from spokenlm_plugin.vocoder.train import log_duration_prior

    logs = np.log([3.0, 2.0, 2.0])  # runs of [1 1 2] and [3]: lengths 2, 1, 1
    mean, var = log_duration_prior([[1, 1, 2], np.array([3])])
    assert mean == pytest.approx(logs.mean()) and var == pytest.approx(((logs - logs.mean()) ** 2).mean())
