"""Atomic writes and hashing, shared by every stage (torch-free)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide shared model files from other users
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def finite(obj: object) -> object:
    """``obj`` with every NaN/Inf float replaced by None: JSON has no NaN (the report says why, beside it)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: object, indent: int | None = 2) -> str:
    """Strict JSON (never NaN/Inf) of ``obj``."""
    return json.dumps(finite(obj), indent=indent, allow_nan=False)


def write_json(path: str | Path, obj: object) -> None:
    write_bytes(path, (dumps(obj) + "\n").encode())


def sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def json_list_stream(path: str | Path | None, head: dict, key: str,
                     tail: dict | None = None) -> Iterator[Callable[[object], None]]:
    """Write ``{**head, key: [item, ...], **tail}`` one item at a time (memory does not grow with the items):
    to ``path`` atomically, to stdout for ``'-'``, nowhere for None. Yields the function that adds an item;
    ``tail`` is read when the list closes, so the caller can fill it in (e.g. with timings) meanwhile."""
    import sys

    count = [0]

    def writer(stream: IO[str] | None) -> Callable[[object], None]:
        def add(item: object) -> None:
            if stream is not None:
                stream.write(("" if count[0] == 0 else ",\n") + dumps(item, indent=None))
            count[0] += 1
        return add

    def closing() -> str:
        return "\n]" + "".join(f", {json.dumps(k)}: {dumps(v, indent=None)}" for k, v in (tail or {}).items()) + "}\n"

    opening = json.dumps({**head, key: []})[:-3] + "[\n"  # the object up to its open list
    if path is None:
        yield writer(None)
    elif str(path) == "-":
        sys.stdout.write(opening)
        yield writer(sys.stdout)
        sys.stdout.write(closing())
    else:
        with atomic_path(path) as tmp, open(tmp, "w") as stream:
            stream.write(opening)
            yield writer(stream)
            stream.write(closing())
