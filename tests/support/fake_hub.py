"""A local HTTP server that speaks the parts of the Hugging Face hub's API that huggingface_hub's
download path calls (no hub is reachable from our machines):

- GET  /api/models/{repo}/revision/{rev}      model info ({"id", "sha", "siblings"})
- GET  /api/models/{repo}/tree/{rev}          file listing (one page: no Link header)
- HEAD /{repo}/resolve/{rev}/{path}           ETag, X-Repo-Commit, Content-Length, Accept-Ranges
- GET  /{repo}/resolve/{rev}/{path}           the bytes, 206 + Content-Range for `Range: bytes=N-`

Errors carry the hub's headers, which huggingface_hub maps onto its exceptions: `X-Error-Code:
RepoNotFound` / `RevisionNotFound` / `GatedRepo`, and 401 with `X-Error-Message: Invalid credentials
in Authorization header` for a token the hub does not know. A gated repo's info and listing are
public, its files need a valid token (as on the hub).

`stall(path, after)` makes the next GET of that file send `after` bytes, hang until `release()` and
then drop the connection (a pod killed mid-file, or a network cut). Every request is recorded in
`requests` with the body bytes it got.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


@dataclass
class Repo:
    files: dict[str, bytes]
    sha: str
    gated: bool = False
    branches: dict[str, str] = field(default_factory=dict)

    def etag(self, path: str) -> str:
        data = self.files[path]
        if path.endswith(".safetensors"):
            return hashlib.sha256(data).hexdigest()  # LFS files: the hub's ETag is the sha256
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git blob id


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    sent: int = 0  # body bytes written


class FakeHub:
    def __init__(self, tokens: tuple[str, ...] = ()):
        self.repos: dict[str, Repo] = {}
        self.tokens = set(tokens)
        self.requests: list[Request] = []
        self._stalls: dict[str, int] = {}
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add_repo(self, repo_id: str, directory: Path | None = None, *, files: dict[str, bytes] | None = None,
                 gated: bool = False) -> Repo:
        files = dict(files or {})
        if directory is not None:
            files |= {str(p.relative_to(directory)): p.read_bytes() for p in sorted(Path(directory).rglob("*"))
                      if p.is_file()}
        sha = hashlib.sha1(repr(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in files.items())).encode()).hexdigest()
        repo = Repo(files, sha, gated, {"main": sha})
        self.repos[repo_id] = repo
        return repo

    def stall(self, path: str, after: int) -> None:
        self._release.clear()
        self._stalls[path] = after

    def release(self) -> None:
        self._stalls.clear()
        self._release.set()

    def gets(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and r.path.endswith("/" + path) and "/resolve/" in r.path]

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


_API = re.compile(r"^/api/models/(?P<repo>.+?)/(?P<kind>revision|tree)/(?P<rev>[^/]+)$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+(?:/[^/]+)?)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  length: int | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)

        def _error(self, status: int, code: str | None = None, message: str | None = None) -> None:
            headers = {"Content-Type": "application/json"}
            if code:
                headers["X-Error-Code"] = code
            if message:
                headers["X-Error-Message"] = message
            self._send(status, json.dumps({"error": message or code or str(status)}).encode(), headers)

        def _token(self) -> tuple[bool, bool]:
            """(a token was sent, it is valid)."""
            auth = self.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ").strip()
            return bool(token), token in hub.tokens

        def _repo(self, repo_id: str, rev: str) -> tuple[Repo, str] | None:
            sent, valid = self._token()
            if sent and not valid:
                self._error(401, message=INVALID_CREDENTIALS)
                return None
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found")
                return None
            sha = repo.branches.get(rev, rev if rev == repo.sha else None)
            if sha is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                return None
            return repo, sha

        def _handle(self) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            req = Request(self.command, path, self.headers.get("Range"))
            hub.requests.append(req)
            if m := _API.match(path):
                found = self._repo(m["repo"], m["rev"])
                if found is None:
                    return
                repo, sha = found
                if m["kind"] == "revision":
                    body = {"id": m["repo"], "sha": sha, "private": False, "gated": "manual" if repo.gated else False,
                            "siblings": [{"rfilename": p} for p in sorted(repo.files)]}
                else:
                    body = [_tree_entry(repo, p) for p in sorted(repo.files)]
                return self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
            if m := _RESOLVE.match(path):
                found = self._repo(m["repo"], m["rev"])
                if found is None:
                    return
                repo, sha = found
                if repo.gated and not self._token()[1]:
                    return self._error(401, "GatedRepo", "Access to this model is restricted")
                if m["path"] not in repo.files:
                    return self._error(404, "EntryNotFound", "Entry not found")
                return self._file(req, repo, sha, m["path"])
            self._error(404, message="no such route")

        def _file(self, req: Request, repo: Repo, sha: str, name: str) -> None:
            data = repo.files[name]
            headers = {"ETag": f'"{repo.etag(name)}"', "X-Repo-Commit": sha, "Accept-Ranges": "bytes",
                       "Content-Type": "application/octet-stream"}
            start, status = 0, 200
            if self.command == "GET" and (r := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")):
                start, status = int(r[1]), 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if self.command == "HEAD":
                return
            body = data[start:]
            stall = hub._stalls.pop(name, None)
            try:
                if stall is not None:
                    self.wfile.write(body[:stall])
                    self.wfile.flush()
                    req.sent = stall
                    hub._release.wait(60)
                    self.close_connection = True  # the rest never comes
                    return
                self.wfile.write(body)
                req.sent += len(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        do_GET = do_HEAD = _handle

    return Handler


def _tree_entry(repo: Repo, path: str) -> dict:
    data = repo.files[path]
    git_oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    entry = {"type": "file", "path": path, "size": len(data), "oid": git_oid}
    if path.endswith(".safetensors"):
        entry["lfs"] = {"oid": repo.etag(path), "size": len(data), "pointerSize": 134}
    return entry
