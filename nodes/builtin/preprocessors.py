"""Image preprocessors (ComfyUI's `image/preprocessors`): Canny edges, as ControlNet's canny models expect them.

Canny is kornia's `kornia.filters.canny` (what ComfyUI calls) with kornia's defaults otherwise (5×5 Gaussian,
sigma 1, hysteresis): the image's luminance is blurred, its Sobel gradient magnitude thinned by non-maximum
suppression, and kept where above `high_threshold` or connected to such a pixel through pixels above
`low_threshold`. The edge map (0 or 1) is repeated to three channels.
"""
from __future__ import annotations

from kornia.filters import canny

from nodes.api import Context, Input, Node, node
from nodes.sd.devices import compute_device
from nodes.types import Image


@node(category="image/preprocessors", version="1.0.0", python_module="comfy_extras.nodes_canny")
class Canny(Node):
    """Detect edges with the Canny algorithm (white edges on black), e.g. for a canny ControlNet."""

    image: Image = Input()
    low_threshold: float = Input(0.4, ge=0.01, le=0.99, step=0.01)
    high_threshold: float = Input(0.8, ge=0.01, le=0.99, step=0.01)

    def run(self, ctx: Context) -> Image:
        # kornia refuses low_threshold > high_threshold with a message naming both.
        _, edges = canny(self.image.to(compute_device()).movedim(-1, 1), self.low_threshold, self.high_threshold)
        return edges.cpu().repeat(1, 3, 1, 1).movedim(1, -1)
