"""Damaged input files: find them, name them, say what is wrong (no pyspark import).

A truncated or corrupt compressed part file makes Spark's read fail deep inside a job
(``FAILED_READ_FILE``, ``EOFException: Unexpected end of input stream``). The loaders of
:mod:`sparkify.dataset` turn that into a :class:`CorruptInputError` (a ``ValueError``:
the command line prints its one paragraph and exits with 2), and with
``skip_corrupt_files`` check every local compressed file before the read
(:func:`compressed_file_problem`, a full decompression in Python, about 0.3 s per
100 MB of text) so that the damaged ones can be left out and named in the data-quality
summary.
"""

from __future__ import annotations

import bz2
import re
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

#: Compressed formats checked before a read, by file name ending. Spark also reads
#: .lz4, .snappy and .zst: a damaged one of those is found by Spark's read (the loader
#: then names it from Spark's error).
CHECKED_SUFFIXES = (".gz", ".bz2", ".deflate")

_CHUNK = 1 << 20       # bzip2 output per call
_INPUT = 1 << 16       # compressed bytes per read
_READ_FILE_ERROR = re.compile(r"FAILED_READ_FILE[.\w]*\]\s*Encountered error while reading file\s+(\S+?)\.?\s")
_CAUSE = re.compile(r"Caused by: ([\w.$]+(?:Exception|Error)[^\n]*)")


class CorruptInputError(ValueError):
    """A log file that cannot be read to its end (truncated or corrupt compressed data).

    ``damaged`` lists ``(path, problem)`` pairs; ``str()`` is the one paragraph a user
    reads."""

    def __init__(self, damaged: list[tuple[str, str]], source: str | None = None, *, skipping: bool = False):
        self.damaged = list(damaged)
        self.source = source
        names = "; ".join(f"{path} is {problem}" for path, problem in self.damaged)
        if skipping:
            text = (f"no readable file is left in {source}: {names}. Nothing was loaded; "
                    "replace the damaged files (copy or download them again) and run again.")
        else:
            several = len(self.damaged) > 1
            # a log of several files (a directory, a glob): the others may be usable
            parts = bool(source) and not any(same_file(source, path) for path, _ in self.damaged)
            text = (f"cannot read the event log{f' {source}' if parts else ''}: {names}. Copy or download "
                    f"{'those files' if several else 'that file'} again"
                    + (", or pass --skip-corrupt-files to use the readable files (the skipped ones are "
                       "listed in the data-quality summary)." if parts else "."))
        super().__init__(text)


def local_path(path: str) -> Path | None:
    """The local file of ``path`` (a plain path or a ``file:`` URI), None for other schemes."""
    parsed = urlparse(path)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and path[1:2] == ":"):  # C:\ on Windows
        if parsed.scheme == "file":
            return Path(unquote(parsed.path))
        return Path(path)
    return None


def display_path(path: str) -> str:
    """``path`` as a user wrote it: a local file without its ``file:`` prefix."""
    local = local_path(path)
    return str(local) if local is not None else path


def same_file(a: str, b: str) -> bool:
    """True when two paths or URIs name the same file (local ones compared resolved)."""
    la, lb = local_path(a), local_path(b)
    if la is not None and lb is not None:
        return la.resolve() == lb.resolve()
    pa, pb = urlparse(a), urlparse(b)
    return (pa.scheme, pa.netloc, unquote(pa.path).rstrip("/")) == (pb.scheme, pb.netloc, unquote(pb.path).rstrip("/"))


def is_checked(path: str) -> bool:
    """True for a local file whose compression :func:`compressed_file_problem` checks."""
    return local_path(path) is not None and path.lower().endswith(CHECKED_SUFFIXES)


def compressed_file_problem(path: str | Path) -> str | None:
    """What is wrong with a local compressed file, in words, or None when it decompresses
    to its end (every member of a multi-member gzip, with its CRC and length checked).

    The file is read once, in 1 MB chunks, and its text discarded."""
    p = Path(path)
    name = p.name.lower()
    try:
        size = p.stat().st_size
        with p.open("rb") as f:
            if name.endswith(".gz"):
                return _gzip_problem(f, size)
            if name.endswith(".bz2"):
                return _bz2_problem(f, size)
            if name.endswith(".deflate"):
                return _stream_problem(f, size, lambda: zlib.decompressobj(), "zlib (.deflate)")
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    return None


def _gzip_problem(f, size: int) -> str | None:
    head = f.read(2)
    if not head:
        return None  # an empty file: no events, as Spark reads it
    if head != b"\x1f\x8b":
        return "not gzip data (it does not start with the gzip signature: a plain file named .gz?)"
    f.seek(0)
    # 16 + MAX_WBITS: a gzip header and trailer (zlib checks the CRC-32 and the length)
    return _stream_problem(f, size, lambda: _Inflate(16 + zlib.MAX_WBITS), "gzip")


def _bz2_problem(f, size: int) -> str | None:
    head = f.read(3)
    if not head:
        return None
    if head != b"BZh":
        return "not bzip2 data (it does not start with the bzip2 signature)"
    f.seek(0)
    return _stream_problem(f, size, _Bunzip, "bzip2")


class _Decoder:
    """A decompressor fed chunk by chunk: ``feed``, then ``eof`` and ``unused_data``."""

    _d: Any

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data


class _Inflate(_Decoder):
    """zlib with bounded output: at most about 1,032 x the input chunk (deflate's ratio)."""

    def __init__(self, wbits: int = zlib.MAX_WBITS):
        self._d = zlib.decompressobj(wbits)

    def feed(self, data: bytes) -> None:
        self._d.decompress(data)


class _Bunzip(_Decoder):
    """bzip2 with output read 1 MB at a time (its ratio is unbounded)."""

    def __init__(self):
        self._d = bz2.BZ2Decompressor()

    def feed(self, data: bytes) -> None:
        self._d.decompress(data, _CHUNK)
        while not self._d.eof and not self._d.needs_input:
            self._d.decompress(b"", _CHUNK)


def _stream_problem(f, size: int, new, kind: str) -> str | None:
    """Decompress every member of ``f`` (Spark reads concatenated streams as one file)."""
    d = new()
    pos = 0             # file offset after the chunk read last
    pending = False     # a member has started and not ended
    while chunk := f.read(_INPUT):
        start, pos = pos, pos + len(chunk)
        while chunk:
            pending = True
            try:
                d.feed(chunk)
            except (zlib.error, OSError, EOFError, ValueError) as exc:
                return f"corrupt ({kind} data error in bytes {start:,}..{pos:,} of {size:,}: {exc})"
            if not d.eof:
                break
            pending = False
            chunk = d.unused_data
            if not chunk.strip(b"\x00"):
                break           # trailing zero padding, as gzip tools accept
            d = new()           # another member
    if pending:
        return (f"truncated (the {kind} stream stops at byte {size:,}, before its end: "
                "the file was cut short, e.g. by an interrupted copy or download)")
    return None


def failed_read_file(exc: BaseException) -> tuple[str, str] | None:
    """``(path, Spark's cause)`` when ``exc`` is Spark's failure to read one input file
    (``FAILED_READ_FILE``), else None."""
    text = str(exc)
    found = _READ_FILE_ERROR.search(text)
    if found is None:
        return None
    causes = _CAUSE.findall(text)
    return found.group(1), (causes[-1].strip() if causes else "")


def damage_of(path: str, spark_cause: str = "") -> str:
    """How the file Spark could not read is damaged: checked in Python when it is a local
    compressed file, otherwise Spark's own cause."""
    local = local_path(path)
    if local is not None and is_checked(path) and local.is_file():
        problem = compressed_file_problem(local)
        if problem:
            return problem
    cause = spark_cause.replace("java.io.", "").replace("java.util.zip.", "")
    if "Unexpected end of input stream" in cause or "EOFException" in cause:
        return f"truncated (Spark: {cause})"
    return f"unreadable (Spark: {cause or 'the read failed'})"
