"""HTTP triggers on a loopback port: routing, methods, auth levels, request and response."""

from __future__ import annotations

import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from devhost.invoker import Invoker
from devhost.loader import FunctionDef
from devhost.routes import RouteTable

log = logging.getLogger("devhost")

MAX_BODY = 100 * 1024 * 1024  # the host's default maxRequestBodySize (100 MB)
JSON = ("Content-Type", "application/json; charset=utf-8")


def error_answer(status: int, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """A small JSON body for an answer the host itself gives (a refused key, a failed
    function): an empty body left a person staring at a blank page. Never any detail."""
    return status, [JSON], json.dumps({"error": message, "status": status}).encode()


class Keys:
    """Function keys (default host key) and the master key, as Azure checks them."""

    def __init__(self, function_key: str, master_key: str) -> None:
        self.function_key, self.master_key = function_key, master_key

    def allows(self, level: str, given: str | None) -> bool:
        if level == "anonymous":
            return True
        if not given:
            return False
        accepted = [self.master_key] + ([self.function_key] if level == "function" else [])
        return any(hmac.compare_digest(given.encode(), k.encode()) for k in accepted if k)


def _query_params(query: str) -> dict[str, str]:
    """The host joins repeated query keys with a comma (StringValues.ToString())."""
    params: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        params.setdefault(key, []).append(value)
    return {k: ",".join(v) for k, v in params.items()}


class HttpHost:
    """A threaded HTTP server dispatching to HTTP-triggered functions."""

    def __init__(self, functions: list[FunctionDef], invoker: Invoker, keys: Keys,
                 route_prefix: str = "api", host: str = "127.0.0.1", port: int = 7071) -> None:
        self.table = RouteTable()
        self.prefix = "/" + route_prefix.strip("/") if route_prefix else ""
        for fdef in functions:
            self.table.add(fdef.trigger.route or fdef.name, fdef)
        self.invoker, self.keys = invoker, keys
        self.server = ThreadingHTTPServer((host, port), self._handler_class())
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.server.server_address[0]}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, name="http",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def dispatch(self, method: str, raw_path: str, headers: dict[str, str], body: bytes,
                 url: str) -> tuple[int, list[tuple[str, str]], bytes]:
        """Route, authorise and invoke; returns (status, headers, body)."""
        split = urlsplit(raw_path)
        path = split.path
        if self.prefix:
            if not (path.lower() == self.prefix or path.lower().startswith(self.prefix + "/")):
                return 404, [], b""
            path = path[len(self.prefix):]
        matches = self.table.find(path)
        if not matches:
            return 404, [], b""
        allowed: set[str] = set()
        for route, params in matches:
            fdef: FunctionDef = route.target
            methods = {str(getattr(m, "value", m)).upper() for m in fdef.trigger.methods or []}
            if methods and method not in methods:
                allowed |= methods
                continue
            query = _query_params(split.query)
            level = str(getattr(fdef.trigger.auth_level, "value", fdef.trigger.auth_level)
                        or "function").lower()
            given = headers.get("x-functions-key") or query.get("code")
            if not self.keys.allows(level, given):
                return error_answer(401, "a valid function key is required (x-functions-key "
                                         "header or code parameter)")
            request = func.HttpRequest(method, url, headers=headers, params=query,
                                       route_params=params, body=body)
            outcome = self.invoker.submit(fdef, request, reason="This function was "
                                          "programmatically called via the host APIs.").result()
            if not outcome.ok:
                return error_answer(500, "the function failed; the host's log says why")
            return _response(outcome.value)
        return 405, [("Allow", ", ".join(sorted(allowed)))], b""

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "mssp-hub-devhost"
            # small writes go out at once: with Nagle's algorithm on, a keep-alive client's
            # delayed ACK held every answer back ~40 ms
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._send(413, [], b"")
                    return
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                url = f"http://{self.headers.get('Host') or host.base_url[7:]}{self.path}"
                try:
                    status, extra, payload = host.dispatch(self.command, self.path, headers,
                                                           body, url)
                except Exception:
                    log.exception("devhost: request failed")
                    status, extra, payload = error_answer(500, "the request failed")
                self._send(status, extra, payload)

            def _send(self, status: int, extra: list[tuple[str, str]], payload: bytes) -> None:
                self.send_response(status)
                for key, value in extra:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                # end_headers() inlined so that headers and body leave in one write
                buffered = getattr(self, "_headers_buffer", [])
                buffered.append(b"\r\n")
                if self.command != "HEAD":
                    buffered.append(payload)
                self.wfile.write(b"".join(buffered))
                self._headers_buffer = []

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

            def __getattr__(self, name: str) -> object:
                """Any other method (TRACE, PROPFIND...) is routed too: the host answers
                405 where the route does not allow it, never 501."""
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("http: " + format, *args)

        return Handler


def _response(value: object) -> tuple[int, list[tuple[str, str]], bytes]:
    if value is None:
        return 204, [], b""
    if isinstance(value, (str, bytes)):
        value = func.HttpResponse(value)
    if not isinstance(value, func.HttpResponse):
        log.error("devhost: HTTP function returned %s, not an HttpResponse", type(value).__name__)
        return error_answer(500, "the function returned no HTTP response")
    headers = [(k, v) for k, v in value.headers.items() if k.lower() != "content-length"]
    if not any(k.lower() == "content-type" for k, _ in headers) and value.mimetype:
        content_type = value.mimetype
        if value.charset and (content_type.startswith("text/") or "json" in content_type
                              or "xml" in content_type):
            content_type += f"; charset={value.charset}"
        headers.append(("Content-Type", content_type))
    return value.status_code, headers, value.get_body() or b""
