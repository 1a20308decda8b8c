"""``add``: put files and folders into the cache and write their pointers.

Write order (what makes a kill at any point safe): every object is complete in the
cache before the manifest that lists it, the manifest before the pointer, and the
workspace file is swapped for a link (hardlink/symlink modes) only after its object
exists, by an atomic rename. Copy and reflink modes leave workspace files untouched.
"""

from __future__ import annotations

import contextlib
import os
import stat as stat_mod
from dataclasses import dataclass

from .. import linking, pointer, tree
from ..digest import Digest
from ..errors import DataverError, PathError
from ..fsutil import atomic_write, ensure_gitignored, remove_temporaries, sibling_temporaries
from ..hashing import HashedFile, Hasher
from ..manifest import Entry
from ..pointer import Pointer
from ..progress import NO_PROGRESS, Progress
from ..repo import Repo, takes_lock
from ..state import FileStat, StatRecorder
from ..workspace import FolderScan, load_tracked, outside, pointer_for, scan_folder, tracked_ancestor


@dataclass
class Added:
    path: str  # repo-relative
    kind: str
    digest: str
    size: int
    files: int
    hashed: int  # files read because the stat cache could not vouch for them
    changed: bool  # the pointer file was written


@takes_lock
def add(
    repo: Repo,
    user_paths: list[str],
    progress: Progress = NO_PROGRESS,
    imported: bool = False,
    source: dict[str, str] | None = None,
) -> list[Added]:
    """Store each path's content and write its pointer. ``imported``: a pointer with a
    ``source.*`` block may be re-added (``import-url`` and its ``update``); a user's add
    refuses it. ``source``: the block the new pointer is written with, in the same write."""
    targets = [_check_target(repo, p) for p in user_paths]
    for user_path, target in zip(user_paths, targets, strict=True):
        outer = next((o for o in targets if target.startswith(o + os.sep)), None)
        if outer is not None:  # checked together, or the inner pointer lands in the folder
            raise PathError(
                f"{user_path} is inside {repo.rel(outer)}, which is being added too",
                f"add the folder alone: dataver add {repo.rel(outer)}",
            )
    results = []
    with repo.hasher() as hasher:
        for target in targets:
            results.append(_add_one(repo, target, hasher, progress, imported, source))
    return results


def _check_target(repo: Repo, user_path: str) -> str:
    path = repo.resolve(user_path)
    if path.endswith(pointer.SUFFIX):
        raise PathError(f"{user_path} is a pointer file", f"add the data it tracks: dataver add {user_path[:-3]}")
    link = _linked_parent(repo, path)
    if link is not None:  # the pointer and .gitignore would land wherever the link leads
        raise PathError(
            f"{user_path} is beyond a symbolic link ({repo.rel(link)})",
            f"name the real path, or track the linked folder itself: dataver add {repo.rel(link)}",
        )
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise PathError(f"{user_path} does not exist") from None
    except OSError as e:
        from ..hashing import path_error

        raise path_error(user_path, e) from None
    if not (stat_mod.S_ISREG(st.st_mode) or stat_mod.S_ISDIR(st.st_mode)):
        raise PathError(f"{user_path} is not a regular file or folder")
    owner = tracked_ancestor(repo, path)
    if owner:
        raise PathError(
            f"{user_path} is inside the tracked folder {repo.rel(owner)}",
            f"re-add the whole folder: dataver add {repo.rel(owner)}",
        )
    if not os.path.exists(pointer_for(path)) and repo.git is not None:
        # Checked when a path is first added (reading git's index costs ~50 ms of
        # imports); a re-add keeps the verdict its first add reached.
        repo.git.check_not_tracked(repo.rel(path))
    return path


def _linked_parent(repo: Repo, path: str) -> str | None:
    """A folder between the repository root and ``path`` that is a symbolic link, if any."""
    probe = os.path.dirname(path)
    while len(probe) > len(repo.root):
        if os.path.islink(probe):
            return probe
        probe = os.path.dirname(probe)
    return None


def _add_one(
    repo: Repo,
    target: str,
    hasher: Hasher,
    progress: Progress,
    imported: bool = False,
    source: dict[str, str] | None = None,
) -> Added:
    rel = repo.rel(target)
    old = _existing_pointer(repo, target)
    if old is not None and old.source and not imported:
        raise PathError(
            f"{rel} is imported from {old.source.get('repo', 'another repository')}",
            f"move the pin with: dataver update {rel}.dv --rev REV; or delete {rel}.dv to track it as your own",
        )
    remove_temporaries(sibling_temporaries([target]))  # what a killed add or checkout left beside it
    # Small objects go into a pack, written before the pointer is; not where the
    # workspace is made of links to the cache (a link needs an object of its own).
    with repo.cache.packing() if not _links_back(repo) else contextlib.nullcontext():
        if os.path.isdir(target):
            new, hashed = _add_folder(repo, target, rel, hasher, progress, old)
        else:
            new, hashed = _add_file(repo, target, rel, hasher, progress)
    if old is not None:
        kept = old.with_content(new.digest, new.size, new.files).extra  # less a lineage block gone stale
        new = Pointer(new.kind, new.digest, new.size, new.files, kept)
    if source is not None:
        new = new.with_source(source)
    ensure_gitignored(target)
    changed = atomic_write(pointer_for(target), pointer.dumps(new))
    files = (new.files or 0) if new.is_dir else 1  # an empty folder has 0 files, not 1
    return Added(rel, new.kind, new.digest.hex, new.size, files, hashed, changed)


def _existing_pointer(repo: Repo, target: str) -> Pointer | None:
    if not os.path.exists(pointer_for(target)):
        return None
    return load_tracked(repo, pointer_for(target)).pointer


def _add_file(repo: Repo, target: str, rel: str, hasher: Hasher, progress: Progress) -> tuple[Pointer, int]:
    st = os.stat(target)
    digest = repo.state.get(rel, st, hasher.algorithm)
    hashed = 0
    if digest is None or not repo.cache.has_blob(digest):
        progress.start(f"adding {rel}", total_bytes=st.st_size, total_files=1)
        h = repo.cache.add_file(target, hasher, progress)
        progress.close()
        repo.state.put_many(repo.root, [h])
        digest, hashed = h.digest, 1
        st = os.stat(target)
    relinked = _link_back(repo, target, digest, bool(st.st_mode & 0o100))
    if relinked is not None:
        repo.state.put_many(repo.root, [relinked])
    return Pointer("file", digest, st.st_size), hashed


def _add_folder(
    repo: Repo, target: str, rel: str, hasher: Hasher, progress: Progress, old: Pointer | None
) -> tuple[Pointer, int]:
    watch = repo.fsmonitor.watch(rel, target, old.digest if old and old.is_dir and not _links_back(repo) else None)
    if watch.unchanged and old is not None and _cache_holds(repo, old.digest, hasher.algorithm, rel) == old.files:
        return Pointer("dir", old.digest, old.size, old.files), 0  # watchman: nothing changed since a scan
    # A folder that may be big is scanned for its prints only (how big, what changed);
    # one known to be small, once, keeping its files.
    maybe_big = (old is None or not old.is_dir or (old.files or 0) > BY_PARTS_MIN // 2) and not _links_back(repo)
    first = scan_folder(target, rel, repo, keep=not maybe_big)
    big = maybe_big and first.prints()[""].files > BY_PARTS_MIN
    scan = first if big or not maybe_big else scan_folder(target, rel, repo)
    remove_temporaries(os.path.join(target, name) for name in scan.temporaries)  # never data: not tracked
    names = scan.pointer_like if big else (n for n in scan.files if n.endswith(pointer.SUFFIX))
    nested = [n for n in names if _is_pointer_file(os.path.join(target, n))]
    if nested:
        raise PathError(
            f"{rel} contains dataver pointer files ({rel}/{nested[0]})",
            "track the folder as a whole, or its parts separately, not both",
        )
    fingerprint = None if _links_back(repo) else scan.fingerprint()
    unchanged = _unchanged_folder(repo, rel, scan, fingerprint, hasher.algorithm)
    if unchanged is not None:
        watch.vouched(unchanged.digest)
        return unchanged, 0
    generation = repo.cache.generation()
    subtrees = [] if fingerprint is None else _unchanged_subtrees(repo, rel, scan, hasher.algorithm, generation)
    if big:
        return _add_by_parts(repo, target, rel, hasher, progress, scan, fingerprint, subtrees, watch)
    files = outside(scan.files, {s.path + "/" for s in subtrees})
    if len(files) * 2 < len(scan.files):  # a few files outside known subtrees: looked up by path
        known = repo.state.known_paths(rel, files, hasher.algorithm)
    else:
        known = repo.state.known_under(rel, files, hasher.algorithm)
    in_cache = repo.cache.blobs_present(list(known.values()))
    entries: dict[str, Entry] = {}
    to_store: list[tuple[str, int]] = []
    for name, st in files.items():
        d = known.get(name)
        if d is not None and d in in_cache:
            entries[name] = Entry(name, d, st.st_size, bool(st.st_mode & 0o100))
        else:
            to_store.append((name, st.st_size))
    del known, in_cache
    as_scanned = True  # every stored file had the stat the fingerprint was taken from
    if to_store:
        progress.start(f"adding {rel}", total_bytes=sum(s for _, s in to_store), total_files=len(to_store))

        def store(name: str, prog: Progress) -> tuple[str, HashedFile]:
            return name, repo.cache.add_file(os.path.join(target, name), hasher, prog)

        # Results are folded in as they stream: a 200,000-file folder holds entries,
        # not entries plus every HashedFile, and the stat cache is written in batches.
        recorder = StatRecorder(repo.state, repo.root)
        for name, h in hasher.map_sized(to_store, store, progress):
            entries[name] = Entry(name, h.digest, h.size, h.executable)
            as_scanned = as_scanned and _same_stat(h, scan.files[name])
            recorder.add(h)
        recorder.flush()
        progress.close()
    stored = len(to_store)
    prints = scan.prints()
    del scan, to_store, files  # ~55 MB at 200,000 files, not needed while the manifest is built
    ordered = list(entries.values())
    made: list[tuple[str, Digest]] = []  # the subfolders given manifests of their own
    digest = tree.build(
        ordered,
        hasher.algorithm,
        lambda data: repo.cache.add_manifest(data, hasher.algorithm),
        subtrees,
        lambda prefix, d: made.append((prefix, d)) if prefix else None,
    )
    if _links_back(repo):
        relinked = [_link_back(repo, os.path.join(target, e.path), e.digest, e.executable) for e in ordered]
        repo.state.put_many(repo.root, [h for h in relinked if h is not None])
    elif fingerprint is not None and as_scanned:
        repo.state.put_folder(rel, fingerprint, digest)  # what was hashed is what was scanned
        for prefix, d in made:  # and each subfolder of a tree, for the next re-add
            sub = prints[prefix].combined
            if sub is not None:
                repo.state.put_folder(f"{rel}/{prefix[:-1]}", f"{sub}@{generation}", d)
        watch.vouched(digest)
    total = sum(e.size for e in ordered) + sum(s.size for s in subtrees)
    return Pointer("dir", digest, total, len(ordered) + sum(s.files for s in subtrees)), stored


BY_PARTS_MIN = 50_000  # a folder with more files is added one subfolder at a time (_add_by_parts)


def _add_by_parts(
    repo: Repo,
    target: str,
    rel: str,
    hasher: Hasher,
    progress: Progress,
    first: FolderScan,
    fingerprint: str | None,
    subtrees: list[tree.Subtree],
    watch,
) -> tuple[Pointer, int]:
    """``_add_folder`` for a big folder, in memory bounded by its largest part rather
    than its size: each subfolder that becomes a flat manifest of its own (at most
    ``tree.FLAT_MAX`` files, named by a tree node) is scanned, stored and made a manifest
    alone, then kept as a ``tree.Subtree``; the files directly in the folders that are
    tree nodes are scanned folder by folder; the tree is built from those. ``first``:
    the scan that took only the prints; a part is trusted to be what it was then only
    if its own scan's fingerprint is the same (else nothing is recorded)."""
    prints = first.prints()
    algorithm = hasher.algorithm
    generation = repo.cache.generation()
    done = {s.path + "/" for s in subtrees}
    parts: list[tree.Subtree] = list(subtrees)
    direct: list[Entry] = []  # the files directly in folders that are tree nodes
    same = True  # every part's own scan saw what the first scan saw
    stored = 0
    todo = [""]
    while todo:
        prefix = todo.pop()
        here = prints[prefix]
        scan = scan_folder(
            os.path.join(target, prefix), f"{rel}/{prefix}".rstrip("/"), repo, top_only=True, inside=target
        )
        same = same and scan.dirs[""].own == here.own
        entries, n, same_stats = _store_files(repo, target, rel, prefix, scan, hasher, progress, by_path=True)
        direct += entries
        stored += n
        same = same and same_stats
        for name in here.subdirs:
            sub = f"{prefix}{name}/"
            if sub in done:
                continue
            if prints[sub].files > tree.FLAT_MAX:
                todo.append(sub)
                continue
            part = scan_folder(os.path.join(target, sub), f"{rel}/{sub}".rstrip("/"), repo, inside=target)
            entries, n, same_stats = _store_files(repo, target, rel, sub, part, hasher, progress)
            stored += n
            part_print = part.fingerprint()
            same = same and same_stats and part_print == prints[sub].combined
            digest = tree.build(
                [Entry(e.path[len(sub) :], e.digest, e.size, e.executable) for e in entries],
                algorithm,
                lambda data: repo.cache.add_manifest(data, algorithm),
            )
            if part_print is not None and same_stats:
                repo.state.put_folder(f"{rel}/{sub[:-1]}", f"{part_print}@{generation}", digest)
            parts.append(tree.Subtree(sub[:-1], digest, sum(e.size for e in entries), len(entries)))
    made: list[tuple[str, Digest]] = []
    digest = tree.build(
        direct,
        algorithm,
        lambda data: repo.cache.add_manifest(data, algorithm),
        parts,
        lambda prefix, d: made.append((prefix, d)) if prefix else None,
    )
    if fingerprint is not None and same:
        repo.state.put_folder(rel, fingerprint, digest)
        for prefix, d in made:
            sub_print = prints[prefix].combined
            if sub_print is not None:
                repo.state.put_folder(f"{rel}/{prefix[:-1]}", f"{sub_print}@{generation}", d)
        watch.vouched(digest)
    files = len(direct) + sum(s.files for s in parts)
    return Pointer("dir", digest, sum(e.size for e in direct) + sum(s.size for s in parts), files), stored


def _store_files(
    repo: Repo,
    target: str,
    rel: str,
    prefix: str,
    scan: FolderScan,
    hasher: Hasher,
    progress: Progress,
    by_path: bool = False,
) -> tuple[list[Entry], int, bool]:
    """(entries, files stored, whether each stored file kept its scanned stat) for the
    files of ``scan``, a scan of ``target/prefix`` (paths relative to ``target``): the
    stat cache's digests where it vouches and the cache holds the object, else stored.
    ``by_path``: the scan is of one folder's own files (look them up by path: the rows
    under the folder are those of everything below it)."""
    where = f"{rel}/{prefix}".rstrip("/")
    look_up = repo.state.known_paths if by_path else repo.state.known_under
    known = look_up(where, scan.files, hasher.algorithm)
    in_cache = repo.cache.blobs_present(list(known.values()))
    entries: list[Entry] = []
    to_store: list[tuple[str, int]] = []
    for name, st in scan.files.items():
        d = known.get(name)
        if d is not None and d in in_cache:
            entries.append(Entry(prefix + name, d, st.st_size, bool(st.st_mode & 0o100)))
        else:
            to_store.append((name, st.st_size))
    same = True
    if to_store:
        base = os.path.join(target, prefix)
        progress.start(f"adding {where}", total_bytes=sum(s for _, s in to_store), total_files=len(to_store))

        def store(name: str, prog: Progress) -> tuple[str, HashedFile]:
            return name, repo.cache.add_file(os.path.join(base, name), hasher, prog)

        recorder = StatRecorder(repo.state, repo.root)
        for name, h in hasher.map_sized(to_store, store, progress):
            entries.append(Entry(prefix + name, h.digest, h.size, h.executable))
            same = same and _same_stat(h, scan.files[name])
            recorder.add(h)
        recorder.flush()
        progress.close()
    return entries, len(to_store), same


def _unchanged_subtrees(repo: Repo, rel: str, scan, algorithm: str, generation: str) -> list[tree.Subtree]:
    """Subfolders whose fingerprint vouches for the manifest a past add made of them
    (recorded with the cache's generation: nothing was removed from the cache since),
    among those a tree node names (their parent holds more than ``tree.FLAT_MAX``
    files). Walked from the top: an unchanged subfolder's own subfolders are not asked."""
    prints = scan.prints()
    found: list[tree.Subtree] = []
    todo = [""]
    while todo:
        prefix = todo.pop()
        here = prints[prefix]
        if here.files <= tree.FLAT_MAX:
            continue
        for name in here.subdirs:
            sub_prefix = f"{prefix}{name}/"
            sub = prints[sub_prefix]
            digest = None
            if sub.combined is not None:
                key = f"{sub.combined}@{generation}"
                digest = repo.state.folder_manifest(f"{rel}/{sub_prefix[:-1]}", key, algorithm)
            if digest is not None and repo.cache.has_manifest(digest):
                found.append(tree.Subtree(sub_prefix[:-1], digest, sub.size, sub.files))
            else:
                todo.append(sub_prefix)
    return found


def _unchanged_folder(repo: Repo, rel: str, scan, fingerprint: str | None, algorithm: str) -> Pointer | None:
    """The folder's pointer, if its fingerprint vouches that nothing changed since a
    recorded ``algorithm`` manifest and the cache still holds that manifest and every
    blob it lists."""
    if fingerprint is None:
        return None
    digest = repo.state.folder_manifest(rel, fingerprint, algorithm)
    top = scan.prints()[""]
    if digest is None or _cache_holds(repo, digest, algorithm, rel) != top.files:
        return None
    return Pointer("dir", digest, top.size, top.files)


def _cache_holds(repo: Repo, digest: Digest, algorithm: str, rel: str) -> int | None:
    """How many files the ``algorithm`` manifest ``digest`` lists, if the cache holds
    it and every blob it lists; else None."""
    if digest.algorithm != algorithm:
        return None
    try:
        return repo.cache.count_held(tree.file_hexes(repo.cache.read_manifest_bytes, digest, rel), algorithm)
    except DataverError:  # gone or damaged: build it again
        return None


def _same_stat(h: HashedFile, st: FileStat) -> bool:
    return (h.inode, h.size, h.mtime_ns, h.ctime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _is_pointer_file(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(len(pointer.HEADER)) == pointer.HEADER.encode()


def _links_back(repo: Repo) -> bool:
    return any(k in ("hardlink", "symlink") for k in repo.link_types)


def _link_back(repo: Repo, path: str, digest: Digest, executable: bool) -> HashedFile | None:
    """In hardlink/symlink modes, swap the workspace file for a link to its object.

    Returns the new file's stat-cache record, or None if nothing was swapped.
    """
    kind = next((k for k in repo.link_types if not (executable and k in ("hardlink", "symlink"))), "copy")
    if kind not in ("hardlink", "symlink"):
        return None
    obj = repo.cache.blob_path(digest)
    if not os.path.exists(obj):
        return None  # a packed object: the file stays a copy (small files gain nothing from links)
    if kind == "symlink" and os.path.islink(path) and os.path.realpath(path) == os.path.realpath(obj):
        return None
    if kind == "hardlink" and not os.path.islink(path) and os.stat(path).st_ino == os.stat(obj).st_ino:
        return None
    linking.place(obj, path, repo.link_types, executable)
    st = os.stat(path)
    return HashedFile(path, digest, st.st_size, st.st_ino, st.st_mtime_ns, executable, st.st_ctime_ns)
