"""Demo stage: features, k-means units and their phonemic quality, base vs fine-tuned HuBERT.

For the base model (``base_layer``) and the fine-tuned one (``finetuned_layer``): features of
every split (and of the minimal pairs) are dumped, k-means is fitted on train frames and every
split is turned into units. On the test split (held-out speakers), triphone ABX (within / across
speaker; fastabx, ZeroSpeech 2021 settings, fastabx's slicing) of the continuous features at a few
layers and of the units (one-hot), and phone purity / PNMI of the units against the frame labels.
"finetuned-logits" units are the argmax of the fine-tuned classifier's phone logits (the paper's
"layer 13"; stored centroids: the identity, since the nearest one-hot vector is the argmax).

k is 100 (20 in quick mode) instead of the paper's 500: the demo corpus has about 40 phones and
an hour of speech, far too few frames for 500 well-populated clusters.

Baselines and topline beside them (:mod:`spokenlm_plugin.units.baseline`): log-mel (40) and MFCC
(39) frames at HuBERT's 50 Hz, per-utterance normalised, measured like the models' features (ABX)
and turned into k-means units with the same k (ABX one-hot, PNMI); the gold phone labels as
one-hot frames are the ABX topline.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.io import read_manifest
from ..core.km import read_km_arrays, write_km
from ..core.report import pct, save_figure, use_agg
from ..units.abx import Speaker, abx, abx_units_many
from ..units.baseline import SpectralKind, dump_baseline_features
from ..units.encoder import DenseModel, Layer
from ..units.features import dump_features
from ..units.kmeans import fit_kmeans, save_centroids
from ..units.quality import unit_quality
from ..units.shards import open_shards, sample_frames
from .context import DemoContext, StageResult, Table

SPLITS = ("train", "valid", "test")
PAIR_TASKS = ("lexical", "syntactic")
#: Spectral baselines: kind -> (name in the tables, description).
BASELINES: dict[SpectralKind, tuple[str, str]] = {"logmel": ("log-mel", "40 mels (baseline)"), "mfcc": ("MFCC", "13+d+dd (baseline)")}
FULL = {"k": 100, "niter": 20, "kmeans_frames": 100_000}
QUICK = {"k": 20, "niter": 10, "kmeans_frames": 20_000}


def _manifests(corpus: Path, pairs: Path | None) -> dict[str, Path]:
    found = {s: corpus / "manifests" / f"{s}.tsv" for s in SPLITS}
    if pairs is not None:
        found |= {t: pairs / "manifests" / f"{t}.tsv" for t in PAIR_TASKS
                  if (pairs / "manifests" / f"{t}.tsv").is_file()}
    return found


def _dump(dense: DenseModel, manifests: dict[str, Path], out: Path, *, per_utterance: set[str]) -> dict[str, Any]:
    return {s: dump_features(dense, m, out, per_utterance=s in per_utterance, progress=False)
            for s, m in manifests.items()}


def _units_of(feat_dir: Path, split: str, assign: Any) -> list[np.ndarray]:
    (shard,) = open_shards(feat_dir, split=split)
    return [assign(np.asarray(u, dtype=np.float32)) for u in shard.utterances()]


def _layers_to_probe(num_layers: int, unit_layer: int, quick: bool) -> list[int]:
    if quick:
        return [unit_layer]
    return sorted({1, (num_layers + 1) // 2, unit_layer, num_layers})


def _start_fresh_if_changed(folder: Path, fingerprint: str) -> None:
    """Features dumped from an earlier checkpoint (a rerun after new fine-tuning) are dropped;
    features from this one are kept, so an interrupted stage resumes its dumps."""
    import shutil

    record = folder / "checkpoint.fingerprint"
    if record.is_file() and record.read_text() != fingerprint:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record.write_text(fingerprint)


class _UnitSet:
    """Units of one model: k-means (or logits argmax) on its features, in ``OUT/<name>/km``."""

    def __init__(self, name: str, checkpoint: Path, layer: Layer | SpectralKind, out: Path) -> None:
        # layer: the model's layer, or for a spectral baseline its kind (the checkpoint is then its features)
        self.name, self.checkpoint, self.layer = name, checkpoint, layer
        self.km_dir = out / name / "km"
        self.centroids = out / name / "centroids.npy"

    def artifact(self) -> dict[str, Any]:
        return {"km_dir": self.km_dir, "pairs_km_dir": self.km_dir, "centroids": self.centroids,
                "checkpoint": self.checkpoint, "layer": self.layer}


def _kmeans_units(unit_set: _UnitSet, feat_dir: Path, splits: list[str], *, size: dict[str, int]) -> None:
    from ..units.kmeans import assign_units

    x = sample_frames(open_shards(feat_dir, split="train"))
    centroids = fit_kmeans(x, k=size["k"], niter=size["niter"], max_points=size["kmeans_frames"], seed=0)
    save_centroids(unit_set.centroids, centroids)
    for split in splits:
        write_km(unit_set.km_dir / f"{split}.km", _units_of(feat_dir, split, lambda u: assign_units(u, centroids)))


def _quality(unit_set: _UnitSet, corpus: Path, test_manifest: Path, item: Path) -> dict[str, float]:
    labels = [line.split() for line in (corpus / "labels" / "test.phn").read_text().splitlines()]
    q = unit_quality(read_km_arrays(unit_set.km_dir / "test.km"), labels)
    results = abx_units_many(unit_set.km_dir / "test.km", test_manifest, item,
                             conditions=[("within", "within"), ("across", "within")])
    return {"abx_within": results[0].error, "abx_across": results[1].error, "pnmi": q.pnmi,
            "phone_purity": q.phone_purity, "cluster_purity": q.cluster_purity, "units_used": q.units_used}


def _baselines(corpus: Path, manifests: dict[str, Path], item: Path, out: Path, *,
               size: dict[str, int]) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """ABX of log-mel / MFCC frames and of gold phones (one-hot, the topline); ABX and PNMI of
    log-mel / MFCC k-means units (same k, fitted on the train frames)."""
    conditions: tuple[Speaker, ...] = ("within", "across")
    features: dict[str, dict[str, float]] = {}
    units: dict[str, dict[str, float]] = {}
    for kind, (name, what) in BASELINES.items():
        feat_dir = out / "baselines" / kind
        for split in ("train", "test"):
            dump_baseline_features(kind, manifests[split], feat_dir, per_utterance=split == "test")
        features[f"{name} {what}"] = {f"abx_{s}": abx(feat_dir, item, speaker=s, device="cpu") for s in conditions}
        unit_set = _UnitSet(kind, feat_dir, kind, out / "baselines")
        _kmeans_units(unit_set, feat_dir, ["test"], size=size)
        units[name] = _quality(unit_set, corpus, manifests["test"], item)
    phones = out / "baselines" / "phones"
    dump_baseline_features("phones", manifests["test"], phones, labels=corpus / "labels" / "test.phn",
                           dict_path=corpus / "labels" / "dict.phn.txt", per_utterance=True)
    features["gold-phones one-hot (topline)"] = {f"abx_{s}": abx(phones, item, speaker=s, device="cpu")
                                                 for s in conditions}
    return features, units


def _plot(features: dict[str, dict[str, float]], units: dict[str, dict[str, float]], out: Path) -> Path:
    use_agg()
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 2]})
    for ax, data, title in ((ax1, features, "continuous features"), (ax2, units, "units (one-hot)")):
        names = list(data)
        pos = np.arange(len(names))
        for j, (cond, color) in enumerate((("abx_within", "tab:blue"), ("abx_across", "tab:orange"))):
            vals = [100 * data[n][cond] for n in names]
            label = cond.replace("abx_", "") + " speaker"
            bars = ax.bar(pos + (j - 0.5) * 0.38, vals, 0.38, color=color, label=label)
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_ylim(0, 1.25 * max(100 * v for n in names for k, v in data[n].items() if k.startswith("abx_")))
        ax.set_xticks(pos, names, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("triphone ABX error (%)")
        ax.set_title(f"test speakers, {title}", fontsize=10)
        ax.legend(fontsize=8)
    ax3 = ax2.twinx()
    ax3.plot(np.arange(len(units)), [units[n]["pnmi"] for n in units], "k^--", label="PNMI")
    ax3.set_ylim(0, 1)
    ax3.set_ylabel("PNMI")
    fig.tight_layout()
    return save_figure(fig, out / "units_abx_pnmi.png", dpi=110)


def run(ctx: DemoContext) -> StageResult:
    size = QUICK if ctx.quick else FULL
    out = ctx.stage_dir("units")
    corpus = Path(ctx.artifacts["corpus"])
    pairs = Path(ctx.artifacts["pairs"]) if ctx.artifacts.get("pairs") else None
    manifests = _manifests(corpus, pairs)
    item = corpus / "items" / "test.triphone.item"
    models = {"base": (Path(ctx.artifacts["base_checkpoint"]), int(ctx.artifacts["base_layer"])),
              "finetuned": (Path(ctx.artifacts["finetuned_checkpoint"]), int(ctx.artifacts["finetuned_layer"]))}

    feature_abx: dict[str, dict[str, float]] = {}
    unit_sets: dict[str, _UnitSet] = {}
    timings: dict[str, float] = {}
    for name, (checkpoint, layer) in models.items():
        t0 = time.perf_counter()
        dense = DenseModel.from_checkpoint(checkpoint, layer=layer)
        _start_fresh_if_changed(out / name, dense.fingerprint)
        if name == "finetuned":
            _start_fresh_if_changed(out / "finetuned-logits", dense.fingerprint)
        ctx.log(f"[units] {name}: dumping layer {layer} features of {', '.join(manifests)}")
        feat_dir = out / name / f"layer{layer}"
        _dump(dense, manifests, feat_dir, per_utterance={"test"})
        unit_sets[name] = _UnitSet(name, checkpoint, layer, out)
        _kmeans_units(unit_sets[name], feat_dir, list(manifests), size=size)
        for probe in _layers_to_probe(dense.num_layers, layer, ctx.quick):
            probe_dir = feat_dir if probe == layer else out / name / f"layer{probe}"
            if probe != layer:
                dense_probe = DenseModel(dense.model, layer=probe, normalize=dense.normalize, device=dense.device,
                                         name=dense.name, fingerprint=dense.fingerprint)
                _dump(dense_probe, {"test": manifests["test"]}, probe_dir, per_utterance={"test"})
            feature_abx[f"{name} L{probe}"] = {
                f"abx_{s}": abx(probe_dir, item, speaker=s, device="cpu") for s in ("within", "across")
            }
        if name == "finetuned":
            logits_set = _logits_units(dense, manifests, feat_dir, out)
            unit_sets["finetuned-logits"] = logits_set
            feature_abx["finetuned logits"] = {
                f"abx_{s}": abx(out / "finetuned-logits" / "features", item, speaker=s, device="cpu")
                for s in ("within", "across")
            }
        timings[name] = time.perf_counter() - t0
        ctx.log(f"[units] {name}: done in {timings[name]:.0f} s")

    unit_metrics = {name: _quality(s, corpus, manifests["test"], item) for name, s in unit_sets.items()}
    ctx.artifacts["units"] = {name: s.artifact() for name, s in unit_sets.items()}
    t0 = time.perf_counter()
    ctx.log("[units] baselines: log-mel / MFCC frames and k-means units, gold phones (topline)")
    baseline_features, baseline_units = _baselines(corpus, manifests, item, out, size=size)
    timings["baselines"] = time.perf_counter() - t0
    return _result(feature_abx, unit_metrics, models, size, out, timings,
                   baselines=(baseline_features, baseline_units))


def _logits_units(dense: DenseModel, manifests: dict[str, Path], feat_dir: Path, out: Path) -> _UnitSet:
    """Argmax units of the phone logits, and the test logits (per utterance) for ABX.

    When the classifier reads the unit layer itself (the paper's setting: layer 12 -> logits), the
    logits are its head applied to the features already dumped (checked against a real forward
    pass on one utterance); otherwise they are dumped with a second pass.
    """
    unit_set = _UnitSet("finetuned-logits", Path(dense.name), "logits", out)
    logits_dir = out / "finetuned-logits" / "features"
    logits = DenseModel(dense.model, layer="logits", normalize=dense.normalize, device=dense.device,
                        name=dense.name, fingerprint=dense.fingerprint)
    to_logits = _head_on_features(dense, logits, manifests["test"])
    if to_logits is None:
        _dump(logits, manifests, logits_dir, per_utterance={"test"})
        to_logits, source = (lambda u: u), logits_dir
    else:
        source = feat_dir
        logits_dir.mkdir(parents=True, exist_ok=True)
        for utt in read_manifest(manifests["test"]).utt_ids:  # per-utterance test logits, for ABX
            np.save(logits_dir / f"{utt}.npy", to_logits(np.load(feat_dir / f"{utt}.npy")))
    save_centroids(unit_set.centroids, np.eye(logits.dim, dtype=np.float32))
    for split in manifests:
        write_km(unit_set.km_dir / f"{split}.km", _units_of(source, split, lambda u: to_logits(u).argmax(axis=1)))
    return unit_set


def _head_on_features(dense: DenseModel, logits: DenseModel, test_manifest: Path) -> Any:
    from ..core.audio import read_audio

    head = getattr(dense.model, "head", None)
    if not isinstance(head, torch.nn.Linear) or getattr(dense.model, "layer", None) != dense.layer:
        return None

    def apply(feats: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return head(torch.tensor(np.asarray(feats), device=dense.device)).float().cpu().numpy()

    manifest = read_manifest(test_manifest)
    wav = read_audio(manifest.path(manifest.rows[0]))
    expected = logits(wav).cpu().numpy()
    if not np.allclose(apply(dense(wav).cpu().numpy()), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max()):
        return None
    return apply


def _result(feature_abx: dict[str, dict[str, float]], unit_metrics: dict[str, dict[str, float]],
            models: dict[str, tuple[Path, int]], size: dict[str, int], out: Path,
            timings: dict[str, float], *,
            baselines: tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]] = ({}, {})) -> StageResult:
    model_abx, model_units = feature_abx, unit_metrics
    feature_abx, unit_metrics = {**feature_abx, **baselines[0]}, {**unit_metrics, **baselines[1]}

    feature_table = Table(
        title="Triphone ABX error (%) of continuous features, test split (held-out speakers)",
        headers=["model", "layer", "within speaker", "across speaker"],
        rows=[[*key.split(" ", 1), pct(v["abx_within"], digits=2), pct(v["abx_across"], digits=2)]
              for key, v in feature_abx.items()],
        note="fastabx, angular distance, 50 Hz, ZeroSpeech 2021 subsampling; fastabx's slicing (keeps each "
             "item's last frame, unlike Libri-light's tool). Baselines: log-mel (40 mels) and MFCC (13 + deltas + "
             "delta-deltas) frames at HuBERT's 50 Hz frames, each utterance mean / variance normalised; topline: "
             "the gold 50 Hz phone labels as one-hot frames.",
    )
    unit_rows = []
    for name, m in unit_metrics.items():
        layer = ("logits argmax" if name == "finetuned-logits" else f"L{models[name][1]}, k={size['k']}"
                 if name in models else f"k-means, k={size['k']} (baseline)")
        unit_rows.append([name, layer, pct(m["abx_within"], digits=2), pct(m["abx_across"], digits=2), f"{m['pnmi']:.3f}",
                          f"{m['phone_purity']:.3f}", f"{m['cluster_purity']:.3f}", m["units_used"]])
    unit_table = Table(
        title="Units on the test split: ABX (one-hot, %) and quality against the frame labels",
        headers=["units", "from", "ABX within", "ABX across", "PNMI", "phone purity", "cluster purity", "units used"],
        rows=unit_rows,
        note=f"k-means (faiss, k-means++ seeding, {size['niter']} iterations) fitted on at most "
             f"{size['kmeans_frames']} train frames; k={size['k']} instead of the paper's 500 for this small corpus. "
             "Baselines: k-means units of the log-mel and MFCC frames, same k.",
    )
    base_l, ft_l = f"base L{models['base'][1]}", f"finetuned L{models['finetuned'][1]}"
    better_features = all(feature_abx[ft_l][c] < feature_abx[base_l][c] for c in ("abx_within", "abx_across"))
    better_units = all(unit_metrics["finetuned"][c] < unit_metrics["base"][c] for c in ("abx_within", "abx_across"))
    text = (
        "Base vs phoneme fine-tuned model on held-out speakers: the fine-tuned model's features "
        f"{'have lower' if better_features else 'do not have lower'} triphone ABX error than the base model's "
        f"at the unit layers, and its units {'have lower' if better_units else 'do not have lower'} ABX error "
        f"(PNMI {unit_metrics['finetuned']['pnmi']:.3f} vs {unit_metrics['base']['pnmi']:.3f})."
    )
    logmel, topline = baselines[0].get("log-mel 40 mels (baseline)"), baselines[0].get("gold-phones one-hot (topline)")
    if logmel is not None and topline is not None:
        text += (
            f" For reference: log-mel frames have {pct(logmel['abx_within'], digits=2)} / "
            f"{pct(logmel['abx_across'], digits=2)} % ABX "
            f"error (within / across speaker) and their k-means units a PNMI of {baselines[1]['log-mel']['pnmi']:.3f}; "
            f"the gold phones (topline) {pct(topline['abx_within'], digits=2)} / {pct(topline['abx_across'], digits=2)} %."
        )
    return StageResult(
        name="units",
        text=text,
        tables=[feature_table, unit_table],
        plots=[_plot(feature_abx, unit_metrics, out)],
        metrics={"features": model_abx, "units": model_units, "baseline_features": baselines[0],
                 "baseline_units": baselines[1], "finetuned_features_better": better_features,
                 "finetuned_units_better": better_units, "k": size["k"],
                 "seconds": {k: round(v, 1) for k, v in timings.items()}, "torch_threads": torch.get_num_threads()},
    )
