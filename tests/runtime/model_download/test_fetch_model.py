"""radix_runtime.fetch_model (the model-download init container) against a local fake hub
(tests/support/fake_hub.py) that huggingface_hub talks to as it would to the real one.

Process-level where it matters: a downloader killed mid-file (SIGKILL, as a deleted pod) resumes
with a Range request, two downloaders on one cache fetch each file once, and the runtime serves
the downloaded snapshot through the link the server's --model-path names."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from radix_runtime import fetch_model
from tests.support.fake_hub import FakeHub
from tests.support.server import REPO, RuntimeServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.runtime  # starts real downloader and server processes

TOKEN = "hf_good"
WEIGHTS = "model.safetensors"


@pytest.fixture
def hub(tiny_model):
    with FakeHub(tokens=(TOKEN,)) as h:
        h.add_repo("org/tiny", tiny_model)
        h.add_repo("org/gated", tiny_model, gated=True)
        yield h


def _args(hub: FakeHub, cache: Path, repo: str = "org/tiny", *extra: str) -> list[str]:
    return ["--repo-id", repo, "--cache-dir", str(cache), "--endpoint", hub.url, *extra]


def _spawn(hub: FakeHub, cache: Path, log: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "POD_NAME": log.stem, **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "radix_runtime.fetch_model", *_args(hub, cache), *extra],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=REPO, env=env)


def _same_files(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all((a / n).read_bytes() == (b / n).read_bytes()
                                                                for n in names)


def _fail(hub: FakeHub, tmp_path: Path, *args: str, monkeypatch=None, token: str | None = None) -> dict:
    term = tmp_path / "termination-log"
    if monkeypatch is not None:
        if token is None:
            monkeypatch.delenv("HF_TOKEN", raising=False)
        else:
            monkeypatch.setenv("HF_TOKEN", token)
    assert fetch_model.main([*args, "--termination-log", str(term)]) == 1
    return json.loads(term.read_text())


def test_downloads_links_and_the_runtime_serves_it(hub, tiny_model, tmp_path):
    cache, link = tmp_path / "cache", tmp_path / "run" / "model"
    log = tmp_path / "pod-a.log"
    proc = _spawn(hub, cache, log, "--link", str(link))
    assert proc.wait(60) == 0, log.read_text()
    assert link.is_symlink() and _same_files(link, tiny_model)
    text = log.read_text()
    assert "6 files" in text and f"{WEIGHTS}: " in text and "done in" in text  # progress in the pod log
    # huggingface_hub's own cache reader finds the snapshot (upstream tools can share the cache).
    from huggingface_hub import snapshot_download
    assert Path(snapshot_download("org/tiny", cache_dir=cache, local_files_only=True)) == link.resolve()

    server = RuntimeServer(link, ("--served-model-name", "org/tiny"), tmp_path / "server.log")
    try:
        server.wait_ready()
        assert httpx.get(server.url + "/v1/models").json()["data"][0]["id"] == "org/tiny"
        r = httpx.post(server.url + "/generate", json={"text": "Hello", "sampling_params": {"max_new_tokens": 4}})
        assert r.status_code == 200 and r.json()["meta_info"]["completion_tokens"] == 4
    finally:
        server.stop()


def test_a_killed_download_resumes_with_a_range_request(hub, tiny_model, tmp_path):
    cache = tmp_path / "cache"
    size = (tiny_model / WEIGHTS).stat().st_size
    sent_before_stall = size * 3 // 4
    hub.stall(WEIGHTS, after=sent_before_stall)
    proc = _spawn(hub, cache, tmp_path / "first.log")
    partial = lambda: next(cache.glob("models--org--tiny/blobs/*.incomplete"), None)  # noqa: E731
    # The downloader writes whole chunks (fetch_model.CHUNK_BYTES) as they arrive.
    wait_for(lambda: (p := partial()) is not None and p.stat().st_size >= fetch_model.CHUNK_BYTES, 30,
             what="a partial weights file")
    proc.send_signal(signal.SIGKILL)  # what deleting the pod does to its init container
    proc.wait(10)
    have = partial().stat().st_size
    hub.release()

    link = tmp_path / "model"
    assert fetch_model.main(_args(hub, cache, "org/tiny", "--link", str(link))) == 0
    first, second = hub.gets(WEIGHTS)
    assert first.range is None and first.sent == sent_before_stall
    assert second.range == f"bytes={have}-" and second.sent == size - have  # what it had is not sent again
    assert _same_files(link, tiny_model)


def test_pods_sharing_a_cache_download_each_file_once(hub, tiny_model, tmp_path):
    cache = tmp_path / "shared"
    hub.stall(WEIGHTS, after=1000)
    a = _spawn(hub, cache, tmp_path / "pod-a.log")
    wait_for(lambda: hub.gets(WEIGHTS), 30, what="pod-a fetching the weights")
    b = _spawn(hub, cache, tmp_path / "pod-b.log")
    wait_for(lambda: "waiting for pod-a" in (tmp_path / "pod-b.log").read_text(), 30, what="pod-b waiting for the lock")
    hub.release()
    assert a.wait(60) == 0 and b.wait(60) == 0, (tmp_path / "pod-b.log").read_text()
    # The weights' GETs: pod-a's, cut off, and pod-a's own retry (huggingface_hub retries a dropped
    # transfer); pod-b asked for nothing.
    assert len(hub.gets(WEIGHTS)) == 2 and len(hub.gets("config.json")) == 1
    assert "already in the cache" in (tmp_path / "pod-b.log").read_text()


def test_failures_name_a_reason_in_the_termination_message(hub, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    base = ["--cache-dir", cache, "--endpoint", hub.url]
    err = _fail(hub, tmp_path, "--repo-id", "org/gated", *base, monkeypatch=monkeypatch)
    assert err["reason"] == "Unauthorized" and "gated" in err["message"] and "tokenSecret" in err["message"]
    err = _fail(hub, tmp_path, "--repo-id", "org/gated", *base, monkeypatch=monkeypatch, token="hf_wrong")
    assert err["reason"] == "Unauthorized" and "refused the token (401)" in err["message"]
    err = _fail(hub, tmp_path, "--repo-id", "org/missing", *base, monkeypatch=monkeypatch)
    assert err["reason"] == "RepoNotFound" and "model.hub.id" in err["message"]
    err = _fail(hub, tmp_path, "--repo-id", "org/tiny", "--revision", "v9", *base, monkeypatch=monkeypatch)
    assert err["reason"] == "RevisionNotFound" and "'v9'" in err["message"]
    hub.add_repo("org/empty")
    err = _fail(hub, tmp_path, "--repo-id", "org/empty", *base, monkeypatch=monkeypatch)
    assert err["reason"] == "DownloadFailed" and "has no files" in err["message"]
    dead = ["--cache-dir", str(tmp_path / "empty"), "--endpoint", "http://127.0.0.1:9"]  # nothing listens
    err = _fail(hub, tmp_path, "--repo-id", "org/tiny", *dead, monkeypatch=monkeypatch)
    assert err["reason"] == "NetworkError"
    # With a valid token the gated repo downloads.
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert fetch_model.main(["--repo-id", "org/gated", *base]) == 0


def test_disk_full_is_reported_as_such(hub, tmp_path, monkeypatch):
    """A real ENOSPC from the kernel: the partial weights file is a link to /dev/full."""
    cache = tmp_path / "cache"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert fetch_model.main(_args(hub, cache, "org/tiny", "--revision", hub.repos["org/tiny"].sha)) == 0
    etag = hub.repos["org/tiny"].etag(WEIGHTS)
    blob = cache / "models--org--tiny" / "blobs" / etag
    blob.unlink()
    (cache / ".sglang-fleet" / "models--org--tiny" / f"{hub.repos['org/tiny'].sha}.complete").unlink()
    os.symlink("/dev/full", f"{blob}.incomplete")
    err = _fail(hub, tmp_path, *_args(hub, cache))
    assert err["reason"] == "DiskFull" and "model.hub.cache" in err["message"]


def test_a_complete_snapshot_serves_while_the_hub_is_unreachable(hub, tiny_model, tmp_path, monkeypatch):
    cache, link = tmp_path / "cache", tmp_path / "model"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert fetch_model.main(_args(hub, cache)) == 0
    offline = ["--repo-id", "org/tiny", "--cache-dir", str(cache), "--endpoint", "http://127.0.0.1:9"]
    assert fetch_model.main([*offline, "--link", str(link)]) == 0
    assert _same_files(link, tiny_model)


def test_too_little_room_fails_before_downloading(hub, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    real = shutil.disk_usage
    monkeypatch.setattr(fetch_model.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    err = _fail(hub, tmp_path, *_args(hub, tmp_path / "cache"))
    assert err["reason"] == "DiskFull" and "free" in err["message"]
    assert not [r for r in hub.requests if "/resolve/" in r.path]  # nothing was fetched


def test_a_resumed_file_that_does_not_match_its_sha256_is_fetched_again(hub, tiny_model, tmp_path, monkeypatch):
    cache, link = tmp_path / "cache", tmp_path / "model"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    blob = cache / "models--org--tiny" / "blobs" / hub.repos["org/tiny"].etag(WEIGHTS)
    blob.parent.mkdir(parents=True)
    Path(f"{blob}.incomplete").write_bytes(b"not the weights" * 100)
    assert fetch_model.main(_args(hub, cache, "org/tiny", "--link", str(link))) == 0
    resumed, again = hub.gets(WEIGHTS)
    assert resumed.range == "bytes=1500-" and again.range is None
    assert _same_files(link, tiny_model)
