"""Fine-tuning throughput of ``hubert_frame_cls`` (seconds of audio per second of training).

Randomly initialised models of two shapes, built through the model's own ``build_model``: the
demo's small HuBERT and the HuBERT Base shape (the paper's model). One training step = forward
with time and channel masking, frame cross-entropy, backward, AdamW step, CNN frozen; measured
with the encoder trainable and with the encoder frozen (the first tenth of the paper's updates,
and the linear probe). Batches of 3 s utterances. Ratios are against HuBERT Base on CPU, measured
in the same run. A GPU, when present, is measured too (fp32, and bf16 autocast).

    python benchmarks/finetune_throughput.py [--steps 3] [--batch 8] [--threads 2]
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import torch
from timing import timed_steps  # benchmarks/timing.py, beside this script
import torch.nn.functional as F
from omegaconf import OmegaConf

import spokenlm_plugin  # noqa: F401  (fairseq fixes, registrations)
from spokenlm_plugin.finetune.model import HubertFrameClassifier, HubertFrameClsConfig
from spokenlm_plugin.pretrain.hubert import SmallHubert
from spokenlm_plugin.core.phones import INVENTORY, num_frames

SHAPES = {
    "demo small HuBERT": SmallHubert(),
    "HuBERT Base shape": SmallHubert(conv_channels=512, layers=12, dim=768, ffn_dim=3072, heads=12, conv_pos=128, final_dim=256),
}


def build(spec: SmallHubert, *, frozen: bool) -> HubertFrameClassifier:
    w2v_args = OmegaConf.create({
        "task": {"_name": "hubert_pretraining", "sample_rate": 16_000, "normalize": False, "label_rate": 50.0},
        "model": {
            "_name": "hubert", "conv_feature_layers": spec.conv_feature_layers, "encoder_layers": spec.layers,
            "encoder_embed_dim": spec.dim, "encoder_ffn_embed_dim": spec.ffn_dim,
            "encoder_attention_heads": spec.heads, "conv_pos": spec.conv_pos, "final_dim": spec.final_dim,
            "label_rate": 50.0,
        },
    })
    cfg = OmegaConf.structured(HubertFrameClsConfig(
        w2v_path="-", max_update=1000, freeze_finetune_updates=1000 if frozen else 0, normalize=False, data="-"))
    cfg.w2v_args = w2v_args  # built from the config alone, as when a fine-tuned checkpoint reloads
    task = SimpleNamespace(phones=INVENTORY, cfg=SimpleNamespace(normalize=False))
    return HubertFrameClassifier.build_model(cfg, task)


def throughput(spec: SmallHubert, *, device: str, frozen: bool, batch: int, steps: int, bf16: bool = False) -> float:
    torch.manual_seed(0)
    model = build(spec, frozen=frozen).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-5, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.0)
    samples = 48_000
    wav = torch.randn(batch, samples, device=device)
    target = torch.randint(len(INVENTORY), (batch, num_frames(samples)), device=device)

    def step() -> None:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            logits = model(wav)["logits"]
        length = min(logits.size(1), target.size(1))
        loss = F.cross_entropy(logits[:, :length].float().flatten(0, 1), target[:, :length].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()

    return steps * batch * samples / 16_000 / timed_steps(step, steps=steps, device=device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement (default: 3)")
    parser.add_argument("--batch", type=int, default=8, help="utterances of 3 s per batch (default: 8)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    runs = [("cpu", False)] + ([("cuda", False), ("cuda", True)] if torch.cuda.is_available() else [])
    rows = []
    for device, bf16 in runs:
        steps = args.steps * (10 if device == "cuda" else 1)
        for name, spec in SHAPES.items():
            params = sum(p.numel() for p in build(spec, frozen=False).parameters()) / 1e6
            trained = throughput(spec, device=device, frozen=False, batch=args.batch, steps=steps, bf16=bf16)
            frozen = throughput(spec, device=device, frozen=True, batch=args.batch, steps=steps, bf16=bf16)
            label = f"{device}{' bf16' if bf16 else ''}"
            rows.append((name, params, label, trained, frozen))
    baseline = next(r[3] for r in rows if r[0] == "HuBERT Base shape" and r[2] == "cpu")
    cpu_name = f"CPU, {torch.get_num_threads()} threads"
    gpu_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    print(f"Fine-tuning throughput, seconds of audio per second (batch {args.batch} x 3 s, {args.steps} steps)\n")
    print("| model | params (M) | device | encoder trained | x Base CPU | encoder frozen | x Base CPU |")
    print("|---|---|---|---|---|---|---|")
    for name, params, device, trained, frozen in rows:
        where = cpu_name if device == "cpu" else f"{gpu_name} ({device})"
        print(f"| {name} | {params:.1f} | {where} | {trained:.1f} | {trained / baseline:.2f} | {frozen:.1f} | {frozen / baseline:.2f} |")


if __name__ == "__main__":
    main()
