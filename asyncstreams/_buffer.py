"""The sans-IO heart of :class:`~asyncstreams.StreamReader`.

:class:`ReceiveBuffer` holds received bytes and answers the questions the reader asks
("give me up to *n* bytes", "where does the next separator end?") without awaiting
anything. The async reader is a thin shell around it: ask the buffer; if it cannot answer
yet, wait for more data and ask again. Because nothing here awaits, a cancelled read can
never leave the buffer half-consumed.

It is a ``bytearray``, so the questions asked on every read (``len``, ``find``) are
answered in C. Taking bytes from the front costs what is taken, not what is left:
CPython's ``bytearray`` deletes a prefix by moving its start, and copies the rest only
when it shrinks below half its allocation (amortised O(1) per byte; reading 64 MiB in
100-byte pieces costs the same per byte as reading it in 64 KiB pieces).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["SMALL", "ReceiveBuffer", "SeparatorMatch"]

# Up to this size, a slice copied twice is cheaper than a memoryview copied once.
SMALL = 4096

# Bytes are made from the buffer as ``b"" + slice``: concatenation copies straight into
# a new bytes object, where ``bytes(slice)`` takes the constructor's generic path, which
# costs twice as much for the small pieces read most (40 ns against 78 on this project's
# machine, on Python 3.10 to 3.13).


class SeparatorMatch:
    """Where a separator search stands.

    ``end`` is the index just past the earliest-ending separator (``-1`` while none has
    been found) and ``start`` is where that separator begins. ``searched`` is how far the
    buffer is known to hold no separator, so the next search starts there instead of
    rescanning (CPython's ``readuntil`` calls it ``offset``).
    """

    __slots__ = ("end", "searched", "start")

    def __init__(self) -> None:
        self.start = -1
        self.end = -1
        self.searched = 0


class ReceiveBuffer(bytearray):
    """A byte buffer the reader consumes from the front.

    ``len()``, ``find()``, ``startswith()`` and ``clear()`` are bytearray's own.
    """

    __slots__ = ()

    feed = bytearray.extend

    def take(self, n: int) -> bytes:
        """Remove and return up to *n* bytes from the front."""
        if n >= len(self):
            out = b"" + self
            self.clear()
            return out
        out = b"" + (self[:n] if n <= SMALL else memoryview(self)[:n])
        del self[:n]
        return out

    def take_all(self) -> bytes:
        out = b"" + self
        self.clear()
        return out

    def discard(self, n: int) -> None:
        """Drop up to *n* bytes from the front."""
        del self[:n]

    def find_separator(self, separators: Sequence[bytes], match: SeparatorMatch) -> bool:
        """Look for the earliest-ending separator past ``match.searched``.

        *separators* must be sorted by length, shortest first, so that of two
        separators ending at the same place the shorter one wins, as in CPython 3.13.
        Returns True and fills ``match.start``/``match.end`` on success; otherwise
        advances ``match.searched`` to the first position where a separator could
        still begin once more data arrives.
        """
        buflen = len(self)
        offset = match.searched
        if buflen - offset < len(separators[0]):
            return False
        best_end = -1
        best_start = -1
        for sep in separators:
            i = self.find(sep, offset)
            if i != -1:
                end = i + len(sep)
                if best_end == -1 or end < best_end:
                    best_end = end
                    best_start = i
        if best_end != -1:
            match.start = best_start
            match.end = best_end
            return True
        match.searched = max(0, buflen + 1 - len(separators[-1]))
        return False
