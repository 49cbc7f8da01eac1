"""A real, local PostHog capture server for transport tests and the throughput benchmark.

Listens on 127.0.0.1 (an ephemeral port), accepts ``POST /batch/`` and
``POST /i/v0/ai/batch/`` (gzip or plain JSON), validates the payload the way PostHog's
capture API needs it (``api_key``, a ``batch`` list, each event with ``event``,
``distinct_id``, ``properties``, ``timestamp`` and ``uuid``; 400 otherwise), and records the
raw bytes and the parsed events of every request. Faults on demand: N x 503, N x 429 with
``Retry-After``, slow responses, a gate that holds requests until released, and refusing
connections (stop listening) followed by recovery on the same port.

Also runnable on its own (the benchmark runs it in a separate process so its parsing does
not compete with the exporter for the GIL)::

    python tests/support/capture_server.py [--port 0] [--keep]

prints ``URL <url>`` and serves until killed; ``GET /_stats`` answers
``{"requests": N, "events": N, "rejected": N, "bytes": N, "busy_us": N}`` (``busy_us``:
CPU time spent decoding and validating bodies).
"""

from __future__ import annotations

import argparse
import gzip
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

BATCH_PATHS = ("/batch/", "/i/v0/ai/batch/")
AI_PATH = "/i/v0/ai/batch/"
REQUIRED_EVENT_KEYS = ("event", "distinct_id", "properties", "timestamp", "uuid")
TEST_API_KEY = "phc_testProjectKey0123456789abcdefXYZ"

ExporterFactory = Callable[..., Any]
"""``make_exporter(**kwargs) -> PosthogExporter`` (the ``make_exporter`` fixture)."""


@dataclass
class CapturedRequest:
    """One request as the server saw it.

    Attributes:
        method: HTTP method.
        path: Request path.
        headers: Request headers (names lower-cased).
        raw: The body bytes exactly as received (gzip when the client compressed).
        body: The decoded body bytes (after gunzip).
        payload: The parsed JSON body, or None when it did not parse.
        status: The status the server answered with.
        arrived: ``time.monotonic()`` when the request line was read.
        peer: The client's ``(host, port)``: requests on one keep-alive connection share it.
    """

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: bytes
    payload: Any
    status: int
    arrived: float
    peer: tuple[str, int] | None = None

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events of an accepted batch (empty for rejected requests)."""
        if self.status != 200 or not isinstance(self.payload, dict):
            return []
        return list(self.payload.get("batch") or [])


@dataclass
class _Fault:
    status: int
    retry_after: str | None = None


def validate_payload(payload: Any) -> str | None:
    """Why ``payload`` is not a valid capture batch, or None when it is."""
    if not isinstance(payload, dict):
        return "body is not a JSON object"
    api_key = payload.get("api_key")
    if not isinstance(api_key, str) or not api_key:
        return "missing api_key"
    batch = payload.get("batch")
    if not isinstance(batch, list) or not batch:
        return "batch must be a non-empty list"
    for i, event in enumerate(batch):
        if not isinstance(event, dict):
            return f"batch[{i}] is not an object"
        for key in REQUIRED_EVENT_KEYS:
            if key not in event:
                return f"batch[{i}] has no {key!r}"
        if not isinstance(event["event"], str) or not event["event"]:
            return f"batch[{i}].event must be a non-empty string"
        if not isinstance(event["distinct_id"], str) or not event["distinct_id"]:
            return f"batch[{i}].distinct_id must be a non-empty string"
        if not isinstance(event["properties"], dict):
            return f"batch[{i}].properties must be an object"
        try:
            datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00"))
        except ValueError:
            return f"batch[{i}].timestamp is not ISO 8601"
        try:
            uuid.UUID(str(event["uuid"]))
        except ValueError:
            return f"batch[{i}].uuid is not a UUID"
    return None


class CaptureServer:
    """A threaded HTTP server speaking PostHog's capture API, with fault injection.

    Args:
        keep: Keep every request (raw bytes and parsed events) in :attr:`requests`.
            The benchmark turns this off and only counts.
        port: Port to bind (0: an ephemeral one).
    """

    def __init__(self, *, keep: bool = True, port: int = 0) -> None:
        self.keep = keep
        self.requests: list[CapturedRequest] = []
        self.counts = {"requests": 0, "events": 0, "rejected": 0, "bytes": 0, "busy_us": 0}
        self.delay = 0.0
        self.gate = threading.Event()
        self.gate.set()
        self.inflight = 0
        self._faults: list[_Fault] = []
        self._cond = threading.Condition()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self.port = port
        self._bind()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL to pass as the exporter's ``host``."""
        return f"http://127.0.0.1:{self.port}"

    def _bind(self) -> None:
        server = self

        class Handler(_Handler):
            owner = server

        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        httpd.daemon_threads = True
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"capture-server-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def refuse(self) -> None:
        """Stop listening: new connections are refused, open keep-alive ones are closed."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._cond:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def recover(self) -> None:
        """Listen again on the same port, with no faults pending."""
        with self._cond:
            self._faults.clear()
        self.delay = 0.0
        self.gate.set()
        if self._httpd is None:
            self._bind()

    def close(self) -> None:
        """Release held requests and stop the server."""
        self.gate.set()
        self.refuse()

    # -- fault injection -------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 503, retry_after: float | str | None = None) -> None:
        """Answer the next ``n`` batch requests with ``status`` (and ``Retry-After``)."""
        with self._cond:
            self._faults.extend(
                _Fault(status, None if retry_after is None else str(retry_after)) for _ in range(n)
            )

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold every batch request (unanswered) until the block exits."""
        self.gate.clear()
        try:
            yield
        finally:
            self.gate.set()

    # -- inspection ------------------------------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every accepted event, in arrival order."""
        with self._cond:
            return [e for r in self.requests for e in r.events]

    @property
    def accepted(self) -> list[CapturedRequest]:
        """Requests answered 200."""
        with self._cond:
            return [r for r in self.requests if r.status == 200]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate()`` holds (re-checked on every request), or ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
        return True

    def wait_for_events(self, n: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``n`` events were accepted."""
        return self.wait_for(lambda: self.counts["events"] >= n, timeout)

    def wait_for_inflight(self, n: int = 1, timeout: float = 10.0) -> bool:
        """Wait until ``n`` requests are being held by :meth:`held`."""
        return self.wait_for(lambda: self.inflight >= n, timeout)

    # -- called by the handler -------------------------------------------------------------

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._cond:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _handle(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        raw: bytes,
        arrived: float,
        peer: tuple[str, int] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        if path not in BATCH_PATHS:
            return 404, {}, b'{"detail": "not found"}'
        body = raw
        payload: Any = None
        status = 200
        detail = ""
        if headers.get("content-encoding", "").lower() == "gzip":
            try:
                body = gzip.decompress(raw)
            except (OSError, EOFError):
                status, detail = 400, "body is not valid gzip"
        if status == 200:
            try:
                payload = json.loads(body)
            except ValueError:
                status, detail = 400, "body is not JSON"
        if status == 200:
            problem = validate_payload(payload)
            if problem:
                status, detail = 400, problem
        extra: dict[str, str] = {}
        if status == 200:
            with self._cond:
                fault = self._faults.pop(0) if self._faults else None
            if fault is not None:
                status, detail = fault.status, "injected fault"
                if fault.retry_after is not None:
                    extra["Retry-After"] = fault.retry_after
        with self._cond:
            self.counts["requests"] += 1
            self.counts["bytes"] += len(raw)
            if status == 200:
                self.counts["events"] += len(payload["batch"])
            else:
                self.counts["rejected"] += 1
            if self.keep:
                self.requests.append(
                    CapturedRequest(
                        method, path, headers, raw, body, payload, status, arrived, peer
                    )
                )
            self._cond.notify_all()
        if status == 200:
            return 200, extra, b'{"status": "Ok"}'
        return status, extra, json.dumps({"detail": detail}).encode()


class _Handler(BaseHTTPRequestHandler):
    owner: CaptureServer
    protocol_version = "HTTP/1.1"  # keep-alive, like PostHog's ingestion
    disable_nagle_algorithm = True  # else headers and body stall ~40 ms on delayed ACKs

    def setup(self) -> None:
        super().setup()
        self.owner._track(self.connection, True)

    def finish(self) -> None:
        self.owner._track(self.connection, False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/_stats":
            with self.owner._cond:
                body = json.dumps(self.owner.counts).encode()
            self._reply(200, {}, body)
        else:
            self._reply(404, {}, b'{"detail": "not found"}')

    def do_POST(self) -> None:
        owner = self.owner
        arrived = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not owner.gate.is_set():
            with owner._cond:
                owner.inflight += 1
                owner._cond.notify_all()
            owner.gate.wait()
            with owner._cond:
                owner.inflight -= 1
        if owner.delay:
            time.sleep(owner.delay)
        headers = {k.lower(): v for k, v in self.headers.items()}
        started = time.thread_time()
        path = self.path
        if path.startswith(("http://", "https://")):  # sent through a proxy: absolute form
            path = urlsplit(path).path or "/"
        status, extra, body = owner._handle(
            "POST",
            path,
            headers,
            raw,
            arrived,
            (str(self.client_address[0]), int(self.client_address[1])),
        )
        with owner._cond:
            owner.counts["busy_us"] += int((time.thread_time() - started) * 1e6)
        try:
            self._reply(status, extra, body)
        except OSError:  # the client gave up (timeout) or we were told to refuse
            pass


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def decoded_bodies(server: CaptureServer) -> list[bytes]:
    """Every request body the server received, gunzipped when it was compressed."""
    out = []
    for request in server.requests:
        raw = request.raw
        if request.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        out.append(raw)
    return out


def all_bytes(server: CaptureServer) -> bytes:
    """Everything sent, as bytes: headers, raw bodies and decoded bodies."""
    parts: list[bytes] = []
    for request in server.requests:
        parts.append(json.dumps(request.headers).encode())
        parts.append(request.raw)
    parts.extend(decoded_bodies(server))
    return b"\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    """Serve until killed, printing ``URL <url>`` once listening."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep request bodies in memory")
    args = parser.parse_args(argv)
    server = CaptureServer(keep=args.keep, port=args.port)
    print(f"URL {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    main(sys.argv[1:])
