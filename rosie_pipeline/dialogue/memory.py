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
ANIMALS = ("cat", "dog", "rabbit", "parrot", "hamster", "turtle", "goldfish", "lizard", "ferret", "pony", "snake",
           "guinea pig", "budgie", "tortoise")
PET_NAMES = ("Biscuit", "Pepper", "Luna", "Mochi", "Ziggy", "Pickles", "Olive", "Nugget", "Comet", "Maple", "Pretzel",
             "Noodle", "Bean", "Sprout", "Waffle", "Ginger", "Shadow", "Bubbles", "Peanut", "Clementine")
USER_NAMES = (*NAMES, "Harold", "Imogen", "Rafael", "Beatrix", "Dmitri", "Fatima", "Gustav", "Hana", "Ingrid", "Joaquin",
              "Keziah", "Lorcan", "Marisol", "Nikolai", "Ottilie", "Percy", "Rosalind", "Soren", "Tamsin", "Wilhelmina")
COLOURS = ("blue", "green", "purple", "orange", "yellow", "red", "teal", "pink", "gold", "lilac", "maroon", "turquoise",
           "navy", "mint green", "coral", "black")
FOODS = ("pizza", "sushi", "pancakes", "tacos", "ramen", "lasagna", "dumplings", "curry", "risotto", "falafel",
         "burritos", "pho", "waffles", "goulash", "bibimbap", "croissants")
CITIES = ("Lisbon", "Osaka", "Toronto", "Nairobi", "Oslo", "Melbourne", "Lima", "Prague", "Glasgow", "Seville",
          "Montreal", "Auckland", "Krakow", "Bristol", "Denver", "Hanoi")
PLACES = ("the beach", "my grandma's house", "a concert", "the mountains", "the museum", "a wedding", "the vet",
          "the gym", "a job interview", "the zoo", "my cousin's party", "the cinema", "the library", "the airport")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
HOBBIES = ("painting", "chess", "rock climbing", "baking", "the guitar", "knitting", "running", "gardening",
           "birdwatching", "photography", "skateboarding", "origami", "yoga", "board games")
JOBS = ("teacher", "baker", "mechanic", "pilot", "plumber", "designer", "chef", "librarian", "dentist", "firefighter",
        "architect", "vet", "journalist", "electrician", "farmer", "pharmacist")
#: Syllables for names no list has: recall must copy the name from memory, not guess a familiar one.
ONSETS = ("B", "D", "F", "G", "K", "L", "M", "N", "P", "R", "S", "T", "V", "Z", "Br", "Tr", "Th", "Sh")
NUCLEI = ("a", "e", "i", "o", "u", "ai", "ea", "y")
CODAS = ("n", "l", "r", "s", "x", "m", "ck", "th", "lla", "nna", "ra", "na", "do", "ric", "wen", "bel")
#: Openers a question may carry; the held-out check reads the question without them.
ASK_OPENERS = ("", "", "", "Hey Rosie, ", "Rosie, ", "Quick question: ", "So, ", "Okay, ", "Hmm, ")
#: What Rosie says when asked about something she was never told (the memory block lacks it).
NOT_TOLD = ("Hmm, I don't think you've told me that yet! Will you tell me?",
            "You haven't told me that yet! I'd love to know.", "I don't know yet! Tell me?")
#: How the memory store writes a user's turn (``MemoryStore.remember_turn``), which recall also returns.
TOLD = "The user said: {statement}"


def said_lines(turns: list[Turn]) -> list[str]:
    """The user's short turns, as past turns for a memory block (a memory line, not an essay)."""
    return [turn.text for turn in turns if turn.role == "user" and len(turn.text) <= 120]


def made_up_name(rng: random.Random) -> str:
    """A pronounceable name that is in no list (``Tavin``, ``Shenna``)."""
    return rng.choice(ONSETS) + rng.choice(NUCLEI) + rng.choice(CODAS)


def some_name(rng: random.Random, names: tuple[str, ...]) -> str:
    return rng.choice(names) if rng.random() < 0.5 else made_up_name(rng)


@dataclass(frozen=True)
class Fact:
    kind: str  # one fact of each kind per user, as the memory store keeps one per slot
    statement: str  # what the user said
    memory: str  # how the memory store writes it
    questions: tuple[str, ...]  # ways the user asks for it later
    answers: tuple[str, ...]  # what Rosie replies (each names the fact)


FACT_KINDS = ("name", "pet", "colour", "food", "plan", "home", "job", "hobby")


def random_fact(rng: random.Random, kind: str | None = None) -> Fact:
    """A fact the user states, stored as the memory store writes it, with the ways it is asked back."""
    kind = kind or rng.choice(FACT_KINDS)
    if kind == "name":
        name = some_name(rng, USER_NAMES)
        return Fact(kind, rng.choice((f"By the way, my name is {name}.", f"Hi, my name is {name}!", f"Call me {name}.",
                                      f"My name is {name}, nice to meet you.", f"I'm called {name}.")),
                    f"The user's name is {name}.",
                    ("Do you remember my name?", "Who am I?", "What do you call me?", "Can you tell me my name?",
                     "Do you know who I am?", "What did I say my name was?", "Remind me, what's my name?",
                     "Say my name!", "You remember me, right? What's my name?", "What name did I give you?"),
                    (f"Of course! You're {name}. 💕", f"You're {name}!", f"{name}! How could I forget?",
                     f"Your name is {name}!", f"It's {name}, silly!"))
    if kind == "pet":
        animal, pet = rng.choice(ANIMALS), some_name(rng, PET_NAMES)
        return Fact(kind, rng.choice((f"I have a {animal} {rng.choice(('called', 'named'))} {pet}.",
                                      f"I have a {animal} named {pet}, she's adorable.", f"My {animal} is called {pet}.",
                                      f"My {animal}'s name is {pet}.")),
                    f"The user has a {animal} named {pet}.",
                    ("What's my pet called again?", f"What's my {animal}'s name?", f"Do you remember my {animal}'s name?",
                     f"What did I say my {animal} is called?", f"Can you remember what my {animal} is called?",
                     "What kind of pet do I have?", "What animal do I have at home?", f"What's the name of my {animal} again?"),
                    (f"{pet}! Your {animal}. Give {pet} a pat from me!", f"Your {animal} is {pet}!",
                     f"You have a {animal} called {pet}!", f"A {animal} named {pet}! I remember."))
    if kind == "colour":
        colour = rng.choice(COLOURS)
        return Fact(kind, rng.choice((f"My favourite colour is {colour}.", f"My favorite color is {colour}.")),
                    f"The user's favourite colour is {colour}.",
                    ("What's my favourite colour?", "Which colour do I like best?", "Do you know my favourite colour?",
                     "What colour did I say I love?", "What's my favorite color again?"),
                    (f"It's {colour}! Good taste.", f"{colour.capitalize()}! I remember.",
                     f"Your favourite colour is {colour}!"))
    if kind == "food":
        food = rng.choice(FOODS)
        return Fact(kind, f"I could eat {food} every day.", f"The user's favourite food is {food}.",
                    ("What's my favourite food?", "What could I eat every day?", "Which food do I like most?",
                     "Do you remember my favourite food?", "What did I say I could eat every day?"),
                    (f"{food.capitalize()}! Now I'm hungry too.", f"You love {food}!", f"Your favourite food is {food}!"))
    if kind == "plan":
        place, day = rng.choice(PLACES), rng.choice(DAYS)
        stored, answered = (place.replace("my ", "their ", 1), place.replace("my ", "your ", 1))  # whose grandma
        return Fact(kind, rng.choice((f"I'm going to {place} on {day}.", f"I am going to {place} on {day}.")),
                    f"The user is going to {stored} on {day}.",
                    (f"What are my plans for {day}?", f"What am I doing on {day}?", f"Do you remember where I'm going on {day}?",
                     f"Where did I say I'm going on {day}?"),
                    (f"To {answered}! Have a wonderful time.", f"You're going to {answered}!",
                     f"On {day} you're going to {answered}!"))
    if kind == "home":
        city = rng.choice(CITIES)
        return Fact(kind, rng.choice((f"I live in {city}.", f"I live in {city}, it's nice.")), f"The user lives in {city}.",
                    ("Where do I live?", "Do you know where I live?", "What city am I from?", "Remember where I live?",
                     "Which town did I say I live in?"),
                    (f"{city}! I'd love to see it one day.", f"You live in {city}!", f"In {city}!"))
    if kind == "job":
        job = rng.choice(JOBS)
        return Fact(kind, f"I work as {'an' if job[0] in 'aeiou' else 'a'} {job}.", f"The user works as a {job}.",
                    ("What do I do for work?", "Do you remember my job?", "What is my job?", "What do I work as?",
                     "Do you know what I do for a living?"),
                    (f"You're a {job}! That's so cool.", f"You work as a {job}!", f"A {job}! I remember."))
    hobby = rng.choice(HOBBIES)
    return Fact(kind, f"Lately I've been really into {hobby}.", f"The user's hobby is {hobby}.",
                ("What hobby did I tell you about?", "What am I into lately?", "What's my hobby?",
                 "Do you remember my new hobby?", "What have I been doing for fun lately?"),
                (f"{hobby.capitalize()}! How's it going?", f"You're into {hobby}!", f"Your hobby is {hobby}!"))


def ask(fact: Fact, rng: random.Random) -> str | None:
    """One way of asking for ``fact``, with an opener; None when the scorecard asks the one drawn."""
    question = rng.choice(fact.questions)
    if asks_held_out(question):  # the scorecard asks that one, in any opener
        return None
    opener = rng.choice(ASK_OPENERS)
    return opener + question[:1].lower() + question[1:] if opener else question


def recalled(facts: list[Fact], others: list[Fact], said: list[str], rng: random.Random, k: int = 4) -> list[str]:
    """A memory block as the store's recall returns it: the facts' lines, other facts of the same user and past
    turns, in no fixed order, ``k`` entries at most beyond the facts. The turn that told a recalled fact is not
    among them (the store leaves it out: it would only add the fact in the first person)."""
    lines = [f.memory for f in facts]
    noise = [f.memory for f in others] + [TOLD.format(statement=s) for s in said]
    lines += rng.sample(noise, min(len(noise), rng.randint(0, max(0, k - len(facts)))))
    rng.shuffle(lines)
    return lines


def background_memories(rng: random.Random, said: list[str], k: int = 4) -> list[str]:
    """What a returning user's recall brings to a conversation that is not about it: facts and past turns
    none of the turns asks for. Dialogues that carry such a block teach her that memory is context, not the
    answer (so "my cat died" is not met with the cat's name)."""
    kinds = rng.sample(FACT_KINDS, rng.randint(1, 3))
    return recalled([], [random_fact(rng, kind) for kind in kinds], rng.sample(said, min(len(said), 2)), rng, k)


def memory_dialogues(system_prompt: str, distractors: list[Imported], count: int, val_permille: int,
                     seed: int = 0, max_facts: int = 3, distractor_turns: tuple[int, int] = (2, 6),
                     not_told_share: float = 0.1) -> Iterator[dict[str, Any]]:
    """``count`` dialogues: facts cut from the context, distractor turns, then a question about each asked fact
    in turn (so every dialogue teaches recall once per fact, and the answers must pick the right one). The
    memory block holds what recall would bring: the asked facts among others of the same user and past turns.
    A ``not_told_share`` of dialogues also asks about something never told, and she says she does not know."""
    rng = random.Random(seed)
    pool = [turn for item in distractors for turn in item.turns]
    said = said_lines(pool)
    produced = 0
    while produced < count:
        kinds = rng.sample(FACT_KINDS, min(len(FACT_KINDS), rng.randint(1, max_facts) + rng.randint(0, 2)))
        known = [random_fact(rng, kind) for kind in kinds]
        asked = known[:rng.randint(1, min(max_facts, len(known)))]
        # the answers carry no emotion label: how she feels about a recalled fact is not the fact's to say
        questions = [turn for fact in asked if (question := ask(fact, rng))
                     for turn in (Turn("user", question), Turn("rosie", rng.choice(fact.answers)))]
        if not questions:  # every question drawn is one the scorecard asks
            continue
        untold = [k for k in FACT_KINDS if k not in kinds]
        if untold and rng.random() < not_told_share:
            if question := ask(random_fact(rng, rng.choice(untold)), rng):
                questions += [Turn("user", question), Turn("rosie", rng.choice(NOT_TOLD))]
        middle: list[Turn] = []
        if pool:
            start = rng.randrange(len(pool))
            middle = pool[start : start + rng.randint(*distractor_turns)]
            while middle and middle[0].role != "user":
                middle = middle[1:]
            while middle and middle[-1].role != "rosie":  # the user's question comes next
                middle = middle[:-1]
        turns = [*middle, *questions]
        memory = recalled(asked, known[len(asked):], rng.sample(said, min(len(said), 2)), rng)
        yield make_dialogue(SOURCE, f"memory-{seed}-{produced}", [Turn("system", system_prompt), *turns],
                            memory=memory, split=split_for(turns, val_permille))
        produced += 1
