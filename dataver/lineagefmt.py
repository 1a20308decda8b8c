"""The ``lineage.*`` block of a pointer file: what produced this output (docs/formats.md).

Each key of the block is an unknown key in the sense of pointer format 1 (older
versions keep it, in order, when they rewrite the pointer) whose value is one line of
JSON. The block names the output's own digest, so a block an older version carried
over onto changed content is recognisably stale (``Lineage.output_for``) rather than
wrong. Blocks arrive through git from strangers: every field is type-checked and
size-limited, every path passes ``safepath.check_relpath``, every digest is validated,
and a bad block is a ``PointerError`` naming the pointer file. Pure: values in, values
out; nothing here runs, opens or fetches anything.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .digest import Digest
from .errors import PointerError
from .safepath import check_relpath

PREFIX = "lineage."
VERSION = 1
INPUT_KINDS = ("file", "dir", "git")  # git: a file git tracks (a script, params.yaml), by its bytes' digest
OUTPUT_KINDS = ("file", "dir")
LOCK_KINDS = ("pip-freeze", "conda-explicit", "python-dists")

MAX_LINE = 32 * 1024  # one value (the whole pointer stays within pointer.MAX_POINTER_BYTES)
MAX_ITEMS = 256  # inputs, outputs, params files: each
MAX_ARGS = 256
MAX_CMD_CHARS = 16 * 1024
MAX_PATH = 4096
MAX_TEXT = 1024  # python version, platform, CPU model, run id
MAX_VARS = 64
MAX_VAR_VALUE = 4096
MAX_KEYS = 64  # chosen params keys per file
MAX_KEY = 256
MAX_PARAM_VALUE = 4096  # one value's JSON
MAX_OBJECT_SIZE = 64 * 1024 * 1024  # a stored diff or package lock

_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_ID = re.compile(r"[0-9a-f]{32}")
_INDEXED = re.compile(r"lineage\.(in|out|param)\.([1-9][0-9]{0,3})")
_SINGLE = ("version", "id", "cmd", "wdir", "start", "end", "exit", "code", "env")


@dataclass(frozen=True)
class Item:
    """An input or output: repo-relative path, kind and digest (a folder's: its manifest's)."""

    path: str
    kind: str
    digest: Digest


@dataclass(frozen=True)
class Param:
    """A parameters file by digest, and the values of the keys the user chose."""

    path: str
    digest: Digest
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stored:
    """Text kept as a cache object (the ``git diff HEAD``, the package lock)."""

    digest: Digest
    size: int


@dataclass(frozen=True)
class Code:
    commit: str | None  # None: the repository had no commit yet
    dirty: bool
    diff: Stored | None  # ``git diff HEAD`` of git-tracked files other than pointers, when dirty


@dataclass(frozen=True)
class Env:
    python: str
    platform: str
    cpu: str
    lock_kind: str | None
    lock: Stored | None
    vars: dict[str, str | None] = field(default_factory=dict)  # None: the variable was unset


@dataclass(frozen=True)
class Lineage:
    id: str
    cmd: tuple[str, ...]
    wdir: str  # repo-relative, "." for the root
    inputs: tuple[Item, ...]
    outputs: tuple[Item, ...]
    params: tuple[Param, ...]
    code: Code
    env: Env
    start: str
    end: str
    exit: int = 0

    def output_for(self, rel: str, digest: Digest) -> Item | None:
        """The output entry for ``rel`` if it records ``digest`` (else the block is stale:
        the content changed after the run, e.g. re-added by a version that kept the block)."""
        return next((o for o in self.outputs if o.path == rel and o.digest == digest), None)

    def stored(self) -> list[Stored]:
        """The cache objects the block refers to (they travel with the output)."""
        return [s for s in (self.code.diff, self.env.lock) if s is not None]


class NewerLineage(Exception):
    """The block's ``lineage.version`` is newer than this dataver's: kept, not read."""


# -- writing ------------------------------------------------------------------------------
def to_items(lin: Lineage) -> list[tuple[str, str]]:
    """The block as pointer ``(key, value)`` lines; ``from_items`` reads them back."""

    def item(i: Item) -> dict[str, Any]:
        return {"path": i.path, "kind": i.kind, "digest": str(i.digest)}

    def stored(s: Stored | None) -> dict[str, Any] | None:
        return None if s is None else {"digest": str(s.digest), "size": s.size}

    out: list[tuple[str, Any]] = [
        ("version", VERSION),
        ("id", lin.id),
        ("cmd", list(lin.cmd)),
        ("wdir", lin.wdir),
        ("start", lin.start),
        ("end", lin.end),
        ("exit", lin.exit),
        ("code", {"commit": lin.code.commit, "dirty": lin.code.dirty, "diff": stored(lin.code.diff)}),
        (
            "env",
            {
                "python": lin.env.python,
                "platform": lin.env.platform,
                "cpu": lin.env.cpu,
                "lock_kind": lin.env.lock_kind,
                "lock": stored(lin.env.lock),
                "vars": lin.env.vars,
            },
        ),
    ]
    out += [(f"in.{n}", item(i)) for n, i in enumerate(lin.inputs, 1)]
    out += [
        (f"param.{n}", {"path": p.path, "digest": str(p.digest), "values": p.values})
        for n, p in enumerate(lin.params, 1)
    ]
    out += [(f"out.{n}", item(o)) for n, o in enumerate(lin.outputs, 1)]
    return [(PREFIX + k, json.dumps(v, ensure_ascii=False, separators=(",", ":"))) for k, v in out]


def check_writable(lin: Lineage) -> None:
    """Raise ``PointerError`` if ``lin`` would not read back (too large, bad path): the
    writer's half of the contract, so nothing is written that readers reject."""
    from_items(to_items(lin), "the lineage record")


# -- reading ------------------------------------------------------------------------------
def has_block(extra: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> bool:
    return any(k.startswith(PREFIX) for k, _ in extra)


def without_block(extra: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in extra if not k.startswith(PREFIX))


def from_items(extra: tuple[tuple[str, str], ...] | list[tuple[str, str]], source: str = "pointer") -> Lineage | None:
    """The block among a pointer's unknown keys, validated; None if there is none.

    Raises ``PointerError`` (naming ``source``) for any malformed or oversized field,
    ``NewerLineage`` for a block of a later ``lineage.version``.
    """
    keys = {k: v for k, v in extra if k.startswith(PREFIX)}
    if not keys:
        return None

    def fail(why: str) -> PointerError:
        return PointerError(
            f"{source}: bad lineage block: {why}",
            "the lineage.* lines were not written by dataver run; restore the file (git checkout -- FILE) "
            "or delete those lines, and tell whoever committed it",
        )

    values: dict[str, Any] = {}
    for key, text in keys.items():
        if len(text) > MAX_LINE:
            raise fail(f"{key} is longer than {MAX_LINE} characters")
        values[key] = _json(key, text, fail)
    version = values.get(PREFIX + "version")
    if version is None:
        raise fail("lineage.version is missing")
    if type(version) is int and version > VERSION:
        raise NewerLineage(f"{source}: lineage block version {version} (this dataver reads {VERSION})")
    if version != VERSION:
        raise fail(f"lineage.version must be {VERSION}, not {str(version)[:20]!r}")
    lists: dict[str, dict[int, Any]] = {"in": {}, "out": {}, "param": {}}
    for key, value in values.items():
        name = key[len(PREFIX) :]
        if name in _SINGLE:
            continue
        m = _INDEXED.fullmatch(key)
        if m is None:
            raise fail(f"unknown key {key[:80]!r}")
        lists[m.group(1)][int(m.group(2))] = value
    for name in _SINGLE:
        if PREFIX + name not in values:
            raise fail(f"{PREFIX + name} is missing")
    for kind, found in lists.items():
        if len(found) > MAX_ITEMS:
            raise fail(f"more than {MAX_ITEMS} lineage.{kind}.N entries")
        if sorted(found) != list(range(1, len(found) + 1)):
            raise fail(f"lineage.{kind}.N must be numbered 1, 2, 3... without gaps")

    def get(name: str) -> Any:
        return values[PREFIX + name]

    run_id = _str(get("id"), "lineage.id", fail, MAX_TEXT)
    if not _ID.fullmatch(run_id):
        raise fail("lineage.id must be 32 lowercase hex digits")
    cmd = get("cmd")
    if not isinstance(cmd, list) or not cmd or len(cmd) > MAX_ARGS:
        raise fail(f"lineage.cmd must be a list of 1 to {MAX_ARGS} strings")
    for arg in cmd:
        _str(arg, "an argument of lineage.cmd", fail, MAX_CMD_CHARS, allow_empty=True)
    if sum(len(a) for a in cmd) > MAX_CMD_CHARS:
        raise fail(f"lineage.cmd is longer than {MAX_CMD_CHARS} characters")
    wdir = _str(get("wdir"), "lineage.wdir", fail, MAX_PATH)
    if wdir != ".":
        _path(wdir, "lineage.wdir", source)
    start, end = (_time(get(k), f"lineage.{k}", fail) for k in ("start", "end"))
    exit_code = get("exit")
    if type(exit_code) is not int or not -255 <= exit_code <= 255:
        raise fail("lineage.exit must be an integer from -255 to 255")
    inputs = tuple(_item(lists["in"][n], f"lineage.in.{n}", INPUT_KINDS, fail, source) for n in sorted(lists["in"]))
    outputs = tuple(
        _item(lists["out"][n], f"lineage.out.{n}", OUTPUT_KINDS, fail, source) for n in sorted(lists["out"])
    )
    if not outputs:
        raise fail("no lineage.out.N entry")
    params = tuple(_param(lists["param"][n], f"lineage.param.{n}", fail, source) for n in sorted(lists["param"]))
    for what, items in (("input", [i.path for i in inputs] + [p.path for p in params]), ("output", outputs)):
        paths = [i if isinstance(i, str) else i.path for i in items]
        if len(set(paths)) != len(paths):
            raise fail(f"an {what} path appears twice")
    return Lineage(
        run_id, tuple(cmd), wdir, inputs, outputs, params, _code(get("code"), fail), _env(get("env"), fail), start, end,
        exit_code,
    )  # fmt: skip


def _json(key: str, text: str, fail: Callable[[str], PointerError]) -> Any:
    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            raise ValueError("a name appears twice in one object")
        return out

    try:
        return json.loads(text, parse_constant=no_constant, object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as e:
        raise fail(f"{key} is not one line of valid JSON ({str(e)[:80]})") from None


def _obj(value: Any, what: str, fail: Callable[[str], PointerError], keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(f"{what} must be a JSON object")
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise fail(f"{what} has an unknown field {unknown[0][:40]!r}")
    missing = [k for k in keys if k not in value]
    if missing:
        raise fail(f"{what} lacks the field {missing[0]!r}")
    return value


def _str(value: Any, what: str, fail: Callable[[str], PointerError], limit: int, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise fail(f"{what} must be a {'' if allow_empty else 'non-empty '}string")
    if len(value) > limit:
        raise fail(f"{what} is longer than {limit} characters")
    if "\0" in value:
        raise fail(f"{what} contains a NUL character")
    return value


def _path(value: Any, what: str, source: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_PATH:
        raise PointerError(f"{source}: bad lineage block: {what} must be a path of at most {MAX_PATH} characters")
    check_relpath(
        value, f"{source}: {what}", "lineage paths are repository-relative; this one was not written by dataver"
    )
    return value


def _digest(value: Any, what: str, fail: Callable[[str], PointerError]) -> Digest:
    if not isinstance(value, str) or len(value) > 200:
        raise fail(f"{what} must be a digest string ALGORITHM:HEX")
    try:
        return Digest.parse(value)
    except PointerError as e:
        raise fail(f"{what}: {e.message}") from None


def _time(value: Any, what: str, fail: Callable[[str], PointerError]) -> str:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise fail(f"{what} must be a UTC time like 2024-06-01T12:00:00.000000Z")
    return value


def _item(value: Any, what: str, kinds: tuple[str, ...], fail, source: str) -> Item:
    obj = _obj(value, what, fail, ("path", "kind", "digest"))
    if obj["kind"] not in kinds:
        raise fail(f"{what}.kind must be one of {', '.join(kinds)}")
    return Item(_path(obj["path"], f"{what}.path", source), obj["kind"], _digest(obj["digest"], f"{what}.digest", fail))


def _param(value: Any, what: str, fail, source: str) -> Param:
    obj = _obj(value, what, fail, ("path", "digest", "values"))
    chosen = obj["values"]
    if not isinstance(chosen, dict) or len(chosen) > MAX_KEYS:
        raise fail(f"{what}.values must be an object of at most {MAX_KEYS} keys")
    for k, v in chosen.items():
        if not k or len(k) > MAX_KEY:
            raise fail(f"{what}.values: a key is empty or longer than {MAX_KEY} characters")
        if len(json.dumps(v)) > MAX_PARAM_VALUE:
            raise fail(f"{what}.values[{k[:40]!r}] is longer than {MAX_PARAM_VALUE} characters")
    return Param(_path(obj["path"], f"{what}.path", source), _digest(obj["digest"], f"{what}.digest", fail), chosen)


def _stored(value: Any, what: str, fail) -> Stored | None:
    if value is None:
        return None
    obj = _obj(value, what, fail, ("digest", "size"))
    size = obj["size"]
    if type(size) is not int or not 0 <= size <= MAX_OBJECT_SIZE:
        raise fail(f"{what}.size must be an integer from 0 to {MAX_OBJECT_SIZE}")
    return Stored(_digest(obj["digest"], f"{what}.digest", fail), size)


def _code(value: Any, fail) -> Code:
    obj = _obj(value, "lineage.code", fail, ("commit", "dirty", "diff"))
    commit = obj["commit"]
    if commit is not None and (not isinstance(commit, str) or not _COMMIT.fullmatch(commit)):
        raise fail("lineage.code.commit must be a full commit id (40 or 64 lowercase hex digits) or null")
    if not isinstance(obj["dirty"], bool):
        raise fail("lineage.code.dirty must be true or false")
    return Code(commit, obj["dirty"], _stored(obj["diff"], "lineage.code.diff", fail))


def _env(value: Any, fail) -> Env:
    obj = _obj(value, "lineage.env", fail, ("python", "platform", "cpu", "lock_kind", "lock", "vars"))
    texts = [_str(obj[k], f"lineage.env.{k}", fail, MAX_TEXT, allow_empty=True) for k in ("python", "platform", "cpu")]
    lock_kind = obj["lock_kind"]
    if lock_kind is not None and lock_kind not in LOCK_KINDS:
        raise fail(f"lineage.env.lock_kind must be one of {', '.join(LOCK_KINDS)} or null")
    env_vars = obj["vars"]
    if not isinstance(env_vars, dict) or len(env_vars) > MAX_VARS:
        raise fail(f"lineage.env.vars must be an object of at most {MAX_VARS} variables")
    for name, v in env_vars.items():
        if not _VAR.fullmatch(name):
            raise fail(f"lineage.env.vars: {name[:40]!r} is not an environment variable name")
        if v is not None:
            _str(v, f"lineage.env.vars.{name}", fail, MAX_VAR_VALUE, allow_empty=True)
    return Env(*texts, lock_kind, _stored(obj["lock"], "lineage.env.lock", fail), env_vars)
