"""``rosie chat``: talk to Rosie in the terminal, her reply streamed as it is decoded, her emotion shown.

Slash commands: ``/drag``, ``/poke``, ``/pet`` (any of her events) send a desktop event; ``/reset``
starts a new conversation (long-term memory stays); ``/memory`` lists what she remembers about you;
``/forget ID|all`` deletes memories; ``/help``; ``/quit`` (or Ctrl-D).
"""

from __future__ import annotations

import io
import sys
from typing import Any, TextIO

from rosie_model.serving.chat import ChatError, Reply, Rosie

FACES = {"neutral": "•_•", "happy": "^_^", "excited": "★o★", "love": "♥‿♥", "surprised": "O_O", "curious": "o_O",
         "shy": ">///<", "sad": "T_T", "angry": ">_<", "scared": "°□°"}


def memory_lines(rosie: Rosie, user_id: str) -> list[str]:
    entries = rosie.memory.list(user_id)
    if not entries:
        return ["(Rosie remembers nothing about you yet)"]
    return [f"  [{m.id}] {m.kind:4}  {m.text}" for m in entries]


class TerminalChat:
    """One terminal conversation; ``handle`` takes a line the user typed and prints the outcome."""

    def __init__(self, rosie: Rosie, user_id: str, out: TextIO = sys.stdout) -> None:
        self.rosie, self.user_id, self.out = rosie, user_id, out
        self.history: list[dict[str, Any]] = []

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def banner(self) -> None:
        events = " ".join(f"/{e}" for e in self.rosie.events)
        self.say(f"Rosie is here ({self.rosie.label}, talking with {self.user_id}). Type a message and press Enter.\n"
                 f"  events: {events}\n  /reset new conversation · /memory what she remembers · "
                 "/forget ID|all · /help · /quit")

    def handle(self, line: str) -> bool:
        """Act on one input line; False when the user wants to leave."""
        line = line.strip()
        if not line:
            return True
        if line.startswith("/"):
            return self.command(line[1:])
        self.respond([*self.history, {"role": "user", "content": line}], None)
        return True

    def command(self, text: str) -> bool:
        name, _, argument = text.partition(" ")
        if name in ("quit", "exit", "bye"):
            return False
        if name == "help":
            self.banner()
        elif name == "reset":
            self.history = []
            self.say("(new conversation; what Rosie remembers about you stays: /memory)")
        elif name == "memory":
            for entry in memory_lines(self.rosie, self.user_id):
                self.say(entry)
        elif name == "forget":
            self.forget(argument.strip())
        elif name in self.rosie.events:
            self.respond(self.history, name)
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

    def respond(self, messages: list[dict[str, Any]], event: str | None) -> Reply | None:
        try:
            stream = self.rosie.reply(messages, event=event, user_id=self.user_id, stream=True)
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
        sent = messages[len(self.history):] if event is None else [{"role": "event", "content": event}]
        self.history = [*self.history, *sent, {"role": "rosie", "content": reply.text, "emotion": reply.emotion}]
        return reply


def run(rosie: Rosie, user_id: str) -> int:
    if isinstance(sys.stdin, io.TextIOWrapper):  # bytes that are not UTF-8 become U+FFFD, not a crash
        sys.stdin.reconfigure(errors="replace")
    chat = TerminalChat(rosie, user_id)
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
