"""Remotes: a config section or URL -> an object store over fsspec.

A remote holds objects in the cache's layout (``xxh3-128/ab/cdef...`` plus
``.manifest``) under its URL. This module is the boundary to fsspec, s3fs and
botocore: their exceptions are retried here when transient and translated into
``RemoteError`` (naming the remote, never its credentials) when not.

Atomic uploads: on filesystems with rename (local folders, sftp) an object is
written under ``tmp/`` and renamed into place; on object stores (s3, gcs, azure,
memory) a single PUT or a completed multipart upload is already atomic.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import time
from typing import Any, Callable, Iterable, TypeVar

from .concurrency import run_parallel
from .config import Config
from .digest import Digest
from .errors import ConfigError, ObjectsMissing, PointerError, RemoteError
from .fsutil import files_older_than, read_range
from .store import MANIFEST_SUFFIX, ObjRef, check_bytes, check_file

T = TypeVar("T")

SECTION_PREFIX = 'remote "'
SECRET_KEYS = ("access_key_id", "secret_access_key", "session_token", "password", "key_file")
S3_KEYS = (
    "endpoint_url",
    "region",
    "profile",
    "anonymous",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "jobs",
)
# Protocols whose fsspec implementation offers an atomic rename (mv) within the store.
RENAME_PROTOCOLS = ("file", "local", "sftp", "ssh")
LIST_PAGE_KEYS = 1000  # S3 ListObjectsV2 page size
READ_ONLY_PROTOCOLS = ("http", "https")
# Package that provides each protocol, for the "install it" message.
BACKEND_PACKAGES = {
    "s3": "s3fs (pip install 'dataver[s3]')",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "sftp": "paramiko",
    "ssh": "paramiko",
    "http": "aiohttp",
    "https": "aiohttp",
}
UPLOAD_PART_SIZE = 8 * 1024 * 1024
# The names uploads give their temporaries in <remote>/tmp/; gc removes no other file
# there (a remote URL can come from a stranger's committed config).
_OUR_TEMP = re.compile(r"(\d+-)?[0-9a-f]{16}\.tmp")
RETRIES = 4


def section_name(name: str) -> str:
    return f'{SECTION_PREFIX}{name}"'


def check_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise ConfigError(f"invalid remote name {name!r}", "use letters, digits, '.', '_' or '-'")


def remote_names(config: Config) -> list[str]:
    return [s[len(SECTION_PREFIX) : -1] for s in config.sections() if s.startswith(SECTION_PREFIX) and s.endswith('"')]


def redact(url: str) -> str:
    """A URL fit for messages: any user:password@ part removed."""
    return re.sub(r"//[^/@]*@", "//", url)


def ref_from_name(fan: str, name: str, algorithm: str | None = None) -> ObjRef | None:
    """The object a remote file ``<algorithm>/<fan>/<name>`` holds (default algorithm:
    xxh3-128), or None if it is not one of ours (gc must never delete what it cannot name)."""
    from .digest import DEFAULT_ALGORITHM

    algorithm = algorithm or DEFAULT_ALGORITHM
    is_manifest = name.endswith(MANIFEST_SUFFIX)
    hex_ = fan + (name[: -len(MANIFEST_SUFFIX)] if is_manifest else name)
    try:
        return ObjRef(Digest(algorithm, hex_), is_manifest)
    except PointerError:
        return None


def default_remote_name(config: Config) -> str:
    name = config.get("core.remote")
    if name:
        return name
    names = remote_names(config)
    if len(names) == 1:
        return names[0]
    if not names:
        raise RemoteError("no remote is configured", "add one: dataver remote add NAME URL --default")
    raise RemoteError(
        f"several remotes ({', '.join(names)}) and no default",
        "name one with -r NAME, or set: dataver remote default NAME",
    )


def memory_store(name: str = "memory") -> RemoteStore:
    """A store in memory, for tests: fsspec's MemoryFileSystem with a dict of its own
    (the class's default store is shared by the whole process)."""
    from fsspec.implementations.memory import MemoryFileSystem

    fs = MemoryFileSystem(skip_instance_cache=True)
    fs.store, fs.pseudo_dirs = {}, [""]
    store = RemoteStore(name, "memory://dataver", {})
    store._fs = fs
    return store


def open_remote(config: Config, name: str | None, repo_root: str | None = None) -> RemoteStore:
    name = name or default_remote_name(config)
    options = config.section(section_name(name))
    if options is None or "url" not in options:
        raise RemoteError(
            f"remote {name!r} is not configured",
            f"known remotes: {', '.join(remote_names(config)) or 'none'}; add one with dataver remote add",
        )
    url = options["url"]
    path = url[len("file://") :] if url.startswith("file://") else url if "://" not in url else None
    relative = path is not None and not os.path.isabs(os.path.expanduser(path))
    if relative and repo_root is not None:
        url = os.path.normpath(os.path.join(repo_root, path))  # relative to the repository root
    options = {k: v for k, v in options.items() if k != "url"}
    cls = LocalRemoteStore if _split_url(url)[0] == "file" else RemoteStore
    store = cls(name, url, options)
    store.relative = relative and repo_root is None
    return store


class RemoteStore:
    """Objects on one remote. Methods retry transient faults and raise RemoteError."""

    def __init__(self, name: str, url: str, options: dict[str, str]):
        self.name = name
        self.url = url
        self.display = redact(url)
        self.protocol, self.root, storage = _split_url(url)
        self._storage = _storage_options(self.protocol, options, storage)
        self.jobs = int(options["jobs"]) if options.get("jobs", "").isdigit() else None
        self.relative = False  # a relative folder path that no repository root anchored
        self._fs: Any = None

    # -- the fsspec filesystem, built lazily (importing s3fs costs ~0.3 s) ----------
    @property
    def fs(self) -> Any:
        if self._fs is None:
            import fsspec

            try:
                cls = fsspec.get_filesystem_class(self.protocol)
            except (ImportError, ValueError) as e:
                package = BACKEND_PACKAGES.get(self.protocol)
                need = f"install {package}" if package else "install the fsspec backend for it"
                raise RemoteError(
                    f"remote {self.name!r} uses {self.protocol}://, which is not available here: {e}", need
                ) from None
            self._fs = self._call(lambda: cls(**self._storage), "connect to")
            if self.protocol == "s3":
                self._fs.retries = 1  # we retry (with backoff) one level up, in _call
            if getattr(self._fs, "async_impl", False):
                _quiet_dropped_connection_tasks(self._fs.loop)
        return self._fs

    @property
    def read_only(self) -> bool:
        return self.protocol in READ_ONLY_PROTOCOLS

    @property
    def where(self) -> str:
        return f"remote {self.name!r} ({self.display})"

    # -- the store contract (dataver/store.py) -----------------------------------------
    def has(self, ref: ObjRef) -> bool:
        return not self.missing([ref])

    def put_bytes(self, ref: ObjRef, data: bytes) -> None:
        check_bytes(ref, data, self.where)
        self.upload_bytes(data, ref)

    def put_file(self, ref: ObjRef, path: str, hasher: Any) -> None:
        check_file(ref, path, hasher, self.where)
        self.upload(path, ref)

    def read(self, ref: ObjRef, start: int = 0, end: int | None = None) -> bytes:
        def read() -> bytes:
            if end is not None and end <= start:
                return b""
            try:
                return self.fs.cat_file(self.path(ref), start=start or None, end=end)
            except OSError as e:
                if e.errno == errno.EINVAL and "range" in str(e).lower():
                    return b""  # S3 answers a range past the end (or of an empty object) with 416
                raise

        return self._call(read, "download from", ref)

    def get_file(self, ref: ObjRef, dest: str) -> None:
        self.download(ref, dest)

    def delete(self, refs: Iterable[ObjRef]) -> None:
        self.remove(list(refs))

    def path(self, ref: ObjRef) -> str:
        return f"{self.root.rstrip('/')}/{ref.relpath()}"

    # -- which objects are there -----------------------------------------------------
    def missing(self, refs: list[ObjRef], jobs: int = 8) -> list[ObjRef]:
        """The refs the remote lacks, in few round trips.

        Few objects: parallel existence checks. Many: list only the fan-out folders
        they live in (at most 256 listings, paginated by the store), which is far
        cheaper than one request per object.
        """
        if not refs:
            return []
        self.check_reachable()
        if len(refs) <= 64:
            present = run_parallel(lambda r: self._exists(self.path(r)), refs, jobs)
            return [r for r, ok in zip(refs, present, strict=True) if not ok]
        fans = sorted({os.path.dirname(self.path(r)) for r in refs})
        have = self._whole_listing(fans)
        if have is None:
            listed = run_parallel(self._list_names, fans, jobs)
            have = {f"{fan}/{n}" for fan, names in zip(fans, listed, strict=True) for n in names}
        return [r for r in refs if self.path(r) not in have]

    def _whole_listing(self, fans: list[str]) -> set[str] | None:
        """Every object path on the remote, when one paginated listing of it (1,000
        keys a page on S3) is estimated to cost fewer requests than listing ``fans``
        one by one; else None. The estimate comes from listing the first fan-out
        folder, which holds about 1/256 of the objects."""
        if len(fans) < 16:
            return None
        sample = len(self._list_names(fans[0]))
        pages = sample * 256 // LIST_PAGE_KEYS + 1
        if pages * 4 > len(fans):
            return None
        have: set[str] = set()
        for base in sorted({os.path.dirname(fan) for fan in fans}):  # <root>/<algorithm>, each one asked about

            def find(base: str = base) -> list[str]:
                try:
                    return [str(p).rstrip("/") for p in self.fs.find(base)]
                except FileNotFoundError:
                    return []

            tails = (p.rsplit("/", 2)[-2:] for p in self._call(find, "list"))
            have.update(f"{base}/{t[0]}/{t[1]}" for t in tails if len(t) == 2)
        return have

    def check_reachable(self) -> None:
        """One cheap request, so a wrong endpoint, bucket or credential fails once, fast."""
        if self.protocol == "s3":
            bucket = self.root.split("/", 1)[0]
            self._call(lambda: self.fs.ls(bucket, detail=False) and None, "list")
        elif not self._call(lambda: self.fs.exists(self.root), "check"):
            raise RemoteError(
                f"remote {self.name!r} ({self.display}) does not exist",
                "check the URL (dataver remote list), or dataver push to create it",
            )

    def prepare_write(self) -> None:
        """Create the remote's root folder where the store has folders (push may start a remote)."""
        if self.protocol in (*RENAME_PROTOCOLS, "memory") and not self.read_only:
            self._call(lambda: self.fs.makedirs(self.root, exist_ok=True), "create")

    def _exists(self, path: str) -> bool:
        return self._call(lambda: self.fs.exists(path), "check")

    def _list_names(self, folder: str) -> list[str]:
        def ls() -> list[str]:
            try:
                return [os.path.basename(str(p).rstrip("/")) for p in self.fs.ls(folder, detail=False)]
            except FileNotFoundError:
                return []  # check_reachable already proved the bucket or folder is there

        return self._call(ls, "list")

    def iter_objects(self) -> list[tuple[ObjRef, int]]:
        """Every object on the remote with its size (one recursive listing per algorithm)."""
        from .digest import ALGORITHMS

        out = []
        for algorithm in ALGORITHMS:
            base = f"{self.root.rstrip('/')}/{algorithm}"

            def find(base: str = base) -> dict:
                try:
                    return self.fs.find(base, detail=True)
                except FileNotFoundError:
                    return {}

            for path, info in self._call(find, "list").items():
                ref = ref_from_name(*str(path).rstrip("/").split("/")[-2:], algorithm)
                if ref is not None:
                    out.append((ref, int(info.get("size") or 0)))
        return out

    def remove(self, refs: list[ObjRef]) -> None:
        if self.read_only:
            raise RemoteError(f"remote {self.name!r} ({self.display}) is read-only")
        paths = [self.path(r) for r in refs]

        def rm() -> None:
            try:
                self.fs.rm(paths)
            except FileNotFoundError:  # some filesystems refuse a batch naming an absent file
                for path in paths:
                    try:
                        self.fs.rm_file(path)
                    except FileNotFoundError:
                        pass

        self._call(rm, "delete from")

    def stale_temporaries(self, older_than: float) -> list[str]:
        """Leftovers of uploads killed midway, last written before ``older_than`` (epoch
        seconds). Object stores upload in one PUT and leave none."""
        if self.protocol not in RENAME_PROTOCOLS:
            return []

        def ls() -> list[str]:
            try:
                infos = self.fs.ls(f"{self.root.rstrip('/')}/tmp", detail=True)
            except FileNotFoundError:
                return []
            return [i["name"] for i in infos if float(i.get("mtime") or 0) < older_than]

        return [p for p in self._call(ls, "list") if _OUR_TEMP.fullmatch(os.path.basename(str(p)))]

    def remove_temporaries(self, paths: list[str]) -> None:
        self._call(lambda: self.fs.rm(paths), "delete from")

    # -- moving bytes ---------------------------------------------------------------------
    def upload(self, local_path: str, ref: ObjRef, callback: Any = None) -> None:
        if self.read_only:
            raise RemoteError(f"remote {self.name!r} ({self.display}) is read-only ({self.protocol}://)")
        final = self.path(ref)
        kwargs: dict[str, Any] = {"callback": callback} if callback is not None else {}
        if self.protocol == "s3":
            kwargs["chunksize"] = UPLOAD_PART_SIZE
        if self.protocol in RENAME_PROTOCOLS:
            self._write_renamed(lambda tmp: self.fs.put_file(local_path, tmp, **kwargs), ref)
        else:
            self._call(lambda: self.fs.put_file(local_path, final, **kwargs), "upload to", ref)

    def _write_renamed(self, write: Callable[[str], Any], ref: ObjRef) -> None:
        """``write(tmp)`` a temporary in the remote's ``tmp/`` and rename it to the
        object's name, so no partial object ever has that name."""
        final = self.path(ref)
        tmp = f"{self.root.rstrip('/')}/tmp/{secrets.token_hex(8)}.tmp"

        def write_and_rename() -> None:
            self.fs.makedirs(os.path.dirname(tmp), exist_ok=True)
            write(tmp)
            self.fs.makedirs(os.path.dirname(final), exist_ok=True)
            self.fs.mv(tmp, final)

        try:
            self._call(write_and_rename, "upload to", ref)
        finally:
            try:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            except Exception:  # noqa: BLE001 - best-effort cleanup of our own temporary
                pass

    def download(self, ref: ObjRef, local_path: str, callback: Any = None) -> None:
        kwargs: dict[str, Any] = {"callback": callback} if callback is not None else {}
        self._call(lambda: self.fs.get_file(self.path(ref), local_path, **kwargs), "download from", ref)

    def upload_bytes(self, data: bytes, ref: ObjRef) -> None:
        """Upload an object held in memory: one PUT on object stores; elsewhere a
        temporary that is renamed, so no partial object ever has the final name."""
        if self.read_only:
            raise RemoteError(f"remote {self.name!r} ({self.display}) is read-only ({self.protocol}://)")
        if self.protocol in RENAME_PROTOCOLS:
            self._write_renamed(lambda tmp: self.fs.pipe_file(tmp, data), ref)
        else:
            self._call(lambda: self.fs.pipe_file(self.path(ref), data), "upload to", ref)

    # -- retries and error translation ----------------------------------------------
    def _call(self, fn: Callable[[], T], what: str, ref: ObjRef | None = None) -> T:
        delay = 0.2
        for attempt in range(RETRIES + 1):
            try:
                return fn()
            except Exception as e:  # noqa: BLE001 - every backend error is translated here
                if _transient(e) and attempt < RETRIES:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise self._translate(e, what, ref) from None
        raise AssertionError("unreachable")

    def _translate(self, e: BaseException, what: str, ref: ObjRef | None) -> Exception:
        where = f"remote {self.name!r} ({self.display})"
        if isinstance(e, (RemoteError, ObjectsMissing)):
            return e
        if isinstance(e, FileNotFoundError):
            if ref is not None and what == "download from":
                return ObjectsMissing(f"object {ref.digest} is not on {where}")
            return RemoteError(
                f"{where} does not exist (no such bucket or folder)", "check the URL: dataver remote list"
            )
        if isinstance(e, PermissionError) or _code(e) in _AUTH_CODES or _names(e) & _AUTH_ERRORS:
            return RemoteError(
                f"access to {where} was denied (cannot {what} it)",
                f"check credentials: dataver remote modify {self.name} access_key_id ... --local, "
                "or the AWS_* environment variables / profile",
            )
        if _is_connection_error(e):
            return RemoteError(f"cannot reach {where}: {_short(e)}", "check the endpoint and your network, then re-run")
        return RemoteError(f"cannot {what} {where}: {type(e).__name__}: {_short(e)}")


class LocalRemoteStore(RemoteStore):
    """A remote in a local (or mounted) folder, through plain ``os`` calls.

    Same layout and contract as any remote (upload to ``tmp/`` then rename); it skips
    fsspec, which costs about ten file-system calls per object here.
    """

    def __init__(self, name: str, url: str, options: dict[str, str]):
        super().__init__(name, url, options)
        self._made_dirs: set[str] = set()

    def _exists(self, path: str) -> bool:
        return os.path.exists(path)

    def _list_names(self, folder: str) -> list[str]:
        try:
            return os.listdir(folder)
        except FileNotFoundError:
            return []

    def _whole_listing(self, fans: list[str]) -> set[str] | None:
        return None  # a listdir per fan-out folder is already cheap here

    def check_reachable(self) -> None:
        if not os.path.isdir(self.root):
            raise RemoteError(
                f"remote {self.name!r} ({self.display}) does not exist",
                "check the URL (dataver remote list), or dataver push to create it",
            )

    def prepare_write(self) -> None:
        self._call(lambda: os.makedirs(os.path.join(self.root, "tmp"), exist_ok=True), "create")

    def upload(self, local_path: str, ref: ObjRef, callback: Any = None) -> None:
        self._write_renamed(lambda tmp: shutil.copyfile(local_path, tmp), ref)

    def _write_renamed(self, write: Callable[[str], Any], ref: ObjRef) -> None:
        final = self.path(ref)
        tmp = os.path.join(self.root, "tmp", f"{os.getpid()}-{secrets.token_hex(8)}.tmp")

        def write_and_rename() -> None:
            try:
                write(tmp)
                parent = os.path.dirname(final)
                if parent not in self._made_dirs:
                    os.makedirs(parent, exist_ok=True)
                    self._made_dirs.add(parent)
                os.replace(tmp, final)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise

        self._call(write_and_rename, "upload to", ref)

    def download(self, ref: ObjRef, local_path: str, callback: Any = None) -> None:
        self._call(lambda: shutil.copyfile(self.path(ref), local_path), "download from", ref)

    def read(self, ref: ObjRef, start: int = 0, end: int | None = None) -> bytes:
        def read() -> bytes:
            with open(self.path(ref), "rb") as f:
                return read_range(f, start, end)

        return self._call(read, "download from", ref)

    def upload_bytes(self, data: bytes, ref: ObjRef) -> None:
        def write(tmp: str) -> None:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)

        self._write_renamed(write, ref)

    def iter_objects(self) -> list[tuple[ObjRef, int]]:
        from .digest import ALGORITHMS

        out = []
        for algorithm in ALGORITHMS:
            base = os.path.join(self.root, algorithm)
            for fan in sorted(self._list_names(base)):
                for name in self._list_names(os.path.join(base, fan)):
                    ref = ref_from_name(fan, name, algorithm)
                    if ref is not None:
                        out.append((ref, os.stat(self.path(ref)).st_size))
        return out

    def stale_temporaries(self, older_than: float) -> list[str]:
        found = files_older_than(os.path.join(self.root, "tmp"), older_than)
        return [p for p in found if _OUR_TEMP.fullmatch(os.path.basename(p))]

    def remove_temporaries(self, paths: list[str]) -> None:
        def rm() -> None:
            for p in paths:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass

        self._call(rm, "delete from")

    def remove(self, refs: list[ObjRef]) -> None:
        def rm() -> None:
            for r in refs:
                try:
                    os.unlink(self.path(r))
                except FileNotFoundError:
                    pass

        self._call(rm, "delete from")


_AUTH_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "ExpiredToken",
    "403",
}
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "500",
    "502",
    "503",
    "504",
}


def _code(e: BaseException) -> str:
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    cause = e.__cause__ or e.__context__
    return _code(cause) if cause is not None and cause is not e else ""


_AUTH_ERRORS = {"NoCredentialsError", "PartialCredentialsError", "ProfileNotFound", "NoAuthTokenError"}


def _names(e: BaseException) -> set[str]:
    return {type(x).__name__ for x in _chain(e)}


def _is_connection_error(e: BaseException) -> bool:
    names = _names(e)
    if names & {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ClientConnectorError",
        "ServerDisconnectedError",
        "ConnectionClosedError",
        "ReadTimeoutError",
        "ConnectionRefusedError",
        "ConnectionResetError",
        "ClientOSError",
        "ServerTimeoutError",
        "FSTimeoutError",
    }:
        return True
    return any(
        isinstance(x, OSError)
        and x.errno in (errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH, errno.ETIMEDOUT, errno.ENETUNREACH)
        for x in _chain(e)
    )


def _quiet_dropped_connection_tasks(loop: Any) -> None:
    """When a connection drops mid-request, aiohttp leaves a task whose exception nobody
    awaits, and asyncio prints "Task exception was never retrieved" with a traceback on
    stderr. The request itself fails too, and _call retries and reports it: drop those."""

    def handler(loop: Any, context: dict) -> None:
        exc = context.get("exception")
        if exc is not None and (isinstance(exc, ConnectionError) or _is_connection_error(exc)):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _transient(e: BaseException) -> bool:
    return _code(e) in _TRANSIENT_CODES or _is_connection_error(e)


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__  # type: ignore[assignment]


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return redact(text)[:200]


def _split_url(url: str) -> tuple[str, str, dict[str, Any]]:
    """(protocol, root path as fsspec wants it, storage options from the URL)."""
    if "://" not in url:
        return "file", os.path.abspath(os.path.expanduser(url)), {}
    protocol = url.split("://", 1)[0].lower()
    if protocol in ("file", "local"):
        return "file", os.path.abspath(url.split("://", 1)[1]), {}
    import fsspec

    try:
        cls = fsspec.get_filesystem_class(protocol)
        root, storage = cls._strip_protocol(url), cls._get_kwargs_from_urls(url)
    except (ImportError, ValueError):
        root, storage = url.split("://", 1)[1], {}  # the error comes when the remote is used
    return protocol, str(root).rstrip("/"), storage


# dataver's remote keys -> s3fs.S3FileSystem arguments
_S3_ARGUMENTS = {
    "endpoint_url": "endpoint_url",
    "profile": "profile",
    "access_key_id": "key",
    "secret_access_key": "secret",
    "session_token": "token",
}


def _storage_options(protocol: str, options: dict[str, str], from_url: dict[str, Any]) -> dict[str, Any]:
    """Config values -> fsspec constructor arguments (s3fs's names for S3)."""
    out: dict[str, Any] = dict(from_url)
    out["skip_instance_cache"] = True
    if protocol == "s3":
        out.update({_S3_ARGUMENTS[k]: v for k, v in options.items() if k in _S3_ARGUMENTS})
        if "region" in options:
            out["client_kwargs"] = {"region_name": options["region"]}
        if _truthy(options.get("anonymous", "")):
            out["anon"] = True
        out["use_listings_cache"] = False
        # botocore's "max_attempts" counts retries (1 = two tries, with up to 1 s of random
        # backoff between): "total_max_attempts" 1 leaves the retrying to _call.
        out["config_kwargs"] = {"connect_timeout": 5, "read_timeout": 60, "retries": {"total_max_attempts": 1}}
        return out
    if protocol in ("file", "local"):
        return {"auto_mkdir": True}
    for key, value in options.items():
        if key != "jobs":
            out[key] = _typed(value)
    return out


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _typed(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if re.fullmatch(r"-?\d+", text.strip()):
        return int(text)
    return text
