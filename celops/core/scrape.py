"""Prometheus scrape endpoints (``--listen ADDR``): prometheus_client's own WSGI app on a thread of ours.

For those who won't run node_exporter's textfile collector: the same metric
families the textfiles hold, at http://ADDR/metrics. prometheus_client's
``start_http_server`` would do, but a collector that fails (a broker gone)
would end in a traceback on stderr and a bare 500: here it is one plain line
on stderr when it starts failing, one when it recovers, and a 503 whose body
says why, so that Prometheus' ``up`` goes to 0 rather than showing stale numbers.
"""

import argparse
import threading

from celops.core.exits import CelopsError, ExitStatus

LISTEN_HELP = ("HOST:PORT, [IPV6]:PORT, or PORT alone for 127.0.0.1:PORT (0.0.0.0:PORT listens on every "
               "interface)")


def listen_address(text):
    """An argparse type: ``HOST:PORT``, ``[::1]:PORT`` or ``PORT`` (127.0.0.1) as ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535 or not host:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}")
    return host, number


class Endpoint:
    """/metrics (and /) of ``registry`` served on ``(host, port)`` until ``close()``.

    Binding happens here, in the caller's thread: an address in use is exit
    73 at start, in the foreground.
    """

    def __init__(self, registry, address, warn):
        import socket
        from wsgiref.simple_server import WSGIRequestHandler, make_server

        from prometheus_client import make_wsgi_app
        from prometheus_client.exposition import ThreadingWSGIServer

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args):  # no access log on stderr: stderr is for diagnostics
                pass

        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("Server", (ThreadingWSGIServer,), {"address_family": family})
        self.failing = False
        self.warn = warn
        self.app = make_wsgi_app(registry)
        try:
            self.server = make_server(host, port, self._guarded, server_class, Quiet)
        except OSError as exc:
            raise CelopsError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                              ExitStatus.CANT_CREATE) from None
        self.address = self.server.server_address[:2]
        self.thread = threading.Thread(target=self.server.serve_forever, name="celops-scrape", daemon=True)
        self.thread.start()

    def _guarded(self, environ, start_response):
        """prometheus_client's app; a collector's CelopsError is a 503 saying why, and a line on stderr."""
        try:
            body = self.app(environ, start_response)
        except CelopsError as exc:
            if not self.failing:  # one line for an outage, not one per scrape
                self.warn(f"scrape failed: {exc}")
            self.failing = True
            start_response("503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"{exc}\n".encode()]
        if self.failing:
            self.warn("scrapes answer again")
            self.failing = False
        return body

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def serve_until_stopped():
    """Block the main thread until SIGTERM (exit 0) or Ctrl-C (the wrapper's 130); the endpoint serves meanwhile."""
    import signal

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        while not stop.wait(3600):
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)
