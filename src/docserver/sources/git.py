"""Fetching a git repository with the git CLI: shallow, into a cache folder kept between refreshes.

Each repository URL gets its own folder under the cache. A fetch takes one
commit (`--depth 1`) and checks it out; the commits fetched before stay in the
folder's object store, so the files that changed since the last ingested
commit come from `git diff` without fetching history. Two processes
refreshing the same repository take turns on a lock file beside its folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from docserver.errors import DocserverError

FETCH_TIMEOUT_SECONDS = 300.0
FETCH_RESULTS = ("ok", "not_found", "unreachable", "failed")
"""The closed set of `result` values of `docserver_fetch_requests_total{kind="git"}`."""

_NON_INTERACTIVE = (
    # A private repository fails at once instead of asking for a password or a host key:
    # `true` as the password program answers nothing, and ssh runs in batch mode.
    "-c",
    "core.askPass=true",
    "-c",
    "core.sshCommand=ssh -o BatchMode=yes",
)


class GitFetchError(DocserverError):
    """A fetch failed; `result` says how, from FETCH_RESULTS."""

    def __init__(self, message: str, result: str) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True, slots=True)
class Checkout:
    folder: Path
    commit: str


class GitRepositories:
    """The cache of fetched repositories, and the git commands run on them."""

    def __init__(self, cache: Path, on_fetch: Callable[[str], None] | None = None) -> None:
        self.cache = cache
        self._on_fetch = on_fetch
        """Called with the result of every fetch (from FETCH_RESULTS), for the fetch metric."""

    def fetch(self, url: str, ref: str | None) -> Checkout:
        """Fetch `ref` (the remote's default branch when None) of `url` and check it out. Blocking."""
        folder = self.cache / hashlib.sha256(url.encode()).hexdigest()[:16]
        self.cache.mkdir(parents=True, exist_ok=True)
        with open(f"{folder}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                checkout = self._fetch_locked(folder, url, ref)
            except GitFetchError as exc:
                self._count(exc.result)
                raise
            self._count("ok")
            return checkout

    def changed_paths(self, folder: Path, old: str, new: str) -> set[str] | None:
        """Paths changed (added, modified, deleted) between two commits; None when `old` is not in the cache."""
        if _git(folder, "cat-file", "-e", f"{old}^{{commit}}", check=False).returncode != 0:
            return None
        out = _git(folder, "diff", "--name-only", "--no-renames", "-z", old, new).stdout
        return {path for path in out.split("\0") if path}

    def _fetch_locked(self, folder: Path, url: str, ref: str | None) -> Checkout:
        if not (folder / ".git").is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            _git(folder, "init", "-q")
        _git(folder, "config", "remote.origin.url", url)
        fetched = _git(folder, "fetch", "-q", "--depth", "1", "--no-tags", "origin", ref or "HEAD", check=False)
        if fetched.returncode != 0:
            raise _fetch_error(url, ref, fetched.stderr)
        commit = _git(folder, "rev-parse", "FETCH_HEAD").stdout.strip()
        _git(folder, "checkout", "-q", "--force", "--detach", commit)
        _git(folder, "clean", "-q", "-f", "-d", "-x")
        return Checkout(folder, commit)

    def _count(self, result: str) -> None:
        if self._on_fetch is not None:
            self._on_fetch(result)


def _git(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            ["git", *_NON_INTERACTIVE, "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=FETCH_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError as exc:
        raise GitFetchError("git repositories need the git command; install git", "failed") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitFetchError(f"git {args[0]} took longer than {FETCH_TIMEOUT_SECONDS:g} s", "unreachable") from exc
    if check and done.returncode != 0:
        raise GitFetchError(f"git {args[0]} failed: {_reason(done.stderr)}", "failed")
    return done


def _fetch_error(url: str, ref: str | None, stderr: str) -> GitFetchError:
    text = stderr.lower()
    if "couldn't find remote ref" in text or "not our ref" in text or "unadvertised object" in text:
        return GitFetchError(f"ref not found in {url}: {ref}", "not_found")
    if "not found" in text or "does not appear to be a git repository" in text or "no such" in text:
        return GitFetchError(f"repository not found: {url}", "not_found")
    unreachable = ("could not resolve host", "connection refused", "timed out", "unable to connect", "network")
    if any(words in text for words in unreachable):
        return GitFetchError(f"cannot reach {url}: {_reason(stderr)}", "unreachable")
    return GitFetchError(f"git fetch of {url} failed: {_reason(stderr)}", "failed")


def _reason(stderr: str) -> str:
    """git's first `fatal:` or `error:` line: the cause, where the last line is often only advice."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    for line in lines:
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return line.removeprefix(prefix)
    return lines[-1] if lines else "no message"
