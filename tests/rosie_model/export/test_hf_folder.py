"""`python -m rosie_model export`: a folder transformers loads with no custom code, whose chat template
renders like Rosie's renderer and whose plain greedy `generate` says what Rosie's own decoder says, for both
approaches; the emotion head and personas ride beside it, and a model card the Hub reads describes it."""

import json
import subprocess
import sys

import pytest
import torch

from rosie_model.export.hf import HEADS_FILE, export_hf
from rosie_model.serving.generate import ReplyDecoder, SamplingOptions, load_rosie
from tests.rosie_model.export.conftest import CONVERSATIONS

GREEDY = SamplingOptions(max_new_tokens=20, temperature=0, repetition_penalty=1.0)


def with_system(rosie, messages):
    """What Rosie's chat renders: her system prompt first unless the conversation brings one."""
    if messages[0]["role"] == "system":
        return messages
    return [{"role": "system", "content": rosie.system_prompt}, *messages]


def transformers_reply(model, prompt: list[int]) -> list[int]:
    """Plain greedy `generate` with the folder's own generation config, the closing stop token dropped."""
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=GREEDY.max_new_tokens,
                             do_sample=False, repetition_penalty=1.0)[0, len(prompt):].tolist()
    return out[:-1] if out and out[-1] in model.generation_config.eos_token_id else out


def test_the_folder_loads_without_custom_code_renders_like_rosie_and_generates_her_tokens(model_folder, exported):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rosie = load_rosie(model_folder)
    model = AutoModelForCausalLM.from_pretrained(str(exported)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(exported))
    assert json.loads((exported / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert (exported / "chat_template.jinja").is_file() and tokenizer.eos_token == "<|endoftext|>"
    stops = set(model.generation_config.eos_token_id)
    assert rosie.token_id("<|endoftext|>") in stops and rosie.tokenizer.token_to_id("<|user|>") in stops | {None}
    assert not stops & set(rosie.reply_start_ids)  # her own turn's opening is hers to write
    for messages in CONVERSATIONS:
        prompt = rosie.render(with_system(rosie, messages))
        assert tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"] == prompt
        decoder = ReplyDecoder(rosie, prompt, GREEDY)
        ours = list(decoder)
        # Rosie's decoder opens her turn with the emotion her head picked; transformers is given that token
        theirs = transformers_reply(model, prompt + [decoder.emotion_id, *rosie.reply_start_ids])
        assert theirs == ours, (rosie.text_of(theirs), rosie.text_of(ours))  # and stopped where she stops


def test_the_emotion_head_beside_the_weights_reads_her_emotion_as_her_decoder_does(model_folder, exported):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    rosie = load_rosie(model_folder)
    model = AutoModelForCausalLM.from_pretrained(str(exported)).eval()
    with safe_open(str(exported / HEADS_FILE), "pt") as heads:
        weight, bias = heads.get_tensor("emotion_head.weight"), heads.get_tensor("emotion_head.bias")
        metadata = heads.metadata()
        assert heads.get_tensor("persona.weight").shape[0] == rosie.model.config.n_personas
    emotions, reads = json.loads(metadata["emotions"]), metadata["emotion_reads"]
    window = 1 if reads == "last" else int(reads.removeprefix("mean_last_"))
    for messages in CONVERSATIONS:
        prompt = rosie.render(with_system(rosie, messages))
        with torch.no_grad():
            hidden = model(torch.tensor([prompt]), output_hidden_states=True).hidden_states[-1][0]
        picked = emotions[int(torch.argmax(hidden[-window:].mean(0) @ weight.T + bias))]
        assert picked == ReplyDecoder(rosie, prompt, GREEDY).emotion


def test_the_scratch_model_keeps_its_logits_with_persona_0_in_the_embedding(scratch_folder, tmp_path):
    from transformers import AutoModelForCausalLM

    out = export_hf(scratch_folder, tmp_path / "hf")
    rosie = load_rosie(scratch_folder)
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    ids = torch.randint(0, rosie.model.config.vocab_size, (2, 40))
    persona = torch.zeros(2, dtype=torch.long)  # persona 0 is folded into the export
    with torch.no_grad():
        ours, theirs = rosie.model.lm_logits(rosie.model(ids, persona=persona)), model(ids).logits
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["max_new_tokens"] == 24 and generation["repetition_penalty"] == 1.2  # sampling.json's


def test_persona_0_is_folded_where_it_joins_and_the_card_says_what_stays_behind(model_folder, exported):
    rosie = load_rosie(model_folder)
    config = json.loads((exported / "config.json").read_text())
    assert "peft" not in json.dumps(config)  # a plain model: adapters merged, no custom code
    mid_layer = getattr(rosie.model, "persona_layer", 0) > 0
    assert config["mlp_bias"] == mid_layer  # a persona joining mid-way rides on the layer below's bias
    assert config["tie_word_embeddings"] == mid_layer  # one joining at the embeddings unties the output layer
    card = (exported / "README.md").read_text()
    assert ("down projection" in card) == mid_layer
    # memory: a context block the template renders (bootstrap), or memory attention a Llama has no place for
    assert ("memory attention" in card) != (model_folder / "bootstrap.json").is_file()


def test_the_model_card_has_the_header_the_hub_reads(scratch_folder, tmp_path):
    from huggingface_hub import ModelCard

    card = ModelCard.load(export_hf(scratch_folder, tmp_path / "hf") / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-generation"
    assert card.data.rosie_approach == "scratch" and card.data.rosie_weights == "final.safetensors"
    assert "Not evaluated" in card.text  # a bare folder has no registered scorecard to show


def test_export_names_the_weights_and_refuses_a_phase_the_folder_lacks(scratch_folder, tmp_path):
    from rosie_model.core.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="base.safetensors"):
        export_hf(scratch_folder, tmp_path / "hf", "base")
    with pytest.raises(ValueError, match="weights are one of"):
        export_hf(scratch_folder, tmp_path / "hf", "latest")
    assert not (tmp_path / "hf").exists()


def test_the_command_line_writes_the_folder_and_a_gguf(scratch_folder, tmp_path):
    done = subprocess.run([sys.executable, "-m", "rosie_model", "export", str(scratch_folder), str(tmp_path / "out"),
                           "--gguf", "--quant", "q8_0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "rosie-q8_0.gguf").is_file()
    assert "rosie-q8_0.gguf" in done.stdout
