"""Putting a finished repo in place without ever losing the one that was there.

A conversion writes into a staging directory beside the destination (same filesystem), named after the process
that owns it, so that a concurrent run never deletes another's live staging. The finished repo is published in one
atomic step: a rename where nothing is there yet, or, where a repo is being replaced, an exchange of the two
directories (`renameat2(RENAME_EXCHANGE)`), after which the old repo sits in the staging name and is removed. Where
the exchange is not available the replacement is two renames; a repo stranded between them by a kill is restored by
the next run before anything else.

`--out` that is a symbolic link is followed: the directory it points to is replaced and the link kept. `--out` that
is a regular file is refused.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_STAGING = re.compile(r"^\.(?P<name>.+)\.partial-(?P<pid>\d+)-[^.]+(?P<old>\.old)?$")


class PublishError(RuntimeError):
    """The destination cannot take the repo; the message names the path."""


def destination(output_dir: Path) -> Path:
    """Where the repo really goes (`output_dir`, or the directory it links to), after restoring a repo that a killed
    run left stranded there: whether something is there must be answered on the repaired state."""
    target = output_dir.resolve() if output_dir.is_symlink() else output_dir
    if target.exists() and not target.is_dir():
        raise PublishError(f"{output_dir} is a file, not a repo directory; remove it or choose another --out")
    if target.parent.is_dir():
        _recover(target)
    return target


@contextmanager
def staging_dir(target: Path, needed_bytes: int) -> Iterator[Path]:
    """A fresh staging directory beside `target`, after checking that the parent is writable and has room and after
    cleaning up what killed runs left there; removed on the way out whatever happens."""
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PublishError(f"{parent}: cannot create the output folder ({error.strerror})") from None
    free = shutil.disk_usage(parent).free
    if free < needed_bytes:
        raise PublishError(f"{parent}: {free / 2**20:,.0f} MiB free, the repo needs about {needed_bytes / 2**20:,.0f} "
                           f"MiB; free some space or choose another --out")
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-", dir=parent))
    except OSError as error:
        raise PublishError(f"{parent}: cannot write there ({error.strerror}); choose another --out") from None
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, target: Path, overwrite: bool) -> None:
    """Move the finished repo into place, with the permissions the umask gives new files; an existing repo is
    replaced (only with `overwrite`) in one atomic exchange."""
    _apply_umask(staging)
    if not target.exists():
        try:
            staging.rename(target)
        except OSError as error:
            raise PublishError(f"{target} appeared during the conversion; not replacing it ({error.strerror})") from None
        return
    if not overwrite:
        raise PublishError(f"{target} appeared during the conversion; not replacing it")
    if _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # the old repo, now under the staging name
        return
    retired = staging.with_name(staging.name + ".old")
    target.rename(retired)
    staging.rename(target)  # a kill between these two renames is repaired by `_recover`
    shutil.rmtree(retired, ignore_errors=True)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two directories atomically (Linux renameat2); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise PublishError(f"{second}: cannot replace it ({os.strerror(code)})")


def _recover(target: Path) -> None:
    """Before a run: restore a repo stranded by a kill between the two renames of a replacement, and remove the
    staging directories of runs that are gone (never those of a live run)."""
    stale = []
    for path in target.parent.glob(f".{target.name}.partial-*"):
        match = _STAGING.match(path.name)
        if match and _alive(int(match["pid"])):
            continue
        if match and match["old"] and not target.exists():
            path.rename(target)
            continue
        stale.append(path)
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _apply_umask(directory: Path) -> None:
    """Temporary directories are private (0700); a published repo is as readable as any file the user creates."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for path in directory.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
