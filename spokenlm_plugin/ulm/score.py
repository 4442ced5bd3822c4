"""Per-utterance log-probabilities under a trained unit LM, and sWUGGY / sBLIMP accuracies.

The score of an utterance with units ``u_1 .. u_n`` is, as in the ZeroSpeech 2021 baseline
(``compute_proba_LSTM.py``), the natural-log probability of the units and of the end of
sentence given a begin-of-sentence context: ``sum_{t=1}^{n+1} log p(x_t | x_0 .. x_{t-1})`` with
``x_0`` = begin symbol and ``x_{n+1}`` = ``</s>``. ``--mean`` divides by ``n + 1``.

The begin symbol defaults to ``</s>``: a fairseq LM trained with the ``language_modeling`` task
sees ``</s>`` before every utterance (utterances are joined by ``</s>``) and fairseq-generate starts
from it too. The baseline fed ``<s>``, whose embedding such an LM never trains (it stays at its
random initialisation); ``--begin bos`` reproduces that.

``spokenlm lm-score --checkpoint LM.pt --units X.km --manifest X.tsv --out scores.txt`` writes the
ZeroSpeech 2021 submission format (``<filename> <score>`` per line, manifest order); with
``--gold gold.csv --task lexical|syntactic`` it also prints (and with ``--results`` saves) the
sWUGGY / sBLIMP accuracy of these scores and its 95 % bootstrap interval over pair ids
(:mod:`.discrimination`).

``--scorer length`` needs no LM: the score of an utterance is minus its number of units (the
``.km`` line's length: the duration in frames for raw units, the number of runs for deduplicated
ones). It is the trivial baseline of the minimal-pair tasks: what preferring the shorter item
alone achieves (ties when both have the same length).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

from ..core.errors import CheckpointError, ConfigError, DictionaryError, LabelMismatchError
from ..core.io import atomic_write, read_lines, read_manifest
from ..core.report import pct
from ..core.runtime import resolve_device, torch_threads
from .checkpoint import check_dictionary_fits, read_lm_state
from ..core.km import read_km
from .discrimination import LexicalResult, SyntacticResult, lexical_accuracy, read_gold, syntactic_accuracy

if TYPE_CHECKING:
    import torch
    from fairseq.models import FairseqLanguageModel
    from fairseq.tasks.language_modeling import LanguageModelingTask

BeginSymbol = Literal["eos", "bos"]
Scorer = Literal["lm", "length"]


def load_unit_lm(
    checkpoint: str | os.PathLike, *, data: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> tuple["FairseqLanguageModel", "LanguageModelingTask"]:
    """A trained unit LM and its task (for the dictionary), in eval mode on ``device``.

    :param data: folder with the LM's ``dict.txt`` (default: the training data folder recorded
        in the checkpoint).
    """
    from fairseq import checkpoint_utils
    from fairseq.models import FairseqLanguageModel

    checkpoint = Path(checkpoint)
    overrides = {"data": str(data)} if data is not None else {}
    state = read_lm_state(checkpoint, arg_overrides=overrides)
    cfg = state["cfg"]
    dict_path = Path(cfg.task.data) / "dict.txt"
    if not dict_path.is_file():
        if data is not None:
            raise DictionaryError(f"{dict_path}: dictionary not found (--data {data}); pass the folder made by "
                                  "'spokenlm lm-data' for the LM's training data")
        raise CheckpointError(
            f"{checkpoint}: its dictionary {dict_path} is gone; pass --data with the folder made by 'spokenlm lm-data'"
        )
    check_dictionary_fits(state, checkpoint=checkpoint, dictionary=dict_path)
    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(checkpoint)], arg_overrides=overrides, state=state
    )
    model = models[0]
    if not isinstance(model, FairseqLanguageModel):
        raise CheckpointError(f"{checkpoint}: {type(model).__name__} is not a language model")
    return model.eval().to(device), task


def unit_indices(dictionary) -> np.ndarray:
    """Dictionary index of each unit ``0..K-1``: the dictionary's integer symbols, in any order
    (so LMs binarized by plain fairseq-preprocess, sorted by frequency, work too)."""
    units = sorted(int(s) for s in dictionary.symbols if s.isdigit())
    if not units or units != list(range(len(units))):
        raise ConfigError("the LM dictionary's integer symbols are not the units 0..K-1; is it a unit LM?")
    return np.array([dictionary.index(str(u)) for u in units], dtype=np.int64)


def _batches(lengths: Sequence[int], *, batch_size: int, max_tokens: int) -> list[list[int]]:
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        if cur and (len(cur) >= batch_size or (len(cur) + 1) * (lengths[cur[0]] + 1) > max_tokens):
            batches.append(cur)
            cur = []
        cur.append(int(i))
    if cur:
        batches.append(cur)
    return batches


def sequence_logprobs(
    model,
    dictionary,
    utterances: Sequence[Sequence[int]],
    *,
    begin: BeginSymbol = "eos",
    batch_size: int = 64,
    max_tokens: int = 65536,
) -> tuple[np.ndarray, np.ndarray]:
    """Sum of log p over the units and the final ``</s>`` of each utterance, and that count (n + 1).

    Identical unit sequences are scored once, so they get bit-identical scores (ties are ties).
    """
    import torch

    with torch.no_grad():  # a decorator would need torch at import time
        lut = torch.from_numpy(unit_indices(dictionary))
        begin_idx = dictionary.eos() if begin == "eos" else dictionary.bos()
        distinct = list(dict.fromkeys(tuple(u) for u in utterances))
        lengths = [len(u) for u in distinct]
        device = next(model.parameters()).device
        sums = np.zeros(len(distinct), dtype=np.float64)
        for batch in _batches(lengths, batch_size=batch_size, max_tokens=max_tokens):
            width = lengths[batch[0]] + 1
            src = torch.full((len(batch), width), dictionary.pad(), dtype=torch.long)
            tgt = torch.full((len(batch), width), dictionary.pad(), dtype=torch.long)
            for row, i in enumerate(batch):
                units = lut[torch.tensor(distinct[i], dtype=torch.long)]
                n = len(units)
                src[row, 0] = begin_idx
                src[row, 1 : n + 1] = units
                tgt[row, :n] = units
                tgt[row, n] = dictionary.eos()
            src, tgt = src.to(device), tgt.to(device)
            # Right padding is harmless: both LMs are causal, a position never sees later ones.
            lprobs = model.get_normalized_probs(model(src), log_probs=True)
            token_lp = lprobs.gather(-1, tgt.unsqueeze(-1)).squeeze(-1).double()
            token_lp = token_lp.masked_fill(tgt.eq(dictionary.pad()), 0.0)
            sums[batch] = token_lp.sum(dim=1).cpu().numpy()
        index = {u: i for i, u in enumerate(distinct)}
        which = np.array([index[tuple(u)] for u in utterances], dtype=np.int64)
        return sums[which], np.array([len(u) + 1 for u in utterances], dtype=np.int64)


def score_units(
    checkpoint: str | os.PathLike,
    units: str | os.PathLike,
    *,
    utt_ids: Sequence[str],
    data: str | os.PathLike | None = None,
    mean: bool = False,
    begin: BeginSymbol = "eos",
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Score every line of a ``.km`` file; ``{utt_id: log-probability}`` in file order."""
    model, task = load_unit_lm(checkpoint, data=data, device=device)
    rows = read_km(units, vocab_size=len(unit_indices(task.source_dictionary)), allow_empty=False)
    if len(rows) != len(utt_ids):
        raise LabelMismatchError(
            f"{units}: {len(rows)} lines but {len(utt_ids)} utterance ids; the .km must have one line per manifest row"
        )
    sums, counts = sequence_logprobs(model, task.source_dictionary, rows, begin=begin, batch_size=batch_size)
    values = sums / counts if mean else sums
    return dict(zip(utt_ids, values.tolist()))


def unit_count_scores(rows: Sequence[Sequence[int]]) -> np.ndarray:
    """The length-only baseline's scores: minus the number of units of each utterance."""
    return -np.array([len(r) for r in rows], dtype=np.float64)


def length_scores(units: str | os.PathLike, *, utt_ids: Sequence[str]) -> dict[str, float]:
    """:func:`unit_count_scores` of every line of a ``.km`` file; ``{utt_id: score}`` in file order."""
    rows = read_km(units, allow_empty=False)
    if len(rows) != len(utt_ids):
        raise LabelMismatchError(
            f"{units}: {len(rows)} lines but {len(utt_ids)} utterance ids; the .km must have one line per manifest row"
        )
    return dict(zip(utt_ids, unit_count_scores(rows).tolist()))


def write_submission(path: str | os.PathLike, scores: dict[str, float]) -> None:
    """ZeroSpeech 2021 lexical / syntactic submission file: ``<filename> <score>`` per line."""
    with atomic_write(path) as f:
        f.writelines(f"{utt} {score!r}\n" for utt, score in scores.items())


def read_submission(path: str | os.PathLike) -> dict[str, float]:
    """Scores of a submission file written by :func:`write_submission` (or any ``<name> <float>`` file)."""
    scores = {}
    for lineno, line in enumerate(read_lines(path), start=1):
        parts = line.split()
        if len(parts) != 2:
            raise LabelMismatchError(f"{path}:{lineno}: expected '<filename> <score>', got {line!r}")
        scores[parts[0]] = float(parts[1])
    return scores


def _utt_ids(args: argparse.Namespace) -> list[str]:
    if args.manifest is not None:
        return read_manifest(args.manifest).utt_ids
    ids = [line.strip() for line in read_lines(args.ids) if line.strip()]
    if len(set(ids)) != len(ids):
        raise LabelMismatchError(f"{args.ids}: an utterance id appears twice")
    return ids


# ----------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path,
                        help="unit LM checkpoint (fairseq-train output); needed by --scorer lm")
    parser.add_argument("--scorer", choices=["lm", "length"], default="lm",
                        help="lm: log-probability under --checkpoint (default); length: minus the number of units "
                             "(the length-only baseline, no checkpoint)")
    parser.add_argument("--units", type=Path, required=True, help=".km file: one line of units per utterance")
    ids = parser.add_mutually_exclusive_group(required=True)
    ids.add_argument("--manifest", type=Path, help="manifest of the .km lines (utterance id = audio file stem)")
    ids.add_argument("--ids", type=Path, help="or a file with one utterance id per .km line")
    parser.add_argument("--out", type=Path, required=True, help="submission file: '<filename> <score>' per line")
    parser.add_argument("--mean", action="store_true", help="mean log-probability per predicted unit (default: sum)")
    parser.add_argument("--begin", choices=["eos", "bos"], default="eos",
                        help="begin-of-sentence context: eos (</s>, what the LM saw in training; default) "
                             "or bos (<s>, as the ZeroSpeech 2021 baseline script)")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with the LM's dict.txt (default: the training data folder in the checkpoint)")
    parser.add_argument("--gold", type=Path, default=None, help="sLM21 gold.csv: also compute the accuracy")
    parser.add_argument("--task", choices=["lexical", "syntactic"], default=None,
                        help="what --gold holds: lexical (sWUGGY) or syntactic (sBLIMP)")
    parser.add_argument("--results", type=Path, default=None, help="write the accuracy as JSON here")
    parser.add_argument("--ci-resamples", type=int, default=1000,
                        help="bootstrap resamples of the pair ids for the 95 %% intervals (default 1000; 0: none)")
    parser.add_argument("--ci-seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--batch-size", type=int, default=64, help="utterances per forward pass (default 64)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: GPU if available")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: torch's; 1 is much faster on a busy CPU)")


def run(args: argparse.Namespace) -> int:
    if (args.gold is None) != (args.task is None):
        raise ConfigError("--gold and --task go together (--task lexical|syntactic says what the gold.csv holds)")
    if args.results is not None and args.gold is None:
        raise ConfigError("--results needs --gold and --task")
    if args.scorer == "lm" and args.checkpoint is None:
        raise ConfigError("--scorer lm needs --checkpoint (or use --scorer length, which needs no LM)")
    if args.scorer == "length" and (args.checkpoint is not None or args.mean):
        raise ConfigError("--scorer length uses no LM: drop --checkpoint / --mean")
    if args.ci_resamples < 0:
        raise ConfigError(f"--ci-resamples {args.ci_resamples}: must be >= 0")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads {args.threads}: must be >= 1")
    utt_ids = _utt_ids(args)
    if not utt_ids:
        raise LabelMismatchError(f"{args.manifest or args.ids}: no utterance id, nothing to score; give one id per "
                                 ".km line")
    # The gold file is read before the LM runs, and every output written after the accuracy: a bad
    # gold.csv leaves no submission behind.
    gold = read_gold(args.gold, task=args.task) if args.gold is not None else None
    if args.scorer == "length":
        scores = length_scores(args.units, utt_ids=utt_ids)
    else:
        with torch_threads(args.threads):
            scores = score_units(
                args.checkpoint, args.units, utt_ids=utt_ids, data=args.data, mean=args.mean,
                begin=args.begin, batch_size=args.batch_size, device=resolve_device(args.device),
            )
    result: LexicalResult | SyntacticResult | None = None
    if gold is not None:
        accuracy = lexical_accuracy if args.task == "lexical" else syntactic_accuracy
        result = accuracy(gold, scores, source=str(args.gold), resamples=args.ci_resamples, seed=args.ci_seed)
    write_submission(args.out, scores)
    print(f"{len(scores)} scores -> {args.out}")
    if isinstance(result, LexicalResult):
        in_vocab = pct(result.in_vocab, result.in_vocab_ci, digits=2)
        print(f"sWUGGY all {pct(result.all, result.all_ci, digits=2)} %  in-vocab {in_vocab} %  "
              f"({result.n_ids} ids, {result.n_in_vocab_ids} in vocabulary, {result.n_pairs} pairs"
              f"{'; 95 % bootstrap intervals over ids' if args.ci_resamples else ''})")
    elif isinstance(result, SyntacticResult):
        print(f"sBLIMP {pct(result.all, result.all_ci, digits=2)} %  ({result.n_ids} ids, {result.n_pairs} pairs"
              f"{'; 95 % bootstrap interval over ids' if args.ci_resamples else ''})")
    if result is not None and args.results is not None:
        with atomic_write(args.results) as f:
            fields = {k: v for k, v in dataclasses.asdict(result).items() if k != "per_id"}
            fields["per_id"] = {" ".join(k): v for k, v in result.per_id.items()}
            json.dump({"task": args.task, "scorer": args.scorer, **fields}, f, indent=1)
    return 0
