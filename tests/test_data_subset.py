"""`spokenlm subset`: duration, speaker balance, reproducibility, and rows kept together with their labels."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import pytest

from spokenlm_plugin.cli import main
from spokenlm_plugin.data.subset import make_subset, select_balanced
from spokenlm_plugin.errors import ConfigError, LabelMismatchError
from spokenlm_plugin.io import ManifestRow, read_manifest, write_manifest
from spokenlm_plugin.phones import INVENTORY, num_frames

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
