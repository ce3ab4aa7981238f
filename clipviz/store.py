"""The on-disk shard store behind ``clipviz.embed(..., cache=DIR)``: finished batches, written atomically.

A batch is three files: ``<key>.vectors.npy``, ``<key>.thumbs.npy`` and, written last, ``<key>.json``,
the commit mark. The record holds the key, the row count, the skipped inputs and a SHA-256 of each
``.npy`` file; every read checks those checksums, so a damaged or replaced file (even one of the same
size) is recomputed instead of served. Every file goes through :func:`atomic_write`: a temporary file
in the same folder, flushed and ``fsync``-ed, then ``os.replace``-d into place and the folder
``fsync``-ed, so a reader (or a rerun after a crash or power cut) sees the old file or the whole new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_CHUNK = 1 << 22  # 4 MiB: hashing and copying stream through this much at a time


@dataclass
class BatchResult:
    """One finished batch: ``vectors`` ``[n_ok, d]`` float32, ``thumbnails`` ``[n_ok, t, t, 3]`` uint8,
    ``skipped`` ``[(position in batch, reason)]`` for the inputs that could not be read."""

    vectors: np.ndarray
    thumbnails: np.ndarray
    skipped: list


# ---------------------------------------------------------------------------------- the one atomic write
def atomic_write(path, write: Callable, *, by_path: bool = False) -> str:
    """Run ``write(handle)`` on a temporary file beside ``path``, fsync it, and rename it into place.

    Readers see either the old ``path`` or the complete new one, never a half-written file; on any
    exception (``KeyboardInterrupt`` included) the temporary is removed. Returns the SHA-256 of the
    file written, which the store keeps as its checksum. ``by_path=True``: ``write`` gets the
    temporary's path instead of a handle (for writers that need random access, e.g. ``open_memmap``).
    """
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if by_path:
            os.close(fd)
            write(temporary)
            fd = os.open(temporary, os.O_RDWR)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            digest = file_sha256(temporary)
        else:
            with os.fdopen(fd, "wb") as raw:
                handle = _HashingWriter(raw)
                write(handle)
                raw.flush()
                os.fsync(raw.fileno())
            digest = handle.digest.hexdigest()
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _fsync_directory(path.parent)
    return digest


def atomic_write_bytes(path, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); returns its SHA-256."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_save(path, array: np.ndarray) -> str:
    """``np.save`` to ``path`` atomically (see :func:`atomic_write`); returns the file's SHA-256."""
    return atomic_write(path, lambda f: np.save(f, np.asarray(array), allow_pickle=False))


def atomic_save_parts(path, parts: Iterable[np.ndarray], shape: tuple, dtype) -> str:
    """Write the concatenation of ``parts`` as one ``.npy`` of ``shape``/``dtype``, streamed (never whole in memory)."""
    dtype = np.dtype(dtype)

    def write(handle):
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
        np.lib.format.write_array_header_1_0(handle, header)
        rows = 0
        for part in parts:
            part = np.ascontiguousarray(part, dtype=dtype)
            handle.write(part.tobytes())
            rows += len(part)
        if rows != shape[0]:
            raise ValueError(f"parts hold {rows} rows, the header promised {shape[0]}")

    return atomic_write(path, write)


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _HashingWriter:
    """A write-only file wrapper that hashes what goes through it (``np.save`` only needs ``write``)."""

    def __init__(self, raw):
        self._raw = raw
        self.digest = hashlib.sha256()

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self.digest.update(view)
        return self._raw.write(view)

    def flush(self) -> None:
        self._raw.flush()


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def writable_directory(path, argument: str) -> Path:
    """``path`` as a directory clipviz may write into, created if needed; a clear error naming ``argument``."""
    try:
        path = Path(path).expanduser()
    except TypeError:
        raise TypeError(f"{argument}= must be a folder path (str or os.PathLike), not {type(path).__name__}") from None
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{argument}={str(path)!r} is a file, not a folder: pass a folder path "
                                 f"(it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"{argument}={str(path)!r} cannot be created ({error.strerror or error}): "
                              f"pass a folder you can write to") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"{argument}={str(path)!r} is not writable: pass a folder you can write to")
    return path


# ---------------------------------------------------------------------------------- the store
class ShardStore:
    """Finished batches of one model under ``directory`` (see the module docstring for the layout)."""

    def __init__(self, directory, argument: str = "cache"):
        self.directory = writable_directory(directory, argument)

    def _path(self, key: str, suffix: str) -> Path:
        return self.directory / f"{key[:40]}.{suffix}"

    def read(self, key: str) -> BatchResult | None:
        """The stored batch, or ``None`` when it is missing, unfinished or fails its checksums."""
        try:
            record = json.loads(self._path(key, "json").read_text())
            if record.get("key") != key:
                return None
            arrays = {}
            for what in ("vectors", "thumbs"):
                path = self._path(key, f"{what}.npy")
                if file_sha256(path) != record["sha256"][what]:
                    return None  # damaged or replaced: recompute rather than serve it
                arrays[what] = np.load(path, mmap_mode="r")
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unfinished, damaged, or written by an older layout: recompute
        rows = record.get("rows")
        if arrays["vectors"].shape[0] != rows or arrays["thumbs"].shape[0] not in (0, rows):
            return None
        return BatchResult(arrays["vectors"], arrays["thumbs"], [tuple(s) for s in record["skipped"]])

    def write(self, key: str, result: BatchResult) -> None:
        sha = {"vectors": atomic_save(self._path(key, "vectors.npy"), result.vectors),
               "thumbs": atomic_save(self._path(key, "thumbs.npy"), result.thumbnails)}
        record = {"key": key, "rows": len(result.vectors), "skipped": [list(s) for s in result.skipped],
                  "sha256": sha}
        atomic_write_bytes(self._path(key, "json"), json.dumps(record).encode())  # last: the commit mark

    def consolidated(self, run_key: str, what: str, parts: list, shape: tuple, dtype) -> np.ndarray:
        """Concatenate ``parts`` into one memory-mapped ``.npy`` (checksummed), or open the existing one."""
        path = self._path(run_key, f"run.{what}.npy")
        mark = self._path(run_key, f"run.{what}.json")
        try:
            record = json.loads(mark.read_text())
            existing = np.load(path, mmap_mode="r")
            if (existing.shape == tuple(shape) and existing.dtype == dtype
                    and record.get("sha256") == file_sha256(path)):
                return existing
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        sha = atomic_save_parts(path, parts, shape, dtype)
        atomic_write_bytes(mark, json.dumps({"sha256": sha}).encode())
        return np.load(path, mmap_mode="r")
