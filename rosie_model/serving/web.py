"""``rosie web``: a small web chat with Rosie on 127.0.0.1, her emotion shown with every reply.

Standard library only (``http.server``): one page (``static/chat.html``) and a JSON API the page uses —

* ``POST /api/chat`` ``{"session", "message"}`` or ``{"session", "event"}``: the reply streamed as JSON
  lines, ``{"emotion"}`` first, then ``{"delta"}`` pieces, then ``{"done": true, "reply", "emotion",
  "learned", "memories"}``; a message that cannot be answered gets a 400 with ``{"error"}``.
* ``POST /api/reset`` ``{"session"}``: a new conversation (long-term memory stays).
* ``GET /api/info``, ``GET /api/memory``.

Conversations live in the server process per browser session; what Rosie learns goes to the long-term
memory store of ``user_id``. One reply is decoded at a time (one model, one lock).

Other web pages in the same browser are hostile: a request whose ``Host`` is not this server's address
(DNS rebinding) or whose ``Origin`` is another site is refused with 403, and API posts must be
``application/json`` (which a cross-site form cannot send without a preflight this server never grants).
Bodies are bounded and must say their length; a client that stalls is dropped after ``TIMEOUT_S``.
"""

from __future__ import annotations

import json
import signal
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from rosie_model.serving.chat import ChatError, Rosie

MAX_BODY_BYTES = 1 << 20
#: Seconds a connection may sit idle (mid-headers, mid-body) before it is closed.
TIMEOUT_S = 30
#: Pending connections the listening socket holds (the stdlib's 5 reset clients under a burst).
BACKLOG = 128
_LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")


class ChatServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = BACKLOG

    def __init__(self, rosie: Rosie, user_id: str, host: str = "127.0.0.1", port: int = 7860,
                 timeout_s: float = TIMEOUT_S) -> None:
        super().__init__((host, port), ChatHandler)
        self.timeout_s = timeout_s
        self.rosie, self.user_id = rosie, user_id
        self.lock = threading.Lock()
        self.sessions: dict[str, list[dict[str, Any]]] = {}
        self.page = resources.files("rosie_model.serving").joinpath("static/chat.html").read_bytes()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def loopback(self) -> bool:
        return self.server_address[0] in ("127.0.0.1", "::1")

    def host_allowed(self, host: str) -> bool:
        """On loopback, only the loopback names on this port (a rebound DNS name is someone else's page);
        bound to a network address, any name people reach it by."""
        port = self.server_address[1]
        return host in {f"{name}:{port}" for name in _LOCAL_NAMES} if self.loopback else bool(host)


class ChatHandler(BaseHTTPRequestHandler):
    server: ChatServer

    def setup(self) -> None:
        self.timeout = self.server.timeout_s  # the socket timeout StreamRequestHandler applies
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # one line per request would drown the terminal; errors are answered to the page

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _line(self, payload: dict[str, Any]) -> None:
        self.wfile.write(json.dumps(payload).encode() + b"\n")
        self.wfile.flush()

    def _trusted(self) -> bool:
        """Answers 403 unless the request names this server as its host and comes from its own page."""
        host = self.headers.get("Host", "")
        if not self.server.host_allowed(host):
            self._json(HTTPStatus.FORBIDDEN, {"error": f"Host {host!r} is not this server"})
            return False
        origin = self.headers.get("Origin")
        if origin is not None and origin != f"http://{host}":  # a page of another site, even on this machine
            self._json(HTTPStatus.FORBIDDEN, {"error": f"requests from {origin!r} are not accepted"})
            return False
        return True

    def _body(self) -> dict[str, Any] | None:
        if self.headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json":
            self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send the request as application/json"})
            return None
        declared = self.headers.get("Content-Length")
        if declared is None or not declared.isascii() or not declared.isdigit():
            self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "the request needs a valid Content-Length"})
            return None
        length = int(declared)
        if length > MAX_BODY_BYTES:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"request over {MAX_BODY_BYTES:,} bytes"})
            return None
        data = self.rfile.read(length)
        if len(data) < length:
            self._json(HTTPStatus.BAD_REQUEST, {"error": "the body ended before its Content-Length"})
            return None
        try:
            body = json.loads(data or b"{}")
        except (ValueError, RecursionError):  # bad JSON or UTF-8, or nested too deeply
            self._json(HTTPStatus.BAD_REQUEST, {"error": "the request body is not JSON"})
            return None
        if not isinstance(body, dict) or not isinstance(body.get("session", ""), str):
            self._json(HTTPStatus.BAD_REQUEST, {"error": "expected a JSON object with a string 'session'"})
            return None
        return body

    def handle_one_request(self) -> None:
        """The stdlib's, with a 500 answer (not a dropped connection) for anything a handler did not expect."""
        try:
            super().handle_one_request()
        except (TimeoutError, ConnectionError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 — the client gets an answer; the server keeps serving
            self.close_connection = True
            try:
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}"})
            except OSError:
                pass

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if not self._trusted():
            return
        server = self.server
        if self.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, server.page, "text/html; charset=utf-8")
        elif self.path == "/api/info":
            self._json(HTTPStatus.OK, {"model": server.rosie.label, "folder": str(server.rosie.loaded.folder),
                                       "events": list(server.rosie.events),
                                       "emotions": list(server.rosie.loaded.model.config.emotions)})
        elif self.path == "/api/memory":
            with server.lock:
                entries = server.rosie.memory.list(server.user_id)
            self._json(HTTPStatus.OK, {"user": server.user_id,
                                       "memories": [{"id": m.id, "kind": m.kind, "text": m.text} for m in entries]})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}"})

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        if not self._trusted():
            return
        body = self._body()
        if body is None:
            return
        session = body.get("session", "")
        if self.path == "/api/reset":
            self.server.sessions.pop(session, None)
            self._json(HTTPStatus.OK, {"reset": True})
        elif self.path == "/api/chat":
            self.chat(session, body)
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no endpoint {self.path}"})

    def chat(self, session: str, body: dict[str, Any]) -> None:
        server = self.server
        history = server.sessions.get(session, [])
        message, event = body.get("message"), body.get("event")
        if (message is None) == (event is None) or not isinstance(event if message is None else message, str):
            self._json(HTTPStatus.BAD_REQUEST, {"error": "send either a 'message' or an 'event' (a string)"})
            return
        sent = [{"role": "user", "content": message}] if message is not None else [{"role": "event", "content": event}]
        with server.lock:
            try:
                stream = server.rosie.reply([*history, *sent], user_id=server.user_id, stream=True)
            except ChatError as exc:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/x-ndjson; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            try:
                self._line({"emotion": stream.emotion})
                for piece in stream:
                    self._line({"delta": piece})
                reply = stream.result
            except ChatError as exc:
                self._line({"error": str(exc)})
                return
            except (BrokenPipeError, ConnectionResetError):
                return  # the page went away mid-reply: the conversation is not extended
            server.sessions[session] = [*history, *sent,
                                        {"role": "rosie", "content": reply.text, "emotion": reply.emotion}]
            self._line({"done": True, "reply": reply.text, "emotion": reply.emotion, "learned": list(reply.learned),
                        "memories": list(reply.memories)})


def run(rosie: Rosie, user_id: str, host: str = "127.0.0.1", port: int = 7860) -> int:
    # SIGTERM stops the server even when whatever started it ignored the signal (an ignored signal is inherited
    # through exec: a CI run saw `rosie web` outlive the SIGTERM meant to stop it)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    server = ChatServer(rosie, user_id, host, port)
    print(f"rosie web: chat with Rosie on {server.url} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
