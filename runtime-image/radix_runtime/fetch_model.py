"""python -m radix_runtime.fetch_model: download a hub repo into a (shared) cache, resumably.

The init container of every pod with spec.model.hub runs this (the operator's render/hub.py). It
- takes a lock per repo in the cache, so pods sharing a ReadWriteMany cache download once: the
  first fetches, the others wait and then find every file present;
- lists the repo at the revision (resolved to a commit), then fetches each file into the
  huggingface_hub cache layout (`models--org--name/blobs/<etag>`, `snapshots/<commit>/<path>`,
  `refs/<revision>`), so upstream tools can read the same cache;
- checks the free space for what is missing first, then fetches files four at a time;
- resumes a file cut off by a killed pod: bytes go to `blobs/<etag>.incomplete` (a stable name, we
  hold the lock), and the next run asks for the rest with a Range request (huggingface_hub >= 1.0
  writes to per-process temporary files and starts over); a resumed LFS file is checked against
  its sha256 and fetched again when it differs;
- logs progress lines (one every few seconds per file, no terminal control characters);
- links the snapshot at --link, which the server's --model-path names;
- on failure, writes `{"reason": ..., "message": ...}` to --termination-log (the pod's termination
  message) and exits 1. Reasons: Unauthorized, RepoNotFound, RevisionNotFound, DiskFull,
  CacheNotWritable, NetworkError, DownloadFailed. The operator turns them into Degraded.

The token comes from HF_TOKEN (a secretKeyRef), the hub URL from HF_ENDPOINT; neither is in argv.
Only the standard library and huggingface_hub are imported, so the module runs in any image that
has huggingface_hub.
"""
from __future__ import annotations

import argparse
import errno
import fcntl
import fnmatch
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

log = logging.getLogger("radix_runtime.fetch_model")

UNAUTHORIZED, REPO_NOT_FOUND, REVISION_NOT_FOUND = "Unauthorized", "RepoNotFound", "RevisionNotFound"
DISK_FULL, CACHE_NOT_WRITABLE, NETWORK_ERROR, FAILED = "DiskFull", "CacheNotWritable", "NetworkError", "DownloadFailed"
# Weight formats other than safetensors, skipped when the repo has safetensors (as SGLang's own
# downloader does): Llama repos ship their weights twice (original/*.pth).
OTHER_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.ckpt", "*.onnx", "*.gguf", "original/*")
LOCK_LOG_SECONDS = 30.0
# huggingface_hub writes what it reads in chunks of this size (its default, 10 MiB, is what a kill
# loses at most; smaller chunks lose less and make progress lines smoother).
CHUNK_BYTES = 256 * 1024


class FetchError(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True)
class RepoFileInfo:
    path: str
    size: int
    etag: str  # the blob's name in the cache: the sha256 of an LFS file, else its git blob id

    @property
    def sha256(self) -> str | None:
        return self.etag if len(self.etag) == 64 else None


def _gib(n: float) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


class ProgressLog:
    """A tqdm stand-in for huggingface_hub's http_get: a log line every `interval` seconds while a
    file downloads, and one when it ends."""

    interval = 5.0

    def __init__(self, *, desc: str = "", total: int | None = None, initial: int = 0, **_: object):
        self.desc, self.total, self.n = desc, total, initial
        self.start = self.last = time.monotonic()
        self.start_n, self.logged = initial, initial

    def __enter__(self) -> "ProgressLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int | float | None = 1) -> None:
        self.n += int(n or 0)
        if time.monotonic() - self.last >= self.interval:
            self._line()

    def _line(self) -> None:
        self.last, self.logged = time.monotonic(), self.n
        rate = (self.n - self.start_n) / max(self.last - self.start, 1e-3)
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        log.info("%s: %s of %s%s, %s/s", self.desc, _gib(self.n), _gib(self.total or 0), pct, _gib(rate))

    def close(self) -> None:
        if self.n != self.logged:
            self._line()


@contextmanager
def repo_lock(path: Path, owner: str) -> Iterator[None]:
    """An exclusive flock on `path`, logging who holds it while we wait (works on local disks and
    NFSv4; a filesystem whose flock is a no-op makes pods download side by side)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        waited = None
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if waited is None or now - waited >= LOCK_LOG_SECONDS:
                    fh.seek(0)
                    log.info("waiting for %s, which is downloading into the same cache", fh.read().strip() or "another pod")
                    waited = now
                time.sleep(1.0)
        fh.seek(0)
        fh.truncate()
        fh.write(owner)
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def select_files(files: list[RepoFileInfo]) -> list[RepoFileInfo]:
    if not any(f.path.endswith(".safetensors") for f in files):
        return files
    return [f for f in files if not any(fnmatch.fnmatch(f.path, p) for p in OTHER_WEIGHTS)]


def _classify(e: BaseException, repo_id: str, revision: str, endpoint: str) -> FetchError:
    import httpx2
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(e, FetchError):
        return e
    token_hint = "set model.hub.tokenSecret to a Secret key holding a token" if not os.environ.get("HF_TOKEN") \
        else "check the token in model.hub.tokenSecret"
    if isinstance(e, GatedRepoError):
        return FetchError(UNAUTHORIZED, f"{repo_id} is gated: accept its terms on {endpoint}/{repo_id} with the "
                                        f"token's account and {token_hint}")
    if isinstance(e, RevisionNotFoundError):
        return FetchError(REVISION_NOT_FOUND, f"{repo_id} has no revision {revision!r}: fix model.hub.revision "
                                              "(a branch, tag or commit)")
    if isinstance(e, RepositoryNotFoundError):
        return FetchError(REPO_NOT_FOUND, f"no repo {repo_id} on {endpoint} (or it is private and the token cannot "
                                          f"see it): fix model.hub.id, or {token_hint}")
    if isinstance(e, HfHubHTTPError) and e.response is not None:
        status = e.response.status_code
        if status in (401, 403):
            return FetchError(UNAUTHORIZED, f"{endpoint} refused the token ({status}) for {repo_id}: {token_hint}")
        if status == 429 or status >= 500:
            return FetchError(NETWORK_ERROR, f"{endpoint} answered {status} for {repo_id}; the pod retries")
    if isinstance(e, (httpx2.TransportError, ConnectionError, TimeoutError, socket.gaierror)):
        return FetchError(NETWORK_ERROR, f"cannot reach {endpoint} ({type(e).__name__}: {e}); the pod retries")
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return FetchError(DISK_FULL, f"the model cache is full ({e.strerror}): give model.hub.cache more room")
    if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return FetchError(CACHE_NOT_WRITABLE, f"cannot write the model cache ({e.strerror}: {e.filename}): make it "
                                              f"writable by uid {os.getuid()}")
    return FetchError(FAILED, f"{type(e).__name__}: {e}")


class Fetcher:
    def __init__(self, repo_id: str, revision: str, cache_dir: Path, endpoint: str | None = None, workers: int = 4):
        from huggingface_hub import HfApi, constants
        from huggingface_hub.file_download import repo_folder_name

        self.repo_id, self.revision, self.cache, self.workers = repo_id, revision, cache_dir, workers
        self.endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
        self.api = HfApi(endpoint=self.endpoint)
        self.folder = repo_folder_name(repo_id=repo_id, repo_type="model")
        self.storage = cache_dir / self.folder
        self.marks = cache_dir / ".sglang-fleet" / self.folder

    def run(self, owner: str) -> Path:
        try:
            self.storage.mkdir(parents=True, exist_ok=True)
            with repo_lock(self.cache / ".locks" / "sglang-fleet" / f"{self.folder}.lock", owner):
                return self._fetch()
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            raise _classify(e, self.repo_id, self.revision, self.endpoint) from e

    def _list(self) -> tuple[str, list[RepoFileInfo]]:
        from huggingface_hub.hf_api import RepoFile

        info = self.api.model_info(self.repo_id, revision=self.revision)
        assert info.sha, "the hub's model info has no sha"
        files = [RepoFileInfo(f.path, f.size, f.lfs.sha256 if f.lfs else f.blob_id) for f in self.api.list_repo_tree(
            self.repo_id, revision=info.sha, recursive=True) if isinstance(f, RepoFile)]
        return info.sha, files

    def _offline(self, error: FetchError) -> Path:
        """The hub is unreachable: a snapshot this cache completed before still serves."""
        ref = self.storage / "refs" / self.revision
        sha = ref.read_text().strip() if ref.is_file() else self.revision
        if (self.marks / f"{sha}.complete").exists():
            log.warning("%s; using the complete snapshot %s already in the cache", error.message, sha)
            return self.storage / "snapshots" / sha
        raise error

    def _fetch(self) -> Path:
        t0 = time.monotonic()
        try:
            sha, files = self._list()
        except Exception as e:
            err = _classify(e, self.repo_id, self.revision, self.endpoint)
            if err.reason == NETWORK_ERROR:
                return self._offline(err)
            raise err from e
        snapshot = self.storage / "snapshots" / sha
        if (self.marks / f"{sha}.complete").exists() and snapshot.is_dir():
            log.info("%s@%s (%s) is already in the cache", self.repo_id, self.revision, sha)
            return snapshot
        files = select_files(files)
        if not files:
            raise FetchError(FAILED, f"{self.repo_id}@{self.revision} has no files: check model.hub.id and revision")
        total = sum(f.size for f in files)
        log.info("%s@%s is commit %s: %d files, %s", self.repo_id, self.revision, sha, len(files), _gib(total))
        self._check_space(files)
        got = 0
        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(files)))) as pool:
            futures = [pool.submit(self._file, sha, f, f"[{i}/{len(files)}] {f.path}") for i, f in enumerate(files, 1)]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for fut in futures:
                if fut in done and fut.exception() is not None:
                    pool.shutdown(cancel_futures=True)
                    raise fut.exception()  # type: ignore[misc]
            got = sum(fut.result() for fut in futures)
        self._finish(sha, files)
        log.info("done in %.1fs: %s downloaded, %s were in the cache", time.monotonic() - t0, _gib(got),
                 _gib(total - got))
        return snapshot

    def _blob(self, f: RepoFileInfo) -> Path:
        return self.storage / "blobs" / f.etag

    def _have(self, f: RepoFileInfo) -> tuple[bool, int]:
        """(the blob is complete, bytes of its partial file)."""
        blob = self._blob(f)
        if blob.exists() and blob.stat().st_size == f.size:
            return True, 0
        partial = Path(f"{blob}.incomplete")
        have = partial.stat().st_size if partial.exists() else 0
        return False, have if have <= f.size else 0

    def _check_space(self, files: list[RepoFileInfo]) -> None:
        need = sum(f.size - have for f in files for complete, have in [self._have(f)] if not complete)
        (self.storage / "blobs").mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.storage / "blobs").free
        if need > free:
            raise FetchError(DISK_FULL, f"the download needs {_gib(need)} more but the model cache has {_gib(free)} "
                                        "free: give model.hub.cache more room")

    def _file(self, sha: str, f: RepoFileInfo, desc: str, verify_resume: bool = True) -> int:
        """Fetch one file into blobs/ (resuming a partial one) and return the bytes transferred."""
        from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils import build_hf_headers

        blob, pointer = self._blob(f), self.storage / "snapshots" / sha / f.path
        complete, have = self._have(f)
        if complete:
            log.info("%s: in the cache", desc)
            self._link_pointer(blob, pointer)
            return 0
        meta = get_hf_file_metadata(hf_hub_url(self.repo_id, f.path, revision=sha, endpoint=self.endpoint))
        partial = Path(f"{blob}.incomplete")
        log.info("%s: %s%s", desc, _gib(f.size), f", resuming at {_gib(have)}" if have else "")
        constants.DOWNLOAD_CHUNK_SIZE = CHUNK_BYTES
        with open(partial, "r+b" if have else "wb") as fh:
            fh.seek(have)
            http_get(meta.location, fh, resume_size=have, headers=build_hf_headers(), expected_size=f.size,
                     displayed_filename=desc, tqdm_class=ProgressLog)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        if have and f.sha256 and verify_resume and _sha256(partial) != f.sha256:
            # The kept part was not what the hub serves (e.g. written by a pod whose lock did not hold).
            log.warning("%s: the resumed file does not match its sha256; downloading it again", desc)
            partial.unlink()
            return self._file(sha, f, desc, verify_resume=False)
        os.replace(partial, blob)
        self._link_pointer(blob, pointer)
        return f.size - have

    @staticmethod
    def _link_pointer(blob: Path, pointer: Path) -> None:
        pointer.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(blob, pointer.parent)
        if pointer.is_symlink() and os.readlink(pointer) == target:
            return
        tmp = pointer.with_name(f".{pointer.name}.link")
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, pointer)

    def _finish(self, sha: str, files: list[RepoFileInfo]) -> None:
        if sha != self.revision:
            ref = self.storage / "refs" / self.revision
            ref.parent.mkdir(parents=True, exist_ok=True)
            tmp = ref.with_name(f".{ref.name}.tmp")
            tmp.write_text(sha)
            os.replace(tmp, ref)
        self.marks.mkdir(parents=True, exist_ok=True)
        (self.marks / f"{sha}.complete").write_text("\n".join(f.path for f in files) + "\n")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def link(snapshot: Path, at: Path) -> None:
    """Point `at` (the server's --model-path) at the snapshot, replacing an older link."""
    at.parent.mkdir(parents=True, exist_ok=True)
    tmp = at.with_name(f".{at.name}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(snapshot, tmp)
    os.replace(tmp, at)


def write_termination(path: str | None, err: FetchError) -> None:
    if not path:
        return
    try:
        # The kubelet keeps 4 KiB of the message.
        Path(path).write_text(json.dumps({"reason": err.reason, "message": err.message[:3500]}))
    except OSError as e:
        log.warning("cannot write the termination message to %s: %s", path, e)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m radix_runtime.fetch_model", description=__doc__.split("\n")[0])
    p.add_argument("--repo-id", required=True)
    p.add_argument("--revision", default="main")
    p.add_argument("--cache-dir", required=True, type=Path)
    p.add_argument("--link", type=Path, help="symlink to create at this path, pointing at the snapshot")
    p.add_argument("--endpoint", help="hub URL (default: HF_ENDPOINT, else https://huggingface.co)")
    p.add_argument("--termination-log", help="write the failure reason here as JSON (the pod's termination message)")
    p.add_argument("--max-workers", type=int, default=4, help="files downloaded at once")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s model-download %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    args = parse_args(argv)
    owner = os.environ.get("POD_NAME") or socket.gethostname()
    try:
        snapshot = Fetcher(args.repo_id, args.revision, args.cache_dir, args.endpoint, args.max_workers).run(owner)
        if args.link:
            link(snapshot, args.link)
            log.info("%s -> %s", args.link, snapshot)
    except FetchError as e:
        log.error("%s: %s", e.reason, e.message)
        write_termination(args.termination_log, e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
