"""`spokenlm labels`: every alignment format, the 50 Hz frame-centre rule, length tolerance, bad inputs."""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

import pytest

from spokenlm_plugin.cli import main
from spokenlm_plugin.data.alignments import Alignment, Alignments, Segment, parse_textgrid, read_textgrid
from spokenlm_plugin.data.labels import frame_labels, make_labels, phone_sequence
from spokenlm_plugin.core.errors import AlignmentError, LabelMismatchError
from spokenlm_plugin.core.io import read_manifest, write_manifest, ManifestRow
from spokenlm_plugin.core.phones import INVENTORY, SIL, num_frames
from tests.conftest import run_cli
from tests.data_support import assert_user_error, textgrid_long, textgrid_short, write_noise

# ---------------------------------------------------------------------------------------- fixtures


def make_corpus(tmp_path: Path, utts: dict[str, tuple[str, int]]) -> Path:
    """Real audio files ``audio/<speaker>/<utt>.flac`` and a manifest of them (utt -> (speaker, samples))."""
    rows = []
    for utt, (spk, n) in utts.items():
        write_noise(tmp_path / "audio" / spk / f"{utt}.flac", n)
        rows.append(ManifestRow(f"{spk}/{utt}.flac", n))
    write_manifest(tmp_path / "manifests" / "train.tsv", tmp_path / "audio", rows)
    return tmp_path / "manifests" / "train.tsv"


def reference_labels(segments: list[tuple[Fraction, Fraction, str]], n: int) -> list[str]:
    """Slow oracle: for each frame centre (i + 1/2) * 20 ms, scan for the segment holding it."""
    out = []
    for i in range(n):
        centre = (Fraction(i) + Fraction(1, 2)) / 50
        out.append(next((p for a, b, p in segments if a <= centre < b), SIL))
    return out


WORDS = [(0, 0.3, ""), (0.3, 0.61, "hello"), (0.61, 1.0, "")]
PHONES = [(0, 0.3, "sil"), (0.3, 0.37, "HH"), (0.37, 0.45, "AH0"), (0.45, 0.5, "L"), (0.5, 0.61, "OW1"),
          (0.61, 1.0, "")]

# ---------------------------------------------------------------------------------------- unit tests


def test_frame_centre_rule_hand_computed() -> None:
    # Centres at 0.01, 0.03, 0.05, 0.07, 0.09 s. A centre on a boundary belongs to the phone starting
    # there; [0.031, 0.049) holds no centre and disappears; 0.1 s ends 5 frames = num_frames(1680).
    segs = [(0, "0.03", "SIL"), ("0.03", "0.031", "AH"), ("0.031", "0.049", "K"), ("0.049", "0.05", "AH"),
            ("0.05", "0.055", "T"), ("0.055", "0.1", "S")]
    ali = Alignment("u", "test", tuple(Segment(Fraction(a), Fraction(b), p) for a, b, p in segs))
    assert num_frames(1680) == 5
    assert frame_labels(ali, 1680) == ["SIL", "AH", "T", "S", "S"]
    # A gap (no segment covers 0.03..0.05) is silence.
    gap = Alignment("g", "test", (Segment(Fraction(0), Fraction("0.03"), "AH"),
                                  Segment(Fraction("0.05"), Fraction("0.1"), "T")))
    assert frame_labels(gap, 1680) == ["AH", "SIL", "T", "T", "T"]
    frames = ["SIL", "AH", "AH", "SIL", "AH", "T", "T", "SIL"]
    assert phone_sequence(frames) == ["AH", "AH", "T"]  # a pause separates two AH


def test_frame_rule_matches_slow_oracle_on_random_alignments() -> None:
    rng = random.Random(0)
    for _ in range(50):
        t, segs = Fraction(0), []
        while t < 2:
            d = Fraction(rng.randint(1, 200), 1000)  # 1 ms grid: boundaries hit centres and near-centres
            segs.append((t, t + d, rng.choice(INVENTORY)))
            t += d
        num_samples = round(t * 16000)
        n = num_frames(num_samples)
        n_align = 0
        while (n_align + Fraction(1, 2)) / 50 < t:
            n_align += 1
        assert abs(n_align - n) <= 1
        expected = reference_labels(segs, n_align)[:n]
        expected += expected[-1:] * (n - len(expected))
        ali = Alignment("u", "t", tuple(Segment(a, b, p) for a, b, p in segs))
        assert frame_labels(ali, num_samples) == expected


@pytest.mark.parametrize("writer", [textgrid_long, textgrid_short])
def test_textgrid_long_and_short_parse_the_same(writer, tmp_path: Path) -> None:
    tiers = {"words": WORDS, "phones": PHONES + []}
    tiers["phones"][2] = (0.37, 0.45, 'AH0')
    path = tmp_path / "spk" / "u1.TextGrid"
    path.parent.mkdir()
    path.write_text(writer(1.0, tiers))
    parsed = parse_textgrid(path.read_text())
    assert list(parsed) == ["words", "phones"]
    assert [(float(a), float(b), p) for a, b, p in parsed["phones"].entries] == [(float(a), b, p) for a, b, p in PHONES]
    assert parsed["words"].entries[1] == (Fraction("0.3"), Fraction("0.61"), "hello")
    ali = read_textgrid(path)
    assert ali.utt_id == "u1" and ali.segments[1] == Segment(Fraction("0.3"), Fraction("0.37"), "HH")


def test_textgrid_quotes_utf16_and_mfa_speaker_tiers(tmp_path: Path) -> None:
    text = textgrid_long(1.0, {"spk1 - words": [(0, 1.0, 'say "hi"')], "spk1 - phones": PHONES})
    (tmp_path / "a.TextGrid").write_bytes(text.encode("utf-16"))
    tiers = parse_textgrid(text)
    assert tiers["spk1 - words"].entries[0][2] == 'say "hi"'
    assert [s.phone for s in read_textgrid(tmp_path / "a.TextGrid").segments] == [p for _, _, p in PHONES]
    (tmp_path / "b.TextGrid").write_text(textgrid_long(1.0, {"words": WORDS}))
    with pytest.raises(AlignmentError, match="b.TextGrid: expected one 'phones' tier"):
        read_textgrid(tmp_path / "b.TextGrid")
    (tmp_path / "c.TextGrid").write_text(textgrid_long(1.0, {"phones": PHONES})[:300])
    with pytest.raises(AlignmentError, match="c.TextGrid: TextGrid ends early"):
        read_textgrid(tmp_path / "c.TextGrid")


def test_length_tolerance_one_frame_ok_two_frames_error() -> None:
    n = 400 + 49 * 320  # 50 HuBERT frames
    assert num_frames(n) == 50

    def ali(frames: int) -> Alignment:  # an alignment ending after exactly `frames` frame centres
        return Alignment("u", "x.json", (Segment(Fraction(0), Fraction(frames, 50), "AH"),))

    assert frame_labels(ali(51), n) == ["AH"] * 50  # one too many: last one dropped
    assert frame_labels(ali(49), n) == ["AH"] * 50  # one too few: last one repeated
    for bad in (48, 52):
        with pytest.raises(LabelMismatchError, match=f"'u' has {bad} label frames .* audio has 50 frames"):
            frame_labels(ali(bad), n)


def test_fairseq_dictionary_reads_dict_in_inventory_order(tmp_path: Path) -> None:
    from fairseq.data import Dictionary

    manifest = make_corpus(tmp_path, {"u1": ("spk", 16000)})
    (tmp_path / "tg").mkdir()
    (tmp_path / "tg" / "u1.TextGrid").write_text(textgrid_long(1.0, {"words": WORDS, "phones": PHONES}))
    make_labels(manifest, tmp_path / "tg", tmp_path / "lab", fmt="textgrid")
    d = Dictionary.load(str(tmp_path / "lab" / "dict.phn.txt"))
    assert [d[i] for i in range(d.nspecial, len(d))] == list(INVENTORY)
    counts = dict(line.split() for line in (tmp_path / "lab" / "dict.phn.txt").read_text().splitlines())
    labels = (tmp_path / "lab" / "train.phn").read_text().split()
    assert len(labels) == num_frames(16000) == sum(int(c) for c in counts.values())
    # HH = [0.30, 0.37): centres 0.31, 0.33, 0.35 (0.37 is on the boundary: it belongs to AH).
    assert int(counts["HH"]) == labels.count("HH") == 3


# ---------------------------------------------------------------------------------------- formats


def random_alignment(rng: random.Random, duration_ms: int) -> list[tuple[Fraction, Fraction, str]]:
    """Phones on MFA's 10 ms grid (so half of the boundaries fall exactly on a 50 Hz frame centre);
    the last one ends at the audio's exact duration, as MFA's last interval does."""
    t, segs = 0, []
    phones = ["sil", "AH0", "B", "K", "IY1", "S", "T", "spn", "ER0", "sp"]
    while t < duration_ms - 30:
        d = min(rng.randint(2, 15) * 10, duration_ms - t)
        segs.append((Fraction(t, 1000), Fraction(t + d, 1000), rng.choice(phones)))
        t += d
    segs.append((Fraction(t, 1000), Fraction(duration_ms, 1000), "sil"))
    return segs


def frames_100hz(segs: list[tuple[Fraction, Fraction, str]]) -> list[str]:
    """The 100 Hz frame file of an alignment: frame j = phone over [j/100, (j+1)/100)."""
    end = segs[-1][1]
    return [next(p for a, b, p in segs if a <= Fraction(j, 100) < b) for j in range(int(end * 100))]


def test_textgrid_and_100hz_frames_give_identical_labels(tmp_path: Path) -> None:
    rng = random.Random(1)
    utts = {f"spk{k % 2}-u{k}": (f"spk{k % 2}", rng.randint(12000, 40000)) for k in range(8)}
    manifest = make_corpus(tmp_path, utts)
    frame_lines = []
    for k, (utt, (spk, n)) in enumerate(utts.items()):
        segs = random_alignment(rng, n // 16)
        segs[-1] = (segs[-1][0], Fraction(n, 16000), segs[-1][2])  # exact audio duration, e.g. 1.2345 s
        tg = tmp_path / "mfa" / spk / f"{utt}.TextGrid"  # MFA nests its output by speaker
        tg.parent.mkdir(parents=True, exist_ok=True)
        writer = textgrid_long if k % 2 else textgrid_short
        tg.write_text(writer(float(segs[-1][1]), {"words": [(0, float(segs[-1][1]), "")],
                                                  "phones": [(float(a), float(b), p) for a, b, p in segs]}))
        frame_lines.append(f"{utt}\t{' '.join(frames_100hz(segs))}")
    (tmp_path / "frames.txt").write_text("\n".join(reversed(frame_lines)) + "\n")  # order must not matter
    assert main(["labels", "--manifest", str(manifest), "--alignments", str(tmp_path / "mfa"),
                 "--format", "textgrid", "--out", str(tmp_path / "from_tg")]) == 0
    assert main(["labels", "--manifest", str(manifest), "--alignments", str(tmp_path / "frames.txt"),
                 "--format", "frames", "--frame-rate", "100", "--out", str(tmp_path / "from_frames")]) == 0
    tg_lines = (tmp_path / "from_tg" / "train.phn").read_text().splitlines()
    assert tg_lines == (tmp_path / "from_frames" / "train.phn").read_text().splitlines()
    dicts = [(tmp_path / d / "dict.phn.txt").read_text() for d in ("from_tg", "from_frames")]
    assert dicts[0] == dicts[1]
    # And both equal the slow oracle on the normalised TextGrid phones.
    for line, (utt, (spk, n)) in zip(tg_lines, utts.items()):
        ali = read_textgrid(tmp_path / "mfa" / spk / f"{utt}.TextGrid")
        from spokenlm_plugin.data.alignments import resolve_phones

        segs = [(s.start, s.end, s.phone) for s in resolve_phones(ali, INVENTORY).segments]
        assert line.split() == reference_labels(segs, num_frames(n))
        assert set(line.split()) <= set(INVENTORY)


def test_frames_at_other_rates_and_folder_of_frame_files(tmp_path: Path) -> None:
    manifest = make_corpus(tmp_path, {"a": ("s", 400 + 9 * 320), "b": ("s", 400 + 4 * 320)})  # 10 and 5 frames
    (tmp_path / "fr").mkdir()
    # 50 Hz: copied as is. 25 Hz: each frame spans two 50 Hz frames.
    (tmp_path / "fr" / "a.txt").write_text("a\t" + " ".join(["SIL"] * 3 + ["AH"] * 4 + ["T"] * 3) + "\n")
    (tmp_path / "fr" / "b.txt").write_text("b " + " ".join(["SIL", "K", "S", "S", "SIL"]) + "\n")
    make_labels(manifest, tmp_path / "fr", tmp_path / "l50", fmt="frames", frame_rate=50)
    assert (tmp_path / "l50" / "train.phn").read_text().splitlines() == [
        "SIL SIL SIL AH AH AH AH T T T", "SIL K S S SIL"]
    (tmp_path / "f25.txt").write_text("a\tSIL AH AH T T\nb\tK S S\n")
    make_labels(manifest, tmp_path / "f25.txt", tmp_path / "l25", fmt="frames", frame_rate=25)
    assert (tmp_path / "l25" / "train.phn").read_text().splitlines() == [
        "SIL SIL AH AH AH AH T T T T", "K K S S S"]  # b: 6 label frames, one trimmed


def test_json_alignments_sequence_and_custom_inventory(tmp_path: Path) -> None:
    manifest = make_corpus(tmp_path, {"u1": ("spkA", 16000), "u2": ("spkB", 8000)})
    (tmp_path / "ali").mkdir()
    for utt, n in (("u1", 16000), ("u2", 8000)):
        phones = [[0.0, 0.1, "SIL"], [0.1, 0.2, "K"], [0.2, 0.25, "AE"], [0.25, 0.3, "AE"], [0.3, 0.41, "T"],
                  [0.41, n / 16000, "SIL"]]
        (tmp_path / "ali" / f"{utt}.json").write_text(json.dumps(
            {"utt_id": utt, "speaker": "x", "text": "cat", "sample_rate": 16000, "num_samples": n,
             "words": [[0.1, 0.41, "cat"]], "phones": phones}))
    report = make_labels(manifest, tmp_path / "ali", tmp_path / "lab", fmt="json", sequence=True)
    assert report.num_utterances == 2 and report.sequence == tmp_path / "lab" / "train.phnseq"
    assert (tmp_path / "lab" / "train.phnseq").read_text() == "K AE T\nK AE T\n"
    first = (tmp_path / "lab" / "train.phn").read_text().splitlines()[0].split()
    assert first[:25] == ["SIL"] * 5 + ["K"] * 5 + ["AE"] * 5 + ["T"] * 5 + ["SIL"] * 5  # 0.41 s: SIL starts there
    assert len(first) == num_frames(16000)
    # Another inventory: a 4-phone one, listed as is in dict.phn.txt.
    (tmp_path / "inv.txt").write_text("SIL\nK\nAE\nT\n")
    make_labels(manifest, tmp_path / "ali", tmp_path / "lab4", fmt="json", inventory=tmp_path / "inv.txt")
    dict4 = (tmp_path / "lab4" / "dict.phn.txt").read_text().splitlines()
    assert [line.split()[0] for line in dict4] == ["SIL", "K", "AE", "T"]
    (tmp_path / "inv3.txt").write_text("SIL\nK\nAE\n")
    with pytest.raises(AlignmentError, match="u1.json: unknown phone 'T'"):
        make_labels(manifest, tmp_path / "ali", tmp_path / "lab3", fmt="json", inventory=tmp_path / "inv3.txt")
    assert not (tmp_path / "lab3").exists()


def test_alignments_matched_by_stem_not_order(tmp_path: Path) -> None:
    manifest = make_corpus(tmp_path, {"zz": ("s", 4000), "aa": ("s", 4000)})
    (tmp_path / "f.txt").write_text("aa\t" + " ".join(["K"] * 25) + "\nzz\t" + " ".join(["S"] * 25) + "\n")
    make_labels(manifest, tmp_path / "f.txt", tmp_path / "lab", fmt="frames")
    assert [line.split()[0] for line in (tmp_path / "lab" / "train.phn").read_text().splitlines()] == ["S", "K"]
    assert len(Alignments(tmp_path / "f.txt", "frames")) == 2


# ---------------------------------------------------------------------------------------- bad inputs (real CLI)


@pytest.fixture
def small_job(tmp_path: Path) -> tuple[Path, Path]:
    """Two utterances, 1 s and 0.5 s, with frame alignments at 100 Hz that fit them."""
    manifest = make_corpus(tmp_path, {"good": ("spk", 16000), "other": ("spk", 8000)})
    frames = tmp_path / "ali.txt"
    frames.write_text("good\t" + " ".join(["SIL"] * 20 + ["AH"] * 60 + ["SIL"] * 20) + "\n"
                      "other\t" + " ".join(["SIL"] * 10 + ["T"] * 30 + ["SIL"] * 10) + "\n")
    return manifest, frames


def labels_cli(manifest: Path, frames: Path, out: Path, *extra: str):
    return run_cli("spokenlm", "labels", "--manifest", str(manifest), "--alignments", str(frames),
                   "--format", "frames", "--out", str(out), *extra, check=False)


def test_cli_missing_audio_file(small_job, tmp_path: Path) -> None:
    manifest, frames = small_job
    (tmp_path / "audio" / "spk" / "other.flac").unlink()
    proc = labels_cli(manifest, frames, tmp_path / "out")
    assert_user_error(proc, f"{manifest}:3", "other.flac does not exist")
    assert not (tmp_path / "out").exists()


def test_cli_missing_alignment(small_job, tmp_path: Path) -> None:
    manifest, frames = small_job
    frames.write_text(frames.read_text().splitlines()[0] + "\n")
    proc = labels_cli(manifest, frames, tmp_path / "out")
    assert_user_error(proc, str(frames), "no alignment for utterance 'other'")
    assert not (tmp_path / "out").exists()


def test_cli_unknown_phone(small_job, tmp_path: Path) -> None:
    manifest, frames = small_job
    frames.write_text(frames.read_text().replace("T T T", "T QX T", 1))
    proc = labels_cli(manifest, frames, tmp_path / "out")
    assert_user_error(proc, f"{frames}:2", "unknown phone 'QX'")
    assert not (tmp_path / "out").exists()


def test_cli_length_mismatch(small_job, tmp_path: Path) -> None:
    manifest, frames = small_job
    frames.write_text(frames.read_text() .replace("SIL\n", "SIL SIL SIL SIL SIL SIL\n", 1))  # +5 x 10 ms
    proc = labels_cli(manifest, frames, tmp_path / "out")
    assert_user_error(proc, f"{frames}:1", "'good' has 52 label frames", "audio has 49 frames")
    assert not (tmp_path / "out").exists()


def test_cli_skip_bad_counts_and_writes_filtered_manifest(small_job, tmp_path: Path) -> None:
    manifest, frames = small_job
    frames.write_text(frames.read_text().splitlines()[1] + "\n")  # 'good' has no alignment
    proc = labels_cli(manifest, frames, tmp_path / "out", "--skip-bad", "--sequence")
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1 utterances" in proc.stdout and "filtered manifest" in proc.stdout
    filtered = read_manifest(tmp_path / "out" / "train.tsv")
    assert filtered.utt_ids == ["other"] and filtered.root == read_manifest(manifest).root
    assert len((tmp_path / "out" / "train.phn").read_text().splitlines()) == 1
    assert (tmp_path / "out" / "train.phnseq").read_text() == "T\n"
    skipped = (tmp_path / "out" / "train.skipped.txt").read_text().splitlines()
    assert len(skipped) == 1 and skipped[0].startswith("good\t")
    # Once the alignment is there, a rerun refreshes the manifest beside the labels (never stale).
    frames.write_text(frames.read_text() + "good\t" + " ".join(["AH"] * 100) + "\n")
    report = make_labels(manifest, frames, tmp_path / "out", fmt="frames")
    assert report.skipped == () and report.manifest is None
    assert read_manifest(tmp_path / "out" / "train.tsv").utt_ids == ["good", "other"]
    assert not (tmp_path / "out" / "train.skipped.txt").exists()


def test_committed_example_is_what_the_tools_write(tmp_path: Path) -> None:
    """manifests/example documents the formats: the three alignment formats of the same two
    utterances give the committed labels and item files, byte for byte."""
    from spokenlm_plugin.data.items import make_items

    example = Path(__file__).resolve().parents[1] / "manifests" / "example"
    rows = read_manifest(example / "train.tsv").rows
    for r in rows:
        write_noise(tmp_path / "audio" / r.relpath, r.num_samples)
    write_manifest(tmp_path / "train.tsv", tmp_path / "audio", rows)
    sources = {"textgrid": "alignments/textgrid", "frames": "alignments/frames_100hz.txt", "json": "alignments/json"}
    for fmt, ali in sources.items():
        make_labels(tmp_path / "train.tsv", example / ali, tmp_path / fmt, fmt=fmt, sequence=True)
        for name in ("train.phn", "train.phnseq", "dict.phn.txt"):
            assert (tmp_path / fmt / name).read_text() == (example / "labels" / name).read_text(), (fmt, name)
        for kind in ("triphone", "phoneme"):
            make_items(tmp_path / "train.tsv", example / ali, tmp_path / fmt / f"{kind}.item", fmt=fmt, kind=kind)
            expected = (example / "items" / f"train.{kind}.item").read_text()
            assert (tmp_path / fmt / f"{kind}.item").read_text() == expected
