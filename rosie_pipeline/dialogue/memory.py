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
from rosie_pipeline.scorecard import asks_held_out

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


JOBS = ("teacher", "baker", "mechanic", "pilot", "plumber", "designer", "chef", "librarian")


def random_fact(rng: random.Random) -> Fact:
    """A fact the user states, stored as the memory store writes it, asked back in one of several wordings."""
    kind = rng.randrange(8)
    if kind == 0:
        name = rng.choice(NAMES)
        return Fact(rng.choice((f"By the way, my name is {name}.", f"Hi, my name is {name}!", f"Call me {name}.")),
                    f"The user's name is {name}.",
                    rng.choice(("Do you remember my name?", "Who am I?", "What do you call me?", "Can you tell me my name?")),
                    rng.choice((f"Of course! You're {name}. 💕", f"You're {name}!", f"{name}! How could I forget?")))
    if kind == 1:
        animal, pet = rng.choice(ANIMALS), rng.choice(PET_NAMES)
        told = f"I have a {animal} {rng.choice(('called', 'named'))} {pet}."
        if rng.random() < 0.5:
            return Fact(told, f"The user has a {animal} named {pet}.",
                        rng.choice(("What's my pet called again?", f"What's my {animal}'s name?",
                                    f"Do you remember my {animal}'s name?")),
                        rng.choice((f"{pet}! Your {animal}. Give {pet} a pat from me!", f"Your {animal} is {pet}!")))
        return Fact(told, f"The user has a {animal} named {pet}.",
                    rng.choice(("What kind of pet do I have?", "What animal do I have at home?")),
                    rng.choice((f"A {animal}! {pet}, right?", f"You have a {animal} called {pet}!")))
    if kind == 2:
        colour = rng.choice(COLOURS)
        return Fact(f"My favourite colour is {colour}.", f"The user's favourite colour is {colour}.",
                    rng.choice(("What's my favourite colour?", "Which colour do I like best?")),
                    rng.choice((f"It's {colour}! Good taste.", f"{colour.capitalize()}! I remember.")))
    if kind == 3:
        food = rng.choice(FOODS)
        return Fact(f"I could eat {food} every day.", f"The user's favourite food is {food}.",
                    rng.choice(("What's my favourite food?", "What could I eat every day?")),
                    rng.choice((f"{food.capitalize()}! Now I'm hungry too.", f"You love {food}!")))
    if kind == 4:
        place, day = rng.choice(PLACES), rng.choice(DAYS)
        stored, answered = (place.replace("my ", "their ", 1), place.replace("my ", "your ", 1))  # whose grandma
        return Fact(f"I'm going to {place} on {day}.", f"The user is going to {stored} on {day}.",
                    rng.choice((f"Where am I going on {day}?", f"What are my plans for {day}?")),
                    rng.choice((f"To {answered}! Have a wonderful time.", f"You're going to {answered}!")))
    if kind == 5:
        city = rng.choice(CITIES)
        return Fact(f"I live in {city}.", f"The user lives in {city}.",
                    rng.choice(("Which city do I live in?", "Where do I live?", "Do you know where I live?")),
                    rng.choice((f"{city}! I'd love to see it one day.", f"You live in {city}!")))
    if kind == 6:
        job = rng.choice(JOBS)
        return Fact(f"I work as a {job}.", f"The user works as a {job}.",
                    rng.choice(("What do I do for work?", "Do you remember my job?", "What is my job?")),
                    rng.choice((f"You're a {job}! That's so cool.", f"You work as a {job}!")))
    hobby = rng.choice(HOBBIES)
    return Fact(f"Lately I've been really into {hobby}.", f"The user's hobby is {hobby}.",
                rng.choice(("What hobby did I tell you about?", "What am I into lately?")),
                rng.choice((f"{hobby.capitalize()}! How's it going?", f"You're into {hobby}!")))


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
            if asks_held_out(fact.question):  # the scorecard asks that one
                continue
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
        # the answers carry no emotion label: how she feels about a recalled fact is not the fact's to say
        questions = [turn for fact in asked for turn in (Turn("user", fact.question), Turn("rosie", fact.answer))]
        turns = [*middle, *questions]
        yield make_dialogue(SOURCE, f"memory-{seed}-{n}", [Turn("system", system_prompt), *turns],
                            memory=[f.memory for f in facts], split=split_for(turns, val_permille))
