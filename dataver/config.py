"""Repository configuration: ``.dataver/config`` (committed) and ``config.local``.

INI files read with configparser; keys are ``section.option``. ``config.local`` is
git-ignored and overrides the shared file (machine paths, credentials later).
"""

from __future__ import annotations

import configparser
import os

from .errors import ConfigError

KNOWN_KEYS = {
    "cache.dir": "where objects are stored; relative paths are relative to .dataver/",
    "cache.link": "ordered link types to try: reflink, hardlink, symlink, copy",
    "core.jobs": "worker threads for hashing and copying (default: CPU count)",
    "core.lock_timeout": "seconds to wait for another dataver process (default 60)",
    "core.remote": "the default remote's name (set with dataver remote default NAME)",
    "core.fsmonitor": "ask watchman what changed instead of scanning tracked folders: auto (default), true, false",
    "core.hash": "hash algorithm for new content: xxh3-128 (default) or blake3 (collision resistant)",
}


class Config:
    def __init__(self, dataver_dir: str):
        self.shared_path = os.path.join(dataver_dir, "config")
        self.local_path = os.path.join(dataver_dir, "config.local")
        self._shared = _read(self.shared_path)
        self._local = _read(self.local_path)

    @classmethod
    def from_text(cls, shared: str, local: str = "") -> Config:
        """A read-only config from text (e.g. another repository's committed config)."""
        self = cls.__new__(cls)
        self.shared_path = self.local_path = "<text>"
        self._shared = configparser.ConfigParser(interpolation=None)
        self._local = configparser.ConfigParser(interpolation=None)
        try:
            self._shared.read_string(shared)
            self._local.read_string(local)
        except configparser.Error as e:
            raise ConfigError(f"invalid dataver config: {str(e).splitlines()[0]}") from None
        return self

    def get(self, key: str, default: str | None = None) -> str | None:
        section, option = _split(key)
        for parser in (self._local, self._shared):
            if parser.has_option(section, option):
                return parser.get(section, option)
        return default

    def items(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for parser in (self._shared, self._local):
            for section in parser.sections():
                for option, value in parser.items(section):
                    out[f"{section}.{option}"] = value
        return out

    def set(self, key: str, value: str | None, local: bool = False) -> None:
        """Set (or with ``None`` remove) a known key, writing the file atomically."""
        if key not in KNOWN_KEYS:
            raise ConfigError(f"unknown config key {key!r}", "known keys: " + ", ".join(sorted(KNOWN_KEYS)))
        if value is not None:
            validate(key, value)
        section, option = _split(key)
        self.set_in(section, option, value, local)

    def section(self, section: str) -> dict[str, str] | None:
        """A section's options, config.local overriding; None if neither file has it."""
        found = [p for p in (self._shared, self._local) if p.has_section(section)]
        if not found:
            return None
        out: dict[str, str] = {}
        for parser in found:
            out.update(parser.items(section))
        return out

    def sections(self) -> list[str]:
        return sorted(set(self._shared.sections()) | set(self._local.sections()))

    def get_in(self, section: str, option: str, local: bool) -> str | None:
        """A value from one file only (config.local if ``local``, else the shared one)."""
        parser = self._local if local else self._shared
        return parser.get(section, option) if parser.has_option(section, option) else None

    def set_in(self, section: str, option: str, value: str | None, local: bool = False) -> None:
        """Set or remove ``option`` of ``section`` in one file, atomically."""
        parser, path = (self._local, self.local_path) if local else (self._shared, self.shared_path)
        if value is None:
            if not (parser.has_section(section) and parser.remove_option(section, option)):
                raise ConfigError(f"{section}.{option} is not set in {path}")
        else:
            if not parser.has_section(section):
                parser.add_section(section)
            parser.set(section, option, value)
        self._write(parser, path)

    def remove_section(self, section: str) -> bool:
        """Remove a section from both files; True if it existed anywhere."""
        found = False
        for parser, path in ((self._shared, self.shared_path), (self._local, self.local_path)):
            if parser.remove_section(section):
                found = True
                self._write(parser, path)
        return found

    @staticmethod
    def _write(parser: configparser.ConfigParser, path: str) -> None:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            parser.write(f)
        os.replace(tmp, path)


def validate(key: str, value: str) -> None:
    """Refuse a value that would make later commands fail."""
    if key == "core.jobs" and not (value.isdigit() and int(value) >= 1):
        raise ConfigError(f"core.jobs must be a positive integer, not {value!r}")
    if key == "core.lock_timeout":
        try:
            if float(value) < 0:
                raise ValueError
        except ValueError:
            raise ConfigError(f"core.lock_timeout must be a number of seconds, not {value!r}") from None
    if key == "cache.link":
        from .linking import parse_link_types

        parse_link_types(value)
    if key == "core.fsmonitor" and value.strip().lower() not in ("auto", "true", "false"):
        raise ConfigError(f"core.fsmonitor must be auto, true or false, not {value!r}")
    if key == "core.hash":
        from .digest import ALGORITHMS, known_names

        if value not in ALGORITHMS:
            raise ConfigError(f"core.hash must be one of {known_names()}, not {value!r}")


def _split(key: str) -> tuple[str, str]:
    section, dot, option = key.rpartition(".")
    if not dot or not section or not option:
        raise ConfigError(f"config keys look like section.option, not {key!r}")
    return section, option


def _read(path: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not a valid config file: {str(e).splitlines()[0]}") from None
    return parser


def env_int(name: str, default: int, minimum: int = 0) -> int:
    """A whole number from environment variable ``name`` (the tuning knobs tests use:
    ``DATAVER_REF_BATCH``, ``DATAVER_STREAM_BATCH``...): ``default`` when it is unset,
    not a number, or below ``minimum``."""
    try:
        n = int(os.environ.get(name, ""))
    except ValueError:
        return default
    return n if n >= minimum else default
