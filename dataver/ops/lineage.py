"""Reading lineage: the chain back from an output, who used some data, what is stale.

``graph`` starts at an output's record and, for every input that was itself produced
by a run, finds the commit whose pointer recorded that input's digest with a lineage
block (walking the git history of the input's pointer file) and goes on from there:
a DAG of nodes ``path@digest``. Nothing here runs a recorded command.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import pointer as pointer_mod
from ..digest import Digest
from ..errors import PathError, PointerError
from ..history import pointers_at, require_git
from ..lineagefmt import Lineage
from ..pointer import Pointer
from ..repo import Repo
from ..workspace import find_tracked, load_tracked, pointer_for

MAX_NODES = 1000


@dataclass
class Node:
    id: str  # path@digest
    path: str
    kind: str  # file, dir, git (a file git tracks), params
    digest: str
    commit: str | None = None  # the commit whose pointer records this version (None: the workspace)
    command: list[str] | None = None  # the run that produced it, if any
    wdir: str | None = None
    run_commit: str | None = None  # the code commit the run saw
    dirty: bool = False
    start: str | None = None
    end: str | None = None
    inputs: list[str] = field(default_factory=list)  # node ids
    note: str = ""


@dataclass
class Graph:
    root: str
    nodes: dict[str, Node]

    def edges(self) -> list[tuple[str, str]]:
        """(input id, output id) pairs."""
        return [(i, n.id) for n in self.nodes.values() for i in n.inputs]


def record_of(repo: Repo, path: str, rev: str | None = None) -> tuple[str, Pointer, Lineage]:
    """``(repo-relative path, pointer, lineage)`` of an output, in the workspace or at ``rev``."""
    rel = repo.rel(repo.resolve(path))
    if rel.endswith(pointer_mod.SUFFIX):
        rel = rel[: -len(pointer_mod.SUFFIX)]
    if rev is None:
        target = os.path.join(repo.root, rel)
        if not os.path.exists(pointer_for(target)):
            raise PathError(f"{rel} is not tracked (no {rel}.dv)", "see dataver ls")
        ptr = load_tracked(repo, pointer_for(target)).pointer
    else:
        ptr = pointers_at(require_git(repo), rev).get(rel)  # type: ignore[assignment]
        if ptr is None:
            raise PathError(f"{rel} was not tracked at {rev}", "see dataver ls --rev REV")
    lin = _applies(ptr, rel)
    if lin is None:
        where = f" at {rev}" if rev else ""
        raise PathError(
            f"{rel}{where} has no lineage record (it was not written by dataver run, or changed since)",
            f"record one: dataver run -i INPUT -o {rel} -- COMMAND",
        )
    return rel, ptr, lin


def graph(repo: Repo, path: str, rev: str | None = None) -> Graph:
    rel, ptr, lin = record_of(repo, path, rev)
    git = require_git(repo)
    start = git.resolve(rev) if rev else None
    root = _node_id(rel, ptr.digest)
    nodes: dict[str, Node] = {}
    todo: list[tuple[Node, Lineage]] = []

    def visit(node: Node, run: Lineage | None) -> None:
        nodes[node.id] = node
        if run is not None:
            todo.append((node, run))

    committed = _in_history(repo, rel, ptr.digest, rev or "HEAD") if git.head_commit() else None
    visit(_produced(rel, ptr, lin, committed[0] if committed else start), lin)
    while todo:
        node, run = todo.pop()
        _fill_run(node, run)
        for item in list(run.inputs) + [_param_item(p) for p in run.params]:
            nid = _node_id(item.path, item.digest)
            node.inputs.append(nid)
            if nid in nodes:
                continue
            if len(nodes) >= MAX_NODES:
                node.note = f"graph cut at {MAX_NODES} nodes"
                break
            if item.kind in ("git", "params"):
                visit(Node(nid, item.path, item.kind, str(item.digest)), None)
                continue
            found = find_producer(repo, item.path, item.digest, node.commit or start)
            if found is None:
                visit(Node(nid, item.path, item.kind, str(item.digest), note="not produced by a recorded run"), None)
            else:
                commit, p, producer = found
                visit(_produced(item.path, p, producer, commit), producer)
    return Graph(root, nodes)


def find_producer(repo: Repo, rel: str, digest: Digest, rev: str | None) -> tuple[str | None, Pointer, Lineage] | None:
    """The commit (None: the workspace) whose ``rel.dv`` first recorded ``digest`` with a
    lineage block, searching the workspace (when ``rev`` is None) then the history of
    ``rev`` or HEAD; None if no record produced that version."""
    if rev is None:
        target = os.path.join(repo.root, rel)
        if os.path.exists(pointer_for(target)):
            try:
                ptr = load_tracked(repo, pointer_for(target)).pointer
            except PointerError:
                ptr = None
            if ptr is not None and ptr.digest == digest:
                lin = _applies(ptr, rel)
                if lin is not None:
                    found = _in_history(repo, rel, digest, "HEAD") if require_git(repo).head_commit() else None
                    return (found[0], found[1], found[2]) if found else (None, ptr, lin)
    git = require_git(repo)
    if git.head_commit() is None and rev is None:
        return None
    return _in_history(repo, rel, digest, rev or "HEAD")


def _in_history(repo: Repo, rel: str, digest: Digest, rev: str) -> tuple[str, Pointer, Lineage] | None:
    """The oldest commit of the newest run of commits where ``rel.dv`` holds ``digest``
    with an applicable block (where that version was committed)."""
    best = None
    for commit, data in require_git(repo).path_history(rev, rel + pointer_mod.SUFFIX):
        ptr = _parse(data, f"{rel}.dv at {commit[:10]}")
        if ptr is not None and ptr.digest == digest:
            lin = _applies(ptr, rel)
            if lin is not None:
                best = (commit, ptr, lin)
                continue
        if best is not None:
            break
    return best


def used_by(repo: Repo, path: str, rev: str | None = None) -> list[dict]:
    """Outputs (in the workspace pointers, or at ``rev``) whose record names ``path``, a
    path inside it, or a folder holding it, as an input or params file."""
    rel = repo.rel(repo.resolve(path)).rstrip("/")
    if rel.endswith(pointer_mod.SUFFIX):
        rel = rel[: -len(pointer_mod.SUFFIX)]
    out = []
    for out_rel, ptr in _pointers(repo, rev):
        lin = _applies(ptr, out_rel)
        if lin is None:
            continue
        for item in list(lin.inputs) + [_param_item(p) for p in lin.params]:
            if item.path == rel or item.path.startswith(rel + "/") or rel.startswith(item.path + "/"):
                out.append(
                    {
                        "output": out_rel,
                        "output_digest": str(ptr.digest),
                        "input": item.path,
                        "input_digest": str(item.digest),
                        "command": list(lin.cmd),
                        "start": lin.start,
                    }
                )
    return out


@dataclass
class Stale:
    path: str
    reasons: list[str]


def stale(repo: Repo, changed: set[str] | None = None) -> list[Stale]:
    """Outputs in the workspace whose recorded inputs, params or code differ now.
    ``changed``: repo-relative files status found modified (data not yet re-added)."""
    git = repo.git
    code_now: dict[str, bytes | None] = {}
    out = []
    for t in find_tracked(repo):
        lin = _applies(t.pointer, t.rel)
        if lin is None:
            continue
        reasons = []
        for item in lin.inputs:
            now = _current(repo, item.path, item.kind, item.digest.algorithm)
            dirty = any(c == item.path or c.startswith(item.path + "/") for c in changed or ())
            if now != item.digest or dirty:
                reasons.append(f"{item.path}{'/' if item.kind == 'dir' else ''} changed")
        for p in lin.params:
            if _current(repo, p.path, "git", p.digest.algorithm) != p.digest:
                reasons.append(f"{p.path} changed")
        if git is not None and lin.code.commit is not None:
            if lin.code.commit not in code_now:
                code_now[lin.code.commit] = _diff_or_none(git, lin.code.commit)
            now_diff = code_now[lin.code.commit]
            if now_diff is None:
                reasons.append(f"code commit {lin.code.commit[:10]} is not in this repository")
            elif not _same_code(repo, lin, now_diff):
                reasons.append(f"code changed since {lin.code.commit[:10]}{' (dirty)' if lin.code.dirty else ''}")
        if reasons:
            out.append(Stale(t.rel, reasons))
    return out


def to_dot(g: Graph) -> str:
    """The graph in Graphviz DOT: outputs of runs as boxes (label: path, digest, command,
    commit), other inputs as ellipses (git-tracked files dashed)."""
    lines = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=10];']
    for n in g.nodes.values():
        label = [n.path, n.digest.split(":")[-1][:12]]
        if n.command is not None:
            label.append("$ " + " ".join(n.command)[:80])
            label.append(f"commit {n.commit[:10]}" if n.commit else "not committed")
        shape = "box" if n.command is not None else "ellipse"
        style = ', style="bold"' if n.id == g.root else ', style="dashed"' if n.kind in ("git", "params") else ""
        lines.append(f"  {_dot_str(n.id)} [shape={shape}{style}, label={_dot_str(chr(10).join(label))}];")
    for a, b in g.edges():
        lines.append(f"  {_dot_str(a)} -> {_dot_str(b)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- helpers --------------------------------------------------------------------------------
def _applies(ptr: Pointer, rel: str) -> Lineage | None:
    lin = ptr.lineage
    return lin if lin is not None and lin.output_for(rel, ptr.digest) is not None else None


def _parse(data: bytes | None, source: str) -> Pointer | None:
    if data is None or not pointer_mod.reads_like_pointer(data):
        return None
    try:
        return pointer_mod.loads(data, source)
    except PointerError:
        return None  # a broken version in the history: not this one's record


def _produced(rel: str, ptr: Pointer, lin: Lineage, commit: str | None) -> Node:
    return Node(_node_id(rel, ptr.digest), rel, ptr.kind, str(ptr.digest), commit=commit)


def _fill_run(node: Node, lin: Lineage) -> None:
    node.command, node.wdir, node.run_commit = list(lin.cmd), lin.wdir, lin.code.commit
    node.dirty, node.start, node.end = lin.code.dirty, lin.start, lin.end


def _param_item(p):
    from ..lineagefmt import Item

    return Item(p.path, "params", p.digest)


def _node_id(path: str, digest: Digest) -> str:
    return f"{path}@{digest.hex[:12]}"


def _pointers(repo: Repo, rev: str | None) -> list[tuple[str, Pointer]]:
    if rev is not None:
        return sorted(pointers_at(require_git(repo), rev).items())
    return [(t.rel, t.pointer) for t in find_tracked(repo)]


def _current(repo: Repo, rel: str, kind: str, algorithm: str | None = None) -> Digest | None:
    """What an input is now: its pointer's digest (dataver data), or its bytes' (git files)."""
    path = os.path.join(repo.root, rel)
    if kind in ("file", "dir"):
        try:
            return load_tracked(repo, pointer_for(path)).pointer.digest
        except (OSError, PointerError, PathError):
            return None
    if not os.path.exists(path):
        return None
    from .run import digest_of

    return digest_of(repo, path, algorithm)


def _diff_or_none(git, commit: str) -> bytes | None:
    from ..errors import RepoError

    try:
        return git.diff_text(commit)
    except RepoError:
        return None


def _same_code(repo: Repo, lin: Lineage, now_diff: bytes) -> bool:
    """Do the git-tracked files equal the recorded commit plus its recorded diff?"""
    if lin.code.diff is None:
        return not now_diff
    from ..hashing import digest_bytes

    return digest_bytes(now_diff, algorithm=lin.code.diff.digest.algorithm) == lin.code.diff.digest


def _dot_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
