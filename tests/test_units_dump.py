"""Dense HuBERT features: exact batching, `spokenlm dump-features` format, sharding, resuming, errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from spokenlm_plugin.cli import main
from spokenlm_plugin.core.errors import CheckpointError, ConfigError
from spokenlm_plugin.core.phones import num_frames
from spokenlm_plugin.units.encoder import DenseModel, SpeechEncoder
from spokenlm_plugin.units.features import dump_features
from tests.conftest import VENV_BIN
from tests.units_support import make_frame_cls_checkpoint, make_hubert_checkpoint, write_noise_corpus

#: Lengths with repeats (equal-length batches take the unpadded path), one frame (400 samples),
#: and off-by-one sample counts around frame boundaries.
LENGTHS = [16000, 12345, 12345, 8000, 7999, 400, 23000, 5120, 5119, 30000, 2000, 16000]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ckpt")
    base = make_hubert_checkpoint(d / "base.pt")
    return {
        "base": base,
        "large_style": make_hubert_checkpoint(d / "ln.pt", extractor_mode="layer_norm", normalize=True, seed=1),
        "finetuned": make_frame_cls_checkpoint(d / "ft.pt", base, corpus_dir / "labels"),
    }


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_noise_corpus(tmp_path_factory.mktemp("noise"), LENGTHS)


def _waves(manifest: Path) -> list[np.ndarray]:
    root, *rows = manifest.read_text().splitlines()
    return [sf.read(Path(root) / r.split("\t")[0], dtype="float32")[0] for r in rows]


def test_single_utterance_equals_fairseq(ckpts: dict[str, Path], noise: Path) -> None:
    """Unpadded input goes through fairseq's own path: identical to HubertModel.extract_features."""
    from fairseq import checkpoint_utils

    (ref_model,), _, _ = checkpoint_utils.load_model_ensemble_and_task([str(ckpts["base"])])
    ref_model.eval()
    dense = DenseModel.from_checkpoint(ckpts["base"], layer=2, device="cpu")
    for wav in _waves(noise)[:3]:
        with torch.no_grad():
            ref, _ = ref_model.extract_features(torch.from_numpy(wav)[None], padding_mask=None, output_layer=2)
        assert torch.equal(dense(wav), ref[0])


@pytest.mark.parametrize(("name", "layer"),
                         [("base", 3), ("large_style", 1), ("finetuned", 2), ("finetuned", "logits")])
def test_batched_equals_one_by_one(ckpts: dict[str, Path], noise: Path, name: str, layer) -> None:
    dense = DenseModel.from_checkpoint(ckpts[name], layer=layer, device="cpu")
    waves = _waves(noise)
    batched = dense.batch(waves)
    for wav, b in zip(waves, batched):
        one = dense(wav)
        assert one.shape == (num_frames(len(wav)), dense.dim)
        torch.testing.assert_close(b, one, rtol=1e-5, atol=1e-5 * float(one.abs().max()))


def test_fairseq_padding_alone_is_not_batch_invariant(ckpts: dict[str, Path], noise: Path) -> None:
    """The control: fairseq's padded forward changes an utterance's features (GroupNorm over the
    padding, frame mask from chunking), which is what DenseModel's hooks correct."""
    dense = DenseModel.from_checkpoint(ckpts["base"], layer=3, device="cpu")
    waves = [torch.from_numpy(w) for w in _waves(noise)[:5]]
    source = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    mask = torch.arange(source.shape[1])[None] >= torch.tensor([len(w) for w in waves])[:, None]
    with torch.no_grad():
        naive, _ = dense.model.extract_features(source, padding_mask=mask, output_layer=3)
    worst = max(float((naive[i, : num_frames(len(w))] - dense(w)).abs().max()) for i, w in enumerate(waves))
    assert worst > 1e-2


def test_dump_cli_writes_fairseq_shards(ckpts: dict[str, Path], noise: Path, tmp_path: Path) -> None:
    out = tmp_path / "feats"
    assert main(["dump-features", "--checkpoint", str(ckpts["base"]), "--layer", "2", "--manifest", str(noise),
                 "--out", str(out), "--per-utterance", "--batch-seconds", "2", "--no-progress"]) == 0
    feats = np.load(out / "noise_0_1.npy")
    lengths = [int(x) for x in (out / "noise_0_1.len").read_text().split()]
    assert lengths == [num_frames(n) for n in LENGTHS]
    assert feats.dtype == np.float32 and feats.shape == (sum(lengths), 32)
    dense = DenseModel.from_checkpoint(ckpts["base"], layer=2, device="cpu")
    offsets = np.cumsum([0, *lengths])
    for i, wav in enumerate(_waves(noise)):
        rows = feats[offsets[i] : offsets[i + 1]]
        np.testing.assert_array_equal(np.load(out / f"utt{i:03d}.npy"), rows)
        np.testing.assert_allclose(rows, dense(wav).numpy(), rtol=1e-5, atol=1e-4)


def test_shards_concatenate_to_the_whole(ckpts: dict[str, Path], noise: Path, tmp_path: Path) -> None:
    dense = DenseModel.from_checkpoint(ckpts["base"], layer=1, device="cpu")
    whole = dump_features(dense, noise, tmp_path / "one", progress=False)
    parts = [dump_features(dense, noise, tmp_path / "three", nshard=3, rank=r, progress=False) for r in range(3)]
    assert [p.npy.name for p in parts] == ["noise_0_3.npy", "noise_1_3.npy", "noise_2_3.npy"]
    assert sum(p.utterances for p in parts) == whole.utterances == len(LENGTHS)
    np.testing.assert_allclose(np.concatenate([np.load(p.npy) for p in parts]), np.load(whole.npy), atol=1e-4)
    assert "".join(p.len.read_text() for p in parts) == whole.len.read_text()


def _same_dump(a: Path, b: Path, split: str = "noise_0_1") -> None:
    assert (a / f"{split}.len").read_text() == (b / f"{split}.len").read_text()
    np.testing.assert_array_equal(np.load(a / f"{split}.npy"), np.load(b / f"{split}.npy"))
    assert (a / f"{split}.npy").read_bytes() == (b / f"{split}.npy").read_bytes()


def test_partial_dump_resumes_identically(ckpts: dict[str, Path], noise: Path, tmp_path: Path) -> None:
    dense = DenseModel.from_checkpoint(ckpts["base"], layer=2, device="cpu")
    full = dump_features(dense, noise, tmp_path / "full", batch_seconds=2, progress=False)
    first = dump_features(dense, noise, tmp_path / "parts", batch_seconds=2, progress=False, max_utterances=5)
    assert (first.utterances, first.dumped) == (5, 5)
    second = dump_features(dense, noise, tmp_path / "parts", batch_seconds=2, progress=False)
    assert (second.utterances, second.dumped) == (full.utterances, len(LENGTHS) - 5)
    _same_dump(tmp_path / "full", tmp_path / "parts")
    again = dump_features(dense, noise, tmp_path / "parts", batch_seconds=2, progress=False)
    assert again.dumped == 0  # complete: nothing recomputed


def test_torn_write_is_repaired(ckpts: dict[str, Path], noise: Path, tmp_path: Path) -> None:
    """A crash between the frames and the .len line, inside a row, or before the header update."""
    dense = DenseModel.from_checkpoint(ckpts["base"], layer=2, device="cpu")
    dump_features(dense, noise, tmp_path / "full", batch_seconds=2, progress=False)
    torn = tmp_path / "torn"
    shutil.copytree(tmp_path / "full", torn)
    lengths = [int(x) for x in (torn / "noise_0_1.len").read_text().split()]
    # 6 complete .len lines, a 7th torn mid-number; frames of rows 7-8 and half of row 9 on disk.
    (torn / "noise_0_1.len").write_text("".join(f"{n}\n" for n in lengths[:6]) + str(lengths[6])[:1])
    frames_kept = sum(lengths[:8]) + lengths[8] // 2
    arr = np.load(torn / "noise_0_1.npy", mmap_mode="r")
    cut = arr.offset + frames_kept * 32 * 4 + 7  # + a partial float
    del arr
    with open(torn / "noise_0_1.npy", "r+b") as f:
        f.truncate(cut)  # the header still claims all rows: as after a kill before the header rewrite
    result = dump_features(dense, noise, torn, batch_seconds=2, progress=False)
    assert result.dumped == len(LENGTHS) - 6
    _same_dump(tmp_path / "full", torn)


def test_killed_dump_resumes_identically(ckpts: dict[str, Path], tmp_path: Path) -> None:
    # Enough rows that even a fast machine is still dumping when the 8th .len line appears.
    manifest = write_noise_corpus(tmp_path / "long", [16000 + 397 * i for i in range(120)], seed=3)

    def args(out: str) -> list[str]:
        return ["dump-features", "--checkpoint", str(ckpts["base"]), "--layer", "3", "--manifest", str(manifest),
                "--out", str(tmp_path / out), "--batch-seconds", "1", "--no-progress", "--device", "cpu"]

    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}  # as in this process
    proc = subprocess.Popen([str(VENV_BIN / "spokenlm"), *args("killed")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    len_file = tmp_path / "killed" / "noise_0_1.len"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len_file.is_file() and len(len_file.read_text().splitlines()) >= 8:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the dump finished before it could be killed"
    assert len(len_file.read_text().splitlines()) < 120
    assert main(args("killed")) == 0  # resume in-process
    assert main(args("whole")) == 0
    _same_dump(tmp_path / "whole", tmp_path / "killed")


def test_resume_with_other_settings_is_refused(noise: Path, tmp_path: Path) -> None:
    checkpoint = make_hubert_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "feats"
    dump_features(DenseModel.from_checkpoint(checkpoint, layer=2, device="cpu"), noise, out,
                  progress=False, max_utterances=2)
    with pytest.raises(ConfigError, match="other settings.*'layer': \\(2, 3\\)"):
        dump_features(DenseModel.from_checkpoint(checkpoint, layer=3, device="cpu"), noise, out, progress=False)
    time.sleep(0.01)
    make_hubert_checkpoint(checkpoint, seed=7)  # new weights under the same name
    with pytest.raises(ConfigError, match="other settings.*'fingerprint'"):
        dump_features(DenseModel.from_checkpoint(checkpoint, layer=2, device="cpu"), noise, out, progress=False)


def test_bad_layers_and_checkpoints(ckpts: dict[str, Path], noise: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    def cli_error(checkpoint: Path, layer: str) -> str:
        code = main(["dump-features", "--checkpoint", str(checkpoint), "--layer", layer, "--manifest", str(noise),
                     "--out", str(tmp_path / "x"), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        return err

    assert "layer 4 does not exist; this model has layers 1..3" in cli_error(ckpts["base"], "4")
    assert "layer 'logits' needs a phoneme classifier" in cli_error(ckpts["base"], "logits")
    assert "layers 1..3 and 'logits'" in cli_error(ckpts["finetuned"], "7")
    assert "expected a transformer layer" in cli_error(ckpts["base"], "0")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    assert "not a readable fairseq checkpoint" in cli_error(garbage, "1")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a fairseq checkpoint"):
        DenseModel.from_checkpoint(tmp_path / "plain.pt", layer=1)
    state = torch.load(ckpts["base"], weights_only=False)
    state["cfg"]["model"]["_name"] = "no_such_model"
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="expected a HuBERT checkpoint"):
        DenseModel.from_checkpoint(tmp_path / "other.pt", layer=1)
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_speech_encoder_units(ckpts: dict[str, Path], noise: Path) -> None:
    dense = DenseModel.from_checkpoint(ckpts["base"], layer=2, device="cpu")
    centroids = np.random.default_rng(0).normal(size=(8, dense.dim)).astype(np.float32)
    wav = _waves(noise)[0]
    plain = SpeechEncoder(dense, centroids)(wav)
    dedup = SpeechEncoder(dense, centroids, deduplicate=True)(wav)
    feats = dense(wav).numpy()
    nearest = ((feats[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert plain["units"].tolist() == nearest.tolist()
    assert torch.repeat_interleave(dedup["units"], dedup["durations"]).tolist() == nearest.tolist()
    assert all(a != b for a, b in zip(dedup["units"][:-1], dedup["units"][1:]))
    with pytest.raises(ConfigError, match="do not fit"):
        SpeechEncoder(dense, centroids[:, :5])


def test_dump_state_records_settings(ckpts: dict[str, Path], noise: Path, tmp_path: Path) -> None:
    dump_features(DenseModel.from_checkpoint(ckpts["finetuned"], layer="logits", device="cpu"), noise, tmp_path,
                  progress=False, max_utterances=1, per_utterance=True)
    state = json.loads((tmp_path / ".noise_0_1.dump.json").read_text())
    assert state["layer"] == "logits" and state["dim"] == 40 and state["per_utterance"] is True
    assert np.load(tmp_path / "utt000.npy").shape == (num_frames(LENGTHS[0]), 40)


def test_logits_are_the_head_on_the_dumped_layer(ckpts: dict[str, Path], noise: Path) -> None:
    """The demo's logits units reuse the classifier layer's dump (no second forward pass): this holds
    for a real fine-tuned checkpoint, and its check refuses a layer that does not feed the head."""
    from spokenlm_plugin.demo.stage_units import _head_on_features

    def models(layer: int) -> tuple[DenseModel, DenseModel]:
        dense = DenseModel.from_checkpoint(ckpts["finetuned"], layer=layer, device="cpu")
        return dense, DenseModel(dense.model, layer="logits", normalize=dense.normalize, device="cpu",
                                 name=dense.name, fingerprint=dense.fingerprint)

    dense, logits = models(dense_layer := DenseModel.from_checkpoint(ckpts["finetuned"], layer="logits",
                                                                     device="cpu").model.layer)
    apply = _head_on_features(dense, logits, noise)
    assert apply is not None
    wav = _waves(noise)[0]
    assert np.allclose(apply(dense(wav).numpy()), logits(wav).numpy(), atol=1e-5)
    if dense_layer > 1:
        assert _head_on_features(*models(dense_layer - 1), noise) is None


_GC_IN_APPEND = r"""
import gc, sys
from pathlib import Path
import numpy as np, soundfile as sf
from spokenlm_plugin.core.errors import AudioFormatError
from spokenlm_plugin.units.baseline import SpectralFeatures
from spokenlm_plugin.units.features import dump_features

tmp = Path(sys.argv[1])
(tmp / "audio").mkdir()
sf.write(tmp / "audio" / "a.wav", np.zeros(4800, np.float32), 16000)
(tmp / "audio" / "bad.wav").write_bytes(b"not audio")
for name, wav in (("bad", "bad.wav"), ("good", "a.wav")):
    (tmp / f"{name}.tsv").write_text(f"{tmp / 'audio'}\n{wav}\t4800\n")
gc.disable()  # keep the failed dump's garbage (a reference cycle through its exception) for later
try:
    dump_features(SpectralFeatures("logmel"), tmp / "bad.tsv", tmp / "f1", progress=False)
except AudioFormatError:
    pass


def collect_inside_append(frame, event, arg):
    if event == "c_call" and frame.f_code.co_name == "append":
        gc.collect()  # what the collector may do at any allocation: finalise that garbage here


sys.setprofile(collect_inside_append)
for i in range(3):
    dump_features(SpectralFeatures("logmel"), tmp / "good.tsv", tmp / f"f{i + 2}", progress=False)
sys.setprofile(None)
print("done")
"""


def test_garbage_collection_inside_an_append_cannot_deadlock(tmp_path: Path) -> None:
    """A failed dump's writer, finalised by the cyclic collector inside a later dump's append, must
    not wait on a lock its own thread holds (npy-append-array's class-wide lock did: a hang)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    try:
        proc = subprocess.run([str(VENV_BIN / "python"), "-c", _GC_IN_APPEND, str(tmp_path)], capture_output=True,
                              text=True, timeout=90, env=env, cwd=Path(__file__).resolve().parents[1])
    except subprocess.TimeoutExpired:
        pytest.fail("dump_features deadlocked when the garbage collector ran inside an append")
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr[-3000:]
    assert np.load(tmp_path / "f4" / "good_0_1.npy").shape == (num_frames(4800), 40)
