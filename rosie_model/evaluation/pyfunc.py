"""Rosie as an MLflow pyfunc chat model (logged as *models from code*: this file is the model, no pickle).

Input: rows with ``messages`` (a list of ``{role, content}``; roles user / rosie / system / event) and an
optional ``event`` (a desktop event to add as the newest turn). Output: ``reply`` and ``emotion``.
Params: ``max_new_tokens``, ``temperature`` (0, the default, is greedy), ``top_k``, ``top_p``,
``repetition_penalty``, ``seed``. Replies come from the same chat API as ``rosie chat``.
"""

from __future__ import annotations

import mlflow
import pandas as pd

from rosie_model.serving.chat import Rosie
from rosie_model.serving.generate import GREEDY, SamplingOptions


class RosieChatModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.rosie = Rosie.load(context.artifacts["model_dir"])

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        # (no type hints: MLflow turns predict's hints into a schema; the signature is logged explicitly)
        rows = model_input.to_dict("records") if isinstance(model_input, pd.DataFrame) else (
            [model_input] if isinstance(model_input, dict) else list(model_input))
        params = params or {}
        options = SamplingOptions(
            max_new_tokens=int(params.get("max_new_tokens", 48)), temperature=float(params.get("temperature", 0.0)),
            top_k=int(params.get("top_k", GREEDY.top_k)), top_p=float(params.get("top_p", GREEDY.top_p)),
            repetition_penalty=float(params.get("repetition_penalty", GREEDY.repetition_penalty)),
            seed=int(params["seed"]) if params.get("seed") is not None else None)
        replies = []
        for row in rows:
            messages = [dict(m) for m in row.get("messages") or []]
            event = row.get("event")  # a DataFrame turns a missing event into NaN
            reply = self.rosie.reply(messages, event=event if isinstance(event, str) and event else None,
                                     options=options)
            replies.append({"reply": reply.text, "emotion": reply.emotion})
        return pd.DataFrame(replies, columns=["reply", "emotion"])


mlflow.models.set_model(RosieChatModel())
