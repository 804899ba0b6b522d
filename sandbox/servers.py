"""Small real servers on loopback: the Slack webhook sink, the SMTP sink, the health endpoint and the
Redis broker."""

from __future__ import annotations

import base64
import json
import os
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server:
    """A threading socket server on a free loopback port, served from a daemon thread."""

    handler: type[socketserver.BaseRequestHandler]
    server_class: type[socketserver.TCPServer] = ThreadingHTTPServer

    def start(self) -> _Server:
        self.httpd = self.server_class(("127.0.0.1", 0), self.handler)
        self.httpd.daemon_threads = True  # type: ignore[attr-defined]
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=type(self).__name__, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class _JsonLines:
    """What a sink received, one JSON object per line in a file (readable from another process)."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self._lock = threading.Lock()
        log_path.touch()

    def append(self, record: dict) -> None:
        with self._lock, self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def messages(self) -> list[dict]:
        with self._lock:
            lines = self.log_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def clear(self) -> None:
        with self._lock:
            self.log_path.write_text("")


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class _SlackHandler(_Quiet):
    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        sink: SlackSink = self.server.owner  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        sink.attempts += 1
        mode = sink.mode
        if mode == "slow":
            time.sleep(sink.slow_seconds)
        if mode == "error":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"internal_error")
            return
        sink.record(self.path, body)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")


class SlackSink(_Server, _JsonLines):
    """Records every webhook payload as a JSON line: {"path": ..., "payload": {...}}.

    ``mode``: ``ok`` (200), ``error`` (500), ``slow`` (sleeps ``slow_seconds`` first). A refused
    connection is tested by stopping the sink, or pointing the connection at a closed port.
    The file lives in the sandbox's temp dir so a separate ``airflow dags test`` process can be
    checked from the outside.
    """

    handler = _SlackHandler

    def __init__(self, log_path: Path):
        super().__init__(log_path)
        self.mode = "ok"
        self.slow_seconds = 3.0
        self.attempts = 0  # every POST, answered or not (retries show here, not in messages())

    def clear(self) -> None:
        super().clear()
        self.attempts = 0

    def record(self, path: str, body: bytes) -> None:
        try:
            payload = json.loads(body)
        except json.JSONDecodeError:
            payload = {"raw": body.decode("utf-8", "replace")}
        self.append({"path": path, "payload": payload})


class _HealthHandler(_Quiet):
    def do_GET(self) -> None:  # noqa: N802
        server: HealthEndpoint = self.server.owner  # type: ignore[attr-defined]
        if self.path.split("?")[0] != "/health":
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps({"status": "ok" if server.status < 400 else "degraded"}).encode()
        self.send_response(server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class HealthEndpoint(_Server):
    """The application's ``/health``; set ``status`` to make it unhealthy."""

    handler = _HealthHandler

    def __init__(self) -> None:
        self.status = 200

    @property
    def health_url(self) -> str:
        return f"{self.url}/health"


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT. No TLS."""

    def reply(self, line: str) -> None:
        self.wfile.write((line + "\r\n").encode())

    def handle(self) -> None:
        sink: SmtpSink = self.server.owner  # type: ignore[attr-defined]
        envelope: dict[str, Any] = {"from": None, "to": []}
        self.reply("220 sandbox SMTP sink")
        while line := self.rfile.readline():
            command = line.decode("utf-8", "replace").strip()
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.reply("250-sandbox")
                if sink.password is not None:
                    self.reply("250-AUTH PLAIN")
                self.reply("250 8BITMIME")
            elif verb == "AUTH":
                parts = command.split()
                try:
                    _, login, password = base64.b64decode(parts[2]).decode().split("\0")
                except (IndexError, ValueError):
                    login = password = None
                ok = (login, password) == (sink.login, sink.password)
                self.reply("235 2.7.0 Authentication successful" if ok else "535 5.7.8 Authentication failed")
            elif verb in ("HELO", "NOOP", "RSET"):
                self.reply("250 OK")
            elif verb == "MAIL":
                envelope = {"from": command.split(":", 1)[1].strip(" <>"), "to": []}
                self.reply("250 OK")
            elif verb == "RCPT":
                envelope["to"].append(command.split(":", 1)[1].strip(" <>"))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                body = []
                while (data := self.rfile.readline()) not in (b".\r\n", b""):
                    body.append(data.decode("utf-8", "replace"))
                sink.append({**envelope, "data": "".join(body)})
                self.reply("250 OK queued")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 Command not implemented")


class _SmtpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True


class SmtpSink(_Server, _JsonLines):
    """A real SMTP server on loopback that records every message as a JSON line.

    With a password it advertises AUTH PLAIN and accepts only that login and password.
    """

    handler = _SmtpHandler
    server_class = _SmtpServer

    def __init__(self, log_path: Path, login: str | None = None, password: str | None = None) -> None:
        super().__init__(log_path)
        self.login, self.password = login, password


class RedisBroker:
    """Debian's ``redis-server`` on a free loopback port, nothing persisted: the Celery broker of the
    end-to-end Airflow, as in the deployment (scripts/install-debian-package.sh installs it)."""

    BINARY = Path("/usr/bin/redis-server")

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def start(self) -> RedisBroker:
        import subprocess

        if not self.BINARY.exists():
            raise RuntimeError(f"{self.BINARY} is missing: run scripts/install-debian-package.sh redis-server "
                               f"{self.BINARY} (make test does)")
        self.port = free_port()
        self.log_path = self.workdir / "redis.log"
        # Under Debian's faketime (README: trying a date), libfaketime stalls Redis's event loop; a
        # broker's clock decides no date, so it runs on the real one.
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("FAKETIME")}
        self.process = subprocess.Popen(
            [str(self.BINARY), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--logfile", str(self.log_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self._ping():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}: "
                           f"{self.log_path.read_text(errors='replace')[-2000:] if self.log_path.exists() else ''}")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if getattr(self, "process", None) is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except Exception:
            self.process.kill()
            self.process.wait(timeout=10)


# -- PagerDuty's Events API -------------------------------------------------------------------------
PAGERDUTY_HOST = "events.pagerduty.com"


class _PagerDutyProxyHandler(socketserver.StreamRequestHandler):
    """A CONNECT to events.pagerduty.com:443 is answered by the stand-in itself: TLS with a certificate
    for that name from the sandbox's CA, then the Events API v2 (POST /v2/enqueue)."""

    def handle(self) -> None:
        sink: PagerDutyEvents = self.server.owner  # type: ignore[attr-defined]
        request = self.rfile.readline().decode("latin-1").split()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        if len(request) < 2 or request[0] != "CONNECT" or request[1] != f"{PAGERDUTY_HOST}:443":
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        with sink.context.wrap_socket(self.connection, server_side=True) as tls:
            stream = tls.makefile("rwb")
            while self._one_request(sink, stream):
                pass

    @staticmethod
    def _one_request(sink: PagerDutyEvents, stream: Any) -> bool:
        line = stream.readline().decode("latin-1").split()
        if len(line) < 2:
            return False
        headers = {}
        while (header := stream.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = stream.read(int(headers.get("content-length", 0)))
        try:
            event = json.loads(body)
        except json.JSONDecodeError:
            event = {}
        if line[0] != "POST" or line[1] != "/v2/enqueue" or not event.get("routing_key") \
                or event.get("event_action") not in ("trigger", "acknowledge", "resolve"):
            status, answer = "400 Bad Request", {"status": "invalid event", "message": "Event object is invalid"}
        else:
            status = "202 Accepted"
            answer = {"status": "success", "message": "Event processed",
                      "dedup_key": event.get("dedup_key") or f"sandbox-{len(sink.messages())}"}
            sink.append({"path": line[1], "event": event})
        payload = json.dumps(answer).encode()
        stream.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                     "\r\n".encode() + payload)
        stream.flush()
        return headers.get("connection", "").lower() != "close"


class _ThreadingTcp(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class PagerDutyEvents(_Server, _JsonLines):
    """A stand-in for PagerDuty's Events API v2, reached the way a deployment behind a proxy reaches
    it: ``HTTPS_PROXY`` points at this server, which terminates TLS for events.pagerduty.com with a
    certificate from the sandbox's CA (trusted through ``SSL_CERT_FILE``). The provider's hook and the
    pagerduty client run unchanged. Records {"path", "event"} per accepted event.

    :meth:`environment` gives the variables a process needs to use it."""

    handler = _PagerDutyProxyHandler
    server_class = _ThreadingTcp

    def __init__(self, log_path: Path, workdir: Path) -> None:
        import ssl
        from datetime import UTC, datetime, timedelta

        from sandbox.tls import PrivateCa

        super().__init__(log_path)
        ca = PrivateCa(workdir)
        # Ten years: the tests freeze the clock in the past, OpenSSL checks against the real one.
        issued = ca.issue(PAGERDUTY_HOST, datetime.now(UTC) + timedelta(days=3650))
        (workdir / "pagerduty.pem").write_bytes(issued.certificate_pem + issued.chain_pem)
        (workdir / "pagerduty.key").write_bytes(issued.private_key_pem)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(workdir / "pagerduty.pem", workdir / "pagerduty.key")
        self.ca_bundle = ca.bundle_path

    def environment(self) -> dict[str, str]:
        return {"HTTPS_PROXY": self.url, "https_proxy": self.url, "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost", "SSL_CERT_FILE": str(self.ca_bundle)}

    def events(self) -> list[dict]:
        return [m["event"] for m in self.messages()]
