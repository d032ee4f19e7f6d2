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

log = logging.getLogger("sglang_operator.cli")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
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
    r.add_argument("--identity", default=None, help="holder identity (default: $POD_NAME or hostname + random)")
    r.add_argument("--lease-duration", type=float, default=15)
    r.add_argument("--renew-deadline", type=float, default=10)
    r.add_argument("--retry-period", type=float, default=2)
    r.add_argument("--resync-seconds", type=float, default=300, help="safety-net resync of every object")
    r.add_argument("--watch-timeout", type=int, default=None,
                   help="server-side timeout of each watch request, seconds (kopf default: none)")
    r.add_argument("--log-format", choices=["plain", "full", "json"], default="json")
    r.add_argument("--verbose", action="store_true")
    r.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    if args.leader_elect and not args.leader_election_namespace:
        if not args.namespaces:
            p.error("--leader-elect with --all-namespaces needs --leader-election-namespace (or $POD_NAMESPACE)")
        args.leader_election_namespace = args.namespaces[0]
    return args


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


def run(args: argparse.Namespace) -> int:
    import kopf

    kopf.configure(verbose=args.verbose, debug=args.debug, log_format={
        "plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}[args.log_format])
    os.environ["SGLANG_OPERATOR_RESYNC_SECONDS"] = str(args.resync_seconds)  # read by handlers at import
    from . import metrics
    from .reconcile import handlers  # noqa: F401  (registers the handlers)
    from .autoscale import handlers as _autoscaler  # noqa: F401  (registers the autoscaler)

    if args.metrics_port:
        metrics.serve(args.metrics_port, args.metrics_addr)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # until kopf installs its own
        signal.signal(sig, lambda *_: stop.set())

    elector = None
    lost = threading.Event()
    if args.leader_elect:
        from .leader import LeaderElector
        from .reconcile.kube import Kube, load_api_client

        identity = args.identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        elector = LeaderElector(Kube(load_api_client(), handlers.FIELD_MANAGER), args.leader_election_namespace,
                                args.leader_election_id, identity, lease_duration=args.lease_duration,
                                renew_deadline=args.renew_deadline, retry_period=args.retry_period)
        standby = _StandbyHealth(args.liveness) if args.liveness else None
        metrics.LEADER.set(0)
        log.info("waiting for lease %s/%s as %s", args.leader_election_namespace, args.leader_election_id, identity)
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

    settings = kopf.OperatorSettings()
    if args.watch_timeout:
        settings.watching.server_timeout = args.watch_timeout
        settings.watching.client_timeout = args.watch_timeout + 5
    settings.watching.connect_timeout = 10

    try:
        # No stop_flag: kopf would wait for it in a task that outlives a SIGTERM and delays the exit by
        # 5 s. Losing the lease stops kopf the same way a kubelet does, with SIGTERM.
        if not stop.is_set():
            kopf.run(standalone=True, clusterwide=args.all_namespaces, namespaces=args.namespaces or (),
                     liveness_endpoint=args.liveness, settings=settings)
    finally:
        stop.set()
        if elector is not None and not lost.is_set():
            elector.release()
    if lost.is_set():
        log.error("lost the leader lease; exiting so that a fresh process can wait for it again")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "run":
        return run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
