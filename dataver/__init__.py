"""dataver: content-addressed data and model versioning beside git.

The Python API is ``dataver.api`` (``open``, ``read``, ``get_path``, ``view``,
``lineage``, ``record``) and the ``dataver://`` fsspec filesystem. Everything it raises
for a user's mistake or a bad input is a ``DataverError``; catch the family you can
handle. The tree (exit code of the CLI in brackets, ``dataver.errors.EXIT_CODES``)::

    DataverError            [1]  root: .message, .hint (what to do next)
    ├── CheckFailed         [1]  a check ran and found differences (verify)
    ├── UsageError          [2]  options or arguments that cannot go together
    ├── RepoError           [3]  not in a repository, or its configuration is invalid
    │   └── ConfigError     [3]  a configuration key or value is not valid
    ├── PathError           [4]  a path cannot be used (outside the repo, missing, ...)
    │   ├── UnreadableFile  [4]  a file could not be read
    │   └── SymlinkLoop     [4]  a symbolic link cycle inside a folder
    ├── PointerError        [5]  a malformed or hostile pointer file or manifest
    ├── WouldLoseData       [6]  refused: unsaved workspace changes would be lost
    ├── ObjectsMissing      [7]  objects in neither the cache nor the remote
    ├── IntegrityError      [8]  bytes do not match their digest
    │   └── FileChanged     [8]  a file changed while it was hashed
    ├── RemoteError         [9]  a remote cannot be reached or used
    ├── LockTimeout         [10] another process holds the lock
    ├── StorageError        [11] cannot write (disk full, permissions, read-only)
    └── CommandFailed       [its own] a command under ``dataver run`` failed
"""

from .errors import (
    CheckFailed,
    CommandFailed,
    ConfigError,
    DataverError,
    FileChanged,
    IntegrityError,
    LockTimeout,
    ObjectsMissing,
    PathError,
    PointerError,
    RemoteError,
    RepoError,
    StorageError,
    SymlinkLoop,
    UnreadableFile,
    UsageError,
    WouldLoseData,
)

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "CheckFailed",
    "CommandFailed",
    "ConfigError",
    "DataverError",
    "FileChanged",
    "IntegrityError",
    "LockTimeout",
    "ObjectsMissing",
    "PathError",
    "PointerError",
    "RemoteError",
    "RepoError",
    "StorageError",
    "SymlinkLoop",
    "UnreadableFile",
    "UsageError",
    "WouldLoseData",
]
