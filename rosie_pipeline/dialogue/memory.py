"""Memory dialogues: the user tells Rosie facts, talks about other things, and much later asks.

The turns where the facts were stated are cut from the dialogue; the facts travel only in the
``memory`` column, so only memory attention (or, on the bootstrap path, a ``<|memory|>`` block) can
answer. Real conversations (chitchat) fill the middle as distractors. A deterministic share is held
out to measure recall.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rosie_pipeline.chat_format import Turn
from rosie_pipeline.dialogue.importers import Imported
from rosie_pipeline.dialogue.personality import NAMES
from rosie_pipeline.dialogue.schema import make_dialogue, split_for

SOURCE = "memory"
ANIMALS = ("cat", "dog", "rabbit", "parrot", "hamster", "turtle", "goldfish", "lizard")
PET_NAMES = ("Biscuit", "Pepper", "Luna", "Mochi", "Ziggy", "Pickles", "Olive", "Nugget", "Comet", "Maple")
COLOURS = ("blue", "green", "purple", "orange", "yellow", "red", "teal", "pink")
FOODS = ("pizza", "sushi", "pancakes", "tacos", "ramen", "lasagna", "dumplings", "curry")
CITIES = ("Lisbon", "Osaka", "Toronto", "Nairobi", "Oslo", "Melbourne", "Lima", "Prague")
PLACES = ("the beach", "my grandma's house", "a concert", "the mountains", "the museum", "a wedding")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
HOBBIES = ("painting", "chess", "rock climbing", "baking", "the guitar", "knitting", "running")


@dataclass(frozen=True)
class Fact:
    statement: str  # what the user said
    memory: str  # how Rosie stores it
    question: str  # what the user asks later
    answer: str  # what Rosie should reply


def random_fact(rng: random.Random) -> Fact:
    kind = rng.randrange(6)
    if kind == 0:
        name = rng.choice(NAMES)
        return Fact(f"By the way, my name is {name}.", f"The user's name is {name}.", "Do you remember my name?",
                    f"Of course! You're {name}. 💕")
    if kind == 1:
        animal, pet = rng.choice(ANIMALS), rng.choice(PET_NAMES)
        if rng.random() < 0.5:
            return Fact(f"I have a {animal} called {pet}.", f"The user has a {animal} named {pet}.",
                        "What's my pet called again?", f"{pet}! Your {animal}. Give {pet} a pat from me!")
        return Fact(f"I have a {animal} called {pet}.", f"The user has a {animal} named {pet}.",
                    "What kind of pet do I have?", f"A {animal}! {pet}, right?")
    if kind == 2:
        colour = rng.choice(COLOURS)
        return Fact(f"My favourite colour is {colour}.", f"The user's favourite colour is {colour}.",
                    "What's my favourite colour?", f"It's {colour}! Good taste.")
    if kind == 3:
        food = rng.choice(FOODS)
        return Fact(f"I could eat {food} every day.", f"The user's favourite food is {food}.",
                    "What's my favourite food?", f"{food.capitalize()}! Now I'm hungry too.")
    if kind == 4:
        place, day = rng.choice(PLACES), rng.choice(DAYS)
        stored, answered = (place.replace("my ", "their ", 1), place.replace("my ", "your ", 1))  # whose grandma
        return Fact(f"I'm going to {place} on {day}.", f"The user is going to {stored} on {day}.",
                    f"Where am I going on {day}?", f"To {answered}! Have a wonderful time.")
    if rng.random() < 0.5:
        city = rng.choice(CITIES)
        return Fact(f"I live in {city}.", f"The user lives in {city}.", "Which city do I live in?",
                    f"{city}! I'd love to see it one day.")
    hobby = rng.choice(HOBBIES)
    return Fact(f"Lately I've been really into {hobby}.", f"The user's hobby is {hobby}.",
                "What hobby did I tell you about?", f"{hobby.capitalize()}! How's it going?")


def memory_dialogues(system_prompt: str, distractors: list[Imported], count: int, val_permille: int,
                     seed: int = 0, max_facts: int = 3, distractor_turns: tuple[int, int] = (2, 6)) -> Iterator[dict[str, Any]]:
    """``count`` dialogues: facts cut from the context, distractor turns, then a question about each fact in
    turn (so every dialogue teaches recall once per fact, and the answers must pick the right one)."""
    rng = random.Random(seed)
    pool = [turn for item in distractors for turn in item.turns]
    for n in range(count):
        facts: list[Fact] = []
        while len(facts) < rng.randint(1, max_facts):
            fact = random_fact(rng)
            if all(f.memory.split(" ")[:3] != fact.memory.split(" ")[:3] for f in facts):  # one fact per kind
                facts.append(fact)
        asked = rng.sample(facts, len(facts))
        middle: list[Turn] = []
        if pool:
            start = rng.randrange(len(pool))
            middle = pool[start : start + rng.randint(*distractor_turns)]
            while middle and middle[0].role != "user":
                middle = middle[1:]
            while middle and middle[-1].role != "rosie":  # the user's question comes next
                middle = middle[:-1]
        questions = [turn for fact in asked for turn in (Turn("user", fact.question), Turn("rosie", fact.answer, "happy"))]
        turns = [*middle, *questions]
        yield make_dialogue(SOURCE, f"memory-{seed}-{n}", [Turn("system", system_prompt), *turns],
                            memory=[f.memory for f in facts], split=split_for(turns, val_permille))
