"""A follower pod's /health: the group's state as rank 0 publishes it, on the port the leader
serves HTTP on (the renderer probes workers there). 200 only while the whole group is up."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .heartbeat import GroupHealth


def serve_health(health: GroupHealth, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] not in ("/health", "/healthz"):
                return self._send(404, {"error": "a follower rank serves /health only"})
            v = health.view()
            self._send(200 if health.healthy else 503, {"status": "healthy" if health.healthy else v["state"], **v})

        def _send(self, code: int, body: dict):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # probes every few seconds: keep the log quiet
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health-http", daemon=True).start()
    return server
