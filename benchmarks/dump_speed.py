"""Feature dumping speed: `spokenlm dump-features` (batched) against a one-utterance-at-a-time loop.

The baseline is fairseq's ``examples/hubert/simple_kmeans/dump_hubert_feature.py`` loop: read an
utterance, ``model.extract_features(wav[None], output_layer=L)``, append, in float32. Ours is
:func:`spokenlm_plugin.units.features.dump_features` with its defaults (length-sorted batches,
exact padding; bfloat16 autocast on a GPU). Both on the same checkpoint and manifest; the table
gives audio seconds per wall-clock second (x real time) and the ratio; the methods alternate over
``--repeats`` rounds and each keeps its best time (the load of a shared machine drifts).

By default the checkpoint is a HuBERT Base-shaped model with random weights (12 layers, 768 dims;
speed does not depend on the weights) and the manifest is synthetic audio with LibriSpeech-like
lengths (2-16 s):

    python benchmarks/dump_speed.py                        # HuBERT Base shape, 120 utterances
    python benchmarks/dump_speed.py --small                # 30 utterances (a quick run)
    python benchmarks/dump_speed.py --checkpoint hubert_base_ls960.pt --manifest dev-clean.tsv
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def base_checkpoint(path: Path) -> Path:
    """A HuBERT Base-shaped fairseq checkpoint (random weights, fairseq's default HubertConfig)."""
    from fairseq.data import Dictionary
    from fairseq.dataclass.configs import FairseqConfig
    from fairseq.models.hubert import HubertConfig, HubertModel
    from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig, HubertPretrainingTask
    from omegaconf import OmegaConf

    import spokenlm_plugin  # noqa: F401

    task_cfg = HubertPretrainingConfig(_name="hubert_pretraining", data="/nonexistent", labels=["km"],
                                       label_rate=50.0)
    model_cfg = HubertConfig(_name="hubert", label_rate=50.0)
    task = HubertPretrainingTask(task_cfg)
    dictionary = Dictionary()
    for u in range(500):
        dictionary.add_symbol(str(u))
    task.state.merge_state_dict({"dictionaries": [dictionary]})
    model = HubertModel(model_cfg, task_cfg, task.dictionaries)
    cfg = FairseqConfig()
    cfg.model, cfg.task = model_cfg, task_cfg
    torch.save({"args": None, "cfg": OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True),
                "model": model.state_dict(), "task_state": task.state_dict(),
                "optimizer_history": [{"criterion_name": "hubert", "optimizer_name": "adam",
                                       "lr_scheduler_state": {}, "num_updates": 0}],
                "extra_state": {"epoch": 1, "train_iterator": {"epoch": 1}}}, path)
    return path


def synthetic_manifest(folder: Path, n: int, *, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (folder / "audio").mkdir(parents=True)
    lines = [str((folder / "audio").resolve())]
    for i in range(n):
        samples = int(rng.uniform(2.0, 16.0) * 16000)
        sf.write(folder / "audio" / f"u{i:04d}.flac", (0.1 * rng.normal(size=samples)).astype(np.float32), 16000)
        lines.append(f"u{i:04d}.flac\t{samples}")
    manifest = folder / "bench.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def one_by_one(checkpoint: Path, manifest: Path, layer: int, device: str) -> tuple[float, float]:
    """fairseq's simple_kmeans loop (float32, one utterance per forward); returns (audio s, wall s)."""
    from fairseq import checkpoint_utils

    from spokenlm_plugin.core.io import read_manifest
    from spokenlm_plugin.core.audio import read_audio

    (model,), _, _ = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)])
    model = model.eval().to(device)
    rows = read_manifest(manifest)
    with torch.inference_mode():
        model.extract_features(torch.zeros(1, 16000, device=device), output_layer=layer)  # warm-up
        sync(device)
        t0, audio = time.perf_counter(), 0.0
        for row in rows.rows:
            wav = torch.from_numpy(read_audio(rows.path(row))).to(device)
            feats, _ = model.extract_features(wav[None], padding_mask=None, mask=False, output_layer=layer)
            feats.squeeze(0).cpu().numpy()
            audio += len(wav) / 16000
        sync(device)
    return audio, time.perf_counter() - t0


def batched(checkpoint: Path, manifest: Path, layer: int, device: str, out: Path,
            batch_seconds: float | None) -> tuple[float, float, str, float]:
    from spokenlm_plugin.units.encoder import DenseModel
    from spokenlm_plugin.units.features import default_batch_seconds, dump_features

    dense = DenseModel.from_checkpoint(checkpoint, layer=layer, device=device)
    dense(np.zeros(16000, dtype=np.float32))  # warm-up
    sync(device)
    result = dump_features(dense, manifest, out, progress=False, batch_seconds=batch_seconds)
    sync(device)
    used = default_batch_seconds(dense) if batch_seconds is None else batch_seconds
    return result.audio_seconds, result.seconds, str(dense.dtype).removeprefix("torch."), used


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="fairseq HuBERT checkpoint (default: Base shape, random)")
    parser.add_argument("--manifest", type=Path, help="fairseq manifest (default: synthetic, 2-16 s utterances)")
    parser.add_argument("--utterances", type=int, default=120, help="synthetic utterances (default 120)")
    parser.add_argument("--small", action="store_true", help="30 synthetic utterances")
    parser.add_argument("--layer", type=int, default=9, help="layer to dump (default 9)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-seconds", type=float, nargs="+", default=[None],
                        help="dump-features batch sizes to time (default: its default)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds; each method keeps its best (default 2)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        checkpoint = args.checkpoint or base_checkpoint(tmp / "hubert_base_shape.pt")
        manifest = args.manifest or synthetic_manifest(tmp / "data", 30 if args.small else args.utterances)
        # Rounds alternate the methods and each keeps its best time: the machine's load drifts.
        best: dict[float | None, tuple[float, float, str, float]] = {}
        best_1: tuple[float, float] | None = None
        for r in range(args.repeats):
            for i, b in enumerate(args.batch_seconds):
                run = batched(checkpoint, manifest, args.layer, args.device, tmp / f"feats{r}_{i}", b)
                if b not in best or run[1] < best[b][1]:
                    best[b] = run
            run_1 = one_by_one(checkpoint, manifest, args.layer, args.device)
            if best_1 is None or run_1[1] < best_1[1]:
                best_1 = run_1
        runs = [best[b] for b in args.batch_seconds]
        assert best_1 is not None, "--repeats must be at least 1"
        audio_1, wall_1 = best_1
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"CPU ({platform.machine()}, {torch.get_num_threads()} torch threads)"
    print(f"{checkpoint.name}, layer {args.layer}, {audio_1 / 60:.1f} min of audio; {device}; "
          f"best of {args.repeats} alternating rounds")
    print()
    print("| method | dtype | wall time (s) | audio s / s (x real time) | speed-up |")
    print("|---|---|---:|---:|---:|")
    print(f"| one utterance at a time (fairseq simple_kmeans loop) | float32 | {wall_1:.1f} | "
          f"{audio_1 / wall_1:.1f} | 1.0 |")
    for audio_b, wall_b, dtype, used in runs:
        print(f"| spokenlm dump-features, --batch-seconds {used:g} | {dtype} | {wall_b:.1f} | "
              f"{audio_b / wall_b:.1f} | {(audio_b / wall_b) / (audio_1 / wall_1):.2f} |")


if __name__ == "__main__":
    main()
