"""The code HiFi-GAN networks: fairseq's own generator, and the two discriminators it lacks.

The generator *is* ``fairseq.models.text_to_speech.codehifigan.CodeGenerator`` (unit embedding ->
``hifigan.Generator``), so every state dict it saves loads into fairseq's ``CodeHiFiGANVocoder``
unchanged. fairseq ships no discriminators (inference only); the two below follow HiFi-GAN (Kong
et al. 2020) as used by speech-resynthesis: a multi-period discriminator (2-D convolutions over the
waveform folded by period p) and a multi-scale one (1-D grouped convolutions on the waveform and on
its 2x / 4x average-pooled versions, spectral norm on the first scale), with widths scaled for CPU.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm, weight_norm

from .config import DiscriminatorConfig, GeneratorConfig

if TYPE_CHECKING:
    from fairseq.models.text_to_speech.codehifigan import CodeGenerator

#: LeakyReLU slope of every HiFi-GAN network.
LRELU_SLOPE = 0.1

#: (features of every layer, final score) of one sub-discriminator.
DiscOutput = tuple[list[torch.Tensor], torch.Tensor]


def build_generator(cfg: GeneratorConfig, *, published: dict | None = None) -> CodeGenerator:
    """fairseq's ``CodeGenerator`` for ``cfg`` (weight norm still on: training form)."""
    import warnings

    from fairseq.models.text_to_speech.codehifigan import CodeGenerator

    with warnings.catch_warnings():
        # fairseq's generator uses the old weight_norm on purpose: its files hold weight_g / weight_v.
        warnings.filterwarnings("ignore", message=".*weight_norm.*is deprecated", category=FutureWarning)
        return CodeGenerator(cfg.fairseq_cfg(published))


def _width(channels: int, scale: float, *, multiple: int = 1) -> int:
    return max(multiple, int(round(channels * scale / multiple)) * multiple)


def _conv_stack(x: torch.Tensor, convs: nn.ModuleList, post: nn.Module) -> DiscOutput:
    """A discriminator branch: leaky-ReLU convolutions, every activation kept for feature matching."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        feats.append(x)
    x = post(x)
    feats.append(x)
    return feats, x.flatten(1)

class PeriodDiscriminator(nn.Module):
    """One MPD branch: the waveform folded to (T / p, p), 2-D convolutions along time."""

    def __init__(self, period: int, *, scale: float) -> None:
        super().__init__()
        self.period = period
        widths = [1] + [_width(c, scale) for c in (32, 128, 512, 1024, 1024)]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(cin, cout, (5, 1), (3, 1) if i < 4 else 1, padding=(2, 0)))
            for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:]))
        )
        self.conv_post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> DiscOutput:
        b, c, t = x.shape
        if t % self.period:  # fold needs a multiple of the period; reflect as HiFi-GAN does
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
        return _conv_stack(x.view(b, c, -1, self.period), self.convs, self.conv_post)


class ScaleDiscriminator(nn.Module):
    """One MSD branch: strided, grouped 1-D convolutions on the (pooled) waveform."""

    #: (published out channels, kernel, stride, groups) of the published MSD branch.
    LAYERS = ((128, 15, 1, 1), (128, 41, 2, 4), (256, 41, 2, 16), (512, 41, 4, 16),
              (1024, 41, 4, 16), (1024, 41, 1, 16), (1024, 5, 1, 1))

    def __init__(self, *, scale: float, spectral: bool) -> None:
        super().__init__()
        norm = spectral_norm if spectral else weight_norm
        convs = []
        cin = 1
        for cout, k, s, g in self.LAYERS:
            cout = _width(cout, scale, multiple=16)  # keeps every group count a divisor
            groups = math.gcd(g, math.gcd(cin, cout))
            convs.append(norm(nn.Conv1d(cin, cout, k, s, groups=groups, padding=(k - 1) // 2)))
            cin = cout
        self.convs = nn.ModuleList(convs)
        self.conv_post = norm(nn.Conv1d(cin, 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> DiscOutput:
        return _conv_stack(x, self.convs, self.conv_post)


class Discriminators(nn.Module):
    """MPD + MSD; ``forward`` returns every branch's output for a batch of waveforms (B, 1, T)."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        import warnings

        with warnings.catch_warnings():  # HiFi-GAN's weight_norm, as in fairseq's generator
            warnings.filterwarnings("ignore", message=".*weight_norm.*is deprecated", category=FutureWarning)
            self.periods = nn.ModuleList(PeriodDiscriminator(p, scale=cfg.scale) for p in cfg.periods)
            self.scales = nn.ModuleList(
                ScaleDiscriminator(scale=cfg.scale, spectral=i == 0) for i in range(cfg.scales))
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, wav: torch.Tensor) -> list[DiscOutput]:
        outs = [d(wav) for d in self.periods]
        x = wav
        for i, d in enumerate(self.scales):
            if i:
                x = self.pool(x)
            outs.append(d(x))
        return outs


class SharedGenerators(nn.Module):
    """Generators of several unit sets that share everything but the unit embedding table.

    The body is one fairseq ``CodeGenerator``; unit set ``i`` reads its own table ``tables[i]``. With
    one set the table *is* the body's ``dict``. Training several unit sets' vocoders together gives
    the shared upsampling network every step (a CPU budget trick, and a fair comparison: the unit
    sets differ only in what their units carry). Each set exports as a plain ``CodeGenerator``.
    """

    def __init__(self, cfgs: list[GeneratorConfig]) -> None:
        super().__init__()
        first = cfgs[0]
        for c in cfgs[1:]:
            if (c.upsample_initial_channel, c.embedding_dim, c.multispkr, c.duration_predictor) != (
                    first.upsample_initial_channel, first.embedding_dim, first.multispkr, first.duration_predictor):
                raise ValueError("unit sets trained together must share the generator shape")
        self.cfgs = cfgs
        self.body = build_generator(first)
        self.tables = nn.ModuleList(
            [self.body.dict] + [nn.Embedding(c.num_embeddings, c.embedding_dim) for c in cfgs[1:]])

    def embed(self, code: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Unit embeddings (B, S, E), each row of the batch from its own table."""
        if len(self.tables) == 1:
            return self.tables[0](code)
        return torch.stack([self.tables[t](c) for c, t in zip(code, table.tolist())])

    def forward(self, code: torch.Tensor, table: torch.Tensor, spkr: torch.Tensor | None = None) -> torch.Tensor:
        """Waveforms (B, 1, S * hop): ``CodeGenerator.forward`` with a per-row table."""
        from fairseq.models.text_to_speech.hifigan import Generator

        x = self.embed(code, table).transpose(1, 2)
        if self.body.multispkr:
            s = self.body.spkr(spkr).transpose(1, 2)
            x = torch.cat([x, self.body._upsample(s, x.shape[-1])], dim=1)
        return Generator.forward(self.body, x)

    def export(self, index: int) -> dict[str, torch.Tensor]:
        """Unit set ``index``'s ``CodeGenerator`` state dict: plain tensors, ``weight_g`` / ``weight_v``."""
        state = {k: v.detach().clone().contiguous() for k, v in self.body.state_dict().items()}
        table = self.tables[index]
        assert isinstance(table, nn.Embedding)  # the body's `dict` or one of ours
        state["dict.weight"] = table.weight.detach().clone().contiguous()
        return state
