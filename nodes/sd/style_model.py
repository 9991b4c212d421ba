"""T2I-Adapter style models: CLIP image tokens turned into extra prompt tokens (`models/style_models`).

The file layout is TencentARC's StyleAdapter (`t2iadapter_style_sd14v1.pth` and its safetensors conversions):
`style_embedding` [1, tokens, width] (learned query tokens), `ln_pre`, `transformer_layes.N.*` (residual
attention blocks: `ln_1`, `attn` as torch's MultiheadAttention with fused `in_proj`, `ln_2`, `mlp.c_fc`,
`mlp.c_proj` with quick-GELU between), `ln_post`, `proj` [width, context]. Width, token count, depth and
context width are read from the shapes; the head count is not in the shapes and is 8, as in the released model
(and ComfyUI).

`StyleModel.tokens(last_hidden_state)` appends the query tokens to the CLIP vision tokens [B, N, width], runs
the blocks, keeps the query tokens and projects them to the prompt's width: [B, tokens, context].

Flux's Redux models (`redux_up`/`redux_down`, fed by a SigLIP encoder) are not supported: SigLIP encoders do
not load here.

Public API: `StyleModel` (the STYLE_MODEL value), `StyleAdapter`, `load_style_model(path, manager, *, ...)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from nodes.sd.checkpoint import build_empty, fill_weights
from nodes.sd.devices import ModelManager, dtype_policy
from nodes.sd.errors import CheckpointError
from nodes.sd.statedict import open_state_dict

HEADS = 8


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _Block(nn.Module):
    """Pre-norm residual attention block over [L, B, width] (sequence first, as MultiheadAttention's default)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, width * 4))
        self.mlp.add_module("gelu", _QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(width * 4, width))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.ln_1(x)
        x = x + self.attn(normed, normed, normed, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class StyleAdapter(nn.Module):
    """TencentARC's StyleAdapter architecture, with its parameter names (`transformer_layes` sic)."""

    def __init__(self, width: int, context_dim: int, layers: int, tokens: int, heads: int = HEADS) -> None:
        super().__init__()
        self.style_embedding = nn.Parameter(torch.zeros(1, tokens, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer_layes = nn.Sequential(*[_Block(width, heads) for _ in range(layers)])
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, context_dim))

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        queries = self.style_embedding.expand(image_tokens.shape[0], -1, -1)
        x = self.ln_pre(torch.cat([image_tokens, queries], dim=1)).permute(1, 0, 2)
        x = self.transformer_layes(x).permute(1, 0, 2)
        return self.ln_post(x[:, -queries.shape[1]:]) @ self.proj


@dataclass(frozen=True)
class StyleModel:
    """STYLE_MODEL: a style adapter and the manager that puts it on the device."""

    adapter: StyleAdapter
    manager: ModelManager = field(repr=False)
    source: str = ""

    @torch.inference_mode()
    def tokens(self, last_hidden_state: torch.Tensor) -> torch.Tensor:
        """Prompt tokens [B, tokens, context] (float32, CPU) from CLIP vision tokens [B, N, width]."""
        width = self.adapter.style_embedding.shape[-1]
        if last_hidden_state.shape[-1] != width:
            raise ValueError(f"the style model takes CLIP vision tokens of width {width}, not "
                             f"{last_hidden_state.shape[-1]} (it was trained with a ViT-L/14 image encoder)")
        with self.manager.use(self.adapter) as adapter:
            param = adapter.style_embedding
            return adapter(last_hidden_state.to(param.device, param.dtype)).float().cpu()


def load_style_model(path: Path, manager: ModelManager, *, allow_pickle: bool = False,
                     source: str = "") -> StyleModel:
    """Read a T2I-Adapter style model; `CheckpointError` says why a file is refused."""
    state = open_state_dict(path, allow_pickle=allow_pickle)
    shapes = state.shapes
    if "style_embedding" not in shapes or "proj" not in shapes:
        kind = "a Flux Redux model (not supported)" if "redux_up.weight" in shapes else "not a style model"
        raise CheckpointError(path, f"{kind}: a T2I-Adapter style model has style_embedding and proj")
    _, tokens, width = shapes["style_embedding"]
    layers = len({k.split(".")[1] for k in shapes if k.startswith("transformer_layes.")})
    adapter = build_empty(path, "style model", lambda: StyleAdapter(width, shapes["proj"][1], layers, tokens))
    adapter = fill_weights(adapter, state.tensors(), path, "style model", dtype_policy(manager.device).text_encoder)
    return StyleModel(adapter, manager, source)
