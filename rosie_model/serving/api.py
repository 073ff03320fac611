"""``rosie serve``: Rosie behind the OpenAI API, the one protocol character-chat frontends all speak
(SillyTavern, Open WebUI, Agnai, LangChain, the ``openai`` package). FastAPI on uvicorn.

* ``GET /v1/models``; ``POST /v1/chat/completions`` (roles system / developer / user / assistant, ``n``
  alternatives, ``stop``, ``seed``, ``temperature``, ``top_p``, ``max_tokens``, presence / frequency penalty
  onto her repetition penalty, ``user`` as the long-term memory's user, ``stream`` as server-sent events);
  ``POST /v1/completions`` for text-mode frontends (the same, streamed too); ``POST /tokenize`` and
  ``/detokenize``; ``POST /api/classify`` (the emotion of a text, in the shape SillyTavern's Character
  Expressions reads); ``POST /v1/feedback``; ``GET /health``.
* Rosie's extras ride in a ``rosie`` field both ways: the request's ``event`` (drag, poke, …), ``persona``
  and ``use_system_prompt`` (a frontend's own system prompt replaces her trained one only when asked); each
  choice's ``emotion`` (streamed before the first word), ``memories`` recalled and ``learned`` facts.
* Swipes: a request whose ``rosie.alternative_of`` names an earlier completion of the same conversation
  adds its replies to that completion's alternatives (a regenerated reply), so that ``/v1/feedback`` can
  say which of them the user kept.
* For Rosie's own page (``GET /``, the web chat): ``GET /api/info`` (her events, emotions, the page's user),
  ``GET /api/memories?user=`` and ``DELETE /api/memories[/{id}]?user=`` (what she remembers, and forgetting it).
* Errors in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with its statuses; never
  a traceback.

One model per process. All model work runs on one worker thread, one token (or one reply's set-up) at a
time from each request in turn, so concurrent streams share the model fairly, a slow client holds up only
itself, and a client that goes away stops its generation at the next token. At most ``max_waiting``
requests are in the server at once; the next gets 503.

Other web pages in the same browser are hostile: on 127.0.0.1 (the default) a ``Host`` that is not this
server (DNS rebinding) or an ``Origin`` of another site gets 403, and every POST must be
``application/json``, which a cross-site form cannot send without a preflight this server never grants.
Exposed on another address, the server requires an API key (``Authorization: Bearer``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from importlib import resources
from typing import Any, Literal, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from rosie_model.serving.chat import ChatError, ChatInputError, Reply, ReplyStream, Rosie
from rosie_model.serving.feedback import FeedbackError, FeedbackStore
from rosie_model.serving.generate import ReplyDecoder, SamplingOptions
from rosie_model.serving.markup import TurnMarkup

MAX_BODY_BYTES = 1 << 20
#: Alternatives one request may ask for.
MAX_N = 8
LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")
T = TypeVar("T")


class ApiError(Exception):
    """An answer in OpenAI's error shape."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.type, self.param, self.code)


def error_response(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                   code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}}, status)


# -- the request shapes ------------------------------------------------------------------------------------
class RosieExtras(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: str | None = None
    """A desktop event she reacts to after the conversation (drag, poke, …)."""
    persona: int = 0
    use_system_prompt: bool = False
    """Use the frontend's system messages instead of her trained system prompt."""
    alternative_of: str | None = None
    """An earlier completion of this same conversation: these replies are more of its alternatives (swipes)."""


class MessageExtras(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: str
    """This turn was a desktop event (drag, poke, …), not words: the message's content is ignored."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None
    rosie: MessageExtras | None = None

    def text(self) -> str:
        """The message's text; content parts other than text are refused (Rosie reads text only)."""
        if isinstance(self.content, str) or self.content is None:
            return self.content or ""
        kinds = {part.get("type") for part in self.content}
        if kinds - {"text"}:
            raise ApiError(400, f"Rosie reads text only, not {', '.join(sorted(map(str, kinds - {'text'})))}",
                           param="messages")
        return "".join(str(part.get("text", "")) for part in self.content)

    def for_rosie(self) -> dict[str, Any]:
        """The message as her template reads it: assistant turns are hers, developer messages system ones, a
        user turn with an event in its extras that event."""
        if self.rosie is not None:
            if self.role != "user":
                raise ApiError(400, "only a user turn can be an event", param="messages")
            return {"role": "event", "content": self.rosie.event}
        role = {"assistant": "rosie", "developer": "system"}.get(self.role, self.role)
        return {"role": role, "content": self.text()}


class Sampling(BaseModel):
    """What OpenAI clients send to shape sampling; frontends send more (min_p, typical_p, …): ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=MAX_N)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    repetition_penalty: float | None = Field(None, gt=0)
    user: str | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    rosie: RosieExtras = Field(default_factory=RosieExtras)

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4:
            raise ApiError(400, "at most 4 stop strings", param="stop")
        return [s for s in stops if s]

    def options(self, base: SamplingOptions, alternative: int) -> SamplingOptions:
        """Her sampling settings with what the request set; alternative i of a completion (counting those a
        regenerate added) uses seed + i when the request or the server has a seed. The OpenAI penalties
        (-2..2) become her repetition penalty, 1 + the larger one / 2 (at least 0.5)."""
        given: dict[str, Any] = {}
        if (tokens := self.max_completion_tokens or self.max_tokens) is not None:
            given["max_new_tokens"] = tokens
        for name in ("temperature", "top_p", "top_k"):
            if (value := getattr(self, name)) is not None:
                given[name] = value
        penalties = [p for p in (self.presence_penalty, self.frequency_penalty) if p is not None]
        if self.repetition_penalty is not None:
            given["repetition_penalty"] = self.repetition_penalty
        elif penalties:
            given["repetition_penalty"] = max(0.5, 1 + max(penalties) / 2)
        if (seed := self.seed if self.seed is not None else base.seed) is not None:
            given["seed"] = seed + alternative
        if (self.n > 1 or alternative > 0) and base.temperature == 0 and "temperature" not in given:
            given["temperature"] = 0.8  # alternatives of a greedy model would all be the same reply
        return dataclasses.replace(base, **given)


class ChatRequest(Sampling):
    messages: list[ChatMessage]


class CompletionRequest(Sampling):
    prompt: str | list[str]


class TokenizeRequest(BaseModel):
    prompt: str | None = None
    messages: list[ChatMessage] | None = None


class DetokenizeRequest(BaseModel):
    tokens: list[int]


class ClassifyRequest(BaseModel):
    text: str


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    """The completion's id, as the completion returned it."""
    choice: int = Field(0, ge=0)
    """Which alternative the feedback is about."""
    rating: Literal["up", "down"] | None = None
    kept: bool = False
    """The user kept this alternative (a swipe chosen) over the others."""


# -- stop strings ------------------------------------------------------------------------------------------
class StopCutter:
    """Text pieces with the stop strings cut out: holds back only what could still become a stop string."""

    def __init__(self, stops: list[str]) -> None:
        self.stops, self.held, self.text, self.stopped = stops, "", "", False

    def feed(self, piece: str) -> str:
        self.held += piece
        found = [i for i in (self.held.find(stop) for stop in self.stops) if i >= 0]
        if found:
            out, self.held, self.stopped = self.held[:min(found)], "", True
        else:
            keep = next((k for k in range(min(len(self.held), max(map(len, self.stops), default=1) - 1), 0, -1)
                         if any(stop.startswith(self.held[-k:]) for stop in self.stops)), 0)
            out, self.held = self.held[:len(self.held) - keep], self.held[len(self.held) - keep:]
        self.text += out
        return out

    def flush(self) -> str:
        out, self.held = self.held, ""
        self.text += out
        return out


# -- the server --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Choice:
    index: int
    """Its place in this response."""
    alternative: int
    """Its place among the completion's alternatives (what ``/v1/feedback`` names): ``index`` plus those
    a completion had before a regenerate added this one."""
    text: str
    reply: Reply
    finish_reason: str

    def extras(self) -> dict[str, Any]:
        return {"emotion": self.reply.emotion, "memories": list(self.reply.memories),
                "learned": list(self.reply.learned), "alternative": self.alternative}


def served_ids(rosie: Rosie) -> list[str]:
    """The model ids a client may ask for: ``rosie``, and the registry names she was loaded by
    (``models:/rosie@champion`` also answers to ``rosie@champion`` and ``rosie/3``)."""
    return list(dict.fromkeys(["rosie", *rosie.registry_names]))


class Server:
    def __init__(self, rosie: Rosie, feedback: FeedbackStore, *, api_key: str | None = None, loopback: bool = True,
                 port: int = 8000, max_waiting: int = 16, user: str = "local") -> None:
        """``user``: whose long-term memory the web chat page talks with."""
        self.rosie, self.feedback, self.api_key, self.user = rosie, feedback, api_key, user
        self.loopback, self.port, self.max_waiting = loopback, port, max_waiting
        self.page = resources.files("rosie_model.serving").joinpath("static/chat.html").read_bytes()
        self.markup = TurnMarkup.of(rosie.loaded)
        self.ids = served_ids(rosie)
        self.created = int(time.time())
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rosie-model")
        self.waiting = 0

    async def on_model(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the model's worker thread, in turn with every other request's work."""
        return await asyncio.get_running_loop().run_in_executor(self.worker, partial(fn, *args, **kwargs))

    def admit(self) -> None:
        """Count a request in; 503 when ``max_waiting`` are already in (release with :meth:`release`)."""
        if self.waiting >= self.max_waiting:
            raise ApiError(503, f"Rosie is busy with {self.waiting} requests; try again shortly", "server_error",
                           code="overloaded")
        self.waiting += 1

    def release(self) -> None:
        self.waiting -= 1

    def validate(self, messages: list[dict[str, Any]], request: Sampling) -> int:
        """What can be refused before any model work (and before a stream starts): 400 with the reason.
        Returns how many alternatives the completion has before this request's (0 unless a regenerate)."""
        before = self.earlier_alternatives(messages, request)
        try:
            self.rosie.check_messages(messages, request.rosie.event)
            for index in range(request.n):
                request.options(self.rosie.options, before + index)
        except ChatInputError as exc:
            raise ApiError(400, str(exc), param="messages") from exc
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc
        personas = self.rosie.loaded.model.config.n_personas
        if not 0 <= request.rosie.persona < personas:
            raise ApiError(400, f"persona {request.rosie.persona} is not one of this model's 0-{personas - 1}",
                           param="rosie.persona")
        return before

    def earlier_alternatives(self, messages: list[dict[str, Any]], request: Sampling) -> int:
        """For a regenerate, the alternatives its completion already has; 404 for an unknown completion, 400
        for one that answered another conversation (its swipes would not be alternatives of one reply)."""
        if (earlier := request.rosie.alternative_of) is None:
            return 0
        stored = self.feedback.completion(earlier)
        if stored is None:
            raise ApiError(404, f"no completion {earlier!r} to add alternatives to", param="rosie.alternative_of")
        if stored["messages"] != stored_conversation(messages, request):
            raise ApiError(400, f"completion {earlier!r} answered another conversation: a regenerate sends the "
                           "messages that completion answered", param="rosie.alternative_of")
        return len(stored["choices"])

    def check_model(self, model: str) -> None:
        if model not in self.ids:
            raise ApiError(404, f"The model {model!r} does not exist; this server has {', '.join(self.ids)}",
                           param="model", code="model_not_found")

    def conversation(self, request: ChatRequest) -> list[dict[str, Any]]:
        """The messages as Rosie reads them: assistant turns are hers; system messages only when asked for."""
        return own_prompt([message.for_rosie() for message in request.messages], request)

    def prompt_conversation(self, request: CompletionRequest) -> list[dict[str, Any]]:
        """A text-mode prompt as turns: written in her markup (as her SillyTavern instruct preset writes it),
        the turns it holds; any other text, the user's one message."""
        prompt = request.prompt if isinstance(request.prompt, str) else "\n".join(request.prompt)
        turns = self.markup.parse(prompt)
        return [{"role": "user", "content": prompt}] if turns is None else own_prompt(turns, request)

    async def alternatives(self, messages: list[dict[str, Any]], request: Sampling, before: int = 0,
                           on_piece: Callable[[int, str], Any] | None = None,
                           on_start: Callable[[int, str], Any] | None = None) -> list[Choice]:
        """Each of the request's ``n`` replies, decoded on the worker token by token; ``before``: the
        alternatives its completion already has. Facts are learned from the first reply of a completion only."""
        choices, stops = [], request.stops()
        for index in range(request.n):
            stream: ReplyStream = await self.on_model(
                self.rosie.reply, messages, event=request.rosie.event, user_id=request.user, stream=True,
                options=request.options(self.rosie.options, before + index), remember=before + index == 0,
                persona=request.rosie.persona)
            if on_start is not None:
                await on_start(index, stream.emotion)
            pieces, cutter, finished = iter(stream), StopCutter(stops), False
            try:
                while (piece := await self.on_model(next, pieces, None)) is not None:
                    shown = cutter.feed(piece)
                    if shown and on_piece is not None:
                        await on_piece(index, shown)
                    if cutter.stopped:
                        break
                if not cutter.stopped and (tail := cutter.flush()) and on_piece is not None:
                    await on_piece(index, tail)
                reply = await self.on_model(stream.stop, cutter.text) if cutter.stopped else stream.result
                finished = True
            finally:
                if not finished:  # the client went away: stop decoding at the next token, out of band
                    self.worker.submit(pieces.close)
            reason = "length" if reply.truncated and not cutter.stopped else "stop"
            choices.append(Choice(index, before + index, cutter.text.strip() if cutter.stopped else reply.text, reply,
                                  reason))
        return choices

    def record(self, completion_id: str, request: Sampling, messages: list[dict[str, Any]],
               choices: list[Choice]) -> None:
        """The completion in the feedback store, or a regenerate's replies added to the one it regenerated (each
        choice's ``alternative`` becomes the index the store gave it: another regenerate may have come first)."""
        alternatives = [{"index": c.alternative, "text": c.text, "emotion": c.reply.emotion} for c in choices]
        if request.rosie.alternative_of is None:
            self.feedback.add_completion(completion_id, request.model, request.user,
                                         stored_conversation(messages, request), alternatives)
            return
        for choice, alternative in zip(choices, alternatives):
            choice.alternative = self.feedback.add_choice(completion_id, alternative)

    def usage(self, choices: list[Choice]) -> dict[str, int]:
        prompt = choices[0].reply.prompt_tokens if choices else 0
        completion = sum(c.reply.tokens for c in choices)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def own_prompt(messages: list[dict[str, Any]], request: Sampling) -> list[dict[str, Any]]:
    """Without a frontend's system messages unless the request asks for them: she keeps her trained prompt."""
    return [m for m in messages if m["role"] != "system" or request.rosie.use_system_prompt]


def stored_conversation(messages: list[dict[str, Any]], request: Sampling) -> list[dict[str, Any]]:
    """The conversation a completion answered, as the feedback store keeps it: with the request's event."""
    event = request.rosie.event
    return messages if event is None else [*messages, {"role": "event", "content": event}]


def completion_id(request: Sampling, prefix: str) -> str:
    """A new completion's id, or for a regenerate the id of the completion it adds alternatives to."""
    return request.rosie.alternative_of or f"{prefix}-{uuid.uuid4().hex}"


def _sse(payload: dict[str, Any] | str) -> bytes:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n".encode()


def create_app(server: Server) -> FastAPI:
    app = FastAPI(title="Rosie", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(400, f"{where or 'the request'}: {first.get('msg', 'invalid')}", param=where)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(exc.status_code, str(exc.detail), kind)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"the server failed on this request ({type(exc).__name__}); see its log",
                              "server_error")

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Any]) -> Any:
        """Host and Origin on loopback, the API key when there is one, bounded bodies, a bounded queue."""
        host = request.headers.get("host", "")
        if server.loopback:
            if host not in {f"{name}:{server.port}" for name in LOCAL_NAMES}:
                return error_response(403, f"Host {host!r} is not this server", "permission_error")
            origin = request.headers.get("origin")
            if origin is not None and origin != f"http://{host}":
                return error_response(403, f"requests from {origin!r} are not accepted", "permission_error")
        if server.api_key is not None and request.url.path != "/health":
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {server.api_key}".encode()):
                return error_response(401, "Incorrect API key provided: send `Authorization: Bearer KEY` with the "
                                      "key the server was started with", code="invalid_api_key")
        if request.method == "POST":
            if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
                return error_response(415, "send the request as application/json")
            declared = request.headers.get("content-length")
            if declared is None or not declared.isascii() or not declared.isdigit():
                return error_response(411, "the request needs a valid Content-Length")
            if int(declared) > MAX_BODY_BYTES:
                return error_response(413, f"the request is over {MAX_BODY_BYTES:,} bytes")
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        """The web chat: streaming replies, her face, events, regenerate and swipes, ratings, her memories."""
        return HTMLResponse(server.page, headers={"Cache-Control": "no-store"})

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        rosie = server.rosie
        return {"model": server.ids[0], "label": rosie.label, "folder": str(rosie.loaded.folder), "user": server.user,
                "events": list(rosie.events), "emotions": list(rosie.loaded.model.config.emotions)}

    @app.get("/api/memories")
    async def memories(user: str) -> dict[str, Any]:
        entries = await server.on_model(server.rosie.memory.list, user)
        return {"user": user, "memories": [{"id": m.id, "kind": m.kind, "text": m.text} for m in entries]}

    @app.delete("/api/memories")
    async def forget_all(user: str) -> dict[str, Any]:
        return {"user": user, "forgotten": await server.on_model(server.rosie.memory.forget, user)}

    @app.delete("/api/memories/{memory_id}")
    async def forget(memory_id: int, user: str) -> dict[str, Any]:
        forgotten = await server.on_model(server.rosie.memory.forget, user, [memory_id])
        if not forgotten:
            raise ApiError(404, f"{user!r} has no memory {memory_id}", "not_found_error", param="memory_id")
        return {"user": user, "forgotten": forgotten}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": server.rosie.label, "waiting": server.waiting}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": i, "object": "model", "created": server.created, "owned_by": "rosie"}
                                           for i in server.ids]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        server.check_model(model_id)
        return {"id": model_id, "object": "model", "created": server.created, "owned_by": "rosie"}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: ChatRequest) -> Any:
        server.check_model(request.model)
        messages = server.conversation(request)
        before = server.validate(messages, request)
        answer_id, created = completion_id(request, "chatcmpl"), int(time.time())
        server.admit()
        if request.stream:
            return StreamingResponse(_stream(server, request, messages, before, answer_id, created, chat=True),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-store"})
        choices = await _answer(server, request, messages, before)
        server.record(answer_id, request, messages, choices)
        return {"id": answer_id, "object": "chat.completion", "created": created, "model": request.model,
                "choices": [{"index": c.index, "message": {"role": "assistant", "content": c.text},
                             "finish_reason": c.finish_reason, "logprobs": None, "rosie": c.extras()}
                            for c in choices],
                "usage": server.usage(choices)}

    @app.post("/v1/completions", response_model=None)
    async def completions(request: CompletionRequest) -> Any:
        """Text completion, for frontends in text mode: a prompt in her own markup is read back into its turns
        (their text stays text, never control tokens); any other prompt is the user's message."""
        server.check_model(request.model)
        messages = server.prompt_conversation(request)
        before = server.validate(messages, request)
        answer_id, created = completion_id(request, "cmpl"), int(time.time())
        server.admit()
        if request.stream:
            return StreamingResponse(_stream(server, request, messages, before, answer_id, created, chat=False),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-store"})
        choices = await _answer(server, request, messages, before)
        server.record(answer_id, request, messages, choices)
        return {"id": answer_id, "object": "text_completion", "created": created, "model": request.model,
                "choices": [{"index": c.index, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None,
                             "rosie": c.extras()} for c in choices],
                "usage": server.usage(choices)}

    @app.post("/tokenize")
    async def tokenize(request: TokenizeRequest) -> dict[str, Any]:
        loaded = server.rosie.loaded
        if (request.prompt is None) == (request.messages is None):
            raise ApiError(400, "send either a 'prompt' (text) or 'messages' (a conversation)", param="prompt")
        if request.prompt is not None:
            ids = loaded.encode_text(request.prompt)
        else:
            ids = await server.on_model(loaded.render, [m.for_rosie() for m in request.messages or []])
        return {"tokens": ids, "count": len(ids), "max_model_len": loaded.model.config.max_seq_len}

    @app.post("/detokenize")
    async def detokenize(request: DetokenizeRequest) -> dict[str, Any]:
        size = server.rosie.loaded.tokenizer.get_vocab_size()
        if bad := [t for t in request.tokens if not 0 <= t < size]:
            raise ApiError(400, f"token ids must be in 0..{size - 1}; got {bad[:5]}", param="tokens")
        return {"prompt": server.rosie.loaded.tokenizer.decode(request.tokens, skip_special_tokens=False)}

    @app.post("/api/classify")
    async def classify(request: ClassifyRequest) -> dict[str, Any]:
        """The emotion her head reads in the text, as SillyTavern's Character Expressions wants it."""
        def scores() -> list[tuple[str, float]]:
            rosie = server.rosie
            messages = rosie.check_messages([{"role": "user", "content": request.text}], None)
            options = dataclasses.replace(rosie.options, max_new_tokens=1)
            return ReplyDecoder(rosie.loaded, rosie.prompt(messages, [], 1), options).emotion_scores
        try:
            ranked = await server.on_model(scores)
        except ChatError as exc:
            raise ApiError(400, str(exc), param="text") from exc
        return {"classification": [{"label": label, "score": round(score, 6)} for label, score in ranked]}

    @app.post("/v1/feedback")
    async def feedback(request: FeedbackRequest) -> dict[str, Any]:
        """A thumbs up/down on one alternative of a completion, or which alternative the user kept."""
        if request.rating is None and not request.kept:
            raise ApiError(400, "say what the feedback is: a 'rating' (up or down) or 'kept': true", param="rating")
        rating = None if request.rating is None else (1 if request.rating == "up" else -1)
        try:
            stored = await asyncio.to_thread(server.feedback.add_feedback, request.id, request.choice, rating,
                                             request.kept)
        except FeedbackError as exc:
            raise ApiError(404 if "no completion" in str(exc) else 400, str(exc), param="id") from exc
        return {"id": stored.id, "object": "feedback", "completion_id": stored.completion_id, "choice": stored.choice,
                "rating": request.rating, "kept": stored.kept}

    return app


async def _answer(server: Server, request: Sampling, messages: list[dict[str, Any]], before: int) -> list[Choice]:
    """The alternatives of an admitted request (released here)."""
    try:
        return await server.alternatives(messages, request, before)
    except ChatInputError as exc:
        raise ApiError(400, str(exc), param="messages") from exc
    except (ChatError, ValueError) as exc:
        raise ApiError(400, str(exc)) from exc
    finally:
        server.release()


async def _stream(server: Server, request: Sampling, messages: list[dict[str, Any]], before: int, answer_id: str,
                  created: int, chat: bool) -> AsyncIterator[bytes]:
    """The completion as server-sent events: per alternative a first chunk with her emotion (and, for a chat,
    the role), the text in pieces, a last chunk with the finish reason, memories and facts; then usage if
    asked; [DONE]. ``chat``: chat completion chunks (``delta``), else text completion chunks (``text``)."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(index: int, text: str | None, finish: str | None = None, extras: dict[str, Any] | None = None,
              first: bool = False) -> bytes:
        choice: dict[str, Any] = {"index": index, "finish_reason": finish, "logprobs": None}
        if chat:
            choice["delta"] = {"role": "assistant", "content": ""} if first else (
                {} if text is None else {"content": text})
        else:
            choice["text"] = text or ""
        if extras is not None:
            choice["rosie"] = extras
        return _sse({"id": answer_id, "object": kind, "created": created, "model": request.model,
                     "choices": [choice]})

    async def on_start(index: int, emotion: str) -> None:
        await queue.put(chunk(index, None, extras={"emotion": emotion}, first=True))

    async def on_piece(index: int, text: str) -> None:
        await queue.put(chunk(index, text))

    async def produce() -> None:
        try:
            choices = await server.alternatives(messages, request, before, on_piece, on_start)
            await asyncio.to_thread(server.record, answer_id, request, messages, choices)
            for c in choices:
                await queue.put(chunk(c.index, None, c.finish_reason, c.extras()))
            if (request.stream_options or {}).get("include_usage"):
                await queue.put(_sse({"id": answer_id, "object": kind, "created": created,
                                      "model": request.model, "choices": [], "usage": server.usage(choices)}))
        except (ChatError, ValueError, ApiError) as exc:
            error = exc if isinstance(exc, ApiError) else ApiError(400, str(exc))
            await queue.put(_sse({"error": {"message": error.message, "type": error.type, "param": error.param,
                                            "code": error.code}}))
        finally:
            await queue.put(None)

    task = asyncio.create_task(produce())
    try:
        while (item := await queue.get()) is not None:
            yield item
        yield _sse("[DONE]")
    finally:
        task.cancel()  # the client went away: the producer stops at its next token
        server.release()


def run(rosie: Rosie, feedback: FeedbackStore, host: str = "127.0.0.1", port: int = 8000,
        api_key: str | None = None, max_waiting: int = 16, user: str = "local", web: bool = False) -> int:
    """Serve until Ctrl-C or SIGTERM. ``web``: announce the chat page (``rosie web``) rather than the API."""
    import uvicorn

    loopback = host in ("127.0.0.1", "::1", "localhost")
    server = Server(rosie, feedback, api_key=api_key, loopback=loopback, port=port, max_waiting=max_waiting, user=user)
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    key = ", API key required" if api_key else ""
    if web:
        print(f"rosie web: chat with {rosie.label} on {base}/ as {user!r} (the OpenAI API on {base}/v1{key}); "
              "Ctrl-C stops", flush=True)
    else:
        print(f"rosie serve: {rosie.label} on {base}/v1 (OpenAI API{key}; the web chat on {base}/); feedback in "
              f"{feedback.path}; Ctrl-C stops", flush=True)
    # uvicorn installs its own SIGINT/SIGTERM handlers (so an ignored SIGTERM inherited from a launcher does not
    # stick); a stream still open at shutdown gets a few seconds, not forever
    uvicorn.run(create_app(server), host=host, port=port, log_level="warning", timeout_keep_alive=30,
                timeout_graceful_shutdown=5)
    return 0

