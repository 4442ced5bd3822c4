"""Unit embedding tables initialised from the k-means centroids.

The LM's input embedding row of unit ``k`` is derived from centroid ``k`` (the symbol ``"k"`` of
the fixed dictionary of :mod:`spokenlm_plugin.ulm.data`). Centroids are ``K x D`` (D = 768 for
HuBERT Base) while the embedding is usually narrower (200 for the ZeroSpeech 2021 LSTM), so two
mappings are offered:

``pca``
    A fixed PCA of the centroids to the embedding size: row ``k`` = ``(c_k - mean) @ V[:, :E]``
    (``V``: principal axes of the K centroids, each axis signed so that its largest-magnitude
    coordinate is positive), times one global factor. Needs ``E <= min(K, D)``. The table keeps
    the geometry of the centroids along their main directions and trains freely afterwards.
``project``
    A table of the centroid size D, row ``k`` = ``c_k - mean`` times one global factor, followed by
    a learned linear projection D -> E (for the transformer LM, fairseq's own ``project_in_dim``).
    Nothing is discarded; the projection learns which directions matter.

The global factor gives the table the standard deviation of the layer's default random
initialisation (LSTM: uniform(-0.1, 0.1); transformer: normal(0, width^-1/2)), so training starts
at the usual scale. The rows of fairseq's special symbols (``<s> <pad> </s> <unk>``) keep their
default initialisation (``<pad>`` stays zero): they are not units and have no centroid.

The centroid file is read once, when a model is first built: the model then records its table's
width in the config fairseq saves with the checkpoint (``centroid_table_dim``; E in ``pca`` mode,
D in ``project`` mode). A model rebuilt from that config (a checkpoint reload) builds a table of
that width with the default initialisation and never opens the file: the trained table comes from
the checkpoint's weights, as a fine-tuned HuBERT's pretrained encoder does (``w2v_args``).
Checkpoints made before this record have no width: their reload reads the file, as it used to.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn as nn

from ..core.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

CentroidInit = Literal["pca", "project"]

#: std of fairseq's default embedding initialisation, per family (uniform(-0.1, 0.1) for LSTMs).
LSTM_INIT_STD = 0.1 / math.sqrt(3.0)


def transformer_init_std(width: int) -> float:
    """std of fairseq's transformer embedding initialisation, normal(0, width^-1/2)."""
    return width ** -0.5


def load_unit_centroids(path: str | os.PathLike) -> np.ndarray:
    """Centroids (K x D float32) of the k-means whose units the LM models."""
    from ..units.kmeans import load_centroids

    return load_centroids(path)


def initial_centroids(cfg: DictConfig) -> np.ndarray | None:
    """The centroids a model's embedding starts from, or None: no ``unit_centroids``, or a
    ``centroid_table_dim`` recorded (a rebuild from a checkpoint, whose weights hold the table)."""
    if not cfg.unit_centroids or cfg.get("centroid_table_dim") is not None:
        return None
    return load_unit_centroids(cfg.unit_centroids)


def record_table_dim(cfg: DictConfig, dim: int) -> None:
    """Set ``centroid_table_dim`` in a model's config and in the run's config that fairseq saves.

    fairseq builds a model from a merged copy of the run's model config (``merge_with_parent``),
    whose parent is the run's config: a value set in the copy alone would not reach the checkpoint.
    """
    from omegaconf import DictConfig, open_dict

    nodes = [cfg]
    run = cfg._get_parent()
    run_model = run.get("model") if isinstance(run, DictConfig) else None
    # Only the node this model was built from (same name and centroids), never another model's.
    if (isinstance(run_model, DictConfig) and run_model is not cfg and run_model.get("_name") == cfg.get("_name")
            and run_model.get("unit_centroids") == cfg.unit_centroids):
        nodes.append(run_model)
    for node in nodes:
        with open_dict(node):
            node.centroid_table_dim = dim


def pca_axes(x: np.ndarray, dim: int) -> np.ndarray:
    """The first ``dim`` principal axes of the rows of ``x`` (D x dim), in float64, each signed so
    that its largest-magnitude coordinate is positive (sklearn's PCA convention: deterministic)."""
    from sklearn.decomposition import PCA

    return PCA(n_components=dim, svd_solver="full").fit(x.astype(np.float64)).components_.T


def centroid_table(centroids: np.ndarray, *, mode: CentroidInit, dim: int, target_std: float) -> np.ndarray:
    """The K x width table whose row k is derived from centroid k (see the module docstring).

    :param dim: the embedding size E (the table width in ``pca`` mode; ignored by ``project``,
        whose width is the centroid size D).
    """
    if centroids.ndim != 2:
        raise ConfigError(f"centroids must be K x D, got shape {centroids.shape}")
    k, d = centroids.shape
    centred = centroids.astype(np.float64) - centroids.mean(axis=0, keepdims=True)
    if mode == "pca":
        if dim > min(k, d):
            raise ConfigError(
                f"--centroid-init pca: the embedding size {dim} exceeds min(K, D) = min({k}, {d}), the number "
                "of principal axes of the centroids; use --centroid-init project or a smaller embedding"
            )
        table = centred @ pca_axes(centroids, dim)
    elif mode == "project":
        table = centred
    else:
        raise ConfigError(f"--centroid-init {mode!r}: expected 'pca' or 'project'")
    std = table.std()
    if not np.isfinite(std) or std == 0:
        raise ConfigError("the centroids are all identical: they carry nothing to initialise embeddings with")
    return (table * (target_std / std)).astype(np.float32)


def unit_rows(dictionary, num_units: int) -> torch.Tensor:
    """Dictionary index of unit 0..num_units-1 (symbols ``"0"``, ``"1"``, ...), checked."""
    n_dict_units = len(dictionary) - dictionary.nspecial
    if n_dict_units != num_units:
        raise ConfigError(
            f"the LM dictionary has {n_dict_units} units but the centroids {num_units} rows; "
            "use the centroids of the k-means that made these units"
        )
    indices = [dictionary.index(str(u)) for u in range(num_units)]
    missing = [u for u, i in zip(range(num_units), indices) if i == dictionary.unk()]
    if missing:
        raise ConfigError(
            f"the LM dictionary lacks units {missing[:5]}{'...' if len(missing) > 5 else ''}; "
            f"build the data with 'spokenlm lm-data --vocab-size {num_units}'"
        )
    return torch.tensor(indices, dtype=torch.long)


def fill_unit_rows(embedding: nn.Embedding, dictionary, table: np.ndarray) -> None:
    """Copy row k of ``table`` into the embedding row of unit k (specials are left as they are)."""
    rows = unit_rows(dictionary, table.shape[0])
    if embedding.embedding_dim != table.shape[1]:
        raise ConfigError(f"embedding width {embedding.embedding_dim} != centroid table width {table.shape[1]}")
    with torch.no_grad():
        embedding.weight[rows] = torch.from_numpy(table).to(embedding.weight)


class ProjectedEmbedding(nn.Module):
    """An embedding table of the centroid size followed by a learned linear projection."""

    def __init__(self, table: nn.Embedding, proj: nn.Linear) -> None:
        super().__init__()
        self.table = table
        self.proj = proj
        self.padding_idx = table.padding_idx
        self.embedding_dim = proj.out_features

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(self.table(tokens))
