"""Same-format copies of the paper's released files, built locally (never downloaded).

- The fine-tuned HuBERT (``coml/hubert-phoneme-classification``, revisions main / 10min / 1h / 10h /
  ctc-100h): the paper's ``HuBERTPhoneme`` (spokenlm-phoneme ``src/phonslm/model.py``), torchaudio's
  ``hubert_pretrain_model`` with ``hubert_pretrain_base``'s arguments and an ``aux`` Linear head, saved
  with safetensors under its key names (``model.*``, ``aux.*``) beside a ``config.json``
  (:class:`Paper`, :func:`make_paper`, :func:`save_paper`).
- The unit vocoders (revision ``vocoder-base-l11``): unit-hifigan's ``UnitVocoder`` layout (modules
  named as unit-hifigan names them, torch's parametrized weight norm so that the saved keys are
  ``parametrizations.weight.original0/1``), ``model.safetensors`` + ``config.json`` (:func:`reference`).
- The k-means (revision ``kmeans``): sklearn MiniBatchKMeans fitted with fairseq's simple_kmeans
  recipe (:func:`fairseq_kmeans`), written as joblib.dump writes it under numpy 2 and scikit-learn
  1.5.2 (:func:`dump_as_released`; pinned byte for byte in tests/test_released_kmeans.py).
"""

from __future__ import annotations

import io
import json
import pickle
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchaudio.models as ta_models
from joblib.numpy_pickle import NumpyPickler
from safetensors.torch import save_file
from sklearn.cluster import MiniBatchKMeans
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

# ------------------------------------------------------------------ HuBERTPhoneme (the fine-tuned HuBERT)

#: Transformer layers of the test models: 2 instead of HuBERT Base's 12, for speed (the converter
#: accepts a Base body of any depth).
LAYERS = 2
#: torchaudio.models.hubert_pretrain_base's arguments with the paper's FINETUNING_HUBERT_CONFIG
#: (spokenlm-phoneme src/phonslm/model.py), dropouts off so that the reference forward is deterministic.
PAPER_BODY = dict(
    extractor_mode="group_norm", extractor_conv_layer_config=None, extractor_conv_bias=False, encoder_embed_dim=768,
    encoder_projection_dropout=0.0, encoder_pos_conv_kernel=128, encoder_pos_conv_groups=16,
    encoder_num_layers=LAYERS, encoder_num_heads=12, encoder_attention_dropout=0.0, encoder_ff_interm_features=3072,
    encoder_ff_interm_dropout=0.0, encoder_dropout=0.0, encoder_layer_norm_first=False, encoder_layer_drop=0.0,
    mask_prob=0.75, mask_selection="static", mask_other=0.0, mask_length=10, no_mask_overlap=False, mask_min_space=1,
    mask_channel_prob=0.5, mask_channel_selection="static", mask_channel_other=0.0, mask_channel_length=10,
    no_mask_channel_overlap=False, mask_channel_min_space=1, skip_masked=False, skip_nomask=False, num_classes=500,
    final_dim=256, feature_grad_mult=None,
)


class Paper:
    """The source model: torchaudio body + aux head, and its reference forward."""

    def __init__(self, body: ta_models.HuBERTPretrainModel, aux: torch.nn.Linear) -> None:
        self.body, self.aux = body, aux

    @torch.no_grad()
    def layers(self, wav: torch.Tensor) -> list[torch.Tensor]:
        """Layers 1..N then the logits (``HuBERTPhoneme.extract_features``) of one 1-D waveform."""
        x, _ = self.body.wav2vec2.extract_features(wav[None])
        return [h[0] for h in x] + [self.aux(x[-1])[0]]

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"model.{k}": v for k, v in self.body.state_dict().items()}
        state.update({f"aux.{k}": v for k, v in self.aux.state_dict().items()})
        return {k: v.detach().contiguous() for k, v in state.items()}


def perturb(module: torch.nn.Module, *, seed: int) -> None:
    """Move every parameter off its initial value (so that a wrong mapping shows), eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    module.eval()


def paper_body(*, seed: int = 1) -> ta_models.HuBERTPretrainModel:
    """The torchaudio body of :data:`PAPER_BODY`, perturbed."""
    torch.manual_seed(0)
    body = ta_models.hubert_pretrain_model(**PAPER_BODY)
    perturb(body, seed=seed)
    return body


def make_paper(*, rows: int = 40, body: ta_models.HuBERTPretrainModel | None = None) -> Paper:
    """A HuBERTPhoneme: frame head (40 rows: SIL + 39 phones) or CTC head (41 rows, blank = 40)."""
    aux = torch.nn.Linear(768, rows)
    perturb(aux, seed=rows)
    return Paper(paper_body() if body is None else body, aux)


def save_paper(paper: Paper, folder: Path, *, config: dict | None = None) -> Path:
    """``folder/model.safetensors`` + ``folder/config.json``, as ``HuBERTPhoneme.save_pretrained`` writes them."""
    folder.mkdir(parents=True)
    save_file(paper.state_dict(), folder / "model.safetensors", metadata={"format": "pt"})
    ctc = paper.aux.out_features == 41
    (folder / "config.json").write_text(json.dumps(config or {"freeze_encoder": True, "ctc_training": ctc}))
    return folder


# ------------------------------------------------------------------ unit-hifigan's UnitVocoder

#: The reference vocoder's default sizes: generator channels (unit-hifigan: 512), embedding width,
#: units, and hop (samples per 50 Hz unit).
CHANNELS, DIM, N_UNITS, HOP = 32, 16, 12, 320


class ConvLayer(nn.Module):
    """leaky -> dilated conv -> leaky -> conv, plus the input."""

    def __init__(self, ch: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = weight_norm(nn.Conv1d(ch, ch, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation))
        self.conv2 = weight_norm(nn.Conv1d(ch, ch, kernel, padding=(kernel - 1) // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.1)), 0.1))


class MultiReceptiveFieldFusion(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.residual_blocks = nn.ModuleList(
            nn.Sequential(*(ConvLayer(ch, k, d) for d in (1, 3, 5))) for k in (3, 7, 11))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([block(x) for block in self.residual_blocks]).mean(0)


class Generator(nn.Module):
    def __init__(self, cin: int, ch: int) -> None:
        super().__init__()
        rates, kernels = (5, 4, 4, 2, 2), (11, 8, 8, 4, 4)
        self.conv_pre = weight_norm(nn.Conv1d(cin, ch, 7, padding=3))
        self.upsamplers = nn.ModuleList(
            weight_norm(nn.ConvTranspose1d(ch >> i, ch >> (i + 1), k, u, padding=(k - u) // 2))
            for i, (u, k) in enumerate(zip(rates, kernels)))
        self.mrfs = nn.ModuleList(MultiReceptiveFieldFusion(ch >> (i + 1)) for i in range(len(rates)))
        self.conv_post = weight_norm(nn.Conv1d(ch >> len(rates), 1, 7, padding=3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(x)
        for up, mrf in zip(self.upsamplers, self.mrfs):
            x = mrf(up(F.leaky_relu(x, 0.1)))
        return torch.tanh(self.conv_post(F.leaky_relu(x, 0.01)))  # HiFi-GAN's last leaky ReLU: default slope


class UnitVocoder(nn.Module):
    """Unit embedding + per-utterance f0-bin / speaker / style embeddings, concatenated in that order."""

    def __init__(self, *, n_units: int = N_UNITS, dim: int = DIM, channels: int = CHANNELS,
                 speakers: list[str] | None = None, styles: list[str] | None = None,
                 f0_bins: list[int] | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.config = {"n_units": n_units, "speakers": speakers, "styles": styles, "f0_bins": f0_bins,
                       "embedding_dim": dim}
        self.unit_embedding = nn.Embedding(n_units, dim)
        self.conds = [name for name, rows in (("f0", f0_bins), ("speaker", speakers), ("style", styles)) if rows]
        for name, rows in (("f0", f0_bins), ("speaker", speakers), ("style", styles)):
            if rows:
                setattr(self, f"{name}_embedding", nn.Embedding(len(rows), dim))
        self.generator = Generator(dim * (1 + len(self.conds)), channels)

    def forward(self, units: list[int], **rows: int) -> np.ndarray:
        code = torch.tensor(units)
        x = [self.unit_embedding(code)] + [
            getattr(self, f"{name}_embedding").weight[rows[name]].expand(len(units), self.dim) for name in self.conds]
        with torch.no_grad():
            return self.generator(torch.cat(x, 1).T[None]).squeeze().numpy()

    def save(self, folder: Path) -> Path:
        """``folder/model.safetensors`` + ``folder/config.json``, as unit-hifigan's ``save_pretrained``."""
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, folder / "model.safetensors")
        (folder / "config.json").write_text(json.dumps(self.config))
        return folder


def reference(seed: int = 0, **kwargs: Any) -> UnitVocoder:
    """A random UnitVocoder whose output stays clear of tanh's saturation (so differences show)."""
    torch.manual_seed(seed)
    model = UnitVocoder(**kwargs)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("original0"):  # weight-norm magnitudes, away from their initial value ||v||
                p.uniform_(0.5, 1.2)
            elif name.endswith("bias"):
                p.normal_(0, 0.1)
            else:
                p.normal_(0, 1)
    return model.eval()


# ------------------------------------------------------------------ k-means pickled under numpy 2


class _Numpy2Names:
    """Pickler mix-in: numpy's builders saved under numpy 2's module names (``numpy._core.*``).

    The pure-Python pickler saves a global as SHORT_BINUNICODE module, SHORT_BINUNICODE name,
    STACK_GLOBAL, then MEMOIZE: the same opcodes as always, only the module string is numpy 2's.
    """

    def save_global(self: Any, obj: Any, name: str | None = None) -> None:
        module = getattr(obj, "__module__", None) or ""
        if module == "numpy.core" or module.startswith("numpy.core."):
            assert self.proto >= 4  # STACK_GLOBAL, as numpy 2 + joblib's default protocol write it
            self.save("numpy._core" + module[len("numpy.core"):])
            self.save(name or obj.__qualname__)
            self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
        else:
            super().save_global(obj, name)  # type: ignore[misc]


class Numpy2Pickler(_Numpy2Names, pickle._Pickler):
    # Python functions are saved through the dispatch table, which holds the base class' save_global.
    dispatch = {**pickle._Pickler.dispatch, types.FunctionType: _Numpy2Names.save_global}


class Numpy2JoblibPickler(_Numpy2Names, NumpyPickler):
    """joblib.dump's pickler (arrays as NumpyArrayWrapper + raw bytes), numpy 2's names."""

    dispatch = {**NumpyPickler.dispatch, types.FunctionType: _Numpy2Names.save_global}


def numpy2_pickle(obj: object, *, protocol: int = 4) -> bytes:
    """``pickle.dumps(obj, protocol)`` as numpy 2 writes it."""
    f = io.BytesIO()
    Numpy2Pickler(f, protocol=protocol).dump(obj)
    return f.getvalue()


def dump_as_released(model: object, path: Path) -> Path:
    """What joblib.dump(model, path) writes under numpy 2 and scikit-learn 1.5.2 (the paper's setup)."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr("sklearn.base.__version__", "1.5.2")  # BaseEstimator.__getstate__ stores it
        with open(path, "wb") as f:
            Numpy2JoblibPickler(f, protocol=4).dump(model)  # what joblib.dump does for an uncompressed file
    return path


def fairseq_kmeans(x: np.ndarray, k: int) -> MiniBatchKMeans:
    """fairseq's simple_kmeans/learn_kmeans.py model (seeded here)."""
    return MiniBatchKMeans(n_clusters=k, init="k-means++", max_iter=100, batch_size=64, compute_labels=False,
                           tol=0.0, max_no_improvement=100, init_size=None, n_init=3, reassignment_ratio=0.0,
                           random_state=0).fit(x)
