"""How `rosie serve` shares its one model among clients: a bounded waiting line (503 past it), streams served a
piece of text each in turn, and a client that hangs up stops its generation.

The model's worker thread is held at a gate while requests line up, and the worker's own record of what it ran
is read back, so nothing here depends on how fast or how loaded the machine is."""

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import openai
import pytest

from rosie_model.serving.api import Server, create_app
from rosie_model.serving.chat import Rosie
from rosie_model.serving.feedback import FeedbackStore
from tests.servers import free_port, serving_in_thread


class Worker:
    """The server's model worker as a test sees it: what ran on it, for which request, and a gate to hold it."""

    def __init__(self, server: Server) -> None:
        self.server, self.ran = server, []
        self.lock = threading.Lock()
        self.before_second_piece: threading.Event | None = None
        run_on_model = server.on_model

        async def on_model(fn, *args, **kwargs):
            request = asyncio.current_task().get_name()  # one task per request (a stream's producer: its own)

            def recorded():
                name = getattr(fn, "__name__", "")
                with self.lock:
                    self.ran.append((request, name))
                    pieces = sum(ran == (request, "next") for ran in self.ran)
                if name == "next" and pieces == 2 and self.before_second_piece is not None:
                    self.before_second_piece.wait(300)
                return fn(*args, **kwargs)
            return await run_on_model(recorded)
        server.on_model = on_model

    @contextmanager
    def held(self) -> Iterator[None]:
        """The worker blocked (the requests that come meanwhile queue behind it) until the block ends."""
        gate, holding = threading.Event(), threading.Event()
        self.server.worker.submit(lambda: (holding.set(), gate.wait(300)))
        assert holding.wait(60)
        try:
            yield
        finally:
            gate.set()

    @contextmanager
    def held_before_second_piece(self) -> Iterator[None]:
        """The worker blocks when a request's second piece is to be decoded (if that comes), until the block
        ends."""
        self.before_second_piece = threading.Event()
        try:
            yield
        finally:
            self.before_second_piece.set()
            self.before_second_piece = None

    def drained(self) -> None:
        """Returns once everything queued on the worker so far has run."""
        self.server.worker.submit(lambda: None).result(timeout=300)

    def pieces(self) -> dict[str, int]:
        """Pieces of text decoded per request (a token each, or a few where a character spans tokens)."""
        return dict(Counter(self.piece_order()))

    def piece_order(self) -> list[str]:
        with self.lock:
            return [request for request, name in self.ran if name == "next"]


def until(condition, what: str, seconds: float = 120) -> None:
    """Wait for a state of the server (never for a duration: the deadline only ends a test that hangs)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def sharing(chat_model_dir, tmp_path):
    rosie = Rosie.load(chat_model_dir, memory_path=tmp_path / "memory.sqlite")
    port = free_port()
    server = Server(rosie, FeedbackStore(tmp_path / "feedback.db"), port=port, max_waiting=2)
    worker = Worker(server)
    with serving_in_thread(create_app(server), port):
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=300)
        yield server, worker, client
    rosie.close()


def _stream_in_thread(client, results: list, **request) -> threading.Thread:
    def read() -> None:
        chunks = client.chat.completions.create(model="rosie", stream=True, seed=0, **request)
        results.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
    thread = threading.Thread(target=read)
    thread.start()
    return thread


def test_past_max_waiting_a_request_gets_503_and_the_line_drains(sharing):
    server, worker, client = sharing
    hello = [{"role": "user", "content": "Hello!"}]
    texts: list[str] = []
    with worker.held():
        readers = [_stream_in_thread(client, texts, messages=hello, max_tokens=8) for _ in range(2)]
        until(lambda: server.waiting == 2, "two requests in the line")
        with pytest.raises(openai.InternalServerError) as refused:
            client.chat.completions.create(model="rosie", messages=hello, max_tokens=8)
        assert refused.value.status_code == 503 and refused.value.body["code"] == "overloaded"
        assert "busy with 2 requests" in refused.value.body["message"]
    for reader in readers:
        reader.join(timeout=300)
    assert len(texts) == 2 and all(texts)  # the two in the line were answered in full
    until(lambda: server.waiting == 0, "the line to empty")
    assert client.chat.completions.create(model="rosie", messages=hello, max_tokens=8).choices[0].message.content


def test_two_streams_take_turns_on_the_model(sharing):
    server, worker, client = sharing
    texts: list[str] = []
    with worker.held():  # both requests arrive before any of their work runs
        readers = [_stream_in_thread(client, texts, max_tokens=80, messages=[{"role": "user", "content": message}])
                   for message in ("Tell me a story", "What is your name?")]
        until(lambda: server.waiting == 2, "two streams in the line")
    for reader in readers:
        reader.join(timeout=300)
    assert len(texts) == 2 and all(texts)
    order = worker.piece_order()
    first, second = dict.fromkeys(order)  # the two requests, in the order their first pieces ran
    both = order[order.index(second):min(len(order) - order[::-1].index(r) for r in (first, second))]
    # while both are decoding, neither gets two turns in a row: a long reply cannot hold up a short one
    assert len(both) >= 6 and all(a != b for a, b in zip(both, both[1:])), order


def test_a_client_that_hangs_up_stops_its_generation(sharing):
    server, worker, client = sharing
    request = {"model": "rosie", "seed": 0, "max_tokens": 150,
               "messages": [{"role": "user", "content": "Tell me a long story"}]}
    before = worker.pieces()
    whole = client.chat.completions.create(**request)
    [answered] = [r for r in worker.pieces() if r not in before]
    assert worker.pieces()[answered] > 20  # untrained weights: heard out, the reply runs to its length
    before = worker.pieces()
    port = client.base_url.port
    with httpx.Client(timeout=300) as http, worker.held_before_second_piece():
        with http.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions",
                         json={**request, "stream": True}) as response:
            assert response.status_code == 200
            for line in response.iter_lines():  # the role/emotion chunk, then her first words
                if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    break
        until(lambda: server.waiting == 0, "the server to notice the client left")
    worker.drained()
    [hung_up] = [r for r in worker.pieces() if r not in before]
    assert worker.pieces()[hung_up] <= 2  # the first piece, and at most the one that was queued when it left
    again = client.chat.completions.create(**request)  # and the server goes on serving
    assert again.choices[0].message.content == whole.choices[0].message.content
