"""`spokenlm subset`: duration, speaker balance, reproducibility, and rows kept together with their labels."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import pytest

from spokenlm_plugin.cli import main
from spokenlm_plugin.data.subset import make_subset, select_balanced
from spokenlm_plugin.core.errors import ConfigError, LabelMismatchError
from spokenlm_plugin.core.io import ManifestRow, read_manifest, write_manifest
from spokenlm_plugin.core.phones import INVENTORY, num_frames

MAX_UTT_S = 15.0


@pytest.fixture
def split(tmp_path: Path) -> tuple[Path, Path]:
    """About 21 min of audio by 8 speakers of unequal shares (subset does not read audio, only the manifest)."""
    rng = random.Random(0)
    rows, labels, seqs = [], [], []
    for k in range(8):
        for j in range(12 + 2 * k):
            n = rng.randint(2 * 16000, int(MAX_UTT_S * 16000))
            rows.append(ManifestRow(f"spk{k}/spk{k}_{j:03d}.flac", n))
            # A row-specific first label, so that a misaligned subset would be caught.
            labels.append(" ".join([INVENTORY[len(rows) % 40]] + ["SIL"] * (num_frames(n) - 1)))
            seqs.append(f"spk{k}_{j:03d}")
    write_manifest(tmp_path / "data" / "train.tsv", tmp_path / "audio", rows)
    (tmp_path / "data" / "train.phn").write_text("\n".join(labels) + "\n")
    (tmp_path / "data" / "train.phnseq").write_text("\n".join(seqs) + "\n")
    (tmp_path / "data" / "dict.phn.txt").write_text("".join(f"{p} 1\n" for p in INVENTORY))
    return tmp_path / "data" / "train.tsv", tmp_path / "data" / "train.phn"


def selection(out: Path) -> list[str]:
    return read_manifest(out / "train.tsv").utt_ids


def test_duration_balance_and_rows_kept_with_labels(split, tmp_path: Path) -> None:
    manifest, labels = split
    report = make_subset(manifest, labels, tmp_path / "sub", seconds=600, seed=3)
    man = read_manifest(tmp_path / "sub" / "train.tsv")
    total = sum(r.num_samples for r in man.rows) / 16000
    assert 600 - MAX_UTT_S < total <= 600 and abs(report.seconds - total) < 1e-6
    per_spk: dict[str, float] = defaultdict(float)
    for r in man.rows:
        per_spk[r.relpath.split("/")[0]] += r.num_samples / 16000
    assert len(per_spk) == 8  # every speaker is used, each with 75 s +- one utterance
    assert max(per_spk.values()) - min(per_spk.values()) <= MAX_UTT_S
    # Rows keep their own labels and sequences, in the original manifest order.
    src = read_manifest(manifest)
    src_labels = dict(zip(src.utt_ids, labels.read_text().splitlines()))
    assert (tmp_path / "sub" / "train.phn").read_text().splitlines() == [src_labels[u] for u in man.utt_ids]
    assert (tmp_path / "sub" / "train.phnseq").read_text().splitlines() == man.utt_ids
    assert man.utt_ids == [u for u in src.utt_ids if u in set(man.utt_ids)]
    assert (tmp_path / "sub" / "dict.phn.txt").read_text() == (manifest.parent / "dict.phn.txt").read_text()
    info = json.loads((tmp_path / "sub" / "train.subset.json").read_text())
    assert info["seed"] == 3 and info["utterances"] == len(man) and set(info["speakers"]) == set(per_spk)


def test_seed_reproducible_and_different_seeds_differ(split, tmp_path: Path) -> None:
    manifest, labels = split
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert main(["subset", "--manifest", str(manifest), "--labels", str(labels), "--minutes", "10",
                     "--seed", str(seed), "--out", str(tmp_path / name)]) == 0
    assert selection(tmp_path / "a") == selection(tmp_path / "b")
    assert selection(tmp_path / "a") != selection(tmp_path / "c")
    assert (tmp_path / "a" / "train.phn").read_bytes() == (tmp_path / "b" / "train.phn").read_bytes()


def test_hours_and_more_than_available(split, tmp_path: Path, capsys) -> None:
    manifest, labels = split
    assert main(["subset", "--manifest", str(manifest), "--labels", str(labels), "--hours", "0.25",
                 "--out", str(tmp_path / "h")]) == 0
    assert 900 - MAX_UTT_S < sum(r.num_samples for r in read_manifest(tmp_path / "h" / "train.tsv").rows) / 16000 <= 900
    assert main(["subset", "--manifest", str(manifest), "--labels", str(labels), "--hours", "10",
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "asked for 600.00 min but only" in err and str(manifest) in err
    assert not (tmp_path / "x").exists()


def test_labels_must_match_manifest_and_inputs_are_not_overwritten(split, tmp_path: Path) -> None:
    manifest, labels = split
    short = tmp_path / "short.phn"
    short.write_text("\n".join(labels.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(LabelMismatchError, match="short.phn: .* lines but"):
        make_subset(manifest, short, tmp_path / "o", seconds=60)
    with pytest.raises(ConfigError, match="overwrite its input"):
        make_subset(manifest, labels, manifest.parent, seconds=60)


def test_select_balanced_equalises_durations() -> None:
    # Speaker "a" has many short utterances, "b" few long ones: both end with about the same audio.
    durations = [1.0] * 100 + [10.0] * 10
    speakers = ["a"] * 100 + ["b"] * 10
    chosen = select_balanced(durations, speakers, seconds=60, seed=0)
    got = {s: sum(durations[i] for i in chosen if speakers[i] == s) for s in "ab"}
    assert got == {"a": 30.0, "b": 30.0}


def labelled(tmp_path: Path, relpaths: list[tuple[str, int]]) -> tuple[Path, Path]:
    """Manifest ``tmp_path/train.tsv`` of ``(relpath, samples)`` rows and all-SIL labels."""
    write_manifest(tmp_path / "train.tsv", tmp_path / "audio", [ManifestRow(r, n) for r, n in relpaths])
    (tmp_path / "train.phn").write_text("".join(" ".join(["SIL"] * num_frames(n)) + "\n" for _, n in relpaths))
    return tmp_path / "train.tsv", tmp_path / "train.phn"


def test_variants_of_one_voice_are_balanced_as_distinct_speakers(tmp_path: Path) -> None:
    """`--speaker-from prefix` merged slt-a and slt-b into 'slt', which then got as much
    audio as rms-a alone. 10 s utterances: slt-a 6, slt-b 6, rms-a 12."""
    rows = [(f"{spk}/{spk}_{j:05d}.flac", 160000) for spk, n in (("slt-a", 6), ("slt-b", 6), ("rms-a", 12))
            for j in range(n)]
    manifest, labels = labelled(tmp_path, rows)
    for mode in ("auto", "prefix", "parent"):
        report = make_subset(manifest, labels, tmp_path / mode, seconds=120, seed=0, speaker_from=mode)
        assert report.speakers == {"slt-a": 40.0, "slt-b": 40.0, "rms-a": 40.0}, mode
        assert json.loads((tmp_path / mode / "train.subset.json").read_text())["speaker_from"] == mode
    # Without folders, the ids alone (auto or prefix) still tell the variants apart.
    flat = tmp_path / "flat"
    flat.mkdir()
    manifest, labels = labelled(flat, [(r.split("/")[1], n) for r, n in rows])
    assert main(["subset", "--manifest", str(manifest), "--labels", str(labels), "--minutes", "2",
                 "--out", str(flat / "sub")]) == 0
    assert json.loads((flat / "sub" / "train.subset.json").read_text())["speakers"] == {
        "rms-a": 40.0, "slt-a": 40.0, "slt-b": 40.0}


def test_librispeech_speakers_not_chapters(tmp_path: Path) -> None:
    """Speaker 84 has two chapters, 174 one: balancing is over the two speakers."""
    rows = [(f"84/{ch}/84-{ch}-{j:04d}.flac", 160000) for ch in (121123, 121550) for j in range(6)]
    rows += [(f"174/50561/174-50561-{j:04d}.flac", 160000) for j in range(12)]
    manifest, labels = labelled(tmp_path, rows)
    report = make_subset(manifest, labels, tmp_path / "sub", seconds=120, seed=0)
    assert report.speakers == {"84": 60.0, "174": 60.0}


def test_ambiguous_speaker_is_a_one_line_error_naming_the_row(tmp_path: Path, capsys) -> None:
    manifest, labels = labelled(tmp_path, [("slt-a/slt-a_00001.flac", 160000), ("slt/slt-a-00002.flac", 160000)])
    for mode in ("auto", "prefix"):
        assert main(["subset", "--manifest", str(manifest), "--labels", str(labels), "--minutes", "0.1",
                     "--speaker-from", mode, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{manifest}:3: utterance id 'slt-a-00002' does not split" in err
    assert not (tmp_path / "x").exists()
    spk_map = tmp_path / "spk.tsv"
    spk_map.write_text("slt-a_00001\tslt-a\nslt-a-00002\tslt-a\n")
    report = make_subset(manifest, labels, tmp_path / "m", seconds=20, speaker_map=spk_map)
    assert report.speakers == {"slt-a": 20.0}
    info = json.loads((tmp_path / "m" / "train.subset.json").read_text())
    assert (info["speaker_from"], info["speaker_map"]) == ("map", str(spk_map))
