"""Text conditioning nodes."""
from __future__ import annotations

from nodes.api import Context, Input, Node, node
from nodes.types import Clip, Conditioning


@node(category="conditioning", version="1.0.0", display_name="CLIP Text Encode (Prompt)")
class CLIPTextEncode(Node):
    """Encode a prompt with CLIP into conditioning; `(word:1.2)` weights words, long prompts are chunked."""

    text: str = Input(multiline=True, dynamic_prompts=True, tooltip="the text to encode")
    clip: Clip = Input(tooltip="the CLIP model used to encode the text")

    def run(self, ctx: Context) -> Conditioning:
        if self.clip is None:
            raise ValueError("clip input is invalid: None (the checkpoint has no text encoder)")
        cond, pooled = self.clip.encode(self.text)
        return [[cond, {"pooled_output": pooled}]]


@node(category="conditioning", version="1.0.0", display_name="CLIP Set Last Layer")
class CLIPSetLastLayer(Node):
    """Read the text encoder's output from an earlier layer ("CLIP skip": -2 skips the last layer)."""

    clip: Clip = Input()
    stop_at_clip_layer: int = Input(-1, ge=-24, le=-1)

    def run(self, ctx: Context) -> Clip:
        return self.clip.with_last_layer(self.stop_at_clip_layer)
