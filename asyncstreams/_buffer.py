"""The sans-IO heart of :class:`~asyncstreams.StreamReader`.

:class:`ReceiveBuffer` holds received bytes and answers the questions the reader asks
("give me up to *n* bytes", "where does the next separator end?") without awaiting
anything. The async reader is a thin shell around it: ask the buffer; if it cannot answer
yet, wait for more data and ask again. Because nothing here awaits, a cancelled read can
never leave the buffer half-consumed.

Consumed bytes are not deleted from the front on every read: the buffer keeps a start
offset and compacts only once the consumed prefix is at least as large as what is left,
so reading a large buffer in small pieces costs O(bytes read), amortised (h11's
``ReceiveBuffer`` does the same).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ReceiveBuffer", "SeparatorMatch"]

# Below this many consumed bytes, compacting is not worth a call.
_COMPACT_MIN = 4096


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


class ReceiveBuffer:
    """A byte buffer that is cheap to consume from the front."""

    __slots__ = ("_data", "_start")

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = 0

    def __len__(self) -> int:
        return len(self._data) - self._start

    def __bool__(self) -> bool:
        return len(self._data) > self._start

    def __bytes__(self) -> bytes:
        return bytes(memoryview(self._data)[self._start :])

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._data += data

    def clear(self) -> None:
        self._data.clear()
        self._start = 0

    def take(self, n: int) -> bytes:
        """Remove and return up to *n* bytes from the front."""
        start = self._start
        data = self._data
        end = start + n
        if start == 0 and end >= len(data):
            out = bytes(data)
            data.clear()
            return out
        with memoryview(data) as view:
            out = bytes(view[start:end])
        self._consumed(min(end, len(data)))
        return out

    def take_all(self) -> bytes:
        out = bytes(self)
        self.clear()
        return out

    def discard(self, n: int) -> None:
        """Drop up to *n* bytes from the front."""
        self._consumed(min(self._start + n, len(self._data)))

    def startswith(self, prefix: bytes, offset: int) -> bool:
        return self._data.startswith(prefix, self._start + offset)

    def find(self, separator: bytes, offset: int) -> int:
        """Where *separator* starts at or after *offset* (relative to the front), or -1."""
        start = self._start
        i = self._data.find(separator, start + offset)
        return i if i == -1 else i - start

    def find_separator(self, separators: Sequence[bytes], match: SeparatorMatch) -> bool:
        """Look for the earliest-ending separator past ``match.searched``.

        *separators* must be sorted by length, shortest first, so that of two
        separators ending at the same place the shorter one wins, as in CPython 3.13.
        Returns True and fills ``match.start``/``match.end`` (relative to the first
        unconsumed byte) on success; otherwise advances ``match.searched`` to the first
        position where a separator could still begin once more data arrives.
        """
        data = self._data
        base = self._start
        buflen = len(data) - base
        if buflen - match.searched < len(separators[0]):
            return False
        offset = base + match.searched
        best_end = -1
        best_start = -1
        for sep in separators:
            i = data.find(sep, offset)
            if i != -1:
                end = i + len(sep)
                if best_end == -1 or end < best_end:
                    best_end = end
                    best_start = i
        if best_end != -1:
            match.start = best_start - base
            match.end = best_end - base
            return True
        match.searched = max(0, buflen + 1 - len(separators[-1]))
        return False

    def _consumed(self, new_start: int) -> None:
        data = self._data
        if new_start >= len(data):
            data.clear()
            self._start = 0
        elif new_start >= _COMPACT_MIN and new_start * 2 >= len(data):
            del data[:new_start]
            self._start = 0
        else:
            self._start = new_start
