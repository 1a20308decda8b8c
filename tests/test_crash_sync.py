"""SIGKILL crash safety of ``push``, ``pull``, ``gc``, ``import`` and ``get``.

The same method, plans and kill loop as ``test_crash.py``: each command is measured
once, then real ``python -m dataver`` processes are SIGKILLed by default at a fixed
sample of its file-system calls (the first and last rename and write, the middle call
of each other kind; ``gc``, which only unlinks: the first, middle and last unlink), each
from the starting state, then in one round of two seeded kills
(exactly at a call, or at a random share of the CPU time an uninterrupted run was
measured to spend changing files), and let finish. ``-m slow`` adds the seeded rounds
(30 kills per command, 36 for ``import``, 16 for ``get``: several kills in a row on
the same state before the command is let finish) and a denser sample.

After every kill:

- ``push`` (to a local-folder remote): every object on the remote hashes to its name,
  is one the pointers need, and a manifest there never precedes its blobs; nothing but
  ``xxh3-128/`` and ``tmp/`` appears on the remote; the local cache is untouched. The
  re-run completes the remote, and a fresh ``git clone`` + ``dataver pull`` from it
  gives exact bytes.
- ``pull`` (in a fresh clone): every cache object hashes to its name; every workspace
  file is absent or exactly right; pointers are untouched. The re-run gives exact
  bytes and a clean ``status``.
- ``gc -y`` (with objects to remove: the old version's and a thousand small
  unreferenced ones, so that its deleting lasts long enough for CPU-timed kills too):
  every object left hashes to its name; no object the workspace's pointers reference
  is gone, and ``checkout`` of deleted data still restores exact bytes. The re-run
  removes exactly the rest.
- ``import`` (from a local source repository): the pointer is absent or complete with
  every object it needs in the cache; no workspace file is partial. The re-run
  (``import`` again, or ``checkout`` where the pointer was written) gives exact bytes.
- ``get`` (of a folder, into a dataver repository's work tree, through its cache): the
  destination is absent or whole and exact (it appears by one rename); every cache
  object hashes to its name. The re-run gives exact bytes.

After every re-run of pull, import and get, no dataver temporary file is left in the
workspace: the re-run removes what the killed runs left.

``DATAVER_CRASH_SEED``, ``DATAVER_CRASH_DEBUG=1`` and ``DATAVER_CRASH_STRACE=0`` work
as in ``test_crash.py``.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest
from remote_view import orphan_packs, packed_objects
from test_crash import (
    HEX,
    POINTERS,
    SEED,
    TARGETS,
    Crasher,
    CrashTotals,
    Job,
    MiB,
    Plan,
    Scale,
    Tally,
    Version,
    check_cache,
    check_no_temporaries,
    check_workspace,
    dv_ok,
    is_temp,
    measure,
    plans,
    read_pointers,
    remove,
    report,
    stat_stamps,
    totals_of,
    version_a,
    version_b,
    write_version,
)

from dataver import checkout, manifest, packfmt, packstore, pointer, refbatch
from dataver.digest import Digest
from dataver.hashing import Hasher, digest_bytes, digest_manifest
from dataver.store import ObjRef, check_bytes

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="times kills with /proc CPU times")

# 160 small files, a 9 MiB file in data/ and a 10 MiB model.bin (both more than one 8 MiB chunk).
SYNC = Scale(small=160, big=(9 * MiB + 4321,), model=10 * MiB)
ALGO = "xxh3-128"
ROUNDS, KILLS = 3, 10  # -m slow: 30 seeded kills per command
IMPORT_ROUNDS, IMPORT_KILLS = 2, 9  # import, -m slow: per imported target (data, then model.bin)
GET_ROUNDS, GET_KILLS = 2, 8
GC_JUNK = 1000  # unreferenced small objects for gc to delete, besides the old version's


@pytest.fixture
def crash_totals(request) -> CrashTotals:
    return totals_of(request.config)


# -- helpers --------------------------------------------------------------------------------
def git(cwd: Path, *args: str) -> None:
    r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"git {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"


def commit_all(root: Path, message: str = "data") -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


def new_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q")
    dv_ok(root, "init")
    return root


def store_objects(base: Path) -> set[str]:
    """Objects of a store (cache or remote folder) as ``xxh3-128/ab/cd...[.manifest]``."""
    out = set()
    top = base / ALGO
    if not top.is_dir():
        return out
    for fan in os.scandir(top):
        for obj in os.scandir(fan.path):
            out.add(f"{ALGO}/{fan.name}/{obj.name}")
    return out


def needed(cache: Path, pointers: list[bytes]) -> set[str]:
    """Objects the pointers need (their manifests read from ``cache``)."""
    out = set()
    for data in pointers:
        ptr = pointer.loads(data, "pointer")
        rel = ptr.digest.relpath()
        if not ptr.is_dir:
            out.add(rel)
            continue
        out.add(rel + ".manifest")
        out.update(e.digest.relpath() for e in manifest.loads((cache / (rel + ".manifest")).read_bytes()))
    return out


def check_store(base: Path, hasher: Hasher, verified: set | None, allowed: set[str]) -> int:
    """Every object under ``base/xxh3-128`` is one of ``allowed`` and hashes to its name;
    a manifest never sits there without all its blobs. Returns objects hashed."""
    n = 0
    have = store_objects(base)
    for rel in sorted(have):
        path = base / rel
        _, fan, name = rel.split("/")
        is_manifest = name.endswith(".manifest")
        hex_ = fan + name.removesuffix(".manifest")
        assert len(hex_) == 32 and set(hex_) <= HEX, f"stray file in the store: {path}"
        assert rel in allowed, f"{path} is no object the pointers need"
        st = os.lstat(path)
        key = (rel, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if verified is not None and key in verified:
            continue
        if is_manifest:
            data = path.read_bytes()
            got = digest_manifest(data).hex
            entries = manifest.loads(data, str(path))
            lacking = [e.path for e in entries if e.digest.relpath() not in have]
            assert not lacking, f"manifest {path} is on the store before its blobs ({len(lacking)} absent)"
        else:
            got = hasher.hash_file(str(path)).digest.hex
        assert got == hex_, f"{path} holds bytes that hash to {got}: a bad object"
        if verified is not None:
            verified.add(key)
        n += 1
    return n


def check_remote(base: Path, hasher: Hasher, verified: set | None, allowed: set[str]) -> tuple[set[str], int]:
    """A folder remote, loose or packed: ``check_store`` for its loose objects; for its
    packed ones, every index file whole and naming only whole packs that list each object
    as it says (remote_view.packed_objects), each object one of ``allowed`` and hashing to
    its name, and no manifest visible before its blobs. Returns (objects, hashed)."""
    n = check_store(base, hasher, verified, allowed)
    loose = store_objects(base)
    packed = packed_objects(base) if base.exists() else {}
    for rel, data in packed.items():
        assert rel in allowed, f"{rel} (packed) is no object the pointers need"
        _, fan, name = rel.split("/")
        ref = ObjRef(Digest(ALGO, fan + name.removesuffix(".manifest")), name.endswith(".manifest"))
        check_bytes(ref, data, f"the remote {base}")  # IntegrityError: a bad object under a valid name
        n += 1
    have = loose | set(packed)
    for rel, data in packed.items():
        if rel.endswith(".manifest"):
            lacking = [e.path for e in manifest.loads(data, rel) if e.digest.relpath() not in have]
            assert not lacking, f"manifest {rel} is on the remote before its blobs ({len(lacking)} absent)"
    stray = {p.name for p in base.iterdir()} - {ALGO, "tmp", "dataver.json", "packs", "index", "locks"}
    assert not stray, f"unexpected entries on the remote: {stray}"
    return have, n


def check_remote_settled(base: Path) -> None:
    """After a command's re-run: no lock (a killed one's is stale, and removed by the
    next command that takes one), no pack that no index names (the re-run makes the
    same packs). Temporaries in the remote's tmp/ are gc's, after an hour."""
    assert not list((base / "locks").glob("*")), "a lock file is left on the remote"
    assert not orphan_packs(base), f"packs that no index names are left: {orphan_packs(base)}"


def tree_state(base: Path) -> frozenset:
    """Names, inodes, sizes, mtimes and modes of everything under ``base``."""
    out = set()
    for here, _dirs, names in os.walk(base):
        for name in names:
            st = os.lstat(os.path.join(here, name))
            out.add((os.path.join(here, name), st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode))
    return frozenset(out)


def objects_state(cache: Path) -> frozenset:
    """``tree_state`` of a cache's objects: what a push may add beside them is the chunk
    maps of what it stored chunked (``maps/``, written whole by rename, through ``tmp/``)."""
    return frozenset(e for e in tree_state(cache) if Path(e[0]).relative_to(cache).parts[0] not in ("maps", "tmp"))


def check_maps(cache: Path) -> None:
    """Every chunk map a push kept is whole: it parses, and names a file the cache holds
    whose size it gives."""
    for path in (cache / "maps" / ALGO).glob("*") if (cache / "maps" / ALGO).is_dir() else []:
        size, _ = packfmt.parse_map(path.read_bytes(), str(path))
        blob = cache / Digest(ALGO, path.name).relpath()
        assert blob.stat().st_size == size, f"{path} does not describe {blob}"


def watch(*bases: Path) -> frozenset:
    """Cheap "did anything change" snapshot (names, inodes, sizes) of several trees."""
    out = set()
    for base in bases:
        for here, _dirs, names in os.walk(base):
            for name in names:
                try:
                    st = os.lstat(os.path.join(here, name))
                except FileNotFoundError:
                    continue
                out.add((os.path.join(here, name), st.st_ino, st.st_size))
    return frozenset(out)


def tree_files(base: Path) -> set[str]:
    """Paths of the files (and links) under ``base``, relative to it."""
    return {os.path.relpath(os.path.join(here, n), base) for here, _dirs, names in os.walk(base) for n in names}


def relink(backup: Path, base: Path) -> None:
    """Make the tree ``base`` a copy of ``backup`` with hard links, as ``copytree`` would:
    files that are not in ``backup`` go, files missing from ``base`` are linked again
    (the files both have are the same inodes already: nothing writes to a read-only
    object in place, and the checks would see it)."""
    want, have = tree_files(backup), tree_files(base)
    for rel in have - want:
        os.unlink(base / rel)
    for rel in sorted(want - have):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(backup / rel, base / rel)
    for rel in want & have:
        assert os.path.samefile(backup / rel, base / rel), f"{base / rel} is not the backed-up file"


def subset(files: Version, target: str) -> Version:
    return {k: v for k, v in files.items() if k == target or k.startswith(target + "/")}


# -- the kill loop -----------------------------------------------------------------------------
def sync_job(
    cwd: Path,
    args: tuple[str, ...],
    restart: Callable[[], None],
    changed: Callable[[], frozenset],
    check_kill: Callable[[], bool],
    checks_per_kill: int,
    finish: Callable[[], None],
    checks_per_round: int,
    **kwargs,
) -> Job:
    """A :class:`Job` whose first change is told by the same snapshot as its other changes."""
    return Job(cwd, args, restart, check_kill, checks_per_kill, finish, checks_per_round, changed, changed, **kwargs)


def crash_rounds(
    job: Job, rng: random.Random, tally: Tally, plan: Plan, only_calls: tuple[str, ...] = ()
) -> tuple[int, int]:
    """Measure ``job``'s command once, then kill it as ``plan`` says: a sample of its
    file-system calls, then rounds of seeded kills, each ending in a re-run.
    Returns the kills and the invariant checks that makes."""
    timing = measure(job.cwd, job.args, job.restart, stamps=job.stamps, changed=job.changed, only_calls=only_calls)
    sampled = Crasher(rng, tally, timing).follow(job, plan, job.restart)
    kills = sampled + plan.rounds * plan.kills
    return kills, kills * job.checks_per_kill + plan.rounds * job.checks_per_round


# -- scenarios -----------------------------------------------------------------------------------
def tracked_repo(root: Path, rng: random.Random, remote: Path | None = None) -> Version:
    """Version A added and committed in ``root`` (with ``remote`` as its default remote)."""
    files = version_a(rng, SYNC)
    write_version(root, files)
    dv_ok(root, "add", *TARGETS)
    if remote is not None:
        dv_ok(root, "remote", "add", "origin", str(remote), "--default")
    commit_all(root)
    return files


def clone_and_pull(root: Path, clone: Path, files: Version, hasher: Hasher, tally: Tally) -> None:
    remove(clone)
    git(root.parent, "clone", "-q", str(root), str(clone))
    dv_ok(clone, "pull")
    assert check_workspace(clone, files, files), "a fresh clone's pull does not give the exact files"
    tally.objects += check_cache(clone, hasher)
    status = dv_ok(clone, "status")
    assert status.stdout.strip() == "", f"status of the fresh clone is not clean:\n{status.stdout}"


@pytest.mark.parametrize("batch", [None, "7"], ids=["one-batch", "batches-of-7"])
@pytest.mark.parametrize("plan", plans(ROUNDS, KILLS))
def test_push_survives_sigkill(repo_dir, crash_totals, plan, batch, monkeypatch):
    if batch:  # objects handed out in many batches (dataver.refbatch): the path of a million
        monkeypatch.setenv(refbatch.BATCH_ENV, batch)
        monkeypatch.setenv(packstore.INDEX_MEMORY_ENV, "0")  # the remote's index records in a temporary file
    started, tally = time.monotonic(), Tally()
    rng = random.Random(f"{SEED}-push")
    remote = repo_dir.parent / "remote"
    files = tracked_repo(repo_dir, rng, remote)
    cache = repo_dir / ".dataver" / "cache"
    wanted = store_objects(cache)
    assert wanted == needed(cache, [p for p in read_pointers(repo_dir).values() if p is not None])
    cache_before = objects_state(cache)
    verified: set = set()

    def restart() -> None:
        remove(remote)
        verified.clear()

    def check_kill() -> bool:
        if not remote.exists():
            return False
        have, n = check_remote(remote, hasher, verified, wanted)
        tally.objects += n
        assert objects_state(cache) == cache_before, "push changed the local cache's objects"
        check_maps(cache)
        return have == wanted

    def finish() -> None:
        dv_ok(repo_dir, "push")
        have, n = check_remote(remote, hasher, None, wanted)
        assert have == wanted, "the re-run of push left objects missing on the remote"
        tally.objects += n
        check_remote_settled(remote)
        assert objects_state(cache) == cache_before, "push changed the local cache's objects"
        check_maps(cache)
        clone_and_pull(repo_dir, repo_dir.parent / "clone", files, hasher, tally)

    job = sync_job(repo_dir, ("push",), restart, lambda: watch(remote), check_kill, 4, finish, 6)
    with Hasher() as hasher:
        kills, checks = crash_rounds(job, rng, tally, plan)
    report(crash_totals, "push", "push", tally, started, plan.rounds, kills, checks)


@pytest.mark.parametrize("batch", [None, "7"], ids=["one-batch", "batches-of-7"])
@pytest.mark.parametrize("plan", plans(ROUNDS, KILLS))
def test_pull_survives_sigkill(repo_dir, crash_totals, plan, batch, monkeypatch):
    if batch:  # objects handed out in many batches (dataver.refbatch), folders created in
        monkeypatch.setenv(refbatch.BATCH_ENV, batch)  # batches and vouched for: the path of a million
        monkeypatch.setenv(checkout.STREAM_CREATE_ENV, "0")
        monkeypatch.setenv(checkout.STREAM_BATCH_ENV, "3")
        monkeypatch.setenv(packstore.INDEX_MEMORY_ENV, "0")  # the remote's index records in a temporary file
    started, tally = time.monotonic(), Tally()
    rng = random.Random(f"{SEED}-pull")
    remote = repo_dir.parent / "remote"
    files = tracked_repo(repo_dir, rng, remote)
    dv_ok(repo_dir, "push")
    pointers = read_pointers(repo_dir)
    clone = repo_dir.parent / "clone"
    verified: set = set()

    def restart() -> None:
        remove(clone)
        git(repo_dir.parent, "clone", "-q", str(repo_dir), str(clone))
        verified.clear()

    def check_kill() -> bool:
        done = check_workspace(clone, {}, files)
        tally.objects += check_cache(clone, hasher, verified)
        assert read_pointers(clone) == pointers, "pull changed a pointer"
        return done

    def finish() -> None:
        dv_ok(clone, "pull")
        assert check_workspace(clone, files, files), "the re-run of pull does not give the exact files"
        assert read_pointers(clone) == pointers, "pull changed a pointer"
        tally.objects += check_cache(clone, hasher)
        status = dv_ok(clone, "status")
        assert status.stdout.strip() == "", f"status is not clean after the re-run:\n{status.stdout}"
        check_no_temporaries(clone)

    def changed() -> frozenset:
        return watch(clone / ".dataver" / "cache", clone / "data") | watch_file(clone / "model.bin")

    job = sync_job(clone, ("pull",), restart, changed, check_kill, 3, finish, 6)
    with Hasher() as hasher:
        kills, checks = crash_rounds(job, rng, tally, plan)
    report(crash_totals, "pull", "pull", tally, started, plan.rounds, kills, checks)


def watch_file(path: Path) -> frozenset:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return frozenset()
    return frozenset({(str(path), st.st_ino, st.st_size)})


# Version A is committed and never pushed, which gc keeps unless told: the flag gives it
# A's objects to delete too, as many unlinks for the kills to land in as before.
GC_ARGS = ("gc", "-y", "--not-pushed-too")


@pytest.mark.parametrize("plan", plans(ROUNDS, KILLS))
def test_gc_survives_sigkill(repo_dir, crash_totals, plan):
    started, tally = time.monotonic(), Tally()
    rng = random.Random(f"{SEED}-gc")
    a = tracked_repo(repo_dir, rng)
    b = version_b(rng, a)
    write_version(repo_dir, b)
    dv_ok(repo_dir, "add", *TARGETS)
    cache = repo_dir / ".dataver" / "cache"
    keep = needed(cache, [p for p in read_pointers(repo_dir).values() if p is not None])
    # Besides version A's objects, many small unreferenced ones: deleting only A's is
    # over in a millisecond, too soon for a CPU-timed kill to land inside it.
    for _ in range(GC_JUNK):
        data = rng.randbytes(rng.randint(1, 256))
        junk = cache / digest_bytes(data).relpath()
        junk.parent.mkdir(exist_ok=True)
        junk.write_bytes(data)
        junk.chmod(0o444)
    everything = store_objects(cache)
    assert len(everything - keep) > GC_JUNK, "gc would have too little to remove"
    backup = repo_dir.parent / "cache-backup"
    shutil.copytree(cache, backup, copy_function=os.link)
    verified: set = set()

    def restart() -> None:
        relink(backup, cache)

    def checkout_restores() -> None:
        for target in TARGETS:
            remove(repo_dir / target)
        dv_ok(repo_dir, "checkout")
        assert check_workspace(repo_dir, b, b), "checkout does not restore the exact files after gc"

    def check_kill() -> bool:
        tally.objects += check_cache(repo_dir, hasher, verified)
        lost = keep - store_objects(cache)
        assert not lost, f"gc deleted {len(lost)} objects the workspace's pointers need, e.g. {sorted(lost)[0]}"
        checkout_restores()
        return store_objects(cache) == keep

    def finish() -> None:
        dv_ok(repo_dir, *GC_ARGS)
        left = store_objects(cache)
        assert left == keep, f"the re-run of gc kept {len(left - keep)} extra and lost {len(keep - left)} objects"
        tally.objects += check_cache(repo_dir, hasher)
        checkout_restores()
        status = dv_ok(repo_dir, "status")
        assert status.stdout.strip() == "", f"status is not clean after the re-run:\n{status.stdout}"

    # gc's deleting is over in milliseconds: most kills go at its unlink calls. What it
    # changed is told by the mtimes of the cache's folders (quicker than a listing).
    folders = [cache, cache / "tmp", cache / ALGO, *sorted((cache / ALGO).iterdir())]
    changed = functools.partial(stat_stamps, folders)
    job = sync_job(repo_dir, GC_ARGS, restart, changed, check_kill, 3, finish, 5, syscall_share=0.75)
    with Hasher() as hasher:
        kills, checks = crash_rounds(job, rng, tally, plan, only_calls=("unlink", "unlinkat"))
    report(crash_totals, "gc", "gc", tally, started, plan.rounds, kills, checks)


GC_REMOTE_ARGS = ("gc", "-y", "--remote", "origin")


@pytest.mark.parametrize("plan", plans(ROUNDS, KILLS))
def test_gc_of_a_packed_remote_survives_sigkill(repo_dir, crash_totals, plan):
    """gc of a packed remote rewrites version A's packs (half their objects are garbage
    once version B is all that is kept): new packs, one new index, then the old index
    files and packs go. Killed anywhere: every index names only whole packs, nothing
    version B needs is lost, and a fresh clone pulls B; the re-run leaves exactly B's
    objects, no lock and no pack that no index names."""
    started, tally = time.monotonic(), Tally()
    rng = random.Random(f"{SEED}-gc-remote")
    remote = repo_dir.parent / "remote"
    a = tracked_repo(repo_dir, rng, remote)
    dv_ok(repo_dir, "push")
    b = version_b(rng, a)
    write_version(repo_dir, b)
    dv_ok(repo_dir, "add", *TARGETS)
    dv_ok(repo_dir, "push")
    commit_all(repo_dir, "b")
    cache = repo_dir / ".dataver" / "cache"
    keep = needed(cache, [p for p in read_pointers(repo_dir).values() if p is not None])
    everything = store_objects(cache)
    assert set(packed_objects(remote)) | store_objects(remote) == everything
    plan_out = dv_ok(repo_dir, "gc", "--remote", "origin", "--dry-run").stderr
    assert "would rewrite" in plan_out and "would rewrite 0" not in plan_out, plan_out
    backup = repo_dir.parent / "remote-backup"
    shutil.copytree(remote, backup, copy_function=os.link)
    verified: set = set()

    def restart() -> None:
        relink(backup, remote)
        verified.clear()

    def check_kill() -> bool:
        have, n = check_remote(remote, hasher, verified, everything)
        tally.objects += n
        lost = keep - have
        assert not lost, f"gc lost {len(lost)} objects version B needs, e.g. {sorted(lost)[0]}"
        return have == keep

    def finish() -> None:
        dv_ok(repo_dir, *GC_REMOTE_ARGS)
        have, n = check_remote(remote, hasher, None, everything)
        tally.objects += n
        assert have == keep, f"the re-run of gc kept {len(have - keep)} extra and lost {len(keep - have)} objects"
        check_remote_settled(remote)
        clone_and_pull(repo_dir, repo_dir.parent / "clone", b, hasher, tally)

    job = sync_job(repo_dir, GC_REMOTE_ARGS, restart, lambda: watch(remote), check_kill, 3, finish, 4)
    with Hasher() as hasher:
        kills, checks = crash_rounds(job, rng, tally, plan)
    report(crash_totals, "gc-remote", "gc --remote", tally, started, plan.rounds, kills, checks)


@pytest.mark.parametrize("plan", plans(IMPORT_ROUNDS, IMPORT_KILLS))
def test_import_survives_sigkill(repo_dir, crash_totals, plan):
    started, tally = time.monotonic(), Tally()
    rng = random.Random(f"{SEED}-import")
    files = tracked_repo(repo_dir, rng)
    dest = new_repo(repo_dir.parent / "dest")
    cache = dest / ".dataver" / "cache"
    verified: set = set()
    jobs = []
    for target in TARGETS:
        want = subset(files, target)
        ptr_path = dest / (target + ".dv")
        args = ("import", str(repo_dir), target)
        expected: list[bytes] = []

        def restart(target: str = target) -> None:
            remove(cache)
            for name in (*TARGETS, *POINTERS, ".gitignore", *(f".dataver/state.db{s}" for s in ("", "-wal", "-shm"))):
                remove(dest / name)
            for leftover in dest.iterdir():
                if is_temp(leftover.name):
                    remove(leftover)
            verified.clear()

        def check_kill(
            target: str = target, want: Version = want, ptr_path: Path = ptr_path, expected: list = expected
        ) -> bool:
            done = check_workspace(dest, {}, want)
            tally.objects += check_cache(dest, hasher, verified)
            for other in POINTERS:
                if dest / other != ptr_path:
                    assert not (dest / other).exists(), f"import wrote {other}"
            if not ptr_path.exists():
                assert not (dest / target).exists(), f"{target} was checked out before its pointer was written"
                return False
            data = ptr_path.read_bytes()
            assert data == expected[0], f"{ptr_path.name} is not what a complete import writes: {data!r}"
            lacking = needed(cache, [data]) - store_objects(cache)
            assert not lacking, f"{ptr_path.name} was written before {len(lacking)} of its objects were cached"
            return done

        def finish(
            target: str = target, want: Version = want, ptr_path: Path = ptr_path, expected: list = expected
        ) -> None:
            if ptr_path.exists():
                dv_ok(dest, "checkout")
            else:
                dv_ok(dest, "import", str(repo_dir), target)
            data = ptr_path.read_bytes()
            assert data == expected[0], "the re-run wrote another pointer"
            assert needed(cache, [data]) <= store_objects(cache), "objects of the imported pointer are missing"
            assert check_workspace(dest, want, want), "the re-run of import does not give the exact files"
            tally.objects += check_cache(dest, hasher)
            status = dv_ok(dest, "status")
            assert status.stdout.strip() == "", f"status is not clean after the re-run:\n{status.stdout}"
            check_no_temporaries(dest)

        def changed(ptr_path: Path = ptr_path) -> frozenset:
            return watch(cache, dest / "data") | watch_file(dest / "model.bin") | watch_file(ptr_path)

        def next_args(ptr_path: Path = ptr_path, args: tuple[str, ...] = args) -> tuple[str, ...]:
            return ("checkout",) if ptr_path.exists() else args  # import refuses a written pointer

        restart()  # what a complete import writes
        dv_ok(dest, *args)
        expected.append(ptr_path.read_bytes())
        restart()
        job = sync_job(dest, args, restart, changed, check_kill, 4, finish, 6, next_args=next_args)
        jobs.append(job)
    with Hasher() as hasher:
        done = [crash_rounds(job, rng, tally, plan) for job in jobs]
    kills, checks = sum(k for k, _ in done), sum(c for _, c in done)
    report(crash_totals, "import", "import", tally, started, len(jobs) * plan.rounds, kills, checks)


@pytest.mark.parametrize("plan", plans(GET_ROUNDS, GET_KILLS))
def test_get_survives_sigkill(repo_dir, crash_totals, plan):
    started, tally = time.monotonic(), Tally()
    rng = random.Random(f"{SEED}-get")
    files = tracked_repo(repo_dir, rng)
    here = new_repo(repo_dir.parent / "consumer")
    cache, out = here / ".dataver" / "cache", here / "got"
    want = {"got/" + rel[len("data/") :]: data for rel, data in subset(files, "data").items()}
    args = ("get", str(repo_dir), "data", "-o", "got")
    verified: set = set()

    def restart() -> None:
        remove(cache)
        remove(out)
        for leftover in here.iterdir():
            if is_temp(leftover.name):
                remove(leftover)
        verified.clear()

    def got() -> Version:
        return {os.path.relpath(p, here): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def check_kill() -> bool:
        tally.objects += check_cache(here, hasher, verified)
        if not out.exists():
            return False
        assert got() == want, "get left a partial destination: it must appear whole or not at all"
        return True

    def finish() -> None:
        if not out.exists():
            dv_ok(here, *args)
        assert got() == want, "the re-run of get does not give the exact files"
        tally.objects += check_cache(here, hasher)
        check_no_temporaries(here)

    def changed() -> frozenset:
        return watch(cache, out) | frozenset(n for n in os.listdir(here) if is_temp(n))

    def next_args() -> tuple[str, ...]:
        return ("status",) if out.exists() else args  # get refuses a destination that exists

    job = sync_job(here, args, restart, changed, check_kill, 2, finish, 3, next_args=next_args)
    with Hasher() as hasher:
        kills, checks = crash_rounds(job, rng, tally, plan)
    report(crash_totals, "get", "get", tally, started, plan.rounds, kills, checks)
