"""Unit-LM training throughput (tokens per second): the ZeroSpeech 2021 LSTM vs smaller LMs.

Each configuration builds the registered model (``unit_lstm_lm`` / ``unit_transformer_lm``) the
way fairseq-train does (``task.build_model``), then times full training steps (forward,
cross-entropy, backward, Adam with weight decay) on random units (K = 500) in batches of
``--batch`` sequences of ``--tokens-per-sample`` units, after warm-up steps. The baseline row
is the paper's LSTM on this machine's CPU; ratios are against it, measured in the same run.
GPU rows are added when torch sees a GPU.

The paper trains on 80 x 2048 tokens per update (163840) on GPUs. On a CPU the default is
32 x 256: fairseq's LSTM computes a full weight gradient at every time step (a 4H x H outer
product whatever the batch), so its cost per token falls with the batch size, and a small batch
of long samples measures mostly memory traffic.

    OMP_NUM_THREADS=1 python benchmarks/lm_throughput.py [--tokens-per-sample 256] [--batch 32] [--threads 1 2]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from timing import lm_tokens_per_second  # benchmarks/timing.py, beside this script
from omegaconf import OmegaConf, open_dict

import spokenlm_plugin  # noqa: F401  (registers the unit LMs)
from fairseq.data import Dictionary
from fairseq.tasks.language_modeling import LanguageModelingTask
from spokenlm_plugin.ulm.models import UnitLSTMLMConfig, UnitTransformerLMConfig

K = 500


@dataclass(frozen=True)
class Setup:
    name: str
    arch: str
    overrides: dict


SETUPS = (
    Setup("LSTM ZS21 (3 x 1024, emb 200)", "unit_lstm_lm", {}),
    Setup("LSTM small (2 x 256, emb 64)", "unit_lstm_lm", dict(decoder_embed_dim=64, decoder_hidden_size=256,
                                                                 decoder_out_embed_dim=64, decoder_layers=2)),
    Setup("transformer small (2 x 128, 4 heads)", "unit_transformer_lm", dict(
        decoder_embed_dim=128, decoder_ffn_embed_dim=512, decoder_layers=2, decoder_attention_heads=4)),
    Setup("transformer base (6 x 512, 8 heads)", "unit_transformer_lm", {}),
)


def build(setup: Setup, *, tokens_per_sample: int) -> tuple[torch.nn.Module, Dictionary]:
    dictionary = Dictionary()
    for u in range(K):
        dictionary.add_symbol(str(u))
    task = LanguageModelingTask(argparse.Namespace(data=None), dictionary)
    dc = UnitLSTMLMConfig if setup.arch == "unit_lstm_lm" else UnitTransformerLMConfig
    fields = dict(tokens_per_sample=tokens_per_sample, max_target_positions=tokens_per_sample, **setup.overrides)
    if dc is UnitTransformerLMConfig:
        fields.update(add_bos_token=False, tpu=False)
    cfg = OmegaConf.structured(dc(**fields))
    with open_dict(cfg):
        cfg._name = setup.arch
    return task.build_model(cfg), dictionary


def throughput(setup: Setup, *, device: str, tokens_per_sample: int, batch: int, steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    model, dictionary = build(setup, tokens_per_sample=tokens_per_sample)
    model.to(device).train()
    return lm_tokens_per_second(model, low=dictionary.nspecial, high=dictionary.nspecial + K, device=device,
                                tokens_per_sample=tokens_per_sample, batch=batch, steps=steps, warmup=warmup,
                                weight_decay=0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens-per-sample", type=int, default=256, help="sequence length (paper: 2048)")
    parser.add_argument("--batch", type=int, default=32, help="sequences per step (paper: 80)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()], help="CPU thread counts")
    parser.add_argument("--setups", nargs="+", type=int, default=list(range(len(SETUPS))),
                        help=f"indices into {[s.name for s in SETUPS]}")
    args = parser.parse_args()

    devices = [("cpu", t) for t in args.threads] + ([("cuda", None)] if torch.cuda.is_available() else [])
    rows = []
    baseline = None
    for device, threads in devices:
        if threads is not None:
            torch.set_num_threads(threads)
        for i in args.setups:
            setup = SETUPS[i]
            tps = throughput(setup, device=device, tokens_per_sample=args.tokens_per_sample, batch=args.batch,
                             steps=args.steps, warmup=args.warmup)
            if baseline is None:
                baseline = tps  # the first row: by default the paper's LSTM on CPU
            if device == "cpu":
                where = f"CPU ({threads} thread{'s' if threads != 1 else ''})"
            else:
                where = torch.cuda.get_device_name()
            rows.append((setup.name, where, tps, tps / baseline))
            print(f"  {setup.name} on {where}: {tps:,.0f} tokens/s", flush=True)

    print()
    print(f"Unit-LM training throughput, K = {K} units, {args.batch} x {args.tokens_per_sample} tokens per step, "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    print()
    print(f"| model | device | tokens/s | vs {rows[0][0]}, {rows[0][1]} |")
    print("|---|---|---|---|")
    for name, where, tps, ratio in rows:
        print(f"| {name} | {where} | {tps:,.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
