"""Can a language model learn the world at all? A text-only check of the story world.

Before any speech: a small LSTM (2 x 256) trained for a few seconds on the gold phone sequences of
the training sentences (flite's front end, voice slt, pauses dropped: what a perfect phone recognizer
would give) for a few epochs scores the minimal pairs that ``spokenlm synth-pairs`` would make from them, with the same
code (:func:`~spokenlm_plugin.synth.minimal_pairs.lexical_pairs`,
:func:`~spokenlm_plugin.synth.minimal_pairs.syntactic_pairs`; non-words drawn at random, since no
audio is made to balance durations). A pair's members are scored by the sum of their phones'
log-probabilities (``<s>`` ... ``</s>``, as ZeroSpeech 2021); the correct one should score higher.

Worlds: ``stories`` (synth/stories.py; the training sentences are the first N of the aligned train
split that ``synth-corpus --text stories --seed 0`` speaks) and ``wordnet`` (the first N train
sentences of ``synth-corpus --seed 0``). Rows beside the LSTM: chance, a length-only scorer (fewer
phones win; every pair ties by construction, 50 %) and an add-one phone bigram LM (phonotactics only).
Intervals: 95 % percentile bootstrap over pairs.

    python benchmarks/story_world_text_lm.py [--sentences 2000] [--worlds stories wordnet] [--epochs 10]

REFERENCE.md quotes 95 % (lexical) / 96 % (agreement) for a 203-word world after 6 s of training.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from typing import Sequence

import numpy as np

from spokenlm_plugin.core.phones import INVENTORY, SIL
from spokenlm_plugin.synth import stories
from spokenlm_plugin.synth.corpus import assign_sentences
from spokenlm_plugin.synth.flite import Flite
from spokenlm_plugin.synth.lexicon import Lexicon
from spokenlm_plugin.synth.minimal_pairs import (
    STORY_MIN_PHONES, STORY_NONWORDS_PER_WORD, STORY_PAIR_SENTENCES, lexical_pairs, same_phone_count, story_variant,
    syntactic_pairs,
)
from spokenlm_plugin.synth.speakers import aligned_speakers
from spokenlm_plugin.synth.text import Sentence, load_sentences, pool_sentences

PHONES = [p for p in INVENTORY if p != SIL]
BOS, EOS = len(PHONES), len(PHONES) + 1
VOCAB = len(PHONES) + 2
_INDEX = {p: i for i, p in enumerate(PHONES)}


_START = time.perf_counter()


def _log(what: str) -> None:
    print(f"[{time.perf_counter() - _START:6.1f} s] {what}", file=sys.stderr, flush=True)


def encode(phones: Sequence[str]) -> list[int]:
    return [BOS, *(_INDEX[p] for p in phones), EOS]


class World:
    """Training sentences and candidate pair sentences of one world."""

    def __init__(self, name: str, n_sentences: int) -> None:
        self.name = name
        if name == "stories":
            # As synth-corpus --text stories --seed 0 (valid / test 0.1 each) cuts the aligned pool.
            chosen = stories.aligned_splits({"train": n_sentences * stories.MIN_SECONDS}, seed=0,
                                            valid_fraction=0.1, test_fraction=0.1)
            self.train: list[Sentence] = list(chosen["train"][:n_sentences])
            self.candidates: list[Sentence] = list(stories.pool_sentences("aligned", STORY_PAIR_SENTENCES))
        else:
            aligned = pool_sentences(load_sentences(), "aligned")
            self.train = assign_sentences(aligned, seed=0, valid_fraction=0.1, test_fraction=0.1)["train"][:n_sentences]
            self.candidates = aligned


def _bootstrap(values: np.ndarray, resamples: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)) * 100, float(np.percentile(means, 97.5)) * 100


def accuracy(pairs: list[tuple[list[int], list[int]]], score) -> tuple[float, float, float]:
    """Mean pair score (1 correct higher, 0.5 tie, 0 lower) in %, with its interval."""
    values = []
    for good, bad in pairs:
        g, b = score(good), score(bad)
        values.append(1.0 if g > b else 0.5 if math.isclose(g, b, rel_tol=0, abs_tol=1e-9) else 0.0)
    arr = np.array(values)
    return (float(arr.mean()) * 100, *_bootstrap(arr))


def bigram_scorer(sequences: list[list[int]]):
    counts = np.ones((VOCAB, VOCAB))  # add-one
    for seq in sequences:
        for a, b in zip(seq, seq[1:]):
            counts[a, b] += 1
    logp = np.log(counts / counts.sum(axis=1, keepdims=True))
    return lambda seq: float(sum(logp[a, b] for a, b in zip(seq, seq[1:])))


def train_lstm(sequences: list[list[int]], *, epochs: int, device: str = "cpu", seed: int = 0):
    """A 2 x 256 LSTM LM trained for ``epochs`` (Adam, batches of 32 sentences of similar length);
    returns (scorer, seconds of training)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class LM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(VOCAB + 1, 64, padding_idx=VOCAB)
            self.lstm = nn.LSTM(64, 256, num_layers=2, batch_first=True)
            self.out = nn.Linear(256, VOCAB)

        def forward(self, x):
            h, _ = self.lstm(self.emb(x))
            return self.out(h)

    model = LM().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))  # batches of similar length
    batches = [order[i : i + 32] for i in range(0, len(order), 32)]
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for k in rng.permutation(len(batches)):
            batch = [sequences[i] for i in batches[k]]
            width = max(map(len, batch))
            x = torch.full((len(batch), width), VOCAB)
            for row, seq in enumerate(batch):
                x[row, : len(seq)] = torch.tensor(seq)
            x = x.to(device)
            logits = model(x[:, :-1])
            target = x[:, 1:].clone()
            target[target == VOCAB] = -100
            loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1), ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            opt.step()
    elapsed = time.perf_counter() - start
    model.eval()

    def score(seq: list[int]) -> float:
        with torch.no_grad():
            x = torch.tensor([seq], device=device)
            logp = torch.log_softmax(model(x[:, :-1]), dim=-1)
            return float(logp[0].gather(1, x[0, 1:, None]).sum())

    return score, elapsed


def run_world(name: str, args: argparse.Namespace, engine: Flite) -> list[list[str]]:
    _log(f"{name}: sentences")
    world = World(name, args.sentences)
    _log(f"{name}: lexicon")
    # The lexicon synth-pairs builds for the world (a story word is a real word too).
    lexicon = Lexicon(engine, load_sentences(), extra_words=stories.vocabulary() if name == "stories" else ())
    voice = aligned_speakers()[0]  # slt-a

    def phones(words: Sequence[str] | str) -> list[str]:
        text = words if isinstance(words, str) else " ".join(words).capitalize() + "."
        return [p for p in engine.text_phones(text, voice) if p != SIL]

    _log(f"{name}: phones and pairs")
    train = [encode(phones(s.text)) for s in world.train]
    frequencies = Counter(w for s in world.train for w in s.words)
    if name == "stories":
        lex = lexical_pairs(lexicon, frequencies, n=args.n_lexical, oov_fraction=0.0, seed=0,
                            words=set(stories.content_words()), min_phones=STORY_MIN_PHONES,
                            per_word=STORY_NONWORDS_PER_WORD)
        variant = story_variant(seed=0)
        syn = syntactic_pairs(world.candidates, set(frequencies), exclude={s.words for s in world.train},
                              n=args.n_syntactic, seed=0, variant=variant,
                              same_phone_count=lambda p: same_phone_count(engine, p, [voice]))
    else:
        lex = lexical_pairs(lexicon, frequencies, n=args.n_lexical, oov_fraction=0.2, seed=0)
        syn = syntactic_pairs(world.candidates, set(frequencies), exclude={s.words for s in world.train},
                              n=args.n_syntactic, seed=0, same_phone_count=lambda p: same_phone_count(engine, p, [voice]))
    lexical = [(encode(p.phones), encode(p.nonword)) for p in lex]
    syntactic = [(encode(phones(p.good)), encode(phones(p.bad))) for p in syn]
    by_type: dict[str, list[tuple[list[int], list[int]]]] = {}
    for p, pair in zip(syn, syntactic):
        by_type.setdefault(f"{p.type}/{p.subtype}", []).append(pair)

    _log(f"{name}: training the LSTM")
    lstm, elapsed = train_lstm(train, epochs=args.epochs, device=args.device)
    scorers = {"length only (fewer phones win)": lambda seq: -len(seq), "phone bigram (add-one)": bigram_scorer(train),
               f"LSTM 2 x 256 ({args.epochs} epochs, {elapsed:.0f} s {args.device})": lstm}
    n_words = sum(len(s.words) for s in world.train)
    test_words = sorted({p.word for p in lex if p.frequency > 0}, key=lambda w: frequencies[w])
    counts = [frequencies[w] for w in test_words]
    print(f"{name}: {len(world.train)} training sentences, {n_words} words, {len(frequencies)} word types; "
          f"{len(lex)} lexical pairs over {len({p.word for p in lex})} words (training counts of the in-vocabulary "
          f"ones: min {min(counts)}, median {int(np.median(counts))}), {len(syn)} syntactic pairs", flush=True)
    rows = [[name, "chance", "50.0", "50.0", *(["50.0"] * len(by_type))]]
    for label, score in scorers.items():
        cells = [accuracy(lexical, score), accuracy(syntactic, score)]
        cells += [accuracy(pairs, score) for _, pairs in sorted(by_type.items())]
        rows.append([name, label, *(f"{a:.1f} [{lo:.1f}, {hi:.1f}]" for a, lo, hi in cells)])
    header = ["world", "scorer", f"lexical ({len(lex)})", f"syntactic ({len(syn)})",
              *(f"{t} ({len(p)})" for t, p in sorted(by_type.items()))]
    return [header, *rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sentences", type=int, default=2000, help="training sentences per world (default: 2000)")
    parser.add_argument("--worlds", nargs="+", choices=["stories", "wordnet"], default=["stories", "wordnet"])
    parser.add_argument("--epochs", type=int, default=10, help="LSTM training epochs (default: 10)")
    parser.add_argument("--device", default="cpu", help="torch device of the LSTM (default: cpu)")
    parser.add_argument("--n-lexical", type=int, default=200, help="lexical pairs (default: 200, as the demo)")
    parser.add_argument("--n-syntactic", type=int, default=400, help="syntactic pairs (default: 400)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    engine = Flite()
    for name in args.worlds:
        table = run_world(name, args, engine)
        print()
        print("| " + " | ".join(table[0]) + " |")
        print("|" + "---|" * len(table[0]))
        for row in table[1:]:
            print("| " + " | ".join(row) + " |")
        print()


if __name__ == "__main__":
    main()
