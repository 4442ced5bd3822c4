"""`spokenlm items`: hand-written expected item files, and fastabx accepting (and scoring) what we write."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spokenlm_plugin.cli import main
from spokenlm_plugin.data.items import HEADER, fastabx_slice, format_time, make_items
from spokenlm_plugin.data.speakers import id_speaker
from spokenlm_plugin.core.errors import AlignmentError, ConfigError
from spokenlm_plugin.core.io import ManifestRow
from spokenlm_plugin.core.io import write_manifest as io_write_manifest
from spokenlm_plugin.core.phones import INVENTORY, num_frames
from tests.data_support import textgrid_long, write_noise


def write_manifest(path: Path, root: Path, rows: list[ManifestRow]) -> None:
    """A manifest and its audio (noise of each row's length, unless already there): items open the audio."""
    for row in rows:
        if not (root / row.relpath).is_file():
            write_noise(root / row.relpath, row.num_samples)
    io_write_manifest(path, root, rows)

# u1 (1 s, 49 frames): K is 5 ms long (no frame centre); T and AE-as-triphone end at 1.0 s, past the
# 49th frame. u2 (0.6 s): a gap between K and AA, which therefore has no triphone context.
U1 = [(0, 0.2, "sil"), (0.2, 0.3, "HH"), (0.3, 0.45, "AH0"), (0.45, 0.5, "L"), (0.5, 0.7, "OW1"),
      (0.7, 0.8, "sp"), (0.8, 0.805, "K"), (0.805, 0.9, "AE1"), (0.9, 1.0, "T")]
U2 = [(0, 0.1, ""), (0.1, 0.2, "K"), (0.3, 0.4, "AA1"), (0.4, 0.5, "R"), (0.5, 0.6, "")]

EXPECTED_TRIPHONE = f"""{HEADER}
u1 0.2 0.5 AH HH L spkA
u1 0.3 0.7 L AH OW spkA
"""
EXPECTED_PHONEME = f"""{HEADER}
u1 0.2 0.3 HH SIL AH spkA
u1 0.3 0.45 AH HH L spkA
u1 0.45 0.5 L AH OW spkA
u1 0.5 0.7 OW L SIL spkA
u1 0.805 0.9 AE K T spkA
u2 0.1 0.2 K SIL SIL spkB
u2 0.3 0.4 AA SIL R spkB
u2 0.4 0.5 R AA SIL spkB
"""


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    """Manifest + MFA TextGrids of u1 and u2 (with gaps allowed in an interval tier as missing intervals)."""
    write_manifest(tmp_path / "train.tsv", tmp_path / "audio",
                   [ManifestRow("spkA/u1.flac", 16000), ManifestRow("spkB/u2.flac", 9600)])
    for utt, phones in (("u1", U1), ("u2", U2)):
        (tmp_path / "tg").mkdir(exist_ok=True)
        (tmp_path / "tg" / f"{utt}.TextGrid").write_text(
            textgrid_long(phones[-1][1], {"words": [(0, phones[-1][1], "")], "phones": phones}))
    return tmp_path / "train.tsv", tmp_path / "tg"


def test_triphone_items_hand_written(tiny, tmp_path: Path, capsys) -> None:
    manifest, tg = tiny
    assert num_frames(16000) == 49
    assert main(["items", "--manifest", str(manifest), "--alignments", str(tg), "--format", "textgrid",
                 "--speaker-from", "parent", "--out", str(tmp_path / "t.item")]) == 0
    assert (tmp_path / "t.item").read_text() == EXPECTED_TRIPHONE
    # AE (K, T) spans 0.8 - 1.0 s: its last frame (49) does not exist.
    out = capsys.readouterr().out
    assert "2 triphone items; left out 0 shorter than one 20 ms frame and 1 ending after the last frame" in out


def test_phoneme_items_hand_written(tiny, tmp_path: Path) -> None:
    manifest, tg = tiny
    counts = make_items(manifest, tg, tmp_path / "p.item", fmt="textgrid", kind="phoneme", speaker_from="parent")
    assert (tmp_path / "p.item").read_text() == EXPECTED_PHONEME
    assert (counts.written, counts.short, counts.beyond_end) == (8, 1, 1)  # K (5 ms) short, T past the end


def test_slicing_rule_and_time_format() -> None:
    from fractions import Fraction

    assert fastabx_slice("0.8", "0.805") == (40, 40)  # no frame: left out
    assert fastabx_slice("0.805", "0.815") == (40, 41)  # holds centre 0.81: one frame
    assert fastabx_slice("0.2", "0.5") == (10, 25)
    times = ("0", "0.37", "1", "12.5", "1/3")
    assert [format_time(Fraction(x)) for x in times] == ["0", "0.37", "1", "12.5", "0.333333"]


def test_missing_alignment_is_skipped_but_an_unknown_speaker_is_not(tiny, tmp_path: Path) -> None:
    manifest, tg = tiny
    (tg / "u2.TextGrid").unlink()
    with pytest.raises(AlignmentError, match="no alignment for utterance 'u2'"):
        make_items(manifest, tg, tmp_path / "x.item", fmt="textgrid", speaker_from="parent")
    assert not (tmp_path / "x.item").exists()
    counts = make_items(manifest, tg, tmp_path / "x.item", fmt="textgrid", skip_bad=True, speaker_from="parent")
    assert counts.skipped_utterances == 1 and counts.written == 2
    assert (tmp_path / "x.item").read_text().splitlines()[1] == "u1 0.2 0.5 AH HH L spkA"
    # 'u1' says nothing about its speaker, and a folder alone is not trusted by default.
    for mode in ("prefix", "auto"):
        with pytest.raises(ConfigError, match=rf"^{manifest}:2: utterance id 'u1' does not split"):
            make_items(manifest, tg, tmp_path / "y.item", fmt="textgrid", skip_bad=True, speaker_from=mode)
    assert not (tmp_path / "y.item").exists()


# ---------------------------------------------------------------------------------------- speakers


def test_prefix_rule_on_corpus_conventions() -> None:
    cases = {
        "84-121123-0000": "84",  # LibriSpeech <speaker>-<chapter>-<utterance>
        "84_121123_0000": "84",
        "slt-a_01234": "slt-a",  # the synthetic corpus <speaker>_<index>
        "spk1-0001": "spk1",
        "lex_awb-b": None,  # the utterance part holds '-': where would the speaker end?
        "slt-a-01234": None,
        "a_b_c": None,
        "u1": None,
        "_0001": None,
        "spk-": None,
    }
    assert {utt: id_speaker(utt) for utt in cases} == cases


def json_corpus(tmp_path: Path, relpaths: list[str], *, speaker_field: bool = True) -> Path:
    """Manifest of ``relpaths`` (1 s each, audio not written: items reads none) and a JSON alignment
    per utterance whose ``"speaker"`` is the audio's folder."""
    rows = []
    (tmp_path / "ali").mkdir()
    for rel in relpaths:
        utt = Path(rel).name.split(".")[0]
        record = {"utt_id": utt, "phones": [[a, b, p] for a, b, p in U1]}
        if speaker_field:
            record["speaker"] = Path(rel).parent.name
        (tmp_path / "ali" / f"{utt}.json").write_text(json.dumps(record))
        rows.append(ManifestRow(rel, 16000))
    write_manifest(tmp_path / "dev.tsv", tmp_path / "audio", rows)
    return tmp_path / "dev.tsv"


def item_speakers(item: Path) -> dict[str, str]:
    return {line.split()[0]: line.split()[-1] for line in item.read_text().splitlines()[1:]}


SLT = ["slt-a/slt-a_00001.flac", "slt-a/slt-a_00002.flac", "slt-b/slt-b_00001.flac", "rms-a/rms-a_00003.flac"]


def test_items_keep_variants_of_one_voice_apart(tmp_path: Path) -> None:
    """`--speaker-from prefix` used to merge slt-a and slt-b into 'slt'."""
    manifest = json_corpus(tmp_path, SLT)
    expected = {"slt-a_00001": "slt-a", "slt-a_00002": "slt-a", "slt-b_00001": "slt-b", "rms-a_00003": "rms-a"}
    for mode in ("auto", "alignment", "prefix", "parent"):
        assert main(["items", "--manifest", str(manifest), "--alignments", str(tmp_path / "ali"), "--format", "json",
                     "--speaker-from", mode, "--out", str(tmp_path / f"{mode}.item")]) == 0
        assert item_speakers(tmp_path / f"{mode}.item") == expected, mode
    # The JSON alignment's speaker wins by default, even over the audio's layout.
    flat = tmp_path / "flat"
    flat.mkdir()
    manifest = json_corpus(flat, [Path(r).name for r in SLT], speaker_field=False)
    make_items(manifest, flat / "ali", flat / "x.item", fmt="json")
    assert item_speakers(flat / "x.item") == expected
    record = json.loads((flat / "ali" / "slt-b_00001.json").read_text())
    (flat / "ali" / "slt-b_00001.json").write_text(json.dumps({**record, "speaker": "voice7"}))
    make_items(manifest, flat / "ali", flat / "x.item", fmt="json")
    assert item_speakers(flat / "x.item")["slt-b_00001"] == "voice7"
    with pytest.raises(ConfigError, match=r"slt-a_00001\.json: no speaker in the alignment"):
        make_items(manifest, flat / "ali", flat / "x.item", fmt="json", speaker_from="alignment")


def test_items_librispeech_speaker_is_not_the_chapter(tmp_path: Path) -> None:
    rels = ["84/121123/84-121123-0000.flac", "84/121550/84-121550-0001.flac", "174/50561/174-50561-0000.flac"]
    write_manifest(tmp_path / "dev.tsv", tmp_path / "audio", [ManifestRow(r, 16000) for r in rels])
    (tmp_path / "tg").mkdir()
    for r in rels:
        (tmp_path / "tg" / f"{Path(r).name.split('.')[0]}.TextGrid").write_text(
            textgrid_long(1.0, {"words": [(0, 1.0, "")], "phones": U1}))
    expected = {"84-121123-0000": "84", "84-121550-0001": "84", "174-50561-0000": "174"}
    for mode in ("auto", "prefix"):
        make_items(tmp_path / "dev.tsv", tmp_path / "tg", tmp_path / "x.item", fmt="textgrid", speaker_from=mode)
        assert item_speakers(tmp_path / "x.item") == expected
    # A TextGrid has no speaker field: asking for it is an error naming the file.
    with pytest.raises(ConfigError, match=r"84-121123-0000\.TextGrid: no speaker in the alignment"):
        make_items(tmp_path / "dev.tsv", tmp_path / "tg", tmp_path / "x.item", fmt="textgrid", speaker_from="alignment")


def test_ambiguous_ids_are_refused_in_one_line(tmp_path: Path, capsys) -> None:
    manifest = json_corpus(tmp_path, ["slt-a/slt-a_00001.flac", "slt/slt-a-00002.flac"], speaker_field=False)
    for mode in ("auto", "prefix"):
        assert main(["items", "--manifest", str(manifest), "--alignments", str(tmp_path / "ali"), "--format", "json",
                     "--speaker-from", mode, "--out", str(tmp_path / "x.item")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{manifest}:3: utterance id 'slt-a-00002' does not split" in err
    assert not (tmp_path / "x.item").exists()
    # The id names a speaker that the folders contradict (a voice folder holding its variants).
    (tmp_path / "ali" / "slt-b_00003.json").write_text((tmp_path / "ali" / "slt-a_00001.json").read_text()
                                                        .replace("slt-a_00001", "slt-b_00003"))
    write_manifest(manifest, tmp_path / "audio", [ManifestRow("slt/slt-b_00003.flac", 16000)])
    with pytest.raises(ConfigError, match=r":2: utterance id 'slt-b_00003' names speaker 'slt-b' but slt/slt-b_00003"):
        make_items(manifest, tmp_path / "ali", tmp_path / "x.item", fmt="json")
    make_items(manifest, tmp_path / "ali", tmp_path / "x.item", fmt="json", speaker_from="prefix")
    assert item_speakers(tmp_path / "x.item") == {"slt-b_00003": "slt-b"}


def test_speaker_map(tmp_path: Path, capsys) -> None:
    manifest = json_corpus(tmp_path, ["a/u1.flac", "b/u2.flac"], speaker_field=False)
    spk_map = tmp_path / "spk.tsv"
    spk_map.write_text("# utt\tspeaker\nu1\tspeaker-1\nu2\tspeaker-2\nu9\tother\n")
    args = ["items", "--manifest", str(manifest), "--alignments", str(tmp_path / "ali"), "--format", "json"]
    assert main([*args, "--speaker-map", str(spk_map), "--out", str(tmp_path / "x.item")]) == 0
    assert item_speakers(tmp_path / "x.item") == {"u1": "speaker-1", "u2": "speaker-2"}
    with pytest.raises(SystemExit):  # the two options exclude each other
        main([*args, "--speaker-map", str(spk_map), "--speaker-from", "parent", "--out", str(tmp_path / "x.item")])
    with pytest.raises(ConfigError, match="exclude each other"):
        make_items(manifest, tmp_path / "ali", tmp_path / "x.item", fmt="json", speaker_from="parent",
                   speaker_map=spk_map)
    spk_map.write_text("u1\tspeaker-1\n")
    with pytest.raises(ConfigError, match=rf"^{manifest}:3: utterance 'u2' is not in the speaker map {spk_map}"):
        make_items(manifest, tmp_path / "ali", tmp_path / "x.item", fmt="json", speaker_map=spk_map)
    for bad, why in (("u1 speaker-1\n", "expected 'utt_id<TAB>speaker'"), ("u1\ts 1\n", "holds whitespace"),
                     ("u1\ta\nu1\tb\n", "already has speaker 'a'")):
        spk_map.write_text(bad)
        with pytest.raises(ConfigError, match=why):
            make_items(manifest, tmp_path / "ali", tmp_path / "x.item", fmt="json", speaker_map=spk_map)


def test_committed_corpus_items_carry_the_corpus_speakers(corpus_dir: Path) -> None:
    """Every row of the committed item files names the speaker of its utterance's alignment."""
    for item in sorted((corpus_dir / "items").glob("*.item")):
        for utt, spk in item_speakers(item).items():
            assert spk == json.loads((corpus_dir / "alignments" / f"{utt}.json").read_text())["speaker"], item


# ---------------------------------------------------------------------------------------- fastabx


def synth_alignments(tmp_path: Path) -> Path:
    """Two speakers x 3 utterances of 'HH AH L OW / HH EH L OW / B IH T / B AH T' with random durations."""
    rng = random.Random(0)
    words = [["HH", "AH", "L", "OW"], ["HH", "EH", "L", "OW"], ["B", "IH", "T"], ["B", "AH", "T"]]
    rows = []
    (tmp_path / "ali").mkdir()
    for spk in ("spkA", "spkB"):
        for k in range(3):
            utt = f"{spk}_{k}"
            t, phones = 0.0, [[0.0, 0.15, "SIL"]]
            t = 0.15
            for w in rng.sample(words, len(words)):
                for p in w:
                    # A 20 ms grid keeps boundaries off the frame centres, where fastabx's closed
                    # [onset, offset] would take one frame of the neighbour (and the error would not be 0).
                    d = rng.randint(2, 6) / 50
                    phones.append([round(t, 2), round(t + d, 2), p])
                    t = round(t + d, 2)
                phones.append([t, round(t + 0.1, 2), "SIL"])
                t = round(t + 0.1, 2)
            n = int(t * 16000)
            (tmp_path / "audio" / spk).mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / "audio" / spk / f"{utt}.flac", np.zeros(n, dtype="float32"), 16000)
            (tmp_path / "ali" / f"{utt}.json").write_text(json.dumps(
                {"utt_id": utt, "speaker": spk, "text": "", "sample_rate": 16000, "num_samples": n, "words": [],
                 "phones": phones}))
            rows.append(ManifestRow(f"{spk}/{utt}.flac", n))
    write_manifest(tmp_path / "dev.tsv", tmp_path / "audio", rows)
    return tmp_path / "dev.tsv"


def test_fastabx_scores_our_items_on_one_hot_phone_features(tmp_path: Path) -> None:
    """One-hot features of our own 50 Hz labels: fastabx must read the items, slice inside the
    features, and find every phone contrast (error 0); features blind to the phone score chance."""
    import torch
    from fastabx import zerospeech_abx

    manifest = synth_alignments(tmp_path)
    assert main(["labels", "--manifest", str(manifest), "--alignments", str(tmp_path / "ali"), "--format", "json",
                 "--out", str(tmp_path / "lab")]) == 0
    index = {p: i for i, p in enumerate(INVENTORY)}
    rng = np.random.default_rng(0)
    utts = [line.split("\t")[0].split("/")[1].split(".")[0] for line in manifest.read_text().splitlines()[1:]]
    for utt, line in zip(utts, (tmp_path / "lab" / "dev.phn").read_text().splitlines()):
        onehot = np.eye(len(INVENTORY), dtype="float32")[[index[p] for p in line.split()]]
        for name, feats in (("good", onehot + 0.01 * rng.random(onehot.shape, dtype="float32")),
                            ("blind", rng.random(onehot.shape, dtype="float32"))):
            (tmp_path / name).mkdir(exist_ok=True)
            np.save(tmp_path / name / f"{utt}.npy", feats)

    def load(path: str | Path) -> torch.Tensor:
        return torch.from_numpy(np.load(path))

    for kind, context in (("triphone", "within"), ("phoneme", "any")):
        item = tmp_path / f"dev.{kind}.item"
        make_items(manifest, tmp_path / "ali", item, fmt="json", kind=kind)
        assert item.read_text().splitlines()[0] == HEADER
        kwargs = dict(max_size_group=10, max_x_across=5, context=context, frequency=50, feature_maker=load,
                      extension=".npy", progress=False)
        for speaker in ("within", "across"):
            assert zerospeech_abx(item, tmp_path / "good", speaker=speaker, **kwargs) == 0.0
        assert zerospeech_abx(item, tmp_path / "blind", speaker="within", **kwargs) > 0.2
