"""Gzip a layer for a push, pigz-style: chunks deflated on several threads,
joined into one gzip member that any gunzip reads.

Single-threaded zlib gzips at about 56 MB/s here, which made it most of a push's
time.  Each 1 MiB chunk is deflated by its own raw deflate stream, primed with
the previous chunk's last 32 KiB (so the ratio stays close to one stream's) and
ended with a sync flush, which byte-aligns it without a final block; the member
ends with an empty final block, the CRC-32 and the length.  zlib releases the GIL,
so the chunks compress in parallel.  A chunk whose level-1 sample does not
shrink (random data, already-compressed files) is stored instead (level 0), as
pigz and containers/image's compressor do, at memcpy speed.

The output depends only on the input, the level and the chunk size: the same
layer gzips to the same blob every time.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

CHUNK = 1 << 20
DICT = 32 << 10
SAMPLE = 64 << 10
#: a level-1 sample compressing to more than this fraction of itself is stored
STORE_ABOVE = 0.97
HEADER = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"  # no name, mtime 0, OS unknown (as Go)


def _deflate(data: bytes, prime: bytes, level: int) -> bytes:
    if level > 0 and len(data) >= 4096:
        sample = data[:SAMPLE]
        if len(zlib.compress(sample, 1)) > STORE_ABOVE * len(sample):
            level = 0
    c = zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, *((prime,) if prime else ()))
    return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)


def gzip_stream(read: Callable[[int], bytes], write: Callable[[bytes], object], level: int = 6,
                threads: int | None = None, chunk: int = CHUNK,
                on_chunk: Callable[[bytes], object] | None = None) -> tuple[int, int]:
    """Gzip what ``read(n)`` returns until it returns ``b""`` into ``write``;
    ``on_chunk(data)`` sees every uncompressed chunk in order (for hashing or a
    cancel check).  Returns ``(uncompressed bytes, compressed bytes)``."""
    threads = threads or min(4, os.cpu_count() or 1)
    write(HEADER)
    crc, size, out = 0, 0, len(HEADER)
    prime = b""
    pending: deque[Future[bytes]] = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="gzip") as pool:
        def drain(keep: int) -> None:
            nonlocal out
            while len(pending) > keep:
                block = pending.popleft().result()
                write(block)
                out += len(block)

        while data := read(chunk):
            if on_chunk is not None:
                on_chunk(data)
            crc = zlib.crc32(data, crc)
            size += len(data)
            pending.append(pool.submit(_deflate, data, prime, level))
            prime = (prime + data)[-DICT:] if len(data) < DICT else data[-DICT:]
            drain(threads * 2)
        drain(0)
    tail = zlib.compressobj(level, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)  # the empty final block
    trailer = tail + struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)
    write(trailer)
    return size, out + len(trailer)
