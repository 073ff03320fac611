"""Rosie as an MLflow pyfunc chat model (logged as *models from code*: this file is the model, no pickle).

Input: rows with ``messages`` (a list of ``{role, content}``; roles user / rosie / system / event) and an
optional ``event`` (a desktop event to add as the newest turn). Output: ``reply`` and ``emotion``.
"""

from __future__ import annotations


import mlflow
import pandas as pd

from rosie_model.generate import emotion_of, generate, load_rosie


class RosieChatModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.rosie = load_rosie(context.artifacts["model_dir"])

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        # (no type hints: MLflow turns predict's hints into a schema; the signature is logged explicitly)
        rows = model_input.to_dict("records") if isinstance(model_input, pd.DataFrame) else (
            [model_input] if isinstance(model_input, dict) else list(model_input))
        params = params or {}
        replies = []
        for row in rows:
            messages = [dict(m) for m in row.get("messages") or []]
            if row.get("event"):
                messages.append({"role": "event", "content": row["event"]})
            prompt_system = self.rosie.settings.get("rosie_system_prompt")
            if prompt_system and not any(m.get("role") == "system" for m in messages):
                messages.insert(0, {"role": "system", "content": prompt_system})
            prompt = self.rosie.render(messages)
            ids, states = generate(self.rosie, prompt, max_new_tokens=int(params.get("max_new_tokens", 48)),
                                   temperature=float(params.get("temperature", 0.0)))
            replies.append({"reply": self.rosie.tokenizer.decode(ids, skip_special_tokens=True).strip(),
                            "emotion": emotion_of(self.rosie, states)})
        return pd.DataFrame(replies, columns=["reply", "emotion"])


mlflow.models.set_model(RosieChatModel())
