"""How a model's chat template wraps each kind of turn, read off the template itself, and the two things
text-completion frontends need from it: a prompt they built in that markup read back into turns, and
SillyTavern presets that build such prompts.

The wraps are found by rendering one placeholder message per role, so they hold for whatever markup the
model folder carries (Rosie's own speaker tokens, ChatML on the bootstrap path) without knowing it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rosie_model.serving.generate import LoadedRosie

#: Stands in for a message's text while the template renders (a private-use code point).
_PLACE = "\ue002"
_EMOTION = re.compile(r"<\|emotion:[a-z_]+\|>")


@dataclass(frozen=True)
class Wrap:
    before: str
    after: str


@dataclass(frozen=True)
class TurnMarkup:
    """``system``, ``user``: the text around such a message; ``rosie``: around her words, without her emotion
    token (which her decoder adds); ``events``: each event's whole turn; ``end``: what closes a conversation."""

    system: Wrap
    user: Wrap
    rosie: Wrap
    events: dict[str, str]
    end: str

    @classmethod
    def of(cls, loaded: LoadedRosie) -> TurnMarkup:
        def render(messages: list[dict[str, Any]], generation: bool = True) -> str:
            return loaded.template.render(messages=messages, add_generation_prompt=generation)

        opening = render([])  # the generation prompt alone

        def block(role: str, content: str = _PLACE) -> str:
            text = render([{"role": role, "content": content, "emotion": None}])
            return text[: len(text) - len(opening)] if opening and text.endswith(opening) else text

        def wrap(role: str) -> Wrap:
            before, _, after = _EMOTION.sub("", block(role)).partition(_PLACE)
            return Wrap(before, after)

        end = render([], generation=False)
        return cls(wrap("system"), wrap("user"), wrap("rosie"), {e: block("event", e) for e in loaded.events}, end)

    def parse(self, prompt: str) -> list[dict[str, Any]] | None:
        """The turns of a prompt written in this markup (as a frontend's instruct preset writes it), her open
        turn at the end left out; None when the prompt has none of its markers. The contents stay text: they
        are encoded as people's words, so a marker inside a message cannot become a control token, only a
        turn boundary, as in any text-completion backend."""
        markers = {self.system.before: ("system", ""), self.user.before: ("user", ""), self.rosie.before: ("rosie", ""),
                   **{text: ("event", name) for name, text in self.events.items()}}
        markers.pop("", None)
        pattern = re.compile("|".join(re.escape(m) for m in sorted(markers, key=len, reverse=True)))
        found = list(pattern.finditer(prompt))
        if not found:
            return None
        turns: list[dict[str, Any]] = []
        if (lead := prompt[: found[0].start()].strip()) and lead != self.end.strip():
            turns.append({"role": "user", "content": lead})
        for k, match in enumerate(found):
            role, event = markers[match.group()]
            if role == "event":
                turns.append({"role": "event", "content": event})
                continue
            body = prompt[match.end() : found[k + 1].start() if k + 1 < len(found) else len(prompt)]
            body = _EMOTION.sub("", body).replace(self.end, "").rstrip()
            body = body.removesuffix(getattr(self, role).after.strip())
            turns.append({"role": role, "content": body.strip()})
        if turns and turns[-1]["role"] == "rosie" and not turns[-1]["content"]:
            turns.pop()  # her open turn: what the frontend asks to be completed
        return [t for t in turns if t["role"] == "event" or t["content"]]

    def sillytavern(self, name: str, system_prompt: str) -> dict[str, dict[str, Any]]:
        """SillyTavern's context template, instruct template and system prompt for text-completion mode, in
        the fields its preset files have (Advanced Formatting → import)."""
        story = ("{{#if system}}{{system}}\n{{/if}}{{#if description}}{{description}}\n{{/if}}"
                 "{{#if personality}}{{char}}'s personality: {{personality}}\n{{/if}}"
                 "{{#if scenario}}Scenario: {{scenario}}\n{{/if}}{{#if persona}}{{persona}}\n{{/if}}{{trim}}")
        context = {"name": name, "story_string": self.system.before + story + self.system.after,
                   "example_separator": "", "chat_start": "", "use_stop_strings": False, "names_as_stop_strings": False,
                   "always_force_name2": False, "trim_sentences": False, "single_line": False}
        stops = [s.strip() or s for s in (self.end, self.user.before, self.system.before) if s]
        instruct = {"name": name, "input_sequence": self.user.before, "input_suffix": self.user.after,
                    "output_sequence": self.rosie.before, "output_suffix": self.rosie.after,
                    "system_sequence": self.system.before, "system_suffix": self.system.after,
                    "last_output_sequence": "", "first_output_sequence": "", "last_system_sequence": "",
                    "system_sequence_prefix": "", "system_sequence_suffix": "", "stop_sequence": stops[0],
                    "wrap": False, "macro": True, "names_behavior": "none", "activation_regex": "",
                    "skip_examples": False, "user_alignment_message": "", "system_same_as_user": False,
                    "sequences_as_stop_strings": True}
        return {"context": context, "instruct": instruct, "sysprompt": {"name": name, "content": system_prompt}}
