"""`sglang-operator run`: the operator process (kopf + metrics + optional leader election)."""
from __future__ import annotations

import argparse
import http.server
import logging
import os
import signal
import socket
import sys
import threading
import urllib.parse
import uuid

from .settings import AutoscalerSettings, LeaderElection, Settings

log = logging.getLogger("sglang_operator.cli")


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sglang-operator", description="Kubernetes operator for SGLangDeployments")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the operator")
    scope = r.add_mutually_exclusive_group(required=True)
    scope.add_argument("-n", "--namespace", action="append", dest="namespaces", metavar="NS",
                       help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    r.add_argument("--metrics-port", type=int, default=8000, help="Prometheus /metrics port (0: off)")
    r.add_argument("--metrics-addr", default="0.0.0.0")
    r.add_argument("--liveness", metavar="URL", help="kopf's liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    r.add_argument("--leader-elect", action="store_true", help="run only while holding a Lease (for replicas > 1)")
    r.add_argument("--leader-election-namespace", default=os.environ.get("POD_NAMESPACE"),
                   help="namespace of the Lease (default: $POD_NAMESPACE, else the first watched namespace)")
    r.add_argument("--leader-election-id", default="sglang-operator", help="name of the Lease")
    r.add_argument("--identity", default=os.environ.get("POD_NAME"),
                   help="holder identity (default: $POD_NAME or hostname + random)")
    r.add_argument("--lease-duration", type=float, default=15)
    r.add_argument("--renew-deadline", type=float, default=10)
    r.add_argument("--retry-period", type=float, default=2)
    r.add_argument("--resync-seconds", type=float, default=300, help="safety-net resync of every object")
    r.add_argument("--workers", type=_positive, default=24,
                   help="reconcile passes in flight (threads; each mostly waits on the API server)")
    r.add_argument("--watch-timeout", type=int, default=None,
                   help="server-side timeout of each watch request, seconds (kopf default: none)")
    env = AutoscalerSettings.from_env()  # SGLANG_OPERATOR_AUTOSCALER_* as the defaults
    r.add_argument("--autoscaler-tolerance", type=float, default=env.tolerance,
                   help="no scaling while load/target is within this fraction of 1 (default: %(default)s)")
    r.add_argument("--autoscaler-scrape-timeout", type=float, default=env.scrape_timeout,
                   help="seconds per leader scrape (default: %(default)s)")
    r.add_argument("--autoscaler-concurrency", type=int, default=env.concurrency,
                   help="leader scrapes in flight (default: %(default)s)")
    r.add_argument("--autoscaler-idle-interval", type=float, default=env.idle_interval,
                   help="seconds between looks at a deployment without autoscaling (default: %(default)s)")
    r.add_argument("--log-format", choices=["plain", "full", "json"], default="json")
    r.add_argument("--verbose", action="store_true")
    r.add_argument("--debug", action="store_true")
    return p


def parse_settings(argv: list[str] | None) -> Settings:
    p = _parser()
    a = p.parse_args(argv)
    election = None
    if a.leader_elect:
        namespace = a.leader_election_namespace or (a.namespaces or [None])[0]
        if not namespace:
            p.error("--leader-elect with --all-namespaces needs --leader-election-namespace (or $POD_NAMESPACE)")
        identity = a.identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        election = LeaderElection(namespace, a.leader_election_id, identity, lease_duration=a.lease_duration,
                                  renew_deadline=a.renew_deadline, retry_period=a.retry_period)
    return Settings(
        namespaces=tuple(a.namespaces or ()), resync_seconds=a.resync_seconds, workers=a.workers, watch_timeout=a.watch_timeout,
        metrics_port=a.metrics_port, metrics_addr=a.metrics_addr, liveness=a.liveness, leader_election=election,
        log_format=a.log_format, verbose=a.verbose, debug=a.debug,
        autoscaler=AutoscalerSettings(a.autoscaler_tolerance, a.autoscaler_scrape_timeout, a.autoscaler_concurrency,
                                      a.autoscaler_idle_interval))


class _StandbyHealth:
    """Answers the liveness URL while this replica waits for the Lease (kopf, which owns the endpoint
    once leading, is not running yet), so standbys are not restarted by their liveness probe."""

    def __init__(self, url: str):
        u = urllib.parse.urlsplit(url)
        path = u.path or "/"

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                ok = self.path.split("?")[0] == path
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"standby": true}' if ok else b"{}")

            def log_message(self, *a: object) -> None:
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer((u.hostname or "0.0.0.0", u.port or 80), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True, name="standby-health").start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run(settings: Settings) -> int:
    import kopf

    kopf.configure(verbose=settings.verbose, debug=settings.debug, log_format={
        "plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}[settings.log_format])
    from . import handlers  # noqa: F401  (registers the handlers)
    from . import metrics

    if settings.metrics_port:
        metrics.serve(settings.metrics_port, settings.metrics_addr)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # until kopf installs its own
        signal.signal(sig, lambda *_: stop.set())

    elector = None
    lost = threading.Event()
    le = settings.leader_election
    if le is not None:
        from .kube.client import Kube, load_api_client
        from .leader import LeaderElector

        elector = LeaderElector(Kube(load_api_client(), handlers.FIELD_MANAGER), le.namespace, le.name, le.identity,
                                lease_duration=le.lease_duration, renew_deadline=le.renew_deadline,
                                retry_period=le.retry_period)
        standby = _StandbyHealth(settings.liveness) if settings.liveness else None
        metrics.LEADER.set(0)
        log.info("waiting for lease %s/%s as %s", le.namespace, le.name, le.identity)
        acquired = elector.acquire(stop)
        if standby:
            standby.close()
        if not acquired:
            return 0

        def keep() -> None:
            if not elector.keep(stop):
                lost.set()
                metrics.LEADER.set(0)
                os.kill(os.getpid(), signal.SIGTERM)  # kopf's own graceful stop: never act without the lease
        threading.Thread(target=keep, daemon=True, name="lease-renewer").start()

    try:
        # No stop_flag: kopf would wait for it in a task that outlives a SIGTERM and delays the exit by
        # 5 s. Losing the lease stops kopf the same way a kubelet does, with SIGTERM.
        if not stop.is_set():
            kopf.run(standalone=True, clusterwide=settings.all_namespaces, namespaces=settings.namespaces,
                     liveness_endpoint=settings.liveness, memo=kopf.Memo(settings=settings))
    finally:
        stop.set()
        if elector is not None and not lost.is_set():
            elector.release()
    if lost.is_set():
        log.error("lost the leader lease; exiting so that a fresh process can wait for it again")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_settings(argv))


if __name__ == "__main__":
    sys.exit(main())
