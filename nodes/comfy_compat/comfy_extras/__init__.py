"""`comfy_extras`: the modules of ComfyUI's extra nodes that packs import (imported only under that name).

`comfy_extras.nodes_<x>` holds the ComfyUI classes of our built-in nodes ComfyUI keeps there (`nodes.comfy_face`),
served by `nodes.comfy_compat`'s finder; `nodes_mask` adds the `composite` helper, `nodes_latent`
`reshape_latent_to`. `chainner_models.model_loading`
loads upscale models with spandrel.
"""
