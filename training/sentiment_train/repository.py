"""Writing a model into the next version of a sentiment-server model repository, atomically.

The server (docs/model-repository.md) serves `<repo>/<name>/<N>/` for numeric N without
leading zeros, passes over hidden entries and names ending in `.tmp`, and loads a new version
directory when a scan finds it. So a version is written into `<repo>/<name>/.<N>.tmp` and
renamed to `<N>` once every file is on disk: the server sees nothing or the whole version.
Trainers of the same model take turns through a lock file (`<name>/.train.lock`), so two runs
never pick the same N.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
VERSION = re.compile(r"^[1-9][0-9]{0,18}$")
# What the server needs to serve a version (docs/model-repository.md).
REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")


class RepositoryError(RuntimeError):
    """The repository cannot take a new version; the message says what to do."""


def check_name(name: str) -> str:
    if not NAME.match(name) or ".." in name or name.endswith((".tmp", ".partial", ".part", ".incomplete")):
        raise RepositoryError(
            f"`{name}` is not a model name the server serves: [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}, "
            "no `..`, no .tmp/.partial/.part/.incomplete ending"
        )
    return name


def versions(model_dir: Path) -> list[int]:
    """The version directories of a model, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(e.name) for e in model_dir.iterdir() if VERSION.match(e.name) and e.is_dir())


def model_dir(repository: Path, name: str) -> Path:
    """`<repository>/<name>`, made when missing; refused when it holds a flat model (the server
    serves no version directory beside a config.json)."""
    check_name(name)
    if not repository.is_dir():
        raise RepositoryError(f"{repository} is not a directory: mount the model repository there")
    target = repository / name
    if (target / "config.json").exists():
        raise RepositoryError(
            f"{target} holds a model directly (config.json): versions cannot go beside it. "
            f"Move it into {target}/1 first (the server then serves it as version 1)"
        )
    if not target.exists():
        try:
            target.mkdir(mode=0o755)
            os.chmod(target, 0o755)  # whatever the umask: the server's user reads it
        except PermissionError:
            raise RepositoryError(
                f"cannot create {target} as UID {os.getuid()}: make {repository} writable by that "
                "user, or create the model's directory owned by it; or run the trainer as the owner "
                "(compose: TRAIN_USER=$(id -u):$(id -g); docker run: --user)"
            ) from None
    if not os.access(target, os.W_OK | os.X_OK):
        raise RepositoryError(
            f"cannot write into {target} as UID {os.getuid()}: make it writable by that user "
            f"(chown {os.getuid()} on the host), or run the trainer as the directory's owner "
            "(compose: TRAIN_USER=$(id -u):$(id -g); docker run: --user)"
        )
    return target


@contextmanager
def locked(target: Path):
    """Holds `<target>/.train.lock` exclusively (other trainers of this model wait)."""
    with open(target / ".train.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fsync_tree(path: Path) -> None:
    for entry in sorted(path.rglob("*")):
        if entry.is_file():
            with open(entry, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Staged:
    """A version being written: `.<N>.tmp` under the model's directory, published by `publish`."""

    def __init__(self, target: Path, version: int):
        self.target = target
        self.version = version
        self.dir = target / f".{version}.tmp"
        self.final = target / str(version)

    def publish(self) -> Path:
        missing = [f for f in REQUIRED if not (self.dir / f).is_file()]
        if missing:
            raise RepositoryError(f"{self.dir} lacks {', '.join(missing)}: not published")
        # Readable by the server's user whatever this process' umask.
        for entry in self.dir.rglob("*"):
            os.chmod(entry, 0o755 if entry.is_dir() else 0o644)
        os.chmod(self.dir, 0o755)
        _fsync_tree(self.dir)
        if self.final.exists():
            raise RepositoryError(f"{self.final} appeared while writing; left {self.dir} in place")
        os.rename(self.dir, self.final)
        fd = os.open(self.target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def stage_next(target: Path) -> Staged:
    """The next version of the model in `target` (one above the highest; 1 for a new model), its
    staging directory made empty. Call with the lock held."""
    existing = versions(target)
    staged = Staged(target, (existing[-1] + 1) if existing else 1)
    if staged.dir.exists():
        # Left by a run that died before its rename (the lock says no run is writing it now).
        shutil.rmtree(staged.dir)
    staged.dir.mkdir(mode=0o755)
    return staged
