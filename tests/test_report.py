"""core.report: figures saved atomically and closed, percentages formatted as the stages' reports print them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from spokenlm_plugin.core.report import pct, save_figure, use_agg


def _figure(*, broken: bool = False):
    use_agg()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    if broken:  # a mathtext syntax error: raised while the figure is drawn, after a PDF file is opened
        fig.text(0.5, 0.5, r"$\frac{$")
    return fig


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"), ("", b"\x89PNG")])
def test_save_figure_writes_the_file_and_closes_the_figure(tmp_path: Path, suffix: str, magic: bytes) -> None:
    import matplotlib.pyplot as plt

    fig = _figure()
    path = tmp_path / "sub" / f"plot{suffix}"
    assert save_figure(fig, path, dpi=50) == path
    assert path.read_bytes().startswith(magic)
    assert not plt.fignum_exists(fig.number)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left


def test_save_figure_keeps_dpi(tmp_path: Path) -> None:
    from PIL import Image

    fig = _figure()  # 2 x 2 inches
    with Image.open(save_figure(fig, tmp_path / "plot.png", dpi=40)) as image:
        assert image.size == (80, 80)


@pytest.mark.parametrize("name", ["plot.pdf", "plot.svg"])
def test_a_failing_save_leaves_no_partial_file(tmp_path: Path, name: str) -> None:
    """matplotlib's own savefig opens a PDF / SVG before drawing, so a drawing error leaves a
    truncated file under the final name; save_figure leaves nothing, or the previous file intact."""
    import matplotlib.pyplot as plt

    fig = _figure(broken=True)
    with pytest.raises(ValueError):
        save_figure(fig, tmp_path / name, dpi=50)
    assert list(tmp_path.iterdir()) == []
    assert not plt.fignum_exists(fig.number)

    (tmp_path / name).write_bytes(b"previous")
    with pytest.raises(ValueError):
        save_figure(_figure(broken=True), tmp_path / name, dpi=50)
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert (tmp_path / name).read_bytes() == b"previous"


@pytest.mark.parametrize("value, ci, kwargs, expected", [
    (0.1234, None, {}, "12.3"),
    (0.1234, None, {"digits": 2}, "12.34"),
    (0.5, (0.25, 0.75), {}, "50.0 [25.0, 75.0]"),
    (0.5, [0.25, 0.75], {"digits": 2}, "50.00 [25.00, 75.00]"),
    (0.015, (-0.005, 0.035), {"signed": True}, "+1.5 [-0.5, +3.5]"),
    (-0.02, None, {"signed": True}, "-2.0"),
    (1, None, {"digits": 0}, "100"),
    (None, (0.1, 0.2), {}, "n/a"),
    (math.nan, None, {"digits": 2}, "n/a"),
])
def test_pct_formats(value: float | None, ci, kwargs: dict, expected: str) -> None:
    assert pct(value, ci, **kwargs) == expected


@pytest.mark.parametrize("v", [0.0, 1.0, 0.12345, 0.99995, 0.0005, 0.00049, -0.0123, 1 / 3, 2 / 3, 0.1 + 0.2])
def test_pct_prints_what_the_former_report_formats_printed(v: float) -> None:
    """The stages' reports print the same text as before: each former format, written out."""
    ci = (v / 2, v * 1.5)
    assert pct(v) == f"{100 * v:.1f}"
    assert pct(v, digits=2) == f"{100 * v:.2f}"
    assert pct(v, ci) == f"{100 * v:.1f}" + f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    assert pct(v, ci, digits=2) == f"{100 * v:.2f}" + f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"
    assert pct(v, ci, signed=True) == f"{100 * v:+.1f}" + f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"
