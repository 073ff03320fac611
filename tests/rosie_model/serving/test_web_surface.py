"""`rosie web` facing hostile clients: other sites in the same browser, lying or stalled connections."""

import http.client
import json
import socket
import threading

import pytest

from rosie_model.serving.chat import Rosie
from rosie_model.serving.web import BACKLOG, ChatServer


@pytest.fixture()
def server(chat_model_dir, tmp_path):
    rosie = Rosie.load(chat_model_dir, memory_path=tmp_path / "memory.sqlite")
    chat = ChatServer(rosie, "local", port=0, timeout_s=1)
    thread = threading.Thread(target=chat.serve_forever, daemon=True)
    thread.start()
    yield chat
    chat.shutdown()
    chat.server_close()
    rosie.close()


def _request(server, method, path, body=b"", headers=None):
    port = server.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body, headers={"Host": f"127.0.0.1:{port}", **(headers or {})})
    response = conn.getresponse()
    status, data = response.status, response.read()
    conn.close()
    return status, data


def _raw(server, data: bytes) -> bytes:
    with socket.create_connection(server.server_address[:2], timeout=60) as sock:
        sock.sendall(data)
        return sock.recv(65536)


def _memories(server) -> list[str]:
    status, data = _request(server, "GET", "/api/memory")
    assert status == 200
    return [m["text"] for m in json.loads(data)["memories"]]


def test_a_cross_site_post_stores_nothing(server):
    port = server.server_address[1]
    message = json.dumps({"session": "x", "message": "My name is Mallory."}).encode()
    # what a page on another site can send without a preflight: a text/plain form post
    status, _ = _request(server, "POST", "/api/chat", message, {"Content-Type": "text/plain", "Origin": "http://evil.example"})
    assert status == 403
    status, _ = _request(server, "POST", "/api/chat", message, {"Content-Type": "text/plain"})
    assert status == 415
    status, _ = _request(server, "POST", "/api/chat", message,
                         {"Content-Type": "application/json", "Origin": f"http://localhost:{port}"})  # another origin
    assert status == 403
    assert "The user's name is Mallory." not in _memories(server)


def test_a_rebound_dns_name_cannot_read_memories(server):
    status, data = _request(server, "GET", "/api/memory", headers={"Host": "attacker.example"})
    assert status == 403 and b"not this server" in data


@pytest.mark.parametrize("length", ["-1", "abc", "²", None, "99999999999"])
def test_a_bad_content_length_gets_an_answer(server, length):
    headers = f"Content-Length: {length}\r\n" if length is not None else ""
    port = server.server_address[1]
    answer = _raw(server, f"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                          f"{headers}\r\n{{}}".encode())
    assert answer.split(b" ")[1] in (b"411", b"413"), answer[:100]
    assert _request(server, "GET", "/api/info")[0] == 200  # and the server still serves


@pytest.mark.parametrize("body", [b'{"session": "s", "message": "hi \\ud800"}', b"[" * 100_000,
                                  b'{"session": "s", "message": "\xff\xfe"}'])
def test_malformed_bodies_get_a_400(server, body):
    status, data = _request(server, "POST", "/api/chat", body, {"Content-Type": "application/json"})
    assert status == 400 and json.loads(data)["error"]


def test_a_burst_of_clients_is_queued_not_reset(server):
    port = server.server_address[1]
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(min(BACKLOG, 60))]
    for sock in sockets:
        sock.sendall(f"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
    answers = [sock.recv(64) for sock in sockets]
    for sock in sockets:
        sock.close()
    assert all(a.startswith(b"HTTP/1.0 200") for a in answers)


def test_a_stalled_connection_is_closed(server):
    with socket.create_connection(server.server_address[:2], timeout=60) as sock:
        sock.sendall(b"POST /api/chat HTTP/1.1\r\n")  # and then nothing
        assert sock.recv(1024) == b""  # closed by the server after its timeout
    assert _request(server, "GET", "/api/info")[0] == 200
