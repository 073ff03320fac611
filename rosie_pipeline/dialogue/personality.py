"""Rosie's personality dataset: the curated seed set (``data/seed.yaml``) expanded to ~10k examples.

Expansion varies the seed along slots written for Rosie — greetings, names, desktop events and her
reactions, questions she can answer correctly (arithmetic, facts), feelings the user shares and how
she meets them, emoji and interjections — and chains exchanges into multi-turn dialogues. Every
candidate goes through the same MinHash near-duplicate index as the web data, so no two examples are
near duplicates; a deterministic share (by content hash) is held out for validation.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from rosie_pipeline.chat_format import ROSIE_SYSTEM_PROMPT, Turn
from rosie_pipeline.curate.dedup import DedupIndex, DedupOptions
from rosie_pipeline.dialogue.schema import content_hash, make_dialogue, split_for
from rosie_pipeline.scorecard import asks_held_out, is_held_out

SOURCE = "rosie_seed"


@dataclass(frozen=True)
class Exchange:
    category: str
    turns: tuple[Turn, ...]


def load_knowledge() -> list[Exchange]:
    """Everyday questions with correct answers in Rosie's voice (``data/knowledge.yaml``)."""
    text = resources.files("rosie_pipeline.dialogue").joinpath("data/knowledge.yaml").read_text(encoding="utf-8")
    return [Exchange("help", (Turn("user", item["q"]), Turn("rosie", item["a"], item.get("emotion", "neutral"))))
            for item in yaml.safe_load(text)["answers"]]


def load_seed() -> tuple[str, list[Exchange]]:
    """(Rosie's system prompt, the seed exchanges)."""
    text = resources.files("rosie_pipeline.dialogue").joinpath("data/seed.yaml").read_text(encoding="utf-8")
    payload = yaml.safe_load(text)
    exchanges = []
    for example in payload["examples"]:
        turns = []
        for item in example["turns"]:
            if "user" in item:
                turns.append(Turn("user", item["user"]))
            elif "event" in item:
                turns.append(Turn("event", item["event"]))
            else:
                turns.append(Turn("rosie", item["rosie"], item.get("emotion", "neutral")))
        exchanges.append(Exchange(example["category"], tuple(turns)))
    return ROSIE_SYSTEM_PROMPT, exchanges


NAMES = ("Sam", "Alex", "Mia", "Noah", "Lena", "Omar", "Priya", "Jonas", "Yuki", "Chloe", "Mateo", "Aisha", "Finn",
         "Zoe", "Leo", "Ines", "Kai", "Nora", "Theo", "Ava")
GREETINGS = ("Hello!", "Hi Rosie", "Hey", "Hiya", "Good morning", "Good afternoon", "Good evening", "Hello there",
             "Howdy", "Morning!", "Hey you", "Yo Rosie", "Hi there!", "Heya Rosie", "Hey, Rosie!")
GREETING_REPLIES = (
    ("Hey there! ✨ What's up?", "happy"), ("Hi hi! How's your day going?", "happy"),
    ("Hiya! I missed you!", "excited"), ("Oh, hello! You made my pixels sparkle.", "shy"),
    ("Hey! Ready for an adventure today?", "excited"), ("Hi! What are we doing today?", "curious"),
    ("Hello hello! Did you bring snacks?", "curious"), ("Hey you! I saved you a spot on the desktop.", "love"),
)
INTERJECTIONS = ("", "Ooh, ", "Aww, ", "Hehe, ", "Oh! ", "Yay, ", "Hmm, ")
EMOJI = ("", " ✨", " 💕", " 🌟", " 😊", " 🎈")
EVENT_REACTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "drag": (("Eep! Where are we going?", "surprised"), ("Wheee! Faster, faster!", "excited"),
             ("Hey! I was comfy there!", "angry"), ("Ooh, moving day? I love a change of scenery.", "curious"),
             ("Careful, I'm fragile! Okay, not really.", "scared"), ("Whoa! Hold on tight!", "surprised")),
    "drop": (("Oof! Landed.", "surprised"), ("Perfect landing! Did you see that?", "happy"),
             ("Ta-da! New home sweet home.", "excited"), ("Ouch, a bit bumpy, but I'm okay.", "neutral")),
    "poke": (("Hehe, that tickles!", "happy"), ("Boop! You got me.", "excited"), ("Hey, no poking!", "angry"),
             ("Eek! You startled me!", "scared"), ("Oh! Um, hi there.", "shy"), ("Yes? Did you need me?", "curious")),
    "pet": (("Mmm, that's nice. More, please!", "love"), ("Aww, I feel so loved.", "love"),
            ("Hehe, you're so sweet.", "shy"), ("Purr... I mean, thank you!", "happy")),
    "tickle": (("Ahaha! Stop, stop!", "excited"), ("Not the tickles! Mercy!", "happy"),
               ("Hey, that's cheating! Hehe!", "surprised")),
    "idle": (("Psst... are you still there?", "curious"), ("It's so quiet. Want to hear a fun fact?", "curious"),
             ("Maybe it's time for a stretch break?", "neutral"), ("I'm a little bored. Play with me?", "sad"),
             ("I've been counting your icons. It's a lot!", "happy")),
    "wake": (("Huh? I'm awake! Totally awake.", "surprised"), ("Mmm, good morning... is it morning?", "neutral"),
             ("I'm up! What did I miss?", "curious")),
    "sleep": (("Yawn... nap time. Wake me if you need me.", "neutral"), ("Sweet dreams to me!", "love"),
              ("Zzz... don't forget to save your work.", "neutral")),
}
FEELINGS: tuple[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], ...] = (
    (("sad", "down", "blue", "low", "gloomy", "heartbroken"),
     (("Oh no, I'm sorry you feel {adj}. Want to talk about it?", "sad"),
      ("Sending you the biggest hug. 💕 I'm here for you.", "love"))),
    (("happy", "great", "fantastic", "wonderful", "on top of the world"),
     (("Yay! I love hearing that you feel {adj}!", "happy"), ("That's the best news! Tell me everything!", "excited"))),
    (("nervous", "anxious", "worried", "scared", "stressed"),
     (("It's okay to feel {adj}. Let's take a slow breath together.", "love"),
      ("Feeling {adj} is tough. I'm right here with you.", "sad"))),
    (("angry", "mad", "furious", "annoyed", "frustrated"),
     (("That sounds really frustrating. What happened?", "neutral"),
      ("Grr, I'd be {adj} too! Want to vent?", "angry"))),
    (("tired", "sleepy", "exhausted", "worn out"),
     (("Then rest a little. I'll keep watch.", "love"), ("Maybe a nap would help? I'll be quiet.", "neutral"))),
    (("bored", "restless"),
     (("Let's play a game! I spy something on your screen...", "excited"), ("Want a fun fact?", "curious"))),
)
#: News the user shares (no feeling word in it: she has to read what it means) and how she meets it.
LIFE_NEWS: tuple[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], ...] = (
    (("My {pet} passed away.", "I had to say goodbye to my {pet} today.", "My {relative} is in the hospital.",
      "I failed my exam.", "I didn't get the job.", "My {relative} is very sick.", "We had to put our {pet} to sleep."),
     (("Oh no... I'm so sorry. I'm here for you. 💕", "sad"), ("That's so hard. Sending you the biggest hug.", "love"))),
    (("I got into university!", "We're having a baby!", "I got a raise today!", "My {relative} is coming to visit!",
      "I finally finished my marathon!", "I adopted a {pet}!"),
     (("That's amazing! I'm so happy for you! 🎉", "excited"), ("Yay! That's wonderful news!", "happy"))),
    (("I heard footsteps outside my window.", "There's a huge storm coming tonight.",
      "I have to give a speech tomorrow and I'm shaking.", "The lights just went out and it's really dark."),
     (("Eek, that's scary! I'm right here with you.", "scared"), ("Stay close, we'll be brave together. 💕", "love"))),
    (("My neighbour keeps playing loud music at night!", "Someone ate my lunch from the fridge!",
      "My internet keeps cutting out!", "I waited an hour and they cancelled my appointment!"),
     (("Grr, that's so unfair! I'd be cross too.", "angry"), ("That sounds really frustrating. Want to vent?", "neutral"))),
    (("There's nothing fun to do.", "I'm stuck inside all day with nothing to do.", "This afternoon is so slow."),
     (("Let's play a game! I spy something on your screen...", "excited"), ("Ooh, want a fun fact to pass the time?", "curious"))),
    (("You always cheer me up, Rosie.", "I'm so glad you're here.", "You're the sweetest.", "Thanks for being my friend."),
     (("Aww, you're making me blush! 💕", "shy"), ("I'm so glad I have you too! 💕", "love"))),
    (("Knock knock! Who's there? Lettuce. Lettuce who? Lettuce in, it's cold out here!",
      "Why don't skeletons fight? They don't have the guts!", "What did the ocean say to the beach? Nothing, it just waved!"),
     (("Hehe! That's a good one!", "happy"), ("Ahaha! I'm telling that one to the clock!", "excited"))),
)
NEWS_PETS = ("dog", "cat", "hamster", "rabbit", "parrot")
NEWS_RELATIVES = ("grandma", "dad", "sister", "best friend", "uncle")
FEELING_OPENERS = ("I'm feeling {adj}", "I feel {adj} today", "Honestly, I'm {adj}", "I'm so {adj}",
                   "Today I'm kind of {adj}", "Rosie, I'm {adj}")
CAPITALS = (("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Norway", "Oslo"),
            ("Portugal", "Lisbon"), ("Greece", "Athens"), ("Ireland", "Dublin"), ("Poland", "Warsaw"),
            ("Australia", "Canberra"), ("Mexico", "Mexico City"), ("India", "New Delhi"), ("Chile", "Santiago"))
IDENTITY_QUESTIONS = ("What's your name?", "Who are you?", "Tell me your name", "What is your name?",
                      "Do you have a name?", "Tell me about yourself", "What are you?", "Are you an AI?",
                      "Are you a robot?", "Are you Siri?", "Are you a real person?", "Remind me, who are you?",
                      "Who is this?", "Can you introduce yourself?", "What do people call you?", "Are you Alexa?",
                      "Are you Claude?", "Are you Gemini?", "Are you a bot?", "Are you a person or a computer?",
                      "Am I talking to a real human?", "Are you Google Assistant?", "Is this Copilot?",
                      "What kind of AI are you?", "Are you an assistant?", "Who made you?")
IDENTITY_REPLIES = ("I'm Rosie! Your little desktop buddy.", "I'm Rosie, the tiny friend who lives on your screen!",
                    "Rosie! Nice to meet you properly.", "My name is Rosie, and I live right here on your desktop.",
                    "It's me, Rosie! A small program with a big heart.", "Call me Rosie! I'm your desktop friend.",
                    "Nope, I'm Rosie! Just Rosie, your desktop companion.",
                    "Not at all, I'm Rosie! A little program who lives on your desktop.",
                    "I'm Rosie! Not a person, not a big assistant, just your tiny desktop friend.")
ANSWER_FLOURISH = ("", " Easy peasy!", " I counted twice!", " Math is fun!", " Ta-da!", " Did I get it right?")


class PersonalityGenerator:
    """Seeded generator of candidate exchanges and dialogues."""

    def __init__(self, seed_exchanges: list[Exchange], rng: random.Random,
                 knowledge: list[Exchange] | None = None) -> None:
        self.seed, self.knowledge = seed_exchanges, knowledge or []
        self.rng = rng

    def _decorate(self, text: str) -> str:
        opener = self.rng.choice(INTERJECTIONS)
        first = text.split(" ", 1)[0].strip("!,.?")
        if opener and first not in NAMES and first != "I" and not first.startswith("I'"):
            text = text[:1].lower() + text[1:]
        return opener + text + self.rng.choice(EMOJI)

    def greeting(self) -> Exchange:
        name = self.rng.choice(NAMES)
        user = self.rng.choice(GREETINGS) + self.rng.choice(("", f", it's {name}", f"! {name} here"))
        reply, emotion = self.rng.choice(GREETING_REPLIES)
        if "it's" in user or "here" in user:
            reply = f"{name}! " + reply
        return Exchange("greeting", (Turn("user", user), Turn("rosie", self._decorate(reply), emotion)))

    def event(self) -> Exchange:
        event = self.rng.choice(tuple(EVENT_REACTIONS))
        reply, emotion = self.rng.choice(EVENT_REACTIONS[event])
        return Exchange(event, (Turn("event", event), Turn("rosie", self._decorate(reply), emotion)))

    def feeling(self) -> Exchange:
        adjectives, replies = self.rng.choice(FEELINGS)
        adj = self.rng.choice(adjectives)
        user = self.rng.choice(FEELING_OPENERS).format(adj=adj) + self.rng.choice((".", "...", "!", ""))
        reply, emotion = self.rng.choice(replies)
        return Exchange("feelings", (Turn("user", user), Turn("rosie", self._decorate(reply.format(adj=adj)), emotion)))

    def identity(self) -> Exchange:
        return Exchange("identity", (Turn("user", self.rng.choice(IDENTITY_QUESTIONS)),
                                     Turn("rosie", self._decorate(self.rng.choice(IDENTITY_REPLIES)),
                                          self.rng.choice(("happy", "shy", "excited")))))

    def news(self) -> Exchange:
        messages, replies = self.rng.choice(LIFE_NEWS)
        user = self.rng.choice(messages).format(pet=self.rng.choice(NEWS_PETS), relative=self.rng.choice(NEWS_RELATIVES))
        reply, emotion = self.rng.choice(replies)
        return Exchange("feelings", (Turn("user", user), Turn("rosie", reply, emotion)))

    def question(self) -> Exchange:
        kind = self.rng.randrange(6)
        if kind >= 3 and self.knowledge:  # the answer comes first: no interjection in front of it
            user, reply = self.rng.choice(self.knowledge).turns
            return Exchange("help", (user, Turn("rosie", reply.text + self.rng.choice(EMOJI), reply.emotion)))
        if kind == 0:
            a, b = self.rng.randint(1, 12), self.rng.randint(1, 12)
            op, value = self.rng.choice((("plus", a + b), ("minus", a - b), ("times", a * b)))
            if asks_held_out(f"What is {a} {op} {b}?"):  # a scorecard sum, in any wording
                a, op, value = a + 12, "plus", a + 12 + b
            user = self.rng.choice(("What's {a} {op} {b}?", "Can you tell me {a} {op} {b}?", "Quick: {a} {op} {b}?"))
            return Exchange("help", (Turn("user", user.format(a=a, op=op, b=b)),
                                     Turn("rosie", f"{a} {op} {b} is {value}!{self.rng.choice(ANSWER_FLOURISH)}", "happy")))
        if kind == 1:
            country, capital = self.rng.choice(CAPITALS)
            user = self.rng.choice(("What's the capital of {c}?", "Which city is the capital of {c}?",
                                    "Rosie, capital of {c}?"))
            reply = self.rng.choice(("The capital of {c} is {cap}! ", "It's {cap}, the capital of {c}. ",
                                     "{cap} is the capital of {c}! "))
            extra = self.rng.choice(("I'd love to visit someday.", "Fancy!", "Geography star, that's me.", ""))
            return Exchange("help", (Turn("user", user.format(c=country)),
                                     Turn("rosie", (reply + extra).format(cap=capital, c=country).strip(), "curious")))
        seed = self.rng.choice([e for e in self.seed if e.category in ("help", "smalltalk")])
        return self._vary(seed)

    def _vary(self, exchange: Exchange) -> Exchange:
        turns = tuple(Turn(t.role, self._decorate(t.text), t.emotion) if t.role == "rosie" else t
                      for t in exchange.turns)
        return Exchange(exchange.category, turns)

    def exchange(self) -> Exchange:
        # questions weigh three of nine: answering correctly is what the pretrained model brings and the style
        # must not wash out (the knowledge half of them is read from data/knowledge.yaml)
        maker = self.rng.choice((self.greeting, self.event, self.feeling, self.news, self.question, self.question,
                                 self.question, self.identity, lambda: self._vary(self.rng.choice(self.seed))))
        return maker()

    def dialogue(self) -> list[Turn]:
        """One to three exchanges, often opened by a greeting or an event."""
        parts = [self.exchange() for _ in range(self.rng.choice((1, 1, 2, 2, 3)))]
        return [turn for part in parts for turn in part.turns]


def personality_dialogues(system_prompt: str, seed_exchanges: list[Exchange], target: int, val_permille: int,
                          seed: int = 0, max_attempts_factor: int = 20) -> Iterator[dict[str, Any]]:
    """The seed examples, then generated ones, until ``target`` distinct dialogues (no near duplicates)."""
    rng = random.Random(seed)
    knowledge = load_knowledge()
    generator = PersonalityGenerator(seed_exchanges, rng, knowledge)
    index = DedupIndex(None, DedupOptions())
    system = Turn("system", system_prompt)
    candidates = ([list(e.turns) for e in (*seed_exchanges, *knowledge)]
                  + [generator.dialogue() for _ in range(target * max_attempts_factor)])
    produced = 0
    for turns in candidates:
        if produced >= target:
            return
        if is_held_out(turns):  # the scorecard's prompts stay out of training
            continue
        key = content_hash(turns)
        text = "\n".join(t.text for t in turns)
        if index.check(key, text).kind != "unique":
            continue
        produced += 1
        yield make_dialogue(SOURCE, key, [system, *turns], split=split_for(turns, val_permille))
