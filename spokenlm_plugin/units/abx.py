"""``spokenlm abx``: ZeroSpeech 2021 ABX error of features or units, computed by fastabx.

A thin front end to :func:`fastabx.zerospeech_abx` (the ABX itself is fastabx's): 50 Hz frames,
angular distance, ZeroSpeech subsampling (at most 10 items per cell, 5 X per (A, B) across
speakers). Conditions: triphone items with ``context="within"`` (within / across speaker), phoneme
items with ``context="within"`` or ``"any"``. The item file says which items are scored.

Inputs: a folder of per-utterance features (``<utt_id>.npy`` or ``.pt``, frames x dims, as
``spokenlm dump-features --per-utterance`` writes), or units (a ``.km`` and its manifest) turned
into one-hot vectors (``onehot``) or into their centroids.

Slicing: fastabx keeps every frame whose centre lies in an item's [onset, offset]; Libri-light's
tool (and so the published ZeroSpeech / paper numbers) dropped the last one. ``librilight_slicing``
sets fastabx's ``FASTABX_WITH_LIBRILIGHT_BUG=1`` for the call to reproduce them (fastabx reads the
variable at each call, so it is set and restored around it; without the option it is forced to 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Literal, Sequence

import numpy as np

from ..core.errors import AbxConditionError, ConfigError, FeatureError, LabelMismatchError
from ..core.io import atomic_write, read_lines, read_manifest
from ..core.km import read_km_arrays
from ..core.phones import FRAME_RATE

if TYPE_CHECKING:  # imported where used: `spokenlm <command> --help` must not wait seconds for torch
    import torch

Speaker = Literal["within", "across"]
Context = Literal["within", "any"]

#: ZeroSpeech 2021 subsampling.
MAX_SIZE_GROUP = 10
MAX_X_ACROSS = 5
ITEM_COLUMNS = ("#file", "onset", "offset", "#phone", "prev-phone", "next-phone", "speaker")
FEATURE_EXTENSIONS = (".npy", ".pt")


@dataclass(frozen=True)
class AbxResult:
    """ABX error rate (0..1, chance 0.5) of one condition."""

    speaker: Speaker
    context: Context
    error: float

    @property
    def condition(self) -> str:
        return f"{self.speaker} speaker, {self.context} context"


@contextlib.contextmanager
def _librilight_slicing(enabled: bool) -> Iterator[None]:
    name = "FASTABX_WITH_LIBRILIGHT_BUG"
    before = os.environ.get(name)
    os.environ[name] = "1" if enabled else "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def item_files(item: str | os.PathLike) -> set[str]:
    """The utterance ids named by an item file (its ``#file`` column); checks the header."""
    lines = read_lines(item)
    if not lines or tuple(lines[0].split()) != ITEM_COLUMNS:
        raise ConfigError(f"{item}: not a ZeroSpeech item file; the header must be '{' '.join(ITEM_COLUMNS)}'")
    return {line.split(" ", 1)[0] for line in lines[1:] if line.strip()}


def _empty_condition(item: str | os.PathLike, speaker: Speaker, context: Context) -> AbxConditionError:
    """The error for a condition without any ABX triplet, with its most likely cause."""
    speakers = {line.split()[-1] for line in read_lines(item)[1:] if line.strip()}
    if speaker == "across" and len(speakers) < 2:
        reason = (f"the item file has {len(speakers)} speaker{'s' if len(speakers) != 1 else ''}; "
                  "across-speaker ABX needs two or more: score --speaker within only")
    else:
        reason = "no (A, B, X) triplet satisfies it; the item file is too small for this condition"
    return AbxConditionError(f"{item}: {speaker} speaker, {context} context cannot be scored: {reason}")


def _load_feature(path: str | Path) -> torch.Tensor:
    import torch

    path = Path(path)
    x = torch.from_numpy(np.load(path)) if path.suffix == ".npy" else torch.load(path, map_location="cpu")
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        raise FeatureError(f"{path}: expected a 2-D array (frames x dims), got {getattr(x, 'shape', type(x))}")
    return x.float()


def _examples(ids: set[str]) -> str:
    shown = sorted(ids)[:3]
    return ", ".join(map(repr, shown)) + (", ..." if len(ids) > len(shown) else "")


def feature_extension(root: str | os.PathLike, needed: set[str], *, item: str | os.PathLike | None = None) -> str:
    """``.npy`` or ``.pt``: the extension under which ``root`` has every utterance of ``needed``
    (the utterances of the item file ``item``, named in the error)."""
    root = Path(root)
    if not root.is_dir():
        raise FeatureError(f"{root}: feature folder not found")
    best, best_missing = None, needed
    for ext in FEATURE_EXTENSIONS:
        found = {p.relative_to(root).as_posix().removesuffix(ext) for p in root.rglob(f"*{ext}")}
        missing = needed - found
        if not missing:
            return ext
        if len(missing) < len(best_missing):
            best, best_missing = ext, missing
    of_item = f"the item file {item}" if item is not None else "the item file"
    raise FeatureError(
        f"{root}: no features ({'/'.join(FEATURE_EXTENSIONS)}) for {len(best_missing)} of the {len(needed)} "
        f"utterances of {of_item} (e.g. {_examples(best_missing)})"
        + (f", found {best} files for the others" if best else "")
        + "; dump the item file's split with 'spokenlm dump-features --per-utterance', "
        "or give the item file of the split these features are of"
    )


def abx(
    features: str | os.PathLike,
    item: str | os.PathLike,
    *,
    speaker: Speaker = "within",
    context: Context = "within",
    feature_maker: Callable[[str | Path], torch.Tensor] | None = None,
    extension: str | None = None,
    librilight_slicing: bool = False,
    seed: int = 0,
    device: str | None = None,
    progress: bool = False,
) -> float:
    """ABX error rate (0..1) of the per-utterance features in ``features`` on ``item``."""
    import fastabx

    needed = item_files(item)
    extension = extension or feature_extension(features, needed, item=item)
    with _librilight_slicing(librilight_slicing):
        try:
            return fastabx.zerospeech_abx(
                Path(item), Path(features), max_size_group=MAX_SIZE_GROUP, max_x_across=MAX_X_ACROSS, speaker=speaker,
                context=context, distance="angular", frequency=int(FRAME_RATE),
                feature_maker=feature_maker or _load_feature, extension=extension, seed=seed, device=device,
                progress=progress,
            )
        except fastabx.EmptyTaskError:
            raise _empty_condition(item, speaker, context) from None
        except fastabx.NonFiniteError as e:
            raise FeatureError(f"{features}: {e}; the features are corrupt, dump them again") from e
        except (fastabx.FeaturesSizeError, fastabx.EmptyFeaturesError) as e:
            raise FeatureError(f"{features}: {str(e).splitlines()[0]} (item file {item})") from e
        except FileNotFoundError as e:
            raise FeatureError(f"{features}: {e}") from e


def unit_features(
    units: Sequence[np.ndarray], *, centroids: np.ndarray | None = None
) -> Callable[[np.ndarray], torch.Tensor]:
    """Map a unit sequence to frames: one-hot vectors, or the units' centroids."""
    import torch

    if centroids is not None:
        table = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))
    else:
        k = 1 + max((int(u.max()) for u in units if len(u)), default=0)
        table = torch.eye(k)  # the angular distance of one-hot vectors does not depend on k
    top = len(table)

    def embed(ids: np.ndarray) -> torch.Tensor:
        if len(ids) and (ids.min() < 0 or ids.max() >= top):
            raise FeatureError(f"unit ids {int(ids.min())}..{int(ids.max())} do not fit {top} centroids; "
                               "use the quantizer that made the units")
        return table[torch.from_numpy(ids)]

    return embed


def abx_units(
    km: str | os.PathLike,
    manifest: str | os.PathLike,
    item: str | os.PathLike,
    *,
    centroids: np.ndarray | None = None,
    speaker: Speaker = "within",
    context: Context = "within",
    librilight_slicing: bool = False,
    seed: int = 0,
    device: str | None = None,
    progress: bool = False,
) -> float:
    """ABX error rate of units (``.km`` lines in ``manifest`` order): one-hot, or centroids if given."""
    return abx_units_many(km, manifest, item, centroids=centroids, conditions=[(speaker, context)],
                          librilight_slicing=librilight_slicing, seed=seed, device=device, progress=progress)[0].error


def abx_units_many(
    km: str | os.PathLike,
    manifest: str | os.PathLike,
    item: str | os.PathLike,
    *,
    conditions: Sequence[tuple[Speaker, Context]],
    centroids: np.ndarray | None = None,
    librilight_slicing: bool = False,
    seed: int = 0,
    device: str | None = None,
    progress: bool = False,
    on_empty: Callable[[AbxConditionError], None] | None = None,
) -> list[AbxResult]:
    """:func:`abx_units` for several conditions (the unit files are written once).

    :param on_empty: called with the error of a condition that cannot be scored (e.g. across
        speaker on a one-speaker item file), which is then left out; ``None``: raise it.
    """
    rows = read_manifest(manifest).utt_ids
    units = read_km_arrays(km)
    if len(units) != len(rows):
        raise LabelMismatchError(
            f"{km}: {len(units)} lines but {manifest} has {len(rows)} rows; use the manifest the units were made from"
        )
    # Checked here: fastabx would only see the temporary folder below, and name it.
    needed = item_files(item)
    missing = needed - set(rows)
    if missing:
        raise FeatureError(
            f"{item}: {len(missing)} of its {len(needed)} utterances are not in {manifest} (the rows of "
            f"the units {km}), e.g. {_examples(missing)}; the item file is of another split: give the units and "
            "manifest of its split, or make the item file from this manifest with 'spokenlm items'"
        )
    embed = unit_features(units, centroids=centroids)
    with tempfile.TemporaryDirectory(prefix="spokenlm-abx-units-") as tmp:
        # fastabx reads one file per utterance: the unit ids go there, the embedding happens on load.
        for utt, ids in zip(rows, units):
            np.save(Path(tmp) / f"{utt}.npy", ids)
        return _each_condition(
            conditions,
            lambda s, c: abx(tmp, item, speaker=s, context=c, extension=".npy",
                             feature_maker=lambda p: embed(np.load(p)), librilight_slicing=librilight_slicing,
                             seed=seed, device=device, progress=progress),
            on_empty=on_empty,
        )


def _each_condition(
    conditions: Sequence[tuple[Speaker, Context]],
    score: Callable[[Speaker, Context], float],
    *,
    on_empty: Callable[[AbxConditionError], None] | None,
) -> list[AbxResult]:
    results = []
    for s, c in conditions:
        try:
            results.append(AbxResult(s, c, score(s, c)))
        except AbxConditionError as e:
            if on_empty is None:
                raise
            on_empty(e)
    return results


def markdown_table(results: Sequence[AbxResult], *, title: str = "ABX error (%)") -> str:
    lines = [f"| {title} | speaker | context |", "|---:|---|---|"]
    lines += [f"| {100 * r.error:.2f} | {r.speaker} | {r.context} |" for r in results]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--item", required=True, type=Path, help="ZeroSpeech item file (triphone or phoneme)")
    parser.add_argument("--features", type=Path,
                        help="folder of per-utterance features <utt_id>.npy or .pt (frames x dims, 50 Hz)")
    parser.add_argument("--units", type=Path, help="units .km (instead of --features); needs --manifest")
    parser.add_argument("--manifest", type=Path, help="the manifest whose rows the .km lines follow")
    parser.add_argument("--centroids", type=Path,
                        help="with --units: represent each unit by its centroid (.npy or joblib model)")
    parser.add_argument("--onehot", action="store_true", help="with --units: one-hot vectors (the default)")
    parser.add_argument("--speaker", nargs="+", choices=["within", "across"], default=["within", "across"],
                        help="speaker condition(s) (default: both)")
    parser.add_argument("--context", nargs="+", choices=["within", "any"], default=["within"],
                        help="context condition(s): 'within' for triphone items, 'within'/'any' for phoneme "
                             "items (default: within)")
    parser.add_argument("--librilight-slicing", action="store_true",
                        help="drop the last frame of each item like Libri-light's ABX "
                             "(FASTABX_WITH_LIBRILIGHT_BUG=1), to compare with published numbers")
    parser.add_argument("--seed", type=int, default=0, help="subsampling seed (default 0)")
    parser.add_argument("--device", default=None,
                        help="fastabx device, e.g. cpu or cuda (default: CUDA if available)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--progress", action="store_true", help="show fastabx's progress bars")


def run(args: argparse.Namespace) -> int:
    if (args.features is None) == (args.units is None):
        raise ConfigError("give either --features DIR or --units X.km (with --manifest)")
    if args.units is not None and args.manifest is None:
        raise ConfigError("--units needs --manifest (the manifest whose rows the .km lines follow)")
    if args.onehot and args.centroids is not None:
        raise ConfigError("--onehot and --centroids exclude each other")
    if args.units is None and (args.onehot or args.centroids is not None):
        raise ConfigError("--onehot / --centroids apply to --units only")
    conditions = [(s, c) for c in args.context for s in args.speaker]
    common = dict(librilight_slicing=args.librilight_slicing, seed=args.seed, device=args.device,
                  progress=args.progress)
    # A condition without triplets (across speaker on a one-speaker item file) is skipped with a
    # message; the others are still scored and written. Nothing scorable at all is the error.
    skipped: list[AbxConditionError] = []

    if args.units is not None:
        from .kmeans import load_centroids

        centroids = load_centroids(args.centroids) if args.centroids is not None else None
        results = abx_units_many(args.units, args.manifest, args.item, conditions=conditions, centroids=centroids,
                                 on_empty=skipped.append, **common)
        source = {"units": str(args.units), "manifest": str(args.manifest),
                  "representation": "centroids" if centroids is not None else "onehot"}
    else:
        results = _each_condition(
            conditions, lambda s, c: abx(args.features, args.item, speaker=s, context=c, **common), on_empty=skipped.append
        )
        source = {"features": str(args.features)}
    if not results:
        raise skipped[0]
    for e in skipped:
        print(f"spokenlm abx: skipped: {e}", file=sys.stderr)
    print(markdown_table(results))
    if args.json is not None:
        payload = {**source, "item": str(args.item), "librilight_slicing": args.librilight_slicing,
                   "seed": args.seed, "max_size_group": MAX_SIZE_GROUP, "max_x_across": MAX_X_ACROSS,
                   "distance": "angular", "frequency": int(FRAME_RATE), "results": [asdict(r) for r in results],
                   **({"skipped": [str(e) for e in skipped]} if skipped else {})}
        with atomic_write(args.json) as f:
            json.dump(payload, f, indent=2)
    return 0
