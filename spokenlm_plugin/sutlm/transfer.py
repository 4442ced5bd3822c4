"""Zero-shot cross-modal transfer: a sentence classifier on joint-LM features, trained in one modality, tested in the other.

The paper's SLU finding (fine-tune on text, test on speech) on data available offline. Each label
belongs to the world a corpus speaks (``synth-corpus --text``; :data:`LABEL_WORLD`):

- WordNet (:func:`sentence_labels`): the synset whose usage example a sentence is (the first one in
  database order, as :func:`spokenlm_plugin.synth.text.load_sentences` deduplicates), either its
  lexicographer file (``lexname``, e.g. ``noun.artifact``: 45 classes, WordNet's ``lexnames`` list)
  or its part of speech (``pos``: noun / verb / adj / adv, satellites counted as adj; the WordNet
  default: on the demo's ~900 training sentences the 30-odd lexnames with >= 5 items each are too
  sparse for a linear classifier to beat the majority class even within a modality);
- stories (:func:`story_labels`, from each sentence's parse in :mod:`spokenlm_plugin.synth.stories`):
  the ``tense`` of its verb (present / past: one tense per story, about half each; the story default)
  or the ``number`` of its subject (singular / plural: about 3 in 4 singular).

:func:`labels_for` gives a label's sentences and refuses a label of the other world. Classes with
fewer than ``min_count`` training items are dropped (from both splits).

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
from functools import lru_cache
from typing import Collection, Iterable, Literal, Sequence

import numpy as np

from ..core.errors import ConfigError
from ..synth.text import World
from .align import AlignedUtterance
from .metrics import bootstrap_ci
from .score import indices
from .sequences import Renderer
from .tokens import MARKER_OF, Modality

Label = Literal["lexname", "pos", "tense", "number"]
WordNetLabel = Literal["lexname", "pos"]
StoryLabel = Literal["tense", "number"]
LABELS: tuple[Label, ...] = ("pos", "lexname", "tense", "number")
#: The world whose sentences a label describes.
LABEL_WORLD: dict[str, World] = {"pos": "wordnet", "lexname": "wordnet", "tense": "stories", "number": "stories"}
#: A label's words in reports.
LABEL_NAMES: dict[str, str] = {"pos": "part of speech", "lexname": "lexicographer file", "tense": "tense",
                               "number": "subject number"}
#: What a label is, for a report's note.
LABEL_MEANINGS: dict[str, str] = {
    "pos": "the WordNet part of speech of the synset whose example each sentence is",
    "lexname": "the WordNet lexicographer file of the synset whose example each sentence is",
    "tense": "the tense of each story sentence's verb", "number": "the number of each story sentence's subject"}
WORLD_NAMES: dict[World, str] = {"wordnet": "WordNet", "stories": "story"}
#: Sentences of the story world's aligned pool labelled at least (about a second to generate): every
#: sentence that a corpus of up to ~2.5 hours speaks (a 1-hour corpus reads about 7,400 of them).
STORY_SENTENCES = 20_000
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


def sentence_labels(*, wordnet: str | os.PathLike | None = None,
                    label: WordNetLabel = "pos") -> dict[tuple[str, ...], str]:
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


def default_label(world: World | None) -> Label:
    """The label of a corpus's world: ``tense`` for stories, else ``pos``."""
    return "tense" if world == "stories" else "pos"


def guess_world(sentences: Iterable[Sequence[str]]) -> World | None:
    """``stories`` when every sentence is made of the story world's words only, else None (unknown)."""
    from ..synth.stories import vocabulary

    vocab = frozenset(vocabulary())
    sentences = list(sentences)
    return "stories" if sentences and all(vocab.issuperset(words) for words in sentences) else None


@lru_cache(maxsize=4)
def _story_parses(sentences: int) -> dict[tuple[str, ...], tuple[str, str]]:
    """Words -> (tense, number) of the first ``sentences`` of the story world's aligned pool."""
    from ..synth.stories import pool_sentences

    out: dict[tuple[str, ...], tuple[str, str]] = {}
    for s in pool_sentences("aligned", sentences):
        assert s.parse is not None  # every generated sentence has one
        out[s.words] = (s.parse.verb.tense, "plural" if s.parse.plural_subject else "singular")
    return out


def story_labels(*, label: StoryLabel = "tense",
                 cover: Collection[Sequence[str]] = ()) -> dict[tuple[str, ...], str]:
    """Transcript words -> label of the story world's spoken (aligned pool) sentences: the first
    :data:`STORY_SENTENCES`, and more while a sentence of ``cover`` made of story words is not among them
    (up to 4 pool sentences per such sentence: a corpus reads its splits' sentences from one pool prefix)."""
    from ..synth.stories import vocabulary

    vocab = frozenset(vocabulary())
    wanted = {tuple(w) for w in cover if vocab.issuperset(w)}
    n = STORY_SENTENCES
    parses = _story_parses(n)
    while not wanted <= parses.keys() and n < 4 * len(wanted):
        n *= 2
        parses = _story_parses(n)
    field = 0 if label == "tense" else 1
    return {words: value[field] for words, value in parses.items()}


def labels_for(label: Label, *, world: World | None = None, wordnet: str | os.PathLike | None = None,
               cover: Collection[Sequence[str]] = (), option: str = "--zero-shot-label") -> dict[tuple[str, ...], str]:
    """Transcript words -> ``label`` of its world's sentences (``cover``: sentences the story labels must
    include, see :func:`story_labels`); ``world``: the corpus's, where known: a label of the other world
    is refused (``option`` names the choice in the message)."""
    if label not in LABEL_WORLD:
        raise ConfigError(f"{option} {label}: not a label; use one of {', '.join(LABELS)}")
    own = LABEL_WORLD[label]
    if world is not None and world != own:
        usable = " or ".join(name for name in LABELS if LABEL_WORLD[name] == world)
        raise ConfigError(f"{option} {label}: {WORLD_NAMES[own]} labels; this corpus speaks the "
                          f"{WORLD_NAMES[world]} world: use {usable}")
    if own == "stories":
        return story_labels(label="tense" if label == "tense" else "number", cover=cover)
    return sentence_labels(wordnet=wordnet, label="lexname" if label == "lexname" else "pos")


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
    if train and not any(u.words in labels for u in train):
        world = LABEL_WORLD.get(label)
        of = f" ({WORLD_NAMES[world]} sentences only)" if world else ""
        raise ConfigError(f"{where}: none of the {len(train)} training utterances has a {label} label{of}: use a "
                          "label of the corpus's world (WordNet: pos or lexname; stories: tense or number)")
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
