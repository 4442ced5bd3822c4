"""Small I/O helpers shared by every stage: atomic writes and manifest files.

Outputs are written to a temporary name in the same folder and renamed when complete, so an
interrupted run never leaves a truncated file that looks finished.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Sequence

from .errors import ManifestError, OutputError


def _output_error(path: Path, err: OSError) -> OutputError:
    """The one-line error of an output that the operating system refused."""
    where = f" ({err.filename})" if err.filename and str(err.filename) != str(path) else ""
    return OutputError(f"{path}: cannot write the output here: {err.strerror or err}{where}; "
                       "choose another output path")


def check_output_path(path: str | os.PathLike) -> None:
    """Refuse, before any work, an output that could not be written: the nearest existing folder on
    ``path`` must be a folder in which a file can be created (a probe file, removed at once; the
    only test that also holds for root on read-only or special file systems). Creates nothing."""
    path = Path(path)
    if path.is_dir():
        base = path
    else:
        base = path.parent
        while not base.exists() and base != base.parent:
            base = base.parent
        if not base.is_dir():
            raise OutputError(f"{path}: cannot write the output here: {base} is a file, not a folder; "
                              "choose another output path")
    try:
        fd, tmp = _create_temp(base / ".spokenlm-write-test")
    except OSError as e:
        raise _output_error(path, e) from None
    os.close(fd)
    os.unlink(tmp)


def make_dirs(path: str | os.PathLike, *, output: str | os.PathLike | None = None) -> Path:
    """``mkdir -p`` for an output folder; :class:`OutputError` naming ``output`` (default: the
    folder) when that is impossible."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _output_error(Path(output or path), e) from None
    return path


def _replace(tmp: str | os.PathLike, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as e:  # e.g. the output names an existing folder
        raise _output_error(path, e) from None


def _create_temp(path: Path) -> tuple[int, str]:
    """Create a new, unique temporary file beside ``path``: ``(fd, name)``.

    Opened with mode 0666 so that the kernel applies the umask, as for any output: mkstemp's 0600
    would need a chmod computed from ``os.umask()``, which can only be read by changing it, a
    process-wide change that races with files created by other threads meanwhile.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary name beside {path.name}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    make_dirs(path.parent, output=path)
    try:
        fd, tmp = _create_temp(path)
    except OSError as e:
        raise _output_error(path, e) from None
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for writers that want a file name
    (soundfile, numpy, torch.save); rename it onto ``path`` on success."""
    path = Path(path)
    make_dirs(path.parent, output=path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        _replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def utt_key(path: str | os.PathLike) -> str:
    """The utterance id of an audio (or alignment, gold ``filename``) path: its file name up to the
    first dot. The key that joins manifest rows, alignments, features, units and scores."""
    return Path(path).name.split(".")[0]


@dataclass(frozen=True)
class ManifestRow:
    """One utterance of a fairseq audio manifest."""

    relpath: str
    num_samples: int

    @property
    def utt_id(self) -> str:
        """The audio file's utterance id (:func:`utt_key`)."""
        return utt_key(self.relpath)


@dataclass(frozen=True)
class Manifest:
    """A fairseq audio manifest: a root folder, then ``relative/path<TAB>num_samples`` rows."""

    root: Path
    rows: tuple[ManifestRow, ...]

    def __len__(self) -> int:
        return len(self.rows)

    def path(self, row: ManifestRow) -> Path:
        return self.root / row.relpath

    @property
    def utt_ids(self) -> list[str]:
        return [r.utt_id for r in self.rows]


def read_manifest(path: str | os.PathLike, *, check_files: bool = False) -> Manifest:
    """Read a fairseq manifest; raise :class:`ManifestError` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not a text manifest (undecodable bytes); make it with 'spokenlm manifest'") from None
    if not lines:
        raise ManifestError(f"{path}: empty manifest (expected the audio root on the first line)")
    root = Path(lines[0].strip())
    rows = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1].strip().isdigit():
            raise ManifestError(
                f"{path}:{lineno}: expected 'relative/path<TAB>num_samples', got {line!r}"
            )
        row = ManifestRow(parts[0], int(parts[1]))
        if row.utt_id in seen:
            raise ManifestError(
                f"{path}:{lineno}: utterance id {row.utt_id!r} already on line {seen[row.utt_id]}; "
                "file stems must be unique"
            )
        seen[row.utt_id] = lineno
        if check_files and not (root / row.relpath).is_file():
            raise ManifestError(f"{path}:{lineno}: audio file {root / row.relpath} does not exist")
        rows.append(row)
    return Manifest(root=root, rows=tuple(rows))


def write_manifest(path: str | os.PathLike, root: str | os.PathLike, rows: Sequence[ManifestRow]) -> None:
    """Write a fairseq manifest atomically."""
    with atomic_write(path) as f:
        f.write(f"{Path(root).resolve()}\n")
        for r in rows:
            f.write(f"{r.relpath}\t{r.num_samples}\n")


def read_lines(path: str | os.PathLike) -> list[str]:
    """Lines of a text file without their newline (a missing file is a ManifestError)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: file not found")
    try:
        return path.read_text().splitlines()
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not a text file (undecodable bytes); check the path") from None
