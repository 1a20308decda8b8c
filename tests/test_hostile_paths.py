"""A cloned repository is hostile input: no pointer, manifest entry or git tree can make
dataver write or delete inside ``.git``/``.dataver`` (in any spelling a filesystem takes
for them), outside the work tree, or inside another tracked folder.

Every attack here is built the way a stranger would: with plain git, then cloned. Each
asserts the exit code, that the error names the pointer (or manifest) and the path,
that every file of the tree (``.git/`` and ``.dataver/`` included) is byte-identical
before and after, and that git still works.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from conftest import write
from history_helpers import clone, dv, dv_ok, git

from dataver import manifest
from dataver.errors import PathError, PointerError
from dataver.hashing import digest_bytes, digest_manifest
from dataver.safepath import reserved_name

FILES = {"data/a.txt": b"alpha\n", "data/sub/b.txt": b"beta\n", "data/run.sh": b"#!/bin/sh\necho planted\n"}

# Pointer targets git (and dataver) must refuse: git's own spellings of .git on
# case-insensitive, HFS+ and NTFS filesystems, and the same for .dataver.
HOSTILE_TARGETS = [
    ".git",
    ".GIT",
    ".Git",
    ".git ",
    ".git.",
    ".git..",
    ".git. .",
    "git~1",
    "GIT~1",
    ".g\u200cit",
    "\u200d.git",
    ".gi\ufefft",
    "sub/.git",
    "sub/.GIT",
    ".dataver",
    ".DataVer",
    ".dataver.",
    "datave~1",
    "sub/.dataver",
]


def tree_state(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and link under ``root`` (.git and .dataver included): mode and a hash.
    The stat cache counts by its rows: sqlite may fold its write-ahead log into the
    file when a connection closes, which changes bytes but not content."""
    out = {}
    for here, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(here) / name
            st = os.lstat(p)
            if name.startswith("state.db"):
                if name == "state.db":
                    out[str(p.relative_to(root))] = (0, _rows(p))
            elif stat.S_ISDIR(st.st_mode):
                out[str(p.relative_to(root))] = (st.st_mode, b"")
            elif stat.S_ISLNK(st.st_mode):
                out[str(p.relative_to(root))] = (st.st_mode, os.readlink(p).encode())
            else:
                out[str(p.relative_to(root))] = (st.st_mode, hashlib.sha256(p.read_bytes()).digest())
    return out


def _rows(db: Path) -> bytes:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(con.iterdump()).encode()).digest()
    finally:
        con.close()


@pytest.fixture
def origin(tmp_path) -> Path:
    """A repository with a tracked folder pushed to a local remote, committed."""
    root = tmp_path / "origin"
    root.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=root)
    dv_ok("init", cwd=root)
    dv_ok("remote", "add", "storage", tmp_path / "store", "--default", cwd=root)
    for rel, data in FILES.items():
        write(root / rel, data)
    os.chmod(root / "data/run.sh", 0o755)
    dv_ok("add", "data", cwd=root)
    dv_ok("push", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "--quiet", "-m", "data v1", cwd=root)
    return root


def commit_pointer(origin: Path, target: str, message: str = "hostile") -> str:
    """Commit a copy of data.dv under ``target + '.dv'`` with plain git; the commit id."""
    write(origin / (target + ".dv"), (origin / "data.dv").read_bytes())
    git("add", "-A", "-f", cwd=origin)
    git("commit", "--quiet", "-m", message, cwd=origin)
    return git("rev-parse", "HEAD", cwd=origin).stdout.strip()


def ready_clone(origin: Path, dest: Path) -> Path:
    """A clone whose legitimate data was pulled (so the cache, state and lock exist)."""
    clone(origin, dest)
    dv_ok("pull", "data", cwd=dest)
    return dest


def assert_refused(r, code: int, *names: str) -> None:
    assert r.code == code, (r.code, r.out, r.err)
    assert "Traceback" not in r.err
    for name in names:
        assert name in r.err, (name, r.err)


def assert_git_works(root: Path) -> None:
    assert git("status", "--porcelain", cwd=root).returncode == 0
    assert git("fsck", "--no-progress", cwd=root, check=False).returncode == 0


def test_every_spelling_is_reserved():
    """git's verify_path spellings (and .dataver's), and names that merely look alike."""
    for name in HOSTILE_TARGETS + [".git::$INDEX_ALLOCATION", ".git:stream", "a\\.git", ".ＧＩＴ", "GIT~12"]:
        assert reserved_name(name.rsplit("/", 1)[-1]) is not None, name
    for name in [".gitignore", ".gitattributes", "git", ".gi", "my.git", ".git-x", "dataver", ".datavers", "git~"]:
        assert reserved_name(name) is None, name


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_hostile_pointer_in_a_clone_is_refused_everywhere(origin, tmp_path, target):
    commit_pointer(origin, target)
    work = clone(origin, tmp_path / "clone")
    assert (work / (target + ".dv")).exists()
    dv_ok("pull", "data", cwd=work)  # the legitimate part, named alone, is fine
    os.unlink(work / "data/a.txt")
    before = tree_state(tmp_path)
    for cmd in (
        ("pull", "--force"),
        ("pull",),
        ("checkout", "--force"),
        ("checkout",),
        ("fetch",),
        ("status",),
        ("ls",),
        ("verify",),
        ("push",),
    ):
        r = dv(*cmd, cwd=work)
        assert_refused(r, PointerError.exit_code, repr(target) if not target.isprintable() else target)
        assert ".dv" in r.err
    assert tree_state(tmp_path) == before  # .git/, .dataver/, the remote: not a byte changed
    assert_git_works(work)
    assert not (work / "data/a.txt").exists()  # refused as a whole, not only its own part


@pytest.mark.parametrize("target", [".git", ".GIT", "git~1", ".g\u200cit", "sub/.git", ".dataver", ".git. "])
def test_hostile_pointer_at_a_revision_is_refused(origin, tmp_path, target):
    good = git("rev-parse", "HEAD", cwd=origin).stdout.strip()
    bad = commit_pointer(origin, target)
    work = clone(origin, tmp_path / "clone")
    git("checkout", "--quiet", good, cwd=work)  # the workspace itself is clean
    dv_ok("pull", cwd=work)
    before = tree_state(tmp_path)
    for cmd in (
        ("checkout", "--rev", bad, "--force"),
        ("pull", "--rev", bad, "--force"),
        ("fetch", "--rev", bad),
        ("ls", "--rev", bad),
        ("diff", good, bad),
        ("push", "--rev", bad),
    ):
        r = dv(*cmd, cwd=work)
        assert_refused(r, PointerError.exit_code, f"at {bad}")
    assert tree_state(tmp_path) == before
    assert_git_works(work)


def hostile_folder(origin: Path, entry: str, payload: bytes = b"#!/bin/sh\necho pwned\n") -> Path:
    """Commit ``evil.dv``: a folder pointer whose manifest (planted on the remote, with
    the right digest) lists ``entry``; returns the remote."""
    store = origin.parent / "store"
    blob = digest_bytes(payload)
    text = f"{manifest.HEADER}\n{blob.hex} {len(payload)} x {entry}\n".encode()
    mdigest = digest_manifest(text)
    write(store / blob.relpath(), payload)
    write(store / (mdigest.relpath() + ".manifest"), text)
    write(
        origin / "evil.dv",
        f"version: 1\nkind: dir\nhash: xxh3-128\ndigest: {mdigest.hex}\nsize: {len(payload)}\nfiles: 1\n",
    )
    git("add", "-A", cwd=origin)
    git("commit", "--quiet", "-m", "planted", cwd=origin)
    return store


@pytest.mark.parametrize(
    "entry",
    [
        "x/.git/hooks/post-checkout",
        ".git/hooks/post-checkout",
        "x/.GIT/config",
        "x/git~1/hooks/pre-commit",
        "x/.g\u200cit/hooks/post-checkout",
        "x/.dataver/config",
        "x\\.git\\hooks\\post-checkout",
        "../escaped",
    ],
)
def test_hostile_manifest_entry_is_refused(origin, tmp_path, entry):
    hostile_folder(origin, entry)
    work = clone(origin, tmp_path / "clone")
    dv_ok("pull", "data", cwd=work)
    before = tree_state(work)
    for cmd in (("pull", "--force"), ("fetch",), ("ls", "evil"), ("pull", "--force", "evil")):
        r = dv(*cmd, cwd=work)
        assert_refused(r, PointerError.exit_code, "manifest of evil", "from remote 'storage'")
        assert "unsafe" in r.err
    assert tree_state(work) == before  # refused before it gets a name in the cache, too
    # The same manifest already in the cache (a shared cache, or one copied from a
    # stranger's): checkout refuses it as it reads it.
    digest = next(ln.split()[1] for ln in (work / "evil.dv").read_text().splitlines() if ln.startswith("digest:"))
    rel = f"xxh3-128/{digest[:2]}/{digest[2:]}.manifest"
    planted, cached = tmp_path / "store" / rel, work / ".dataver/cache" / rel
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(planted.read_bytes())
    before = tree_state(work)
    for cmd in (("checkout", "--force"), ("checkout", "--force", "evil"), ("ls", "evil"), ("verify",)):
        r = dv(*cmd, cwd=work)
        assert_refused(r, PointerError.exit_code, "manifest of evil")
        assert "unsafe" in r.err
    after = tree_state(work)
    assert after == before
    assert not any("hooks" in k and k.endswith(("post-checkout", "pre-commit")) for k in after)
    assert not (work / "evil").exists() and not (tmp_path / "escaped").exists()
    assert_git_works(work)


def test_nested_git_in_a_tracked_folder_is_never_tracked_deleted_or_written(repo_dir):
    """A folder of user data holding a nested repository: its .git is skipped by add
    (as in DVC), listed nowhere, and survives checkout --force untouched."""
    write(repo_dir / "data/a.txt", b"a\n")
    git("init", "--quiet", cwd=repo_dir / "data")
    (repo_dir / "data/.git/refs/tags").mkdir(parents=True, exist_ok=True)  # empty: prune must spare it
    nested = tree_state(repo_dir / "data/.git")
    dv_ok("add", "data", cwd=repo_dir)
    listed = dv_ok("ls", "data", "--json", cwd=repo_dir).out
    assert "data/a.txt" in listed and ".git" not in listed
    write(repo_dir / "data/extra.txt", b"not in the manifest\n")
    dv_ok("checkout", "--force", cwd=repo_dir)
    assert not (repo_dir / "data/extra.txt").exists()
    assert tree_state(repo_dir / "data/.git") == nested
    assert dv("status", cwd=repo_dir).out == ""


def test_folder_holding_a_repository_is_not_replaced_by_a_file(origin, tmp_path):
    work = ready_clone(origin, tmp_path / "clone")
    write(work / "w.bin", b"weights")
    dv_ok("add", "w.bin", cwd=work)
    os.unlink(work / "w.bin")
    write(work / "w.bin/keep.txt", b"x")
    git("init", "--quiet", cwd=work / "w.bin")
    before = tree_state(work / "w.bin")
    r = dv("checkout", "--force", "w.bin", cwd=work)
    assert_refused(r, PathError.exit_code, "w.bin/.git")
    assert tree_state(work / "w.bin") == before


def test_link_in_a_tracked_folder_into_git_is_refused(origin, tmp_path):
    work = ready_clone(origin, tmp_path / "clone")
    os.symlink("../.git", work / "data/link")
    before = tree_state(work)
    for cmd in (("status",), ("add", "data"), ("checkout", "--force")):
        r = dv(*cmd, cwd=work)
        assert_refused(r, PathError.exit_code, "data/link", "into .git")
    assert tree_state(work) == before
    assert_git_works(work)


def test_target_that_git_tracks_as_a_link_is_refused(origin, tmp_path):
    """``data -> ~/.ssh`` committed as a symbolic link beside data.dv would steer the
    folder's files wherever it points."""
    victim = tmp_path / "victim-home"
    victim.mkdir()
    git("rm", "--quiet", "--cached", "data.dv", cwd=origin)
    os.rename(origin / "data.dv", origin / "loot.dv")
    os.symlink(victim, origin / "loot")
    (origin / ".gitignore").write_text("/data\n")
    git("add", "-A", cwd=origin)
    git("commit", "--quiet", "-m", "link", cwd=origin)
    work = clone(origin, tmp_path / "clone")
    assert os.path.islink(work / "loot")
    for cmd in (("pull", "--force"), ("checkout", "--force")):
        r = dv(*cmd, cwd=work)
        assert_refused(r, PointerError.exit_code, "loot.dv", "tracked by git itself")
    assert os.listdir(victim) == []


def test_folder_above_a_target_that_is_a_link_is_refused(origin, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    git("rm", "--quiet", "--cached", "data.dv", cwd=origin)
    os.makedirs(origin / "sub")
    os.rename(origin / "data.dv", origin / "sub/data.dv")
    git("add", "-A", cwd=origin)
    git("commit", "--quiet", "-m", "moved", cwd=origin)
    rev = git("rev-parse", "HEAD", cwd=origin).stdout.strip()
    work = clone(origin, tmp_path / "clone")
    dv_ok("fetch", "--rev", rev, cwd=work)
    os.rename(work / "sub", work / "sub.real")
    os.symlink(outside, work / "sub")  # as if another commit made sub a link
    r = dv("checkout", "--rev", rev, "--force", cwd=work)
    assert_refused(r, PathError.exit_code, "sub is a symbolic link")
    assert os.listdir(outside) == []


def test_target_inside_another_tracked_folder_is_refused(origin, tmp_path):
    bad = commit_pointer(origin, "data/a.txt")
    work = clone(origin, tmp_path / "clone")
    r = dv("checkout", "--rev", bad, "--force", cwd=work)
    assert_refused(r, PointerError.exit_code, "data/a.txt.dv", "inside data")
    before = tree_state(work)
    r = dv("checkout", "--force", "data/a.txt", cwd=work)
    assert_refused(r, PointerError.exit_code, "data/a.txt.dv", "inside data")
    assert tree_state(work) == before


def consumer(tmp_path: Path) -> Path:
    """A second dataver repository that gets and imports from ``origin``."""
    here = tmp_path / "consumer"
    here.mkdir()
    git("init", "--quiet", cwd=here)
    dv_ok("init", cwd=here)
    dv_ok("gc", "-y", cwd=here)  # the cache and its lock file exist, as in any used repository
    return here


@pytest.mark.parametrize("target", [".git", "git~1", "sub/.git", ".dataver"])
def test_get_and_import_refuse_a_hostile_source(origin, tmp_path, target):
    commit_pointer(origin, target)
    here = consumer(tmp_path)
    before = tree_state(tmp_path)
    for cmd in (("get", origin, "data"), ("get", origin, target, "-o", "out"), ("import", origin, "data")):
        r = dv(*cmd, cwd=here)
        assert_refused(r, PointerError.exit_code, ".dv")
    assert tree_state(tmp_path) == before


def test_get_and_import_refuse_destinations_in_git(origin, tmp_path):
    here = consumer(tmp_path)
    before = tree_state(tmp_path)
    for out in (".git/hooks/data", ".GIT/x", "sub/.git", ".dataver/x", "git~1"):
        for cmd in ("get", "import"):
            r = dv(cmd, origin, "data", "-o", out, cwd=here)
            assert_refused(r, PathError.exit_code)
            assert (
                "(.git/ on some filesystems)" in r.err
                if ".GIT" in out or "~" in out
                else ".git" in r.err or ".dataver" in r.err
            )
    assert tree_state(tmp_path) == before


def test_get_manifest_with_a_hostile_entry_writes_nothing(origin, tmp_path):
    hostile_folder(origin, "x/.git/hooks/post-checkout")
    out = tmp_path / "out"
    out.mkdir()
    r = dv("get", origin, "evil", cwd=out)
    assert_refused(r, PointerError.exit_code, "manifest of evil")
    assert os.listdir(out) == []


def test_api_and_fsspec_refuse_a_hostile_repository(origin, tmp_path):
    import fsspec

    import dataver.api

    commit_pointer(origin, ".git")
    work = ready_clone(origin, tmp_path / "clone")
    before = tree_state(tmp_path)
    with pytest.raises(PointerError, match=r"\.git\.dv"):
        dataver.api.read("data/a.txt", repo=str(work))
    with pytest.raises(PointerError, match=r"\.git\.dv"):
        fsspec.filesystem("dataver", repo=str(work)).cat("data/a.txt")
    assert tree_state(tmp_path) == before


def test_post_checkout_hook_refuses_a_hostile_branch(origin, tmp_path):
    work = ready_clone(origin, tmp_path / "clone")
    dv_ok("install", cwd=work)
    git("checkout", "--quiet", "-b", "evil", cwd=origin)
    commit_pointer(origin, ".git")
    git("fetch", "--quiet", "origin", cwd=work)
    hooks = tree_state(work / ".git/hooks")
    config = (work / ".git/config").read_bytes()
    p = git("checkout", "--detach", "origin/evil", cwd=work, check=False)  # the hook runs `dataver checkout`
    assert ".git.dv" in p.stderr and "git's own folder" in p.stderr, p.stderr
    assert tree_state(work / ".git/hooks") == hooks
    assert (work / ".git/config").read_bytes() == config
    assert not any(name in FILES for name in os.listdir(work / ".git"))
    assert not (work / ".git/a.txt").exists() and not (work / ".git/run.sh").exists()
    assert_git_works(work)


def test_dataver_temporaries_are_cleaned_by_checkout_and_not_reported(origin, tmp_path):
    """What a killed checkout leaves (a temporary beside a file, inside a folder, of a
    pointer or .gitignore) is removed by the next checkout; a user's look-alike stays."""
    work = ready_clone(origin, tmp_path / "clone")
    leftovers = [
        work / "data/.a.txt.dataver-tmp-0123abcd",
        work / "data/sub/.b.txt.dataver-tmp-89abcdef",
        work / ".data.dv.dataver-tmp-00112233",
        work / "..gitignore.dataver-tmp-deadbeef",
    ]
    for p in leftovers:
        write(p, b"half a file")
    users = [work / "data/.notes.dataver-tmp-mine", work / ".other.dataver-tmp-0123abcd"]
    for p in users:
        write(p, b"mine")
    reported = dv("status", cwd=work).out
    assert "data/.notes.dataver-tmp-mine" in reported and "dataver-tmp-0123abcd" not in reported
    assert "89abcdef" not in reported
    os.unlink(users[0])
    r = dv_ok("checkout", "--json", cwd=work)
    assert '"temporaries": 4' in r.out
    assert not any(p.exists() for p in leftovers)
    assert users[1].read_bytes() == b"mine"
    assert dv_ok("status", cwd=work).out == ""


def test_manifest_entry_with_a_name_no_filesystem_holds_is_refused(origin, tmp_path):
    """Found by the property test: a 300-character name ended in a traceback."""
    hostile_folder(origin, "a/" + "n" * 300)
    work = clone(origin, tmp_path / "clone")
    r = dv("pull", "--force", cwd=work)
    assert_refused(r, PointerError.exit_code, "manifest of evil", "longer than 255 bytes")
    assert not (work / "evil").exists()
