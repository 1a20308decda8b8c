"""``run``: run a command and record in each output's pointer what produced it.

Order: the inputs are checked (added if new or changed) under the repository lock;
the code (commit, ``git diff HEAD``) and environment are captured; the command runs
with no lock held; if it exits 0, the inputs are checked again, the diff and package
lock are stored as cache objects, the outputs are added, and only then is each output's
pointer rewritten, atomically, with the ``lineage`` block (``lineagefmt``). A command
that fails, or a kill at any point, records nothing: each pointer is either as it was,
or its new content without a block, or its new content with the whole block.
``record_outputs`` is the second half alone, shared with ``dataver.api.record``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from .. import environment, pointer
from ..digest import Digest
from ..errors import CommandFailed, PathError, RepoError
from ..fsutil import atomic_write
from ..hashing import digest_bytes
from ..history import require_git
from ..lineagefmt import MAX_VARS, Code, Env, Item, Lineage, Param, Stored, check_writable
from ..repo import Repo
from ..store import ObjRef
from ..workspace import UNCHANGED, find_tracked, pointer_for
from ..workspace import status as workspace_status
from .add import Added, add

_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


@dataclass
class Context:
    """What a run saw before its command started: code, environment, inputs, params."""

    inputs: list[Item]
    params: list[Param]
    code: Code
    diff_text: bytes | None
    env: environment.Captured
    wdir: str
    added: list[Added]  # inputs dataver added (new, or changed since their pointer)
    check_inputs: bool = True  # check again after the command that the inputs did not change


@dataclass
class RunResult:
    lineage: Lineage
    outputs: list[Added]
    added_inputs: list[Added]
    seconds: float
    mlflow_run: str | None = None  # the MLflow run the inputs were logged to


def run(
    repo: Repo,
    argv: list[str],
    inputs: list[str],
    outputs: list[str],
    params: list[str] | None = None,
    env_vars: list[str] | None = None,
    on_wait: Callable[[str], None] | None = None,
    cwd: str | None = None,
) -> RunResult:
    """Run ``argv`` in ``cwd`` (default: the current folder) and record its lineage."""
    if not argv:
        raise PathError("no command given", "put it after --: dataver run -i IN -o OUT -- python train.py")
    cwd = os.path.abspath(cwd or os.getcwd())
    check_paths(repo, inputs, outputs, params or [])
    with repo.lock(on_wait):
        ctx = prepare(repo, inputs, params or [], env_vars or [], cwd)
    provisional = _lineage(repo, ctx, argv, [_placeholder(repo, o) for o in outputs], now(), now())
    check_writable(provisional)  # a record too large to write fails before the command runs
    start, t0 = now(), time.monotonic()
    code = _execute(argv, cwd)
    end, seconds = now(), time.monotonic() - t0
    if code != 0:
        why = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise CommandFailed(
            f"the command {why}; nothing recorded (outputs' pointers are as they were)",
            128 - code if code < 0 else code,
            "fix the command and run again; dataver checkout OUTPUT restores a recorded output",
        )
    with repo.lock(on_wait):
        lin, added = record_outputs(repo, ctx, argv, outputs, start, end)
    from .. import mlflowlog

    return RunResult(lin, added, ctx.added, seconds, mlflowlog.log(lin, repo.root))


def check_paths(repo: Repo, inputs: list[str], outputs: list[str], params: list[str]) -> None:
    if not outputs:
        raise PathError("no output given", "name what the command writes: -o model.bin")
    ins = {repo.rel(repo.resolve(p)): p for p in inputs + [_param_path(s) for s in params]}
    outs = {repo.rel(repo.resolve(p)): p for p in outputs}
    for o, user in outs.items():
        for i in ins:
            if o == i or i.startswith(o + "/") or o.startswith(i + "/"):
                raise PathError(
                    f"{user} is both an output and (part of) the input {i}", "a run cannot overwrite its input"
                )


def prepare(repo: Repo, inputs: list[str], params: list[str], env_vars: list[str], cwd: str) -> Context:
    """Check or add the inputs, read the params, capture code and environment."""
    git = require_git(repo)
    if len(env_vars) > MAX_VARS or any(not _VAR.fullmatch(v) for v in env_vars):
        raise PathError(f"--env takes up to {MAX_VARS} variable names (letters, digits, _), not {env_vars!r}")
    wdir = os.path.relpath(cwd, repo.root).replace(os.sep, "/")
    if wdir.startswith(".."):
        raise PathError(f"the current folder {cwd} is outside the repository", f"cd into {repo.root}")
    items, added = resolve_inputs(repo, inputs)
    commit = git.head_commit()
    diff_text = git.diff_text() if commit else None
    dirty = bool(diff_text) if commit else True
    code = Code(commit, dirty, _stored(repo, diff_text))
    return Context(
        items,
        [read_param(repo, s) for s in params],
        code,
        diff_text or None,
        environment.capture(env_vars, wait=False),
        wdir,
        added,
    )


def resolve_inputs(repo: Repo, user_paths: list[str]) -> tuple[list[Item], list[Added]]:
    """Each input as recorded: a dataver-tracked path by its pointer (added first when
    new or changed), a path git tracks by the digest of its bytes."""
    git_items: dict[str, Item] = {}
    to_add: list[str] = []
    order: list[str] = []
    for p in user_paths:
        path = repo.resolve(p)
        rel = repo.rel(path)
        if not os.path.exists(path):
            raise PathError(f"input {p} does not exist")
        order.append(rel)
        if not os.path.exists(pointer_for(path)) and repo.git is not None and repo.git.tracked_under(rel):
            git_items[rel] = Item(rel, "git", digest_of(repo, path))
        else:
            to_add.append(p)
    added = add(repo, to_add) if to_add else []
    by_rel = {a.path: Item(a.path, a.kind, _pointer_digest(repo, a.path)) for a in added}
    out = [git_items.get(rel) or by_rel[rel] for rel in order]
    return out, [a for a in added if a.changed]


def read_param(repo: Repo, spec: str) -> Param:
    """``params.yaml`` or ``params.yaml:seed,train.lr``: the file's digest and the chosen
    keys' values (YAML, JSON or TOML; dotted keys reach into nested tables)."""
    path_text = _param_path(spec)
    keys = [k for k in spec[len(path_text) + 1 :].split(",") if k] if len(spec) > len(path_text) else []
    path = repo.resolve(path_text)
    if not os.path.isfile(path):
        raise PathError(f"params file {path_text} does not exist (or is not a file)")
    values: dict[str, Any] = {}
    if keys:
        doc = _load_params(path, path_text)
        for key in keys:
            node: Any = doc
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    raise PathError(
                        f"{path_text} has no key {key!r}", "name keys as they appear, nested with dots: a.b"
                    )
                node = node[part]
            values[key] = json.loads(json.dumps(node, default=str))
    return Param(repo.rel(path), digest_of(repo, path), values)


def record_outputs(
    repo: Repo, ctx: Context, argv: list[str], outputs: list[str], start: str, end: str
) -> tuple[Lineage, list[Added]]:
    """Check the inputs did not change, store the diff and package lock, add the
    outputs, then write each output's pointer with the block (caller holds the lock)."""
    ctx.env.finish()
    if ctx.check_inputs:
        _check_inputs_unchanged(repo, ctx)
    for p in outputs:
        if not os.path.exists(repo.resolve(p)):
            raise PathError(f"the command did not write the output {p}; nothing recorded")
    for text in (ctx.diff_text, (ctx.env.lock_text or "").encode() or None):
        if text is not None:
            d = digest_bytes(text, algorithm=repo.hash_algorithm)
            if not repo.cache.has_blob(d):
                repo.cache.put_bytes(ObjRef(d), text)
    added = add(repo, outputs)
    outs = [Item(a.path, a.kind, _pointer_digest(repo, a.path)) for a in added]
    lin = _lineage(repo, ctx, argv, outs, start, end)
    check_writable(lin)
    for a in added:
        target = os.path.join(repo.root, a.path)
        ptr = pointer.loads(_read(pointer_for(target)), f"{a.path}.dv")
        atomic_write(pointer_for(target), pointer.dumps(ptr.with_lineage(lin)))
    return lin, added


def _check_inputs_unchanged(repo: Repo, ctx: Context) -> None:
    tracked = [i.path for i in ctx.inputs if i.kind != "git"]
    for r in (
        workspace_status(repo, find_tracked(repo, [os.path.join(repo.root, p) for p in tracked])) if tracked else []
    ):
        if r.state != UNCHANGED:
            raise PathError(
                f"the input {r.path} changed while the command ran ({r.state}); nothing recorded", "run again"
            )
    for i in [i for i in ctx.inputs if i.kind == "git"] + list(ctx.params):
        if digest_of(repo, os.path.join(repo.root, i.path)) != i.digest:
            raise PathError(f"the input {i.path} changed while the command ran; nothing recorded", "run again")


def _lineage(repo: Repo, ctx: Context, argv: list[str], outs: list[Item], start: str, end: str) -> Lineage:
    e = ctx.env
    lock = (e.lock_text or "").encode()
    env = Env(e.python, e.platform, e.cpu[:1024], e.lock_kind, _stored(repo, lock or None), e.vars)
    return Lineage(
        uuid.uuid4().hex, tuple(argv), ctx.wdir, tuple(ctx.inputs), tuple(outs), tuple(ctx.params), ctx.code, env,
        start, end,
    )  # fmt: skip


def _execute(argv: list[str], cwd: str) -> int:
    try:
        proc = subprocess.Popen(argv, cwd=cwd)
    except FileNotFoundError:
        raise CommandFailed(f"command not found: {argv[0]}; nothing recorded", 127) from None
    except PermissionError:
        raise CommandFailed(f"cannot execute {argv[0]} (permission denied); nothing recorded", 126) from None
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait()
        raise


def _stored(repo: Repo, data: bytes | None) -> Stored | None:
    return None if not data else Stored(digest_bytes(data, algorithm=repo.hash_algorithm), len(data))


def digest_of(repo: Repo, path: str, algorithm: str | None = None) -> Digest:
    """The digest a pointer would record for ``path`` now (a folder's: its manifest's)."""
    from .core import hash_path

    algorithm = algorithm or repo.hash_algorithm
    return Digest(algorithm, hash_path(path, repo.jobs, algorithm=algorithm).digest)


def _pointer_digest(repo: Repo, rel: str) -> Digest:
    return pointer.loads(_read(os.path.join(repo.root, rel + pointer.SUFFIX)), f"{rel}.dv").digest


def _placeholder(repo: Repo, user_path: str) -> Item:
    hex_len = 32 if repo.hash_algorithm == "xxh3-128" else 64
    return Item(repo.rel(repo.resolve(user_path)), "file", Digest(repo.hash_algorithm, "0" * hex_len))


def _param_path(spec: str) -> str:
    """The file part of ``FILE[:key,key]`` (a file whose name holds ':' is taken whole)."""
    if ":" not in spec or os.path.exists(spec):
        return spec
    return spec.rsplit(":", 1)[0]


def _load_params(path: str, display: str) -> Any:
    data = _read(path)
    try:
        if path.endswith(".json"):
            return json.loads(data)
        if path.endswith(".toml"):
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise RepoError(f"reading keys from {display} needs Python 3.11 or newer") from None
            return tomllib.loads(data.decode())
        try:
            import yaml
        except ImportError:
            raise RepoError(f"reading keys from {display} needs PyYAML", "pip install pyyaml") from None
        return yaml.safe_load(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise PathError(f"{display} cannot be parsed: {str(e)[:200]}") from None
    except Exception as e:  # yaml.YAMLError (no common base with the others)
        raise PathError(f"{display} cannot be parsed: {str(e)[:200]}") from None


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def now() -> str:
    """The time now, UTC, as the lineage block records it."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
