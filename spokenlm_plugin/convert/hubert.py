"""Import HuBERT weights saved by torchaudio or Hugging Face ``transformers`` as a fairseq checkpoint.

The output has the layout of fairseq's ``hubert_base_ls960.pt``: ``cfg`` (the full fairseq config,
with ``model`` = :class:`HubertConfig` ``_name: hubert`` and ``task`` = ``hubert_pretraining``),
``model`` (a :class:`HubertModel` state dict) and ``task_state`` (the label dictionaries), so
``fairseq.checkpoint_utils.load_model_ensemble_and_task``, fairseq's ``hubert_asr`` encoder (``w2v_path``)
and the plugin's ``hubert_frame_cls`` load it like a checkpoint written by ``fairseq-hydra-train``. Its
``task.data`` is empty (no training data belongs to it): pass ``arg_overrides={"data": ...}`` if a task
must read data.

Sources:

- ``torchaudio``: ``torch.save(model.state_dict())`` of ``torchaudio.models.Wav2Vec2Model``
  (``hubert_base()``, ``wav2vec2_model(...)``, a pipeline bundle's ``get_model()``; an ``aux``
  CTC head is dropped) or of ``HuBERTPretrainModel`` (``hubert_pretrain_base()``...: its mask
  embedding and final projection are kept). Layer sizes, kernel sizes, conv bias, extractor norm and
  positional-conv shape are read from the tensor shapes. Three things are not in the shapes: the
  number of attention heads, pre/post layer norm and the CNN strides. They come from ``config``
  (a JSON file of ``torchaudio.models.wav2vec2_model`` keyword arguments, as used to build the model)
  or else from the torchaudio factory named by ``arch`` (``base``/``large``/``xlarge`` =
  ``hubert_base``/``hubert_large``/``hubert_xlarge``; by default the one with the state dict's width).
- ``hf``: a ``save_pretrained`` folder of ``transformers.HubertModel`` (what ``from_pretrained``
  reads), or a single weights file with its ``config.json`` beside it (or given as ``config``).
  transformers loads it (``HubertFor*`` heads are dropped) and torchaudio's own importer
  (``import_huggingface_model``) turns it into a ``Wav2Vec2Model``, read as above; only what that
  importer ignores is taken from ``config.json`` (the activation, the mask embedding) or refused.

- ``hubert-phoneme``: the paper's fine-tuned ``HuBERTPhoneme`` (``model.safetensors`` + ``config.json``),
  encoder and phone head, read and written (``--to hubert-phoneme``) by :mod:`.phoneme`: the output is
  a fine-tuned ``hubert_frame_cls`` / ``hubert_phone_ctc`` checkpoint, not a pretrained one.

What neither layout has is created as fairseq initialises it, with a fixed seed (so a conversion
is reproducible): one label set ``km`` whose dictionary holds a single unit ``0``, its label
embeddings, ``final_proj`` and, when the source has none, the mask embedding. Features do not depend
on them; a torchaudio pretraining model's label embeddings are kept, as units ``0``..``K-1`` after
fairseq's 4 special symbols. Training-time settings (dropouts, masking) are fairseq's defaults:
fine-tuning configs override them. ``task.normalize`` (waveform standardisation, which fairseq's
feature readers and fine-tuning apply from the checkpoint) follows fairseq's convention: on for the
layer-norm CNN of HuBERT Large / X-Large, off for the group-norm CNN of HuBERT Base.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
import math
import pickle
import re
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Mapping, cast

from ..core.errors import CheckpointError, ConfigError
from ..core.io import atomic_path

if TYPE_CHECKING:  # imported where used: `spokenlm <command> --help` must not wait seconds for torch and fairseq
    import torch
    from fairseq.data import Dictionary
    from fairseq.models.hubert.hubert import HubertConfig, HubertModel
    from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig

Layout = Literal["torchaudio", "hf", "hubert-phoneme"]
ExtractorMode = Literal["default", "layer_norm"]
TorchaudioArch = Literal["base", "large", "xlarge"]

SAMPLE_RATE = 16_000
#: The label set the converted checkpoint declares (HuBERT's own k-means labels are called ``km``).
LABEL_SET = "km"
#: Seed of the parameters the sources lack, so converting twice gives the same file.
INIT_SEED = 0
#: HuBERT's CNN (kernel, stride) per layer, shared by every torchaudio and fairseq HuBERT.
STANDARD_CNN = ((10, 5),) + ((3, 2),) * 4 + ((2, 2),) * 2

#: What a torchaudio state dict does not tell, per factory: (attention heads, layer_norm_first).
_TORCHAUDIO_FACTORIES: dict[str, tuple[int, bool]] = {"base": (12, False), "large": (16, True), "xlarge": (16, True)}
_FACTORY_BY_WIDTH = {768: "base", 1024: "large", 1280: "xlarge"}

#: transformers activation name -> fairseq's (same function).
_HF_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "tanh": "tanh", "linear": "linear",
                   "gelu_new": "gelu_accurate", "gelu_pytorch_tanh": "gelu_accurate"}
#: torchaudio parameter name (``Wav2Vec2Model``, ``HuBERTPretrainModel`` without its ``wav2vec2.``)
#: -> fairseq HubertModel name. The CNN norms are separate: their fairseq name depends on the
#: extractor mode.
_TO_FAIRSEQ: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(p), r) for p, r in (
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"feature_extractor.conv_layers.\1.0.\2"),
    (r"encoder\.feature_projection\.layer_norm\.(weight|bias)", r"layer_norm.\1"),
    (r"encoder\.feature_projection\.projection\.(weight|bias)", r"post_extract_proj.\1"),
    (r"encoder\.transformer\.pos_conv_embed\.conv\.(bias|weight_g|weight_v)", r"encoder.pos_conv.0.\1"),
    (r"encoder\.transformer\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.transformer\.layers\.(\d+)\.attention\.(q|k|v|out)_proj\.(weight|bias)",
     r"encoder.layers.\1.self_attn.\2_proj.\3"),
    (r"encoder\.transformer\.layers\.(\d+)\.layer_norm\.(weight|bias)", r"encoder.layers.\1.self_attn_layer_norm.\2"),
    (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(weight|bias)", r"encoder.layers.\1.fc1.\2"),
    (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.output_dense\.(weight|bias)", r"encoder.layers.\1.fc2.\2"),
    (r"encoder\.transformer\.layers\.(\d+)\.final_layer_norm\.(weight|bias)",
     r"encoder.layers.\1.final_layer_norm.\2"),
    (r"mask_generator\.mask_embedding", "mask_emb"),
    (r"logit_generator\.final_proj\.(weight|bias)", r"final_proj.\1"),
))
#: HuBERTPretrainModel's label embeddings (unit rows, without fairseq's special symbols).
_LABEL_EMBEDDINGS = "logit_generator.label_embeddings"
_CNN_NORM = re.compile(r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)")
#: fairseq: GroupNorm is module 2 of the first CNN block; a LayerNorm sits inside module 2 of every block.
_CNN_NORM_TO_FAIRSEQ: dict[str, str] = {"default": r"feature_extractor.conv_layers.\1.2.\2",
                                        "layer_norm": r"feature_extractor.conv_layers.\1.2.1.\2"}
#: Parameters a source may lack; they keep their seeded fairseq initialisation.
_OPTIONAL = frozenset({"mask_emb", "final_proj.weight", "final_proj.bias", "label_embs_concat"})


@dataclass(frozen=True)
class HubertArch:
    """The architecture of a HuBERT encoder, independent of any layout."""

    extractor_mode: ExtractorMode
    conv_layers: tuple[tuple[int, int, int], ...]  # (channels, kernel, stride)
    conv_bias: bool
    embed_dim: int
    ffn_dim: int
    num_layers: int
    num_heads: int
    conv_pos: int
    conv_pos_groups: int
    layer_norm_first: bool
    activation_fn: str = "gelu"

    @property
    def label_rate(self) -> float:
        """Frames per second of the CNN output (50 for HuBERT's 320-sample hop)."""
        return SAMPLE_RATE / math.prod(s for _, _, s in self.conv_layers)

    def describe(self) -> str:
        norm = "pre-LN" if self.layer_norm_first else "post-LN"
        return (f"{self.num_layers} layers x {self.embed_dim} ({self.num_heads} heads, ffn {self.ffn_dim}, {norm}, "
                f"{self.activation_fn}), CNN {len(self.conv_layers)} layers {self.extractor_mode}, "
                f"pos conv {self.conv_pos}/{self.conv_pos_groups}")


@dataclass(frozen=True)
class SourceWeights:
    """A source's encoder weights under torchaudio names, with their original keys."""

    path: Path
    layout: Layout
    tensors: dict[str, tuple[str, torch.Tensor]]  # torchaudio name -> (key in the source, tensor)
    arch: HubertArch
    dropped: tuple[str, ...]  # source keys that are not part of a HuBERT encoder (task heads)


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert_hubert` wrote."""

    out: Path
    arch: HubertArch
    normalize: bool
    created: tuple[str, ...]  # fairseq parameters absent from the source (seeded initialisation)
    dropped: tuple[str, ...]


# ---------------------------------------------------------------------------------------- reading


def _check_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    import torch

    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: not a state dict (got {type(obj).__name__}); save model.state_dict()")
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor: not a model state dict; "
                "save model.state_dict()"
            )
    return dict(obj)


def _torch_state_dict(path: Path) -> dict[str, torch.Tensor]:
    import torch

    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    with path.open("rb") as f:
        legacy_pickle = f.read(1) == b"\x80"  # torch < 1.6 wrote a bare pickle, newer torch a zip file
    if not (zipfile.is_zipfile(path) or legacy_pickle):
        if path.suffix == ".safetensors":
            raise CheckpointError(
                f"{path}: a safetensors file, not a torch.save state dict: use --from hubert-phoneme for the paper's "
                "HuBERTPhoneme, --from hf for a transformers HubertModel"
            )
        raise CheckpointError(f"{path}: not a file written by torch.save; save model.state_dict() with torch.save")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path}: holds Python objects besides tensors (a pickled module, or a training checkpoint?); "
            "save model.state_dict() (a fairseq checkpoint needs no conversion)"
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable torch file ({type(e).__name__}: {e}); is it truncated?") from None
    return _check_state_dict(obj, path)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: {what} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: {what} must be a JSON object")
    return obj


def _rename_weight_norm(key: str) -> str:
    # torch's parametrized weight norm (newer torchaudio / transformers) stores g and v as original0/1.
    return key.replace(".parametrizations.weight.original0", ".weight_g").replace(
        ".parametrizations.weight.original1", ".weight_v")


def _canonical_torchaudio(state: Mapping[str, torch.Tensor], path: Path,
                          layout: Layout) -> tuple[dict[str, tuple[str, torch.Tensor]], list[str]]:
    if layout == "torchaudio" and "aux.weight" in state and any(k.startswith("model.wav2vec2.") for k in state):
        # The paper's HuBERTPhoneme (aux on a wrapped HuBERTPretrainModel): read here, its phone head would be
        # dropped and its untrained logit generator kept as if it were HuBERT's pretraining projection.
        raise CheckpointError(
            f"{path}: a HuBERTPhoneme (the paper's phoneme classifier: model.wav2vec2.*, aux {tuple(state['aux.weight'].shape)}); "
            "convert it with --from hubert-phoneme, which keeps its phone head"
        )
    out: dict[str, tuple[str, torch.Tensor]] = {}
    dropped = []
    for key, value in state.items():
        # A pipeline bundle's get_model() may wrap the Wav2Vec2Model as .model (waveform normalisation);
        # HuBERTPretrainModel holds it as .wav2vec2.
        name = key.removeprefix("model.").removeprefix("wav2vec2.")
        if name.startswith("aux."):  # the CTC head of a fine-tuned Wav2Vec2Model
            dropped.append(key)
            continue
        out[_rename_weight_norm(name)] = (key, value)
    return out, dropped


def _shape(tensors: dict[str, tuple[str, torch.Tensor]], name: str, path: Path) -> tuple[int, ...]:
    if name not in tensors:
        raise CheckpointError(f"{path}: no {name!r} (under any of its layout's names): not a HuBERT state dict")
    return tuple(tensors[name][1].shape)


def _infer_from_shapes(tensors: dict[str, tuple[str, torch.Tensor]], path: Path) -> dict[str, Any]:
    """Every architecture field the tensor shapes determine (strides and norms only partly)."""
    conv_idx = sorted(int(m.group(1)) for k in tensors
                      if (m := re.fullmatch(r"feature_extractor\.conv_layers\.(\d+)\.conv\.weight", k)))
    if not conv_idx:
        raise CheckpointError(f"{path}: no CNN weights (feature_extractor.conv_layers.*): not a HuBERT state dict")
    if conv_idx != list(range(len(conv_idx))):
        raise CheckpointError(f"{path}: CNN layers {conv_idx} are not numbered 0..{len(conv_idx) - 1}")
    conv = []
    for i in conv_idx:
        out_ch, _, kernel = _shape(tensors, f"feature_extractor.conv_layers.{i}.conv.weight", path)
        conv.append((out_ch, kernel))
    biased = [f"feature_extractor.conv_layers.{i}.conv.bias" in tensors for i in conv_idx]
    if any(biased) and not all(biased):
        raise CheckpointError(f"{path}: only some CNN layers have a bias; fairseq needs all or none")
    normed = [i for i in conv_idx if f"feature_extractor.conv_layers.{i}.layer_norm.weight" in tensors]
    mode: ExtractorMode | None
    if len(conv_idx) == 1 and normed == [0]:
        mode = None  # one block: a group norm and a layer norm have the same shape
    elif normed == [0]:
        mode = "default"
    elif normed == conv_idx:
        mode = "layer_norm"
    else:
        raise CheckpointError(
            f"{path}: CNN normalisation on layers {normed}; HuBERT has it on layer 0 only (group norm) or on all"
        )
    layer_idx = {int(m.group(1)) for k in tensors if (m := re.fullmatch(r"encoder\.transformer\.layers\.(\d+)\..*", k))}
    if not layer_idx:
        raise CheckpointError(f"{path}: no transformer layers (encoder layers): not a HuBERT state dict")
    embed_dim = _shape(tensors, "encoder.feature_projection.projection.weight", path)[0]
    v_shape = _shape(tensors, "encoder.transformer.pos_conv_embed.conv.weight_v", path)
    return {
        "conv": conv, "conv_bias": all(biased), "extractor_mode": mode, "embed_dim": embed_dim,
        "ffn_dim": _shape(tensors, "encoder.transformer.layers.0.feed_forward.intermediate_dense.weight", path)[0],
        "num_layers": max(layer_idx) + 1, "conv_pos": v_shape[2], "conv_pos_groups": embed_dim // max(v_shape[1], 1),
    }


def _torchaudio_config(path: Path) -> dict[str, Any]:
    """The keyword arguments of ``wav2vec2_model`` / ``hubert_pretrain_model`` in a JSON file."""
    from torchaudio.models import hubert_pretrain_model, wav2vec2_model

    config = _read_json(path, "torchaudio model config")
    known = set(inspect.signature(wav2vec2_model).parameters) | set(inspect.signature(hubert_pretrain_model).parameters)
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]!r} is not an argument of torchaudio.models.wav2vec2_model")
    if config.get("extractor_mode", "group_norm") not in ("group_norm", "layer_norm"):
        raise ConfigError(f"{path}: extractor_mode must be 'group_norm' or 'layer_norm'")
    return config


def read_torchaudio(path: str | Path, *, config: str | Path | None = None,
                    arch: TorchaudioArch | None = None) -> SourceWeights:
    """Read a torchaudio ``Wav2Vec2Model`` / ``HuBERTPretrainModel`` state dict (see the module docstring)."""
    path = Path(path)
    given = _torchaudio_config(Path(config)) if config is not None else {}
    return _torchaudio_source(_torch_state_dict(path), path=path, layout="torchaudio", given=given, arch=arch)


def _torchaudio_source(state: Mapping[str, torch.Tensor], *, path: Path, layout: Layout, given: dict[str, Any],
                       arch: TorchaudioArch | None = None, activation_fn: str = "gelu",
                       dropped: tuple[str, ...] = ()) -> SourceWeights:
    """The weights of a torchaudio state dict and its architecture: the shapes, then ``given``
    (``wav2vec2_model`` arguments), then the factory ``arch`` (by default the one of that width)."""
    tensors, aux = _canonical_torchaudio(state, path, layout)
    shapes = _infer_from_shapes(tensors, path)
    factory = arch or _FACTORY_BY_WIDTH.get(given.get("encoder_embed_dim", shapes["embed_dim"]))
    heads, ln_first = _TORCHAUDIO_FACTORIES[factory] if factory else (None, None)
    mode: dict[str, ExtractorMode] = {"group_norm": "default", "layer_norm": "layer_norm"}

    standard_kernels = [k for _, k in shapes["conv"]] == [k for k, _ in STANDARD_CNN]
    if given.get("extractor_conv_layer_config") is not None:
        # (channels, kernel, stride) triples in a wav2vec2_model config
        conv_layers = cast("tuple[tuple[int, int, int], ...]",
                           tuple(tuple(int(x) for x in layer) for layer in given["extractor_conv_layer_config"]))
    elif "extractor_conv_layer_config" in given or standard_kernels:
        # torchaudio's default CNN (an explicit null in the config means the same)
        conv_layers = tuple((ch, k, s) for (ch, _), (k, s) in zip(shapes["conv"], STANDARD_CNN))
    else:
        raise ConfigError(
            f"{path}: CNN kernels {[k for _, k in shapes['conv']]} are not HuBERT's, so the strides are unknown; "
            "pass --config with the model's extractor_conv_layer_config"
        )
    extractor_mode: ExtractorMode | None = mode[given["extractor_mode"]] if "extractor_mode" in given else shapes["extractor_mode"]
    if extractor_mode is None and factory:
        extractor_mode = "default" if factory == "base" else "layer_norm"
    num_heads = given.get("encoder_num_heads", heads)
    layer_norm_first = given.get("encoder_layer_norm_first", ln_first)
    if num_heads is None or layer_norm_first is None or extractor_mode is None:
        raise ConfigError(
            f"{path}: a {shapes['embed_dim']}-dim model is none of torchaudio's hubert_base/large/xlarge, so its "
            "attention heads and layer-norm order are unknown; pass --config (wav2vec2_model arguments as JSON) "
            "or --arch"
        )
    return SourceWeights(
        path=path, layout=layout, tensors=tensors, dropped=(*dropped, *aux),
        arch=HubertArch(
            extractor_mode=extractor_mode, conv_layers=conv_layers,
            conv_bias=bool(given.get("extractor_conv_bias", shapes["conv_bias"])),
            embed_dim=int(given.get("encoder_embed_dim", shapes["embed_dim"])),
            ffn_dim=int(given.get("encoder_ff_interm_features", shapes["ffn_dim"])),
            num_layers=int(given.get("encoder_num_layers", shapes["num_layers"])),
            num_heads=int(num_heads), layer_norm_first=bool(layer_norm_first),
            conv_pos=int(given.get("encoder_pos_conv_kernel", shapes["conv_pos"])),
            conv_pos_groups=int(given.get("encoder_pos_conv_groups", shapes["conv_pos_groups"])),
            activation_fn=activation_fn,
        ),
    )


def _hf_activation(config: Any, path: Path) -> str:
    """fairseq's name of the transformer activation; refuses what neither torchaudio's importer
    nor fairseq can hold (the importer ignores these fields: it would build a different model)."""
    unsupported = {
        "feat_extract_activation": (config.feat_extract_activation != "gelu",
                                    "fairseq's CNN and positional conv use gelu"),
        "feat_proj_layer_norm": (not config.feat_proj_layer_norm, "fairseq always normalises the CNN output"),
        "conv_pos_batch_norm": (bool(getattr(config, "conv_pos_batch_norm", False)), "not supported by this converter"),
        "layer_norm_eps": (config.layer_norm_eps != 1e-5, "fairseq's layer norms use eps 1e-5"),
        "hidden_act": (config.hidden_act not in _HF_ACTIVATIONS, f"fairseq supports {sorted(_HF_ACTIVATIONS)}"),
        "feat_extract_norm": (config.feat_extract_norm not in ("group", "layer"), "expected 'group' or 'layer'"),
    }
    for field_, (bad, why) in unsupported.items():
        if bad:
            raise CheckpointError(f"{path}: {field_} = {getattr(config, field_)!r} cannot be converted ({why})")
    return _HF_ACTIVATIONS[config.hidden_act]


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' progress bars and load report, torchaudio's "lm_head not imported" warning off."""
    import transformers

    verbosity, bars = transformers.logging.get_verbosity(), transformers.utils.logging.is_progress_bar_enabled()
    importer_log = logging.getLogger("torchaudio.models.wav2vec2.utils.import_huggingface")
    importer_level = importer_log.level
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    importer_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()
        importer_log.setLevel(importer_level)


def _hf_model(path: Path, config_path: Path) -> tuple[torch.nn.Module, tuple[str, ...]]:
    """transformers' ``HubertModel`` with the weights of ``path`` and the keys it did not use (heads)."""
    import transformers
    from safetensors import SafetensorError

    config = transformers.HubertConfig.from_json_file(config_path)
    with tempfile.TemporaryDirectory() as tmp:
        folder = path
        if path.is_file():  # from_pretrained reads folders: give the lone file the name it looks for
            folder = Path(tmp)
            (folder / ("model.safetensors" if path.suffix == ".safetensors" else "pytorch_model.bin")).symlink_to(
                path.resolve())
        try:
            loaded = transformers.HubertModel.from_pretrained(folder, config=config, output_loading_info=True)
            # output_loading_info=True returns (model, info); transformers' annotation has the model alone
            model, info = cast("tuple[transformers.HubertModel, dict[str, list[str]]]", loaded)
        except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise CheckpointError(f"{path}: transformers cannot load it ({type(e).__name__}: {first})") from None
    # The mask embedding may be absent (a source that never masked); anything else missing was initialised at random.
    missing = [k for k in info["missing_keys"] if k != "masked_spec_embed"]
    if missing:
        raise CheckpointError(
            f"{path}: no weights for {missing[0]!r} ({len(missing)} missing in all): the weights are incomplete "
            "or config.json describes another model"
        )
    if "masked_spec_embed" in info["missing_keys"]:
        model.register_parameter("masked_spec_embed", None)  # transformers' random init: fairseq's seeded one instead
    return model.eval(), tuple(info["unexpected_keys"])


def read_hf(path: str | Path, *, config: str | Path | None = None) -> SourceWeights:
    """Read a transformers ``HubertModel`` (folder or weights file + ``config.json``) through
    torchaudio's ``import_huggingface_model``."""
    import torch
    from torchaudio.models.wav2vec2.utils import import_huggingface_model

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: not found")
    config_path = Path(config) if config is not None else (path if path.is_dir() else path.parent) / "config.json"
    if config is None and not config_path.is_file():
        raise CheckpointError(f"{config_path}: not found; pass the HubertModel's config.json with --config")
    model_type = _read_json(config_path, "transformers config").get("model_type")
    if model_type != "hubert":
        raise CheckpointError(f"{config_path}: model_type is {model_type!r}, not 'hubert': not a HuBERT model")
    try:
        import transformers  # noqa: F401  (an optional dependency: only this layout needs it)
    except ImportError:
        raise ConfigError("--from hf needs transformers (pip install transformers)") from None
    with _quiet_transformers():
        model, dropped = _hf_model(path, config_path)
        activation_fn = _hf_activation(model.config, config_path)
        imported = import_huggingface_model(model)
    state = imported.state_dict()
    mask_embedding = getattr(model, "masked_spec_embed", None)
    if mask_embedding is not None:  # torchaudio's model has none; fine-tuning masks with it
        state["mask_generator.mask_embedding"] = mask_embedding.detach()
    transformer = imported.encoder.transformer
    # What the shapes do not show, read off the model torchaudio built from config.json.
    given = {
        "extractor_mode": "group_norm" if isinstance(imported.feature_extractor.conv_layers[0].layer_norm,
                                                     torch.nn.GroupNorm) else "layer_norm",
        "extractor_conv_layer_config": [(b.conv.out_channels, b.kernel_size, b.stride)
                                        for b in imported.feature_extractor.conv_layers],
        "encoder_num_heads": transformer.layers[0].attention.num_heads,
        # (transformer.layer_norm_first is the opposite flag: where the encoder's own layer norm goes)
        "encoder_layer_norm_first": transformer.layers[0].layer_norm_first,
    }
    return _torchaudio_source(state, path=path, layout="hf", given=given, activation_fn=activation_fn, dropped=dropped)


# --------------------------------------------------------------------------------------- writing


def _fairseq_name(name: str, mode: ExtractorMode) -> str | None:
    if m := _CNN_NORM.fullmatch(name):
        return m.expand(_CNN_NORM_TO_FAIRSEQ[mode])
    for pattern, repl in _TO_FAIRSEQ:
        if m := pattern.fullmatch(name):
            return m.expand(repl)
    return None


def _configs(
    arch: HubertArch, *, final_dim: int, normalize: bool, path: Path
) -> tuple[HubertConfig, HubertPretrainingConfig]:
    from fairseq.models.hubert.hubert import HubertConfig
    from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig

    if arch.embed_dim % arch.num_heads:
        raise ConfigError(f"{path}: {arch.num_heads} attention heads do not divide the model width {arch.embed_dim}")
    if arch.conv_layers[-1][0] == arch.embed_dim:
        # fairseq's HubertModel drops post_extract_proj when the widths match; both sources always have it.
        raise CheckpointError(
            f"{path}: CNN output width = model width = {arch.embed_dim}: fairseq's HubertModel has no feature "
            "projection in that case, so this model cannot be represented"
        )
    model = HubertConfig(
        _name="hubert", label_rate=arch.label_rate, extractor_mode=arch.extractor_mode,
        encoder_layers=arch.num_layers, encoder_embed_dim=arch.embed_dim, encoder_ffn_embed_dim=arch.ffn_dim,
        encoder_attention_heads=arch.num_heads, activation_fn=arch.activation_fn,
        layer_norm_first=arch.layer_norm_first, conv_feature_layers=repr(list(arch.conv_layers)),
        conv_bias=arch.conv_bias, conv_pos=arch.conv_pos, conv_pos_groups=arch.conv_pos_groups, final_dim=final_dim,
    )
    task = HubertPretrainingConfig(
        _name="hubert_pretraining", data="", labels=[LABEL_SET], label_rate=arch.label_rate,
        sample_rate=SAMPLE_RATE, normalize=normalize,
    )
    return model, task


def build_checkpoint(source: SourceWeights, *, normalize: bool | None = None) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The fairseq checkpoint of ``source`` and the fairseq parameters it had to create.

    Every source tensor must land on a fairseq parameter of the same shape, and every fairseq
    encoder parameter must come from the source; anything else is a :class:`CheckpointError`
    naming the source file and key.
    """
    from fairseq.dataclass.configs import FairseqConfig
    from omegaconf import OmegaConf

    arch, path = source.arch, source.path
    tensors = dict(source.tensors)
    labels = tensors.pop(_LABEL_EMBEDDINGS, None)
    if "logit_generator.final_proj.weight" in tensors:
        final_dim = tensors["logit_generator.final_proj.weight"][1].shape[0]
    elif labels is not None:
        final_dim = labels[1].shape[1]
    else:
        final_dim = 0  # fairseq's default: the model width
    normalize = arch.extractor_mode == "layer_norm" if normalize is None else normalize
    model_cfg, task_cfg = _configs(arch, final_dim=final_dim, normalize=normalize, path=path)
    model, dictionary = _fresh_model(model_cfg, task_cfg, units=labels[1].shape[0] if labels is not None else 1)
    target = model.state_dict()
    mapped = _mapped_weights(source, tensors=tensors, labels=labels, target=target, nspecial=dictionary.nspecial)
    model.load_state_dict({**target, **mapped}, strict=True)
    created = tuple(k for k in target if k not in mapped)

    cfg = OmegaConf.to_container(
        OmegaConf.structured(FairseqConfig(model=model_cfg, task=task_cfg)), resolve=True, enum_to_str=True
    )
    checkpoint = {
        "args": None,
        "cfg": cfg,
        "model": model.state_dict(),
        "criterion": None,
        "optimizer_history": [{"criterion_name": "HubertCriterion", "optimizer_name": "none",
                               "lr_scheduler_state": {}, "num_updates": 0}],
        "task_state": {"dictionaries": [dictionary]},
        "extra_state": {"converted_from": {"layout": source.layout, "path": str(path.resolve()),
                                           "created": list(created), "dropped": list(source.dropped)}},
    }
    return checkpoint, created


def _fresh_model(model_cfg: HubertConfig, task_cfg: HubertPretrainingConfig, *,
                 units: int) -> tuple[HubertModel, Dictionary]:
    """fairseq's HubertModel of the configs, initialised with :data:`INIT_SEED` (the global random
    state left as it was), and its dictionary of ``units`` units."""
    import torch
    from fairseq.data import Dictionary
    from fairseq.models.hubert.hubert import HubertModel

    dictionary = Dictionary()
    for unit in range(units):
        dictionary.add_symbol(str(unit))
    with torch.random.fork_rng(), warnings.catch_warnings():
        # fairseq builds the positional conv with the deprecated weight_norm (its names weight_g/v are the format).
        warnings.filterwarnings("ignore", message=r"`torch.nn.utils.weight_norm` is deprecated", category=FutureWarning)
        torch.manual_seed(INIT_SEED)
        model = HubertModel(model_cfg, task_cfg, [dictionary])
    return model, dictionary


def _mapped_weights(source: SourceWeights, *, tensors: Mapping[str, tuple[str, torch.Tensor]],
                    labels: tuple[str, torch.Tensor] | None, target: Mapping[str, torch.Tensor],
                    nspecial: int) -> dict[str, torch.Tensor]:
    """The source's ``tensors`` (and unit embeddings ``labels``) under fairseq's names, in the dtypes of
    ``target`` (the fresh model's state), checked to cover every parameter but :data:`_OPTIONAL` ones."""
    import torch

    arch, path = source.arch, source.path
    mapped: dict[str, torch.Tensor] = {}
    for name, (key, value) in tensors.items():
        fairseq_name = _fairseq_name(name, arch.extractor_mode)
        if fairseq_name is None:
            raise CheckpointError(
                f"{path}: unrecognised key {key!r}: not part of a {source.layout} HuBERT encoder"
            )
        if fairseq_name not in target:
            raise CheckpointError(f"{path}: unexpected key {key!r} for a HuBERT of {arch.describe()}")
        if value.shape != target[fairseq_name].shape:
            raise CheckpointError(
                f"{path}: {key!r} has shape {tuple(value.shape)}, expected {tuple(target[fairseq_name].shape)} "
                f"for a HuBERT of {arch.describe()}"
            )
        mapped[fairseq_name] = value.to(target[fairseq_name].dtype)
    if labels is not None:
        key, value = labels
        fresh = target["label_embs_concat"]
        if value.shape[1] != fresh.shape[1]:
            raise CheckpointError(f"{path}: {key!r} has width {value.shape[1]}, final_proj has {fresh.shape[1]}")
        # torchaudio numbers units from 0; a fairseq Dictionary puts 4 special symbols first.
        mapped["label_embs_concat"] = torch.cat([fresh[:nspecial], value.to(fresh.dtype)])
    missing = [k for k in target if k not in mapped and k not in _OPTIONAL]
    if missing:
        raise CheckpointError(
            f"{path}: no weights for fairseq's {missing[0]!r} ({len(missing)} missing in all) in a HuBERT of "
            f"{arch.describe()}: the state dict is incomplete or its architecture is not the one stated"
        )
    return mapped


def convert_hubert(src: str | Path, out: str | Path, *, layout: Literal["torchaudio", "hf"], config: str | Path | None = None,
                   arch: TorchaudioArch | None = None, normalize: bool | None = None) -> Conversion:
    """Convert ``src`` (``layout``: ``torchaudio`` or ``hf``) into the fairseq checkpoint ``out``."""
    import torch

    if layout == "torchaudio":
        source = read_torchaudio(src, config=config, arch=arch)
    else:
        if arch is not None:
            raise ConfigError(f"{src}: --arch applies to torchaudio state dicts only; drop it (config.json gives the "
                              "architecture)")
        source = read_hf(src, config=config)
    checkpoint, created = build_checkpoint(source, normalize=normalize)
    out = Path(out)
    with atomic_path(out) as tmp:
        torch.save(checkpoint, tmp)
    return Conversion(out=out, arch=source.arch, normalize=checkpoint["cfg"]["task"]["normalize"],
                      created=created, dropped=source.dropped)


# ------------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from", dest="layout", choices=["torchaudio", "hf", "hubert-phoneme"],
                           help="layout of SRC: torchaudio state dict (torch.save), transformers HubertModel, or the "
                                "paper's fine-tuned HuBERTPhoneme (model.safetensors + config.json; written as a "
                                "hubert_frame_cls or hubert_phone_ctc checkpoint, by its head)")
    direction.add_argument("--to", dest="export", choices=["hubert-phoneme"],
                           help="export the fine-tuned checkpoint SRC (hubert_frame_cls / hubert_phone_ctc) to the "
                                "paper's HuBERTPhoneme layout: --out is a folder (model.safetensors + config.json)")
    parser.add_argument("src", metavar="SRC",
                        help="torchaudio: a .pt state dict; hf: a save_pretrained folder or a weights file; "
                             "hubert-phoneme: its folder or model.safetensors; --to: a fairseq checkpoint")
    parser.add_argument("--out", required=True,
                        help="fairseq checkpoint to write (.pt); with --to hubert-phoneme, a folder")
    parser.add_argument("--config", default=None,
                        help="hf: config.json (default: in / beside SRC); torchaudio: JSON of the "
                             "torchaudio.models.wav2vec2_model arguments the model was built with; hubert-phoneme: "
                             "its config.json (default: beside SRC; kept for the export, not used for the head type)")
    parser.add_argument("--arch", choices=sorted(_TORCHAUDIO_FACTORIES), default=None,
                        help="torchaudio: factory (hubert_base/large/xlarge) giving the heads, layer-norm order "
                             "and CNN strides that the shapes do not show (default: by model width)")
    parser.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                        help="set task.normalize (standardise waveforms); default: on for a layer-norm CNN "
                             "(HuBERT Large / X-Large), off for a group-norm CNN (HuBERT Base)")
    parser.add_argument("--head", choices=["frame", "ctc"], default=None,
                        help="hubert-phoneme: the head type required (refused if aux.weight has the other); "
                             "default: the one aux.weight's shape shows (40 rows: frame, 41: CTC)")
    parser.add_argument("--dictionary", default=None,
                        help="hubert-phoneme: the dict.phn.txt the checkpoint will be fine-tuned or scored with; "
                             "the head's rows follow its class order (default: this project's inventory, the "
                             "paper's order)")
    parser.add_argument("--encoder-out", default=None,
                        help="hubert-phoneme: also write the encoder alone as a pretrained-layout HuBERT "
                             "checkpoint (for fairseq-train's --w2v-path)")


def _run_phoneme(args: argparse.Namespace) -> int:
    from . import phoneme

    if args.export is not None:
        phoneme.check_export_options(args)
        exported = phoneme.export_hubert_phoneme(args.src, args.out)
        print(f"wrote {exported.weights} + {exported.config.name}: HuBERTPhoneme, {exported.head} head, "
              f"{exported.num_layers} layers")
        for note in exported.notes:
            print(f"  note: {note}")
        return 0
    phoneme.check_import_options(args)
    imported = phoneme.import_hubert_phoneme(args.src, args.out, config=args.config, head=args.head,
                                             dictionary=args.dictionary, encoder_out=args.encoder_out)
    source = imported.source
    print(f"wrote {imported.out}: {imported.arch} ({source.head} head, {source.aux_weight.shape[0]} outputs on layer "
          f"{source.encoder.arch.num_layers}), HuBERT {source.encoder.arch.describe()}, normalize=False")
    if imported.encoder_out is not None:
        print(f"wrote {imported.encoder_out}: the encoder alone (fairseq-train --w2v-path)")
    print(f"  ignored (never trained): {', '.join(sorted(source.unused)) or 'none'}")
    for note in imported.notes:
        print(f"  note: {note}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.export is not None or args.layout == "hubert-phoneme":
        return _run_phoneme(args)
    for flag, value in (("--head", args.head), ("--dictionary", args.dictionary), ("--encoder-out", args.encoder_out)):
        if value is not None:
            raise ConfigError(f"{args.src}: {flag} applies to --from hubert-phoneme only; drop it")
    result = convert_hubert(args.src, args.out, layout=args.layout, config=args.config, arch=args.arch,
                            normalize=args.normalize)
    print(f"wrote {result.out}: HuBERT {result.arch.describe()}, normalize={result.normalize}")
    if result.created:
        print(f"  initialised (absent from {args.src}): {', '.join(result.created)}")
    if result.dropped:
        print(f"  ignored (task heads, not encoder weights): {', '.join(result.dropped)}")
    return 0
