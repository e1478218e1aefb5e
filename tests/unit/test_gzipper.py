"""The push's parallel gzip: one member any gunzip reads, deterministic, stored
chunks for incompressible data, compressed ones for the rest."""

import gzip
import io
import os
import random
import zlib

import pytest

from dockyard.registry.gzipper import CHUNK, gzip_stream


def gz(data, **kw):
    out = io.BytesIO()
    n, m = gzip_stream(io.BytesIO(data).read, out.write, **kw)
    assert n == len(data) and m == len(out.getvalue())
    return out.getvalue()


TEXT = b"".join(b"line %d of a very compressible layer\n" % i for i in range(200_000))


@pytest.mark.parametrize("data", [b"", b"x", os.urandom(CHUNK * 3 + 17), TEXT,
                                  os.urandom(CHUNK) + b"\0" * CHUNK + os.urandom(5)],
                         ids=["empty", "one-byte", "random", "text", "mixed"])
def test_round_trip_through_every_decoder(data):
    blob = gz(data)
    assert gzip.decompress(blob) == data
    assert zlib.decompress(blob, 31) == data
    d = zlib.decompressobj(31)  # exactly one member: nothing after its trailer
    assert d.decompress(blob) == data and d.eof and d.unused_data == b""


def test_same_input_same_blob_and_threads_do_not_matter():
    assert gz(TEXT, threads=1) == gz(TEXT, threads=4) == gz(TEXT)


def test_random_data_is_stored_and_text_compressed_like_zlib():
    rnd = os.urandom(CHUNK * 2)
    assert len(gz(rnd)) < len(rnd) * 1.001  # stored blocks: barely any overhead
    assert len(gz(TEXT)) < 1.05 * len(gzip.compress(TEXT, 6))  # the primed dictionaries keep the ratio


def test_on_chunk_sees_every_byte_in_order():
    data = bytes(random.Random(1).randbytes(CHUNK * 2 + 3))
    seen = []
    gz(data, on_chunk=seen.append)
    assert b"".join(seen) == data
