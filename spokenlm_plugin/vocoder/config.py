"""Vocoder shapes and the training recipe, as dataclasses with help text.

:class:`GeneratorConfig` is exactly what fairseq's ``CodeHiFiGANVocoder`` reads from its config
JSON (``upsample_rates`` ... ``dur_predictor_params``), plus a few keys fairseq ignores
(``sampling_rate``, ``code_hop_size``, ``speakers``: names of the speaker embedding rows).
:class:`TrainConfig` follows the speech-resynthesis recipe (AdamW 2e-4, betas 0.8 / 0.99,
exponential decay 0.999 per epoch; LSGAN + feature matching x2 + mel L1 x45; 8960-sample segments),
with CPU-sized defaults for the batch and the discriminators where noted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.errors import CheckpointError, ConfigError
from ..core.phones import HOP, RECEPTIVE_FIELD, SAMPLE_RATE

#: vocoder-train's resume state in its output folder (vocoder.pt appears beside it only when training finished).
TRAIN_STATE = "train_state.pt"
#: Allowed difference, in units, between a .km line and the audio's length / 320.
LENGTH_TOLERANCE = 2
#: Allowed difference, in samples, between a resynthesis (units x 320 samples) and its original: HuBERT's
#: ``floor((n - 400) / 320) + 1`` units give 80 to 399 samples less than ``n``, and a .km line may be
#: :data:`LENGTH_TOLERANCE` units off.
RESYNTH_TOLERANCE = RECEPTIVE_FIELD + LENGTH_TOLERANCE * HOP


#: Upsampling of the published unit vocoders: 5 * 4 * 4 * 2 * 2 = 320 samples per 50 Hz unit.
UPSAMPLE_RATES = (5, 4, 4, 2, 2)
UPSAMPLE_KERNELS = (11, 8, 8, 4, 4)


@dataclass
class GeneratorConfig:
    """The code HiFi-GAN generator (fairseq ``CodeGenerator``, ResBlock type 1)."""

    num_embeddings: int = field(metadata={"help": "number of units K (rows of the unit embedding table)"})
    upsample_initial_channel: int = field(
        default=512, metadata={"help": "channel width after conv_pre (512 published, 128 for CPU)"})
    embedding_dim: int = field(default=128, metadata={"help": "unit (and speaker) embedding size"})
    upsample_rates: tuple[int, ...] = field(default=UPSAMPLE_RATES, metadata={"help": "transposed-conv strides"})
    upsample_kernel_sizes: tuple[int, ...] = field(default=UPSAMPLE_KERNELS, metadata={"help": "their kernels"})
    resblock_kernel_sizes: tuple[int, ...] = field(default=(3, 7, 11), metadata={"help": "MRF kernel sizes"})
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = field(
        default=((1, 3, 5), (1, 3, 5), (1, 3, 5)), metadata={"help": "MRF dilations per kernel"})
    multispkr: bool = field(default=False, metadata={"help": "concatenate a speaker embedding to the units"})
    num_speakers: int = field(default=0, metadata={"help": "speaker embedding rows (multispkr only)"})
    speakers: tuple[str, ...] = field(default=(), metadata={"help": "speaker names, row order (not read by fairseq)"})
    duration_predictor: bool = field(
        default=False, metadata={"help": "train fairseq's VariancePredictor on deduplicated units' run lengths"})
    sampling_rate: int = field(default=SAMPLE_RATE, metadata={"help": "output sample rate (not read by fairseq)"})

    def __post_init__(self) -> None:
        if self.num_embeddings < 1:
            raise ConfigError(f"--num-units {self.num_embeddings}: must be >= 1")
        smallest = self.upsample_initial_channel // 2 ** len(self.upsample_rates)
        if smallest < 1 or self.upsample_initial_channel % 2 ** len(self.upsample_rates):
            raise ConfigError(
                f"--channels {self.upsample_initial_channel}: must be a multiple of {2 ** len(self.upsample_rates)} "
                "(the width halves at every upsampling)")
        if self.multispkr and self.num_speakers < 1:
            raise ConfigError("a multi-speaker vocoder needs at least one speaker")

    @property
    def hop(self) -> int:
        """Samples per unit."""
        return math.prod(self.upsample_rates)

    @property
    def model_in_dim(self) -> int:
        return self.embedding_dim * (2 if self.multispkr else 1)

    def to_fairseq(self) -> dict[str, Any]:
        """The config JSON: every key ``CodeHiFiGANVocoder`` reads, plus informative extras."""
        d: dict[str, Any] = {
            "resblock": "1",
            "upsample_rates": list(self.upsample_rates),
            "upsample_kernel_sizes": list(self.upsample_kernel_sizes),
            "upsample_initial_channel": self.upsample_initial_channel,
            "resblock_kernel_sizes": list(self.resblock_kernel_sizes),
            "resblock_dilation_sizes": [list(d) for d in self.resblock_dilation_sizes],
            "model_in_dim": self.model_in_dim,
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "multispkr": self.multispkr,
            "num_speakers": self.num_speakers if self.multispkr else 0,
            "dur_predictor_params": self.dur_predictor_params,
            "sampling_rate": self.sampling_rate,
            "code_hop_size": self.hop,
            "speakers": list(self.speakers),
        }
        return d

    @property
    def dur_predictor_params(self) -> dict[str, Any] | None:
        if not self.duration_predictor:
            return None
        return {"encoder_embed_dim": self.embedding_dim, "var_pred_hidden_dim": self.embedding_dim,
                "var_pred_kernel_size": 3, "var_pred_dropout": 0.5}

    @classmethod
    def from_fairseq(cls, cfg: dict[str, Any], *, where: str) -> GeneratorConfig:
        """Read a vocoder config JSON (the plugin's, or a published speech-resynthesis one)."""
        required = ("upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel",
                    "resblock_kernel_sizes", "resblock_dilation_sizes", "num_embeddings", "embedding_dim")
        missing = [k for k in required if k not in cfg]
        if missing:
            raise CheckpointError(f"{where}: not a unit vocoder config (missing {', '.join(missing)})")
        if str(cfg.get("resblock", "1")) != "1":
            raise CheckpointError(f"{where}: resblock type {cfg['resblock']!r}; fairseq's generator has type 1 only")
        if cfg.get("f0") or cfg.get("embedder_params"):
            raise CheckpointError(f"{where}: F0- or speaker-embedder-conditioned vocoders are not supported")
        multispkr = bool(cfg.get("multispkr"))
        num_speakers = int(cfg.get("num_speakers", 200)) if multispkr else 0
        expected_in = int(cfg["embedding_dim"]) * (2 if multispkr else 1)
        if int(cfg.get("model_in_dim", 80)) != expected_in:
            raise CheckpointError(
                f"{where}: model_in_dim {cfg.get('model_in_dim', 80)} but the unit (+ speaker) embeddings give "
                f"{expected_in}")
        try:
            return cls(
                num_embeddings=int(cfg["num_embeddings"]),
                upsample_initial_channel=int(cfg["upsample_initial_channel"]),
                embedding_dim=int(cfg["embedding_dim"]),
                upsample_rates=tuple(map(int, cfg["upsample_rates"])),
                upsample_kernel_sizes=tuple(map(int, cfg["upsample_kernel_sizes"])),
                resblock_kernel_sizes=tuple(map(int, cfg["resblock_kernel_sizes"])),
                resblock_dilation_sizes=tuple(tuple(map(int, d)) for d in cfg["resblock_dilation_sizes"]),
                multispkr=multispkr,
                num_speakers=num_speakers,
                speakers=tuple(cfg.get("speakers") or ()),
                duration_predictor=bool(cfg.get("dur_predictor_params")),
                sampling_rate=int(cfg.get("sampling_rate", SAMPLE_RATE)),
            )
        except ConfigError as e:
            raise CheckpointError(f"{where}: {e}") from None

    def fairseq_cfg(self, published: dict[str, Any] | None = None) -> dict[str, Any]:
        """The dict handed to fairseq's ``CodeGenerator`` (a published config's own dur params kept)."""
        cfg = self.to_fairseq()
        if published is not None and published.get("dur_predictor_params"):
            cfg["dur_predictor_params"] = published["dur_predictor_params"]
        return cfg


@dataclass
class DiscriminatorConfig:
    """Multi-period (periods 2, 3, 5, 7, 11) and multi-scale (3 scales) discriminators.

    Widths are the published ones divided by ``1 / scale``: published MPD 32-128-512-1024-1024 and MSD
    128-...-1024 (about 70M weights) are far too slow on a CPU; the default scale 1/8 keeps the
    architecture and costs about as much as a 128-channel generator.
    """

    scale: float = field(default=0.125, metadata={"help": "width factor of both discriminators (1.0 = published)"})
    periods: tuple[int, ...] = field(default=(2, 3, 5, 7, 11), metadata={"help": "MPD periods"})
    scales: int = field(default=3, metadata={"help": "MSD scales (the first with spectral norm)"})


@dataclass
class TrainConfig:
    """The speech-resynthesis recipe; the CPU-sized defaults are marked."""

    steps: int = field(default=2000, metadata={"help": "total generator updates (published: 400k)"})
    batch_size: int = field(default=4, metadata={"help": "segments per update (published 16; CPU default 4)"})
    segment_units: int = field(default=28, metadata={"help": "units per training segment (28 = 8960 samples)"})
    lr: float = field(default=2e-4, metadata={"help": "AdamW learning rate (both networks)"})
    betas: tuple[float, float] = field(default=(0.8, 0.99), metadata={"help": "AdamW betas"})
    lr_decay: float = field(default=0.999, metadata={"help": "ExponentialLR gamma, applied once per epoch"})
    lambda_fm: float = field(default=2.0, metadata={"help": "feature-matching loss weight"})
    lambda_mel: float = field(default=45.0, metadata={"help": "mel L1 loss weight"})
    adversarial_from: int = field(
        default=0, metadata={"help": "step at which the discriminators join (0 = from the start, as published; "
                                     "a short CPU run gains from a mel-only start)"})
    checkpoint_every: int = field(default=200, metadata={"help": "write vocoder.pt + training state every N steps"})
    valid_every: int = field(default=500, metadata={"help": "validation audio + mel plots every N steps (0 = off)"})
    seed: int = field(default=1, metadata={"help": "seed of weights and segment sampling"})
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "segment_units", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be >= 1")
        if not 0 < self.lr < math.inf:  # lr 0 trains nothing and still writes a vocoder.pt
            raise ConfigError(f"--lr {self.lr}: must be a positive learning rate")
        if isinstance(self.discriminator, dict):
            self.discriminator = DiscriminatorConfig(**self.discriminator)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
