"""CLIP vision encoders (the image tower of CLIP, as used by unCLIP, style models and IP-Adapters).

Files (`models/clip_vision`), the single-file layouts ComfyUI loads:
- transformers': `vision_model.*` and `visual_projection.weight` (a whole CLIPModel file works too: its text
  tower is ignored);
- OpenCLIP's: `visual.conv1`, `visual.transformer.resblocks.N.*`, `visual.proj`, … (converted to the first).
The architecture is read from the shapes: width, depth, patch size, image size (from the position embedding)
and projection width. Head count and activation are not in the shapes; they follow the released models: width
768 → 12 heads, 1024/1280/1664 (ViT-L, ViT-H, ViT-bigG) → 16, other widths one head per 64 channels;
quick-GELU (OpenAI's ViT-B/L) except for widths 1280 and 1664 (OpenCLIP's ViT-H and bigG), which use GELU.
The model itself is transformers' `CLIPVisionModelWithProjection`.

Preprocessing (ComfyUI's): drop an alpha channel; unless the image is already the model's size, resize it
bicubic with antialiasing, with `crop` the short side to the size and then the centre cut out, without it
straight to size × size; round to 8-bit levels; normalise with CLIP's mean and std.

Outputs (ComfyUI's CLIP_VISION_OUTPUT): `last_hidden_state` (the last layer's tokens, before the post layer
norm), `penultimate_hidden_states` (the layer before), `image_embeds` (the projected pooled token), float32 on
the CPU.

Public API: `ClipVisionOutput`, `ClipVision` (the CLIP_VISION value, `.encode(image, crop)`),
`load_clip_vision(path, manager, *, allow_pickle, source)`, `preprocess(image, size, crop)`,
`to_transformers_layout(tensors)`, `vision_config(shapes)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from nodes.sd.checkpoint import build_empty, fill_weights
from nodes.sd.devices import ModelManager, dtype_policy
from nodes.sd.errors import CheckpointError
from nodes.sd.statedict import open_state_dict

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HEADS = {768: 12, 1024: 16, 1280: 16, 1664: 16}
GELU_WIDTHS = (1280, 1664)
OPENCLIP_BLOCK = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
                  "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}


@dataclass(frozen=True)
class ClipVisionOutput:
    """CLIP_VISION_OUTPUT. Also readable as `output["image_embeds"]`, as ComfyUI's object is."""

    image_embeds: torch.Tensor
    last_hidden_state: torch.Tensor
    penultimate_hidden_states: torch.Tensor

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)


def preprocess(image: torch.Tensor, size: int, crop: bool) -> torch.Tensor:
    """IMAGE [B, H, W, C] in 0..1 → normalised pixel values [B, 3, size, size] (module rules)."""
    pixels = image[..., :3].movedim(-1, 1).float()
    height, width = pixels.shape[-2:]
    if (height, width) != (size, size):
        if crop:
            scale = size / min(height, width)
            target = (round(scale * height), round(scale * width))
        else:
            target = (size, size)
        pixels = F.interpolate(pixels, size=target, mode="bicubic", antialias=True)
        top, left = (pixels.shape[2] - size) // 2, (pixels.shape[3] - size) // 2
        pixels = pixels[:, :, top:top + size, left:left + size]
    pixels = (pixels * 255).clamp(0, 255).round() / 255
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


def _from_openclip(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    simple = {"visual.class_embedding": "embeddings.class_embedding",
              "visual.positional_embedding": "embeddings.position_embedding.weight",
              "visual.conv1.weight": "embeddings.patch_embedding.weight"}
    for key, value in tensors.items():
        if not key.startswith("visual."):
            continue
        name = key.removeprefix("visual.")
        if key in simple:
            out["vision_model." + simple[key]] = value
        elif name == "proj":
            out["visual_projection.weight"] = value.t().contiguous()
        elif name.startswith(("ln_pre.", "ln_post.")):
            part, leaf = name.split(".", 1)
            out[f"vision_model.{'pre_layrnorm' if part == 'ln_pre' else 'post_layernorm'}.{leaf}"] = value
        elif name.startswith("transformer.resblocks."):
            index, rest = name.removeprefix("transformer.resblocks.").split(".", 1)
            prefix = f"vision_model.encoder.layers.{index}."
            if rest.startswith("attn.in_proj_"):
                leaf = "weight" if rest.endswith("weight") else "bias"
                for proj, chunk in zip(("q", "k", "v"), value.chunk(3, dim=0)):
                    out[f"{prefix}self_attn.{proj}_proj.{leaf}"] = chunk
            else:
                module, leaf = rest.rsplit(".", 1)
                if module not in OPENCLIP_BLOCK:
                    raise KeyError(key)
                out[f"{prefix}{OPENCLIP_BLOCK[module]}.{leaf}"] = value
        else:
            raise KeyError(key)
    return out


def to_transformers_layout(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The vision tower's tensors under transformers' names; KeyError for a layout this module does not know."""
    if "visual.transformer.resblocks.0.attn.in_proj_weight" in tensors:
        return _from_openclip(tensors)
    if "vision_model.embeddings.patch_embedding.weight" in tensors and "visual_projection.weight" in tensors:
        return {k: v for k, v in tensors.items() if k.startswith(("vision_model.", "visual_projection."))}
    raise KeyError("no CLIP vision tower (vision_model.* with visual_projection, or OpenCLIP visual.*)")


def vision_config(shapes: dict[str, tuple[int, ...]]) -> CLIPVisionConfig:
    """The architecture of a vision tower in transformers' layout, read from its shapes (module rules)."""
    width, _, patch, _ = shapes["vision_model.embeddings.patch_embedding.weight"]
    positions = shapes["vision_model.embeddings.position_embedding.weight"][0]
    layers = 1 + max(int(k.split(".")[3]) for k in shapes if k.startswith("vision_model.encoder.layers."))
    side = round((positions - 1) ** 0.5)
    return CLIPVisionConfig(
        hidden_size=width, intermediate_size=shapes["vision_model.encoder.layers.0.mlp.fc1.weight"][0],
        num_hidden_layers=layers, num_attention_heads=HEADS.get(width, max(1, width // 64)),
        image_size=side * patch, patch_size=patch, projection_dim=shapes["visual_projection.weight"][0],
        num_channels=shapes["vision_model.embeddings.patch_embedding.weight"][1],
        hidden_act="gelu" if width in GELU_WIDTHS else "quick_gelu", layer_norm_eps=1e-5)


@dataclass(frozen=True)
class ClipVision:
    """CLIP_VISION: a CLIP image encoder and the manager that puts it on the device."""

    model: CLIPVisionModelWithProjection
    manager: ModelManager = field(repr=False)
    source: str = ""

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    @torch.inference_mode()
    def encode(self, image: torch.Tensor, crop: bool = True) -> ClipVisionOutput:
        """Encode IMAGE [B, H, W, C]; `crop` keeps the aspect ratio by cutting the centre out."""
        pixels = preprocess(image, self.image_size, crop)
        with self.manager.use(self.model) as model:
            out = model(pixel_values=pixels.to(model.device, model.dtype), output_hidden_states=True)
        host = lambda t: t.float().cpu()  # noqa: E731
        return ClipVisionOutput(image_embeds=host(out.image_embeds), last_hidden_state=host(out.last_hidden_state),
                                penultimate_hidden_states=host(out.hidden_states[-2]))


def load_clip_vision(path: Path, manager: ModelManager, *, allow_pickle: bool = False,
                     source: str = "") -> ClipVision:
    """Read a CLIP vision file in either layout; `CheckpointError` says why a file is refused."""
    tensors: dict[str, Any] = open_state_dict(path, allow_pickle=allow_pickle).tensors()
    try:
        tensors = to_transformers_layout(tensors)
        config = vision_config({k: tuple(v.shape) for k, v in tensors.items()})
    except KeyError as exc:
        raise CheckpointError(path, f"not a CLIP vision model ({exc.args[0]})") from None
    model = build_empty(path, "CLIP vision model", lambda: CLIPVisionModelWithProjection(config))
    model = fill_weights(model, tensors, path, "CLIP vision", dtype_policy(manager.device).text_encoder)
    return ClipVision(model, manager, source)
