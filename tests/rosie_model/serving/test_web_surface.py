"""Rosie's server (``rosie serve`` / ``rosie web``) facing hostile clients: other sites in the same browser,
lying or stalled connections, bodies no parser expects."""

import http.client
import json
import socket

import pytest

from rosie_model.serving.api import Server, create_app
from rosie_model.serving.chat import Rosie
from rosie_model.serving.feedback import FeedbackStore
from tests.servers import free_port, serving_in_thread


@pytest.fixture(scope="module")
def server(chat_model_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("surface")
    rosie = Rosie.load(chat_model_dir, memory_path=home / "memory.sqlite")
    port = free_port()
    with serving_in_thread(create_app(Server(rosie, FeedbackStore(home / "feedback.db"), port=port)), port):
        yield port
    rosie.close()


def _request(port, method, path, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body, headers={"Host": f"127.0.0.1:{port}", **(headers or {})})
    response = conn.getresponse()
    status, data = response.status, response.read()
    conn.close()
    return status, data


def _raw(port, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(data)
        return sock.recv(65536)


def _memories(port) -> list[str]:
    status, data = _request(port, "GET", "/api/memories?user=local")
    assert status == 200
    return [m["text"] for m in json.loads(data)["memories"]]


def _chat(message: str) -> bytes:
    return json.dumps({"model": "rosie", "user": "local", "messages": [{"role": "user", "content": message}]}).encode()


def test_a_cross_site_post_stores_nothing(server):
    message = _chat("My name is Mallory.")
    # what a page on another site can send without a preflight: a text/plain form post
    status, _ = _request(server, "POST", "/v1/chat/completions", message,
                         {"Content-Type": "text/plain", "Origin": "http://evil.example"})
    assert status == 403
    status, data = _request(server, "POST", "/v1/chat/completions", message, {"Content-Type": "text/plain"})
    assert status == 415 and json.loads(data)["error"]["message"] == "send the request as application/json"
    status, _ = _request(server, "POST", "/v1/chat/completions", message,
                         {"Content-Type": "application/json", "Origin": f"http://localhost:{server}"})  # another origin
    assert status == 403
    status, _ = _request(server, "DELETE", "/api/memories?user=local", headers={"Origin": "http://evil.example"})
    assert status == 403
    assert "The user's name is Mallory." not in _memories(server)


def test_a_rebound_dns_name_cannot_read_memories(server):
    status, data = _request(server, "GET", "/api/memories?user=local", headers={"Host": "attacker.example"})
    assert status == 403 and b"not this server" in data


@pytest.mark.parametrize("length", ["-1", "abc", "²", None, "99999999999"])
def test_a_bad_content_length_gets_an_answer(server, length):
    headers = f"Content-Length: {length}\r\n" if length is not None else ""
    answer = _raw(server, f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{server}\r\n"
                          f"Content-Type: application/json\r\n{headers}\r\n{{}}".encode())
    assert answer.split(b" ")[1] in (b"400", b"411", b"413"), answer[:100]
    assert _request(server, "GET", "/api/info")[0] == 200  # and the server still serves


@pytest.mark.parametrize("body", [_chat("hi \ud800").replace(b"\\\\ud800", b"\\ud800"), b"[" * 100_000,
                                  _chat("hi").replace(b"hi", b"\xff\xfe"), b'{"model": "rosie", "messages": 7}'])
def test_malformed_bodies_get_a_400_in_openais_shape(server, body):
    status, data = _request(server, "POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    assert status == 400 and json.loads(data)["error"]["message"], data[:200]
    assert b"Traceback" not in data


def test_a_burst_of_clients_is_answered_not_reset(server):
    sockets = [socket.create_connection(("127.0.0.1", server), timeout=60) for _ in range(60)]
    for sock in sockets:
        sock.sendall(f"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1:{server}\r\nConnection: close\r\n\r\n".encode())
    answers = [sock.recv(64) for sock in sockets]
    for sock in sockets:
        sock.close()
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers)


def test_a_stalled_connection_holds_up_no_one_else(server):
    with socket.create_connection(("127.0.0.1", server), timeout=60) as sock:
        sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{server}\r\n".encode())  # then nothing
        status, data = _request(server, "POST", "/v1/chat/completions", _chat("Hello!"),
                                {"Content-Type": "application/json"})
        assert status == 200 and json.loads(data)["choices"][0]["message"]["content"]
