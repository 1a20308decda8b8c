"""``import-url``, ``get-url`` and ``api.get_url``: data from any fsspec URL (``s3://``,
``https://``, ``gs://``, a local path), and the URL of a tracked object on a remote.

``import-url`` downloads the file or folder, adds it like ``add`` does (its bytes are in
the cache and pushed like any data) and records where it came from in the pointer's
``source.*`` block with the version evidence the store gives: the ETag, size and mtime
(or checksum) of a file; for a folder, a digest of its listing (each file's path, size
and ETag or mtime). ``update`` asks for that evidence again and downloads only when it
changed. ``get-url`` downloads without tracking anything.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from dataclasses import dataclass
from typing import Any

from ..errors import DataverError, ObjectsMissing, PathError, RemoteError, StorageError, WouldLoseData
from ..linking import temp_sibling
from ..progress import NO_PROGRESS, Progress
from ..repo import Repo, takes_lock
from ..store import ObjRef
from ..workspace import ADDED, MODIFIED, UNCHANGED, load_tracked, pointer_for, status, tracked_ancestor

EVIDENCE_KEYS = ("etag", "size", "mtime", "checksum", "listing", "files")


@dataclass
class UrlResult:
    path: str  # repo-relative (get-url: where it was written)
    url: str
    kind: str  # "file" or "dir"
    size: int
    files: int
    changed: bool  # import-url / update: the pointer changed
    evidence: dict[str, str]


def _fs(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        from ..remotes import BACKEND_PACKAGES

        protocol = url.split("://", 1)[0] if "://" in url else "file"
        package = BACKEND_PACKAGES.get(protocol)
        raise RemoteError(
            f"{url}: {protocol}:// is not available here: {e}",
            f"install {package}" if package else "install the fsspec backend for it",
        ) from None


def _call(url: str, what: str, fn):
    try:
        return fn()
    except FileNotFoundError:
        raise PathError(f"{url} does not exist", "check the URL") from None
    except PermissionError as e:
        if e.filename and os.path.isabs(str(e.filename)) and "://" in url:  # our side: a local write
            raise StorageError(f"cannot write {e.filename}: {e.strerror}") from None
        raise RemoteError(f"access to {url} was denied ({what}): {e}", "check the credentials for it") from None
    except DataverError:
        raise
    except Exception as e:  # a backend's own error: one line naming the URL, no traceback
        raise RemoteError(f"cannot {what} {url}: {type(e).__name__}: {e}", "check the URL and the network") from None


def _stamp(info: dict) -> str:
    for key in ("ETag", "etag", "checksum", "md5", "mtime", "LastModified", "last_modified", "created"):
        if info.get(key) not in (None, ""):
            return f"{key}={info[key]}"
    return ""


def evidence(fs: Any, path: str, url: str) -> tuple[str, dict[str, str]]:
    """("file" or "dir", the version evidence of what ``path`` holds now)."""
    info = _call(url, "read", lambda: fs.info(path))
    if info.get("type") == "directory":
        found = _call(url, "list", lambda: fs.find(path, detail=True))
        lines = []
        total = 0
        for full, item in sorted(found.items()):
            if item.get("type") == "directory":
                continue
            rel = posixpath.relpath(fs._strip_protocol(full), fs._strip_protocol(path))
            lines.append(f"{rel}\t{item.get('size', '')}\t{_stamp(item)}")
            total += int(item.get("size") or 0)
        import hashlib

        listing = hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()
        return "dir", {"listing": listing, "files": str(len(lines)), "size": str(total)}
    out = {"size": str(info.get("size", ""))}
    for key, names in (
        ("etag", ("ETag", "etag")),
        ("checksum", ("checksum", "md5")),
        ("mtime", ("mtime", "LastModified", "last_modified", "created")),
    ):
        value = next((info[n] for n in names if info.get(n) not in (None, "")), None)
        if value is not None:
            out[key] = str(value).strip('"')
    return "file", {k: v for k, v in out.items() if v}  # what the pointer can hold (no empty values)


def _download(fs: Any, path: str, kind: str, dest: str, url: str) -> None:
    """``path`` at ``dest``, whole or not at all (a temporary sibling, then a rename)."""
    tmp = temp_sibling(dest)
    try:
        _fetch_into(fs, path, kind, tmp, url)
        os.replace(tmp, dest)
    except BaseException:
        _remove(tmp)
        raise


def _fetch_into(fs: Any, path: str, kind: str, tmp: str, url: str) -> None:
    """``path`` written at ``tmp``, a temporary name (a kill leaves it for ``_clean``). A
    folder's files are listed first and each name passes the path check (a key of a
    bucket anyone can write may hold ``..`` or ``.git``) before anything is written."""
    from ..safepath import check_relpath

    try:
        if kind != "dir":
            _call(url, "download", lambda: fs.get_file(path, tmp))
            return
        top = fs._strip_protocol(path).rstrip("/")
        found = _call(url, "list", lambda: fs.find(path, detail=True))
        files = []
        for full, item in sorted(found.items()):
            if item.get("type") == "directory":
                continue
            rel = fs._strip_protocol(full)[len(top) + 1 :]
            check_relpath(rel, url, "it names a path dataver never writes: copy the files you want by hand")
            files.append((full, rel))
        os.makedirs(tmp)
        for full, rel in files:
            dest = os.path.join(tmp, *rel.split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            _call(url, "download", lambda full=full, dest=dest: fs.get_file(full, dest))
    except OSError as e:
        raise StorageError(f"cannot write the download of {url}: {e.strerror}") from None


def _clean(target: str) -> None:
    """What a killed download, pointer or .gitignore write of ``target`` left beside it."""
    from ..fsutil import remove_temporaries, remove_temporaries_of, sibling_temporaries

    remove_temporaries_of(target)  # a half-downloaded file, or a folder's staging folder
    remove_temporaries(sibling_temporaries([target]))


def _name(url: str) -> str:
    return posixpath.basename(url.split("://", 1)[-1].rstrip("/")) or "download"


def get_url(url: str, out: str | None = None) -> UrlResult:
    """Download ``url`` (a file or folder) to ``out``; nothing is tracked."""
    dest = os.path.abspath(out or _name(url))
    from ..safepath import reserved_in

    if reserved_in(dest.split(os.sep)) is not None:
        raise PathError(f"refusing to write {dest}: dataver never writes into .git or .dataver")
    if os.path.lexists(dest):
        raise PathError(f"{dest} already exists", "choose another destination with -o, or remove it")
    _clean(dest)
    fs, path = _fs(url)
    kind, ev = evidence(fs, path, url)
    _download(fs, path, kind, dest, url)
    files = sum(len(f) for _, _, f in os.walk(dest)) if kind == "dir" else 1
    size = int(ev.get("size") or 0)
    return UrlResult(dest, url, kind, size, files, True, ev)


@takes_lock
def import_url(repo: Repo, url: str, out: str | None = None, progress: Progress = NO_PROGRESS) -> UrlResult:
    """Track the file or folder at ``url`` as ``out``, with its source and version evidence."""
    target = repo.resolve(out or _name(url))
    rel = repo.rel(target)
    if os.path.exists(pointer_for(target)):
        raise PathError(f"{rel} is already tracked ({rel}.dv)", f"to download a new version: dataver update {rel}.dv")
    exists = os.path.lexists(target)  # a user's file, or what a killed import-url downloaded
    owner = tracked_ancestor(repo, target)
    if owner is not None:
        raise PathError(f"{rel} is inside {repo.rel(owner)}, which {repo.rel(owner)}.dv tracks", "choose another -o")
    if repo.git is not None:
        repo.git.check_not_tracked(rel)
    _clean(target)
    fs, path = _fs(url)
    kind, ev = evidence(fs, path, url)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if exists:  # adopted only if it is exactly what the URL holds (an import-url killed before its pointer)
        fresh = temp_sibling(target)
        try:
            _fetch_into(fs, path, kind, fresh, url)
            same = _same(fresh, target)
        finally:
            _remove(fresh)
        if not same:
            raise PathError(f"{rel} already exists", "choose another destination with -o, or remove it")
    else:
        _download(fs, path, kind, target, url)
    return _track(repo, target, url, kind, ev, progress)


def _same(a: str, b: str) -> bool:
    """Two files, or two folders of files, with the same names and bytes."""
    import filecmp

    if os.path.isfile(a) or os.path.isfile(b):
        return os.path.isfile(a) and os.path.isfile(b) and filecmp.cmp(a, b, shallow=False)

    def files(root: str) -> list[str]:
        return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)

    names = files(a)
    return names == files(b) and all(filecmp.cmp(os.path.join(a, n), os.path.join(b, n), shallow=False) for n in names)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def _track(repo: Repo, target: str, url: str, kind: str, ev: dict[str, str], progress: Progress) -> UrlResult:
    from .add import add

    pointer_path = pointer_for(target)
    old = None
    if os.path.exists(pointer_path):
        with open(pointer_path, "rb") as f:
            old = f.read()
    # the pointer is written once, with its source block: killed before that write, the
    # old pointer (and its old evidence) stands, and the next run downloads again
    block = {"url": url, **{k: v for k, v in ev.items() if k in EVIDENCE_KEYS}}
    (added,) = add(repo, [repo.rel(target)], progress, imported=True, source=block)
    with open(pointer_path, "rb") as f:
        data = f.read()
    return UrlResult(repo.rel(target), url, kind, added.size, added.files, data != old, ev)


@takes_lock
def update_url(repo: Repo, pointer_path: str, progress: Progress = NO_PROGRESS) -> UrlResult:
    """Ask the URL of an ``import-url`` pointer for its version evidence again; download
    and re-add only when it changed."""
    t = load_tracked(repo, pointer_path)
    _clean(t.path)
    source = t.pointer.source
    url = source.get("url")
    if not url:
        raise PathError(f"{t.rel} is not an import-url (its pointer has no source.url)")
    fs, path = _fs(url)
    kind, ev = evidence(fs, path, url)
    recorded = {k: v for k, v in source.items() if k in EVIDENCE_KEYS}
    if ev == recorded and kind == t.pointer.kind:
        return UrlResult(t.rel, url, kind, t.pointer.size, t.pointer.files or 1, False, ev)
    tmp = temp_sibling(t.path)
    try:
        _fetch_into(fs, path, kind, tmp, url)  # the new version beside the old one, then swapped in
    except BaseException:
        _remove(tmp)
        raise
    unsaved = [
        r.path
        for r in status(repo, [t], check_cache=True)
        if r.state in (MODIFIED, ADDED) or (r.state == UNCHANGED and r.in_cache is False)
    ]
    if unsaved:
        same = _same(tmp, t.path)  # exactly the new version: an update killed after its swap
        _remove(tmp)
        if same:
            return _track(repo, t.path, url, kind, ev, progress)
        raise WouldLoseData(
            f"update would replace {t.rel}, which has changes not in the cache: {unsaved[0]}"
            + (f" and {len(unsaved) - 1} more" if len(unsaved) > 1 else ""),
            f"move them away, or dataver checkout {t.rel} to drop them, then update again",
        )
    try:
        if os.path.lexists(t.path):
            from .move import delete_tracked

            left = delete_tracked(repo, t)  # what the old version tracked (its bytes are in the cache)
            if left:
                _remove(tmp)
                raise WouldLoseData(
                    f"update would replace {t.rel}, which holds files it never tracked: {left[0]}",
                    "move them away, then update again",
                )
        os.replace(tmp, t.path)
    except OSError as e:
        raise StorageError(f"cannot replace {t.rel}: {e.strerror}") from None
    return _track(repo, t.path, url, kind, ev, progress)


def object_url(repo: Repo, path: str, rev: str | None = None, remote_name: str | None = None) -> str:
    """``api.get_url``: the URL of the object holding ``path``'s bytes (at ``rev``) on
    the remote (the default one), where it is a file of its own there."""
    from ..remotes import open_remote
    from ..view import RevisionView

    info = RevisionView(repo, rev).file(path)
    remote = open_remote(repo.config, remote_name, repo.root)
    ref = ObjRef(info.digest)
    if remote.missing([ref]):
        raise ObjectsMissing(f"{info.path} ({info.digest.short()}) is not on {remote.where}", "dataver push it first")
    if remote._packed_record(ref) is not None:
        raise PathError(
            f"{info.path} is stored inside a pack on {remote.where}: it has no URL of its own",
            "read it with dataver.api.open (or dataver get), which reads packs",
        )
    where = remote.path(ref)
    return where if remote.protocol == "file" else f"{remote.protocol}://{where}"
