"""``spokenlm vocoder-import``: a bootphon/unit-hifigan ``UnitVocoder`` -> this toolkit's fairseq vocoder.

unit-hifigan 0.2.0 (the paper's released vocoders, e.g. revision ``vocoder-base-l11``) saves
``model.safetensors`` + ``config.json`` (``n_units``, ``speakers``, ``styles``, ``f0_bins``,
``embedding_dim``). Its generator is speech-resynthesis' code HiFi-GAN with other module names, so
the import is a renaming into fairseq's ``CodeGenerator`` (what :func:`.checkpoint.save_vocoder`
writes and ``vocoder-synth`` / fairseq's ``CodeHiFiGANVocoder`` load):

- ``unit_embedding`` -> ``dict``, ``speaker_embedding`` -> ``spkr`` (names kept in ``config.json``
  ``speakers``, row order), ``generator.`` dropped, ``upsamplers.i`` -> ``ups.i``,
  ``mrfs.i.residual_blocks.j.d.conv{1,2}`` -> ``resblocks.{3i+j}.convs{1,2}.d``, weight norm
  ``parametrizations.weight.original0/1`` -> ``weight_g`` / ``weight_v``.
- Its input is the concatenation, along channels, of the unit embedding and per-utterance
  embeddings, in the order f0 bin, speaker, style (each repeated over the frames), as fairseq's
  ``CodeGenerator`` does for its quantised f0 and speaker. fairseq has no style slot, and this
  toolkit passes no f0, so a style (``--style``) and an f0 bin (``--f0-bin``) are fixed at import:
  ``--fold table`` (default) appends their embeddings to every row of the unit table (a wider
  ``embedding_dim``; the speaker table is zero-padded to it): exact, edges included, since the
  first convolution sees the same input as in the source. ``--fold bias`` keeps the published
  shape and adds their constant contribution to ``conv_pre``'s bias: exact except near the ends,
  where the source's zero padding hides part of the constant (first / last 3 frames of conv_pre's
  output, spread by the rest of the network).

The strides (5, 4, 4, 2, 2) and MRF dilations (1, 3, 5) are not in the weights: they are the ones
``UnitVocoder`` always builds; the kernel sizes and widths are read from the weights and checked.
unit-hifigan's own ``generate`` also divides each utterance by its peak; ``forward``, reproduced
here, does not.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..core.errors import CheckpointError, ConfigError
from ..core.phones import SAMPLE_RATE
from .config import UPSAMPLE_KERNELS, UPSAMPLE_RATES, GeneratorConfig

if TYPE_CHECKING:  # imported where used: `spokenlm vocoder-import --help` must not wait for torch
    import torch

Fold = Literal["table", "bias"]

#: The MRF dilations ``UnitVocoder`` builds (not recorded in the weights).
MRF_DILATIONS = (1, 3, 5)
#: fairseq weight-norm names of unit-hifigan's parametrization tensors (older torch names kept as they are).
_NORM_SUFFIX = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v",
                "weight_g": "weight_g", "weight_v": "weight_v", "bias": "bias"}
_SUFFIX = r"(parametrizations\.weight\.original[01]|weight_g|weight_v|bias)"
_CONV = re.compile(rf"generator\.(conv_pre|conv_post)\.{_SUFFIX}")
_UP = re.compile(rf"generator\.upsamplers\.(\d+)\.{_SUFFIX}")
_MRF = re.compile(rf"generator\.mrfs\.(\d+)\.residual_blocks\.(\d+)\.(\d+)\.conv([12])\.{_SUFFIX}")
_EMBEDDINGS = ("unit_embedding.weight", "f0_embedding.weight", "speaker_embedding.weight", "style_embedding.weight")
_HINT = "give the model.safetensors (or its folder) of a unit-hifigan UnitVocoder, with its config.json beside it"


@dataclass
class UnitHifiganSource:
    """A unit-hifigan ``UnitVocoder`` read from disk (tensors as saved, float32)."""

    path: Path
    config_path: Path
    state: dict[str, torch.Tensor]
    n_units: int
    embedding_dim: int
    channels: int
    mrf_kernels: tuple[int, ...]
    speakers: tuple[str, ...]
    styles: tuple[str, ...]
    f0_bins: tuple[Any, ...]

    @property
    def blocks(self) -> list[str]:
        """The input blocks of ``conv_pre``, in the source's concatenation order."""
        return ["unit"] + [name for name, rows in (("f0", self.f0_bins), ("speaker", self.speakers),
                                                   ("style", self.styles)) if rows]


def _weights_path(source: Path) -> Path:
    if source.is_dir():
        weights = source / "model.safetensors"
        if not weights.is_file():
            raise CheckpointError(f"{source}: no model.safetensors in this folder; {_HINT}")
        return weights
    if not source.is_file():
        raise CheckpointError(f"{source}: not found; {_HINT}")
    return source


def _config_path(weights: Path, config: Path | None) -> Path:
    config = config if config is not None else weights.parent / "config.json"
    if not config.is_file():
        raise CheckpointError(
            f"{config}: not found: unit-hifigan saves config.json (n_units, speakers, styles, f0_bins, embedding_dim) "
            f"beside {weights.name}; put it there or pass it with --config")
    return config


def _read_config(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a JSON config ({e}); {_HINT}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("n_units"), int):
        what = "a fairseq vocoder config (use it with vocoder-synth directly, no import needed)" if isinstance(
            raw, dict) and "upsample_rates" in raw else "not a unit-hifigan UnitVocoder config (no integer n_units)"
        raise CheckpointError(f"{path}: {what}; {_HINT}")
    for key in ("speakers", "styles", "f0_bins"):
        if raw.get(key) is not None and not isinstance(raw[key], list):
            raise CheckpointError(f"{path}: {key} is {type(raw[key]).__name__}, expected a list of names; {_HINT}")
    return raw


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a unit-hifigan safetensors file; other kinds refused from their key names alone."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(path, framework="pt") as f:
            keys = list(f.keys())
        _check_kind(keys, path)
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:  # foreign or cut-short file
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        kind = (" (a fairseq vocoder.pt needs no import: give it to vocoder-synth with its config.json)"
                if path.suffix == ".pt" else "")
        raise CheckpointError(f"{path}: not a readable safetensors file, or one cut short ({first}){kind}; {_HINT}") from None


def _check_kind(keys: list[str], path: Path) -> None:
    if any(k.startswith(("model.wav2vec2.", "aux.")) for k in keys):
        raise CheckpointError(
            f"{path}: a HuBERT model (HuBERTPhoneme: model.wav2vec2.* and aux.* weights), not a unit vocoder; "
            "convert it with 'spokenlm convert-hubert', and give vocoder-import a unit-hifigan UnitVocoder")
    if "unit_embedding.weight" not in keys or not any(k.startswith("generator.conv_pre.") for k in keys):
        raise CheckpointError(
            f"{path}: not a unit-hifigan UnitVocoder (no unit_embedding / generator.conv_pre weights; it holds "
            f"{sorted(keys)[:4]}); {_HINT}")


def _fairseq_name(key: str, mrf_kernels: int) -> str | None:
    """fairseq ``CodeGenerator`` name of a generator key (None: not a generator key)."""
    if m := _CONV.fullmatch(key):
        return f"{m[1]}.{_NORM_SUFFIX[m[2]]}"
    if m := _UP.fullmatch(key):
        return f"ups.{m[1]}.{_NORM_SUFFIX[m[2]]}"
    if m := _MRF.fullmatch(key):
        return f"resblocks.{int(m[1]) * mrf_kernels + int(m[2])}.convs{m[4]}.{m[3]}.{_NORM_SUFFIX[m[5]]}"
    return None


def _weight_v(state: dict[str, torch.Tensor], prefix: str) -> torch.Tensor | None:
    for suffix in ("parametrizations.weight.original1", "weight_v"):
        if f"{prefix}.{suffix}" in state:
            return state[f"{prefix}.{suffix}"]
    return None


def read_unit_hifigan(source: str | Path, *, config: str | Path | None = None) -> UnitHifiganSource:
    """Read and check a unit-hifigan ``UnitVocoder`` (its ``model.safetensors`` or folder)."""
    weights = _weights_path(Path(source))
    state = {k: v.float() for k, v in _read_tensors(weights).items()}  # the file's kind first: the clearest message
    config_path = _config_path(weights, None if config is None else Path(config))
    raw = _read_config(config_path)
    where = f"{weights} (with {config_path})"

    unknown = [k for k in state if k not in _EMBEDDINGS and not (
        _CONV.fullmatch(k) or _UP.fullmatch(k) or _MRF.fullmatch(k))]
    if unknown:
        raise CheckpointError(f"{where}: weights unit-hifigan's UnitVocoder does not have: {unknown[:3]}; {_HINT}")
    pre = _weight_v(state, "generator.conv_pre")
    if pre is None or pre.dim() != 3:
        raise CheckpointError(f"{where}: no generator.conv_pre weight; {_HINT}")
    n_ups = len({int(m[1]) for k in state if (m := _UP.fullmatch(k))})
    kernels = tuple(int(v.shape[-1]) for i in range(n_ups) if (v := _weight_v(state, f"generator.upsamplers.{i}")) is not None)
    if kernels != UPSAMPLE_KERNELS:
        raise CheckpointError(
            f"{where}: upsampler kernels {kernels}, not unit-hifigan's {UPSAMPLE_KERNELS}: its strides are not in the "
            "weights and only UnitVocoder's (5, 4, 4, 2, 2) are known; not a UnitVocoder")
    blocks = sorted({(int(m[2]), int(m[3])) for k in state if (m := _MRF.fullmatch(k)) and m[1] == "0"})
    n_blocks = 1 + max((j for j, _ in blocks), default=-1)
    mrf_kernels = tuple(int(v.shape[-1]) for j in range(n_blocks)
                        if (v := _weight_v(state, f"generator.mrfs.0.residual_blocks.{j}.0.conv1")) is not None)
    if sorted({d for _, d in blocks}) != list(range(len(MRF_DILATIONS))) or len(mrf_kernels) != n_blocks:
        raise CheckpointError(f"{where}: residual blocks are not UnitVocoder's ({len(MRF_DILATIONS)} dilated layers "
                              "per kernel size); not a UnitVocoder")

    def rows(key: str, name: str) -> tuple[Any, ...]:
        names = tuple(raw.get(name) or ())
        weight = state.get(key)
        if len(names) != (0 if weight is None else weight.shape[0]):
            raise CheckpointError(
                f"{where}: config.json lists {len(names)} {name} but {key} has "
                f"{0 if weight is None else weight.shape[0]} rows; pass the config.json saved with these weights")
        return names

    unit = state["unit_embedding.weight"]
    dim = raw.get("embedding_dim", 128)
    if not isinstance(dim, int):
        raise CheckpointError(f"{config_path}: embedding_dim {dim!r} is not an integer; {_HINT}")
    if tuple(unit.shape) != (raw["n_units"], dim):
        raise CheckpointError(
            f"{where}: unit_embedding is {tuple(unit.shape)} but config.json gives n_units {raw['n_units']}, "
            f"embedding_dim {dim}; pass the config.json saved with these weights")
    src = UnitHifiganSource(
        path=weights, config_path=config_path, state=state, n_units=raw["n_units"], embedding_dim=dim,
        channels=int(pre.shape[0]), mrf_kernels=mrf_kernels, speakers=tuple(map(str, rows("speaker_embedding.weight", "speakers"))),
        styles=tuple(map(str, rows("style_embedding.weight", "styles"))), f0_bins=rows("f0_embedding.weight", "f0_bins"))
    if pre.shape[1] != dim * len(src.blocks):
        raise CheckpointError(
            f"{where}: conv_pre reads {pre.shape[1]} channels, the embeddings ({' + '.join(src.blocks)}) give "
            f"{dim * len(src.blocks)}; not a UnitVocoder")
    return src


def _pick(names: tuple[Any, ...], wanted: str | None, *, what: str, option: str, where: Path) -> int | None:
    """Row of ``wanted`` in a style / f0-bin table; one-line refusals for a missing or unknown name."""
    if not names:
        if wanted is not None:
            raise ConfigError(f"{option} {wanted}: {where} has no {what} embedding; drop {option}")
        return None
    listed = ", ".join(map(str, names))
    if wanted is None:
        raise ConfigError(
            f"{where}: a {what}-conditioned vocoder ({what}s: {listed}); fairseq's CodeGenerator has no {what} "
            f"input, so pass {option} NAME to build one {what} in")
    for i, name in enumerate(names):
        if str(name) == str(wanted):
            return i
    raise ConfigError(f"{option} {wanted}: unknown to {where} (its {what}s: {listed})")


def convert(src: UnitHifiganSource, *, style: str | None = None, f0_bin: str | None = None,
            fold: Fold = "table") -> tuple[dict[str, torch.Tensor], GeneratorConfig]:
    """fairseq ``CodeGenerator`` state + config of ``src``, the chosen style / f0 bin built in."""
    import torch

    fixed = {"f0": _pick(src.f0_bins, f0_bin, what="f0 bin", option="--f0-bin", where=src.path),
             "style": _pick(src.styles, style, what="style", option="--style", where=src.path)}
    e = src.embedding_dim
    table_key = {"f0": "f0_embedding.weight", "style": "style_embedding.weight"}
    folded = {b: src.state[table_key[b]][row] for b, row in fixed.items() if row is not None}
    # Input-channel slices of conv_pre per block, in the source's order.
    span = {b: slice(i * e, (i + 1) * e) for i, b in enumerate(src.blocks)}

    state: dict[str, torch.Tensor] = {}
    for key, value in src.state.items():
        name = _fairseq_name(key, len(src.mrf_kernels))
        if name is not None:
            state[name] = value.clone()
    state["dict.weight"] = src.state["unit_embedding.weight"].clone()
    if src.speakers:
        state["spkr.weight"] = src.state["speaker_embedding.weight"].clone()
    # Old-style names always (fairseq's weight_norm); conv_pre's v and g, and bias:
    v, g, bias = state["conv_pre.weight_v"], state["conv_pre.weight_g"], state["conv_pre.bias"]
    embedding_dim = e
    if folded and fold == "table":
        # Every unit row carries the fixed embeddings: conv_pre sees the source's input exactly.
        order = ["unit"] + [b for b in ("f0", "style") if b in folded]
        embedding_dim = e * len(order)
        state["dict.weight"] = torch.cat([state["dict.weight"], *(
            folded[b].expand(src.n_units, e) for b in order[1:])], dim=1).contiguous()
        columns = [v[:, span[b]] for b in order]
        if src.speakers:  # fairseq's speaker table is as wide as the unit table: zero-pad it and its columns
            pad = embedding_dim - e
            state["spkr.weight"] = torch.cat([state["spkr.weight"], state["spkr.weight"].new_zeros(len(src.speakers), pad)], 1)
            columns += [v[:, span["speaker"]], v.new_zeros(v.shape[0], pad, v.shape[2])]
        # A permutation plus zero columns: the per-output-channel norm, hence weight_g, is unchanged.
        state["conv_pre.weight_v"] = torch.cat(columns, dim=1).contiguous()
    elif folded:
        # Constant input channels contribute sum_k W[:, block, k] @ e_block to every frame (away from the edges).
        weight = g * v / v.norm(dim=(1, 2), keepdim=True)
        state["conv_pre.bias"] = bias + sum((weight[:, span[b]].sum(-1) @ emb for b, emb in folded.items()),
                                            torch.zeros_like(bias))
        kept = weight[:, torch.cat([torch.arange(e * i, e * (i + 1)) for i, b in enumerate(src.blocks) if b not in folded])]
        state["conv_pre.weight_v"] = kept.contiguous()
        state["conv_pre.weight_g"] = kept.norm(dim=(1, 2), keepdim=True)

    cfg = GeneratorConfig(
        num_embeddings=src.n_units, upsample_initial_channel=src.channels, embedding_dim=embedding_dim,
        upsample_rates=UPSAMPLE_RATES, upsample_kernel_sizes=UPSAMPLE_KERNELS, resblock_kernel_sizes=src.mrf_kernels,
        resblock_dilation_sizes=(MRF_DILATIONS,) * len(src.mrf_kernels), multispkr=bool(src.speakers),
        num_speakers=len(src.speakers), speakers=src.speakers, duration_predictor=False, sampling_rate=SAMPLE_RATE)
    return state, cfg


def bias_fold_reach(cfg: GeneratorConfig) -> int:
    """Output samples at each end that ``--fold bias`` may change: where conv_pre's first / last 3
    frames (7-tap kernel, zero padding) reach through the upsamplers, MRFs and conv_post."""
    last = 2  # last differing index, from the start (the end is symmetric)
    for rate, kernel in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes):
        last = rate * last - (kernel - rate) // 2 + kernel - 1  # ConvTranspose1d: j reaches u*j - p + k - 1
        last += max(sum((k - 1) // 2 * (d + 1) for d in dil)  # each layer: dilated conv, then plain conv
                    for k, dil in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes))
    return last + 3 + 1  # conv_post's 7 taps; a count, not an index


def import_vocoder(source: str | Path, out: str | Path, *, config: str | Path | None = None,
                   style: str | None = None, f0_bin: str | None = None, fold: Fold = "table") -> GeneratorConfig:
    """Write ``out/vocoder.pt`` + ``out/config.json`` (fairseq format) from a unit-hifigan vocoder."""
    from .checkpoint import check_state, save_vocoder
    from .model import build_generator

    src = read_unit_hifigan(source, config=config)
    state, cfg = convert(src, style=style, f0_bin=f0_bin, fold=fold)
    check_state(state, build_generator(cfg), where=str(src.path))  # loads strictly into fairseq's CodeGenerator
    out = Path(out)
    save_vocoder(state, cfg, checkpoint=out / "vocoder.pt", config=out / "config.json")
    return cfg


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, type=Path,
                        help="unit-hifigan UnitVocoder: its model.safetensors or the folder holding it")
    parser.add_argument("--config", type=Path, help="its config.json (default: beside model.safetensors)")
    parser.add_argument("--out", required=True, type=Path, help="output folder: vocoder.pt + config.json (fairseq format)")
    parser.add_argument("--style", help="style-conditioned vocoders: the style to build in (fairseq has no style input)")
    parser.add_argument("--f0-bin", help="f0-conditioned vocoders: the f0 bin (a value of f0_bins) to build in")
    parser.add_argument("--fold", choices=("table", "bias"), default="table",
                        help="how --style / --f0-bin are built in: 'table' appends them to every unit embedding "
                             "(exact; wider embedding_dim), 'bias' adds their constant into conv_pre's bias (published "
                             "shape; inexact in the first / last frames) (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    cfg = import_vocoder(args.source, args.out, config=args.config, style=args.style, f0_bin=args.f0_bin, fold=args.fold)
    speakers = f"{cfg.num_speakers} speakers ({', '.join(cfg.speakers[:5])}{', ...' if cfg.num_speakers > 5 else ''})" \
        if cfg.multispkr else "single speaker"
    if args.fold == "bias" and (args.style is not None or args.f0_bin is not None):
        reach = bias_fold_reach(cfg)
        print(f"--fold bias: the first and last {reach} samples ({reach / cfg.sampling_rate:.2f} s) of every "
              "waveform may differ from the source's (exact elsewhere); --fold table is exact everywhere")
    built = [f"{name} {value}" for name, value in (("style", args.style), ("f0 bin", args.f0_bin)) if value is not None]
    print(f"{args.source} -> {args.out / 'vocoder.pt'} + config.json: {cfg.num_embeddings} units, "
          f"{cfg.upsample_initial_channel} channels, {speakers}"
          f"{'; built in (' + args.fold + '): ' + ', '.join(built) if built else ''}")
    return 0
