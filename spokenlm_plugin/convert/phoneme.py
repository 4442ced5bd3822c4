"""The paper's fine-tuned HuBERT phoneme classifiers (``HuBERTPhoneme``) <-> fairseq checkpoints.

The paper's code (bootphon/spokenlm-phoneme, ``phonslm.model.HuBERTPhoneme``) saves its models with
``PyTorchModelHubMixin``: ``model.safetensors`` + ``config.json``. The body is torchaudio's
``hubert_pretrain_base`` (keys ``model.wav2vec2.*``, weight norm as
``parametrizations.weight.original0/1``; ``model.mask_generator.mask_embedding``; an untrained
``model.logit_generator.*``), the head ``aux`` = ``Linear(768, 40)`` on the last layer (frame-level
classes: SIL then the 39 ARPAbet phones alphabetically) or ``Linear(768, 41)`` (CTC, blank = 40).
The head type is read from ``aux.weight``'s shape: the released ``config.json`` is not reliable.

:func:`import_hubert_phoneme` writes the self-contained fine-tuned checkpoint this toolkit's
fine-tuning writes (``hubert_frame_cls`` for a frame head, ``hubert_phone_ctc`` for a CTC head:
``model.w2v_args`` holds the encoder's config, ``task_state`` the phone dictionary), so
``fairseq-validate``, ``dump-features`` and the evaluation load it without the source.
fairseq-train builds its model from ``--w2v-path`` before it loads a checkpoint: continue a
fine-tuning with ``--w2v-path ENCODER --finetune-from-model OUT``, ``ENCODER`` being the encoder
alone in the pretrained layout (``--encoder-out``). Mapping:

- the encoder through :mod:`.hubert`'s torchaudio -> fairseq names (one mapping, used both ways);
  the mask embedding becomes fairseq's ``mask_emb`` (the paper fine-tuned with masking, so a
  continued fine-tuning masks with the trained embedding);
- frame head: row ``c`` of ``w2v_encoder.proj`` is the ``aux`` row of class ``phones[c]`` of the
  target dictionary (this project's ``dict.phn.txt`` has the paper's order, so the rows are
  unchanged unless ``--dictionary`` names another order);
- CTC head: fairseq's dictionary puts ``<s>`` (CTC's blank in fairseq) ``<pad> </s> <unk>`` first:
  ``<s>`` gets ``aux`` row 40 (the paper's blank), each phone its row, and the three symbols the
  paper has no class for a zero row with bias :data:`NEVER_LOGIT` (their probability underflows to
  exactly 0 in float32, and in fp16 too, so the other log-probabilities are those of the 41 outputs);
- ``model.logit_generator.*`` (never trained, never used) is left out of the model and kept in
  ``extra_state`` with ``config.json``, so an export of the converted file gives the source back.

:func:`export_hubert_phoneme` is the inverse: a ``hubert_frame_cls`` / ``hubert_phone_ctc``
checkpoint with a Base-size encoder (any number of layers; the paper's class builds 12) reading
raw waveforms, its head on the last layer -> ``model.safetensors`` + ``config.json`` that
``HuBERTPhoneme.from_pretrained`` loads. A checkpoint trained by fairseq has no logit generator:
zeros are written in its place (it is never used). The CTC rows of ``<pad> </s> <unk>`` have no
place in the paper's 41 outputs and are dropped.
"""

from __future__ import annotations

import functools
import json
import struct
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

from ..core.errors import CheckpointError, ConfigError, DictionaryError
from ..core.io import atomic_path, atomic_write, check_output_path
from ..core.phones import ARPABET39, SIL
from .hubert import (
    STANDARD_CNN,
    HubertArch,
    SourceWeights,
    _fairseq_name,
    _read_json,
    _rename_weight_norm,
    _torch_state_dict,
    _torchaudio_source,
    build_checkpoint,
)

if TYPE_CHECKING:
    import torch
    from fairseq.data import Dictionary

HeadKind = Literal["frame", "ctc"]

#: The paper's classes in ``aux`` row order: SIL, then the 39 stress-free ARPAbet phones alphabetically.
PAPER_CLASSES: tuple[str, ...] = (SIL, *sorted(ARPABET39))
#: Outputs of each head; the CTC head's blank is its last row.
HEAD_ROWS: dict[HeadKind, int] = {"frame": len(PAPER_CLASSES), "ctc": len(PAPER_CLASSES) + 1}
BLANK_ROW = len(PAPER_CLASSES)
#: Bias of the fairseq CTC rows the paper has no class for (<pad> </s> <unk>): exp(-1e4 - max) is 0 in
#: float32, and -1e4 is finite in fp16 (a -inf would turn into NaN gradients).
NEVER_LOGIT = -1e4

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
MASK_KEY = "model.mask_generator.mask_embedding"
LOGIT_PREFIX = "model.logit_generator."
BODY_PREFIX = "model.wav2vec2."
#: torchaudio hubert_pretrain_base's logit generator as the paper builds it (num_classes 500, final_dim 256).
_LOGIT_SHAPES = {"model.logit_generator.label_embeddings": (500, 256),
                 "model.logit_generator.final_proj.weight": (256, 768),
                 "model.logit_generator.final_proj.bias": (256,)}
#: HuBERT Base as torchaudio's hubert_pretrain_base builds it (the layer count aside).
BASE_ARCH = HubertArch(extractor_mode="default", conv_layers=tuple((512, k, s) for k, s in STANDARD_CNN),
                       conv_bias=False, embed_dim=768, ffn_dim=3072, num_layers=12, num_heads=12, conv_pos=128,
                       conv_pos_groups=16, layer_norm_first=False)
_BASE_KWARGS: dict[str, Any] = dict(
    extractor_mode="group_norm", extractor_conv_layer_config=None, extractor_conv_bias=False, encoder_embed_dim=768,
    encoder_projection_dropout=0.0, encoder_pos_conv_kernel=128, encoder_pos_conv_groups=16, encoder_num_heads=12,
    encoder_attention_dropout=0.0, encoder_ff_interm_features=3072, encoder_ff_interm_dropout=0.0,
    encoder_dropout=0.0, encoder_layer_norm_first=False, encoder_layer_drop=0.0, aux_num_out=None,
)

_ARCH: dict[HeadKind, str] = {"frame": "hubert_frame_cls", "ctc": "hubert_phone_ctc"}
_HEAD_OF_ARCH = {v: k for k, v in _ARCH.items()}
_TASK: dict[HeadKind, str] = {"frame": "phoneme_frame_cls", "ctc": "phoneme_ctc"}
_CRITERION: dict[HeadKind, dict[str, Any]] = {
    "frame": {"_name": "frame_phoneme_ce"},
    "ctc": {"_name": "ctc", "zero_infinity": True, "post_process": "none"},
}
#: The paper's fine-tuning settings (examples/finetune/config/ctc_100h.yaml); hubert_frame_cls has them as defaults.
_MODEL_SETTINGS: dict[HeadKind, dict[str, Any]] = {
    "frame": {},
    "ctc": {"apply_mask": True, "mask_prob": 0.75, "mask_length": 10, "mask_channel_prob": 0.5,
            "mask_channel_length": 10, "layerdrop": 0.1, "dropout": 0.0, "attention_dropout": 0.0,
            "activation_dropout": 0.1, "final_dropout": 0.0, "feature_grad_mult": 0.0},
}
#: HubertEncoder's overrides of the encoder config: fine-tuning field -> encoder field.
_ENCODER_FIELDS = {name: name for name in (
    "dropout", "activation_dropout", "dropout_input", "attention_dropout", "mask_length", "mask_prob",
    "mask_selection", "mask_other", "no_mask_overlap", "mask_channel_length", "mask_channel_prob",
    "mask_channel_selection", "mask_channel_other", "no_mask_channel_overlap", "feature_grad_mult")} | {
    "layerdrop": "encoder_layerdrop"}
#: ``extra_state`` entry of a converted checkpoint: what an export needs to give the source back.
EXTRA_KEY = "hubert_phoneme"


@dataclass(frozen=True)
class PhonemeSource:
    """A ``HuBERTPhoneme``, checked: its encoder under torchaudio names and its head."""

    path: Path  # the weights file
    head: HeadKind
    encoder: SourceWeights
    aux_weight: torch.Tensor
    aux_bias: torch.Tensor
    unused: dict[str, torch.Tensor]  # model.logit_generator.* (never trained)
    config: dict[str, Any]  # config.json ({} when there is none)
    config_path: Path | None


@dataclass(frozen=True)
class PhonemeImport:
    """What :func:`import_hubert_phoneme` wrote."""

    out: Path
    arch: str  # hubert_frame_cls / hubert_phone_ctc
    source: PhonemeSource
    phones: tuple[str, ...]  # class order of the written head (the target dictionary's phones)
    encoder_out: Path | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class PhonemeExport:
    """What :func:`export_hubert_phoneme` wrote."""

    weights: Path
    config: Path
    head: HeadKind
    num_layers: int
    notes: tuple[str, ...]


# ------------------------------------------------------------------------------------- layout


@functools.cache
def _paper_shapes(num_layers: int) -> dict[str, tuple[int, ...]]:
    """Encoder keys of a HuBERTPhoneme whose body has ``num_layers`` layers, with their shapes
    (built by torchaudio on the meta device: names exactly as torchaudio writes them)."""
    import torch
    from torchaudio.models import wav2vec2_model

    with torch.device("meta"):
        body = wav2vec2_model(**_BASE_KWARGS, encoder_num_layers=num_layers)
    shapes = {f"{BODY_PREFIX}{k}": tuple(v.shape) for k, v in body.state_dict().items()}
    shapes[MASK_KEY] = (BASE_ARCH.embed_dim,)
    return shapes


def fairseq_key(paper_key: str) -> str:
    """The fairseq ``HubertModel`` name of a HuBERTPhoneme encoder key (:mod:`.hubert`'s mapping)."""
    name = _fairseq_name(_rename_weight_norm(paper_key.removeprefix("model.").removeprefix("wav2vec2.")),
                         BASE_ARCH.extractor_mode)
    if name is None:  # every key of _paper_shapes maps: a torchaudio renaming would land here
        raise CheckpointError(f"{paper_key!r}: no fairseq name for this torchaudio key; the torchaudio layout changed")
    return name


def _arch_differences(arch: HubertArch) -> list[str]:
    base = replace(BASE_ARCH, num_layers=arch.num_layers)
    return [f"{name} {getattr(arch, name)} (Base: {getattr(base, name)})"
            for name in base.__dataclass_fields__ if getattr(arch, name) != getattr(base, name)]


def _paper_dictionary() -> Dictionary:
    """This project's dict.phn.txt (fairseq's 4 special symbols, then the inventory), without counts."""
    from fairseq.data import Dictionary

    d = Dictionary()
    for phone in PAPER_CLASSES:
        d.add_symbol(phone, n=0)
    return d


def _check_phones(phones: tuple[str, ...], where: str) -> None:
    """The classes must be the paper's 40 (in any order)."""
    missing = [p for p in PAPER_CLASSES if p not in phones]
    extra = [p for p in phones if p not in PAPER_CLASSES]
    if missing or extra or len(phones) != len(PAPER_CLASSES):
        what = f"has {extra[0]!r}, not one of the paper's classes" if extra else (
            f"lacks {missing[0]!r}" if missing else f"has {len(phones)} classes")
        raise DictionaryError(
            f"{where}: {what}; the paper's models classify SIL + the 39 ARPAbet phones of this project's "
            "inventory: give a dict.phn.txt made by `spokenlm labels` with the default inventory"
        )


# -------------------------------------------------------------------------------------- reading


def _is_safetensors(path: Path) -> bool:
    """A safetensors file: an 8-byte little-endian header size, then a JSON header."""
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 0 < struct.unpack("<Q", head[:8])[0] <= path.stat().st_size - 8


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    if path.suffix != ".safetensors" and not _is_safetensors(path):
        # The state dict of a HuBERTPhoneme saved with torch.save reads as well.
        return _torch_state_dict(path)
    try:
        return load_file(path)
    except SafetensorError as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({e}); is it truncated?") from None


def _resolve(src: Path, config: str | Path | None) -> tuple[Path, Path | None]:
    if not src.exists():
        raise CheckpointError(f"{src}: not found")
    weights = src / WEIGHTS if src.is_dir() else src
    if src.is_dir() and not weights.is_file():
        raise CheckpointError(f"{src}: no {WEIGHTS} in this folder; pass the HuBERTPhoneme's folder or weights file")
    if config is not None:
        return weights, Path(config)
    beside = weights.parent / CONFIG
    return weights, beside if beside.is_file() else None


def _kind_refusal(keys: set[str]) -> str | None:
    """Why a state dict is not a HuBERTPhoneme, when another kind of model is recognised."""
    if "unit_embedding.weight" in keys or any(k.startswith("generator.") for k in keys):
        return ("a unit vocoder's weights (unit-hifigan UnitVocoder: unit_embedding, generator.*), not a HuBERT "
                "phoneme classifier; convert-hubert reads HuBERTPhoneme files (model.wav2vec2.*, aux.*)")
    if not any(k.startswith(BODY_PREFIX) for k in keys):
        if any(k.startswith(("feature_extractor.", "encoder.", "hubert.", "wav2vec2.")) for k in keys):
            return ("a HuBERT encoder without the HuBERTPhoneme wrapper (no model.wav2vec2.* keys); convert it with "
                    "--from hf (transformers) or --from torchaudio")
        return "no model.wav2vec2.* weights: not a HuBERTPhoneme (the paper's fine-tuned HuBERT)"
    if "aux.weight" not in keys or "aux.bias" not in keys:
        return ("no phone head (aux.weight, aux.bias): a HuBERT encoder without its classifier; a HuBERTPhoneme "
                "has a 40-class (frame) or 41-output (CTC) head")
    return None


def read_hubert_phoneme(src: str | Path, *, config: str | Path | None = None,
                        head: HeadKind | None = None) -> PhonemeSource:
    """Read and check a HuBERTPhoneme (folder, ``model.safetensors``, or a torch.save'd state dict).

    :param head: the head type required (``None``: the one ``aux.weight`` has).
    """
    path, config_path = _resolve(Path(src), config)
    state = _load_tensors(path)
    refusal = _kind_refusal(set(state))
    if refusal:
        raise CheckpointError(f"{path}: {refusal}")
    aux_weight, aux_bias = state["aux.weight"], state["aux.bias"]
    rows = {n: kind for kind, n in HEAD_ROWS.items()}
    if aux_weight.ndim != 2 or aux_weight.shape[0] not in rows:
        raise CheckpointError(
            f"{path}: aux.weight has shape {tuple(aux_weight.shape)}; a HuBERTPhoneme head has {HEAD_ROWS['frame']} "
            f"rows (frame-level classes) or {HEAD_ROWS['ctc']} (CTC, blank = {BLANK_ROW})"
        )
    kind = rows[aux_weight.shape[0]]
    if aux_weight.shape[1] != BASE_ARCH.embed_dim or tuple(aux_bias.shape) != (aux_weight.shape[0],):
        raise CheckpointError(
            f"{path}: aux.weight {tuple(aux_weight.shape)} / aux.bias {tuple(aux_bias.shape)} do not fit HuBERT "
            f"Base's {BASE_ARCH.embed_dim}-dim layers: not a HuBERTPhoneme of the paper's size"
        )
    if head is not None and head != kind:
        raise CheckpointError(
            f"{path}: a {kind} head ({aux_weight.shape[0]} outputs{', blank = 40' if kind == 'ctc' else ''}) "
            f"where --head {head} was asked; drop --head (the head type is read from aux.weight) or pass --head {kind}"
        )

    layers = {int(k[len(BODY_PREFIX):].split(".")[3]) for k in state
              if k.startswith(f"{BODY_PREFIX}encoder.transformer.layers.")}
    expected = _paper_shapes(max(layers) + 1 if layers else 0)
    body = {k: v for k, v in state.items() if k.startswith(BODY_PREFIX) or k == MASK_KEY}
    for key, value in body.items():
        if key not in expected:
            raise CheckpointError(f"{path}: unexpected key {key!r}: not a HuBERTPhoneme (torchaudio hubert_pretrain_base) "
                                  "body")
        if tuple(value.shape) != expected[key]:
            raise CheckpointError(
                f"{path}: {key!r} has shape {tuple(value.shape)}, HuBERT Base (torchaudio hubert_pretrain_base) has "
                f"{expected[key]}: only Base-size HuBERTPhoneme models convert"
            )
    missing = [k for k in expected if k not in body and k != MASK_KEY]  # the mask embedding may be absent
    if missing:
        raise CheckpointError(f"{path}: no {missing[0]!r} ({len(missing)} encoder weights missing): the file is "
                              "incomplete")
    others = sorted(k for k in state if k not in body and not k.startswith((LOGIT_PREFIX, "aux.")))
    if others:
        raise CheckpointError(f"{path}: unexpected key {others[0]!r}: not part of a HuBERTPhoneme")

    encoder = _torchaudio_source({k.removeprefix("model."): v for k, v in body.items()}, path=path,
                                 layout="hubert-phoneme", given={}, arch="base")
    differences = _arch_differences(encoder.arch)
    if differences:  # the shapes were checked above: this guards the reading of the shapes
        raise CheckpointError(f"{path}: not a HuBERT Base body: {', '.join(differences)}")
    cfg = _read_json(config_path, "HuBERTPhoneme config.json") if config_path is not None else {}
    return PhonemeSource(
        path=path, head=kind, encoder=encoder, aux_weight=aux_weight, aux_bias=aux_bias,
        unused={k: v for k, v in state.items() if k.startswith(LOGIT_PREFIX)}, config=cfg, config_path=config_path,
    )


def _load_target_dictionary(path: Path) -> Dictionary:
    from ..data.frame_labels import load_dictionary

    try:
        d = load_dictionary(path)
    except RuntimeError as e:  # fairseq: "Duplicate word found when loading Dictionary"
        raise DictionaryError(f"{path}: {str(e).splitlines()[0]}") from None
    _check_phones(tuple(d.symbols[d.nspecial:]), str(path))
    return d


# ---------------------------------------------------------------------------------- fairseq side


def _registries() -> tuple[Any, Any, Any, Any]:
    """fairseq's model / task / criterion config classes and tasks module, with the plugin registered
    (looked up by name: fine-tuning is a later stage than conversion)."""
    import spokenlm_plugin

    spokenlm_plugin.register()
    from fairseq import tasks
    from fairseq.criterions import CRITERION_DATACLASS_REGISTRY
    from fairseq.models import MODEL_DATACLASS_REGISTRY

    return MODEL_DATACLASS_REGISTRY, tasks.TASK_DATACLASS_REGISTRY, CRITERION_DATACLASS_REGISTRY, tasks


def _head_rows(source: PhonemeSource, d: Dictionary) -> tuple[torch.Tensor, torch.Tensor]:
    """``w2v_encoder.proj`` of the fairseq model: the ``aux`` rows in the dictionary's class order."""
    import torch

    weight, bias = source.aux_weight.float(), source.aux_bias.float()
    if source.head == "frame":
        order = [PAPER_CLASSES.index(p) for p in d.symbols[d.nspecial:]]
        return weight[order].clone(), bias[order].clone()
    # CTC: the projection covers the whole dictionary; <s> is fairseq's blank.
    out_w = torch.zeros(len(d), weight.shape[1])
    out_b = torch.full((len(d),), NEVER_LOGIT)
    out_w[d.bos()], out_b[d.bos()] = weight[BLANK_ROW], bias[BLANK_ROW]
    for row, phone in enumerate(PAPER_CLASSES):
        out_w[d.index(phone)], out_b[d.index(phone)] = weight[row], bias[row]
    return out_w, out_b


def build_finetuned_checkpoint(source: PhonemeSource, *,
                               dictionary: Dictionary | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``hubert_frame_cls`` / ``hubert_phone_ctc`` checkpoint of ``source``, built and loaded by
    fairseq itself (strict), as fairseq-train would save it before its first update; and the
    encoder alone as a pretrained-layout HuBERT checkpoint (:func:`.hubert.build_checkpoint`)."""
    from fairseq.dataclass.configs import FairseqConfig
    from omegaconf import OmegaConf

    models, task_configs, criteria, tasks = _registries()
    head = source.head
    body, _ = build_checkpoint(source.encoder, normalize=False)  # the paper feeds raw waveforms
    d = dictionary if dictionary is not None else _paper_dictionary()
    w2v_args = {"task": body["cfg"]["task"], "model": body["cfg"]["model"]}
    model_cfg = models[_ARCH[head]](_name=_ARCH[head], w2v_path=str(source.path.resolve()), w2v_args=w2v_args, **_MODEL_SETTINGS[head])
    if head == "frame":
        model_cfg.layer = source.encoder.arch.num_layers  # the paper's head reads the last layer
    task_cfg = task_configs[_TASK[head]](_name=_TASK[head], data="", normalize=False)
    criterion = _CRITERION[head]
    criterion_cfg = criteria[criterion["_name"]](**criterion)
    cfg = OmegaConf.structured(FairseqConfig(model=model_cfg, task=task_cfg, criterion=criterion_cfg))
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    if head == "ctc":
        # What fairseq's HubertEncoder writes into w2v_args when it reads a w2v_path (hubert_frame_cls applies
        # its own at every build), so the file holds what a fairseq-train run saves.
        for field, name in _ENCODER_FIELDS.items():
            cfg.model.w2v_args.model[name] = cfg.model[field]

    task = tasks.setup_task(cfg.task)
    task.load_state_dict({"target_dictionary": d, **({"dictionaries": [None]} if head == "ctc" else {})})
    with warnings.catch_warnings():
        # fairseq builds the positional conv with the deprecated weight_norm (its names weight_g/v are the format).
        warnings.filterwarnings("ignore", message=r"`torch.nn.utils.weight_norm` is deprecated", category=FutureWarning)
        model = task.build_model(cfg.model, from_checkpoint=True)
    target = model.state_dict()
    weights = {f"w2v_encoder.w2v_model.{k}": v for k, v in body["model"].items()
               if f"w2v_encoder.w2v_model.{k}" in target}  # pretraining-only modules are not in a fine-tuned model
    weights["w2v_encoder.proj.weight"], weights["w2v_encoder.proj.bias"] = _head_rows(source, d)
    model.load_state_dict(weights, strict=True)

    created = [k for k in body["extra_state"]["converted_from"]["created"] if f"w2v_encoder.w2v_model.{k}" in target]
    return {
        "args": None,
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        "model": model.state_dict(),
        "criterion": None,
        "optimizer_history": [{"criterion_name": "none", "optimizer_name": "none", "lr_scheduler_state": {},
                               "num_updates": 0}],
        "task_state": task.state_dict(),
        "last_optimizer_state": None,
        "extra_state": {
            # What fairseq-train reads when it restores a checkpoint: the start of epoch 1.
            "train_iterator": {"epoch": 1, "iterations_in_epoch": 0, "shuffle": True, "version": 2},
            "converted_from": {"layout": "hubert-phoneme", "path": str(source.path.resolve()), "head": head,
                               "created": created},
            EXTRA_KEY: {"unused": dict(source.unused), "config": dict(source.config)},
        },
    }, body


def import_hubert_phoneme(src: str | Path, out: str | Path, *, config: str | Path | None = None,
                          head: HeadKind | None = None, dictionary: str | Path | None = None,
                          encoder_out: str | Path | None = None) -> PhonemeImport:
    """Convert a HuBERTPhoneme into a fine-tuned fairseq checkpoint ``out`` (and, with ``encoder_out``,
    its encoder alone as a pretrained-layout HuBERT checkpoint, for fairseq-train's ``--w2v-path``)."""
    import torch

    for path in (out, encoder_out):
        if path is not None:
            check_output_path(path)
    d = _load_target_dictionary(Path(dictionary)) if dictionary is not None else None
    source = read_hubert_phoneme(src, config=config, head=head)
    checkpoint, body = build_finetuned_checkpoint(source, dictionary=d)
    notes = []
    said = source.config.get("ctc_training")
    if isinstance(said, bool) and said != (source.head == "ctc"):
        notes.append(f"{source.config_path} says ctc_training={said}; the head has "
                     f"{source.aux_weight.shape[0]} outputs: converted as a {source.head} head")
    if source.encoder.arch.num_layers != BASE_ARCH.num_layers:
        notes.append(f"{source.encoder.arch.num_layers} transformer layers (the paper's models have 12)")
    if checkpoint["extra_state"]["converted_from"]["created"]:
        notes.append(f"initialised (absent from the source): {', '.join(checkpoint['extra_state']['converted_from']['created'])}")
    if encoder_out is not None:
        # Without pretraining labels (none were converted): fairseq then builds the encoder without label
        # embeddings, as in the fine-tuned checkpoint, so --finetune-from-model loads it strictly.
        encoder = {**body, "model": {k: v for k, v in body["model"].items() if k != "label_embs_concat"},
                   "task_state": {"dictionaries": [None]}}
        with atomic_path(Path(encoder_out)) as tmp:
            torch.save(encoder, tmp)
    out = Path(out)
    with atomic_path(out) as tmp:  # last: the fine-tuned checkpoint is the result
        torch.save(checkpoint, tmp)
    d = d if d is not None else _paper_dictionary()
    return PhonemeImport(out=out, arch=_ARCH[source.head], source=source, phones=tuple(d.symbols[d.nspecial:]),
                         encoder_out=Path(encoder_out) if encoder_out is not None else None, notes=tuple(notes))


# -------------------------------------------------------------------------------------- export


def _check_exportable(path: Path, cfg: Mapping[str, Any]) -> tuple[HeadKind, int]:
    arch = cfg["model"].get("_name")
    if arch not in _HEAD_OF_ARCH:
        hint = " (a pretrained HuBERT has no phone head)" if arch == "hubert" else ""
        raise CheckpointError(f"{path}: a {arch!r} model{hint}; --to hubert-phoneme exports a phoneme classifier "
                              "fine-tuned by spokenlm (hubert_frame_cls or hubert_phone_ctc)")
    head = _HEAD_OF_ARCH[arch]
    w2v_args = cfg["model"].get("w2v_args")
    if not w2v_args:
        raise CheckpointError(f"{path}: no model.w2v_args (the encoder's config): not a self-contained fine-tuned "
                              "checkpoint; fine-tune with this toolkit's plugin")
    enc, task = w2v_args["model"], w2v_args["task"]
    found = {
        "extractor_mode": enc.get("extractor_mode"), "conv_feature_layers": enc.get("conv_feature_layers"),
        "conv_bias": enc.get("conv_bias"), "encoder_embed_dim": enc.get("encoder_embed_dim"),
        "encoder_ffn_embed_dim": enc.get("encoder_ffn_embed_dim"), "encoder_attention_heads":
        enc.get("encoder_attention_heads"), "layer_norm_first": enc.get("layer_norm_first"),
        "activation_fn": enc.get("activation_fn"), "conv_pos": enc.get("conv_pos"),
        "conv_pos_groups": enc.get("conv_pos_groups"),
    }
    base = BASE_ARCH
    wanted = {
        "extractor_mode": base.extractor_mode, "conv_feature_layers": repr(list(base.conv_layers)),
        "conv_bias": base.conv_bias, "encoder_embed_dim": base.embed_dim, "encoder_ffn_embed_dim": base.ffn_dim,
        "encoder_attention_heads": base.num_heads, "layer_norm_first": base.layer_norm_first,
        "activation_fn": base.activation_fn, "conv_pos": base.conv_pos, "conv_pos_groups": base.conv_pos_groups,
    }
    for name, value in wanted.items():
        same = found[name] == value
        if name == "conv_feature_layers" and isinstance(found[name], str):
            # fairseq writes and reads this field as a Python expression ("[(512, 10, 5)] + [(512, 3, 2)] * 4 ...")
            try:
                same = eval(found[name], {"__builtins__": {}}) == list(base.conv_layers)
            except (SyntaxError, NameError, TypeError, ValueError):
                same = False
        if not same:
            raise CheckpointError(f"{path}: encoder {name} = {found[name]!r}, HuBERT Base has {value!r}; the paper's "
                                  "HuBERTPhoneme is a Base model, so this one cannot be exported")
    if task.get("normalize"):
        raise CheckpointError(f"{path}: the encoder reads normalised waveforms (task.normalize); the paper's "
                              "HuBERTPhoneme reads raw ones, so this model cannot be exported")
    num_layers = int(enc["encoder_layers"])
    layer = cfg["model"].get("layer")
    if head == "frame" and layer not in (None, num_layers):
        raise CheckpointError(f"{path}: its classifier reads layer {layer} of {num_layers}; the paper's HuBERTPhoneme "
                              "reads the last layer, so this model cannot be exported")
    return head, num_layers


def _export_head(path: Path, head: HeadKind, d: Dictionary, weight: torch.Tensor,
                 bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    import torch

    notes = []
    if head == "frame":
        phones = tuple(d.symbols[d.nspecial:])
        _check_phones(phones, f"{path} (its phone dictionary)")
        order = [phones.index(p) for p in PAPER_CLASSES]
    else:
        _check_phones(tuple(d.symbols[d.nspecial:]), f"{path} (its phone dictionary)")
        order = [d.index(p) for p in PAPER_CLASSES] + [d.bos()]  # the paper's blank is its last row
        spare = [i for i in range(len(d)) if i not in order]
        dead = all(bool((weight[i] == 0).all()) and float(bias[i]) == NEVER_LOGIT for i in spare)
        if not dead:
            notes.append(f"dropped the rows of {', '.join(d[i] for i in spare)} (no place in the paper's 41 outputs; "
                         "CTC training never targets them)")
    if weight.shape[0] != (len(d) if head == "ctc" else len(d) - d.nspecial):
        raise CheckpointError(f"{path}: w2v_encoder.proj has {weight.shape[0]} rows for a dictionary of {len(d)} "
                              "symbols; the checkpoint is damaged")
    return weight[order].to(torch.float32).contiguous(), bias[order].to(torch.float32).contiguous(), notes


def export_hubert_phoneme(src: str | Path, out: str | Path) -> PhonemeExport:
    """Write ``out/model.safetensors`` + ``out/config.json`` (the paper's HuBERTPhoneme) from a
    fine-tuned ``hubert_frame_cls`` / ``hubert_phone_ctc`` checkpoint ``src``."""
    import torch
    from safetensors.torch import save_file

    from ..core.checkpoints import read_checkpoint

    path, out = Path(src), Path(out)
    hint = "give a checkpoint fine-tuned with --arch hubert_frame_cls or hubert_phone_ctc"
    state = read_checkpoint(path, hint=hint, required=("model", "cfg"))
    head, num_layers = _check_exportable(path, state["cfg"])
    d = (state.get("task_state") or {}).get("target_dictionary")
    if d is None:
        raise CheckpointError(f"{path}: no phone dictionary in its task_state; {hint}")
    model = state["model"]
    notes: list[str] = []
    tensors: dict[str, torch.Tensor] = {}
    for key, shape in _paper_shapes(num_layers).items():
        name = f"w2v_encoder.w2v_model.{fairseq_key(key)}"
        if name not in model:
            raise CheckpointError(f"{path}: no {name!r} in its weights; the checkpoint is damaged")
        if tuple(model[name].shape) != shape:
            raise CheckpointError(f"{path}: {name!r} has shape {tuple(model[name].shape)}, HuBERT Base has {shape}")
        tensors[key] = model[name]
    weight, bias = model.get("w2v_encoder.proj.weight"), model.get("w2v_encoder.proj.bias")
    if weight is None or bias is None:
        raise CheckpointError(f"{path}: no w2v_encoder.proj (the phone head) in its weights; {hint}")
    tensors["aux.weight"], tensors["aux.bias"], head_notes = _export_head(path, head, d, weight, bias)
    notes += head_notes
    kept = (state.get("extra_state") or {}).get(EXTRA_KEY) or {}
    unused = kept.get("unused") or {}
    if not unused:
        notes.append("no logit generator in a fairseq checkpoint: wrote zeros (HuBERTPhoneme never uses it)")
    for key, shape in _LOGIT_SHAPES.items():
        tensors[key] = unused[key] if key in unused else torch.zeros(shape)
    if any(t.dtype != torch.float32 for t in tensors.values()):
        notes.append("cast to float32 (the paper's files are float32)")
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in sorted(tensors.items())}
    if num_layers != BASE_ARCH.num_layers:
        notes.append(f"{num_layers} transformer layers: the paper's HuBERTPhoneme class builds 12, so its code "
                     "loads this file only into a model built with the same layer count")
    config = {"freeze_encoder": True, **(kept.get("config") or {}), "ctc_training": head == "ctc"}

    weights, config_path = out / WEIGHTS, out / CONFIG
    with atomic_path(weights) as tmp:
        save_file(tensors, tmp, metadata={"format": "pt"})
    with atomic_write(config_path) as f:  # last: a folder with config.json is complete
        f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return PhonemeExport(weights=weights, config=config_path, head=head, num_layers=num_layers, notes=tuple(notes))


def check_export_options(args: Any) -> None:
    """``--to hubert-phoneme`` takes SRC and --out only."""
    given = [flag for flag, value in (("--config", args.config), ("--arch", args.arch), ("--normalize", args.normalize),
                                      ("--head", args.head), ("--dictionary", args.dictionary),
                                      ("--encoder-out", args.encoder_out)) if value is not None]
    if given:
        raise ConfigError(f"{args.src}: {given[0]} does not apply to --to hubert-phoneme (SRC and --out only)")


def check_import_options(args: Any) -> None:
    """What ``--from hubert-phoneme`` refuses: the encoder is always HuBERT Base reading raw waveforms."""
    if args.arch is not None:
        raise ConfigError(f"{args.src}: --arch does not apply to --from hubert-phoneme (always HuBERT Base)")
    if args.normalize:
        raise ConfigError(f"{args.src}: --normalize: the paper's models read raw waveforms; drop it")
