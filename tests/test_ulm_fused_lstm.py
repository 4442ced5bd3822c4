"""The unit LSTM LM's fused decoder: its full-sequence pass (torch's fused LSTM kernel) gives
fairseq's per-step loop's outputs and gradients, puts dropout where fairseq does, keeps
fairseq's checkpoint format both ways (a checkpoint of fairseq's own ``lstm_lm`` loads into it,
one of ``unit_lstm_lm_small`` from the real fairseq-train loads into fairseq's decoder), and
hands incremental decoding its cached state."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import spokenlm_plugin  # noqa: F401  (registers the unit LMs; fixes torch.load for checkpoints)
from fairseq.data import Dictionary
from fairseq.models.lstm import LSTMDecoder
from fairseq.models.lstm_lm import LSTMLanguageModel
from fairseq.tasks.language_modeling import LanguageModelingTask
from omegaconf import OmegaConf, open_dict
from spokenlm_plugin import cli
from spokenlm_plugin.core.km import write_km
from spokenlm_plugin.ulm.models import FusedLSTMDecoder, UnitLSTMLMConfig
from tests.conftest import run_cli
from tests.ulm_support import ENV, K, markov_units, train_args

ATOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _task() -> LanguageModelingTask:
    dictionary = Dictionary()
    for u in range(K):
        dictionary.add_symbol(str(u))
    return LanguageModelingTask(argparse.Namespace(data=None), dictionary)


def _dims(*, layers: int, embed: int = 12, hidden: int = 20, out: int = 12) -> dict[str, int]:
    return dict(decoder_embed_dim=embed, decoder_hidden_size=hidden, decoder_out_embed_dim=out, decoder_layers=layers)


def _build(task: LanguageModelingTask, *, dropout: float = 0.1, seed: int = 0, **fields) -> nn.Module:
    """The registered unit_lstm_lm as fairseq-train builds it (``task.build_model``)."""
    cfg = OmegaConf.structured(UnitLSTMLMConfig(tokens_per_sample=64, max_target_positions=None, dropout=dropout,
                                                **fields))
    with open_dict(cfg):
        cfg._name = "unit_lstm_lm"
    torch.manual_seed(seed)
    return task.build_model(cfg)


def _fairseq_lstm_lm(task: LanguageModelingTask, *, dropout: float = 0.1, seed: int = 0, **dims) -> nn.Module:
    """fairseq's own ``lstm_lm`` (its LSTMDecoder, the per-step loop) at the same shape."""
    args = argparse.Namespace(dropout=dropout, tokens_per_sample=64, criterion=None, **dims)
    torch.manual_seed(seed)
    return LSTMLanguageModel.build_model(args, task)


def _loop_logits(decoder: LSTMDecoder, tokens: torch.Tensor) -> torch.Tensor:
    """The same decoder's output through fairseq's loop."""
    return decoder.output_layer(LSTMDecoder.extract_features(decoder, tokens)[0])


@contextmanager
def _cell_calls(decoder: LSTMDecoder) -> Iterator[list[int]]:
    """Counts the LSTMCell calls (fairseq's loop makes one per layer and step; the fused path none)."""
    calls = [0]

    def hook(*_) -> None:
        calls[0] += 1

    handles = [cell.register_forward_hook(hook) for cell in decoder.layers]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def _padded_batch(dictionary: Dictionary, *, seed: int = 0) -> torch.Tensor:
    """Sequences of several lengths: right-padded rows (lm-score, fairseq-train) and a left-padded one."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(dictionary.nspecial, len(dictionary), (5, 23), generator=g)
    tokens[1, 15:] = dictionary.pad()
    tokens[2, 4:] = dictionary.pad()
    tokens[3, :7] = dictionary.pad()
    tokens[:, 0] = dictionary.eos()
    return tokens


# ------------------------------------------------------------------------------- same math


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("out", [12, 20])  # 20 == hidden: no additional_fc
def test_fused_outputs_match_fairseq_loop(layers: int, out: int) -> None:
    task = _task()
    model = _build(task, **_dims(layers=layers, out=out)).eval()
    decoder = model.decoder
    assert isinstance(decoder, FusedLSTMDecoder)
    tokens = _padded_batch(task.dictionary, seed=layers)
    with torch.no_grad(), _cell_calls(decoder) as calls:
        logits, attn = model(tokens)
        assert calls[0] == 0  # the fused kernel ran, not the cells
        ref = _loop_logits(decoder, tokens)
        assert calls[0] == layers * tokens.size(1)
    assert attn is None
    assert logits.shape == ref.shape == (5, 23, len(task.dictionary))
    torch.testing.assert_close(logits, ref, atol=ATOL, rtol=0)
    features, _ = decoder.extract_features(tokens)
    assert features.shape == (5, 23, out)


@pytest.mark.parametrize("mode", ["eval", "train_without_dropout"])
def test_fused_gradients_match_fairseq_loop(mode: str) -> None:
    task = _task()
    model = _build(task, dropout=0.1 if mode == "eval" else 0.0, **_dims(layers=2))
    model.train(mode != "eval")
    tokens = _padded_batch(task.dictionary, seed=3)
    target = torch.roll(tokens, -1, dims=1)

    def grads(logits: torch.Tensor) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=task.dictionary.pad()).backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    fused = grads(model(tokens)[0])
    loop = grads(_loop_logits(model.decoder, tokens))
    assert fused.keys() == loop.keys() and any(".layers.1.weight_hh" in k for k in fused)
    for name in fused:
        torch.testing.assert_close(fused[name], loop[name], atol=ATOL, rtol=0, msg=name)


class _FixedMask(nn.Module):
    """A deterministic stand-in for dropout: a fixed 0 / 2 mask per feature, the same at every
    time step, so the fused path and fairseq's loop agree exactly when (and only when) they mask
    the same tensors."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1000 + x.size(-1))
        return x * (torch.rand(x.size(-1), generator=g) < 0.5).to(x.dtype) * 2.0


@pytest.mark.parametrize("out", [12, 20])
def test_dropout_sits_where_fairseq_puts_it(out: int) -> None:
    task = _task()
    model = _build(task, **_dims(layers=3, out=out)).train()
    decoder = model.decoder
    decoder.dropout_in_module = _FixedMask(1)
    decoder.dropout_out_module = _FixedMask(2)
    tokens = _padded_batch(task.dictionary, seed=4)
    with torch.no_grad():
        fused = model(tokens)[0]
        torch.testing.assert_close(fused, _loop_logits(decoder, tokens), atol=ATOL, rtol=0)
        decoder.dropout_out_module = nn.Identity()  # the masks do change the output
        assert not torch.allclose(fused, model(tokens)[0], atol=1e-3)


def test_train_mode_dropout_is_random_and_fairseqs() -> None:
    """Real dropout in training: each call draws new masks, at fairseq's rate on the output."""
    task = _task()
    model = _build(task, dropout=0.5, **_dims(layers=2, out=20)).train()  # out == hidden: features = dropped hidden
    tokens = _padded_batch(task.dictionary, seed=5)
    with torch.no_grad():
        a, _ = model.decoder.extract_features(tokens)
        b, _ = model.decoder.extract_features(tokens)
    assert not torch.equal(a, b)
    assert 0.4 < a.eq(0).float().mean().item() < 0.6


def test_same_seed_builds_fairseqs_lstm_lm() -> None:
    """Same modules built in the same order as fairseq's lstm_lm: same names, shapes and initial weights."""
    task = _task()
    dims = _dims(layers=2)
    ours = _build(task, seed=7, **dims).state_dict()
    ref = _fairseq_lstm_lm(task, seed=7, **dims).state_dict()
    assert list(ours) == list(ref)
    for name in ref:
        assert torch.equal(ours[name], ref[name]), name


# ------------------------------------------------------------------------------ checkpoints


@pytest.fixture(scope="module")
def lm_bin(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ulm_fused")
    rows = markov_units(np.random.default_rng(3), 60)
    write_km(d / "train.km", rows[:50])
    write_km(d / "valid.km", rows[50:])
    assert cli.main(["lm-data", "--units-dir", str(d), "--splits", "train", "valid", "--out", str(d / "bin"),
                     "--vocab-size", str(K)]) == 0
    return d / "bin"


CLI_DIMS = ["--decoder-embed-dim", "16", "--decoder-hidden-size", "24", "--decoder-out-embed-dim", "16",
            "--decoder-layers", "2"]


def _reload(ckpt: Path) -> nn.Module:
    from fairseq import checkpoint_utils

    models, _, _ = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)])
    return models[0].eval()


def _scores_agree(a: nn.Module, b: nn.Module, dictionary: Dictionary) -> None:
    tokens = _padded_batch(dictionary, seed=6)
    with torch.no_grad():
        la = a.get_normalized_probs(a(tokens), log_probs=True)
        lb = b.get_normalized_probs(b(tokens), log_probs=True)
    torch.testing.assert_close(la, lb, atol=ATOL, rtol=0)


def test_fairseq_lstm_lm_checkpoint_loads_into_the_fused_model(lm_bin: Path) -> None:
    """A checkpoint of fairseq's own lstm_lm (the per-step decoder the unit LSTM used) from the
    real fairseq-train: its weights load strictly into unit_lstm_lm and score the same."""
    save = lm_bin.parent / "fairseq_lstm_lm"
    run_cli(*train_args(lm_bin, save, "lstm_lm", *CLI_DIMS, "--max-update", "3"), env=ENV)
    old = _reload(save / "checkpoint_best.pt")
    assert type(old.decoder) is LSTMDecoder
    task = _task()
    new = _build(task, **_dims(layers=2, embed=16, hidden=24, out=16)).eval()
    assert list(new.state_dict()) == list(old.state_dict())
    new.load_state_dict(old.state_dict(), strict=True)
    with _cell_calls(new.decoder) as calls:
        _scores_agree(new, old, task.dictionary)
    assert calls[0] == 0


def test_unit_lstm_lm_small_trains_and_its_checkpoint_loads_into_fairseqs_decoder(lm_bin: Path) -> None:
    """--arch unit_lstm_lm_small through the real fairseq-train (fused path, dropout on), and the
    checkpoint's weights load strictly into fairseq's lstm_lm with the same scores."""
    save = lm_bin.parent / "unit_lstm"
    proc = run_cli(*train_args(lm_bin, save, "unit_lstm_lm_small", *CLI_DIMS, "--max-update", "3"), env=ENV)
    assert "num_updates 3" in proc.stdout + proc.stderr
    new = _reload(save / "checkpoint_best.pt")
    assert type(new.decoder) is FusedLSTMDecoder
    state = torch.load(save / "checkpoint_best.pt", weights_only=False)["model"]
    task = _task()
    old = _fairseq_lstm_lm(task, **_dims(layers=2, embed=16, hidden=24, out=16)).eval()
    old.load_state_dict(state, strict=True)
    assert list(old.state_dict()) == list(new.state_dict())
    _scores_agree(new, old, task.dictionary)


# ------------------------------------------------------------------------------ generation


def _step_by_step(model: nn.Module, tokens: torch.Tensor, *, prefix: int) -> tuple[torch.Tensor, int]:
    """fairseq-generate's calls: the prefix with an empty cache, then one token at a time with
    the cache (fairseq's loop). Log-probs of every position, and the LSTMCell calls made."""
    state: dict[str, dict[str, torch.Tensor | None]] = {}
    with _cell_calls(model.decoder) as calls:
        first = model.decoder(tokens[:, :prefix], incremental_state=state)
        assert calls[0] == 0 and state  # the fused path left the cache
        outs = [first[0]]
        for t in range(prefix + 1, tokens.size(1) + 1):
            outs.append(model.decoder(tokens[:, :t], incremental_state=state)[0])
    lprobs = model.get_normalized_probs((torch.cat(outs, dim=1), None), log_probs=True)
    return lprobs, calls[0]


@pytest.mark.parametrize("prefix", [1, 6])
def test_incremental_decoding_matches_the_full_sequence(prefix: int) -> None:
    task = _task()
    model = _build(task, **_dims(layers=3)).eval()
    tokens = _padded_batch(task.dictionary, seed=8)
    with torch.no_grad():
        full = model.get_normalized_probs(model(tokens), log_probs=True)
        steps, calls = _step_by_step(model, tokens, prefix=prefix)
    assert calls == 3 * (tokens.size(1) - prefix)
    torch.testing.assert_close(steps, full, atol=ATOL, rtol=0)


def test_incremental_state_reorders_like_a_beam() -> None:
    task = _task()
    model = _build(task, **_dims(layers=2)).eval()
    decoder = model.decoder
    tokens = _padded_batch(task.dictionary, seed=9)
    order = torch.tensor([4, 4, 0, 2, 1])
    with torch.no_grad():
        full = decoder(tokens[order])[0]
        state: dict[str, dict[str, torch.Tensor | None]] = {}
        decoder(tokens[:, :5], incremental_state=state)
        decoder.reorder_incremental_state(state, order)
        outs = [decoder(tokens[order][:, :t], incremental_state=state)[0] for t in range(6, tokens.size(1) + 1)]
    torch.testing.assert_close(torch.cat(outs, dim=1), full[:, 5:], atol=ATOL, rtol=0)


def test_unsupported_configurations_keep_fairseqs_loop() -> None:
    """Residual connections are not fused: the model computes them with fairseq's loop."""
    task = _task()
    model = _build(task, residuals=True, **_dims(layers=2, embed=20)).eval()
    tokens = _padded_batch(task.dictionary, seed=10)
    with torch.no_grad(), _cell_calls(model.decoder) as calls:
        model(tokens)
    assert calls[0] == 2 * tokens.size(1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fused_outputs_match_fairseq_loop_on_cuda() -> None:
    task = _task()
    model = _build(task, **_dims(layers=3)).eval().cuda()
    tokens = _padded_batch(task.dictionary, seed=11).cuda()
    with torch.no_grad():
        torch.testing.assert_close(model(tokens)[0], _loop_logits(model.decoder, tokens), atol=ATOL, rtol=0)
