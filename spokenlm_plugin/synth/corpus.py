"""``spokenlm synth-corpus``: a multi-speaker, phone-aligned synthetic speech corpus.

WordNet example sentences (``--text wordnet``, the default) or the generated story world of
:mod:`.stories` (``--text stories``) are spoken by flite speakers (:mod:`.speakers`) and split into
train / valid / test by speaker *and* by sentence: valid and test speakers and sentences never
occur in train.

``--engine espeak`` makes the held-out corpus instead: the espeak-ng speakers of
:data:`.espeak.HELDOUT_ESPEAK` (never heard in pretraining), 4 fixed train and 2 fixed test speakers;
valid is spoken by the train speakers (its sentences are still held out), since every test voice
must stay unseen until scoring. Layout of ``DIR`` (both engines)::

    audio/<split>/<speaker>/<utt_id>.flac      16 kHz mono; utt_id = <speaker>_<sentence index>
    alignments/<utt_id>.json                   words and phones (ARPAbet-39 + SIL) in seconds
    manifests/<split>.tsv                      fairseq manifests (spokenlm manifest)
    labels/<split>.phn, <split>.phnseq, dict.phn.txt   (spokenlm labels)
    transcripts/<split>.wrd                    words, one line per manifest row
    items/<split>.{triphone,phoneme}.item      ABX items (spokenlm items)
    text_only.txt                              stories only: the joint LM's text-only corpus (sentences of
                                               the story world's ``text`` pool: none is spoken here)
    corpus.json                                metadata (``world``: wordnet or stories); written last

Each split is the shortest prefix of a fixed, seeded sequence of (speaker, sentence) pairs whose
audio reaches its share of ``--hours``. The sequence does not depend on ``--hours`` or ``--jobs``,
so a rerun (after an interrupt, or with more hours) reuses every finished utterance; with fewer
hours, the utterances beyond the new prefixes are deleted. Utterance audio depends only on
(speaker, sentence), not on the seed, the order of synthesis or ``--jobs``. The story world is one
fixed stream whatever the seed (:data:`.stories.WORLD_SEED`): a sentence index names the same sentence
in every story corpus, as it does in every WordNet corpus.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import multiprocessing
import random
import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal, Mapping, Sequence

from ..core.errors import ConfigError
from ..core.io import atomic_write, read_manifest, utt_key
from ..core.phones import SAMPLE_RATE
from ..data.items import ITEM_KINDS, make_items
from ..data.labels import make_labels
from ..data.manifest import build_manifest
from . import stories
from .espeak import HELDOUT_ESPEAK, Espeak, HeldOutSpeaker, heldout_speakers
from .flite import Flite, Synthesis
from .speakers import VOICES, Speaker, speakers_for
from .text import WORLD_DESCRIPTIONS, WORLDS, Sentence, World, load_sentences, pool_sentences, shuffled
from .utterance import completed_num_samples, save_utterance

Split = Literal["train", "valid", "test"]
Engine = Literal["flite", "espeak"]
ENGINES: tuple[Engine, ...] = ("flite", "espeak")
AnySpeaker = Speaker | HeldOutSpeaker
SPLITS: tuple[Split, ...] = ("train", "valid", "test")
#: Speakers held out of train, per split.
HELD_OUT_SPEAKERS: dict[Split, int] = {"test": 2, "valid": 1}
#: Duration assumed for an utterance before any is done (WordNet sentences average about 3 s).
_TYPICAL_SECONDS = 3.0
#: Stems of the files this tool writes (``slt-a_01234``, ``hx-wi-m6_01234``; story sentence indices
#: may have more digits); only such files are ever removed from DIR.
_UTT_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)+_\d{5,}")
#: Sentences of the story world's text-only corpus written beside a story corpus, by default.
TEXT_ONLY_SENTENCES = 20_000
TEXT_ONLY_FILE = "text_only.txt"


@dataclass(frozen=True)
class Job:
    """One utterance to synthesize."""

    utt_id: str
    split: Split
    speaker: AnySpeaker
    sentence: Sentence
    audio_path: Path
    alignment_path: Path


# --------------------------------------------------------------------------- planning


def assign_speakers(speakers: Sequence[Speaker], *, seed: int) -> dict[Split, list[Speaker]]:
    """Hold out 2 test and 1 valid speaker, from different voices when possible.

    A voice gives up a variant only while it keeps another one for train (if any voice can).
    """
    needed = sum(HELD_OUT_SPEAKERS.values()) + 1
    if len(speakers) < needed:
        raise ConfigError(
            f"--voices/--speakers-per-voice: {len(speakers)} speakers, need at least {needed} "
            "(2 test, 1 valid, 1 train); add voices or speakers per voice"
        )
    rng = random.Random(seed)
    by_voice: dict[str, list[Speaker]] = {}
    for s in speakers:
        by_voice.setdefault(s.voice, []).append(s)
    voices = list(by_voice)
    rng.shuffle(voices)
    held_out: list[Speaker] = []
    for slot in range(HELD_OUT_SPEAKERS["test"] + HELD_OUT_SPEAKERS["valid"]):
        order = voices[slot % len(voices) :] + voices[: slot % len(voices)]
        voice = next((v for v in order if len(by_voice[v]) >= 2), None) or next(v for v in order if by_voice[v])
        chosen = rng.choice(by_voice[voice])
        by_voice[voice].remove(chosen)
        held_out.append(chosen)
    n_test = HELD_OUT_SPEAKERS["test"]
    return {
        "train": [s for s in speakers if s not in held_out],
        "valid": held_out[n_test:],
        "test": held_out[:n_test],
    }


def assign_sentences(
    sentences: Sequence[Sentence], *, seed: int, valid_fraction: float, test_fraction: float
) -> dict[Split, list[Sentence]]:
    """Disjoint sentence pools: a seeded shuffle cut into test, valid and train."""
    order = shuffled(list(sentences), seed=seed)
    n_test = max(1, round(len(order) * test_fraction))
    n_valid = max(1, round(len(order) * valid_fraction))
    return {
        "test": order[:n_test],
        "valid": order[n_test : n_test + n_valid],
        "train": order[n_test + n_valid :],
    }


def split_sentences(
    text: World, *, hours: float, seed: int, valid_fraction: float, test_fraction: float
) -> dict[Split, list[Sentence]]:
    """Each split's sentences, in the order they are spoken. WordNet: the ``aligned`` pool shuffled and
    cut (:func:`assign_sentences`). Stories: the ``aligned`` pool of the story world cut by a seeded
    hash, as many sentences as ``hours`` could ever need (:func:`.stories.aligned_splits`); a
    split's list only grows with the hours, so a larger corpus extends a smaller one."""
    if text == "wordnet":
        # The pretraining pool is never read here (see text.sentence_pool).
        sentences = pool_sentences(load_sentences(), "aligned")
        return assign_sentences(sentences, seed=seed, valid_fraction=valid_fraction, test_fraction=test_fraction)
    share = split_shares(valid_fraction, test_fraction)
    seconds: dict[Split, float] = {split: hours * 3600 * share[split] for split in SPLITS}
    chosen = stories.aligned_splits(seconds, seed=seed, valid_fraction=valid_fraction, test_fraction=test_fraction)
    return {split: list(chosen[split]) for split in SPLITS}


def split_shares(valid_fraction: float, test_fraction: float) -> dict[Split, float]:
    """The share of the hours of each split."""
    return {"train": 1 - valid_fraction - test_fraction, "valid": valid_fraction, "test": test_fraction}


def write_text_only(out_dir: Path, n_sentences: int) -> Path:
    """``text_only.txt``: the first ``n_sentences`` of the story world's ``text`` pool, one sentence of
    lower-case words per line (``spokenlm sutlm-data --text-corpus`` reads it)."""
    path = out_dir / TEXT_ONLY_FILE
    with atomic_write(path) as f:
        for sentence in stories.text_only_sentences(n_sentences):
            f.write(" ".join(sentence.words) + "\n")
    return path


def heldout_split(speakers: Sequence[HeldOutSpeaker]) -> dict[Split, list[HeldOutSpeaker]]:
    """The held-out corpus' fixed split: each speaker's own ``split`` (train or test); valid is
    spoken by the train speakers (on valid sentences), so that no test voice is heard before scoring."""
    train = [s for s in speakers if s.split == "train"]
    return {"train": train, "valid": list(train), "test": [s for s in speakers if s.split == "test"]}


def planned_jobs(out_dir: Path, split: Split, speakers: Sequence[AnySpeaker], sentences: Sequence[Sentence]) -> Iterator[Job]:
    """The split's fixed utterance sequence: sentences in pool order, speakers round robin; each pass
    over the pool shifts the speakers by one, so no (speaker, sentence) pair repeats."""
    n_spk, n_sent = len(speakers), len(sentences)
    for k in range(n_spk * n_sent):
        rounds, j = divmod(k, n_sent)
        spk, sentence = speakers[(j + rounds) % n_spk], sentences[j]
        utt_id = f"{spk.id}_{sentence.index:05d}"
        yield Job(
            utt_id=utt_id,
            split=split,
            speaker=spk,
            sentence=sentence,
            audio_path=out_dir / "audio" / split / spk.id / f"{utt_id}.flac",
            alignment_path=out_dir / "alignments" / f"{utt_id}.json",
        )


# --------------------------------------------------------------------------- synthesis

_ENGINE: Flite | Espeak | None = None


def make_engine(engine: Engine, flite_lib_dir: str | None = None) -> Flite | Espeak:
    """The synthesizer (a missing library is a :class:`MissingToolError` with the install hint)."""
    return Flite(flite_lib_dir) if engine == "flite" else Espeak()


def _init_worker(lib_dir: str | None, engine: Engine = "flite") -> None:
    global _ENGINE
    _ENGINE = make_engine(engine, lib_dir)


def _synthesize(job: Job) -> int:
    """Synthesize and save one utterance (in a worker); returns its number of samples."""
    assert _ENGINE is not None, "worker not initialised"
    engine, speaker = _ENGINE, job.speaker
    # The plan pairs flite speakers with flite and espeak-ng speakers with espeak-ng (build_corpus).
    if isinstance(engine, Espeak):
        assert isinstance(speaker, HeldOutSpeaker), speaker
        synthesis: Synthesis = engine.synthesize(job.sentence.text, speaker)
    else:
        assert isinstance(speaker, Speaker), speaker
        synthesis = engine.synthesize(job.sentence.text, speaker)
    save_utterance(
        synthesis,
        audio_path=job.audio_path,
        alignment_path=job.alignment_path,
        utt_id=job.utt_id,
        speaker=job.speaker.id,
        text=job.sentence.text,
    )
    return synthesis.num_samples


class _InlineExecutor(cf.Executor):
    """Runs each job at submission, in this process (``--jobs 1``)."""

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        future: cf.Future = cf.Future()
        future.set_result(fn(*args, **kwargs))
        return future


@dataclass
class _Progress:
    """Audio hours done and synthesis speed, printed at most every few seconds."""

    every_s: float = 5.0
    synthesized_s: float = 0.0
    started: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)

    def report(self, split: str, done_s: float, budget_s: float, n: int, reused: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        speed = self.synthesized_s / max(now - self.started, 1e-9)
        print(
            f"synth-corpus: {split}: {done_s / 3600:.3f}/{budget_s / 3600:.3f} h of audio, {n} utterances "
            f"({reused} from an earlier run); {self.synthesized_s / 3600:.3f} h synthesized at {speed:.1f}x real time",
            file=sys.stderr,
            flush=True,
        )


def _finished(job: Job) -> int | None:
    """The number of samples of the job's utterance if it is already written, for this very text: an
    utterance id names a sentence index, which means another sentence in the other world (or after a
    change of the story grammar), and such a file is redone."""
    num_samples = completed_num_samples(job.audio_path, job.alignment_path)
    if num_samples is None:
        return None
    try:
        text = json.loads(job.alignment_path.read_text())["text"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None
    return num_samples if text == job.sentence.text else None


def synthesize_split(
    jobs: Iterator[Job], *, split: Split, budget_s: float, executor: cf.Executor, window: int, progress: _Progress
) -> list[tuple[Job, int]]:
    """The shortest prefix of ``jobs`` reaching ``budget_s`` seconds, synthesizing what is missing.

    Jobs run ``window`` at a time in order; results are consumed in order, so the prefix (and the
    corpus) does not depend on the number of processes.
    """
    selected: list[tuple[Job, int]] = []
    pending: deque[tuple[Job, cf.Future | int]] = deque()
    done_s, reused = 0.0, 0
    exhausted = False
    while done_s < budget_s:
        # Queue jobs while the queue is short and, by the mean duration so far, still needed:
        # running far past the budget would synthesize utterances that are then thrown away.
        mean_s = done_s / len(selected) if selected else _TYPICAL_SECONDS
        while not exhausted and len(pending) < window and (not pending or done_s + len(pending) * mean_s < budget_s):
            job = next(jobs, None)
            if job is None:
                exhausted = True
                break
            existing = _finished(job)
            pending.append((job, existing if existing is not None else executor.submit(_synthesize, job)))
        if not pending:
            raise ConfigError(
                f"--hours: the {split} split ran out of (speaker, sentence) pairs after "
                f"{done_s / 3600:.2f} h; ask for fewer hours or more voices / speakers per voice"
            )
        job, result = pending.popleft()
        if isinstance(result, int):
            num_samples = result
            reused += 1
        else:
            num_samples = result.result()
            progress.synthesized_s += num_samples / SAMPLE_RATE
        selected.append((job, num_samples))
        done_s += num_samples / SAMPLE_RATE
        progress.report(split, done_s, budget_s, len(selected), reused)
    for _, result in pending:
        if isinstance(result, cf.Future):
            result.cancel()
    # Jobs already running finish; their files lie beyond the prefix and are removed by cleanup.
    cf.wait([r for _, r in pending if isinstance(r, cf.Future)])
    progress.report(split, done_s, budget_s, len(selected), reused, force=True)
    return selected


def _is_temporary(path: Path) -> bool:
    # io.atomic_write / atomic_path names: ".<name>.<random or pid>.tmp[<suffix>]".
    return path.name.startswith(".") and ".tmp" in path.name


def remove_stale(out_dir: Path, keep: dict[str, Split]) -> int:
    """Delete utterances of this tool that are not in the corpus (beyond a split's prefix, in another
    split, from an earlier larger run) and temporary files of an interrupted run; returns how many."""
    removed = 0
    for path in (out_dir / "audio").glob("*/*/*"):
        stem = utt_key(path)
        if _is_temporary(path):
            path.unlink()
        elif path.suffix == ".flac" and _UTT_ID.fullmatch(stem) and keep.get(stem) != path.parts[-3]:
            path.unlink()
            removed += 1
    for path in (out_dir / "alignments").glob("*"):
        stem = utt_key(path)
        if _is_temporary(path):
            path.unlink()
        elif path.suffix == ".json" and _UTT_ID.fullmatch(stem) and stem not in keep:
            path.unlink()
            removed += 1
    for folder in (out_dir / "audio").glob("*/*"):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


# --------------------------------------------------------------------------- derived files


def manifest_and_labels(audio_dir: Path, manifest: Path, *, alignments: Path, labels_dir: Path) -> None:
    """``manifest`` of the ``.flac`` files under ``audio_dir``, and its frame labels and phone
    sequences in ``labels_dir`` (as ``spokenlm manifest`` + ``spokenlm labels --format json --sequence``)."""
    build_manifest(audio_dir, manifest, ext="flac")
    make_labels(manifest, alignments, labels_dir, fmt="json", sequence=True)


def write_transcripts(manifest: Path, out: Path, alignments: Path) -> None:
    """``out``: the words of each manifest row's alignment, in manifest order."""
    rows = read_manifest(manifest).rows
    with atomic_write(out) as f:
        for row in rows:
            record = json.loads((alignments / f"{row.utt_id}.json").read_text())
            f.write(" ".join(w for _, _, w in record["words"]) + "\n")


def prepare_split(out_dir: Path, split: Split) -> None:
    """Manifest, frame labels, phone sequences, transcripts and ABX items of one split."""
    manifest = out_dir / "manifests" / f"{split}.tsv"
    alignments = out_dir / "alignments"
    manifest_and_labels(out_dir / "audio" / split, manifest, alignments=alignments, labels_dir=out_dir / "labels")
    write_transcripts(manifest, out_dir / "transcripts" / f"{split}.wrd", alignments)
    for kind in ITEM_KINDS:
        make_items(manifest, alignments, out_dir / "items" / f"{split}.{kind}.item", fmt="json", kind=kind)


# --------------------------------------------------------------------------- the command


def build_corpus(
    out_dir: str | Path,
    *,
    hours: float,
    engine: Engine = "flite",
    voices: Sequence[str] | None = None,
    speakers_per_voice: int | None = None,
    seed: int = 0,
    jobs: int = 2,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    flite_lib_dir: str | None = None,
    text: World = "wordnet",
    text_only_sentences: int | None = None,
) -> dict:
    """Synthesize (or complete) the corpus in ``out_dir``; returns the metadata written to corpus.json.

    ``engine="flite"``: ``voices`` are flite voices (default all), ``speakers_per_voice`` variants
    each (default 4), the speaker split drawn with ``seed``. ``engine="espeak"``: ``voices`` are
    speaker ids of :data:`.espeak.HELDOUT_ESPEAK` (default all six), with their fixed split.
    ``text``: the sentences' world; with ``stories``, ``text_only_sentences`` (default
    :data:`TEXT_ONLY_SENTENCES`) sentences of its text-only pool go to ``text_only.txt``.
    """
    n_text_only = _check_options(hours=hours, jobs=jobs, valid_fraction=valid_fraction, test_fraction=test_fraction,
                                 engine=engine, text=text, text_only_sentences=text_only_sentences)
    out_dir = Path(out_dir)
    split_speakers, voices, speakers_per_voice = _split_speakers(
        engine=engine, voices=voices, speakers_per_voice=speakers_per_voice, seed=seed, flite_lib_dir=flite_lib_dir
    )
    make_engine(engine, flite_lib_dir)  # fail now, with the install hint, rather than in a worker
    sentences_of = split_sentences(
        text, hours=hours, seed=seed, valid_fraction=valid_fraction, test_fraction=test_fraction
    )
    share = split_shares(valid_fraction, test_fraction)

    progress = _Progress()
    selected = _synthesize_splits(
        out_dir, split_speakers=split_speakers, sentences_of=sentences_of,
        budget_s={split: hours * 3600 * share[split] for split in SPLITS}, engine=engine, jobs=jobs,
        flite_lib_dir=flite_lib_dir, progress=progress,
    )
    keep = {job.utt_id: split for split, chosen in selected.items() for job, _ in chosen}
    removed = remove_stale(out_dir, keep)
    if removed:
        print(f"synth-corpus: removed {removed} utterance files that are not part of this corpus", file=sys.stderr)

    # train last: labels/dict.phn.txt then holds the training counts.
    for split in ("valid", "test", "train"):
        prepare_split(out_dir, split)
    text_only: dict | None = None
    if text == "stories":
        write_text_only(out_dir, n_text_only)
        text_only = {"file": TEXT_ONLY_FILE, "sentences": n_text_only, "pool": "text"}
    elif (out_dir / TEXT_ONLY_FILE).is_file():
        (out_dir / TEXT_ONLY_FILE).unlink()  # left by a story corpus made here before

    metadata = _metadata(
        engine=engine, text=text, text_only=text_only, seed=seed, hours=hours, voices=voices,
        speakers_per_voice=speakers_per_voice, split_speakers=split_speakers, selected=selected, progress=progress,
    )
    with atomic_write(out_dir / "corpus.json") as f:
        json.dump(metadata, f, indent=2)
        f.write("\n")
    return metadata


def _check_options(*, hours: float, jobs: int, valid_fraction: float, test_fraction: float, engine: Engine,
                   text: World, text_only_sentences: int | None) -> int:
    """Refuse bad options of :func:`build_corpus` (one line each); returns the text-only sentences to write."""
    if not (math.isfinite(hours) and hours > 0):
        raise ConfigError(f"--hours: {hours} is not a positive number of hours")
    if jobs < 1:
        raise ConfigError(f"--jobs: {jobs} must be at least 1")
    for name, value in (("--valid-fraction", valid_fraction), ("--test-fraction", test_fraction)):
        if not 0 < value < 0.5:
            raise ConfigError(f"{name}: {value} must be between 0 and 0.5")
    if engine not in ENGINES:
        raise ConfigError(f"--engine: {engine!r} is not one of {', '.join(ENGINES)}")
    if text not in WORLDS:
        raise ConfigError(f"--text: {text!r} is not one of {', '.join(WORLDS)}")
    if text_only_sentences is not None and text != "stories":
        raise ConfigError("--text-only-sentences: only with --text stories (the WordNet text-only corpus is the "
                          "sentences the corpus does not speak, chosen by 'spokenlm sutlm-data')")
    n_text_only = TEXT_ONLY_SENTENCES if text_only_sentences is None else text_only_sentences
    if n_text_only < 1:
        raise ConfigError(f"--text-only-sentences: {n_text_only} must be at least 1")
    return n_text_only


def _split_speakers(
    *, engine: Engine, voices: Sequence[str] | None, speakers_per_voice: int | None, seed: int,
    flite_lib_dir: str | None,
) -> tuple[Mapping[Split, Sequence[AnySpeaker]], list[str], int | None]:
    """Each split's speakers, and the voices and speakers per voice they come from (defaults filled in)."""
    split_speakers: Mapping[Split, Sequence[AnySpeaker]]
    if engine == "flite":
        voices = list(VOICES) if voices is None else list(voices)
        espeak_ids = [v for v in voices if v in {s.id for s in HELDOUT_ESPEAK}]
        if espeak_ids:
            raise ConfigError(f"--voices: {' '.join(espeak_ids)}: espeak-ng speaker(s); pass --engine espeak")
        speakers_per_voice = 4 if speakers_per_voice is None else speakers_per_voice
        split_speakers = assign_speakers(speakers_for(voices, per_voice=speakers_per_voice), seed=seed)
    else:
        if speakers_per_voice is not None:
            raise ConfigError("--speakers-per-voice: flite only; an espeak-ng speaker is one voice (choose them with --voices)")
        if flite_lib_dir is not None:
            raise ConfigError("--flite-lib-dir: flite only; espeak-ng reads $SPOKENLM_ESPEAK_DATA")
        voices = [s.id for s in HELDOUT_ESPEAK] if voices is None else list(voices)
        split_speakers = heldout_split(heldout_speakers(voices))
    return split_speakers, voices, speakers_per_voice


def _synthesize_splits(
    out_dir: Path, *, split_speakers: Mapping[Split, Sequence[AnySpeaker]], sentences_of: Mapping[Split, Sequence[Sentence]],
    budget_s: Mapping[Split, float], engine: Engine, jobs: int, flite_lib_dir: str | None, progress: _Progress,
) -> dict[Split, list[tuple[Job, int]]]:
    """Each split's utterances (:func:`synthesize_split`), synthesized in ``jobs`` processes."""
    selected: dict[Split, list[tuple[Job, int]]] = {}
    if jobs == 1:
        _init_worker(flite_lib_dir, engine)
        executor: cf.Executor = _InlineExecutor()
    else:
        # fork: workers start at once (spawn would re-import torch and fairseq, ~8 s each); each
        # loads its own flite voices, since flite keeps per-process state (espeak-ng is loaded
        # afresh for each utterance, and never in this process).
        executor = cf.ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("fork"), initializer=_init_worker,
            initargs=(flite_lib_dir, engine),
        )
    with executor:
        for split in SPLITS:
            selected[split] = synthesize_split(
                planned_jobs(out_dir, split, split_speakers[split], sentences_of[split]),
                split=split,
                budget_s=budget_s[split],
                executor=executor,
                window=2 * jobs,
                progress=progress,
            )
    return selected


def _metadata(
    *, engine: Engine, text: World, text_only: dict | None, seed: int, hours: float, voices: Sequence[str],
    speakers_per_voice: int | None, split_speakers: Mapping[Split, Sequence[AnySpeaker]],
    selected: Mapping[Split, Sequence[tuple[Job, int]]], progress: _Progress,
) -> dict:
    """The contents of corpus.json."""
    speakers_meta: dict[str, dict] = {}
    for split in SPLITS:  # a speaker's split is the first it speaks in (espeak: train speakers also speak valid)
        for s in split_speakers[split]:
            speakers_meta.setdefault(s.id, {**s.as_dict(), "split": split})
    return {
        "engine": "flite" if engine == "flite" else "espeak-ng",
        "world": text,
        "text": WORLD_DESCRIPTIONS[text],
        **({"world_seed": stories.WORLD_SEED, "text_only": text_only} if text == "stories" else {}),
        "seed": seed,
        "hours_requested": hours,
        "voices": list(voices),
        "speakers_per_voice": speakers_per_voice if engine == "flite" else 1,
        "sample_rate": SAMPLE_RATE,
        "speakers": speakers_meta,
        "splits": {
            split: {
                "speakers": [s.id for s in split_speakers[split]],
                "utterances": len(selected[split]),
                "sentences": len({job.sentence.index for job, _ in selected[split]}),
                "seconds": round(sum(n for _, n in selected[split]) / SAMPLE_RATE, 3),
                "hours": round(sum(n for _, n in selected[split]) / SAMPLE_RATE / 3600, 4),
            }
            for split in SPLITS
        },
        "synthesis_seconds": round(time.monotonic() - progress.started, 1),
    }


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", required=True, metavar="DIR",
        help="corpus folder; rerun to resume (finished utterances are kept; fewer --hours trims the corpus)",
    )
    parser.add_argument("--hours", type=float, required=True, metavar="H", help="total hours of audio over train + valid + test")
    parser.add_argument(
        "--engine", choices=ENGINES, default="flite",
        help="synthesizer: flite (the corpus of the demo; default) or espeak (the held-out corpus: "
        "espeak-ng speakers never heard in pretraining, 4 train + 2 test speakers, fixed)",
    )
    parser.add_argument(
        "--voices", nargs="+", default=None, choices=[*VOICES, *(s.id for s in HELDOUT_ESPEAK)], metavar="VOICE",
        help=f"flite: voices, from {' '.join(VOICES)} (default: all); espeak: speakers, from "
        f"{' '.join(s.id for s in HELDOUT_ESPEAK)} (default: all)",
    )
    parser.add_argument(
        "--speakers-per-voice", type=int, default=None, metavar="N",
        help="flite only: speaker variants per voice (F0, tempo, vocal-tract warp; default: 4, at most 4: "
             "later variants speak only the pretraining corpus)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="S",
        help="seed of the sentence split and order, and of the flite speaker split (default: 0)",
    )
    parser.add_argument("--jobs", type=int, default=2, metavar="N", help="synthesis processes (default: 2)")
    parser.add_argument(
        "--valid-fraction", type=float, default=0.1, metavar="F", help="share of hours and sentences for valid (default: 0.1)"
    )
    parser.add_argument(
        "--test-fraction", type=float, default=0.1, metavar="F", help="share of hours and sentences for test (default: 0.1)"
    )
    parser.add_argument(
        "--flite-lib-dir", metavar="DIR", help="folder holding libflite.so.1 and the voices (default: $SPOKENLM_FLITE_LIBDIR, else the system's)"
    )
    parser.add_argument(
        "--text", choices=WORLDS, default="wordnet",
        help="what is spoken: wordnet (WordNet 3.0 example sentences, a broad vocabulary; default) or stories "
        "(generated short stories over a few hundred words: every frequent word occurs many times an hour)",
    )
    parser.add_argument(
        "--text-only-sentences", type=int, default=None, metavar="N",
        help=f"stories only: sentences of the joint LM's text-only corpus written to DIR/{TEXT_ONLY_FILE} "
        f"(none of them spoken in the corpus; default: {TEXT_ONLY_SENTENCES})",
    )


def run(args: argparse.Namespace) -> int:
    meta = build_corpus(
        args.out,
        hours=args.hours,
        engine=args.engine,
        voices=args.voices,
        speakers_per_voice=args.speakers_per_voice,
        seed=args.seed,
        jobs=args.jobs,
        valid_fraction=args.valid_fraction,
        test_fraction=args.test_fraction,
        flite_lib_dir=args.flite_lib_dir,
        text=args.text,
        text_only_sentences=args.text_only_sentences,
    )
    parts = ", ".join(
        f"{split} {s['hours']:.3f} h ({s['utterances']} utterances, {len(s['speakers'])} speakers)"
        for split, s in meta["splits"].items()
    )
    print(f"wrote {args.out}: {parts}")
    return 0
