"""Large ranged reads from S3 are streamed into one buffer (dataver/s3io.py): the same
bytes as s3fs's own ``cat_file``, the same errors, and a body cut short is an error,
never a short answer."""

from __future__ import annotations

import os
import socket
import threading

import pytest
from s3servers import HOST

from dataver import s3io
from dataver.errors import ObjectsMissing, RemoteError
from dataver.remotes import RETRIES, RemoteStore


def store_on(bucket) -> RemoteStore:
    return RemoteStore("s3", f"s3://{bucket.name}/prefix", {"endpoint_url": bucket.endpoint})


def test_a_streamed_range_is_the_bytes_cat_file_gives(s3_each_bucket):
    store = store_on(s3_each_bucket)
    data = os.urandom(3 * s3io.PIECE + 12345)
    store.write_file("packs/ab/big.pack", data)
    for start, end in [(0, len(data)), (7, 2 * s3io.PIECE + 9), (s3io.PIECE - 1, 3 * s3io.PIECE + 1)]:
        got = store.read_buffer("packs/ab/big.pack", start, end)
        assert isinstance(got, bytearray)  # streamed, not s3fs's join
        assert bytes(got) == data[start:end] == store.read_file("packs/ab/big.pack", start, end)
    # a range running past the end: what there is, as cat_file answers
    assert bytes(store.read_buffer("packs/ab/big.pack", len(data) - 10, len(data) + s3io.PIECE)) == data[-10:]
    # small ranges take the plain path
    assert store.read_buffer("packs/ab/big.pack", 0, 100) == data[:100]


def test_a_missing_file_is_objects_missing(s3_each_bucket):
    store = store_on(s3_each_bucket)
    store.write_file("packs/ab/other.pack", b"x")
    with pytest.raises(ObjectsMissing, match="packs/ab/gone.pack"):
        store.read_buffer("packs/ab/gone.pack", 0, 4 * s3io.PIECE)


class ShortBodyServer:
    """An S3 endpoint on loopback that promises a body and hangs up halfway through it
    (the first ``cuts`` GETs; later ones get all of ``body``)."""

    def __init__(self, body: bytes, cuts: int = 1 << 30):
        self.body, self.cuts = body, cuts
        self.promised = len(body)
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.gets = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    got = conn.recv(65536)
                    if not got:
                        break
                    request += got
                if not request.startswith(b"GET "):
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    continue
                self.gets += 1
                whole = self.gets > self.cuts
                head = (
                    f"HTTP/1.1 206 Partial Content\r\nContent-Length: {self.promised}\r\n"
                    f"Content-Range: bytes 0-{self.promised - 1}/{self.promised}\r\n"
                    "Content-Type: binary/octet-stream\r\nConnection: close\r\n\r\n"
                )
                try:
                    conn.sendall(head.encode() + (self.body if whole else self.body[: self.promised // 2]))
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def test_a_body_cut_short_is_retried_then_a_remote_error_never_short_bytes(aws_env):
    body = os.urandom(4 * s3io.PIECE)
    server = ShortBodyServer(body)
    try:
        store = RemoteStore("liar", "s3://bucket/prefix", {"endpoint_url": server.endpoint})
        with pytest.raises(RemoteError) as e:
            store.read_buffer("packs/ab/big.pack", 0, len(body))
        assert "remote 'liar'" in e.value.message and "payload is not completed" in e.value.message
        assert e.value.hint == "check the endpoint and your network, then re-run"
        assert server.gets == RETRIES + 1
    finally:
        server.close()


def test_a_body_cut_once_is_read_again_whole(aws_env):
    body = os.urandom(4 * s3io.PIECE)
    server = ShortBodyServer(body, cuts=2)
    try:
        store = RemoteStore("flaky", "s3://bucket/prefix", {"endpoint_url": server.endpoint})
        assert bytes(store.read_buffer("packs/ab/big.pack", 0, len(body))) == body
        assert server.gets == 3
    finally:
        server.close()
