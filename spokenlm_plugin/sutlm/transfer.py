"""Zero-shot cross-modal transfer: a sentence classifier on joint-LM features, trained in one modality, tested in the other.

The paper's SLU finding (fine-tune on text, test on speech) on data available offline. Label of a
corpus sentence: the WordNet synset whose usage example it is (the first one in database order, as
:func:`spokenlm_plugin.synth.text.load_sentences` deduplicates), either its lexicographer file
(``lexname``, e.g. ``noun.artifact``: 45 classes, WordNet's ``lexnames`` list) or its part of speech
(``pos``: noun / verb / adj / adv, satellites counted as adj; the default: on the demo's ~900
training sentences the 30-odd lexnames with >= 5 items each are too sparse for a linear classifier
to beat the majority class even within a modality). Classes with fewer than ``min_count`` training
items are dropped (from both splits).

Features: the joint LM's last hidden states (after its final layer norm), mean-pooled over the
content tokens of ``</s> [MARKER] tokens ...`` (one whole utterance in one modality). Classifier:
sklearn's ``LogisticRegression`` on standardised features, trained on the train split's
utterances in one modality, tested on the test split's (new sentences) in each modality: t->u and
u->t are the zero-shot transfer, t->t and u->u the within-modality references; chance
(1 / classes) and majority (the train split's most frequent class) are the baselines.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from ..core.errors import ConfigError
from .align import AlignedUtterance
from .metrics import bootstrap_ci
from .score import indices
from .sequences import Renderer
from .tokens import MARKER_OF, Modality

Label = Literal["lexname", "pos"]
#: WordNet 3.0's lexicographer files, by ``lex_filenum`` (lexnames(5WN)).
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)
POS = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}
DIRECTIONS: tuple[tuple[Modality, Modality], ...] = (
    ("text", "speech"), ("speech", "text"), ("text", "text"), ("speech", "speech"))
SHORT = {"text": "t", "speech": "u"}


def sentence_labels(*, wordnet: str | os.PathLike | None = None, label: Label = "pos") -> dict[tuple[str, ...], str]:
    """Transcript words -> label of every clean WordNet example sentence (the corpus' sentences)."""
    from ..synth.text import POS_FILES, normalize_example, wordnet_dir
    from ..synth.text import _EXAMPLE  # the same example pattern as the corpus' sentences

    folder = wordnet_dir(wordnet)
    out: dict[tuple[str, ...], str] = {}
    for name in POS_FILES:
        with open(folder / name, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(" ") or "|" not in line:
                    continue
                head, gloss = line.split("|", 1)
                fields = head.split()
                value = LEXNAMES[int(fields[1])] if label == "lexname" else POS[fields[2]]
                for example in _EXAMPLE.findall(gloss):
                    normalized = normalize_example(example)
                    if normalized is not None:
                        out.setdefault(normalized[1], value)
    return out


def labelled(train: Sequence[AlignedUtterance], test: Sequence[AlignedUtterance], labels: dict[tuple[str, ...], str], *,
             min_count: int = 5) -> tuple[list[tuple[AlignedUtterance, str]], list[tuple[AlignedUtterance, str]]]:
    """(utterance, label) pairs of both splits: labelled utterances of classes with >= ``min_count`` train items."""
    tr = [(u, labels[u.words]) for u in train if u.words in labels]
    counts: dict[str, int] = {}
    for _, y in tr:
        counts[y] = counts.get(y, 0) + 1
    keep = {y for y, n in counts.items() if n >= min_count}
    te = [(u, labels[u.words]) for u in test if labels.get(u.words) in keep]
    return [(u, y) for u, y in tr if y in keep], te


def pooled_features(model, dictionary, renderer: Renderer, utts: Sequence[AlignedUtterance], *, modality: Modality,
                    batch_size: int = 32, where: str = "") -> np.ndarray:
    """Mean of the last hidden states over the content tokens of each utterance rendered in ``modality``."""
    import torch

    seqs = []
    for u in utts:
        toks = renderer.segment(u, 0, len(u.words), modality, where=where)[1]
        seqs.append([dictionary.eos(), *indices(dictionary, [MARKER_OF[modality], *toks], where=where)])
    device = next(model.parameters()).device
    out: list[np.ndarray] = [np.empty(0)] * len(seqs)
    for start in range(0, len(seqs), batch_size):
        batch = range(start, min(start + batch_size, len(seqs)))
        width = max(len(seqs[i]) for i in batch)
        src = torch.full((len(batch), width), dictionary.pad(), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, i in enumerate(batch):
            src[row, :len(seqs[i])] = torch.tensor(seqs[i])
            mask[row, 2:len(seqs[i])] = True  # content tokens: after </s> and the marker
        with torch.no_grad():  # right padding is harmless: the LM is causal
            hidden = model(src.to(device), features_only=True)[0].double().cpu()
        pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        for row, i in enumerate(batch):
            out[i] = pooled[row].numpy()
    return np.stack(out) if out else np.zeros((0, 0))


@dataclass
class TransferResult:
    """Accuracy of one train -> test modality direction."""

    train: Modality
    test: Modality
    accuracy: float
    ci: tuple[float, float] | None

    @property
    def name(self) -> str:
        return f"{SHORT[self.train]}->{SHORT[self.test]}"


@dataclass
class ZeroShotReport:
    label: str
    classes: list[str]
    train_items: int
    test_items: int
    chance: float
    majority: float
    results: list[TransferResult]


def zero_shot(model, dictionary, renderer: Renderer, train: Sequence[AlignedUtterance],
              test: Sequence[AlignedUtterance], *, labels: dict[tuple[str, ...], str], label: str = "pos",
              min_count: int = 5, resamples: int = 1000, seed: int = 0, where: str = "") -> ZeroShotReport:
    """Train a linear classifier in each modality, test in each: the four directions and the baselines."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    tr, te = labelled(train, test, labels, min_count=min_count)
    classes = sorted({y for _, y in tr})
    if len(classes) < 2 or not te:
        raise ConfigError(f"{where}: {len(classes)} {label} class(es) with >= {min_count} training items and "
                          f"{len(te)} labelled test items: zero-shot transfer needs 2 classes and test items; "
                          "lower --zero-shot-min-count or use more data")
    y_tr = np.array([y for _, y in tr])
    y_te = np.array([y for _, y in te])
    feats = {(split, m): pooled_features(model, dictionary, renderer, [u for u, _ in items], modality=m, where=where)
             for split, items in (("train", tr), ("test", te)) for m in ("text", "speech")}
    results = []
    for src in ("text", "speech"):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        clf.fit(feats["train", src], y_tr)
        for dst in ("text", "speech"):
            hits = (clf.predict(feats["test", dst]) == y_te).astype(float)
            results.append(TransferResult(src, dst, float(hits.mean()), bootstrap_ci(hits, resamples=resamples, seed=seed)))
    order = {d: i for i, d in enumerate(DIRECTIONS)}
    results.sort(key=lambda r: order[(r.train, r.test)])
    values, counts = np.unique(y_tr, return_counts=True)
    majority = float((y_te == values[np.argmax(counts)]).mean())
    return ZeroShotReport(label, classes, len(tr), len(te), 1.0 / len(classes), majority, results)
