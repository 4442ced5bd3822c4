"""``spokenlm synth-pretrain-corpus``: unlabelled speech for pretraining the small HuBERT.

Disjoint from everything the demo evaluates on, by construction:

- sentences: only the ``pretrain`` pool of :func:`.text.sentence_pool` (the aligned corpus and the
  minimal pairs read only the ``aligned`` pool); with ``--text stories``, the ``pretrain`` pool of the
  story world (:func:`.stories.story_pool`, the same rule);
- speakers: flite variants reserved for pretraining (:func:`.speakers.pretrain_speakers`: the later
  variants of slt / rms / awb and the kal16 diphone voice) and espeak-ng voices (:data:`ESPEAK`),
  none of which may speak the aligned corpus or the pairs.

Layout of ``DIR``: ``audio/<split>/<speaker>/<utt_id>.flac`` (16 kHz mono), ``manifests/{train,
valid}.tsv``, ``pretrain_corpus.json`` (speakers, sentence indices; written last). Each split is the
shortest prefix of a fixed sequence of (speaker, sentence) pairs reaching its share of ``--hours``;
finished files are reused on a rerun, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import io
import json
import math
import multiprocessing
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
import soundfile as sf

from ..core.errors import ConfigError, MissingToolError
from ..core.io import ManifestRow, atomic_path, atomic_write, write_manifest
from ..core.phones import SAMPLE_RATE
from .espeak import EspeakSpeaker
from .flite import Flite
from . import stories
from .speakers import Speaker, pretrain_speakers
from .text import WORLD_DESCRIPTIONS, WORLDS, Sentence, World, load_sentences, pool_sentences, shuffled

Split = Literal["train", "valid"]


#: espeak-ng speakers of the pretraining corpus: several accents, male and female variants.
ESPEAK: tuple[EspeakSpeaker, ...] = (
    EspeakSpeaker("esp-us-m1", "en-us+m1", 170, 45),
    EspeakSpeaker("esp-us-f2", "en-us+f2", 160, 60),
    EspeakSpeaker("esp-us-m3", "en-us+m3", 150, 35),
    EspeakSpeaker("esp-us-f4", "en-us+f4", 175, 55),
    EspeakSpeaker("esp-gb-m2", "en-gb+m2", 160, 40),
    EspeakSpeaker("esp-gb-f3", "en-gb+f3", 165, 65),
    EspeakSpeaker("esp-sc-m4", "en-gb-scotland+m4", 155, 45),
    EspeakSpeaker("esp-rp-f1", "en-gb-x-rp+f1", 170, 58),
)
AnySpeaker = Speaker | EspeakSpeaker


@dataclass(frozen=True)
class PretrainJob:
    utt_id: str
    split: Split
    speaker: AnySpeaker
    sentence: Sentence
    audio_path: Path


_FLITE: Flite | None = None


def _init_worker() -> None:
    global _FLITE
    _FLITE = Flite()


def espeak(text: str, speaker: EspeakSpeaker) -> np.ndarray:
    """16 kHz int16 samples of ``text`` spoken by espeak-ng (its 22.05 kHz output resampled)."""
    cmd = ["espeak-ng", "-v", speaker.voice, "-s", str(speaker.rate), "-p", str(speaker.pitch), "--stdout", text]
    done = subprocess.run(cmd, capture_output=True, check=False)
    if done.returncode != 0 or not done.stdout:
        raise MissingToolError(f"espeak-ng {speaker.voice}: failed on {text!r}: {done.stderr.decode(errors='replace').strip()}")
    wav, sr = sf.read(io.BytesIO(done.stdout), dtype="float32")
    if sr != SAMPLE_RATE:
        from scipy.signal import resample_poly  # scipy.signal takes ~1 s to import: only when used

        g = math.gcd(SAMPLE_RATE, sr)
        wav = resample_poly(wav, SAMPLE_RATE // g, sr // g)
    return np.clip(np.round(wav * 32768), -32768, 32767).astype(np.int16)


def _synthesize(job: PretrainJob) -> int:
    if isinstance(job.speaker, EspeakSpeaker):
        samples = espeak(job.sentence.text, job.speaker)
    else:
        assert _FLITE is not None, "worker not initialised"
        samples = _FLITE.synthesize(job.sentence.text, job.speaker).samples
    with atomic_path(job.audio_path) as tmp:
        sf.write(tmp, samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return len(samples)


def planned(out_dir: Path, split: Split, speakers: Sequence[AnySpeaker], sentences: Sequence[Sentence]) -> Iterator[PretrainJob]:
    """Sentences in pool order, speakers round robin, shifted by one each pass (no pair repeats)."""
    n_spk, n_sent = len(speakers), len(sentences)
    for k in range(n_spk * n_sent):
        rounds, j = divmod(k, n_sent)
        spk, sentence = speakers[(j + rounds) % n_spk], sentences[j]
        utt_id = f"{spk.id}_{sentence.index:05d}"
        yield PretrainJob(utt_id, split, spk, sentence, out_dir / "audio" / split / spk.id / f"{utt_id}.flac")


def _existing_samples(path: Path) -> int | None:
    if not path.is_file():
        return None
    try:
        return sf.info(str(path)).frames
    except sf.LibsndfileError:
        return None  # unreadable: redo it


def _sentences(
    text: World, *, hours: float, valid_fraction: float, seed: int
) -> dict[Split, list[Sentence]]:
    """Each split's sentences of the ``pretrain`` pool: WordNet's shuffled and cut; the story world's
    cut by a seeded hash, as many as ``hours`` could need (a prefix-stable stream, as in synth-corpus)."""
    if text == "wordnet":
        pool = shuffled(pool_sentences(load_sentences(), "pretrain"), seed=seed)
        n_valid = max(1, round(len(pool) * valid_fraction))
        return {"valid": pool[:n_valid], "train": pool[n_valid:]}
    counts = {
        "valid": stories.sentences_for(hours * 3600 * valid_fraction),
        "train": stories.sentences_for(hours * 3600 * (1 - valid_fraction)),
    }
    chosen = stories.pool_splits("pretrain", counts, seed=seed, fractions=(("valid", valid_fraction), ("train", 1.0)))
    return {"valid": list(chosen["valid"]), "train": list(chosen["train"])}


def _check_world(out_dir: Path, text: World) -> None:
    """A folder holding the other world's corpus would reuse its audio: utterance ids name sentence indices."""
    path = out_dir / "pretrain_corpus.json"
    if not path.is_file():
        return
    try:
        world = json.loads(path.read_text()).get("world", "wordnet")
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return  # unreadable: it is rewritten at the end
    if world != text:
        raise ConfigError(f"{path}: this folder holds a {world} pretraining corpus; give --text {text} another --out")


def build_pretrain_corpus(
    out_dir: str | Path, *, hours: float, valid_fraction: float = 0.05, seed: int = 0, jobs: int = 2,
    espeak_voices: bool = True, text: World = "wordnet",
) -> dict:
    """Synthesize (or complete) the pretraining corpus; returns the metadata of pretrain_corpus.json.
    ``text``: the world whose ``pretrain`` pool is spoken."""
    if not (math.isfinite(hours) and hours > 0):
        raise ConfigError(f"--hours: {hours} is not a positive number of hours")
    if not 0 < valid_fraction < 0.5:
        raise ConfigError(f"--valid-fraction: {valid_fraction} must be between 0 and 0.5")
    if jobs < 1:
        raise ConfigError(f"--jobs: {jobs} must be at least 1")
    if text not in WORLDS:
        raise ConfigError(f"--text: {text!r} is not one of {', '.join(WORLDS)}")
    _check_world(Path(out_dir), text)
    if espeak_voices and shutil.which("espeak-ng") is None:
        raise MissingToolError("espeak-ng: not found; install it with 'sudo apt-get install espeak-ng' (or pass --no-espeak)")
    Flite()  # fail now, with the install hint, rather than in a worker
    out_dir = Path(out_dir)
    speakers: list[AnySpeaker] = [*pretrain_speakers(), *(ESPEAK if espeak_voices else ())]
    split_sentences = _sentences(text, hours=hours, valid_fraction=valid_fraction, seed=seed)
    share: dict[Split, float] = {"train": 1 - valid_fraction, "valid": valid_fraction}
    started = time.monotonic()
    meta_splits: dict[str, dict] = {}
    ctx = multiprocessing.get_context("fork")
    with cf.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker) as pool_exec:
        for split in ("train", "valid"):
            budget = hours * 3600 * share[split] * SAMPLE_RATE
            rows: list[ManifestRow] = []
            total = 0
            window: list[tuple[PretrainJob, cf.Future | int]] = []
            sequence = planned(out_dir, split, speakers, split_sentences[split])
            while total < budget:
                while len(window) < 4 * jobs:
                    job = next(sequence, None)
                    if job is None:
                        break
                    n = _existing_samples(job.audio_path)
                    window.append((job, n if n is not None else pool_exec.submit(_synthesize, job)))
                if not window:
                    break
                job, pending = window.pop(0)
                n = pending if isinstance(pending, int) else pending.result()
                rows.append(ManifestRow(str(job.audio_path.relative_to(out_dir)), n))
                total += n
                if len(rows) % 200 == 0:
                    print(f"synth-pretrain-corpus: {split}: {total / SAMPLE_RATE / 3600:.2f} h", file=sys.stderr, flush=True)
            for _, pending in window:
                if not isinstance(pending, int):
                    pending.cancel()
            write_manifest(out_dir / "manifests" / f"{split}.tsv", out_dir, rows)
            used = [r.relpath for r in rows]
            meta_splits[split] = {
                "utterances": len(rows),
                "hours": round(total / SAMPLE_RATE / 3600, 4),
                "speakers": sorted({Path(p).parent.name for p in used}),
                "sentence_indices": sorted({int(Path(p).stem.rsplit("_", 1)[1]) for p in used}),
            }
    metadata = {
        "kind": "pretraining corpus (unlabelled)",
        "world": text,
        "text": f"{WORLD_DESCRIPTIONS[text]}, pretrain pool",
        "seed": seed,
        "hours_requested": hours,
        "sample_rate": SAMPLE_RATE,
        "speakers": {s.id: s.as_dict() for s in speakers},
        "splits": meta_splits,
        "synthesis_seconds": round(time.monotonic() - started, 1),
    }
    with atomic_write(out_dir / "pretrain_corpus.json") as f:
        json.dump(metadata, f, indent=1)
    return metadata


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="corpus folder; rerun to resume")
    parser.add_argument("--hours", type=float, required=True, metavar="H", help="hours of audio (train + valid)")
    parser.add_argument("--valid-fraction", type=float, default=0.05, metavar="F", help="share for valid (default: 0.05)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the sentence order (default: 0)")
    parser.add_argument("--jobs", type=int, default=2, metavar="N", help="synthesis processes (default: 2)")
    parser.add_argument("--no-espeak", action="store_true", help="flite speakers only")
    parser.add_argument(
        "--text", choices=WORLDS, default="wordnet",
        help="what is spoken: the pretraining pool of wordnet (default) or of the stories world",
    )


def run(args: argparse.Namespace) -> int:
    meta = build_pretrain_corpus(
        args.out, hours=args.hours, valid_fraction=args.valid_fraction, seed=args.seed, jobs=args.jobs,
        espeak_voices=not args.no_espeak, text=args.text,
    )
    parts = ", ".join(f"{k} {v['hours']:.2f} h ({v['utterances']} utterances)" for k, v in meta["splits"].items())
    print(f"wrote {args.out}: {parts}; {len(meta['speakers'])} speakers")
    return 0
