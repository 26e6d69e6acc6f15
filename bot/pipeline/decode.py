"""Content codings undone within a size bound: gzip and deflate, stacked up to four deep.

httpx's own decoders inflate a whole network chunk at once: 64 KiB of a gzip bomb becomes
~64 MB in memory before any size check could run. Here every layer produces at most one
bounded step per call, so the fetcher's size cap (counted after decoding) stops a small
gzip bomb as early as a large plain body.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Final

__all__ = ["CodingRefused", "CorruptBody", "DecoderChain", "decoders"]

MAX_CODINGS: Final = 4
_DECODE_STEP: Final = 64 * 1024


class CodingRefused(Exception):
    """A Content-Encoding that cannot be undone within bounds; the text says which."""


def decoders(content_encoding: str) -> list[_BoundedDecoder]:
    """Decoders for a Content-Encoding value, the last-applied coding first.

    Only codings `_BoundedDecoder` can undo with an output limit are accepted: anything else
    (br, zstd, compress, unknown tokens) is refused rather than handed on still encoded, or
    to a decoder that inflates a whole chunk at once. A character set name (``utf-8``) is
    the one exception: servers put it there by mistake and the body is not encoded by it.
    """
    codings: list[str] = []
    for token in content_encoding.split(","):
        coding = token.strip().lower()
        if not coding or coding == "identity" or _is_charset(coding):
            continue
        if coding not in _BoundedDecoder.CODINGS:
            label = "".join(ch if ch.isprintable() else "?" for ch in coding[:40])
            raise CodingRefused(f"unsupported content coding {label!r}")
        codings.append(coding)
    if len(codings) > MAX_CODINGS:
        # Real servers stack two at most (a proxy gzipping a gzipped body); every layer
        # costs a zlib state and a buffered step.
        raise CodingRefused(f"{len(codings)} content codings stacked")
    return [_BoundedDecoder(coding) for coding in reversed(codings)]


def _is_charset(label: str) -> bool:
    try:
        "".encode(label)  # bytes-to-bytes codecs (zlib, base64 …) are refused here too
    except (LookupError, ValueError):
        return False
    return True


class CorruptBody(Exception):
    def __init__(self, coding: str) -> None:
        super().__init__(coding)
        self.coding = coding


class DecoderChain:
    """Stacked content codings undone one bounded step at a time.

    Each decoder holds at most one step of input (the network chunk, for the first) and
    produces at most one step per call; output is pulled from the innermost decoder that
    has any before the outer ones are asked for more, so however much a layer would
    expand, nothing is held beyond what the caller has taken plus a step per layer.
    """

    def __init__(self, decoders: list[_BoundedDecoder]) -> None:
        self._decoders = decoders

    def decode(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces of one network chunk, produced only as they are taken."""
        if not self._decoders:
            if data:
                yield data
            return
        decoders = self._decoders
        last = len(decoders) - 1
        decoders[0].push(data)
        while True:
            for index in range(last, -1, -1):
                if not decoders[index].hungry:
                    break
            else:
                return  # every layer waits for the next network chunk
            decoder = decoders[index]
            try:
                piece = decoder.pull(_DECODE_STEP)
            except zlib.error:
                raise CorruptBody(decoder.coding) from None
            if index == last:
                if piece:
                    yield piece
            elif piece:
                decoders[index + 1].push(piece)

    def incomplete(self) -> str | None:
        """The coding of the outermost layer cut short, or None when every layer ended."""
        for decoder in self._decoders:
            if not decoder.complete:
                return decoder.coding
        return None


class _BoundedDecoder:
    """gzip/deflate decoding that never produces more than it is asked for.

    httpx's own decoders inflate a whole network chunk at once: 64 KiB of a gzip bomb
    becomes ~64 MB in memory before any size check could run. zlib's ``max_length``
    stops inflation at the limit instead; the input not yet used waits in ``_pending``.
    """

    CODINGS: Final = frozenset({"gzip", "x-gzip", "deflate"})

    def __init__(self, coding: str) -> None:
        self.coding = "gzip" if coding == "x-gzip" else coding
        # 32 + MAX_WBITS accepts a gzip or a zlib header; "deflate" is zlib-wrapped per
        # RFC 9110 §8.4.1.2, but some servers send raw deflate (handled on the first error).
        self._inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)
        self._pending = b""
        self._full = False  # the last pull stopped at its limit: zlib may hold more output
        self._fed = False
        self._members = 0
        self._trailing = False

    @property
    def hungry(self) -> bool:
        """True when nothing more can come out before more input is pushed."""
        return not self._full and (not self._pending or self._undecided())

    @property
    def complete(self) -> bool:
        """False when the input so far stops inside a compressed stream (a cut body)."""
        return not self._pending and (not self._fed or self._inflater.eof or self._trailing)

    def push(self, data: bytes) -> None:
        """Add input; only called when `hungry`, so at most one step is ever pending."""
        if not self._trailing:
            self._pending += data

    def pull(self, room: int) -> bytes:
        """Inflate pending input, stopping once ``room`` bytes have been produced."""
        if self._undecided():
            return b""
        out = bytearray()
        data, self._pending = self._pending, b""
        flush, self._full = self._full, False
        while len(out) < room and not self._trailing and (data or flush):
            flush = False
            if self._inflater.eof:
                if self.coding != "gzip":
                    self._trailing = True  # bytes after a zlib stream carry no content
                    break
                # RFC 1952 §2.2: a gzip file is a series of members.
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                out += self._inflater.decompress(data, room - len(out))
            except zlib.error:
                if self.coding == "deflate" and not self._fed:
                    self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._fed = True
                    continue
                if self._members:
                    self._trailing = True  # padding after a member: ignored, as gzip(1) does
                    break
                raise
            self._fed = True
            if self._inflater.eof:
                self._members += 1
                data = self._inflater.unused_data
            else:
                data = self._inflater.unconsumed_tail
        self._pending = b"" if self._trailing else data
        self._full = len(out) >= room and not self._trailing and not self._inflater.eof
        return bytes(out)

    def _undecided(self) -> bool:
        # A zlib header is two bytes: with fewer, an error could not yet tell raw deflate.
        return self.coding == "deflate" and not self._fed and len(self._pending) < 2

