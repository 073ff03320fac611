import json

import torch

from rosie_model.core.checkpoint import load_weights
from rosie_model.core.config import ModelConfig, preset
from rosie_model.core.export import export_hf
from rosie_model.core.model import RosieTransformer
from rosie_model.core.checkpoint import save_weights


def test_transformers_loads_the_export_with_the_same_logits(tmp_path, corpus):
    torch.manual_seed(0)
    config = preset("tiny", vocab_size=400, n_kv_heads=2, max_seq_len=64)
    model = RosieTransformer(config).eval()
    model_dir = tmp_path / "model"
    config.save(model_dir / "config.json")
    save_weights(model.state_dict(), model_dir / "weights" / "base.safetensors")
    (model_dir / "tokenizer").mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model_dir / "tokenizer" / name).write_bytes((corpus["tokenizer"] / name).read_bytes())

    out = export_hf(model_dir, tmp_path / "hf")
    from transformers import AutoTokenizer, LlamaForCausalLM

    hf = LlamaForCausalLM.from_pretrained(str(out)).eval()
    assert json.loads((out / "config.json").read_text())["num_key_value_heads"] == 2
    ids = torch.randint(0, 400, (2, 40))
    with torch.no_grad():
        ours, theirs = model.lm_logits(model(ids)), hf(ids).logits
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert tokenizer.eos_token == "<|endoftext|>"
    assert ModelConfig.load(model_dir / "config.json") == config
    assert load_weights(model_dir / "weights" / "base.safetensors").keys() == model.state_dict().keys()
