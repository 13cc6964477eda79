"""The on-disk cache of built graphs: plain numpy arrays in a byte-reproducible ``.npz``.

``numpy.savez`` stamps each member with the current time, so two builds of one extract
would differ by bytes; this writer fixes the timestamps and the member order, so the same
extract and settings give the same file. Nothing is pickled (``allow_pickle=False``).
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

_EPOCH = (1980, 1, 1, 0, 0, 0)


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def memo_key(path: Path, cache_dir: Path) -> tuple[str, int, int, str]:
    """What a per-process memo of something built from ``path`` into ``cache_dir`` is keyed by.

    The file's resolved path, size and modification time (a replaced extract is built
    again) and the cache directory.
    """
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, str(cache_dir.resolve()))


def write_npz(path: Path, arrays: Mapping[str, NDArray[np.generic]]) -> None:
    """Write ``arrays`` to ``path`` atomically, sorted by name, with fixed timestamps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())
    os.replace(tmp, path)


def read_npz(path: Path) -> dict[str, NDArray[np.generic]]:
    """All arrays of an ``.npz`` written by ``write_npz``."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
