"""Speech encoders: a dense model (one HuBERT layer, or phone logits) and dense + k-means -> units.

textlesslib-style facade over fairseq checkpoints::

    dense = DenseModel.from_checkpoint("hubert_base_ls960.pt", layer=11)
    feats = dense(waveform)                         # frames x 768, 50 Hz
    encoder = SpeechEncoder(dense, load_centroids("km500.npy"), deduplicate=True)
    out = encoder(waveform)                         # {"dense", "units", "durations"}

:class:`DenseModel` works with fairseq's ``HubertModel`` and with any model that has the same
``extract_features(source, padding_mask, output_layer=L)`` interface and a ``num_layers`` attribute
(the plugin's phoneme classifier, whose ``forward`` also returns phone ``"logits"``).

Batching is exact: the features of an utterance do not depend on its batch-mates. fairseq's own
padding path is not: (1) the first CNN block of HuBERT Base ("default" extractor mode) normalises
each channel over time (GroupNorm), so zero padding changes the statistics; (2) ``HubertModel``
turns the sample-level padding mask into frames by chunking, which marks frames whose receptive
field runs into the padding as real. During a batch, forward hooks compute the GroupNorm statistics
over each utterance's own time steps and give the transformer the exact frame mask
(``num_frames(n)`` real frames); they are removed afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.checkpoints import model_name, read_checkpoint, task_name
from ..core.errors import CheckpointError, ConfigError
from ..core.phones import HOP, SAMPLE_RATE
from ..core.runtime import DeviceName, resolve_device

if TYPE_CHECKING:  # fairseq is untyped (Any to mypy): these name what the functions return
    from fairseq.models.wav2vec.wav2vec2 import ConvFeatureExtractionModel, TransformerEncoder

Layer = int | Literal["logits"]
DTypeName = Literal["auto", "float32", "bfloat16"]


def resolve_dtype(dtype: DTypeName, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on a GPU that supports it, float32 otherwise."""
    if dtype == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]


def parse_layer(value: str) -> Layer:
    """A ``--layer`` value: a positive integer or ``logits``."""
    if value == "logits":
        return "logits"
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"--layer {value!r}: expected a transformer layer (1, 2, ...) or 'logits'")
    return int(value)


def _conv_out(n: int, conv: nn.Conv1d) -> int:
    if isinstance(conv.padding, str):  # 'same' / 'valid': not fairseq's CNN, which pads by a number
        raise CheckpointError(f"{conv}: padding {conv.padding!r}, expected a number of samples")
    (k,), (s,), (p,), (d,) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    return max(0, (n + 2 * p - d * (k - 1) - 1) // s + 1)


def _feature_extractor(model: nn.Module) -> ConvFeatureExtractionModel:
    from fairseq.models.wav2vec.wav2vec2 import ConvFeatureExtractionModel

    found = [m for m in model.modules() if isinstance(m, ConvFeatureExtractionModel)]
    if len(found) != 1:
        raise CheckpointError(
            f"{type(model).__name__}: expected one HuBERT/wav2vec 2.0 CNN feature extractor, found {len(found)}; "
            "is this a HuBERT checkpoint?"
        )
    return found[0]


def _encoders(model: nn.Module) -> list[TransformerEncoder]:
    from fairseq.models.wav2vec.wav2vec2 import TransformerEncoder

    return [m for m in model.modules() if isinstance(m, TransformerEncoder)]


def _num_layers(model: nn.Module) -> int:
    n = getattr(model, "num_layers", None)
    if isinstance(n, int):
        return n
    encoders = _encoders(model)
    if len(encoders) != 1:
        raise CheckpointError(f"{type(model).__name__}: cannot tell its number of transformer layers")
    return len(encoders[0].layers)


def _masked_group_norm(module: nn.GroupNorm, inputs: tuple[torch.Tensor], output: torch.Tensor, *,
                       lengths: torch.Tensor) -> torch.Tensor:
    """Forward hook: GroupNorm whose statistics cover each utterance's first ``lengths`` steps."""
    (x,) = inputs
    b, c, t = x.shape
    g = module.num_groups
    xf = x.float().view(b, g, c // g, t)
    valid = (torch.arange(t, device=x.device)[None, :] < lengths[:, None]).view(b, 1, 1, t).float()
    count = (lengths.clamp(min=1).float() * (c // g)).view(b, 1, 1, 1)
    mean = (xf * valid).sum(dim=(2, 3), keepdim=True) / count
    var = (((xf - mean) * valid) ** 2).sum(dim=(2, 3), keepdim=True) / count
    y = ((xf - mean) / torch.sqrt(var + module.eps)).view(b, c, t)
    if module.affine:
        y = y * module.weight.float().view(1, c, 1) + module.bias.float().view(1, c, 1)
    return y.type_as(output)


def _exact_frame_mask(module: nn.Module, args: tuple, kwargs: dict[str, Any], *,
                      mask: torch.Tensor) -> tuple[tuple, dict[str, Any]]:
    """Forward pre-hook of the transformer: replace its padding mask by the exact frame mask."""
    x = args[0] if args else kwargs["x"]
    if x.shape[:2] != mask.shape:
        raise CheckpointError(
            f"{type(module).__name__}: got {tuple(x.shape[:2])} frames but the CNN arithmetic gives "
            f"{tuple(mask.shape)}; the model is not a HuBERT-like 20 ms encoder"
        )
    if len(args) > 1:
        args = (args[0], mask, *args[2:])
    else:
        kwargs = {**kwargs, "padding_mask": mask}
    return args, kwargs


class DenseModel:
    """Frame features (50 Hz) of one transformer layer (1-based, as fairseq's ``output_layer``), or
    the phone logits (``layer="logits"``) of a fine-tuned classifier.

    :param model: a fairseq ``HubertModel`` or a model with the same interface (see the module doc).
    :param layer: transformer layer 1..num_layers, or ``"logits"``.
    :param normalize: layer-normalise each waveform first (the checkpoint task's ``normalize``;
        True for HuBERT Large / X-Large, False for Base).
    :param device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    :param dtype: ``auto`` (bfloat16 autocast on a GPU, float32 on CPU), ``float32`` or ``bfloat16``.
        Features are always returned as float32.
    :param name: what the model is called in messages and dump records (a checkpoint's path).
    :param fingerprint: identifies the weights (a checkpoint's size and mtime), so that a dump
        never resumes with other weights under the same name.
    """

    expected_sample_rate = SAMPLE_RATE
    code_hop_size = HOP

    def __init__(
        self,
        model: nn.Module,
        *,
        layer: Layer,
        normalize: bool = False,
        device: DeviceName | str | torch.device = "auto",
        dtype: DTypeName = "auto",
        name: str | None = None,
        fingerprint: str = "",
    ) -> None:
        self.name = name or type(model).__name__
        self.fingerprint = fingerprint
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        # Any: extract_features (fairseq's HubertModel or alike, see the module doc) is not on nn.Module
        self.model: Any = model.eval().to(self.device)
        self.normalize = normalize
        self._extractor = _feature_extractor(model)
        self.num_layers = _num_layers(model)
        from fairseq.models.hubert import HubertModel

        # Phone logits exist only for classifiers (fine-tuned by spokenlm), not pretrained HuBERT.
        has_logits = not isinstance(model, HubertModel)
        available = f"layers 1..{self.num_layers}" + (" and 'logits'" if has_logits else "")
        if layer == "logits" and not has_logits:
            raise ConfigError(
                f"{self.name}: layer 'logits' needs a phoneme classifier fine-tuned by spokenlm; "
                f"this pretrained HuBERT has {available}"
            )
        if layer != "logits" and not (isinstance(layer, int) and 1 <= layer <= self.num_layers):
            raise ConfigError(f"{self.name}: layer {layer!r} does not exist; this model has {available}")
        self.layer = layer
        # A probe forward pass checks the interface and gives the output size.
        probe = self.batch([torch.randn(SAMPLE_RATE, generator=torch.Generator().manual_seed(0))])[0]
        self.dim = probe.shape[1]

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        layer: Layer,
        device: DeviceName | str | torch.device = "auto",
        dtype: DTypeName = "auto",
    ) -> DenseModel:
        """Load a fairseq checkpoint (pretrained HuBERT, or fine-tuned by spokenlm)."""
        model, task_cfg = load_checkpoint(path)
        normalize = bool(getattr(task_cfg, "normalize", False))
        stat = Path(path).stat()
        return cls(model, layer=layer, normalize=normalize, device=device, dtype=dtype,
                   name=str(Path(path).resolve()), fingerprint=f"{stat.st_size}:{stat.st_mtime_ns}")

    def num_frames(self, num_samples: int) -> int:
        """Frames of output for ``num_samples`` input samples (CNN arithmetic)."""
        n = num_samples
        for block in self._extractor.conv_layers:
            n = _conv_out(n, next(m for m in block.modules() if isinstance(m, nn.Conv1d)))
        return n

    @torch.inference_mode()
    def __call__(self, waveform: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Features of one waveform (1-D, 16 kHz): frames x dim, float32, on the model's device."""
        return self.batch([waveform])[0]

    @torch.inference_mode()
    def batch(self, waveforms: Sequence[torch.Tensor | np.ndarray]) -> list[torch.Tensor]:
        """Features of several waveforms in one padded forward pass; equal to one-by-one calls."""
        wavs = [torch.as_tensor(w, dtype=torch.float32).to(self.device) for w in waveforms]
        if any(w.ndim != 1 for w in wavs):
            raise ConfigError("waveforms must be 1-D (mono) tensors of 16 kHz samples")
        if self.normalize:
            wavs = [F.layer_norm(w, w.shape) for w in wavs]
        samples = [len(w) for w in wavs]
        frames = [self.num_frames(n) for n in samples]
        if min(frames) < 1:
            raise ConfigError(f"a waveform of {min(samples)} samples is shorter than one frame (400 samples)")
        source = torch.zeros(len(wavs), max(samples), device=self.device)
        for i, w in enumerate(wavs):
            source[i, : len(w)] = w
        padded = len(set(samples)) > 1
        # Equal lengths take fairseq's unpadded path (padding_mask=None), exactly as one by one.
        sample_mask = None
        if padded:
            n_samples = torch.tensor(samples, device=self.device)
            sample_mask = torch.arange(source.shape[1], device=self.device)[None, :] >= n_samples[:, None]
        autocast = torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)
        with autocast, self._exact_padding(samples, frames) if padded else contextlib.nullcontext():
            if self.layer == "logits":
                out = self.model(source=source, padding_mask=sample_mask)
                if not isinstance(out, dict) or "logits" not in out:
                    raise CheckpointError(f"{self.name}: the model's forward returns no 'logits'")
                feats = out["logits"]
            else:
                feats, _ = self.model.extract_features(source, padding_mask=sample_mask, output_layer=self.layer)
        if feats.shape[:2] != (len(wavs), max(frames)):
            raise CheckpointError(
                f"{self.name}: output of shape {tuple(feats.shape)}, expected {len(wavs)} x {max(frames)} frames"
            )
        return [f[:n].float() for f, n in zip(feats, frames)]

    @contextlib.contextmanager
    def _exact_padding(self, samples: Sequence[int], frames: Sequence[int]) -> Iterator[None]:
        handles = []
        lengths = list(samples)
        for block in self._extractor.conv_layers:
            lengths = [_conv_out(n, next(m for m in block.modules() if isinstance(m, nn.Conv1d))) for n in lengths]
            for m in block.modules():
                if isinstance(m, nn.GroupNorm):
                    hook = functools.partial(_masked_group_norm, lengths=torch.tensor(lengths, device=self.device))
                    handles.append(m.register_forward_hook(hook))
        n_frames = torch.tensor(frames, device=self.device)
        mask = torch.arange(max(frames), device=self.device)[None, :] >= n_frames[:, None]
        for enc in _encoders(self.model):
            pre_hook = functools.partial(_exact_frame_mask, mask=mask)
            handles.append(enc.register_forward_pre_hook(pre_hook, with_kwargs=True))
        try:
            yield
        finally:
            for h in handles:
                h.remove()


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, Any]:
    """``(model, task config)`` of a fairseq checkpoint; no data folder is needed when the
    checkpoint stores its task state (dictionaries), as fairseq has done since 2021."""
    path = Path(path)
    hint = "expected a HuBERT checkpoint (model 'hubert') or one fine-tuned by spokenlm"
    state = read_checkpoint(path, hint=hint)
    from fairseq import checkpoint_utils, models, tasks  # after read_checkpoint has registered the plugin

    arch, task_kind = model_name(state), task_name(state)
    if arch not in models.MODEL_REGISTRY or task_kind not in tasks.TASK_REGISTRY:
        raise CheckpointError(f"{path}: model {arch!r} / task {task_kind!r} is not registered with fairseq; {hint}")
    try:
        (model,), _, task = checkpoint_utils.load_model_ensemble_and_task([str(path)], state=state)
    except FileNotFoundError as e:
        raise CheckpointError(
            f"{path}: the checkpoint has no task state and its task wants a file ({e.filename}); "
            "re-save it with its dictionaries (task_state)"
        ) from e
    return model, task.cfg


class SpeechEncoder:
    """Waveform -> dense features -> units (nearest centroid), optionally deduplicated.

    Returns ``{"dense": frames x dim, "units": int64, "durations": int64}`` per waveform
    (``durations``: frames per unit; all ones without ``deduplicate``).
    """

    def __init__(self, dense: DenseModel, centroids: np.ndarray, *, deduplicate: bool = False) -> None:
        if centroids.ndim != 2 or centroids.shape[1] != dense.dim:
            raise ConfigError(
                f"centroids of shape {centroids.shape} do not fit {dense.dim}-dim features of {dense.name}"
            )
        self.dense = dense
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.deduplicate = deduplicate

    @classmethod
    def from_files(
        cls,
        checkpoint: str | os.PathLike,
        centroids: str | os.PathLike,
        *,
        layer: Layer,
        deduplicate: bool = False,
        device: DeviceName = "auto",
        dtype: DTypeName = "auto",
    ) -> SpeechEncoder:
        from .kmeans import load_centroids

        dense = DenseModel.from_checkpoint(checkpoint, layer=layer, device=device, dtype=dtype)
        return cls(dense, load_centroids(centroids), deduplicate=deduplicate)

    @property
    def vocab_size(self) -> int:
        return self.centroids.shape[0]

    def __call__(self, waveform: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
        return self.batch([waveform])[0]

    def batch(self, waveforms: Sequence[torch.Tensor | np.ndarray]) -> list[dict[str, torch.Tensor]]:
        from ..core.km import deduplicate
        from .kmeans import assign_units

        results = []
        for dense in self.dense.batch(waveforms):
            units = assign_units(dense.cpu().numpy(), self.centroids)
            if self.deduplicate:
                uniq, durations = deduplicate(units.tolist())
            else:
                uniq, durations = units.tolist(), [1] * len(units)
            results.append({
                "dense": dense,
                "units": torch.tensor(uniq, dtype=torch.int64),
                "durations": torch.tensor(durations, dtype=torch.int64),
            })
        return results
