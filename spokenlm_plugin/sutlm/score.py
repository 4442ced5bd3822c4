"""log p(continuation | context) under a fairseq LM, batched; and loading a joint / text LM.

The scored sum is ``sum_t log p(c_t | </s>, x_1 .. x_m, c_1 .. c_{t-1})`` over the continuation
tokens ``c`` only (no end of sentence), the context ``x`` read after ``</s>``, the begin symbol a
``--sample-break-mode eos`` LM saw before every training sequence (as :mod:`spokenlm_plugin.ulm.score`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.checkpoints import read_checkpoint, task_name
from ..core.errors import CheckpointError, DictionaryError
from ..ulm.checkpoint import check_dictionary_fits
from .tokens import is_unit_token, string_to_units


#: Tasks of the LMs this module scores with: the joint LM and the text-only LM.
LM_TASKS = ("speech_text_lm", "language_modeling")


def load_lm(checkpoint: str | os.PathLike, *, data: str | os.PathLike | None = None, device: str = "cpu",
            data_option: str = "--data"):
    """A trained fairseq LM (joint ``speech_text_lm`` or plain ``language_modeling``) and its task, eval mode.

    :param data_option: the option that gives ``data``, as the messages name it.
    """
    checkpoint = Path(checkpoint)
    hint = f"give fairseq-train's checkpoint and {data_option} with its dict.txt"
    state = read_checkpoint(checkpoint, hint=hint, arg_overrides={"data": str(data)} if data is not None else None)
    if task_name(state) not in LM_TASKS:
        raise CheckpointError(f"{checkpoint}: a {task_name(state)!r} checkpoint, not an LM ({' or '.join(LM_TASKS)}); {hint}")
    from fairseq import checkpoint_utils  # after read_checkpoint has registered the plugin

    dict_path = Path(str(state["cfg"].task.get("data") or "").split(os.pathsep)[0]) / "dict.txt"
    if not dict_path.is_file():
        raise CheckpointError(f"{checkpoint}: its dictionary {dict_path} is not there; pass {data_option} with the LM's "
                              "data folder (units-raw / units-spN / textlm of sutlm-data)")
    check_dictionary_fits(state, checkpoint=checkpoint, dictionary=dict_path, option=data_option)
    try:
        models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)], state=state)
    except (FileNotFoundError, KeyError, RuntimeError, ValueError) as e:  # a dictionary gone, weights that do not fit
        raise CheckpointError(f"{checkpoint}: not a loadable fairseq LM checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''}); {hint}") from None
    return models[0].eval().to(device), task


def lm_units(dictionary) -> list[int]:
    """The unit ids the joint LM's dictionary holds (those of its unit tokens), sorted."""
    return sorted({u for sym in dictionary.symbols if is_unit_token(sym) for u in string_to_units(sym)})


def indices(dictionary, tokens: Sequence[str], *, where: str = "") -> list[int]:
    """Dictionary indices of ``tokens``; a token outside the dictionary is a :class:`DictionaryError`
    (a unit token named by its unit ids, as the user wrote them, not by its internal character)."""
    out = []
    for t in tokens:
        i = dictionary.index(t)
        if i == dictionary.unk():
            if is_unit_token(t):
                known = lm_units(dictionary)
                have = f"units {known[0]}..{known[-1]}" if known else "no unit"
                shown = " ".join(map(str, string_to_units(t)))
                raise DictionaryError(f"{where}: unit{'s' if len(t) > 1 else ''} {shown} not in the LM's dictionary "
                                      f"(it holds {have}); use units of the k-means the LM was trained on")
            raise DictionaryError(f"{where}: token {t!r} is not in the LM's dictionary; "
                                  "use data made with the same SentencePiece models as the LM's")
        out.append(i)
    return out


def continuation_logprobs(
    model, dictionary, contexts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]], *,
    batch_size: int = 64,
) -> np.ndarray:
    """Sum of log p over each continuation (dictionary indices) after its context; one value per pair."""
    import torch

    if len(contexts) != len(continuations):
        raise ValueError("one context per continuation")
    seqs = [[dictionary.eos(), *c, *x] for c, x in zip(contexts, continuations)]
    order = np.argsort([-len(s) for s in seqs], kind="stable")
    device = next(model.parameters()).device
    out = np.zeros(len(seqs), dtype=np.float64)
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        width = len(seqs[batch[0]]) - 1
        src = torch.full((len(batch), width), dictionary.pad(), dtype=torch.long)
        tgt = torch.full((len(batch), width), dictionary.pad(), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, i in enumerate(batch):
            s = torch.tensor(seqs[i], dtype=torch.long)
            n = len(s) - 1
            src[row, :n], tgt[row, :n] = s[:-1], s[1:]
            mask[row, n - len(continuations[i]):n] = True
        # Right padding is harmless: the LM is causal.
        with torch.no_grad():  # not a decorator: torch is imported lazily
            lprobs = model.get_normalized_probs(model(src.to(device)), log_probs=True)
        lp = lprobs.gather(-1, tgt.to(device).unsqueeze(-1)).squeeze(-1).double().cpu()
        out[batch] = lp.masked_fill(~mask, 0.0).sum(dim=1).numpy()
    return out
