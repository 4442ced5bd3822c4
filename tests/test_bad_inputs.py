"""Bad inputs end in one typed line: each fix, then a fuzz over every command's files.

Every case runs the CLI in-process (``cli.main``) on tiny inputs, except where the behaviour only
exists in a separate process (faiss's loader noise, a refusal inside ``fairseq-train``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
import torch

from spokenlm_plugin import cli
from spokenlm_plugin.core.errors import ConfigError, TrainingError
from spokenlm_plugin.core.io import atomic_write, read_manifest
from spokenlm_plugin.core.phones import num_frames
from spokenlm_plugin.ulm.data import binarize, write_dictionary
from spokenlm_plugin.ulm.generate import clamp_top_k
from spokenlm_plugin.units.baseline import SpectralFeatures
from spokenlm_plugin.units.features import dump_features
from tests.conftest import fails_in_one_line, run_cli




def _wav(path: Path, samples: int, *, sr: int = 16000, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.random.default_rng(samples).standard_normal((samples, channels)).astype("float32")
    sf.write(path, x, sr, format="WAV")
    return path


def _manifest(path: Path, root: Path, rows: list[tuple[str, int]]) -> Path:
    path.write_text(f"{root}\n" + "".join(f"{r}\t{n}\n" for r, n in rows))
    return path


# ------------------------------------------------------------------------------ feature dumps


@pytest.fixture
def tiny_audio(tmp_path: Path) -> Path:
    """Three 16 kHz mono files (0.3-0.5 s) and their manifest ``tiny.tsv``."""
    rows = [(f"u{i}.wav", n) for i, n in enumerate([8000, 6400, 4800])]
    for rel, n in rows:
        _wav(tmp_path / "audio" / rel, n)
    return _manifest(tmp_path / "tiny.tsv", tmp_path / "audio", rows)


def _logmel_dump(manifest: Path, out: Path, **kw) -> None:
    dump_features(SpectralFeatures("logmel"), manifest, out, progress=False, **kw)


def test_kmeans_refuses_an_incomplete_dump(tiny_audio: Path, tmp_path: Path, capsys) -> None:
    _logmel_dump(tiny_audio, tmp_path / "f", max_utterances=2)
    for argv in (["fit", "--k", "2"], ["assign", "--centroids", str(tmp_path / "c.npy")]):
        np.save(tmp_path / "c.npy", np.zeros((2, 40), np.float32))
        fails_in_one_line(["kmeans", *argv, "--features", str(tmp_path / "f"), "--split", "tiny", "--out", str(tmp_path / "o")],
               capsys, "tiny_0_1.npy: incomplete dump, 2 of 3 utterances", "rerun")
        assert not (tmp_path / "o").exists()
    _logmel_dump(tiny_audio, tmp_path / "f")  # finished: accepted
    assert cli.main(["kmeans", "fit", "--k", "2", "--features", str(tmp_path / "f"), "--split", "tiny",
                     "--out", str(tmp_path / "o.npy")]) == 0


def test_corrupt_dump_state_is_named(tiny_audio: Path, tmp_path: Path, capsys) -> None:
    _logmel_dump(tiny_audio, tmp_path / "f", max_utterances=1)
    state = tmp_path / "f" / ".tiny_0_1.dump.json"
    state.write_text('{"model": "logm')
    with pytest.raises(Exception, match=r"\.tiny_0_1\.dump\.json: corrupt dump record"):
        _logmel_dump(tiny_audio, tmp_path / "f")
    fails_in_one_line(["kmeans", "fit", "--k", "2", "--features", str(tmp_path / "f" / "tiny_0_1.npy"), "--out",
            str(tmp_path / "o.npy")], capsys, ".tiny_0_1.dump.json: corrupt dump record", "delete it")


def test_empty_wav_is_named_and_leaves_nothing_that_blocks_a_rerun(tiny_audio: Path, tmp_path: Path, capsys) -> None:
    root = tiny_audio.parent / "audio"
    _wav(root / "empty.wav", 0)
    good = tiny_audio.read_text()
    rows = good.splitlines()[1:]
    bad = _manifest(tiny_audio, root, [("empty.wav", 0)] + [tuple(r.split("\t")) for r in rows])
    out = tmp_path / "f"
    fails_in_one_line(["baseline-features", "--kind", "logmel", "--manifest", str(bad), "--out", str(out), "--no-progress"],
           capsys, f"{root / 'empty.wav'}: empty audio (0 samples)")
    assert sorted(p.name for p in out.iterdir()) == []  # no 0-byte .len, no state
    # The user drops the row: the next run starts afresh instead of refusing "other settings".
    bad.write_text(good)
    assert cli.main(["baseline-features", "--kind", "logmel", "--manifest", str(bad), "--out", str(out),
                     "--no-progress"]) == 0


def test_a_finished_dump_of_other_audio_is_not_reused(tiny_audio: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "f"
    argv = ["baseline-features", "--kind", "logmel", "--manifest", str(tiny_audio), "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    before = np.load(out / "tiny_0_1.npy")
    lengths = [8000, 6400, 4800]
    # Moved with its times kept (cp -p, copytree): the same audio, the dump is reused as it is.
    shutil.copytree(tiny_audio.parent / "audio", tmp_path / "moved")
    _manifest(tiny_audio, tmp_path / "moved", [(f"u{i}.wav", n) for i, n in enumerate(lengths)])
    assert cli.main(argv) == 0
    assert np.array_equal(np.load(out / "tiny_0_1.npy"), before)
    # The same names and lengths, other samples (re-synthesized): refused, the old features kept.
    sf.write(tmp_path / "moved" / "u1.wav", np.zeros(6400, np.float32), 16000)
    fails_in_one_line(argv, capsys, f"{out / 'tiny_0_1.npy'}: was dumped from other audio than {tiny_audio}",
           "delete the dump's files")
    # Another corpus under the same split name: refused too.
    for i, n in enumerate(lengths):
        _wav(tmp_path / "other" / f"v{i}.wav", n)
    _manifest(tiny_audio, tmp_path / "other", [(f"v{i}.wav", n) for i, n in enumerate(lengths)])
    fails_in_one_line(argv, capsys, "was dumped from other audio")
    assert np.array_equal(np.load(out / "tiny_0_1.npy"), before)
    for name in ("tiny_0_1.npy", "tiny_0_1.len", ".tiny_0_1.dump.json"):
        (out / name).unlink()
    assert cli.main(argv) == 0  # deleted as the message says: dumped afresh


def test_dump_record_holds_the_thread_count(tiny_audio: Path, tmp_path: Path, capsys) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _logmel_dump(tiny_audio, tmp_path / "f", max_utterances=1)
        assert json.loads((tmp_path / "f" / ".tiny_0_1.dump.json").read_text())["threads"] == 1
        torch.set_num_threads(2)
        with pytest.raises(ConfigError, match=r"'threads': \(1, 2\).*OMP_NUM_THREADS=1"):
            _logmel_dump(tiny_audio, tmp_path / "f")
        torch.set_num_threads(1)
        _logmel_dump(tiny_audio, tmp_path / "f")
    finally:
        torch.set_num_threads(before)


def test_stereo_needs_downmix_and_lengths_must_match(tmp_path: Path, capsys) -> None:
    _wav(tmp_path / "audio" / "s.wav", 8000, channels=2)
    manifest = _manifest(tmp_path / "st.tsv", tmp_path / "audio", [("s.wav", 8000)])
    argv = ["baseline-features", "--kind", "logmel", "--manifest", str(manifest), "--no-progress"]
    fails_in_one_line([*argv, "--out", str(tmp_path / "a")], capsys, "s.wav: 2 channels, expected mono", "--downmix")
    assert cli.main([*argv, "--out", str(tmp_path / "b"), "--downmix"]) == 0
    _manifest(manifest, tmp_path / "audio", [("s.wav", 8400)])
    fails_in_one_line([*argv, "--out", str(tmp_path / "c"), "--downmix"], capsys,
           "s.wav: 8000 samples but the manifest says 8400")


# ------------------------------------------------------------------------------ k-means, quality


def test_corrupt_centroids(tiny_audio: Path, tmp_path: Path, capsys) -> None:
    _logmel_dump(tiny_audio, tmp_path / "f")
    for name, data in (("c.npy", b"\x93NUMPY\x01\x00garbage"), ("c.npy", b""), ("c.joblib", b"not a pickle"),
                       ("c.joblib", b"")):
        (tmp_path / name).write_bytes(data)
        fails_in_one_line(["kmeans", "assign", "--features", str(tmp_path / "f" / "tiny_0_1.npy"), "--centroids",
                str(tmp_path / name), "--out", str(tmp_path / "u.km")], capsys, f"{tmp_path / name}: not a readable")
        assert not (tmp_path / "u.km").exists()


def test_faiss_loader_is_quiet(tiny_audio: Path, tmp_path: Path) -> None:
    _logmel_dump(tiny_audio, tmp_path / "f")
    proc = run_cli("spokenlm", "kmeans", "fit", "--k", "2", "--features", str(tmp_path / "f" / "tiny_0_1.npy"),
                   "--out", str(tmp_path / "c.npy"))
    assert "ModuleNotFoundError" not in proc.stderr and "faiss.loader" not in proc.stderr, proc.stderr


def test_unit_quality_refuses_units_no_quantizer_makes(tmp_path: Path, capsys) -> None:
    (tmp_path / "l.phn").write_text("AA AA B\nB B\n")
    argv = ["unit-quality", "--labels", str(tmp_path / "l.phn"), "--units", str(tmp_path / "u.km"),
            "--json", str(tmp_path / "q.json")]
    (tmp_path / "u.km").write_text("0 1 -3\n1 1\n")
    fails_in_one_line(argv, capsys, "u.km:1: '-3' is not a unit id")
    (tmp_path / "u.km").write_text("0 1 2\n1 5\n")
    fails_in_one_line([*argv, "--vocab-size", "4"], capsys, "line 2: unit 5 is outside 0..3 (--vocab-size 4)")
    assert not (tmp_path / "q.json").exists()
    assert cli.main([*argv, "--vocab-size", "6"]) == 0


# ------------------------------------------------------------------------------ labels, items, subset


@pytest.fixture
def aligned(tmp_path: Path, corpus_dir: Path) -> tuple[Path, Path]:
    """The corpus's 8-utterance test split copied (audio + alignments) where it may be damaged."""
    shutil.copytree(corpus_dir / "audio" / "test", tmp_path / "audio")
    man = read_manifest(corpus_dir / "manifests" / "test.tsv")
    manifest = _manifest(tmp_path / "test.tsv", tmp_path / "audio", [(r.relpath, r.num_samples) for r in man.rows])
    (tmp_path / "ali").mkdir()
    for utt in man.utt_ids:
        shutil.copy(corpus_dir / "alignments" / f"{utt}.json", tmp_path / "ali")
    return manifest, tmp_path / "ali"


BAD_AUDIO: dict[str, Callable[[Path], None]] = {
    "not audio": lambda p: p.write_bytes(b"this is not audio at all " * 100),
    "8 kHz": lambda p: sf.write(p, np.zeros(4000, np.float32), 8000, format="FLAC"),
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3]),
}


@pytest.mark.parametrize("command", ["labels", "items"])
@pytest.mark.parametrize("damage", sorted(BAD_AUDIO))
def test_labels_and_items_open_the_audio(aligned, tmp_path: Path, capsys, command: str, damage: str) -> None:
    manifest, ali = aligned
    victim = read_manifest(manifest)
    victim = victim.path(victim.rows[2])
    BAD_AUDIO[damage](victim)
    out = tmp_path / "out" / ("x.item" if command == "items" else "")
    argv = [command, "--manifest", str(manifest), "--alignments", str(ali), "--format", "json", "--out", str(out)]
    fails_in_one_line(argv, capsys, str(victim))
    assert not (tmp_path / "out").exists()
    assert cli.main([*argv, "--skip-bad"]) == 0
    written = (out if command == "items" else out / "test.phn").read_text()
    assert victim.stem not in written and (command == "items" or len(written.splitlines()) == 7)


def test_items_apply_the_alignment_length_rule_of_labels(aligned, tmp_path: Path, capsys) -> None:
    manifest, ali = aligned
    row = read_manifest(manifest).rows[0]
    record = json.loads((ali / f"{row.utt_id}.json").read_text())
    end = row.num_samples / 16000 - 1.0  # the alignment stops 1 s before the audio
    record["phones"] = [[a, min(b, end), p] for a, b, p in record["phones"] if a < end]
    record["words"] = [[a, min(b, end), w] for a, b, w in record["words"] if a < end]
    (ali / f"{row.utt_id}.json").write_text(json.dumps(record))
    for command, out in (("labels", tmp_path / "l"), ("items", tmp_path / "x.item")):
        fails_in_one_line([command, "--manifest", str(manifest), "--alignments", str(ali), "--format", "json", "--out", str(out)],
               capsys, f"utterance {row.utt_id!r} has", "label frames", "--skip-bad")


def test_subset_refuses_a_phone_missing_from_the_dictionary(corpus_dir: Path, tmp_path: Path, capsys) -> None:
    shutil.copytree(corpus_dir / "labels", tmp_path / "labels")
    lines = (tmp_path / "labels" / "train.phn").read_text().splitlines()
    tokens = lines[3].split()
    tokens[-5] = "QQ"
    lines[3] = " ".join(tokens)
    (tmp_path / "labels" / "train.phn").write_text("\n".join(lines) + "\n")
    fails_in_one_line(["subset", "--manifest", str(corpus_dir / "manifests" / "train.tsv"), "--labels",
            str(tmp_path / "labels" / "train.phn"), "--minutes", "0.5", "--out", str(tmp_path / "sub")],
           capsys, "train.phn:4: phone 'QQ' is not in", "dict.phn.txt")
    assert not (tmp_path / "sub").exists()


# ------------------------------------------------------------------------------ ABX


def _onehot_units(manifest: Path, out: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = read_manifest(manifest).rows
    out.write_text("".join(" ".join(map(str, rng.integers(0, 8, num_frames(r.num_samples)))) + "\n" for r in rows))
    return out


def test_abx_across_on_one_speaker(corpus_dir: Path, tmp_path: Path, capsys) -> None:
    manifest, item = corpus_dir / "manifests" / "valid.tsv", corpus_dir / "items" / "valid.triphone.item"
    km = _onehot_units(manifest, tmp_path / "valid.km")
    argv = ["abx", "--item", str(item), "--units", str(km), "--manifest", str(manifest), "--device", "cpu"]
    # The default (both speaker conditions): within is scored and written, across skipped with a message.
    assert cli.main([*argv, "--json", str(tmp_path / "both.json")]) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and "has 1 speaker" in err and "Traceback" not in err
    payload = json.loads((tmp_path / "both.json").read_text())
    assert [r["speaker"] for r in payload["results"]] == ["within"] and len(payload["skipped"]) == 1
    fails_in_one_line([*argv, "--speaker", "across", "--json", str(tmp_path / "across.json")], capsys,
           "across speaker, within context cannot be scored", "--speaker within")
    assert not (tmp_path / "across.json").exists()


# ------------------------------------------------------------------------------ unit LM


def test_top_k_is_clamped_to_the_vocabulary(tmp_path: Path) -> None:
    write_dictionary(tmp_path / "dict.txt", 20)
    assert clamp_top_k(50, dictionary=tmp_path / "dict.txt") == 24  # 20 units + 4 fairseq specials
    assert clamp_top_k(10, dictionary=tmp_path / "dict.txt") == 10
    assert clamp_top_k(-1, dictionary=tmp_path / "dict.txt") == -1


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip", b"just some text\n"])
def test_non_checkpoint_to_lm_score_and_generate(tmp_path: Path, capsys, content: bytes) -> None:
    ckpt = tmp_path / "lm.pt"
    ckpt.write_bytes(content)
    (tmp_path / "u.km").write_text("1 2 3\n")
    (tmp_path / "ids").write_text("a\n")
    fails_in_one_line(["lm-score", "--checkpoint", str(ckpt), "--units", str(tmp_path / "u.km"), "--ids", str(tmp_path / "ids"),
            "--out", str(tmp_path / "s.txt")], capsys, f"{ckpt}: not a")
    fails_in_one_line(["lm-generate", "--checkpoint", str(ckpt), "--prompts", str(tmp_path / "u.km"),
            "--out", str(tmp_path / "g.km")], capsys, f"{ckpt}: not a")
    assert not (tmp_path / "s.txt").exists() and not (tmp_path / "g.km").exists()


def test_short_gold_row(pairs_dir: Path, tmp_path: Path, capsys) -> None:
    gold = pairs_dir / "lexical" / "gold.csv"
    lines = gold.read_text().splitlines()
    lines[3] = ",".join(lines[3].split(",")[:4])
    (tmp_path / "gold.csv").write_text("\n".join(lines) + "\n")
    manifest = pairs_dir / "manifests" / "lexical.tsv"
    km = _onehot_units(manifest, tmp_path / "lex.km")
    fails_in_one_line(["lm-score", "--scorer", "length", "--units", str(km), "--manifest", str(manifest), "--out",
            str(tmp_path / "s.txt"), "--gold", str(tmp_path / "gold.csv"), "--task", "lexical",
            "--results", str(tmp_path / "r.json")], capsys, "gold.csv:4: 4 fields but the header has 10")
    assert not (tmp_path / "r.json").exists()


def test_fairseq_preprocess_failure_names_its_log(tmp_path: Path) -> None:
    (tmp_path / "bad_dict.txt").write_text("0 1\n1 many\n")
    with pytest.raises(TrainingError) as info:
        binarize({"train": [[0, 1]]}, tmp_path / "bin", vocab_size=2, srcdict=tmp_path / "bad_dict.txt")
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "bin" / "preprocess.log") in message
    assert "fairseq-preprocess exited" in message and (tmp_path / "bin" / "preprocess.log").is_file()


def test_plugin_refusal_inside_fairseq_train_is_one_line(corpus_dir: Path, tmp_path: Path) -> None:
    from tests.units_support import make_hubert_checkpoint

    base = make_hubert_checkpoint(tmp_path / "base.pt", layers=1)
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(corpus_dir / "labels" / "dict.phn.txt", data)
    for split in ("train", "valid"):
        shutil.copy(corpus_dir / "manifests" / "valid.tsv", data / f"{split}.tsv")
        # labels of another split: a row count that does not match the manifest
        shutil.copy(corpus_dir / "labels" / "test.phn", data / f"{split}.phn")
    proc = run_cli("fairseq-train", str(data), "--user-dir", "spokenlm_plugin", "--task", "phoneme_frame_cls",
                   "--arch", "hubert_frame_cls", "--w2v-path", str(base), "--criterion", "frame_phoneme_ce",
                   "--optimizer", "adam", "--lr", "1e-4", "--max-update", "1", "--batch-size", "2", "--cpu",
                   "--save-dir", str(tmp_path / "ckpt"), cwd=Path(__file__).resolve().parents[1], check=False,
                   env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("fairseq-train: error: ") and ".phn" in last, last


# ------------------------------------------------------------------------------ CLI, io


def test_interrupt_promises_resume_only_where_it_resumes(monkeypatch, capsys) -> None:
    import spokenlm_plugin.units.features as features
    import spokenlm_plugin.units.quality as quality

    def interrupted(args) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(quality, "run", interrupted)
    monkeypatch.setattr(features, "run", interrupted)
    assert cli.main(["unit-quality", "--units", "u", "--labels", "l"]) == 130
    assert "rerun to start it again" in capsys.readouterr().err
    assert cli.main(["dump-features", "--checkpoint", "c", "--layer", "1", "--manifest", "m", "--out", "o"]) == 130
    assert "rerun to resume" in capsys.readouterr().err


def test_atomic_write_leaves_the_umask_alone(tmp_path: Path, monkeypatch) -> None:
    umask = os.umask(0o022)
    os.umask(umask)

    def no_umask(mask: int) -> int:
        raise AssertionError("os.umask changes the whole process (other threads create files meanwhile)")

    monkeypatch.setattr(os, "umask", no_umask)
    with atomic_write(tmp_path / "x.txt") as f:
        f.write("x")
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o666 & ~umask


# ------------------------------------------------------------------------------ fuzz


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    cut = len(data) // 2
    while cut > 1 and data[cut - 1 : cut] in (b"\n", b" "):  # cut inside a token, not at a boundary
        cut -= 1
    path.write_bytes(data[:cut])


def _wrong_format(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 8)  # binary noise: no text, no audio, no pickle, no .npy


CORRUPTIONS = {"empty": _empty, "truncated": _truncated, "wrong-format": _wrong_format}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path, pairs_dir: Path) -> Path:
    """Valid inputs of every command, built once (the valid split: 9 utterances, one speaker)."""
    ws = tmp_path_factory.mktemp("fuzz")
    man = read_manifest(corpus_dir / "manifests" / "valid.tsv")
    shutil.copytree(corpus_dir / "audio" / "valid", ws / "audio")
    _manifest(ws / "valid.tsv", ws / "audio", [(r.relpath, r.num_samples) for r in man.rows])
    (ws / "ali").mkdir()
    for utt in man.utt_ids:
        shutil.copy(corpus_dir / "alignments" / f"{utt}.json", ws / "ali")
    for name in ("valid.phn", "dict.phn.txt"):
        shutil.copy(corpus_dir / "labels" / name, ws / name)
    shutil.copy(corpus_dir / "items" / "valid.phoneme.item", ws / "valid.item")
    _onehot_units(ws / "valid.tsv", ws / "valid.km")
    np.save(ws / "centroids.npy", np.random.default_rng(0).normal(size=(8, 40)).astype(np.float32))
    _logmel_dump(ws / "valid.tsv", ws / "feats")
    (ws / "ckpt.pt").write_bytes(b"placeholder: every case with a checkpoint corrupts it")
    shutil.copy(pairs_dir / "lexical" / "gold.csv", ws / "gold.csv")
    lex = read_manifest(pairs_dir / "manifests" / "lexical.tsv")
    (ws / "lex.ids").write_text("".join(f"{u}\n" for u in lex.utt_ids))
    (ws / "lex.km").write_text("".join("1 2 3\n" for _ in lex.rows))
    return ws


FIRST_UTT = "rms-c"  # prefix of the valid split's alignment files; the first one is corrupted
#: (name, argv with {ws} for the workspace and {out} for the output, the file that gets corrupted)
CASES: list[tuple[str, str, str]] = [
    ("manifest/audio", "manifest {ws}/audio --ext flac --out {out}/valid.tsv", "audio/*"),
    ("labels/manifest", "labels --manifest {ws}/valid.tsv --alignments {ws}/ali --format json --out {out}", "valid.tsv"),
    ("labels/alignment", "labels --manifest {ws}/valid.tsv --alignments {ws}/ali --format json --out {out}", "ali/*"),
    ("labels/audio", "labels --manifest {ws}/valid.tsv --alignments {ws}/ali --format json --out {out}", "audio/*"),
    ("items/manifest", "items --manifest {ws}/valid.tsv --alignments {ws}/ali --format json --out {out}", "valid.tsv"),
    ("items/alignment", "items --manifest {ws}/valid.tsv --alignments {ws}/ali --format json --out {out}", "ali/*"),
    ("items/audio", "items --manifest {ws}/valid.tsv --alignments {ws}/ali --format json --out {out}", "audio/*"),
    ("subset/manifest", "subset --manifest {ws}/valid.tsv --labels {ws}/valid.phn --minutes 0.1 --out {out}",
     "valid.tsv"),
    ("subset/labels", "subset --manifest {ws}/valid.tsv --labels {ws}/valid.phn --minutes 0.1 --out {out}",
     "valid.phn"),
    ("kmeans-fit/npy", "kmeans fit --k 2 --features {ws}/feats --split valid --out {out}", "feats/valid_0_1.npy"),
    ("kmeans-fit/len", "kmeans fit --k 2 --features {ws}/feats --split valid --out {out}", "feats/valid_0_1.len"),
    ("kmeans-assign/centroids",
     "kmeans assign --features {ws}/feats --split valid --centroids {ws}/centroids.npy --out {out}", "centroids.npy"),
    ("kmeans-assign/npy", "kmeans assign --features {ws}/feats --split valid --centroids {ws}/centroids.npy --out {out}",
     "feats/valid_0_1.npy"),
    ("unit-quality/units", "unit-quality --units {ws}/valid.km --labels {ws}/valid.phn --json {out}", "valid.km"),
    ("unit-quality/labels", "unit-quality --units {ws}/valid.km --labels {ws}/valid.phn --json {out}", "valid.phn"),
    ("unit-quality/dict",
     "unit-quality --units {ws}/valid.km --labels {ws}/valid.phn --dict {ws}/dict.phn.txt --json {out}",
     "dict.phn.txt"),
    ("abx/item", "abx --item {ws}/valid.item --units {ws}/valid.km --manifest {ws}/valid.tsv --speaker within "
     "--device cpu --json {out}", "valid.item"),
    ("abx/units", "abx --item {ws}/valid.item --units {ws}/valid.km --manifest {ws}/valid.tsv --speaker within "
     "--device cpu --json {out}", "valid.km"),
    ("abx/manifest", "abx --item {ws}/valid.item --units {ws}/valid.km --manifest {ws}/valid.tsv --speaker within "
     "--device cpu --json {out}", "valid.tsv"),
    ("phone-units/labels", "phone-units --labels {ws}/valid.phn --dict {ws}/dict.phn.txt --out-dir {out}", "valid.phn"),
    ("phone-units/dict", "phone-units --labels {ws}/valid.phn --dict {ws}/dict.phn.txt --out-dir {out}",
     "dict.phn.txt"),
    ("baseline-features/manifest", "baseline-features --kind logmel --manifest {ws}/valid.tsv --out {out} "
     "--no-progress", "valid.tsv"),
    ("baseline-features/audio", "baseline-features --kind logmel --manifest {ws}/valid.tsv --out {out} "
     "--no-progress", "audio/*"),
    ("dump-features/checkpoint", "dump-features --checkpoint {ws}/ckpt.pt --layer 1 --manifest {ws}/valid.tsv "
     "--out {out} --device cpu --no-progress", "ckpt.pt"),
    ("lm-score/units", "lm-score --scorer length --units {ws}/lex.km --ids {ws}/lex.ids --out {out}", "lex.km"),
    ("lm-score/gold", "lm-score --scorer length --units {ws}/lex.km --ids {ws}/lex.ids --out {ws}/scores.txt "
     "--gold {ws}/gold.csv --task lexical --results {out}", "gold.csv"),
    ("lm-score/checkpoint", "lm-score --checkpoint {ws}/ckpt.pt --units {ws}/lex.km --ids {ws}/lex.ids --out {out}",
     "ckpt.pt"),
    ("lm-generate/checkpoint", "lm-generate --checkpoint {ws}/ckpt.pt --prompts {ws}/lex.km --out {out}", "ckpt.pt"),
]


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
@pytest.mark.parametrize(("case", "template", "victim"), CASES, ids=[c[0] for c in CASES])
def test_fuzz_every_file_input(workspace: Path, tmp_path: Path, capsys, case: str, template: str, victim: str,
                               corruption: str) -> None:
    """A damaged input file: exit 2, one line naming the file, no traceback, no output left."""
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws)
    lines = (ws / "valid.tsv").read_text().splitlines()
    (ws / "valid.tsv").write_text("\n".join([str(ws / "audio"), *lines[1:]]) + "\n")  # the copy's audio
    if victim.endswith("/*"):
        target = sorted((ws / victim[:-2]).rglob("*.*"))[0]
    else:
        target = ws / victim
    CORRUPTIONS[corruption](target)
    out = tmp_path / "out"
    argv = template.format(ws=ws, out=out).split()
    line = fails_in_one_line(argv, capsys)
    assert target.name in line, f"{case} ({corruption}): the error does not name {target.name}: {line}"
    left = sorted(p for p in out.rglob("*") if p.is_file()) if out.exists() else []
    assert not left, f"{case} ({corruption}): {left} left behind"


# ------------------------------------------------------------------------------ unwritable outputs


def _fill(parser: argparse.ArgumentParser, output: Path, sub: str | None) -> list[str]:
    """Placeholders for the required options of ``parser`` and ``output`` for every output option."""
    argv: list[str] = []
    chosen = {id(g._group_actions[0]) for g in parser._mutually_exclusive_groups if g.required}
    for action in parser._actions:
        flag = action.option_strings[-1] if action.option_strings else None
        if isinstance(action, argparse._SubParsersAction):
            name = sub or next(iter(action.choices))
            argv += [name, *_fill(action.choices[name], output, None)]
        elif action.dest in cli.OUTPUT_OPTIONS and flag:
            argv += [flag, str(output)]
        elif action.required or id(action) in chosen or (flag is None and action.dest != "help"):
            value = str(list(action.choices)[0] if action.choices else "1" if action.type in (int, float) else "x")
            argv += [flag, value] if flag else [value]
    return argv


def _minimal_argv(command: str, output: Path) -> list[str]:
    """``command`` (``name`` or ``name sub``) with its required options filled with placeholders and
    every output option at ``output``: the output check runs before any input is read."""
    name, _, sub = command.partition(" ")
    parser = cli.build_parser([name])
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [name, *_fill(subparsers.choices[name], output, sub or None)]


WRITERS = sorted(command for command in [*cli.SUBCOMMANDS, "kmeans assign"]
                 if any(f"--{o.replace('_', '-')} O" in " ".join(_minimal_argv(command, Path("O")))
                        for o in cli.OUTPUT_OPTIONS))


def test_every_writing_command_is_checked() -> None:
    assert len(WRITERS) >= 25 and {"dump-features", "vocoder-train", "sutlm-data", "demo", "manifest"} <= set(WRITERS)


@pytest.mark.parametrize("where", ["under-a-file", "under-proc"])
@pytest.mark.parametrize("command", WRITERS)
def test_unwritable_output_is_one_line(tmp_path: Path, capsys, command: str, where: str) -> None:
    if where == "under-a-file":
        (tmp_path / "a_file").write_text("x")
        output = tmp_path / "a_file" / "sub" / "out"
    else:
        output = Path("/proc/spokenlm-test-output")
    fails_in_one_line(_minimal_argv(command, output), capsys, str(output), "cannot write the output here")


def test_atomic_writers_name_the_output_they_cannot_write(tmp_path: Path) -> None:
    from spokenlm_plugin.core.errors import OutputError
    from spokenlm_plugin.core.io import atomic_path

    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_folder").mkdir()
    for target in (tmp_path / "a_file" / "x.txt", tmp_path / "a_folder"):
        with pytest.raises(OutputError, match=f"{target}: cannot write the output here"):
            with atomic_write(target) as f:
                f.write("data")
        with pytest.raises(OutputError, match=f"{target}: cannot write the output here"):
            with atomic_path(target) as tmp:
                tmp.write_text("data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "a_folder"]  # no temporary left
    assert not any((tmp_path / "a_folder").iterdir())


def test_os_errors_of_other_writers_are_one_line(monkeypatch, capsys, tmp_path: Path) -> None:
    import spokenlm_plugin.units.quality as quality

    def refused(args) -> int:
        raise PermissionError(13, "Permission denied", str(tmp_path / "x.pt"))

    monkeypatch.setattr(quality, "run", refused)
    fails_in_one_line(["unit-quality", "--units", "u", "--labels", "l"], capsys, f"{tmp_path / 'x.pt'}: Permission denied")

    def bug(args) -> int:
        raise OSError("no file involved")

    monkeypatch.setattr(quality, "run", bug)
    with pytest.raises(OSError, match="no file involved"):  # not a user mistake: the traceback stays
        cli.main(["unit-quality", "--units", "u", "--labels", "l"])


# ------------------------------------------------------------------------------ empty splits

#: (name, argv with {ws} for a workspace of empty inputs, {out} for the output, the file to be named)
EMPTY_SPLITS: list[tuple[str, str, str]] = [
    ("baseline-features", "baseline-features --kind logmel --manifest {ws}/empty.tsv --out {out} --no-progress",
     "empty.tsv"),
    ("kmeans-fit", "kmeans fit --k 2 --features {ws}/feats --split empty --out {out}/c.npy", "empty_0_1.npy"),
    ("subset", "subset --manifest {ws}/empty.tsv --labels {ws}/empty.phn --minutes 0.1 --out {out}", "empty.tsv"),
    ("unit-quality", "unit-quality --units {ws}/empty.km --labels {ws}/empty.phn --json {out}/q.json", "empty.km"),
    ("phone-units", "phone-units --labels {ws}/empty.phn --dict {ws}/dict.phn.txt --out-dir {out}", "empty.phn"),
    ("lm-data", "lm-data --units-dir {ws}/lm --splits train valid --vocab-size 8 --out {out}", "valid.km"),
    ("lm-score", "lm-score --scorer length --units {ws}/empty.km --ids {ws}/empty.ids --out {out}/s.txt", "empty"),
]


@pytest.mark.parametrize(("case", "template", "named"), EMPTY_SPLITS, ids=[c[0] for c in EMPTY_SPLITS])
def test_empty_split_is_one_line(corpus_dir: Path, tmp_path: Path, capsys, case: str, template: str,
                                 named: str) -> None:
    """An empty manifest, label, unit or id file: exit 2, one line naming it, nothing written."""
    ws = tmp_path / "ws"
    (ws / "audio").mkdir(parents=True)
    _manifest(ws / "empty.tsv", ws / "audio", [])
    for name in ("empty.km", "empty.phn", "empty.ids"):
        (ws / name).write_text("")
    shutil.copy(corpus_dir / "labels" / "dict.phn.txt", ws)
    (ws / "feats").mkdir()
    np.save(ws / "feats" / "empty_0_1.npy", np.zeros((0, 40), np.float32))
    (ws / "feats" / "empty_0_1.len").write_text("")
    (ws / "lm").mkdir()
    (ws / "lm" / "train.km").write_text("1 2 3\n")
    (ws / "lm" / "valid.km").write_text("")
    out = tmp_path / "out"
    fails_in_one_line(template.format(ws=ws, out=out).split(), capsys, named)
    left = sorted(p for p in out.rglob("*") if p.is_file()) if out.exists() else []
    assert not left, f"{case}: {left} left behind"


# ------------------------------------------------------------------------------ found by a probe


@pytest.mark.parametrize(("option", "needle"), [(["--context", "-1"], "--context -1"), (["--C", "0"], "--C 0.0"),
                                                (["--max-iter", "0"], "--max-iter 0")])
def test_baseline_classifier_options(corpus_dir: Path, tmp_path: Path, capsys, option: list[str], needle: str) -> None:
    lab = corpus_dir / "labels"
    man = corpus_dir / "manifests"
    fails_in_one_line(["baseline-classifier", "--train-manifest", str(man / "valid.tsv"), "--train-labels",
                       str(lab / "valid.phn"), "--test-manifest", str(man / "test.tsv"), "--test-labels",
                       str(lab / "test.phn"), "--dict", str(lab / "dict.phn.txt"), "--json", str(tmp_path / "r.json"),
                       *option], capsys, needle)
    assert not (tmp_path / "r.json").exists()


def test_phone_units_reads_every_input_before_writing(corpus_dir: Path, tmp_path: Path, capsys) -> None:
    lab = corpus_dir / "labels"
    fails_in_one_line(["phone-units", "--labels", str(lab / "valid.phn"), str(tmp_path / "missing.phn"), "--dict",
                       str(lab / "dict.phn.txt"), "--out-dir", str(tmp_path / "pu")], capsys, "missing.phn")
    assert not (tmp_path / "pu").exists() or not any((tmp_path / "pu").iterdir())


def test_pretraining_on_an_empty_train_manifest(tmp_path: Path) -> None:
    from spokenlm_plugin.core.errors import ManifestError
    from spokenlm_plugin.pretrain.hubert import make_mfcc_targets

    (tmp_path / "m").mkdir()
    for split in ("train", "valid"):
        _manifest(tmp_path / "m" / f"{split}.tsv", tmp_path, [])
    with pytest.raises(ManifestError, match=r"train\.tsv: no utterances"):
        make_mfcc_targets(tmp_path / "m", tmp_path / "t", k=4, max_frames=100, seed=0)


def test_fairseq_tools_name_a_missing_data_folder_in_one_line(tmp_path: Path) -> None:
    """fairseq's own language_modeling task on a folder that does not exist (its FileNotFoundError)."""
    proc = run_cli("fairseq-train", str(tmp_path / "nodata"), "--user-dir", "spokenlm_plugin", "--task",
                   "language_modeling", "--arch", "unit_lstm_lm_small", "--optimizer", "adam", "--lr", "1e-4",
                   "--max-update", "1", "--max-tokens", "1024", "--cpu", "--save-dir", str(tmp_path / "ckpt"),
                   cwd=Path(__file__).resolve().parents[1], check=False, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("fairseq-train: error: ") and str(tmp_path / "nodata") in last, last
