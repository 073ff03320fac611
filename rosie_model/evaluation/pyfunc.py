"""Rosie as an MLflow 3 ``ResponsesAgent`` (logged as *models from code*: this file is the model, no pickle).

``ResponsesAgent`` is MLflow 3's chat-model interface (``ChatModel`` is deprecated since 3.0), and the one
that carries a model's own extras both ways, which Rosie has:

- request: ``input`` messages (roles user / assistant / system; assistant is Rosie), ``temperature``,
  ``top_p``, ``max_output_tokens``; ``context.user_id`` (or ``custom_inputs.user_id``) is the long-term
  memory user; ``custom_inputs`` may hold ``event`` (a desktop event after the messages), ``persona``,
  ``top_k``, ``repetition_penalty`` and ``seed``;
- response: one assistant message, and ``custom_outputs`` with the ``emotion`` she shows, the
  ``memories`` recalled and the facts ``learned``.

``predict_stream`` sends the emotion first (in the first event's ``custom_outputs``), then text deltas, then
the done item. Replies come from the same chat API as ``rosie chat`` and ``rosie serve``.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator
from typing import Any

import mlflow
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentRequest, ResponsesAgentResponse, ResponsesAgentStreamEvent

from rosie_model.serving.chat import Reply, Rosie
from rosie_model.serving.generate import SamplingOptions


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


class RosieAgent(ResponsesAgent):
    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.rosie = Rosie.load(context.artifacts["model_dir"])

    def _ask(self, request: ResponsesAgentRequest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(Rosie's messages, the keyword arguments of ``Rosie.reply``) for a request."""
        messages = [item.model_dump() if hasattr(item, "model_dump") else dict(item) for item in request.input]
        turns = [{"role": m["role"], "content": _text(m.get("content"))} for m in messages
                 if m.get("type", "message") == "message"]
        extras = dict(request.custom_inputs or {})
        base = self.rosie.options
        options = SamplingOptions(
            max_new_tokens=int(request.max_output_tokens or base.max_new_tokens),
            temperature=base.temperature if request.temperature is None else float(request.temperature),
            top_p=base.top_p if request.top_p is None else float(request.top_p),
            top_k=int(extras.get("top_k", base.top_k)),
            repetition_penalty=float(extras.get("repetition_penalty", base.repetition_penalty)),
            seed=int(extras["seed"]) if extras.get("seed") is not None else base.seed)
        user = (request.context.user_id if request.context else None) or extras.get("user_id")
        return turns, {"event": extras.get("event") or None, "user_id": user, "options": options,
                       "persona": int(extras.get("persona", 0))}

    @staticmethod
    def _extras(reply: Reply) -> dict[str, Any]:
        return {"emotion": reply.emotion, "memories": list(reply.memories), "learned": list(reply.learned)}

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        turns, ask = self._ask(request)
        reply = self.rosie.reply(turns, **ask)
        return ResponsesAgentResponse(output=[self.create_text_output_item(reply.text, str(uuid.uuid4()))],
                                      custom_outputs=self._extras(reply))

    def predict_stream(self, request: ResponsesAgentRequest) -> Generator[ResponsesAgentStreamEvent, None, None]:
        turns, ask = self._ask(request)
        stream = self.rosie.reply(turns, stream=True, **ask)
        item_id = str(uuid.uuid4())
        first = True
        for piece in stream:
            event = self.create_text_delta(piece, item_id)
            if first:  # the face comes with her first words, before the rest of them
                event["custom_outputs"] = {"emotion": stream.emotion}
                first = False
            yield ResponsesAgentStreamEvent(**event)
        reply = stream.result
        yield ResponsesAgentStreamEvent(type="response.output_item.done", custom_outputs=self._extras(reply),
                                        item=self.create_text_output_item(reply.text, item_id))


mlflow.models.set_model(RosieAgent())
