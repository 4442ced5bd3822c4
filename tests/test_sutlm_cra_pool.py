"""CRA candidate pools: same-speaker sets against a slow reference, the chance in force, the CLI option."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from spokenlm_plugin import cli
from spokenlm_plugin.sutlm.align import AlignedUtterance
from spokenlm_plugin.sutlm.data import DataConfig, build, write_aligned
from spokenlm_plugin.sutlm.evaluate import cra
from spokenlm_plugin.sutlm.metrics import candidate_sets
from spokenlm_plugin.sutlm.sequences import AstConfig, Renderer
from spokenlm_plugin.sutlm.tokens import MARKERS, Tokenizer, unit_char

from .conftest import fails_in_one_line, run_cli
from .ulm_support import untrained_checkpoint
from .vocoder_support import phone_km

#: speaker -> its units (its "voice": no unit is shared between speakers)
BANDS = {"ann": range(5), "bob": range(5, 10), "cy": range(10, 15), "dee": range(15, 20)}


def _reference_sets(speakers: list[str], *, size: int, seed: int) -> list[list[int]]:
    """Slow reference of the documented same-speaker rule: speaker by speaker (sorted names), its items
    in item order shuffled by ``random.Random(f"{seed}:{speaker}")``, sets of ``size`` taken off the front
    while 2 or more remain."""
    out = []
    for spk in sorted(set(speakers)):
        left = [i for i in range(len(speakers)) if speakers[i] == spk]
        random.Random(f"{seed}:{spk}").shuffle(left)
        while len(left) >= 2:
            out.append(sorted(left[:size]))
            left = left[size:]
    return out


def test_same_speaker_sets_match_a_slow_reference() -> None:
    rng = random.Random(3)
    for trial in range(40):
        names = [f"s{k}" for k in range(rng.randint(1, 6))]
        speakers = [rng.choice(names) for _ in range(rng.randint(0, 40))]
        for size in (2, 3, 5, 10):
            sets = candidate_sets(speakers, size=size, pool="same-speaker", seed=trial)
            assert sets == _reference_sets(speakers, size=size, seed=trial)
            # what the rule implies, counted without it: one speaker per set, every speaker's items
            # in sets of `size` plus one set of the rest, a lone leftover item in none
            assert all(len({speakers[i] for i in s}) == 1 and 2 <= len(s) <= size for s in sets)
            flat = [i for s in sets for i in s]
            assert len(flat) == len(set(flat))
            for spk in set(speakers):
                n = speakers.count(spk)
                sizes = sorted(len(s) for s in sets if speakers[s[0]] == spk)
                assert sizes == sorted([size] * (n // size) + [n % size] * (n % size >= 2))
            assert len(speakers) - len(flat) == sum(speakers.count(s) % size == 1 for s in set(speakers))
    # consecutive sets: the items in order, the last n mod C in none
    assert candidate_sets(list("abababa"), size=3, pool="consecutive") == [[0, 1, 2], [3, 4, 5]]
    assert candidate_sets(list("ab"), size=10, pool="consecutive") == [[0, 1]]
    # a speaker's sets do not depend on the other speakers; the seed reshuffles them
    speakers = ["x"] * 9 + ["y"] * 7
    alone = candidate_sets(["x"] * 9, size=4, pool="same-speaker", seed=5)
    assert candidate_sets(speakers, size=4, pool="same-speaker", seed=5)[:len(alone)] == alone
    assert len({str(candidate_sets(speakers, size=4, pool="same-speaker", seed=s)) for s in range(5)}) > 1


# ----------------------------------------------------------------------------- CRA with a bigram LM


class BigramLM(torch.nn.Module):
    """A fixed bigram LM: ``log_softmax(table[previous token])``, the interface CRA scores with."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table, requires_grad=False)

    def forward(self, src: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.table[src], None

    def get_normalized_probs(self, net_output: tuple[torch.Tensor, None], *, log_probs: bool) -> torch.Tensor:
        assert log_probs
        return torch.log_softmax(net_output[0].double(), dim=-1)


def _dictionary():
    from fairseq.data import Dictionary

    d = Dictionary()
    for sym in [*MARKERS, *(unit_char(u) for u in range(20))]:
        d.add_symbol(sym)
    return d


def _voice_lm(d) -> BigramLM:
    """Knows voices only: after a unit of one speaker, that speaker's units are likely, others not."""
    band = {d.index(unit_char(u)): spk for spk, units in BANDS.items() for u in units}
    table = torch.zeros(len(d), len(d))
    for i, spk in band.items():
        for j in range(len(d)):
            table[i, j] = 0.0 if band.get(j) == spk else -6.0
    return BigramLM(table)


def _items(counts: dict[str, int], *, seed: int = 0) -> list[AlignedUtterance]:
    """Utterances of 4 words of 2 units each in their speaker's units, speakers interleaved as a corpus
    split lists them (round robin)."""
    rng = random.Random(seed)
    queues = {spk: [f"{spk}_{k:03d}" for k in range(n)] for spk, n in counts.items()}
    out = []
    while any(queues.values()):
        for spk, q in queues.items():
            if q:
                units = tuple(rng.choice(BANDS[spk]) for _ in range(8))
                out.append(AlignedUtterance(q.pop(0), ("a", "b", "c", "d"), units, (0, 2, 4, 6, 8)))
    return out


RENDERER = Renderer(units=Tokenizer(None, kind="units"), text=Tokenizer(None, kind="text"))


def test_same_speaker_pools_take_away_the_voice_and_report_the_chance_in_force() -> None:
    d = _dictionary()
    lm = _voice_lm(d)
    items = _items({"ann": 7, "bob": 3, "cy": 2, "dee": 1})  # uneven speakers, C = 3
    r = cra(lm, d, RENDERER, items, condition="u2u", candidates=3, pool="same-speaker", resamples=0)
    assert r.pool == "same-speaker" and r.speakers == 3
    # ann 7 -> 3 + 3 (+ 1 left over), bob 3 -> 3, cy 2 -> 2, dee 1 -> none: 11 items in 4 sets
    assert r.items == 11 and r.unscored == 2 and r.set_sizes == {3: 3, 2: 1} and r.candidates == 3
    assert r.chance == pytest.approx((3 * 3 * (1 / 3) + 2 * (1 / 2)) / 11) == pytest.approx(4 / 11)
    for s in r.sets:
        assert len({u.split("_")[0] for u in s}) == 1, s
    assert sorted(u for s in r.sets for u in s) == sorted(r.utt_ids)
    order = [u.utt_id for u in items]
    assert r.utt_ids == sorted(r.utt_ids, key=order.index) and len(r.hits) == r.items
    # every context of a speaker predicts its continuation equally well: all tie, exactly chance
    assert r.accuracy == pytest.approx(r.chance)
    # mixed-speaker sets let the same LM retrieve by voice alone
    mixed = cra(lm, d, RENDERER, items, condition="u2u", candidates=3, pool="consecutive", resamples=0)
    assert mixed.pool == "consecutive" and mixed.speakers is None and mixed.chance == pytest.approx(1 / 3)
    assert mixed.items == 12 and mixed.unscored == 1 and mixed.set_sizes == {3: 4}
    assert any(len({u.split("_")[0] for u in s}) > 1 for s in mixed.sets)
    assert mixed.accuracy > mixed.chance + 0.3


def test_cra_hits_match_a_pair_by_pair_reference() -> None:
    """Sets of several sizes scored in one batch: each set's scores as a slow loop over its pairs says."""
    d = _dictionary()
    torch.manual_seed(0)
    lm = BigramLM(torch.randn(len(d), len(d)))
    items = _items({"ann": 6, "bob": 4, "cy": 2}, seed=1)
    r = cra(lm, d, RENDERER, items, condition="u2u", candidates=4, pool="same-speaker", seed=2, resamples=0)
    assert r.set_sizes == {4: 2, 2: 2}
    by_id = {u.utt_id: u for u in items}

    def logp(prompt: AlignedUtterance, cont: AlignedUtterance) -> float:
        context = [d.eos(), *(d.index(unit_char(x)) for x in prompt.word_units(0, 2))]
        seq = context + [d.index(unit_char(x)) for x in cont.word_units(2, 4)]
        lp = torch.log_softmax(lm.table.double(), dim=-1)
        return sum(lp[seq[t - 1], seq[t]].item() for t in range(len(context), len(seq)))

    expected = {}
    for s in r.sets:
        for j in s:
            scores = [logp(by_id[i], by_id[j]) for i in s]
            best = max(scores)
            tied = [i for i, v in zip(s, scores) if v == pytest.approx(best, abs=1e-9)]
            expected[j] = 1 / len(tied) if j in tied else 0.0
    assert r.hits == pytest.approx([expected[u] for u in r.utt_ids])
    assert r.accuracy == pytest.approx(np.mean(list(expected.values())))


def test_same_speaker_refusals() -> None:
    from spokenlm_plugin.core.errors import ConfigError

    d = _dictionary()
    lm = _voice_lm(d)
    lonely = _items({"ann": 1, "bob": 1, "cy": 1})
    with pytest.raises(ConfigError, match=r"^t\.jsonl: 3 usable items for u2u but no speaker has 2 of them"):
        cra(lm, d, RENDERER, lonely, condition="u2u", pool="same-speaker", where="t.jsonl")
    assert cra(lm, d, RENDERER, lonely, condition="u2u", pool="consecutive", resamples=0).items == 3
    odd = [AlignedUtterance("u1", ("a", "b"), (1, 2), (0, 1, 2)), AlignedUtterance("u2", ("a", "b"), (1, 2), (0, 1, 2))]
    with pytest.raises(ConfigError, match=r"utterance id 'u1' does not split into speaker and utterance.*--speaker-map"):
        cra(lm, d, RENDERER, odd, condition="u2u", pool="same-speaker", where="t.jsonl")
    r = cra(lm, d, RENDERER, odd, condition="u2u", pool="same-speaker", speakers=["x", "x"], resamples=0)
    assert r.sets == [["u1", "u2"]]


# ----------------------------------------------------------------------------- the CLI


def test_cli_refuses_a_bad_pool_and_ids_without_a_speaker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = tmp_path / "test.jsonl"
    write_aligned(items, [AlignedUtterance(f"u{k}", ("a", "b"), (1, 2), (0, 1, 2)) for k in range(4)])
    base = ["sutlm-eval", "--checkpoint", str(tmp_path / "none.pt"), "--data", str(tmp_path / "none"),
            "--items", str(items)]
    with pytest.raises(SystemExit) as exc:
        cli.main([*base, "--candidate-pool", "speaker"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and err[-1].startswith("spokenlm sutlm-eval: error: argument --candidate-pool: "
                                                      "invalid choice: 'speaker'"), err
    assert "'same-speaker'" in err[-1] and "'consecutive'" in err[-1]
    # refused before any model is loaded (the checkpoint does not even exist)
    fails_in_one_line(base, capsys, f"{items}: utterance id 'u0' does not split into speaker",
                      "--speaker-map FILE", "--candidate-pool consecutive")
    spk_map = tmp_path / "speakers.tsv"
    spk_map.write_text("u0\tx\nu1\tx\nu2\ty\n")
    fails_in_one_line([*base, "--speaker-map", str(spk_map)], capsys,
                      f"{spk_map}: utterance 'u3' of {items} is not in the speaker map")
    fails_in_one_line([*base, "--speaker-map", str(spk_map), "--candidate-pool", "consecutive"], capsys,
                      f"--speaker-map {spk_map}: only --candidate-pool same-speaker reads speakers")


def test_cli_same_speaker_sets_on_the_corpus(corpus_dir: Path, tmp_path: Path) -> None:
    """sutlm-eval on the corpus' test split (4 + 4 utterances of 2 speakers) with an untrained joint LM."""
    corpus = tmp_path / "corpus"
    for sub in ("manifests", "transcripts", "alignments"):
        shutil.copytree(corpus_dir / sub, corpus / sub)
    phone_km(corpus_dir, tmp_path / "km")
    build(corpus, tmp_path / "km", tmp_path / "out", cfg=DataConfig(
        vocab_size=40, unit_vocab_sizes=(0,), text_vocab_size=200, text_max_sentences=150,
        ast=AstConfig(per_utterance=0)))
    data = tmp_path / "out" / "units-raw"
    lm = untrained_checkpoint(tmp_path / "joint.pt", [str(data), "--task", "speech_text_lm", "--arch", "sutlm_transformer_lm_tiny",
                                                      "--decoder-embed-dim", "16", "--decoder-ffn-embed-dim", "16",
                                                      "--decoder-layers", "1", "--decoder-attention-heads", "2"])
    args = ["spokenlm", "sutlm-eval", "--checkpoint", str(lm), "--data", str(data), "--items",
            str(tmp_path / "out" / "aligned" / "test.jsonl"), "--conditions", "u2u", "t2u", "--candidates", "3",
            "--ci-resamples", "0"]
    proc = run_cli(*args, "--json", str(tmp_path / "same.json"), env={"OMP_NUM_THREADS": "1"})
    same = json.loads((tmp_path / "same.json").read_text())["cra"]
    for r in same:
        # 4 utterances a speaker: one set of 3 each, its 4th item left over
        assert r["pool"] == "same-speaker" and r["speakers"] == 2 and r["set_sizes"] == {"3": 2}
        assert r["items"] == 6 and r["unscored"] == 2 and r["chance"] == pytest.approx(1 / 3)
        assert all(len({u.split("_")[0] for u in s}) == 1 for s in r["sets"])
    assert "chance 33.3 %, 6 items in candidate sets of 2 x 3 (one speaker each, 2 speakers), 2 not scored" in proc.stdout
    run_cli(*args, "--candidate-pool", "consecutive", "--json", str(tmp_path / "cons.json"), env={"OMP_NUM_THREADS": "1"})
    cons = json.loads((tmp_path / "cons.json").read_text())["cra"][0]
    assert cons["pool"] == "consecutive" and cons["speakers"] is None and cons["set_sizes"] == {"3": 2}
    # the corpus lists one speaker after the other: the second consecutive set straddles them
    assert any(len({u.split("_")[0] for u in s}) > 1 for s in cons["sets"])
