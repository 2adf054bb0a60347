"""What the decoding libraries say while one file is read — pydicom's warnings about a malformed attribute, a
decoder's complaint — collected for that file instead of printed: a result carries them as notes, an error line
ends with them, ``--debug`` shows them. Per thread, so files decoded side by side keep their own.

Python's warnings and pydicom's logger are process-wide; the collector is installed once and passes everything
through unchanged in a thread that is not collecting."""
from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import TextIO

ShowWarning = Callable[[Warning | str, type[Warning], str, int, TextIO | None, str | None], None]

_local = threading.local()
_installed = threading.Lock()


class _State:
    """Process-wide: whether the logger handlers are in, and the warning display the collector passes through to
    in a thread that is not collecting (whatever was in place when it was installed)."""

    def __init__(self) -> None:
        self.done = False
        self.shown: ShowWarning = warnings.showwarning


_state = _State()
LOGGERS = ("pydicom", "pylibjpeg", "openjpeg", "libjpeg", "PIL")


def one_line(text: str) -> str:
    """Any message on one line: decoders write several, with indentation."""
    return " ".join(str(text).split())


def _note(message: str) -> bool:
    """Record ``message`` for the current thread's file; False where this thread is not collecting."""
    notes = getattr(_local, "notes", None)
    if notes is None:
        return False
    text = one_line(message)
    if text and text not in notes:  # pydicom logs and warns the same message
        notes.append(text)
    return True


class _Collector(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            try:
                _note(record.getMessage())
            except Exception:  # noqa: BLE001 — a malformed log record must not break a read
                pass


def _showwarning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
    """Python's warning display, with a collecting thread's warnings kept instead of shown."""
    if not _note(str(message)):
        _state.shown(message, category, filename, lineno, file, line)


def _install() -> None:
    """The logger handlers once; the warning display whenever someone (a test runner's ``catch_warnings``) has put
    another in its place."""
    with _installed:
        if not _state.done:
            for name in LOGGERS:
                logging.getLogger(name).addHandler(_Collector())
            _state.done = True
        if warnings.showwarning is not _showwarning:
            _state.shown = warnings.showwarning
            warnings.showwarning = _showwarning


@contextlib.contextmanager
def library_messages() -> Iterator[list[str]]:
    """Collect, in this thread, what the libraries warn or log while the block runs; yields the list it fills."""
    _install()
    outer = getattr(_local, "notes", None)
    _local.notes = notes = [] if outer is None else outer
    try:
        with _always():
            yield notes
    finally:
        _local.notes = outer


@contextlib.contextmanager
def _always() -> Iterator[None]:
    """Python shows a warning once per place by default; every file's own warnings are wanted. ``catch_warnings``
    is process-wide state, so only the main thread's single-file reads use it; other threads rely on the logger
    (pydicom logs every warning it raises)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        yield
