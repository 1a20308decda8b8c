"""Ranged S3 reads streamed into one buffer.

s3fs's ``cat_file`` has aiohttp collect the body in the pieces the socket delivers
(up to 256 KiB each) and join them at the end. With 8 ranged reads of 8 MiB in flight,
that is up to 64 MiB of small blocks in the event loop's heap, freed in an order glibc
cannot give back: the RSS of an 8 GiB pull grew with the file's size (199.6 MB; 156.3 MB with
a 128 KiB mmap threshold). Here the body is read as it arrives into one buffer of the
range's size (a bytearray, not copied again), which sits above the mmap threshold
(``dataver.malloc``) and so goes back to the system when freed; aiohttp's flow control
keeps what it holds small.

It uses s3fs's ``_call_s3``/``_error_wrapper`` (retries and the mapping of S3 errors to
OSError, as ``cat_file``), and falls back to ``cat_file`` where they are missing.
"""

from __future__ import annotations

from typing import Any

PIECE = 256 * 1024


def read_range(fs: Any, path: str, start: int, end: int) -> bytes | bytearray:
    """Bytes ``start``..``end`` (exclusive) of ``path`` on the s3fs filesystem ``fs``."""
    try:
        from fsspec.asyn import sync
        from s3fs.core import _error_wrapper, version_id_kw
    except ImportError:  # another s3fs layout: its own way
        return fs.cat_file(path, start=start, end=end)
    if not hasattr(fs, "_call_s3") or not hasattr(fs, "split_path"):
        return fs.cat_file(path, start=start, end=end)
    return sync(fs.loop, _read_range, fs, path, start, end, _error_wrapper, version_id_kw)


async def _read_range(fs: Any, path: str, start: int, end: int, error_wrapper: Any, version_kw: Any) -> bytearray:
    bucket, key, version = fs.split_path(path)

    async def call() -> bytearray:
        resp = await fs._call_s3(
            "get_object", Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", **version_kw(version)
        )
        body = resp["Body"]
        try:
            size = int(resp.get("ContentLength", end - start))
            if size > end - start:
                raise OSError(f"{path}: the server sent {size} bytes for a range of {end - start}")
            out = bytearray(size)
            view = memoryview(out)
            at = 0
            while at < size:
                piece = await body.read(min(PIECE, size - at))
                if not piece:
                    break
                view[at : at + len(piece)] = piece
                at += len(piece)
            if at != size:
                raise OSError(f"{path}: the body ended after {at} of {size} bytes")
            return out
        finally:
            body.close()

    return await error_wrapper(call, retries=fs.retries)
