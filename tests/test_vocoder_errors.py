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
from .vocoder_support import K, interrupt_at_batch, phone_km, tiny_train


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
    from spokenlm_plugin.sutlm.generate import load_vocoder

    assert not Vocoder.load(setup["vocoder"], setup["config"]).predicts_durations
    units = tmp_path / "u.km"
    units.write_text("1 2 3\n")
    assert "no duration predictor" in _error(capsys, *_synth(setup, units, "--durations"))
    # (refused before the LM's dictionary is looked at)
    with pytest.raises(ConfigError, match="no duration predictor"):
        load_vocoder(setup["vocoder"], setup["config"], None)


# ------------------------------------------------------------------ bad inputs found by a probe


def _wav_copies(setup: dict[str, Path], out: Path, *, split: str = "train", rows: int = 4,
                edit=None, subtype: str = "PCM_16") -> tuple[Path, Path]:
    """WAV copies of the first ``rows`` utterances of ``split`` (``edit(index, samples)`` may change them),
    their manifest (sample counts as written) and the matching lines of the gold-phone units."""
    m = read_manifest(setup[f"{split}_tsv"])
    (out / "audio").mkdir(parents=True)
    lines = []
    for i, row in enumerate(m.rows[:rows]):
        wav, sr = sf.read(m.path(row), dtype="float32")
        wav = edit(i, wav) if edit is not None else wav
        sf.write(out / "audio" / f"{row.utt_id}.wav", wav, sr, subtype=subtype)
        lines.append(f"{row.utt_id}.wav\t{len(wav)}")
    manifest = out / f"{split}.tsv"
    manifest.write_text(f"{out / 'audio'}\n" + "\n".join(lines) + "\n")
    km = out / f"{split}.km"
    km.write_text("".join(setup[split].read_text().splitlines(keepends=True)[:rows]))
    return manifest, km


#: vocoder-train options equal to tests/vocoder_support.py's tiny_train(steps=1): the run in setup["vocoder"].
TINY = ["--num-units", str(K), "--steps", "1", "--channels", "32", "--embedding-dim", "32", "--batch-size", "2",
        "--segment-units", "16", "--adversarial-from", "1", "--disc-scale", str(1 / 32), "--valid-every", "0",
        "--no-progress"]


def _train(manifest: Path, units: Path, out: Path, *extra: str) -> list[str]:
    return ["vocoder-train", "--manifest", str(manifest), "--units", str(units), "--out", str(out), *TINY, *extra]


def test_resume_on_other_data_is_refused(setup, capsys, tmp_path) -> None:
    out = tmp_path / "v"
    shutil.copytree(setup["vocoder"].parent, out)
    # same options, same data: the finished run is accepted as it is
    assert cli.main(_train(setup["train_tsv"], setup["train"], out)) == 0, capsys.readouterr().err
    capsys.readouterr()
    # other units (one unit changed, lengths kept)
    lines = setup["train"].read_text().splitlines()
    first = lines[0].split()
    first[0] = str((int(first[0]) + 1) % K)
    other_units = tmp_path / "other.km"
    other_units.write_text("\n".join([" ".join(first), *lines[1:]]) + "\n")
    err = _error(capsys, *_train(setup["train_tsv"], other_units, out))
    assert str(other_units) in err and str(out) in err and "another --out" in err and "delete" in err
    # other audio (every utterance at half gain: same lengths, same units)
    manifest, _ = _wav_copies(setup, tmp_path / "quiet", rows=len(read_manifest(setup["train_tsv"])),
                              edit=lambda i, wav: wav / 2)
    err = _error(capsys, *_train(manifest, setup["train"], out))
    assert f"the audio of {manifest}" in err and str(out) in err
    # a state written before data fingerprints existed cannot be checked: refused too
    state = torch.load(out / "train_state.pt", weights_only=False)
    del state["data"]
    torch.save(state, out / "train_state.pt")
    err = _error(capsys, *_train(setup["train_tsv"], setup["train"], out))
    assert "train_state.pt" in err and "fingerprint" in err


def test_a_pipeline_owning_the_folder_restarts_on_other_data(setup, tmp_path) -> None:
    """The demo reruns a forced stage into its own folder: new units mean a new vocoder, not a refusal."""
    from spokenlm_plugin.vocoder.config import DiscriminatorConfig, TrainConfig
    from spokenlm_plugin.vocoder.data import UnitSet
    from spokenlm_plugin.vocoder.train import train_vocoder

    out = tmp_path / "v"
    shutil.copytree(setup["vocoder"].parent, out)
    lines = setup["train"].read_text().splitlines()
    other_units = tmp_path / "other.km"
    other_units.write_text("\n".join([" ".join(str((int(u) + 1) % K) for u in lines[0].split()), *lines[1:]]) + "\n")
    cfg = TrainConfig(steps=1, batch_size=2, segment_units=16, adversarial_from=1, valid_every=0,
                      discriminator=DiscriminatorConfig(scale=1 / 32))
    logged: list[str] = []
    result = train_vocoder(setup["train_tsv"], [UnitSet("units", other_units, K)], out, train=cfg, channels=32,
                           embedding_dim=32, progress=False, on_change="restart", log=logged.append)
    assert any("starting afresh" in line and str(other_units) in line for line in logged), logged
    assert result["steps_this_run"] == 1 and (out / "vocoder.pt").is_file()


def test_wrong_sample_count_in_the_manifest(setup, capsys, tmp_path) -> None:
    lines = setup["train_tsv"].read_text().splitlines()
    path, count = lines[3].split("\t")
    lines[3] = f"{path}\t{int(count) + 1000}"
    manifest = tmp_path / "train.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    err = _error(capsys, *_train(manifest, setup["train"], tmp_path / "v"))
    assert f"{Path(lines[0]) / path}" in err and "manifest" in err and str(int(count) + 1000) in err
    assert not (tmp_path / "v" / "vocoder.pt").exists()


def test_audio_with_nan_samples(setup, capsys, tmp_path) -> None:
    """Refused by core.audio.read_audio, which the vocoder reads through."""

    def nan(i: int, wav: np.ndarray) -> np.ndarray:
        if i == 2:
            wav = wav.copy()
            wav[100] = np.nan
        return wav

    manifest, km = _wav_copies(setup, tmp_path / "nan", edit=nan, subtype="FLOAT")
    bad = Path(manifest.read_text().splitlines()[0]) / manifest.read_text().splitlines()[3].split("\t")[0]
    err = _error(capsys, *_train(manifest, km, tmp_path / "v"))
    assert str(bad) in err and "NaN" in err


def test_cut_short_audio_is_named_not_its_units(setup, capsys, tmp_path) -> None:
    # a WAV re-encoded from its first half, with a manifest made after the cut: its units no longer fit
    manifest, km = _wav_copies(setup, tmp_path / "half", edit=lambda i, wav: wav[: len(wav) // 2] if i == 1 else wav)
    short = Path(manifest.read_text().splitlines()[0]) / manifest.read_text().splitlines()[2].split("\t")[0]
    err = _error(capsys, *_train(manifest, km, tmp_path / "v"))
    assert str(short) in err and f"{km}:2" in err
    # a WAV whose bytes were cut (its header claims more samples than the file holds)
    manifest, km = _wav_copies(setup, tmp_path / "truncated")
    cut = Path(manifest.read_text().splitlines()[0]) / manifest.read_text().splitlines()[2].split("\t")[0]
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    assert str(cut) in _error(capsys, *_train(manifest, km, tmp_path / "v"))


def test_num_units_too_small_suggests_num_units(setup, capsys, tmp_path) -> None:
    argv = _train(setup["train_tsv"], setup["train"], tmp_path / "v")
    argv[argv.index("--num-units") + 1] = "5"
    err = _error(capsys, *argv)
    assert f"{setup['train']}:" in err and "--num-units" in err and "--vocab-size" not in err
    # vocoder-synth's hint is about the vocoder's units, not an option it lacks
    bad = tmp_path / "bad.km"
    bad.write_text("1 2 99\n")
    err = _error(capsys, *_synth(setup, bad))
    assert "--vocab-size" not in err and "k-means this vocoder was trained on" in err


def test_killed_training_leaves_no_finished_vocoder(setup, tmp_path, monkeypatch) -> None:
    """vocoder.pt (+ config.json) means finished: an interrupted run leaves only its resume state, and
    continuing a finished run to more steps first removes the shorter run's vocoder."""
    out = tmp_path / "v"
    interrupt_at_batch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        tiny_train(setup["corpus"], setup["train"], out, steps=2)
    assert not (out / "vocoder.pt").exists() and not (out / "config.json").exists()
    monkeypatch.undo()
    # checkpoints before the end keep only the resume state
    interrupt_at_batch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        tiny_train(setup["corpus"], setup["train"], out, steps=2, checkpoint_every=1)
    monkeypatch.undo()
    assert torch.load(out / "train_state.pt", weights_only=False)["step"] == 1
    assert not (out / "vocoder.pt").exists() and not (out / "config.json").exists()


def test_empty_units_file(setup, capsys, tmp_path) -> None:
    empty = tmp_path / "empty.km"
    empty.write_text("")
    argv = _synth(setup, empty)
    argv[argv.index("--out") + 1] = str(tmp_path / "w")
    err = _error(capsys, *argv)
    assert str(empty) in err and "empty" in err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("threads", ["0", "-3"])
@pytest.mark.parametrize("command", ["vocoder-train", "vocoder-synth", "resynth-eval"])
def test_threads_must_be_positive(setup, capsys, tmp_path, command, threads) -> None:
    argv = {"vocoder-train": _train(setup["train_tsv"], setup["train"], tmp_path / "v"),
            "vocoder-synth": _synth(setup, setup["test"]),
            "resynth-eval": ["resynth-eval", "--manifest", str(setup["test_tsv"]), "--wavs", str(tmp_path)]}[command]
    with pytest.raises(SystemExit) as e:
        cli.main([*argv, "--threads", threads])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--threads" in err[-1] and "positive" in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "v").exists()


def _resynth_eval(setup: dict[str, Path], tmp_path: Path, edit) -> tuple[Path, Path]:
    """A two-row test manifest and a folder of 'resynthesised' wavs: ``edit(wav)`` of its originals."""
    m = read_manifest(setup["test_tsv"])
    wavs = tmp_path / "wavs"
    wavs.mkdir(parents=True)
    manifest = tmp_path / "test.tsv"
    manifest.write_text(f"{m.root}\n" + "".join(f"{r.relpath}\t{r.num_samples}\n" for r in m.rows[:2]))
    for row in m.rows[:2]:
        wav, sr = sf.read(m.path(row), dtype="float32")
        sf.write(wavs / f"{row.utt_id}.wav", edit(wav), sr)
    return manifest, wavs


def test_resynth_eval_downmixes_stereo_when_asked(setup, capsys, tmp_path) -> None:
    manifest, wavs = _resynth_eval(setup, tmp_path, lambda wav: np.stack([wav, wav], axis=1))
    argv = ["resynth-eval", "--manifest", str(manifest), "--wavs", str(wavs)]
    err = _error(capsys, *argv)
    assert str(wavs) in err and "--downmix" in err
    assert cli.main([*argv, "--downmix"]) == 0


def test_resynth_eval_refuses_a_resynthesis_of_another_length(setup, capsys, tmp_path) -> None:
    # the normal case: units x 320 samples, 80 to 399 samples short of the original (HuBERT's frames)
    manifest, wavs = _resynth_eval(setup, tmp_path / "ok", lambda wav: wav[: (len(wav) - 400) // 320 * 320 + 320])
    assert cli.main(["resynth-eval", "--manifest", str(manifest), "--wavs", str(wavs)]) == 0
    capsys.readouterr()
    manifest, wavs = _resynth_eval(setup, tmp_path / "half", lambda wav: wav[: len(wav) // 2])
    m = read_manifest(manifest)
    err = _error(capsys, "resynth-eval", "--manifest", str(manifest), "--wavs", str(wavs),
                 "--json", str(tmp_path / "m.json"))
    first = m.rows[0]
    assert str(wavs / f"{first.utt_id}.wav") in err and str(first.num_samples // 2) in err
    assert str(first.num_samples) in err and str(m.path(first)) in err
    assert not (tmp_path / "m.json").exists()


def test_synth_with_an_unfinished_run(setup, capsys, tmp_path) -> None:
    out = tmp_path / "v"
    out.mkdir()
    shutil.copy(setup["vocoder"].parent / "train_state.pt", out)
    err = _error(capsys, "vocoder-synth", "--vocoder", str(out / "vocoder.pt"), "--config", str(out / "config.json"),
                 "--units", str(setup["test"]), "--out", str(tmp_path / "w"), "--no-progress")
    assert str(out / "vocoder.pt") in err and "not finished" in err and "vocoder-train" in err


@pytest.mark.parametrize(("option", "needle"), [(["--lr", "0"], "--lr 0.0: must be a positive"),
                                                (["--segment-units", "100000"], "longer than every utterance")])
def test_training_options_that_cannot_train_are_refused(setup, capsys, tmp_path, option, needle) -> None:
    """lr 0 wrote a vocoder that learned nothing; a segment longer than every utterance ran out of memory."""
    err = _error(capsys, *_train(setup["train_tsv"], setup["train"], tmp_path / "v"), *option)
    assert needle in err
    assert not (tmp_path / "v" / "vocoder.pt").exists()
