"""``spokenlm pretrain-small``: pretrain a small HuBERT on a synthetic corpus with fairseq's own
``hubert_pretraining`` task, in HuBERT's two iterations.

Steps, each skipped when its output exists (rerun to resume; fairseq-train resumes from its
``checkpoint_last.pt``):

1. targets in ``OUT/targets``: iteration 1, 39-d MFCC (+delta, delta-delta, 100 Hz) k-means;
   iteration 2 (``--iteration 2 --init-from ITER1.pt``), k-means of layer ``--target-layer`` of the
   iteration-1 model (50 Hz). k-means is faiss on train frames; ``{split}.km`` + ``dict.km.txt``.
   Iteration 2 starts from the iteration-1 weights instead of from scratch (HuBERT retrains from
   scratch; on a CPU budget, continuing is what makes a second iteration affordable);
2. ``fairseq-train --task hubert_pretraining --arch hubert --criterion hubert`` (the real CLI);
3. export: the last checkpoint without optimizer state, weights in fp16 (half the size; fairseq
   casts them back when loading), as ``OUT/hubert_small.pt``, plus ``OUT/recipe.json``.

The project ships the result in ``spokenlm_plugin/resources/hubert_small/`` (see
:func:`shipped_checkpoint`), so the demo does not need to pretrain.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..core.checkpoints import read_checkpoint
from ..core.errors import CheckpointError, ConfigError, ManifestError, TrainingError
from ..core.io import atomic_path, atomic_write, read_manifest
from ..core.km import write_km
from ..core.runtime import torch_threads
from ..core.audio import read_audio
from .mfcc import MFCC_RATE, mfcc_features
from ..core.tools import run_tool

logger = logging.getLogger(__name__)

RESOURCES = Path(__file__).resolve().parents[1] / "resources" / "hubert_small"


@dataclass(frozen=True)
class SmallHubert:
    """Shape of the small HuBERT (fields of fairseq's ``hubert`` model)."""

    conv_channels: int = 128
    layers: int = 4
    dim: int = 256
    ffn_dim: int = 1024
    heads: int = 4
    conv_pos: int = 64
    final_dim: int = 64
    #: ``layer_norm``: a LayerNorm over channels in every CNN block (HuBERT Large's CNN). Unlike
    #: Base's ``default`` (GroupNorm over time in the first block), a frame's features do not depend
    #: on the padding of its batch, so padded training and unpadded read-out see the same features.
    extractor_mode: str = "layer_norm"
    #: 1.0: the CNN learns at the encoder's rate (HuBERT Base's 0.1 left the small CNN untrained).
    feature_grad_mult: float = 1.0
    dropout: float = 0.05
    layerdrop: float = 0.0
    #: HuBERT's 0.8 masks most of a 2 s crop; a lighter mask leaves context a small model can use.
    mask_prob: float = 0.65

    @property
    def conv_feature_layers(self) -> str:
        # HuBERT's CNN (kernel, stride) with fewer channels: 400-sample receptive field, 320 hop.
        c = self.conv_channels
        return f"[({c},10,5)] + [({c},3,2)] * 4 + [({c},2,2)] * 2"

    def model_args(self) -> list[str]:
        return [
            "--arch", "hubert",
            "--conv-feature-layers", self.conv_feature_layers,
            "--encoder-layers", str(self.layers),
            "--encoder-embed-dim", str(self.dim),
            "--encoder-ffn-embed-dim", str(self.ffn_dim),
            "--encoder-attention-heads", str(self.heads),
            "--conv-pos", str(self.conv_pos),
            "--final-dim", str(self.final_dim),
            "--extractor-mode", self.extractor_mode,
            # Light regularisation: a few epochs of a small model underfit rather than overfit.
            "--dropout", str(self.dropout), "--attention-dropout", str(self.dropout),
            "--encoder-layerdrop", str(self.layerdrop),
            "--feature-grad-mult", str(self.feature_grad_mult),
            "--mask-prob", str(self.mask_prob), "--mask-length", "10",
        ]


@dataclass(frozen=True)
class PretrainSettings:
    """Optimisation and target settings of the small pretraining run."""

    max_update: int = 2000
    lr: float = 5e-4
    warmup_updates: int = 166  # max_update // 12, as the command sets it
    #: audio samples per batch (about 4 crops of 2 s): many small updates suit a CPU budget.
    max_tokens: int = 128_000
    #: batches crop to the shortest utterance, at most this many samples (random crops).
    max_sample_size: int = 32_000
    #: utterances shorter than this are not used.
    min_sample_size: int = 8_000
    #: weight of the loss on unmasked frames (HuBERT: 0). On a CPU budget it gives the CNN a direct
    #: signal from the first update: with masked frames only, a run of 450 updates stayed at the
    #: targets' marginal distribution (2 % accuracy for k = 100).
    nomask_weight: float = 0.5
    #: k-means clusters on MFCC (HuBERT's first iteration uses 100).
    k: int = 100
    kmeans_frames: int = 200_000
    seed: int = 1

    def train_args(self) -> list[str]:
        return [
            "--criterion", "hubert", "--pred-masked-weight", "1.0", "--pred-nomask-weight", str(self.nomask_weight),
            "--loss-weights", "[10.0]",
            "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-06", "--weight-decay", "0.01",
            "--lr", str(self.lr), "--lr-scheduler", "polynomial_decay",
            "--warmup-updates", str(self.warmup_updates), "--total-num-update", str(self.max_update),
            "--max-update", str(self.max_update), "--clip-norm", "10.0",
            "--max-tokens", str(self.max_tokens), "--max-sample-size", str(self.max_sample_size),
            "--min-sample-size", str(self.min_sample_size), "--seed", str(self.seed),
        ]


#: Groups of fairseq's convolutional positional embedding (``conv_pos_groups``): they divide ``--dim``.
CONV_POS_GROUPS = 16


def check_options(*, settings: PretrainSettings, model: SmallHubert | None = None, threads: int | None = None) -> None:
    """Refuse option values that fairseq-train or k-means would reject only after minutes of work
    (or in a traceback: ``--updates 0`` is an AssertionError), or that train nothing (``--lr 0``).

    ``model=None``: the target options only (``--targets-only``)."""
    problems = []
    if settings.k < 2:
        problems.append(f"--k {settings.k}: the targets need at least 2 clusters (HuBERT's first iteration uses 100)")
    if settings.seed < 0:
        problems.append(f"--seed {settings.seed}: must be 0 or more")
    if model is not None:
        if settings.max_update < 1:
            problems.append(f"--updates {settings.max_update}: must be a positive number of training updates")
        if not (math.isfinite(settings.lr) and settings.lr > 0):
            problems.append(f"--lr {settings.lr}: must be a positive learning rate")
        if settings.max_tokens < settings.max_sample_size:
            problems.append(f"--max-tokens {settings.max_tokens}: a batch must hold one crop of "
                            f"{settings.max_sample_size} samples; give {settings.max_sample_size} or more")
        if model.layers < 1:
            problems.append(f"--layers {model.layers}: must be 1 or more")
        if model.conv_channels < 1:
            problems.append(f"--conv-channels {model.conv_channels}: must be 1 or more")
        if model.dim < 1 or model.dim % CONV_POS_GROUPS or model.dim % model.heads:
            problems.append(f"--dim {model.dim}: must be a positive multiple of {CONV_POS_GROUPS} (the positional "
                            f"convolution's groups) and of the {model.heads} attention heads")
    if threads is not None and threads < 1:
        problems.append(f"--threads {threads}: must be 1 or more")
    if problems:
        raise ConfigError("; ".join(problems))


def _rows_mfcc(manifest_path: Path) -> Iterable[np.ndarray]:
    manifest = read_manifest(manifest_path)
    # MFCC ops are tiny: with several threads, synchronisation costs 30x the work.
    with torch_threads(1):
        for row in manifest.rows:
            yield mfcc_features(read_audio(manifest.path(row)))


def _targets_done(out: Path) -> bool:
    return all((out / name).is_file() for name in ("train.km", "valid.km", "dict.km.txt"))


def _write_target_dict(out: Path, k: int) -> None:
    """``dict.km.txt``: the k target labels, as fairseq's hubert_pretraining task reads them."""
    with atomic_write(out / "dict.km.txt") as f:
        f.writelines(f"{u} 1\n" for u in range(k))


def _cluster_targets(out: Path, train: list[np.ndarray], valid: Iterable[np.ndarray], *, k: int, max_frames: int,
                     seed: int) -> None:
    """k-means on the train frames; in ``out``: its centroids ``km.npy`` (to make targets for other
    audio, e.g. evaluation), ``{train,valid}.km`` and ``dict.km.txt``."""
    from ..units.kmeans import assign_units, fit_kmeans, save_centroids

    centroids = fit_kmeans(np.concatenate(train), k=k, niter=30, seed=seed, max_points=max_frames)
    save_centroids(out / "km.npy", centroids)
    for split, feats in (("train", train), ("valid", valid)):
        write_km(out / f"{split}.km", (assign_units(x, centroids) for x in feats))
    _write_target_dict(out, k)


def make_mfcc_targets(
    manifests: Path, out: Path, *, k: int, max_frames: int, seed: int, log: Callable[[str], None] = logger.info
) -> None:
    """k-means on train MFCC; ``{train,valid}.km`` (100 Hz units) and ``dict.km.txt`` in ``out``."""
    if _targets_done(out):
        log(f"targets: {out} already complete")
        return
    start = time.perf_counter()
    train = list(_rows_mfcc(manifests / "train.tsv"))
    if not train:
        raise ManifestError(f"{manifests / 'train.tsv'}: no utterances; pretraining needs audio")
    log(f"targets: MFCC of {len(train)} train utterances ({sum(map(len, train))} frames, {train[0].shape[1]} dims)")
    _cluster_targets(out, train, _rows_mfcc(manifests / "valid.tsv"), k=k, max_frames=max_frames, seed=seed)
    log(f"targets: k={k} at {MFCC_RATE} Hz in {out} ({time.perf_counter() - start:.0f} s)")


def make_feature_targets(
    manifests: Path, out: Path, *, checkpoint: Path, layer: int, k: int, max_frames: int, seed: int,
    log: Callable[[str], None] = logger.info,
) -> None:
    """Iteration-2 targets: k-means of ``checkpoint``'s layer ``layer``; 50 Hz ``{train,valid}.km``."""
    import torch

    from ..units.encoder import DenseModel

    if _targets_done(out):
        log(f"targets: {out} already complete")
        return
    start = time.perf_counter()
    dense = DenseModel.from_checkpoint(checkpoint, layer=layer, device="cpu", dtype="float32")

    def rows(split: str) -> list[np.ndarray]:
        manifest = read_manifest(manifests / f"{split}.tsv")
        return [dense(torch.from_numpy(read_audio(manifest.path(r)))).numpy() for r in manifest.rows]

    train = rows("train")
    log(f"targets: layer {layer} of {checkpoint.name} on {len(train)} train utterances ({sum(map(len, train))} frames)")
    _cluster_targets(out, train, rows("valid"), k=k, max_frames=max_frames, seed=seed)
    log(f"targets: k={k} at 50 Hz in {out} ({time.perf_counter() - start:.0f} s)")


def export_checkpoint(src: Path, dst: Path, *, half: bool = True) -> None:
    """Copy a fairseq checkpoint without its optimizer state (optionally with fp16 weights).

    The result is still a fairseq checkpoint: ``cfg``, ``model``, ``task_state`` (the label
    dictionaries), and the small bookkeeping entries ``load_checkpoint_to_cpu`` expects.
    """
    import torch

    # Read as saved (no fairseq upgrade step), so the copy differs only in what is dropped below.
    state = read_checkpoint(src, hint="give a checkpoint written by fairseq-train", loader="pickle")
    state.pop("last_optimizer_state", None)
    if half:
        state["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    with atomic_path(dst) as tmp:
        torch.save(state, tmp)


def _last_valid_line(log_path: Path) -> str:
    lines = [line for line in log_path.read_text().splitlines() if re.search(r"\| valid on '\w+' subset", line)]
    return lines[-1].split(" | ", 1)[-1] if lines else ""


def pretrain_small_hubert(
    corpus: Path,
    out: Path,
    *,
    model: SmallHubert = SmallHubert(),
    settings: PretrainSettings = PretrainSettings(),
    threads: int | None = None,
    half: bool = True,
    init_from: Path | None = None,
    target_layer: int | None = None,
    log: Callable[[str], None] = logger.info,
) -> Path:
    """Pretrain a small HuBERT on ``corpus`` (``manifests/{train,valid}.tsv``); return the checkpoint.

    ``init_from`` + ``target_layer``: HuBERT's second iteration, on k-means targets of that layer of
    ``init_from`` (whose weights it starts from); otherwise the first, on MFCC k-means targets.
    """
    if (init_from is None) != (target_layer is None):
        raise ConfigError("--init-from and --target-layer go together (the second HuBERT iteration)")
    check_options(settings=settings, model=model, threads=threads)
    corpus, out = Path(corpus), Path(out)
    manifests = corpus / "manifests"
    for split in ("train", "valid"):
        if not (manifests / f"{split}.tsv").is_file():
            raise ConfigError(f"{manifests / f'{split}.tsv'}: manifest not found; make the corpus with `spokenlm synth-corpus`")
    result = out / "hubert_small.pt"
    if result.is_file():
        log(f"pretrain: {result} exists")
        return result
    if init_from is None or target_layer is None:  # both or neither (checked above)
        make_mfcc_targets(
            manifests, out / "targets", k=settings.k, max_frames=settings.kmeans_frames, seed=settings.seed, log=log
        )
        label_rate, restore = float(MFCC_RATE), []
    else:
        if not Path(init_from).is_file():
            raise CheckpointError(f"{init_from}: --init-from checkpoint not found")
        make_feature_targets(
            manifests, out / "targets", checkpoint=Path(init_from), layer=int(target_layer), k=settings.k,
            max_frames=settings.kmeans_frames, seed=settings.seed, log=log,
        )
        # Start from the iteration-1 weights; fresh optimizer, schedule and data order.
        label_rate = 50.0
        restore = ["--restore-file", str(Path(init_from).resolve()), "--reset-optimizer", "--reset-lr-scheduler",
                   "--reset-dataloader", "--reset-meters"]
    save_dir = out / "train"
    args = [
        str(manifests.resolve()),
        "--user-dir", str(Path(__file__).resolve().parents[1]),
        "--task", "hubert_pretraining", "--labels", '["km"]', "--label-dir", str((out / "targets").resolve()),
        "--label-rate", str(label_rate), "--sample-rate", "16000",
        *model.model_args(),
        *settings.train_args(),
        *restore,
        "--save-dir", str(save_dir.resolve()), "--no-epoch-checkpoints", "--save-interval-updates", "250",
        "--keep-interval-updates", "1", "--validate-interval-updates", "500",
        "--num-workers", "0", "--log-format", "simple", "--log-interval", "50",
    ]
    seconds = run_tool("fairseq-train", args, log_path=out / "train.log", threads=threads, log=log)
    export_checkpoint(save_dir / "checkpoint_last.pt", result, half=half)
    recipe = {
        "corpus": str(corpus),
        "model": asdict(model),
        "settings": asdict(settings),
        "fp16_weights": half,
        "iteration": 1 if init_from is None else 2,
        "init_from": str(init_from) if init_from else None,
        "target_layer": target_layer,
        "fairseq_train_args": args,
        "train_seconds": round(seconds, 1),
        "last_valid": _last_valid_line(out / "train.log"),
    }
    for meta in ("pretrain_corpus.json", "corpus.json"):
        if (corpus / meta).is_file():
            recipe["corpus_meta"] = json.loads((corpus / meta).read_text())
            break
    with atomic_write(out / "recipe.json") as f:
        json.dump(recipe, f, indent=1)
    log(f"pretrain: {result} ({result.stat().st_size / 1e6:.1f} MB, {seconds:.0f} s of fairseq-train)")
    return result


def masked_prediction_accuracy(
    run_dir: Path, manifest: Path, out: Path, *, log: Callable[[str], None] = logger.info
) -> dict[str, float]:
    """Masked / unmasked target accuracy of a pretraining run (``run_dir`` of ``pretrain-small``) on
    other audio (e.g. unseen speakers): targets made as the run made its own (its ``targets/km.npy``
    on MFCC, or on the ``--init-from`` model's layer), scored with ``fairseq-validate``."""
    import torch

    from ..units.encoder import DenseModel
    from ..units.kmeans import assign_units, load_centroids

    recipe = json.loads((run_dir / "recipe.json").read_text())
    centroids = load_centroids(run_dir / "targets" / "km.npy")
    rows = read_manifest(manifest)
    feats: Iterable[np.ndarray]
    if recipe.get("init_from"):
        dense = DenseModel.from_checkpoint(recipe["init_from"], layer=int(recipe["target_layer"]), device="cpu",
                                           dtype="float32")
        feats = (dense(torch.from_numpy(read_audio(rows.path(r)))).numpy() for r in rows.rows)
        rate = 50.0
    else:
        feats = _rows_mfcc(manifest)
        rate = float(MFCC_RATE)
    split = manifest.stem
    out.mkdir(parents=True, exist_ok=True)
    write_km(out / f"{split}.km", (assign_units(np.asarray(x), centroids) for x in feats))
    _write_target_dict(out, len(centroids))
    with atomic_path(out / f"{split}.tsv") as tmp:
        tmp.write_text(manifest.read_text())
    args = [str(out), "--user-dir", str(Path(__file__).resolve().parents[1]), "--task", "hubert_pretraining",
            "--labels", '["km"]', "--label-dir", str(out), "--label-rate", str(rate), "--sample-rate", "16000",
            "--path", str(run_dir / "hubert_small.pt"), "--valid-subset", split, "--max-tokens", "1600000",
            "--seed", "1"]
    run_tool("fairseq-validate", args, log_path=out / "validate.log", log=log)
    line = _last_valid_line(out / "validate.log")
    found = dict(re.findall(r"(correct_[mu]_0) ([0-9.]+)", line))
    if not found:
        raise TrainingError(f"{out / 'validate.log'}: no accuracy in fairseq-validate's output")
    return {"masked": float(found["correct_m_0"]), "unmasked": float(found["correct_u_0"])}


def shipped_checkpoint() -> Path:
    """The small HuBERT shipped with the package (made by :func:`pretrain_small_hubert`)."""
    path = RESOURCES / "hubert_small.pt"
    if not path.is_file():
        raise CheckpointError(f"{path}: the shipped small HuBERT is missing; make one with `spokenlm pretrain-small`")
    return path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    defaults = PretrainSettings()
    parser.add_argument("--corpus", required=True, help="synthetic corpus folder (from `spokenlm synth-corpus`)")
    parser.add_argument("--out", required=True, help="output folder (gets hubert_small.pt, recipe.json, targets/, train/)")
    parser.add_argument("--updates", type=int, default=defaults.max_update,
                        help=f"training updates (default: {defaults.max_update}; warm-up: the first 1/12)")
    parser.add_argument(
        "--max-tokens", type=int, default=defaults.max_tokens,
        help=f"audio samples per batch, crops of at most 2 s (default: {defaults.max_tokens})",
    )
    parser.add_argument("--k", type=int, default=defaults.k, help=f"k-means clusters on MFCC (default: {defaults.k})")
    parser.add_argument("--layers", type=int, default=SmallHubert.layers, help="transformer layers (default: 4)")
    parser.add_argument("--dim", type=int, default=SmallHubert.dim, help="transformer width (default: 256)")
    parser.add_argument("--conv-channels", type=int, default=SmallHubert.conv_channels, help="CNN channels (default: 128)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of fairseq-train (default: torch's choice)")
    parser.add_argument("--fp32", action="store_true", help="keep fp32 weights in the exported checkpoint (default: fp16)")
    parser.add_argument(
        "--targets-only", action="store_true",
        help="stop after writing the MFCC k-means targets (OUT/targets), e.g. to train with fairseq-hydra-train",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"seed of k-means and training (default: {defaults.seed})")
    parser.add_argument("--lr", type=float, default=defaults.lr, help=f"peak learning rate (default: {defaults.lr})")
    parser.add_argument(
        "--init-from", type=Path, default=None,
        help="second HuBERT iteration: start from this iteration-1 checkpoint, targets from its --target-layer",
    )
    parser.add_argument("--target-layer", type=int, default=None, help="layer of --init-from whose k-means are the targets")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.targets_only:
        settings = PretrainSettings(k=args.k, seed=args.seed)
        check_options(settings=settings)
        if (args.init_from is None) != (args.target_layer is None):
            raise ConfigError("--init-from and --target-layer go together (the second HuBERT iteration)")
        manifests, targets = Path(args.corpus) / "manifests", Path(args.out) / "targets"
        if args.init_from is None:
            make_mfcc_targets(manifests, targets, k=settings.k, max_frames=settings.kmeans_frames,
                              seed=settings.seed, log=print)
        else:
            make_feature_targets(manifests, targets, checkpoint=args.init_from, layer=args.target_layer,
                                 k=settings.k, max_frames=settings.kmeans_frames, seed=settings.seed, log=print)
        return 0
    warmup = max(1, args.updates // 12)
    path = pretrain_small_hubert(
        Path(args.corpus),
        Path(args.out),
        model=SmallHubert(conv_channels=args.conv_channels, layers=args.layers, dim=args.dim, ffn_dim=4 * args.dim),
        settings=PretrainSettings(
            max_update=args.updates, warmup_updates=warmup, max_tokens=args.max_tokens, k=args.k, seed=args.seed,
            lr=args.lr,
        ),
        threads=args.threads,
        half=not args.fp32,
        init_from=args.init_from,
        target_layer=args.target_layer,
        log=print,
    )
    print(path)
    return 0
