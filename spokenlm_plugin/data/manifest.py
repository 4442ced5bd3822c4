"""``spokenlm manifest``: a fairseq audio manifest from a folder of audio files.

Files are found recursively and listed sorted by relative path, so the same folder always gives
the same manifest. Every file is checked (readable, non-empty, complete: a WAV or FLAC cut short is
refused, not listed with the samples left; 16 kHz, mono); anything else is an error naming the file,
unless the user asks to convert (``--resample-to-dir``) or to skip (``--skip-bad``, the skipped
files are listed in ``<manifest stem>.skipped.txt`` beside it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import AudioFormatError, ConfigError, ManifestError
from ..core.io import ManifestRow, atomic_write, write_manifest
from ..core.audio import check_audio, convert_audio


@dataclass(frozen=True)
class ManifestReport:
    """What :func:`build_manifest` wrote."""

    manifest: Path
    root: Path
    num_files: int
    num_samples: int
    skipped: tuple[tuple[str, str], ...]  # (relative path, reason)
    skipped_list: Path | None

    @property
    def hours(self) -> float:
        return self.num_samples / 16_000 / 3600


def skipped_list_path(manifest: str | os.PathLike) -> Path:
    """``X.tsv`` -> ``X.skipped.txt``: where skipped inputs are listed, beside the output."""
    manifest = Path(manifest)
    return manifest.with_name(f"{manifest.stem}.skipped.txt")


def find_audio(audio_dir: str | os.PathLike, *, ext: str = "flac") -> list[Path]:
    """Audio files under ``audio_dir`` (recursive), as paths relative to it, sorted."""
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise ManifestError(f"{audio_dir}: not a folder; give the folder that holds the audio files")
    ext = ext.lstrip(".")
    # Hidden files are left out: atomic writers name their temporary files ".<name>...".
    files = [
        p.relative_to(audio_dir) for p in audio_dir.rglob(f"*.{ext}") if p.is_file() and not p.name.startswith(".")
    ]
    if not files:
        raise ManifestError(f"{audio_dir}: no *.{ext} files found (recursively); check the folder or pass --ext")
    return sorted(files, key=lambda p: p.as_posix())


def build_manifest(
    audio_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    ext: str = "flac",
    resample_to_dir: str | os.PathLike | None = None,
    skip_bad: bool = False,
) -> ManifestReport:
    """Check every audio file under ``audio_dir`` and write the manifest ``out`` atomically.

    With ``resample_to_dir``, every file is written there as 16 kHz mono (same relative path)
    and the manifest lists those copies. With ``skip_bad``, bad files are left out and listed in
    :func:`skipped_list_path`; otherwise the first bad file raises :class:`AudioFormatError`.
    """
    audio_dir, out = Path(audio_dir), Path(out)
    if resample_to_dir is not None and Path(resample_to_dir).resolve() == audio_dir.resolve():
        raise ConfigError(
            f"{resample_to_dir}: --resample-to-dir must differ from AUDIO_DIR (inputs would be overwritten)"
        )
    root = Path(resample_to_dir) if resample_to_dir is not None else audio_dir
    rows: list[ManifestRow] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for rel in find_audio(audio_dir, ext=ext):
        try:
            if resample_to_dir is None:
                info = check_audio(audio_dir / rel)
            else:
                info = convert_audio(audio_dir / rel, root / rel)
        except AudioFormatError as e:
            if not skip_bad:
                raise
            skipped.append((rel.as_posix(), str(e)))
            continue
        row = ManifestRow(rel.as_posix(), info.num_samples)
        # The stem is the key joining manifests, alignments and features: it must be unique.
        if row.utt_id in seen:
            raise ManifestError(
                f"{audio_dir / rel}: utterance id {row.utt_id!r} already used by {audio_dir / seen[row.utt_id]}; "
                "file stems must be unique across sub-folders"
            )
        seen[row.utt_id] = row.relpath
        rows.append(row)
    if not rows:
        raise ManifestError(f"{audio_dir}: every audio file was skipped as bad; see the files' errors above")
    write_manifest(out, root, rows)
    listing = skipped_list_path(out)
    if skipped:
        with atomic_write(listing) as f:
            f.writelines(f"{rel}\t{reason}\n" for rel, reason in skipped)
    else:
        # A list left by an earlier run would describe files that are now in the manifest.
        with contextlib.suppress(FileNotFoundError):
            listing.unlink()
    return ManifestReport(
        manifest=out,
        root=root.resolve(),
        num_files=len(rows),
        num_samples=sum(r.num_samples for r in rows),
        skipped=tuple(skipped),
        skipped_list=listing if skipped else None,
    )


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio_dir", metavar="AUDIO_DIR", help="folder of audio files (searched recursively)")
    parser.add_argument("--out", required=True, help="manifest to write (e.g. manifests/train.tsv)")
    parser.add_argument("--ext", default="flac", help="audio file extension to look for (default: flac)")
    parser.add_argument(
        "--resample-to-dir",
        metavar="DIR",
        help="write 16 kHz mono copies of the audio into DIR (same relative paths) and list those; "
        "needed when the audio is not 16 kHz mono",
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out unreadable / empty / truncated / non-16 kHz / non-mono files instead of stopping; "
        "they are listed in <out stem>.skipped.txt",
    )


def run(args: argparse.Namespace) -> int:
    report = build_manifest(
        args.audio_dir, args.out, ext=args.ext, resample_to_dir=args.resample_to_dir, skip_bad=args.skip_bad
    )
    print(f"wrote {report.manifest}: {report.num_files} files, {report.hours:.3f} h, root {report.root}")
    if report.skipped:
        print(f"skipped {len(report.skipped)} bad files, listed in {report.skipped_list}")
    return 0
