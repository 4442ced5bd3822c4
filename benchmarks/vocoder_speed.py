"""Unit vocoder speed: synthesis in x real time and training steps per second, CPU-sized
(128-channel) generator vs the published 512-channel shape, measured in the same run.

Synthesis: fairseq's ``CodeGenerator`` in inference form (weight norm folded, as
``spokenlm vocoder-synth`` loads it), ``--seconds`` of random units (K = 100) per call, after a
warm-up call; x real time = audio seconds / wall seconds. Training: full steps of
``spokenlm vocoder-train`` (generator + discriminators + both AdamW updates) on random segments of
28 units, mel-only and adversarial, with the discriminators at the width the command would use
(1/8 for 128 channels, published width for 512). GPU rows are added when torch sees a GPU.

    OMP_NUM_THREADS=1 python benchmarks/vocoder_speed.py [--threads 1 2] [--seconds 10]
"""

from __future__ import annotations

import argparse
import time

import torch
from timing import timed_steps  # benchmarks/timing.py, beside this script

from spokenlm_plugin.vocoder.config import DiscriminatorConfig, GeneratorConfig
from spokenlm_plugin.vocoder.losses import LogMel, discriminator_loss, feature_matching_loss, generator_adv_loss, mel_loss
from spokenlm_plugin.vocoder.model import Discriminators, SharedGenerators
from spokenlm_plugin.vocoder.checkpoint import _remove_weight_norm

K = 100


def synth_xrt(channels: int, *, seconds: float, device: str, repeats: int = 3) -> float:
    cfg = GeneratorConfig(num_embeddings=K, upsample_initial_channel=channels)
    gen = SharedGenerators([cfg]).body
    _remove_weight_norm(gen)
    gen = gen.eval().to(device)
    code = torch.randint(K, (1, int(seconds * 50)), device=device)
    with torch.inference_mode():
        gen(code=code[:, :50])  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            gen(code=code)
        if device == "cuda":
            torch.cuda.synchronize()
    return repeats * seconds / (time.perf_counter() - t0)


def train_steps_per_s(channels: int, *, scale: float, adversarial: bool, device: str, batch: int = 4,
                      steps: int = 3) -> float:
    gen = SharedGenerators([GeneratorConfig(num_embeddings=K, upsample_initial_channel=channels)]).to(device)
    disc = Discriminators(DiscriminatorConfig(scale=scale)).to(device)
    mel = LogMel().to(device)
    opt_g = torch.optim.AdamW(gen.parameters(), 2e-4, betas=(0.8, 0.99))
    opt_d = torch.optim.AdamW(disc.parameters(), 2e-4, betas=(0.8, 0.99))
    table = torch.zeros(batch, dtype=torch.long)

    def step() -> None:
        code = torch.randint(K, (batch, 28), device=device)
        real = 0.1 * torch.randn(batch, 1, 28 * 320, device=device)
        fake = gen(code, table)
        if adversarial:
            opt_d.zero_grad()
            discriminator_loss(disc(real), disc(fake.detach())).backward()
            opt_d.step()
        opt_g.zero_grad()
        loss = 45 * mel_loss(mel, real[:, 0], fake[:, 0])
        if adversarial:
            with torch.no_grad():
                r = disc(real)
            f = disc(fake)
            loss = loss + generator_adv_loss(f) + 2 * feature_matching_loss(r, f)
        loss.backward()
        opt_g.step()

    return steps / timed_steps(step, steps=steps, device=device)


def _f(v: float) -> str:
    return "n/a" if v != v else f"{v:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU thread counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per synthesis call")
    parser.add_argument("--train-512", action="store_true", help="also time training at 512 channels (slow on CPU)")
    args = parser.parse_args()
    setups = [("cpu", t) for t in args.threads] + ([("cuda", 0)] if torch.cuda.is_available() else [])
    print("| generator | device | synthesis x real time | vs 512-ch | train steps/s mel-only | "
          "train steps/s adversarial | adversarial vs 512-ch |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for device, threads in setups:
        if device == "cpu":
            torch.set_num_threads(threads)
        where = f"CPU, {threads} thread(s)" if device == "cpu" else torch.cuda.get_device_name()
        rows = {}
        for channels, scale in [(512, 1.0), (128, 0.125)]:
            xrt = synth_xrt(channels, seconds=args.seconds, device=device)
            train = device == "cuda" or channels == 128 or args.train_512
            mel = train_steps_per_s(channels, scale=scale, adversarial=False, device=device) if train else float("nan")
            adv = train_steps_per_s(channels, scale=scale, adversarial=True, device=device) if train else float("nan")
            rows[channels] = (xrt, mel, adv)
        for channels in (512, 128):
            xrt, mel, adv = rows[channels]
            disc = "published D" if channels == 512 else "D x1/8"
            ratio = adv / rows[512][2]
            print(f"| {channels} ch ({disc}) | {where} | {xrt:.1f} | {xrt / rows[512][0]:.2f}x | {_f(mel)} | "
                  f"{_f(adv)} | {'n/a (--train-512)' if ratio != ratio else f'{ratio:.1f}x'} |")


if __name__ == "__main__":
    main()
