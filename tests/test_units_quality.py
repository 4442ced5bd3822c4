"""Phone purity, cluster purity and PNMI: a slow oracle, fairseq's own script, properties, the CLI."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from spokenlm_plugin.cli import main
from spokenlm_plugin.core.errors import DictionaryError, LabelMismatchError
from spokenlm_plugin.units.quality import unit_quality


def slow_quality(units: list[list[int]], labels: list[list[str]]) -> tuple[float, float, float]:
    """(phone purity, cluster purity, PNMI) with dictionaries and loops, straight from the definitions."""
    counts: dict[tuple[str, int], int] = {}
    for u_line, y_line in zip(units, labels):
        for t in range(min(len(u_line), len(y_line))):
            key = (y_line[t], u_line[t])
            counts[key] = counts.get(key, 0) + 1
    total = sum(counts.values())
    phones = sorted({y for y, _ in counts})
    clusters = sorted({z for _, z in counts})
    p_y = {y: sum(n for (yy, _), n in counts.items() if yy == y) / total for y in phones}
    p_z = {z: sum(n for (_, zz), n in counts.items() if zz == z) / total for z in clusters}
    phone_purity = sum(max(counts.get((y, z), 0) for y in phones) for z in clusters) / total
    cluster_purity = sum(max(counts.get((y, z), 0) for z in clusters) for y in phones) / total
    mi = sum(n / total * math.log(n / total / (p_y[y] * p_z[z])) for (y, z), n in counts.items())
    h_y = -sum(p * math.log(p) for p in p_y.values())
    return phone_purity, cluster_purity, mi / h_y


@pytest.fixture(scope="module")
def phone_labels(corpus_dir: Path) -> list[list[str]]:
    return [line.split() for line in (corpus_dir / "labels" / "train.phn").read_text().splitlines()]


def noisy_units(labels: list[list[str]], *, noise: float, seed: int = 0, k: int = 60) -> list[list[int]]:
    """Units that follow the phones, split into several units each, with a share of random frames."""
    rng = random.Random(seed)
    code = {p: i for i, p in enumerate(sorted({p for line in labels for p in line}))}
    return [[rng.randrange(k) if rng.random() < noise else (3 * code[p] + rng.randrange(3)) % k for p in line]
            for line in labels]


def test_matches_slow_oracle(phone_labels: list[list[str]]) -> None:
    for noise in (0.0, 0.3, 0.9):
        units = noisy_units(phone_labels, noise=noise, seed=int(10 * noise))
        q = unit_quality(units, phone_labels)
        expected = slow_quality(units, phone_labels)
        assert (q.phone_purity, q.cluster_purity, q.pnmi) == pytest.approx(expected, abs=1e-12)
        assert q.frames == sum(map(len, phone_labels))


def test_matches_fairseq_measure_teacher_quality(phone_labels: list[list[str]]) -> None:
    from fairseq.examples.hubert.measure_teacher_quality import comp_joint_prob, comp_norm_mutual_info, comp_purity

    units = noisy_units(phone_labels, noise=0.4, seed=5)
    refs = {str(i): y for i, y in enumerate(phone_labels)}
    hyps = {str(i): u for i, u in enumerate(units)}
    p_xy, *_ = comp_joint_prob(refs, hyps)
    _, phone_purity = comp_purity(p_xy, axis=0)
    _, cluster_purity = comp_purity(p_xy, axis=1)
    _, pnmi, _, _, _ = comp_norm_mutual_info(p_xy)
    q = unit_quality(units, phone_labels)
    assert q.phone_purity == pytest.approx(phone_purity, abs=1e-9)
    assert q.cluster_purity == pytest.approx(cluster_purity, abs=1e-9)
    assert q.pnmi == pytest.approx(pnmi, abs=1e-6)  # fairseq adds 1e-8 inside its logarithms


def test_properties(phone_labels: list[list[str]]) -> None:
    phones = sorted({p for line in phone_labels for p in line})
    relabel = dict(zip(phones, random.Random(1).sample(range(1000), len(phones))))
    same = unit_quality([[relabel[p] for p in line] for line in phone_labels], phone_labels)
    assert same.pnmi == pytest.approx(1.0) and same.phone_purity == pytest.approx(1.0)
    assert same.cluster_purity == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    random_units = [rng.integers(0, 20, size=len(line)).tolist() for line in phone_labels]
    chance = unit_quality(random_units, phone_labels)
    assert 0.0 <= chance.pnmi < 0.03
    one_unit = unit_quality([[7] * len(line) for line in phone_labels], phone_labels)
    assert one_unit.pnmi == pytest.approx(0.0, abs=1e-12) and one_unit.units_used == 1
    # More random frames, less information about the phones: every measure falls with the noise.
    noisier = [unit_quality(noisy_units(phone_labels, noise=n, seed=1, k=120), phone_labels) for n in (0.0, 0.3, 0.6, 0.9)]
    for measure in ("pnmi", "phone_purity", "cluster_purity"):
        values = [getattr(q, measure) for q in noisier]
        assert all(a > b for a, b in zip(values, values[1:])), (measure, values)
    # Units that split each phone in three lose no phone information (PNMI 1, each unit one phone),
    # but each phone spreads over three units (cluster purity about 1/3).
    assert noisier[0].pnmi == pytest.approx(1.0) and noisier[0].phone_purity == pytest.approx(1.0)
    assert noisier[0].cluster_purity == pytest.approx(1 / 3, abs=0.05)


def test_cli_trims_one_frame_and_rejects_more(phone_labels: list[list[str]], corpus_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    units = noisy_units(phone_labels, noise=0.3)
    # HuBERT may give one frame more or less than the labels at the end of an utterance.
    ragged = [u[:-1] if i % 3 == 0 else u + [u[-1]] if i % 3 == 1 else u for i, u in enumerate(units)]
    km = tmp_path / "train.km"
    km.write_text("".join(" ".join(map(str, u)) + "\n" for u in ragged))
    labels = corpus_dir / "labels" / "train.phn"
    assert main(["unit-quality", "--units", str(km), "--labels", str(labels), "--dict",
                 str(corpus_dir / "labels" / "dict.phn.txt"), "--json", str(tmp_path / "q.json")]) == 0
    assert "| phone purity | cluster purity | PNMI |" in capsys.readouterr().out
    result = json.loads((tmp_path / "q.json").read_text())
    expected = slow_quality(ragged, phone_labels)
    assert (result["phone_purity"], result["cluster_purity"], result["pnmi"]) == pytest.approx(expected, abs=1e-12)
    assert result["trimmed_frames"] == len([i for i in range(len(units)) if i % 3 != 2])

    def error(km_lines: list[list[int]], *extra: str) -> str:
        km.write_text("".join(" ".join(map(str, u)) + "\n" for u in km_lines))
        assert main(["unit-quality", "--units", str(km), "--labels", str(labels), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    assert "line 2: " in error([units[0], units[1] + [0, 0], *units[2:]])  # two frames too many
    assert f"{len(units) - 1} unit lines but {len(units)} label lines" in error(units[:-1])
    small_dict = tmp_path / "dict.txt"
    small_dict.write_text("SIL 1\nAH 1\n")
    assert "is not in the phone dictionary" in error(units, "--dict", str(small_dict))


def test_library_errors() -> None:
    with pytest.raises(LabelMismatchError, match="no frames"):
        unit_quality([[]], [[]])
    with pytest.raises(DictionaryError, match="'ZZ'"):
        unit_quality([[1, 2]], [["AA", "ZZ"]], phones=["AA"])
