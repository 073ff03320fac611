"""The model card of an exported folder: ``README.md`` with the YAML header the Hub reads.

The header names the library, the pipeline, the license, the base model (bootstrap approach), the training
data by manifest digest and the conversation scorecard as model-index results; the body says what Rosie
is, how to talk to her with transformers and llama.cpp, and what a plain causal LM cannot carry. Digests and
scores come from the registered version's tags, so a card is complete when the source is
``models:/rosie@champion``; a bare folder was not evaluated and its card says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rosie_model.core.layout import MODEL_NAME, ModelFolder, tracking_uri
from rosie_model.core.locate import LocatedModel

#: Pretrained sources known by their file, and their Hub id and license.
KNOWN_BASES = {"SmolLM2-135M-Instruct": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")}
#: The scorecard's measures, in the order the README lists them.
SCORECARD = ("persona", "knowledge", "memory", "emotion_fit", "events", "fluency")


def version_tags(located: LocatedModel) -> dict[str, str]:
    """The tags of the registered version ``located`` came from (none for a plain folder)."""
    numbered = [n for n in located.registry_names if "/" in n]
    if not numbered:
        return {}
    from mlflow import MlflowClient

    name, version = numbered[0].split("/", 1)
    return dict(MlflowClient(tracking_uri()).get_model_version(name, version).tags)


def base_model(rosie: Any) -> tuple[str | None, str]:
    """(Hub id of the pretrained base or None, license): only what is known for certain is claimed."""
    folder = ModelFolder(rosie.folder)
    if not folder.is_bootstrap:
        return None, "other"
    pretrained = Path(rosie.model.settings.pretrained).name
    for stem, (hub_id, license_id) in KNOWN_BASES.items():
        if pretrained.startswith(stem):
            return hub_id, license_id
    return None, "other"


def _scores(tags: dict[str, str]) -> dict[str, float]:
    return {key: float(tags[f"eval.scorecard_{key}"]) for key in SCORECARD if f"eval.scorecard_{key}" in tags}


def model_card(rosie: Any, located: LocatedModel, llama: Any, persona: int) -> Any:
    """The card (``huggingface_hub.ModelCard``) for ``rosie`` as exported to ``llama``, speaking as ``persona``."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    tags = version_tags(located)
    hub_base, license_id = base_model(rosie)
    scores = _scores(tags)
    results = [EvalResult(task_type="text-generation", dataset_type="rosie-scorecard",
                          dataset_name="Rosie conversation scorecard", metric_type=key, metric_value=value)
               for key, value in scores.items()]
    data = ModelCardData(
        library_name="transformers", pipeline_tag="text-generation", license=license_id, base_model=hub_base,
        tags=["rosie", "character", "companion", "conversational", llama.config.model_type],
        model_name=MODEL_NAME, eval_results=results or None,
        rosie_approach="bootstrap" if ModelFolder(rosie.folder).is_bootstrap else "scratch",
        rosie_weights=rosie.weights.name,
        rosie_datasets={k.removeprefix("data."): v for k, v in sorted(tags.items()) if k.startswith("data.")} or None,
        rosie_source=located.label, rosie_git_commit=tags.get("git_commit"))
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_body(rosie, located, llama, scores, persona)}")


def _body(rosie: Any, located: LocatedModel, llama: Any, scores: dict[str, float], persona: int) -> str:
    emotions = ", ".join(rosie.model.config.emotions)
    bootstrap = ModelFolder(rosie.folder).is_bootstrap
    if scores:
        table = "| measure | score |\n|---|---:|\n" + "".join(f"| {k} | {v:.2f} |\n" for k, v in scores.items())
        evaluation = (f"Scored by Rosie's conversation scorecard (replies through her own chat path, on prompts "
                      f"kept out of training) when it was registered as {located.label}:\n\n{table}")
    else:
        evaluation = ("Not evaluated: this folder was exported from a model folder, not a registered version. "
                      "Export `models:/rosie@champion` to carry the scorecard.\n")
    reads = ("the mean of the final hidden states of the last 16 prompt positions" if bootstrap
             else "the final hidden state at the last prompt token")
    persona_layer = getattr(rosie.model, "persona_layer", 0)
    persona_at = ("the input embeddings" if not persona_layer
                  else f"the residual stream before layer {persona_layer}: the bias of layer {persona_layer - 1}'s "
                       "down projection carries it (`mlp_bias` in config.json; GGUF has no such switch, so "
                       "reading the `.gguf` with transformers needs `mlp_bias=True`)")
    return f"""# Rosie

Rosie is a small, playful desktop companion: she answers in character, shows how she feels and reacts to
what happens on the screen. This folder holds her language model as a plain `{type(llama).__name__}`
({'LoRA merged into its pretrained base' if bootstrap else 'trained from scratch'}), exported from
`{located.label}` ({rosie.weights.name}).

## Talking to her

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("PATH")
model = AutoModelForCausalLM.from_pretrained("PATH")
prompt = tokenizer.apply_chat_template([{{"role": "user", "content": "Hi! Who are you?"}}],
                                       add_generation_prompt=True, return_tensors="pt", return_dict=True)
reply = model.generate(**prompt)  # generation_config.json stops where her turn ends
print(tokenizer.decode(reply[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True))
```

The chat template puts her system prompt first when the conversation has none. She opens each turn with
one emotion token ({emotions}); `skip_special_tokens` hides it. A `.gguf` next to this card, when there is
one, runs in llama.cpp, KoboldCpp, Ollama and LM Studio with the same template and stop tokens.

## What a plain causal LM does not carry

- **Persona**: persona {persona} (Rosie herself) is folded into the weights; it joins at {persona_at}. The
  other persona vectors are in `rosie_heads.safetensors` (`persona.weight`, one row per persona).
- **Emotion head**: `rosie_heads.safetensors` holds `emotion_head.weight` and `.bias`. Rosie's own decoder
  picks her emotion with it before she speaks: softmax of `emotion_head(h)`, where `h` is {reads}
  (`output_hidden_states=True`, the last entry), over the emotions in the file's metadata; it then feeds
  `<|emotion:NAME|>` and lets her words follow. Plain generation lets the language model pick the token.
- **Memory**: {'Rosie reads remembered facts as a `<|memory|>` block after the system prompt; pass them as `memory=[...]` to `apply_chat_template`.' if bootstrap else 'the scratch model reads remembered facts through memory attention, which Llama has no place for; plain generation runs without long-term memory.'}
- **Events** (drag, poke, pet, …) are messages with role `event` and the event's name as content.

## Evaluation

{evaluation}"""
