"""After a checkout has created a big folder: record the folder prints that let the next
``status`` skip it, once every file has been checked against what was written.

A pull into a fresh clone writes a million files and records a stat-cache row for each
(checkout does), but no folder print: the first ``status`` then compared the folder file
by file, holding an entry and a record per file (723 MB at 1,000,000 files). Here the
folder's prints are taken (a prints-only scan), and each subfolder that a tree node of
the manifest names is checked on its own: its files on disk, its stat-cache rows and its
manifest entries, merged as they stream in path order. A subfolder whose every file has
a row that matches its stat and names the manifest's digest (or, where checkout wrote
it too recently for a row, hashes to it under that stat), and whose own subfolders
passed too, gets the record an ``add`` would have made (its print with the cache's
generation -> its manifest); the whole folder likewise (its fingerprint -> the pointer's
digest). A file changed after checkout wrote it has a stat that no row matches, so its
folder is not vouched for, and ``status`` compares it as before. Memory: one
subfolder's own files at a time.
"""

from __future__ import annotations

import os

from . import tree
from .digest import Digest
from .repo import Repo
from .state import stat_key
from .workspace import Tracked, hash_files, scan_folder


def vouch_written(repo: Repo, created: list[Tracked]) -> int:
    """``vouch_folder`` for each folder checkout created from nothing (``Plan.streamed``:
    a fresh clone's pull). A checkout that changed part of a folder leaves the others
    alone: their prints still vouch, and status compares only what changed."""
    return sum(vouch_folder(repo, t) for t in created)


def vouch_folder(repo: Repo, t: Tracked) -> int:
    """Record the prints of ``t``'s folder and of every subfolder with a manifest node of
    its own whose files are as checkout wrote them. Returns how many were recorded."""
    if not t.pointer.is_dir or not os.path.isdir(t.path):
        return 0
    algorithm = t.pointer.digest.algorithm
    read = tree.keeping(repo.cache.read_manifest_bytes, t.pointer.digest)
    source = f"manifest of {t.rel}"
    nodes: dict[str, Digest] = {"": t.pointer.digest}  # "a/b/" -> its manifest, "" the folder
    children: dict[str, list[str]] = {"": []}
    todo = [""]
    while todo:
        prefix = todo.pop()
        for name, digest in tree.subfolders(read, nodes[prefix], source):
            sub = f"{prefix}{name}/"
            nodes[sub], children[sub] = digest, []
            children[prefix].append(sub)
            todo.append(sub)
    prints = scan_folder(t.path, t.rel, repo, keep=False).prints()
    generation = repo.cache.generation()
    good: dict[str, bool] = {}
    recorded = 0
    for sub in sorted(nodes, key=lambda p: p.count("/"), reverse=True):  # the deepest first
        here = prints.get(sub)
        if here is None or here.combined is None or not all(good[c] for c in children[sub]):
            good[sub] = False
            continue
        good[sub] = _as_written(repo, t, sub, nodes[sub], [c[len(sub) :] for c in children[sub]], algorithm)
        if good[sub] and sub:
            repo.state.put_folder(f"{t.rel}/{sub[:-1]}", f"{here.combined}@{generation}", nodes[sub])
            recorded += 1
    if good.get(""):
        assert prints[""].combined is not None
        repo.state.put_folder(t.rel, prints[""].combined, t.pointer.digest)
        recorded += 1
    return recorded


def _as_written(repo: Repo, t: Tracked, sub: str, digest: Digest, nested: list[str], algorithm: str) -> bool:
    """Whether the files of subfolder ``sub`` (but those of the ``nested`` subfolders,
    checked on their own) are exactly the manifest's, each vouched for by a stat-cache row
    that matches its stat and names its digest."""
    folder = os.path.join(t.path, *sub.split("/")) if sub else t.path
    where = f"{t.rel}/{sub[:-1]}" if sub else t.rel
    skip = set(nested)
    files = scan_folder(folder, where, repo, inside=t.path if sub else None, leave=frozenset(skip)).files
    entries = tree.walk(
        repo.cache.read_manifest_bytes, digest, f"manifest of {where}", (lambda p: p in skip) if skip else None
    )
    rows = repo.state.recorded_under(where, algorithm)
    row = next(rows, None)
    count = 0
    to_hash: dict[str, tuple[Digest, tuple[int, int, int, int]]] = {}  # no row (a racy write): hashed here
    try:
        for e in entries:
            count += 1
            st = files.get(e.path)
            if st is None or st.st_size != e.size or bool(st.st_mode & 0o100) != e.executable:
                return False
            while row is not None and row[0] < e.path:
                row = next(rows, None)
            if row is not None and row[0] == e.path and row[1] == stat_key(st):
                if row[2] != e.digest.hex:
                    return False
                continue
            to_hash[os.path.join(folder, *e.path.split("/"))] = (e.digest, stat_key(st))
    finally:
        rows.close()
    if count != len(files):
        return False
    # A file written less than the racy window before its row was to be recorded has no
    # row (state.put_many leaves it out): its bytes are read, under the stat scanned.
    for path, h in hash_files(repo, list(to_hash), algorithm).items():
        digest, key = to_hash[path]
        if h.digest != digest or (h.inode, h.size, h.mtime_ns, h.ctime_ns) != key:
            return False
    return True
