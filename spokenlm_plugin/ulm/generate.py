"""Unit continuation with the real ``fairseq-generate``: prompts (``.km``) in, ``.km`` lines out.

fairseq-generate reads binarized data, so the prompts are first binarized with the LM's fixed
dictionary (:func:`prepare_prompts`, the same ``fairseq-preprocess`` call as ``spokenlm
lm-data``). With the ``language_modeling`` task and ``--sample-break-mode eos`` each prompt line
is one sample; without ``--prefix-size``, the task forces the whole source line as the prefix of
the generated sequence (``LanguageModelingTask.inference_step``; right padding of shorter
prompts in a batch is left free), so the model continues every prompt from its last unit.
(``--prefix-size P`` instead forces only the first P units of each line: the recipe to continue
the first P units of held-out utterances, straight from an ``lm-data`` split.)

The recipe, as :func:`continue_units` runs it::

    spokenlm lm-generate --checkpoint LM.pt --prompts prompts.km --out continuations.km

is equivalent to::

    # 1. prompts.km -> GEN/prompts.bin/.idx with the LM's dictionary (K units)
    mkdir PROMPTS && cp prompts.km PROMPTS/prompts.km
    spokenlm lm-data --units-dir PROMPTS --splits prompts --out GEN --vocab-size K
    # 2. sample (top-k 50, temperature 0.7); L = units of the longest prompt: at most L + 200
    #    tokens per line, no end of sentence before L + 1 (at least one new unit)
    fairseq-generate GEN --user-dir spokenlm_plugin --task language_modeling --path LM.pt \\
        --gen-subset prompts --sample-break-mode eos --sampling --sampling-topk 50 --temperature 0.7 \\
        --beam 1 --nbest 1 --max-len-a 0 --max-len-b $((L + 200)) --min-len $((L + 1)) --unkpen 10000 \\
        --batch-size 1 --seed 1 --results-path OUT
    # 3. OUT/generate-prompts.txt ('H-<line>\\t<score>\\t<prompt + continuation>') -> .km
    spokenlm lm-generate --collect OUT/generate-prompts.txt --prompts prompts.km --out continuations.km

(Like ``spokenlm lm-data``, this module rejects an empty prompt line, which would make
fairseq-generate sample from nothing.)
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path
from typing import Sequence

from ..core.errors import CheckpointError, ConfigError, FeatureError, LabelMismatchError
from ..core.runtime import resolve_device
from ..core.tools import run_tool
from .checkpoint import check_dictionary_fits, read_lm_state
from ..core.km import read_km, write_km
from .data import NUM_SPECIAL, binarize, read_dictionary_size

logger = logging.getLogger(__name__)

SUBSET = "prompts"


def read_prompts(path: str | os.PathLike, *, vocab_size: int | None) -> list[list[int]]:
    """Prompts of a ``.km`` file (one per line), checked: non-empty, units in the dictionary."""
    rows = read_km(path, vocab_size=vocab_size)
    empty = [i for i, r in enumerate(rows, start=1) if not r]
    if empty:
        raise FeatureError(f"{path}:{empty[0]}: empty prompt; every prompt line needs at least one unit to continue")
    if not rows:
        raise FeatureError(f"{path}: no prompt")
    return rows


def prepare_prompts(prompts: Sequence[Sequence[int]], out: str | os.PathLike, *, dictionary: str | os.PathLike) -> None:
    """Binarize prompts as ``out/prompts.bin/.idx`` with the LM's ``dictionary`` (copied to
    ``out/dict.txt``, where fairseq-generate reads it)."""
    binarize({SUBSET: [list(p) for p in prompts]}, out, vocab_size=read_dictionary_size(dictionary), srcdict=dictionary)


def generate_args(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike,
    results: str | os.PathLike,
    *,
    temperature: float = 0.7,
    top_k: int = 50,
    max_len: int = 250,
    min_len: int = 0,
    seed: int = 1,
    batch_size: int = 1,
    cpu: bool = True,
) -> list[str]:
    """The fairseq-generate arguments that sample continuations of ``data/prompts``.

    ``max_len`` / ``min_len`` count every token, the prompt included: at most ``max_len`` and
    no ``</s>`` before ``min_len``.
    """
    import spokenlm_plugin

    args = [
        str(data),
        "--user-dir", str(Path(spokenlm_plugin.__file__).parent),
        "--task", "language_modeling", "--path", str(checkpoint), "--gen-subset", SUBSET,
        "--sample-break-mode", "eos", "--sampling", "--sampling-topk", str(top_k),
        "--temperature", str(temperature), "--beam", "1", "--nbest", "1",
        # a fixed cap (not one relative to each batch's longest source): the same for every prompt
        "--max-len-a", "0", "--max-len-b", str(max_len), "--min-len", str(min_len),
        # <unk> is never a unit (no training target): a barely trained LM would sample it
        "--unkpen", "10000",
        "--batch-size", str(batch_size), "--seed", str(seed), "--results-path", str(results),
    ]
    return args + (["--cpu"] if cpu else [])


def read_continuations(
    path: str | os.PathLike, prompts: Sequence[Sequence[int]], *, keep_prompt: bool = False
) -> list[list[int]]:
    """Units after each prompt, from a fairseq-generate output (``H-<line>`` hypotheses).

    The hypothesis of line i starts with prompt i (forced prefix); it is checked and dropped
    unless ``keep_prompt``.
    """
    path = Path(path)
    if not path.is_file():
        raise FeatureError(f"{path}: fairseq-generate output not found")
    hyps: dict[int, list[int]] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.startswith("H-"):
            continue
        head, _, tokens = line.split("\t")
        try:
            hyps[int(head[2:])] = [int(t) for t in tokens.split()]
        except ValueError:
            raise FeatureError(f"{path}:{lineno}: a hypothesis holds a non-unit symbol: {line!r}") from None
    if sorted(hyps) != list(range(len(prompts))):
        raise LabelMismatchError(f"{path}: {len(hyps)} hypotheses for {len(prompts)} prompts; rerun fairseq-generate")
    out = []
    for i, prompt in enumerate(prompts):
        hyp = hyps[i]
        if hyp[: len(prompt)] != list(prompt):
            raise LabelMismatchError(f"{path}: hypothesis H-{i} does not start with prompt line {i + 1}")
        out.append(hyp if keep_prompt else hyp[len(prompt):])
    return out


def lm_dictionary(checkpoint: str | os.PathLike | None, *, data: str | os.PathLike | None = None) -> Path:
    """An LM's ``dict.txt``: ``data/dict.txt``, or that of the training data recorded in ``checkpoint``."""
    state = read_lm_state(checkpoint) if checkpoint is not None else None  # refuses a non-LM file early
    if data is None:
        if state is None:
            raise CheckpointError("no checkpoint given: pass --checkpoint, or --data with the LM's dict.txt")
        data = state["cfg"].task.data
    path = Path(data) / "dict.txt"
    read_dictionary_size(path)  # checks that it exists and is a unit dictionary
    if checkpoint is not None and state is not None:
        check_dictionary_fits(state, checkpoint=checkpoint, dictionary=path)
    return path


def clamp_top_k(top_k: int, *, dictionary: str | os.PathLike) -> int:
    """``top_k`` capped at the LM's number of output symbols (units + fairseq's 4 specials):
    torch's top-k fails on a k above it, e.g. the default 50 for an LM of fewer units."""
    symbols = NUM_SPECIAL + sum(1 for line in Path(dictionary).read_text().splitlines() if line.strip())
    if top_k > symbols:
        logger.warning("--top-k %d is above the LM's %d symbols: sampling among all of them", top_k, symbols)
        return symbols
    return top_k


def continue_units(
    checkpoint: str | os.PathLike,
    prompts_km: str | os.PathLike,
    out_km: str | os.PathLike,
    *,
    work: str | os.PathLike | None = None,
    data: str | os.PathLike | None = None,
    temperature: float = 0.7,
    top_k: int = 50,
    max_new: int = 200,
    min_new: int = 1,
    seed: int = 1,
    batch_size: int = 1,
    keep_prompt: bool = False,
    cpu: bool = True,
) -> list[list[int]]:
    """Sample a continuation of every prompt line with fairseq-generate; write them as ``.km``.

    :param max_new: at most this many new units after the longest prompt (shorter prompts may
        get more: the cap is on the total length).
    :param min_new: no end of sentence before this many new units (likewise counted after the
        longest prompt).
    """
    if temperature <= 0:
        raise ConfigError(f"--temperature {temperature}: must be > 0")
    if not 0 <= min_new <= max_new or max_new < 1:
        raise ConfigError(f"--min-len {min_new} / --max-len {max_new}: need 0 <= min-len <= max-len, max-len >= 1")
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be >= 1")
    dictionary = lm_dictionary(checkpoint, data=data)
    prompts = read_prompts(prompts_km, vocab_size=read_dictionary_size(dictionary))
    longest = max(map(len, prompts))
    top_k = clamp_top_k(top_k, dictionary=dictionary)
    with tempfile.TemporaryDirectory(prefix="lm-generate.") as scratch:
        work = Path(work) if work is not None else Path(scratch)
        prepare_prompts(prompts, work / "data", dictionary=dictionary)
        args = generate_args(
            checkpoint, work / "data", work / "out", temperature=temperature, top_k=top_k,
            max_len=longest + max_new, min_len=longest + min_new, seed=seed, batch_size=batch_size, cpu=cpu,
        )
        # The log must outlive the scratch folder when the run fails: beside --out unless --work.
        log_path = work / "fairseq-generate.log" if work != Path(scratch) else Path(f"{out_km}.fairseq-generate.log")
        log_path.unlink(missing_ok=True)
        # Token-by-token sampling gains nothing from intra-op threads and suffers from their
        # spinning on a busy CPU; an OMP_NUM_THREADS set by the user wins.
        run_tool("fairseq-generate", args, log_path=log_path, log=logger.info,
                 threads=None if "OMP_NUM_THREADS" in os.environ else 1)
        if work == Path(scratch):
            log_path.unlink()
        rows = read_continuations(work / "out" / f"generate-{SUBSET}.txt", prompts, keep_prompt=keep_prompt)
    write_km(out_km, rows)
    return rows


# ----------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, help="unit LM checkpoint (fairseq-train output)")
    parser.add_argument("--prompts", type=Path, required=True, help=".km file: one prompt (units) per line")
    parser.add_argument("--out", type=Path, required=True, help="output .km: the continuation of each prompt")
    parser.add_argument("--collect", type=Path, default=None,
                        help="only convert this fairseq-generate output (generate-prompts.txt) to .km")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with the LM's dict.txt (default: the training data folder in the checkpoint)")
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the binarized prompts and the fairseq-generate output here (default: a temp dir)")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    parser.add_argument("--top-k", type=int, default=50,
                        help="sample among the k most likely units (default 50; 0 or -1: all)")
    parser.add_argument("--max-len", type=int, default=200,
                        help="at most this many new units after the longest prompt (default 200)")
    parser.add_argument("--min-len", type=int, default=1,
                        help="no end of sentence before this many new units (after the longest prompt; default 1)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="prompts per batch (default 1: exact --min-len; in a batch of prompts of different "
                             "lengths fairseq applies --min-len only after the longest one)")
    parser.add_argument("--keep-prompt", action="store_true", help="write prompt + continuation")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: GPU if available")


def run(args: argparse.Namespace) -> int:
    if args.collect is not None:
        vocab_size = (read_dictionary_size(lm_dictionary(args.checkpoint, data=args.data))
                      if args.checkpoint or args.data else None)
        prompts = read_prompts(args.prompts, vocab_size=vocab_size)
        rows = read_continuations(args.collect, prompts, keep_prompt=args.keep_prompt)
        write_km(args.out, rows)
    else:
        if args.checkpoint is None:
            raise ConfigError("--checkpoint is required (or --collect to only convert a fairseq-generate output)")
        cpu = resolve_device(args.device).type == "cpu"
        rows = continue_units(
            args.checkpoint, args.prompts, args.out, work=args.work, data=args.data,
            temperature=args.temperature, top_k=args.top_k, max_new=args.max_len, min_new=args.min_len, seed=args.seed,
            batch_size=args.batch_size, keep_prompt=args.keep_prompt, cpu=cpu,
        )
    print(f"{len(rows)} continuations ({sum(map(len, rows))} units) -> {args.out}")
    return 0
