"""``rosie chat``: talk to Rosie in the terminal, her reply streamed as it is decoded, her emotion shown.

Slash commands: ``/drag``, ``/poke``, ``/pet`` (any of her events) send a desktop event; ``/reset``
starts a new conversation (long-term memory stays); ``/memory`` lists what she remembers about you;
``/forget ID|all`` deletes memories; ``/retry`` replaces her last reply with another one; ``/good`` and
``/bad`` rate the reply shown; ``/help``; ``/quit`` (or Ctrl-D).

Every reply goes into the feedback store (``$ROSIE_HOME/feedback``, the one ``rosie serve`` writes) with the
conversation it answered, so ratings and regenerated replies become preference data: the alternative the
user goes on talking from is marked kept over the ones retried away.
"""

from __future__ import annotations

import dataclasses
import io
import sys
import uuid
from dataclasses import dataclass
from typing import Any, TextIO

from rosie_model.serving.chat import ChatError, Reply, Rosie
from rosie_model.serving.generate import SamplingOptions
from rosie_model.serving.feedback import FeedbackStore

#: /retry samples at this temperature when her own settings are greedy (greedy would say the same again).
RETRY_TEMPERATURE = 0.8

FACES = {"neutral": "•_•", "happy": "^_^", "excited": "★o★", "love": "♥‿♥", "surprised": "O_O", "curious": "o_O",
         "shy": ">///<", "sad": "T_T", "angry": ">_<", "scared": "°□°"}


def memory_lines(rosie: Rosie, user_id: str) -> list[str]:
    entries = rosie.memory.list(user_id)
    if not entries:
        return ["(Rosie remembers nothing about you yet)"]
    return [f"  [{m.id}] {m.kind:4}  {m.text}" for m in entries]


@dataclass
class Turn:
    """Her last reply as the feedback store knows it: what it answered and which alternative is shown."""

    completion_id: str
    before: list[dict[str, Any]]  # the history before the user's message (or event) it answered
    sent: list[dict[str, Any]]  # that message, or the event
    alternatives: int = 1

    @property
    def shown(self) -> int:
        """The alternative on screen: the newest (a retry replaces the reply shown)."""
        return self.alternatives - 1


class TerminalChat:
    """One terminal conversation; ``handle`` takes a line the user typed and prints the outcome."""

    def __init__(self, rosie: Rosie, user_id: str, out: TextIO = sys.stdout, feedback: FeedbackStore | None = None) -> None:
        self.rosie, self.user_id, self.out, self.feedback = rosie, user_id, out, feedback
        self.history: list[dict[str, Any]] = []
        self.turn: Turn | None = None

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def banner(self) -> None:
        events = " ".join(f"/{e}" for e in self.rosie.events)
        self.say(f"Rosie is here ({self.rosie.label}, talking with {self.user_id}). Type a message and press Enter.\n"
                 f"  events: {events}\n  /retry another reply · /good /bad rate it · /reset new conversation · "
                 "/memory what she remembers · /forget ID|all · /help · /quit")

    def handle(self, line: str) -> bool:
        """Act on one input line; False when the user wants to leave."""
        line = line.strip()
        if not line:
            return True
        if line.startswith("/"):
            return self.command(line[1:])
        self.respond([{"role": "user", "content": line}])
        return True

    def command(self, text: str) -> bool:
        name, _, argument = text.partition(" ")
        if name in ("quit", "exit", "bye"):
            return False
        if name == "help":
            self.banner()
        elif name == "reset":
            self.history, self.turn = [], None
            self.say("(new conversation; what Rosie remembers about you stays: /memory)")
        elif name == "memory":
            for entry in memory_lines(self.rosie, self.user_id):
                self.say(entry)
        elif name == "forget":
            self.forget(argument.strip())
        elif name == "retry":
            self.retry()
        elif name in ("good", "bad"):
            self.rate(1 if name == "good" else -1)
        elif name in self.rosie.events:
            self.respond([{"role": "event", "content": name}])
        else:
            self.say(f"rosie: unknown command /{name}; try /help")
        return True

    def forget(self, argument: str) -> None:
        if argument == "all":
            count = self.rosie.memory.forget(self.user_id)
        elif argument.isdigit():
            count = self.rosie.memory.forget(self.user_id, [int(argument)])
        else:
            self.say("rosie: /forget takes a memory id (see /memory) or 'all'")
            return
        self.say(f"(forgot {count} {'memory' if count == 1 else 'memories'})")

    def respond(self, sent: list[dict[str, Any]]) -> Reply | None:
        """Her reply to ``sent`` (the user's message, or an event) after the conversation so far."""
        if self.turn is not None and self.turn.alternatives > 1 and self.feedback is not None:
            # going on from a retried reply keeps it over the alternatives retried away
            self.feedback.add_feedback(self.turn.completion_id, self.turn.shown, None, kept=True)
        before = self.history
        reply = self._speak(before, sent, self.rosie.options, remember=True)
        if reply is not None:
            completion_id = f"chat-{uuid.uuid4().hex}"
            if self.feedback is not None:
                self.feedback.add_completion(completion_id, self.rosie.label, self.user_id, [*before, *sent],
                                             [{"index": 0, "text": reply.text, "emotion": reply.emotion}])
            self.turn = Turn(completion_id, before, sent)
        return reply

    def retry(self) -> None:
        """Another reply to the message her last one answered, in its place (recalling, not learning again)."""
        turn = self.turn
        if turn is None:
            self.say("rosie: nothing to retry yet; say something first")
            return
        options = self.rosie.options
        seed = None if options.seed is None else options.seed + turn.alternatives  # unseeded: random anyway
        options = dataclasses.replace(options, seed=seed, temperature=options.temperature or RETRY_TEMPERATURE)
        reply = self._speak(turn.before, turn.sent, options, remember=False)
        if reply is None:
            return
        if self.feedback is not None:
            self.feedback.add_choice(turn.completion_id, {"text": reply.text, "emotion": reply.emotion})
        turn.alternatives += 1

    def rate(self, rating: int) -> None:
        if self.turn is None:
            self.say("rosie: no reply to rate yet")
            return
        if self.feedback is None:
            self.say("rosie: ratings are not kept in this chat (no feedback store)")
            return
        self.feedback.add_feedback(self.turn.completion_id, self.turn.shown, rating, kept=False)
        self.say(f"(noted: {'👍' if rating > 0 else '👎'} for that reply; ratings teach the next Rosie)")

    def _speak(self, before: list[dict[str, Any]], sent: list[dict[str, Any]], options: SamplingOptions,
               remember: bool) -> Reply | None:
        """Stream her reply to ``before`` + ``sent``; on success the history becomes that plus her reply."""
        event = sent[0]["content"] if sent[0]["role"] == "event" else None
        messages = before if event is not None else [*before, *sent]  # an event goes in as ``event``
        try:
            stream = self.rosie.reply(messages, event=event, user_id=self.user_id, stream=True, options=options,
                                      remember=remember)
        except ChatError as exc:
            self.say(f"rosie: {exc}")
            return None
        print(f"rosie ({stream.emotion} {FACES.get(stream.emotion, '')})> ", end="", file=self.out, flush=True)
        try:
            for piece in stream:
                print(piece, end="", file=self.out, flush=True)
            reply = stream.result
        except ChatError as exc:
            self.say(f"\nrosie: {exc}")
            return None
        self.say("")
        if reply.learned:
            self.say(f"  (remembered: {'; '.join(reply.learned)})")
        self.history = [*before, *sent, {"role": "rosie", "content": reply.text, "emotion": reply.emotion}]
        return reply


def run(rosie: Rosie, user_id: str, feedback: FeedbackStore | None = None) -> int:
    if isinstance(sys.stdin, io.TextIOWrapper):  # bytes that are not UTF-8 become U+FFFD, not a crash
        sys.stdin.reconfigure(errors="replace")
    chat = TerminalChat(rosie, user_id, feedback=feedback)
    chat.banner()
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            chat.say("\nbye! 👋")
            return 0
        if not chat.handle(line):
            chat.say("bye! 👋")
            return 0
