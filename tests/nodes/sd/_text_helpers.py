"""Tiny seeded random-weight CLIP text models with the real architectures, for the text-encoding tests.

The configs keep the real vocabulary size (49408) and context length (77) so real token ids work, and shrink
everything else. L and G get different widths so a concatenation mistake changes the shape.
"""

from __future__ import annotations

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

L_WIDTH, H_WIDTH, G_WIDTH, G_PROJECTION = 32, 32, 48, 40


def _config(width: int, layers: int, act: str, eos_token_id: int, projection_dim: int = 32) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=width,
        intermediate_size=2 * width + 5,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act=act,
        projection_dim=projection_dim,
        bos_token_id=49406,
        eos_token_id=eos_token_id,
        pad_token_id=1,
    )


def _seeded(model_class, config: CLIPTextConfig, seed: int):
    torch.manual_seed(seed)
    model = model_class(config).eval()
    # transformers' init draws tiny weights (std 0.02); scale the token table up so that different prompts
    # give clearly different hidden states and a wrong position or layer cannot pass by accident.
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(20.0)
    return model


def tiny_clip_l(seed: int = 0, layers: int = 3) -> CLIPTextModel:
    """CLIP-L shaped (quick_gelu, legacy eos_token_id=2 as in openai/clip-vit-large-patch14's config)."""
    return _seeded(CLIPTextModel, _config(L_WIDTH, layers, "quick_gelu", eos_token_id=2), seed)


def tiny_clip_h(seed: int = 1, layers: int = 4) -> CLIPTextModel:
    """OpenCLIP ViT-H shaped, as SD2 checkpoints hold it (gelu)."""
    return _seeded(CLIPTextModel, _config(H_WIDTH, layers, "gelu", eos_token_id=49407), seed)


def tiny_clip_g(seed: int = 2, layers: int = 4) -> CLIPTextModelWithProjection:
    """OpenCLIP ViT-bigG shaped, with the text projection SDXL's pooled vector goes through."""
    config = _config(G_WIDTH, layers, "gelu", eos_token_id=49407, projection_dim=G_PROJECTION)
    return _seeded(CLIPTextModelWithProjection, config, seed)


def run_model(model, ids: list[list[int]], output_hidden_states: bool = True):
    """The transformers model called directly on a batch of id lists: the reference our encoder must match."""
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids, dtype=torch.long), output_hidden_states=output_hidden_states)
