"""Every AWS request the sandbox's moto server receives, from any process (tests, `dags test`,
`airflow standalone`'s workers): what the tests count to prove a run changed nothing.

A WSGI wrapper around moto's app: it names each request's operation (the JSON protocol's
``X-Amz-Target``, the query protocol's ``Action``, else the HTTP method and path of a REST API),
its service and region (from the SigV4 credential scope), and whether it can change anything.
"""

from __future__ import annotations

import io
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

READ_ONLY_PREFIXES = ("Describe", "List", "Get", "Validate", "Head", "Search", "Lookup", "BatchGet")
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


@dataclass(frozen=True)
class AwsRequest:
    service: str
    region: str
    operation: str
    mutating: bool


class RequestLog:
    def __init__(self, app: Any) -> None:
        self.app = app
        self._lock = threading.Lock()
        self.requests: list[AwsRequest] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/moto-api"):  # the sandbox's own control calls are not AWS requests
            self._record(environ, path)
        return self.app(environ, start_response)

    def _record(self, environ: dict[str, Any], path: str) -> None:
        method = environ.get("REQUEST_METHOD", "GET")
        scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        region, service = scope.groups() if scope else ("?", "?")
        operation = (environ.get("HTTP_X_AMZ_TARGET") or "").rsplit(".", 1)[-1]
        if not operation:
            action = parse_qs(environ.get("QUERY_STRING", "")).get("Action")
            if not action and method == "POST" and "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = environ["wsgi.input"].read(length) if length else b""
                environ["wsgi.input"] = io.BytesIO(body)  # put back for moto
                action = parse_qs(body.decode("utf-8", "replace")).get("Action")
            operation = action[0] if action else f"{method} {path}"
        mutating = (not operation.startswith(READ_ONLY_PREFIXES) if " " not in operation
                    else method not in ("GET", "HEAD"))
        with self._lock:
            self.requests.append(AwsRequest(service, region, operation, mutating))

    def since(self, mark: int) -> list[AwsRequest]:
        with self._lock:
            return list(self.requests[mark:])

    def mark(self) -> int:
        with self._lock:
            return len(self.requests)


def install(moto_server: Any) -> RequestLog:
    """Wrap a started ThreadedMotoServer's app (werkzeug reads ``server.app`` per request)."""
    log = RequestLog(moto_server._server.app)
    moto_server._server.app = log
    return log
