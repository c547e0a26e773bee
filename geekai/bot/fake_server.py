"""What the fake WeChat servers share: an HTTP server on 127.0.0.1 that can hang, drop, break.

The web-WeChat emulator (emulator.py) and the iLink emulator (ilink_emulator.py) serve tests and
the demo from a daemon thread. Each subclasses FakeServer and answers requests in `_route`;
this module reads the requests, applies the fault a test set, and writes the answers.
"""

import collections
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

FAULT_MODES = (None, "hang", "garbage", "5xx", "drop")
# Matches none of itchat's regexes and is neither valid JSON nor well-formed XML.
GARBAGE = "<html><body>502 Bad Gateway & <<not the protocol".encode("utf-8")


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its emulator and every open connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, emulator):
        self.emulator = emulator
        self.connections = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address):
        """Stay quiet: clients time out and go away all the time in tests."""

    def close_connections(self):
        """Shut every open connection so that keep-alive clients cannot be served after stop."""
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, applies the configured fault, and hands it to the emulator."""

    # Keep-alive like the real server, so requests' connection pool behaves as in production.
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""

    def setup(self):
        """Register the connection so stop() can cut it."""
        super().setup()
        # Headers and body go out in two writes: without NODELAY, Nagle plus the client's
        # delayed ACK adds ~40 ms to every answer on a kept-alive connection.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self):
        """Forget the connection."""
        try:
            super().finish()
        except OSError:
            pass
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)

    def log_message(self, format, *args):
        """Say nothing; tests and the demo would drown in access logs."""

    def do_GET(self):
        """Handle GET."""
        self._handle("GET")

    def do_POST(self):
        """Handle POST."""
        self._handle("POST")

    def _handle(self, method):
        """Read the request, apply any fault, route it, and write the answer (or not)."""
        emu = self.server.emulator
        parts = urlsplit(self.path)
        path = parts.path or "/"
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
        except (ValueError, OSError):
            self.close_connection = True
            return
        emu._count(path)
        fault = emu._await_fault(path)
        if fault == "stopped" or fault == "drop":
            self.close_connection = True
            return
        if fault == "5xx":
            self._reply((503, "text/html", b"<html><body>503 Service Unavailable</body></html>", []))
            return
        if fault == "garbage":
            self._reply((200, "text/html; charset=utf-8", GARBAGE, []))
            return
        reply = emu._route(method, path, parse_qs(parts.query), body, self.headers)
        if reply is None:  # the emulator stopped while this request was held
            self.close_connection = True
            return
        self._reply(reply)

    def handle_one_request(self):
        """Count the request as in flight, so that stop() can wait until every one has ended."""
        emu = self.server.emulator
        with emu._cond:
            emu._in_flight += 1
        try:
            super().handle_one_request()
        finally:
            with emu._cond:
                emu._in_flight -= 1
                emu._cond.notify_all()

    def _reply(self, reply):
        """Write (status, content_type, body, extra_headers); ignore clients that left."""
        status, content_type, body, headers = reply
        if isinstance(body, str):
            body = body.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


class FakeServer:
    """Lifecycle, request counts and faults of a fake server; subclasses answer in `_route`."""

    thread_name = "fake-server"

    def __init__(self):
        # One condition guards all state; every change notifies, so long-polls wake at once.
        self._cond = threading.Condition(threading.RLock())
        self._stopping = False
        self._servers = []
        self._threads = []
        self._addresses = []  # (host, port) last bound: start() after stop() may bind them again
        self._in_flight = 0  # connections inside a request (stop() waits for them to end)
        self._fault = (None, None)
        self._fault_times = None  # the fault clears after this many more matching requests
        self._fault_version = 0  # +1 at each set_fault(): a held request looks again
        self.request_counts = collections.Counter()

    # ----- lifecycle -------------------------------------------------------------------

    def start(self, host="127.0.0.1", port=0):
        """Bind host:port (0 = any free port), serve in a daemon thread, and return self.

        After stop(), start(port=emu.port) brings the same server back on the same port: its
        sessions, QR and queued messages are kept, as when the server was only unreachable.
        """
        if self._servers:
            raise RuntimeError("emulator already started")
        self._addresses = []
        self._listen(host, port)
        return self

    def _listen(self, host, port):
        """Serve the same emulator on one more address; return its base URL."""
        server = _Server((host, port), self)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=self.thread_name, daemon=True)
        self._servers.append(server)
        self._threads.append(thread)
        self._addresses.append(server.server_address[:2])
        thread.start()
        return self._url_of(server)

    def stop(self):
        """Close the sockets (connections are refused from now on), cut every open connection
        and release every held request at once; return when every request has ended."""
        with self._cond:
            servers, threads = list(self._servers), list(self._threads)
            if not servers:
                return
            self._stopping = True
            self._cond.notify_all()
        for server, thread in zip(servers, threads):
            server.shutdown()
            server.server_close()
            server.close_connections()
            thread.join(timeout=5)
        with self._cond:
            self._cond.wait_for(lambda: self._in_flight == 0, timeout=5)
            self._servers, self._threads = [], []
            self._stopping = False

    @property
    def port(self):
        """The port the server is (or was last) bound to."""
        if not self._addresses:
            raise RuntimeError("emulator never started")
        return self._addresses[0][1]

    def __enter__(self):
        if not self._servers:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def base_url(self):
        """The first address served, e.g. http://127.0.0.1:PORT."""
        if not self._servers:
            raise RuntimeError("emulator not started")
        return self._url_of(self._servers[0])

    @staticmethod
    def _url_of(server):
        host, port = server.server_address[:2]
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = "[%s]" % host
        return "http://%s:%d" % (host, port)

    # ----- faults and observation --------------------------------------------------------

    def set_fault(self, mode, paths=None, times=None):
        """Make matching requests hang, get garbage, get 503, or be dropped (None clears).

        paths: substrings of the request path (None: every path);
        times: the fault clears itself after that many matching requests (None: when cleared);
        those held by "hang" stay held until the next set_fault().
        """
        if mode not in FAULT_MODES:
            raise ValueError("fault mode must be one of %r" % (FAULT_MODES,))
        if times is not None and (mode is None or int(times) < 1):
            raise ValueError("times must be a whole number >= 1, with a fault mode")
        if isinstance(paths, str):
            paths = [paths]
        with self._cond:
            self._fault = (mode, None if paths is None else frozenset(paths))
            self._fault_times = None if times is None else int(times)
            self._fault_version += 1
            self._cond.notify_all()

    @property
    def fault(self):
        """The current fault as (mode, paths)."""
        with self._cond:
            return self._fault

    def wait_for(self, predicate, timeout=5.0):
        """Poll predicate() until it is true (True) or timeout seconds pass (False)."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def _count(self, path):
        """Count a request by path."""
        with self._cond:
            self.request_counts[path] += 1

    def _fault_for(self, path):
        """The fault mode for this path."""
        mode, paths = self._fault
        if mode is None:
            return None
        if paths is None or any(p in path for p in paths):
            return mode
        return None

    def _await_fault(self, path):
        """Hold a hanging request until set_fault() changes the fault (or stop()); return the
        fault it meets or "stopped"."""
        with self._cond:
            mode = self._fault_for(path)
            if mode is not None:
                self._count_fault()
            while mode == "hang":
                version = self._fault_version
                self._cond.wait_for(lambda: self._stopping or self._fault_version != version)
                if self._stopping:
                    return "stopped"
                mode = self._fault_for(path)
            return "stopped" if self._stopping else mode

    def _count_fault(self):
        """One more request met the fault; one set for `times` requests then clears (call under the lock)."""
        if self._fault_times is not None:
            self._fault_times -= 1
            if self._fault_times <= 0:
                self._fault, self._fault_times = (None, None), None

    def _route(self, method, path, query, body, headers):
        """Answer one request as (status, content_type, body, headers), or None to hang up."""
        raise NotImplementedError
