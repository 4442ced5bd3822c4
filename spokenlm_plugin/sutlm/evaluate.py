"""``spokenlm sutlm-eval``: CRA in four conditions, PELM and zero-shot cross-modal transfer of a joint LM.

Items are held-out paired utterances (``aligned/{split}.jsonl`` from ``spokenlm sutlm-data``) of at
least two words, cut at the word boundary ``floor(n / 2)``: the first half is the prompt, the rest
the continuation. Condition ``u2t`` renders the prompt as units and the continuation as text, etc.;
when the modality switches, the continuation's marker belongs to the context (it is given, not
scored), so every condition scores content tokens only. CRA (:mod:`.metrics`) uses candidate sets
of up to ``--candidates`` items (``--max-items`` caps the items): by default each set holds utterances
of one speaker (``--candidate-pool same-speaker``), so a u2u continuation is not retrieved by its
voice or recording; ``consecutive`` takes consecutive items of the items file, whoever speaks them.
A speaker is the speaker part of the utterance id (``84-121123-0000`` -> ``84``, ``slt-a_01234`` ->
``slt-a``: :func:`spokenlm_plugin.data.speakers.id_speaker`) or a ``--speaker-map`` line. Chance is
the mean over scored items of 1 / (its set's size), printed with every CRA.

PELM: for ``u2t`` and ``t2t``, the joint LM samples a text continuation of each prompt
(:mod:`.generate`); an external text LM (a fairseq ``transformer_lm`` trained with the
``language_modeling`` task on the text-only corpus, never on the evaluated transcripts: the
``textlm`` folder of ``sutlm-data``) scores it after the prompt's transcript; PELM =
``exp(-sum log p / tokens)`` over the continuations' text pieces. Beside it: the same perplexity
of the true continuations (reference), the prompt-copy rate and distinct-1 / distinct-2, and the
number of empty continuations (excluded).

``--zero-shot``: a sentence classifier on the LM's mean-pooled hidden states, trained on the train
split in one modality and tested on the items in each (:mod:`.transfer`), with chance and majority
baselines. Its label belongs to the corpus's world: WordNet part of speech or lexname of each
sentence, or a story sentence's tense or subject number; by default ``pos`` or ``tense``, after the
world of the corpus that ``sutlm-data`` recorded (its ``corpus.json``), else of the items' words.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.errors import ConfigError
from ..core.io import atomic_write
from ..core.report import pct
from ..core.runtime import torch_threads
from ..data.speakers import SpeakerMap, id_speaker, read_speaker_map
from ..synth.text import World
from .align import AlignedUtterance
from .data import META_NAME, read_aligned
from .generate import prompt_tokens, sample_continuations
from .metrics import CANDIDATE_POOLS, CandidatePool, bootstrap_ci, candidate_sets, copy_rate, distinct_n, retrieved
from .score import continuation_logprobs, indices, load_lm
from .sequences import Renderer
from .tokens import Modality, Tokenizer, decode_text
from .transfer import LABELS, default_label, guess_world, labels_for, zero_shot

CONDITIONS: dict[str, tuple[Modality, Modality]] = {
    "u2u": ("speech", "speech"), "u2t": ("speech", "text"), "t2u": ("text", "speech"), "t2t": ("text", "text"),
}


@dataclass
class CRAResult:
    condition: str
    accuracy: float
    ci: tuple[float, float] | None
    #: The chance level in force: the mean over scored items of 1 / (size of its candidate set).
    chance: float
    #: Items scored (each in one candidate set).
    items: int
    #: The largest candidate set (C, or fewer where no speaker / not enough items fill C).
    candidates: int
    pool: CandidatePool
    #: Items given but scored in no set: a part that renders empty, a lone item of its speaker, or
    #: (consecutive) the last ``n mod C``.
    unscored: int
    #: Set size -> number of sets of that size.
    set_sizes: dict[int, int]
    #: Speakers of the scored items (same-speaker pools; None for consecutive ones).
    speakers: int | None
    #: Per continuation: 1 retrieved, 0 not, 1/k on a k-way tie, in item order (the items file's), so two
    #: models scored on the same items compare pairwise; ``utt_ids`` names them.
    hits: list[float] = field(default_factory=list, repr=False)
    utt_ids: list[str] = field(default_factory=list, repr=False)
    #: The candidate sets, as utterance ids.
    sets: list[list[str]] = field(default_factory=list, repr=False)

    def describe(self) -> str:
        """The chance and the sets, for a report line."""
        sizes = ", ".join(f"{n} x {size}" for size, n in sorted(self.set_sizes.items(), reverse=True))
        whose = f"one speaker each, {self.speakers} speakers" if self.pool == "same-speaker" else "consecutive items"
        return (f"chance {100 * self.chance:.1f} %, {self.items} items in candidate sets of {sizes} ({whose})"
                + (f", {self.unscored} not scored" if self.unscored else ""))


@dataclass
class PELMResult:
    condition: str
    pelm: float | None
    reference_ppl: float | None
    copy_rate: float | None
    distinct_1: float | None
    distinct_2: float | None
    prompts: int
    empty: int
    sample: str


def eval_items(utts: Sequence[AlignedUtterance], *, max_items: int | None) -> list[AlignedUtterance]:
    items = [u for u in utts if len(u.words) >= 2]
    return items[:max_items] if max_items is not None else items


def split_pair(renderer: Renderer, utt: AlignedUtterance, condition: str, *, where: str = "") -> tuple[list[str], list[str]] | None:
    """Context (prompt + switch marker) and scored continuation tokens; None if a part renders empty."""
    src, dst = CONDITIONS[condition]
    cut = len(utt.words) // 2
    prompt = renderer.segment(utt, 0, cut, src, where=where)[1]
    cont = renderer.segment(utt, cut, len(utt.words), dst, where=where)[1]
    if not prompt or not cont:
        return None
    return prompt_tokens(src, prompt, to=dst), cont


def item_speakers(utts: Sequence[AlignedUtterance], *, speaker_map: SpeakerMap | None = None,
                  where: str = "") -> list[str]:
    """The speaker of each item: its ``speaker_map`` line, else the speaker part of its utterance id."""
    out = []
    for u in utts:
        if speaker_map is not None:
            if u.utt_id not in speaker_map.speakers:
                raise ConfigError(f"{speaker_map.path}: utterance {u.utt_id!r} of {where} is not in the speaker map; "
                                  "add a line 'utt_id<TAB>speaker' for every item")
            out.append(speaker_map.speakers[u.utt_id])
            continue
        speaker = id_speaker(u.utt_id)
        if speaker is None:
            raise ConfigError(f"{where}: utterance id {u.utt_id!r} does not split into speaker and utterance "
                              "('<spk>-<chapter>-<utt>' digits, '<spk>_<utt>' or '<spk>-<utt>'); give --speaker-map FILE "
                              "(utt_id<TAB>speaker) for same-speaker candidates, or --candidate-pool consecutive")
        out.append(speaker)
    return out


def cra(model, dictionary, renderer: Renderer, utts: Sequence[AlignedUtterance], *, condition: str,
        candidates: int = 10, pool: CandidatePool = "same-speaker", speakers: Sequence[str] | None = None,
        resamples: int = 1000, seed: int = 0, where: str = "") -> CRAResult:
    """Context retrieval accuracy of one condition over candidate sets of up to ``candidates`` items.

    ``pool`` (:func:`.metrics.candidate_sets`, shuffled with ``seed``): ``same-speaker`` sets hold one
    speaker's items (``speakers``, one per item; default :func:`item_speakers`), ``consecutive`` sets
    consecutive items."""
    if pool == "same-speaker" and speakers is None:
        speakers = item_speakers(utts, where=where)
    if speakers is not None and len(speakers) != len(utts):
        raise ValueError(f"{len(speakers)} speakers for {len(utts)} items")
    usable = [(k, p) for k, p in enumerate(split_pair(renderer, u, condition, where=where) for u in utts) if p is not None]
    owner = [speakers[k] if speakers is not None else "" for k, _ in usable]
    sets = candidate_sets(owner, size=candidates, pool=pool, seed=seed)
    if not sets:
        if pool == "same-speaker":
            raise ConfigError(f"{where}: {len(usable)} usable items for {condition} but no speaker has 2 of them: "
                              "same-speaker CRA needs 2 items of one speaker; add items or use --candidate-pool consecutive")
        raise ConfigError(f"{where}: {len(usable)} usable items for {condition}: CRA needs at least 2")
    ctx, cont = [], []
    for members in sets:
        for i in members:
            for j in members:
                ctx.append(indices(dictionary, usable[i][1][0], where=where))
                cont.append(indices(dictionary, usable[j][1][1], where=where))
    flat = continuation_logprobs(model, dictionary, ctx, cont)
    hit_of: dict[int, float] = {}
    start = 0
    for members in sets:
        k = len(members)
        hit_of.update(zip(members, retrieved(flat[start:start + k * k].reshape(k, k)).tolist()))
        start += k * k
    scored = sorted(hit_of)  # item order: results of two models or conditions pair up
    hits = np.array([hit_of[i] for i in scored])
    size_of = {i: len(members) for members in sets for i in members}
    set_sizes: dict[int, int] = {}
    for members in sets:
        set_sizes[len(members)] = set_sizes.get(len(members), 0) + 1
    return CRAResult(
        condition, float(hits.mean()), bootstrap_ci(hits, resamples=resamples, seed=seed),
        chance=float(np.mean([1.0 / size_of[i] for i in scored])), items=len(scored),
        candidates=max(set_sizes), pool=pool, unscored=len(utts) - len(scored),
        set_sizes=dict(sorted(set_sizes.items(), reverse=True)),
        speakers=len({owner[i] for i in scored}) if pool == "same-speaker" else None, hits=hits.tolist(),
        utt_ids=[utts[usable[i][0]].utt_id for i in scored],
        sets=[[utts[usable[i][0]].utt_id for i in members] for members in sets],
    )


def _ppl(text_model, text_task, text_tok: Tokenizer, prompts: Sequence[Sequence[str]],
         conts: Sequence[Sequence[str]]) -> float | None:
    d = text_task.source_dictionary
    ctx = [indices(d, text_tok.encode_words(p), where="external LM") for p in prompts]
    cont = [indices(d, text_tok.encode_words(c), where="external LM") for c in conts]
    n = sum(map(len, cont))
    if n == 0:
        return None
    return math.exp(-continuation_logprobs(text_model, d, ctx, cont).sum() / n)


def pelm(model, task, renderer: Renderer, utts: Sequence[AlignedUtterance], *, condition: str, text_model, text_task,
         max_new: int = 30, top_k: int = 20, temperature: float = 0.8, seed: int = 1, where: str = "") -> PELMResult:
    """PELM of text continuations sampled from prompts of ``condition`` (u2t or t2t)."""
    src, dst = CONDITIONS[condition]
    if dst != "text":
        raise ConfigError(f"PELM scores text continuations: condition {condition} continues in speech")
    d = task.source_dictionary
    prompts, words, refs = [], [], []
    for u in utts:
        cut = len(u.words) // 2
        toks = renderer.segment(u, 0, cut, src, where=where)[1]
        if toks:
            prompts.append(indices(d, prompt_tokens(src, toks, to=dst), where=where))
            words.append(list(u.words[:cut]))
            refs.append(list(u.words[cut:]))
    conts = [decode_text(c) for c in sample_continuations(model, task, prompts, to="text", max_new=max_new,
                                                           min_new=1, top_k=top_k, temperature=temperature, seed=seed)]
    kept = [(p, c) for p, c in zip(words, conts) if c]
    text_tok = renderer.text
    value = _ppl(text_model, text_task, text_tok, [p for p, _ in kept], [c for _, c in kept]) if kept else None
    reference = _ppl(text_model, text_task, text_tok, words, refs)
    sample = f"{' '.join(words[0])} || {' '.join(conts[0])}" if conts else ""
    return PELMResult(condition, value, reference, copy_rate([p for p, _ in kept], [c for _, c in kept]),
                      distinct_n([c for _, c in kept], n=1), distinct_n([c for _, c in kept], n=2), len(prompts),
                      len(prompts) - len(kept), sample)


def renderer_for(data: Path, *, text_model: Path | None = None) -> Renderer:
    unit_model = data / "unit.model"
    return Renderer(units=Tokenizer(unit_model if unit_model.is_file() else None, kind="units"),
                    text=Tokenizer(text_model or data.parent / "text.model", kind="text"))


def data_world(data: Path) -> World | None:
    """The world of the corpus a ``sutlm-data`` folder was made of (``data``: one of its unit folders), or
    None where its metadata or the corpus's ``corpus.json`` is not there (the corpus moved, or is not a
    ``synth-corpus`` folder)."""
    from ..synth.minimal_pairs import corpus_world

    path = data.parent / META_NAME
    if not path.is_file():
        return None
    try:
        corpus = json.loads(path.read_text())["corpus"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: unreadable ({e}); remake the data with 'spokenlm sutlm-data'") from None
    return corpus_world(Path(corpus))


# ----------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="joint LM checkpoint (fairseq-train)")
    parser.add_argument("--data", type=Path, required=True, help="its data folder (units-raw / units-spN of sutlm-data)")
    parser.add_argument("--items", type=Path, required=True, help="held-out utterances: aligned/test.jsonl of sutlm-data")
    parser.add_argument("--text-model", type=Path, default=None, help="text SentencePiece (default: DATA/../text.model)")
    parser.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS),
                        help="CRA conditions (default: all four)")
    parser.add_argument("--candidates", type=int, default=10,
                        help="CRA candidate set size C (default 10); smaller sets where a speaker has fewer items; "
                             "chance = the mean of 1 / set size over the items, printed")
    parser.add_argument("--candidate-pool", choices=list(CANDIDATE_POOLS), default="same-speaker",
                        help="where each CRA candidate set comes from: 'same-speaker' (default) = utterances of one "
                             "speaker (each speaker's items in a seeded shuffle, cut into sets of C; a lone leftover "
                             "item is not scored), which a fair u2u comparison needs: with several speakers in a set, "
                             "an LM can retrieve a continuation by its voice or recording instead of its language; "
                             "'consecutive' = C consecutive items of --items, whoever speaks them")
    parser.add_argument("--speaker-map", type=Path, default=None, metavar="FILE",
                        help="utt_id<TAB>speaker lines giving every item's speaker for --candidate-pool same-speaker "
                             "(default: the utterance id's speaker part, 84-121123-0000 -> 84, slt-a_01234 -> slt-a)")
    parser.add_argument("--max-items", type=int, default=None, help="use at most this many items")
    parser.add_argument("--text-lm", type=Path, default=None, help="external text LM checkpoint: also compute PELM")
    parser.add_argument("--text-lm-data", type=Path, default=None, help="its data folder (default: DATA/../textlm)")
    parser.add_argument("--pelm-prompts", type=int, default=20, help="prompts per PELM condition (default 20)")
    parser.add_argument("--ci-resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--zero-shot", action="store_true",
                        help="also zero-shot cross-modal transfer: a classifier trained on text, tested on units and back")
    parser.add_argument("--zero-shot-train", type=Path, default=None,
                        help="its training utterances (default: train.jsonl beside --items)")
    parser.add_argument("--zero-shot-label", choices=list(LABELS), default=None,
                        help="sentence label, of the corpus's world: pos / lexname (WordNet sentences: part of speech "
                             "or lexicographer file of the synset it exemplifies), tense / number (story sentences: "
                             "present or past verb, singular or plural subject); default tense for a story corpus, "
                             "else pos (the world of the corpus recorded in DATA/../sutlm-data.json, else of the "
                             "items' words)")
    parser.add_argument("--zero-shot-min-count", type=int, default=5, help="drop classes with fewer training items")
    parser.add_argument("--wordnet", type=Path, default=None,
                        help="WordNet 3.0 folder of the pos / lexname labels (default: /usr/share/wordnet)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")


def run(args: argparse.Namespace) -> int:
    if args.candidates < 2:
        raise ConfigError(f"--candidates {args.candidates}: must be >= 2")
    for option, value, least in (("--max-items", args.max_items, 2), ("--ci-resamples", args.ci_resamples, 0),
                                 ("--pelm-prompts", args.pelm_prompts, 1)):
        if value is not None and value < least:
            raise ConfigError(f"{option} {value}: must be >= {least}")
    if args.speaker_map is not None and args.candidate_pool != "same-speaker":
        raise ConfigError(f"--speaker-map {args.speaker_map}: only --candidate-pool same-speaker reads speakers; "
                          "drop one of the two")
    utts = eval_items(read_aligned(args.items), max_items=args.max_items)
    # every item's speaker before any model is loaded: an id without one is refused at once
    speakers = (item_speakers(utts, speaker_map=read_speaker_map(args.speaker_map) if args.speaker_map else None,
                              where=str(args.items)) if args.candidate_pool == "same-speaker" else None)
    renderer = renderer_for(args.data, text_model=args.text_model)
    results: dict = {"cra": [], "pelm": [], "zero_shot": None}
    with torch_threads(1):
        model, task = load_lm(args.checkpoint, data=args.data)
        if args.text_lm is not None:  # loaded before the CRA runs: a bad text LM fails at once
            text_model, text_task = load_lm(args.text_lm, data=args.text_lm_data or args.data.parent / "textlm",
                                            data_option="--text-lm-data")
        for cond in args.conditions:
            r = cra(model, task.source_dictionary, renderer, utts, condition=cond, candidates=args.candidates,
                    pool=args.candidate_pool, speakers=speakers, resamples=args.ci_resamples, where=str(args.items))
            results["cra"].append(asdict(r))
            print(f"CRA {cond}: {pct(r.accuracy, r.ci)} %  ({r.describe()})")
        if args.text_lm is not None:
            for cond in ("u2t", "t2t"):
                p = pelm(model, task, renderer, utts[: args.pelm_prompts], condition=cond, text_model=text_model,
                         text_task=text_task, where=str(args.items))
                results["pelm"].append(asdict(p))
                print(f"PELM {cond}: {p.pelm if p.pelm is None else round(p.pelm, 1)} (true continuations "
                      f"{p.reference_ppl and round(p.reference_ppl, 1)}; copy rate {pct(p.copy_rate)} %, distinct-1/2 "
                      f"{pct(p.distinct_1)} / {pct(p.distinct_2)} %, {p.empty}/{p.prompts} empty)")
        if args.zero_shot:
            train_items = args.zero_shot_train or args.items.parent / "train.jsonl"
            train, test = read_aligned(train_items), read_aligned(args.items)
            words = [u.words for u in (*train, *test)]
            world = data_world(args.data) or guess_world(words)
            label = args.zero_shot_label or default_label(world)
            z = zero_shot(model, task.source_dictionary, renderer, train, test,
                          labels=labels_for(label, world=world, wordnet=args.wordnet, cover=words),
                          label=label, min_count=args.zero_shot_min_count,
                          resamples=args.ci_resamples, where=str(args.items))
            results["zero_shot"] = asdict(z)
            print(f"zero-shot {z.label} ({len(z.classes)} classes, {z.train_items} train / {z.test_items} test "
                  f"sentences; chance {pct(z.chance)} %, majority {pct(z.majority)} %): "
                  + ", ".join(f"{r.name} {pct(r.accuracy, r.ci)} %" for r in z.results))
    if args.json is not None:
        with atomic_write(args.json) as f:
            json.dump(results, f, indent=1)
    return 0
