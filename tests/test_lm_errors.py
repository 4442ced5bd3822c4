"""Bad inputs of the unit-LM and joint-LM commands end in one line naming the file, and leave no
output: lm-score / lm-generate with another dictionary, lm-data on an empty split or line,
fairseq-train --task speech_text_lm on a missing folder or an empty subset, sutlm-generate's vocoder
checked before anything is written, and a prompt unit outside the LM shown as the user wrote it.

The LMs here are untrained: built in-process as fairseq-train builds them (a few seconds), saved in
fairseq's checkpoint format. Only the refusals inside fairseq-train run the real CLI.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from spokenlm_plugin import cli
from spokenlm_plugin.core.errors import ConfigError, DictionaryError, FeatureError
from spokenlm_plugin.core.km import write_km
from spokenlm_plugin.sutlm.data import DataConfig, build
from spokenlm_plugin.sutlm.sequences import AstConfig
from spokenlm_plugin.ulm.data import write_dictionary

from .conftest import REPO, fails_in_one_line, run_cli
from .ulm_support import untrained_checkpoint
from .vocoder_support import phone_km, tiny_train

K = 30  # units of the unit LM
ENV = {"OMP_NUM_THREADS": "1"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------ unit LM


@pytest.fixture(scope="module")
def unit_lm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A K = 30 unit LSTM LM (its data folder holds only dict.txt), a 20-unit dictionary, 3 utterances."""
    d = tmp_path_factory.mktemp("unit_lm")
    write_dictionary(d / "data" / "dict.txt", K)
    write_dictionary(d / "d20" / "dict.txt", 20)
    write_km(d / "u.km", [[1, 2, 3], [4, 5], [29, 0]])
    (d / "u.ids").write_text("a\nb\nc\n")
    lm = untrained_checkpoint(d / "lm.pt", [str(d / "data"), "--task", "language_modeling", "--arch", "unit_lstm_lm_small",
                                            "--decoder-embed-dim", "8", "--decoder-hidden-size", "8",
                                            "--decoder-out-embed-dim", "8"])
    return {"lm": lm, "d20": d / "d20", "km": d / "u.km", "ids": d / "u.ids"}


def test_lm_score_and_generate_refuse_a_dictionary_of_another_size(unit_lm, tmp_path: Path, capsys) -> None:
    """lm-score used to end in fairseq's 'size mismatch for decoder...' traceback; both commands now
    give the same line (one check): the dictionary, both sizes, the fix."""
    needles = (f"{unit_lm['d20'] / 'dict.txt'}: 24 symbols but the LM {unit_lm['lm']} was trained with a "
               "dictionary of 34", "pass --data with the folder of the LM's own dict.txt")
    score = fails_in_one_line(["lm-score", "--checkpoint", str(unit_lm["lm"]), "--units", str(unit_lm["km"]),
                    "--ids", str(unit_lm["ids"]), "--data", str(unit_lm["d20"]), "--out", str(tmp_path / "s.txt")],
                   capsys, *needles)
    generate = fails_in_one_line(["lm-generate", "--checkpoint", str(unit_lm["lm"]), "--prompts", str(unit_lm["km"]),
                       "--data", str(unit_lm["d20"]), "--out", str(tmp_path / "g.km")], capsys, *needles)
    assert score.split(": error: ", 1)[1] == generate.split(": error: ", 1)[1]
    assert not list(tmp_path.iterdir())  # no submission, no .km, no fairseq-generate log
    # the LM's own dictionary still scores
    assert cli.main(["lm-score", "--checkpoint", str(unit_lm["lm"]), "--units", str(unit_lm["km"]),
                     "--ids", str(unit_lm["ids"]), "--out", str(tmp_path / "s.txt")]) == 0
    assert len((tmp_path / "s.txt").read_text().splitlines()) == 3


def test_lm_score_bad_options_and_gold_leave_nothing(unit_lm, tmp_path: Path, capsys) -> None:
    out = tmp_path / "s.txt"
    base = ["lm-score", "--checkpoint", str(unit_lm["lm"]), "--units", str(unit_lm["km"]), "--out", str(out)]
    # no utterance (an empty .km and id list): an empty submission used to be written with exit 0
    (tmp_path / "none.ids").write_text("")
    (tmp_path / "none.km").write_text("")
    for scorer in (["--checkpoint", str(unit_lm["lm"])], ["--scorer", "length"]):
        fails_in_one_line(["lm-score", *scorer, "--units", str(tmp_path / "none.km"), "--ids", str(tmp_path / "none.ids"),
                "--out", str(out)], capsys, f"{tmp_path / 'none.ids'}: no utterance id")
    fails_in_one_line([*base, "--ids", str(unit_lm["ids"]), "--batch-size", "0"], capsys, "--batch-size 0: must be >= 1")
    fails_in_one_line([*base, "--ids", str(unit_lm["ids"]), "--threads", "0"], capsys, "--threads 0: must be >= 1")
    # a gold.csv that is not one used to be refused after the submission was written
    fails_in_one_line([*base, "--ids", str(unit_lm["ids"]), "--gold", str(unit_lm["km"]), "--task", "lexical"], capsys,
           f"{unit_lm['km']}: not a lexical gold.csv")
    assert not out.exists()
    fails_in_one_line([*base, "--ids", str(unit_lm["ids"]), "--data", str(tmp_path / "nope")], capsys,
           f"{tmp_path / 'nope' / 'dict.txt'}: dictionary not found (--data")


def test_lm_generate_refuses_batch_size_zero(unit_lm, tmp_path: Path, capsys) -> None:
    fails_in_one_line(["lm-generate", "--checkpoint", str(unit_lm["lm"]), "--prompts", str(unit_lm["km"]),
            "--batch-size", "0", "--out", str(tmp_path / "g.km")], capsys, "--batch-size 0: must be >= 1")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------ lm-data


def test_lm_data_refuses_an_empty_split_and_an_empty_line(tmp_path: Path, capsys) -> None:
    """An empty split made a 0-byte valid.bin that fairseq's language_modeling cannot load; an empty
    line was an empty utterance (lm-score and vocoder-synth refuse that line)."""
    units = tmp_path / "units"
    write_km(units / "train.km", [[1, 2, 3], [2, 3]])
    (units / "valid.km").write_text("")
    argv = ["lm-data", "--units-dir", str(units), "--splits", "train", "valid", "--out", str(tmp_path / "bin"),
            "--vocab-size", "4"]
    fails_in_one_line(argv, capsys, f"{units / 'valid.km'}: empty split (no utterance)", "--splits")
    (units / "valid.km").write_text("1 2\n\n3\n")
    fails_in_one_line(argv, capsys, f"{units / 'valid.km'}:2: empty line (no units)")
    assert not (tmp_path / "bin").exists()


def test_lm_data_rebuilds_over_a_damaged_record(tmp_path: Path, capsys) -> None:
    """A damaged lm-data.json (an interrupted copy) used to be a JSONDecodeError traceback: it is rebuilt."""
    units = tmp_path / "units"
    write_km(units / "train.km", [[1, 2, 3], [2, 3]])
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "lm-data.json").write_text('{"vocab_size": 4, "fing')
    assert cli.main(["lm-data", "--units-dir", str(units), "--splits", "train", "--out", str(tmp_path / "bin"),
                     "--vocab-size", "4"]) == 0
    assert (tmp_path / "bin" / "train.bin").stat().st_size > 0
    assert '"vocab_size": 4' in (tmp_path / "bin" / "lm-data.json").read_text()


# ------------------------------------------------------------------------------ joint LM


@pytest.fixture(scope="module")
def joint(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> dict[str, Path]:
    """sutlm-data on the corpus' gold-phone units (K = 40, raw units only, no AST: an empty train_ast
    subset, as --ast-per-utterance 0 makes), an untrained joint LM on it, and two tiny vocoders."""
    tmp = tmp_path_factory.mktemp("joint")
    corpus = tmp / "corpus"
    for d in ("manifests", "transcripts", "alignments"):
        shutil.copytree(corpus_dir / d, corpus / d)
    km = phone_km(corpus_dir, tmp / "km")
    cfg = DataConfig(vocab_size=40, unit_vocab_sizes=(0,), text_vocab_size=200, text_max_sentences=150,
                     ast=AstConfig(per_utterance=0))
    build(corpus, tmp / "km", tmp / "out", cfg=cfg)
    data = tmp / "out" / "units-raw"
    lm = untrained_checkpoint(tmp / "joint.pt", [str(data), "--task", "speech_text_lm", "--arch", "sutlm_transformer_lm_tiny",
                                                 "--decoder-embed-dim", "16", "--decoder-ffn-embed-dim", "16",
                                                 "--decoder-layers", "1", "--decoder-attention-heads", "2"])
    tiny_train(corpus_dir, km["train"], tmp / "voc", steps=1)
    tiny_train(corpus_dir, km["train"], tmp / "voc_dur", steps=1, duration_predictor=True)
    return {"out": tmp / "out", "data": data, "lm": lm, "vocoder": tmp / "voc" / "vocoder.pt",
            "vocoder_dur": tmp / "voc_dur" / "vocoder.pt"}


def _trainfails_in_one_line(data: Path, save: Path) -> str:
    proc = run_cli("fairseq-train", str(data), "--user-dir", str(REPO / "spokenlm_plugin"), "--task", "speech_text_lm",
                   "--arch", "sutlm_transformer_lm_tiny", "--decoder-embed-dim", "16", "--decoder-ffn-embed-dim", "16",
                   "--sample-break-mode", "eos", "--tokens-per-sample", "512", "--max-tokens", "1024",
                   "--optimizer", "adam", "--lr", "1e-3", "--max-update", "1", "--cpu", "--num-workers", "0",
                   "--save-dir", str(save), check=False, env=ENV)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert not save.exists() or not list(save.glob("*.pt"))
    return proc.stderr.strip().splitlines()[-1]


def test_fairseq_train_speech_text_lm_refuses_bad_data_in_one_line(joint, tmp_path: Path) -> None:
    """A missing data folder was a FileNotFoundError (dict.txt) traceback, a 0-byte subset numpy's
    'cannot mmap an empty file'."""
    missing = tmp_path / "no-such-data"
    assert _trainfails_in_one_line(missing, tmp_path / "ck1") == (
        f"fairseq-train: error: {missing}: data folder not found; make the data with 'spokenlm sutlm-data' "
        "and train on one of its units-raw / units-spN folders")
    assert (joint["data"] / "train_ast.bin").stat().st_size == 0
    line = _trainfails_in_one_line(joint["data"], tmp_path / "ck2")
    assert line.startswith(f"fairseq-train: error: {joint['data'] / 'train_ast.bin'}: empty subset 'train_ast' "
                           "(0 bytes: no sequence)"), line


def test_speech_text_lm_data_folder_checks(joint, tmp_path: Path) -> None:
    """The same checks in-process: sutlm-data's output folder given instead of a joint-LM folder inside
    it (the usual slip), a dict.txt that is not a dictionary, a subset without its index."""
    from spokenlm_plugin.sutlm.task import check_data_folder, check_subset

    with pytest.raises(DictionaryError, match=rf"^{joint['out'] / 'dict.txt'}: dictionary not found; train on a "
                                              rf"joint-LM folder inside it, e.g. {joint['data']}$"):
        check_data_folder(str(joint["out"]))
    (tmp_path / "dict.txt").write_text("[SPEECH]\n")
    with pytest.raises(DictionaryError, match=rf"^{tmp_path / 'dict.txt'}: not a fairseq dictionary"):
        check_data_folder(str(tmp_path))
    (tmp_path / "valid_speech.bin").write_bytes(b"\0" * 8)
    with pytest.raises(FeatureError, match=rf"^{tmp_path / 'valid_speech.idx'}: index of subset 'valid_speech' not found"):
        check_subset(str(tmp_path), "valid_speech")


def _generate(joint: dict[str, Path], prompts: Path, out: Path, *extra: str) -> list[str]:
    return ["sutlm-generate", "--checkpoint", str(joint["lm"]), "--data", str(joint["data"]), "--prompts", str(prompts),
            "--to", "speech", "--out", str(out), *extra]


def test_sutlm_generate_checks_the_vocoder_before_writing(joint, tmp_path: Path, capsys) -> None:
    """The continuations' .km used to be written before the vocoder was refused."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("speech 1 2 3\ntext the\n")
    out, wavs = tmp_path / "c.km", tmp_path / "wav"
    fails_in_one_line(_generate(joint, prompts, out, "--vocoder", str(joint["vocoder"]), "--wav-dir", str(wavs)), capsys,
           f"{joint['vocoder']}: no duration predictor")
    assert not out.exists() and not wavs.exists()
    # the joint LM's checkpoint given as the vocoder (with a vocoder's config)
    fails_in_one_line(_generate(joint, prompts, out, "--vocoder", str(joint["lm"]), "--vocoder-config",
                     str(joint["vocoder_dur"].parent / "config.json"), "--wav-dir", str(wavs)), capsys,
           f"{joint['lm']}: not a vocoder checkpoint")
    assert not out.exists() and not wavs.exists()
    # a vocoder with a duration predictor voices them (an untrained LM's continuations may all be empty:
    # a wav per non-empty line)
    assert cli.main(_generate(joint, prompts, out, "--vocoder", str(joint["vocoder_dur"]), "--wav-dir", str(wavs))) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and len(list(wavs.glob("*.wav"))) == sum(1 for line in lines if line)


def test_vocoder_of_fewer_units_than_the_joint_lm(joint) -> None:
    from fairseq.data import Dictionary

    from spokenlm_plugin.sutlm.generate import load_vocoder
    from spokenlm_plugin.sutlm.tokens import unit_char

    d = Dictionary()
    for u in range(50):
        d.add_symbol(unit_char(u))
    with pytest.raises(ConfigError, match=r"a vocoder of 40 units, but the LM's dictionary holds units 0\.\.49; "
                                          r"give a vocoder trained on the LM's units \(vocoder-train --num-units 50\)"):
        load_vocoder(joint["vocoder_dur"], None, d)


def test_sutlm_generate_shows_a_unit_as_written(joint, tmp_path: Path, capsys) -> None:
    """A unit outside the LM used to be shown as its internal CJK character ('token '...'')."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("text the\nspeech 1 99 3\n")
    line = fails_in_one_line(_generate(joint, prompts, tmp_path / "c.km"), capsys,
                  f"{prompts}:2: unit 99 not in the LM's dictionary (it holds units 0..39)")
    assert chr(0x4E00 + 99) not in line
    prompts.write_text("speech 1 99999999\n")
    fails_in_one_line(_generate(joint, prompts, tmp_path / "c.km"), capsys, f"{prompts}:1: unit 99999999 is outside")
    prompts.write_text("")
    fails_in_one_line(_generate(joint, prompts, tmp_path / "c.km"), capsys, f"{prompts}: no prompt")
    assert not (tmp_path / "c.km").exists()


def test_sutlm_generate_other_checkpoints_and_dictionaries(joint, unit_lm, tmp_path: Path, capsys) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("speech 1 2\n")
    base = ["sutlm-generate", "--prompts", str(prompts), "--to", "text", "--out", str(tmp_path / "c.txt")]
    # a unit LM: it has no modality markers
    fails_in_one_line([*base, "--checkpoint", str(unit_lm["lm"]), "--data", str(unit_lm["lm"].parent / "data"),
            "--text-model", str(joint["out"] / "text.model")], capsys,
           f"{unit_lm['lm']}: not a joint speech-text LM")
    # the joint LM with a dictionary of another size: the unit LMs' check
    fails_in_one_line([*base, "--checkpoint", str(joint["lm"]), "--data", str(unit_lm["lm"].parent / "data"),
            "--text-model", str(joint["out"] / "text.model")], capsys,
           f"{unit_lm['lm'].parent / 'data' / 'dict.txt'}: 34 symbols but the LM {joint['lm']} was trained with")
    fails_in_one_line([*base, "--checkpoint", str(joint["lm"]), "--data", str(joint["data"]), "--temperature", "0"], capsys,
           "--temperature 0.0: must be > 0")
    assert not (tmp_path / "c.txt").exists()


def test_sutlm_eval_checks_options_and_the_text_lm_first(joint, unit_lm, tmp_path: Path, capsys) -> None:
    """A negative --max-items silently dropped the last items, a negative --ci-resamples was taken; a text LM
    of another dictionary was refused only after the CRA runs, naming --data instead of --text-lm-data."""
    out = tmp_path / "r.json"
    base = ["sutlm-eval", "--checkpoint", str(joint["lm"]), "--data", str(joint["data"]),
            "--items", str(joint["out"] / "aligned" / "test.jsonl"), "--conditions", "u2u", "--json", str(out)]
    fails_in_one_line([*base, "--max-items", "-1"], capsys, "--max-items -1: must be >= 2")
    fails_in_one_line([*base, "--ci-resamples", "-1"], capsys, "--ci-resamples -1: must be >= 0")
    cli.main([*base, "--text-lm", str(unit_lm["lm"]), "--ci-resamples", "0"])
    captured = capsys.readouterr()
    assert "CRA" not in captured.out  # refused before any CRA was computed
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"spokenlm sutlm-eval: error: {joint['out'] / 'textlm' / 'dict.txt'}:")
    assert "pass --text-lm-data with the folder" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("n", [0, -3])
def test_sutlm_data_refuses_no_text_sentences(tmp_path: Path, n: int) -> None:
    """--text-max-sentences 0 blamed 'WordNet' for an empty text corpus; -3 silently dropped 3 sentences."""
    with pytest.raises(ConfigError, match=rf"^--text-max-sentences {n}: must be >= 1"):
        build(tmp_path / "corpus", tmp_path / "km", tmp_path / "out", cfg=DataConfig(text_max_sentences=n))
    assert not (tmp_path / "out").exists()
