"""`rosie card`: Rosie as the character card and presets SillyTavern imports, read back by the tools that read
cards (Pillow, Rosie's own card importer) and by her server's text-mode parser."""

import base64
import json
import subprocess

from PIL import Image

from tests.rosie_model.serving.test_chat_interfaces import ROOT, rosie_command

V2_FIELDS = {"name", "description", "personality", "scenario", "first_mes", "mes_example", "creator_notes",
             "system_prompt", "post_history_instructions", "alternate_greetings", "tags", "creator",
             "character_version", "extensions"}
V3_FIELDS = V2_FIELDS | {"nickname", "creator_notes_multilingual", "source", "group_only_greetings", "creation_date",
                         "modification_date", "assets"}


def test_the_card_carries_v3_and_v2_her_own_words_and_imports_back(chat_model_dir, tmp_path):
    from rosie_model.serving.chat import Rosie
    from rosie_model.serving.card import write_card
    from rosie_pipeline.dialogue.importers import Imported, PersonaRegistry, read_card

    out = tmp_path / "card"
    done = subprocess.run(rosie_command(tmp_path / "home", "card", "--model", str(chat_model_dir), "--out", str(out)),
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    chunks = Image.open(out / "rosie.card.png").text
    v3, v2 = (json.loads(base64.b64decode(chunks[key])) for key in ("ccv3", "chara"))
    assert (v3["spec"], v3["spec_version"], v2["spec"], v2["spec_version"]) == ("chara_card_v3", "3.0",
                                                                                "chara_card_v2", "2.0")
    assert set(v3["data"]) == V3_FIELDS and set(v2["data"]) == V2_FIELDS
    assert json.loads((out / "rosie.card.json").read_text()) == v3
    data = v3["data"]
    emotions = json.loads((chat_model_dir / "config.json").read_text())["emotions"]
    assert data["name"] == "Rosie" and data["extensions"]["rosie"]["emotions"] == emotions
    assert data["first_mes"] and "<|" not in data["first_mes"] and data["mes_example"].count("<START>") == 3
    assert data["system_prompt"].startswith("You are Rosie")

    [greeting, *examples] = [i for i in read_card(out / "rosie.card.png", PersonaRegistry(tmp_path / "p.json"))
                             if isinstance(i, Imported)]
    assert greeting.turns[0].text and len(examples) == 3 and [t.role for t in examples[0].turns] == ["user", "rosie"]

    rosie = Rosie.load(chat_model_dir, memory_path=tmp_path / "memory.db")
    again = write_card(rosie, tmp_path / "again")  # the same model writes the same card, byte for byte
    assert again.png.read_bytes() == (out / "rosie.card.png").read_bytes()
    rosie.close()


def test_the_sillytavern_presets_build_prompts_her_server_reads_as_turns(chat_model_dir, tmp_path):
    """A prompt assembled the way SillyTavern's text mode assembles it from the instruct preset reads back as
    the conversation it was made from."""
    from rosie_model.serving.card import write_card
    from rosie_model.serving.chat import Rosie
    from rosie_model.serving.markup import TurnMarkup

    rosie = Rosie.load(chat_model_dir, memory_path=tmp_path / "memory.db")
    files = write_card(rosie, tmp_path / "card")
    presets = {path.stem: json.loads(path.read_text()) for path in files.presets}
    assert set(presets) == {"context", "instruct", "sysprompt"}
    instruct, context = presets["instruct"], presets["context"]
    assert instruct["input_sequence"] == "<|user|>" and instruct["output_sequence"] == "<|rosie|>"
    assert context["story_string"].startswith(instruct["system_sequence"])
    story = context["story_string"].replace("{{#if system}}{{system}}\n{{/if}}", presets["sysprompt"]["content"] + "\n")
    story = story.split("{{#if description}}")[0] + instruct["system_suffix"]
    said = [("user", "Hi Rosie!\nHow are you?"), ("rosie", "Great, thanks!"), ("user", "Tell me a <|secret|>.")]
    prompt = story + "".join(instruct["input_sequence"] + text + instruct["input_suffix"] if role == "user" else
                             instruct["output_sequence"] + text + instruct["output_suffix"] for role, text in said)
    prompt += instruct["output_sequence"]
    turns = TurnMarkup.of(rosie.loaded).parse(prompt)
    assert turns == [{"role": "system", "content": presets["sysprompt"]["content"]},
                     *({"role": role, "content": text} for role, text in said)]
    rosie.close()
