"""Continuing a prompt of either modality into either modality, with fairseq's own sampler.

The prompt is rendered as joint tokens and followed by the marker of the wanted modality
(``[SPEECH] u ... [TEXT]`` asks for text after speech); fairseq's ``SequenceGenerator``
(``task.build_generator``, sampling top-k) continues it in-process, the prompt forced as the prefix
(the ``language_modeling`` task's ``inference_step``, as ``fairseq-generate`` does). The
continuation is cut at the first token of the other modality or marker: a switch is the end of
the wanted continuation. Units out are written as ``.km``.

``spokenlm sutlm-generate --checkpoint LM.pt --data DATA --prompts P.txt --to text|speech --out X``
reads one prompt per line, ``speech <unit> <unit> ...`` (deduplicated units) or ``text <word> ...``,
and writes one continuation per line (words, or units for ``--to speech``). With ``--vocoder
VOCODER.pt --wav-dir DIR`` (``--to speech``) each unit continuation is also voiced by a unit vocoder
trained with ``--duration-predictor`` on the same units (``vocoder-synth``'s library,
``durations=True``: the continuation is deduplicated units): ``DIR/<prompt line>.wav``, the prompt's
units first for a speech prompt; an empty continuation gets no wav. The vocoder and every prompt are
checked before anything is sampled or written.
"""

from __future__ import annotations

import argparse
from argparse import Namespace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..core.errors import ConfigError, FeatureError
from ..core.io import atomic_write, read_lines
from ..core.runtime import torch_threads
from .score import indices, lm_units, load_lm
from .sequences import render
from .tokens import MARKER_OF, MARKERS, Modality, Tokenizer, decode_text, decode_units, modality_of

if TYPE_CHECKING:
    from fairseq.data import Dictionary

    from ..vocoder.synth import Vocoder


def check_sampling(*, temperature: float, max_new: int, min_new: int) -> None:
    """Refuse sampling options fairseq's generator would fail on or silently bend."""
    if not temperature > 0:
        raise ConfigError(f"--temperature {temperature}: must be > 0")
    if max_new < 1 or not 0 <= min_new <= max_new:
        raise ConfigError(f"--min-new {min_new} / --max-new {max_new}: need 0 <= min-new <= max-new and max-new >= 1")


def sample_continuations(
    model, task, prompts: Sequence[Sequence[int]], *, to: Modality, temperature: float = 0.8, top_k: int = 20,
    max_new: int = 40, min_new: int = 1, seed: int = 1,
) -> list[list[str]]:
    """Joint tokens continuing each prompt (dictionary indices, the target marker already appended)."""
    # Imported here so that `spokenlm sutlm-generate --help` does not wait for torch; no @no_grad
    # needed either: fairseq's inference_step generates under torch.no_grad().
    import torch

    check_sampling(temperature=temperature, max_new=max_new, min_new=min_new)
    d = task.source_dictionary
    torch.manual_seed(seed)
    out: list[list[str]] = [[] for _ in prompts]
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    device = next(model.parameters()).device
    for length, which in sorted(by_len.items()):
        gen = task.build_generator([model], Namespace(
            sampling=True, sampling_topk=min(top_k, len(d)), sampling_topp=-1.0, temperature=temperature, beam=1,
            max_len_a=0, max_len_b=length + max_new, min_len=length + min_new, unkpen=10000.0))
        src = torch.tensor([list(prompts[i]) for i in which], dtype=torch.long, device=device)
        sample = {"net_input": {"src_tokens": src, "src_lengths": torch.full((len(which),), length, device=device)}}
        hyps = task.inference_step(gen, [model], sample, prefix_tokens=src)
        for i, h in zip(which, hyps):
            toks = h[0]["tokens"].tolist()[length:]
            words = []
            for t in toks:
                sym = d[t]
                if t == d.eos() or modality_of(sym) != to:
                    break
                words.append(sym)
            out[i] = words
    return out


def prompt_tokens(modality: Modality, tokens: Sequence[str], *, to: Modality) -> list[str]:
    """A prompt's joint tokens, followed by the marker of ``to`` when it switches modality."""
    return render([(modality, list(tokens))]) + ([MARKER_OF[to]] if to != modality else [])


def parse_prompt(line: str, *, where: str) -> tuple[Modality, list[str]]:
    head, _, rest = line.partition(" ")
    if head not in MARKER_OF or not rest.split():
        raise FeatureError(f"{where}: expected 'speech <unit> ...' or 'text <word> ...', got {line!r}")
    return head, rest.split()  # type: ignore[return-value]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="joint LM checkpoint (fairseq-train)")
    parser.add_argument("--data", type=Path, required=True, help="its data folder (dict.txt, unit.model if any)")
    parser.add_argument("--text-model", type=Path, default=None, help="text SentencePiece (default: DATA/../text.model)")
    parser.add_argument("--prompts", type=Path, required=True, help="'speech <units>' or 'text <words>' per line")
    parser.add_argument("--to", choices=["speech", "text"], required=True, help="modality of the continuations")
    parser.add_argument("--out", type=Path, required=True, help="one continuation per line (.km for --to speech)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    parser.add_argument("--top-k", type=int, default=20, help="sample among the k most likely tokens (default 20; 0 or -1: all)")
    parser.add_argument("--max-new", type=int, default=40, help="at most this many new tokens (default 40)")
    parser.add_argument("--min-new", type=int, default=1, help="no end of sentence before this many (default 1)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--vocoder", type=Path, default=None,
                        help="--to speech: voice the continuations with this unit vocoder (vocoder.pt of "
                             "'spokenlm vocoder-train --duration-predictor' on the same units)")
    parser.add_argument("--vocoder-config", type=Path, default=None, help="its config.json (default: beside it)")
    parser.add_argument("--wav-dir", type=Path, default=None,
                        help="with --vocoder: <prompt line>.wav per continuation (speech prompts: prompt units first)")


def load_vocoder(path: Path, config: Path | None, dictionary: "Dictionary | None" = None) -> "Vocoder":
    """The unit vocoder of ``--vocoder``, checked before anything is generated or written: it has a
    duration predictor (continuations are deduplicated units) and embeds every unit of the LM's
    ``dictionary`` (not checked without one)."""
    from ..vocoder.synth import Vocoder

    vocoder = Vocoder.load(path, config or path.parent / "config.json")
    if not vocoder.predicts_durations:
        raise ConfigError(f"{path}: no duration predictor; continuations are deduplicated units: train the "
                          "vocoder with 'spokenlm vocoder-train --duration-predictor'")
    k = 1 + max(lm_units(dictionary), default=-1) if dictionary is not None else 0
    if k > vocoder.cfg.num_embeddings:
        raise ConfigError(f"{path}: a vocoder of {vocoder.cfg.num_embeddings} units, but the LM's dictionary holds "
                          f"units 0..{k - 1}; give a vocoder trained on the LM's units (vocoder-train --num-units {k})")
    return vocoder


def voice(vocoder: "Vocoder", rows: Sequence[tuple[list[int], list[int]]], out: Path) -> int:
    """Write ``out/<line>.wav`` for each ``(prompt units, continuation units)`` with a continuation;
    return how many were written."""
    from ..vocoder.synth import write_wav

    written = 0
    for line, (prompt, cont) in enumerate(rows, start=1):
        if cont:
            write_wav(out / f"{line:06d}.wav", vocoder([*prompt, *cont], durations=True))
            written += 1
    return written


def read_prompt_file(path: Path, *, units: Tokenizer, text: Tokenizer, dictionary: "Dictionary",
                     to: Modality) -> tuple[list[list[int]], list[list[int]]]:
    """Each prompt line as dictionary indices (the ``to`` marker appended), and its units (``[]``
    for a text prompt); every line checked, the file non-empty."""
    prompts, prompt_units = [], []
    for lineno, line in enumerate(read_lines(path), start=1):
        where = f"{path}:{lineno}"
        modality, items = parse_prompt(line, where=where)
        if modality == "speech":
            if not all(x.isdigit() for x in items):
                raise FeatureError(f"{where}: a speech prompt holds unit ids (non-negative integers), got {line!r}")
            toks = units.encode_units([int(x) for x in items], where=where)
            prompt_units.append([int(x) for x in items])
        else:
            toks = text.encode_words(items, where=where)
            prompt_units.append([])
        prompts.append(indices(dictionary, prompt_tokens(modality, toks, to=to), where=where))
    if not prompts:
        raise FeatureError(f"{path}: no prompt; write one per line, 'speech <unit> ...' or 'text <word> ...'")
    return prompts, prompt_units


def run(args: argparse.Namespace) -> int:
    if (args.vocoder is None) != (args.wav_dir is None) or (args.vocoder is not None and args.to != "speech"):
        raise ConfigError("--vocoder and --wav-dir go together, with --to speech")
    check_sampling(temperature=args.temperature, max_new=args.max_new, min_new=args.min_new)
    unit_model = args.data / "unit.model"
    units = Tokenizer(unit_model if unit_model.is_file() else None, kind="units")
    text = Tokenizer(args.text_model or args.data.parent / "text.model", kind="text")
    with torch_threads(1):
        model, task = load_lm(args.checkpoint, data=args.data)
        if any(task.source_dictionary.index(m) == task.source_dictionary.unk() for m in MARKERS):
            raise ConfigError(f"{args.checkpoint}: not a joint speech-text LM (its dictionary {args.data / 'dict.txt'} "
                              "has no [SPEECH] / [TEXT] marker); give a checkpoint of fairseq-train --task speech_text_lm "
                              "and its data folder")
        # Everything is checked before sampling: a refused vocoder or prompt leaves no output.
        vocoder = (load_vocoder(args.vocoder, args.vocoder_config, task.source_dictionary)
                   if args.vocoder is not None else None)
        prompts, prompt_units = read_prompt_file(args.prompts, units=units, text=text, dictionary=task.source_dictionary,
                                                 to=args.to)
        conts = sample_continuations(model, task, prompts, to=args.to, temperature=args.temperature, top_k=args.top_k,
                                     max_new=args.max_new, min_new=args.min_new, seed=args.seed)
    with atomic_write(args.out) as f:
        for c in conts:
            f.write(" ".join(map(str, decode_units(c))) if args.to == "speech" else " ".join(decode_text(c)))
            f.write("\n")
    print(f"{len(conts)} continuations ({args.to}) -> {args.out}")
    if vocoder is not None:
        with torch_threads(1):
            n = voice(vocoder, list(zip(prompt_units, map(decode_units, conts))), args.wav_dir)
        print(f"{n} voiced ({len(conts) - n} empty) -> {args.wav_dir}")
    return 0
