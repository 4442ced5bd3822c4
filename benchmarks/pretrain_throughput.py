"""HuBERT pretraining throughput (seconds of audio per second of training): fairseq's own ``hubert``
model and ``hubert`` criterion (masked + unmasked prediction of k-means targets), one optimizer step
per batch, for the shipped small shape (``pretrain-small``'s recipe: layer_norm CNN trained at the
encoder's rate, 2 s crops) and the HuBERT Base shape (the paper's, CNN gradient x 0.1). Ratios are
against HuBERT Base on CPU, measured in the same run. A GPU, when present, is measured too.

    python benchmarks/pretrain_throughput.py [--steps 3] [--batch 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import logging

import torch
from timing import timed_steps  # benchmarks/timing.py, beside this script
from fairseq.criterions.hubert_criterion import HubertCriterion
from fairseq.data import Dictionary
from fairseq.models.hubert.hubert import HubertConfig, HubertModel
from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig

import spokenlm_plugin  # noqa: F401  (fairseq fixes for recent torch)
from spokenlm_plugin.pretrain.hubert import SmallHubert

CROP = 32_000  # the recipe's 2 s crops
K = 100
SHAPES = {
    "demo small HuBERT": (SmallHubert(), "layer_norm", 1.0),
    "HuBERT Base shape": (SmallHubert(conv_channels=512, layers=12, dim=768, ffn_dim=3072, heads=12, conv_pos=128,
                                      final_dim=256), "default", 0.1),
}


def build(spec: SmallHubert, mode: str, grad_mult: float) -> tuple[HubertModel, HubertCriterion]:
    dictionary = Dictionary()
    for k in range(K):
        dictionary.add_symbol(str(k))
    cfg = HubertConfig(
        conv_feature_layers=spec.conv_feature_layers, encoder_layers=spec.layers, encoder_embed_dim=spec.dim,
        encoder_ffn_embed_dim=spec.ffn_dim, encoder_attention_heads=spec.heads, conv_pos=spec.conv_pos,
        final_dim=spec.final_dim, extractor_mode=mode, feature_grad_mult=grad_mult, mask_prob=0.65,
        label_rate=50.0,
    )
    task_cfg = HubertPretrainingConfig(data="-", labels=["km"], label_rate=50.0, sample_rate=16_000)
    model = HubertModel(cfg, task_cfg, [dictionary])
    task = type("Task", (), {"target_dictionary": dictionary, "dictionaries": [dictionary]})()
    criterion = HubertCriterion(task, pred_masked_weight=1.0, pred_nomask_weight=0.5, loss_weights=[10.0])
    return model, criterion


def throughput(name: str, *, device: str, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    spec, mode, grad_mult = SHAPES[name]
    model, criterion = build(spec, mode, grad_mult)
    model = model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    sample = {
        "net_input": {"source": torch.randn(batch, CROP, device=device), "padding_mask": torch.zeros(batch, CROP, dtype=torch.bool, device=device)},
        "target_list": [torch.randint(4, K + 4, (batch, CROP // 320), device=device)],
        "id": torch.arange(batch), "ntokens": batch * CROP // 320,
    }

    def step() -> None:
        loss, _, _ = criterion(model, sample)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()

    return steps * batch * CROP / 16_000 / timed_steps(step, steps=steps, device=device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement (default: 3)")
    parser.add_argument("--batch", type=int, default=8, help="2 s crops per batch (default: 8)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    logging.getLogger("fairseq").setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for name in SHAPES:
            params = sum(p.numel() for p in build(*SHAPES[name])[0].parameters()) / 1e6
            steps = args.steps * (10 if device == "cuda" else 1)
            rows.append((name, params, device, throughput(name, device=device, batch=args.batch, steps=steps)))
    baseline = next(r[3] for r in rows if r[0] == "HuBERT Base shape" and r[2] == "cpu")
    print(f"HuBERT pretraining throughput, seconds of audio per second (batch {args.batch} x 2 s, {args.steps} steps)\n")
    print("| model | params (M) | device | audio s / s | x Base CPU |")
    print("|---|---:|---|---:|---:|")
    for name, params, device, value in rows:
        where = f"CPU, {torch.get_num_threads()} threads" if device == "cpu" else torch.cuda.get_device_name(0)
        print(f"| {name} | {params:.1f} | {where} | {value:.1f} | {value / baseline:.2f} |")


if __name__ == "__main__":
    main()
