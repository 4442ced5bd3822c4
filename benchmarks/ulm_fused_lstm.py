"""Unit LSTM LM training update: fairseq's per-time-step LSTM loop vs the fused decoder.

Each row builds the same model twice from the same seed (hence the same weights): fairseq's own
``lstm_lm`` (``LSTMDecoder``, one ``nn.LSTMCell`` call per layer and time step) and the registered
``unit_lstm_lm`` (``FusedLSTMDecoder``, torch's fused LSTM kernel over the whole sequence). One
update is forward, cross-entropy, backward and an Adam step on random units (K units), in
training mode with dropout 0.1. The two models alternate repeat by repeat, so a load that comes
and goes on the machine hits both; the table gives the min and median seconds per update and
the loop / fused ratio of the medians. ``max |dlogit|`` compares the two models' logits in
eval mode on the batch (they are the same function).

    OMP_NUM_THREADS=1 python benchmarks/ulm_fused_lstm.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timing import timed_steps  # benchmarks/timing.py, beside this script
from omegaconf import OmegaConf, open_dict

import spokenlm_plugin  # noqa: F401  (registers the unit LMs)
from fairseq.data import Dictionary
from fairseq.models.lstm_lm import LSTMLanguageModel
from fairseq.tasks.language_modeling import LanguageModelingTask
from spokenlm_plugin.core.runtime import torch_threads
from spokenlm_plugin.ulm.models import FusedLSTMDecoder, UnitLSTMLMConfig


@dataclass(frozen=True)
class Setup:
    name: str
    batch: int
    tokens_per_sample: int
    embed: int
    hidden: int
    layers: int


SETUPS = (
    Setup("small (emb 64, 2 x 256)", 64, 128, 64, 256, 2),
    Setup("small (emb 64, 2 x 256)", 64, 64, 64, 256, 2),
    Setup("ZS21 (emb 200, 3 x 1024)", 8, 128, 200, 1024, 3),
)


def build(setup: Setup, *, units: int, fused: bool, seed: int) -> tuple[torch.nn.Module, Dictionary]:
    """The unit LSTM LM (fused) or fairseq's lstm_lm (loop) at the setup's shape, seeded."""
    dictionary = Dictionary()
    for u in range(units):
        dictionary.add_symbol(str(u))
    task = LanguageModelingTask(argparse.Namespace(data=None), dictionary)
    dims: dict[str, Any] = dict(decoder_embed_dim=setup.embed, decoder_hidden_size=setup.hidden,
                                decoder_out_embed_dim=setup.embed, decoder_layers=setup.layers, dropout=0.1)
    torch.manual_seed(seed)
    if fused:
        cfg = OmegaConf.structured(UnitLSTMLMConfig(tokens_per_sample=setup.tokens_per_sample,
                                                    max_target_positions=None, **dims))
        with open_dict(cfg):
            cfg._name = "unit_lstm_lm"
        model = task.build_model(cfg)
        assert isinstance(model.decoder, FusedLSTMDecoder)
    else:
        model = LSTMLanguageModel.build_model(
            argparse.Namespace(tokens_per_sample=setup.tokens_per_sample, criterion=None, **dims), task)
    return model, dictionary


def compare(setup: Setup, *, units: int, repeats: int, warmup: int) -> tuple[list[float], list[float], float]:
    """Seconds per update of the loop and of the fused model, and their largest logit difference."""
    (loop, dictionary), (fused, _) = (build(setup, units=units, fused=f, seed=0) for f in (False, True))
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(dictionary.nspecial, len(dictionary), (setup.batch, setup.tokens_per_sample + 1), generator=g)
    src, tgt = tokens[:, :-1], tokens[:, 1:]

    with torch.no_grad():
        diff = (loop.eval()(src)[0] - fused.eval()(src)[0]).abs().max().item()

    def updater(model: torch.nn.Module) -> Callable[[], None]:
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98))

        def step() -> None:
            logits, _ = model(src)
            F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt.reshape(-1)).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    steps = {"loop": updater(loop), "fused": updater(fused)}
    times: dict[str, list[float]] = {"loop": [], "fused": []}
    for step in steps.values():
        timed_steps(step, steps=0, device="cpu", warmup=warmup)
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(timed_steps(step, steps=1, device="cpu", warmup=0))
    return times["loop"], times["fused"], diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed updates per model (alternating)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed updates per model first")
    parser.add_argument("--threads", type=int, default=1, help="CPU intra-op threads")
    parser.add_argument("--units", type=int, default=100, help="vocabulary size K (units)")
    parser.add_argument("--setups", nargs="+", type=int, default=list(range(len(SETUPS))),
                        help=f"indices into {[f'{s.name} {s.batch}x{s.tokens_per_sample}' for s in SETUPS]}")
    parser.add_argument("--batch", type=int, default=None, help="sequences per update for every setup (default: each its own)")
    parser.add_argument("--tokens-per-sample", type=int, default=None,
                        help="sequence length for every setup (default: each its own)")
    args = parser.parse_args()

    rows = []
    with torch_threads(args.threads):
        for i in args.setups:
            s = SETUPS[i]
            setup = Setup(s.name, args.batch or s.batch, args.tokens_per_sample or s.tokens_per_sample,
                          s.embed, s.hidden, s.layers)
            loop, fused, diff = compare(setup, units=args.units, repeats=args.repeats, warmup=args.warmup)
            rows.append((setup, loop, fused, diff))
            print(f"  {setup.name} {setup.batch}x{setup.tokens_per_sample}: loop {statistics.median(loop):.3f} s, "
                  f"fused {statistics.median(fused):.3f} s", flush=True)

    print()
    print(f"Unit LSTM LM, seconds per training update (forward, backward, Adam), K = {args.units}, dropout 0.1, "
          f"{args.threads} thread{'s' if args.threads != 1 else ''}, {args.repeats} repeats after {args.warmup} warm-up")
    print()
    print("| model | batch x tokens | fairseq loop min / median (s) | fused min / median (s) | loop / fused | max abs dlogit |")
    print("|---|---|---|---|---|---|")
    for setup, loop, fused, diff in rows:
        lm, fm = statistics.median(loop), statistics.median(fused)
        print(f"| {setup.name} | {setup.batch} x {setup.tokens_per_sample} | {min(loop):.3f} / {lm:.3f} | "
              f"{min(fused):.3f} / {fm:.3f} | {lm / fm:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
