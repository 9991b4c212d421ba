"""ComfyUI's face of our built-in nodes: the classes packs import from `nodes` and `comfy_extras.nodes_*`.

Packs subclass ComfyUI's core classes (`class MySave(SaveImage)`), read their input lists
(`LoraLoader.INPUT_TYPES()`), or call them (`SaveImage().save_images(images, "x")`, `common_ksampler(...)`).
Each built-in node gets one generated V1-shaped class, made from its `NodeSpec` (one implementation, two faces):

- `INPUT_TYPES()` is the node's `/object_info` input section rendered now (file lists are current);
  `RETURN_TYPES`, `RETURN_NAMES`, `OUTPUT_IS_LIST`, `CATEGORY`, `OUTPUT_NODE`, `DESCRIPTION` come from the spec;
  `FUNCTION` is ComfyUI's method name for that node (`FUNCTIONS`; nodes ComfyUI writes in its V3 style, and ours
  that ComfyUI lacks, use `execute`).
- The method takes the inputs in declaration order, positionally or by name, then the hidden `prompt`,
  `extra_pnginfo`, `unique_id` the node declares; omitted inputs take their defaults. It runs our node through a
  `Context.derive` of the calling pack node's context (same progress, interrupt and models), or, outside a running
  node, through a context of its own over the data folder `folder_paths` is bound to. It returns ComfyUI's shapes: a
  tuple of outputs, or `{"ui": {...}, "result": (...)}` for an output node or a node that shows something.
- Values are ours (MODEL/CLIP/VAE are our handles): a pack passing them from one of these classes to another works;
  a pack reaching into ComfyUI's model objects does not. Instance attributes ComfyUI's classes set in `__init__`
  (`output_dir`, `type`, `prefix_append`) are not read: where files go is the node's own rule.

The classes are built once, from the built-in registry, so built-in nodes added later appear without a change
here. The class for a node lives in the module its spec names (`python_module`: `nodes`, or a
`comfy_extras.nodes_*` module, which `nodes.comfy_compat` serves from `module_members`).
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from nodes.api import Context, Environment, NodeSpec
from nodes.comfy_compat import STATE, current_context
from nodes.registry import HIDDEN_NAMES, render_object_info

DEFAULT_FUNCTION = "execute"
# ComfyUI's FUNCTION name of each node whose class predates its V3 style (facts of ComfyUI's nodes.py and extras).
FUNCTIONS = {
    "LoadImage": "load_image", "LoadImageMask": "load_image", "SaveImage": "save_images",
    "PreviewImage": "save_images", "EmptyLatentImage": "generate", "VAEDecode": "decode", "VAEEncode": "encode",
    "VAEEncodeForInpaint": "encode", "InpaintModelConditioning": "encode", "RepeatLatentBatch": "repeat",
    "LatentFromBatch": "frombatch", "CheckpointLoaderSimple": "load_checkpoint", "VAELoader": "load_vae",
    "LoraLoader": "load_lora", "LoraLoaderModelOnly": "load_lora_model_only", "CLIPTextEncode": "encode",
    "CLIPSetLastLayer": "set_last_layer", "CLIPTextEncodeSDXL": "encode", "CLIPTextEncodeSDXLRefiner": "encode",
    "KSampler": "sample", "KSamplerAdvanced": "sample", "SetLatentNoiseMask": "set_mask",
    "LatentUpscale": "upscale", "LatentUpscaleBy": "upscale", "ImageScale": "upscale", "ImageScaleBy": "upscale",
    "ImageScaleToTotalPixels": "upscale", "ConditioningCombine": "combine", "ConditioningSetTimestepRange":
    "set_range", "ConditioningZeroOut": "zero_out", "ConditioningAverage": "addWeighted",
    "ConditioningConcat": "concat", "ConditioningSetArea": "append", "ConditioningSetAreaPercentage": "append",
    "ConditioningSetAreaStrength": "append", "ConditioningSetMask": "append", "ControlNetLoader": "load_controlnet",
    "ControlNetApply": "apply_controlnet", "ControlNetApplyAdvanced": "apply_controlnet",
    "ImageToMask": "image_to_mask", "MaskToImage": "mask_to_image", "InvertMask": "invert", "SolidMask": "solid",
    "ThresholdMask": "image_to_mask", "GrowMask": "expand_mask", "ImageCompositeMasked": "composite",
    "LatentCompositeMasked": "composite", "LatentComposite": "composite", "LatentBlend": "blend",
    "ImageInvert": "invert", "EmptyImage": "generate", "ImageBatch": "batch", "ImagePadForOutpaint": "expand_image",
    "ImageCrop": "crop", "LatentCrop": "crop", "SaveLatent": "save", "LoadLatent": "load", "LatentFlip": "flip",
    "LatentRotate": "rotate", "SamplerCustom": "sample", "SamplerCustomAdvanced": "sample",
    "KSamplerSelect": "get_sampler", "BasicScheduler": "get_sigmas", "KarrasScheduler": "get_sigmas",
    "ExponentialScheduler": "get_sigmas", "SplitSigmas": "get_sigmas", "RandomNoise": "get_noise",
    "DisableNoise": "get_noise", "BasicGuider": "get_guider", "CFGGuider": "get_guider",
    "CLIPLoader": "load_clip", "DualCLIPLoader": "load_clip", "UNETLoader": "load_unet",
    "UpscaleModelLoader": "load_model", "ImageUpscaleWithModel": "upscale",
}
HIDDEN_PARAMS = tuple(HIDDEN_NAMES.values())


@functools.cache
def core_classes() -> dict[str, type]:
    """ComfyUI name → generated class, for every built-in node (aliases are ours, so not listed)."""
    from nodes.builtin import builtin_registry

    return {spec.name: face_class(spec) for spec in builtin_registry()}


def display_names() -> dict[str, str]:
    from nodes.builtin import builtin_registry

    return {spec.name: spec.display_name for spec in builtin_registry()}


def module_members(module: str) -> dict[str, type]:
    """The classes ComfyUI keeps in `module` (e.g. `comfy_extras.nodes_mask`) that we have."""
    return {name: cls for name, cls in core_classes().items() if cls.__module__ == module}


def face_class(spec: NodeSpec) -> type:
    """The V1-shaped class of one built-in node (see the module's rules)."""
    function = FUNCTIONS.get(spec.name, DEFAULT_FUNCTION)
    method = _method(spec, function)

    def input_types(cls: type) -> dict[str, Any]:
        return render_object_info(spec, _environment())["input"]

    return type(spec.name, (), {
        "__doc__": spec.description, "__module__": spec.python_module, "__qualname__": spec.name,
        "INPUT_TYPES": classmethod(input_types), "RETURN_TYPES": tuple(o.type for o in spec.outputs),
        "RETURN_NAMES": tuple(o.name for o in spec.outputs), "OUTPUT_IS_LIST": tuple(o.is_list for o in spec.outputs),
        "FUNCTION": function, "CATEGORY": spec.category, "OUTPUT_NODE": spec.output_node,
        "INPUT_IS_LIST": spec.input_is_list, "DESCRIPTION": spec.description, function: method})


class _Missing:
    """The default of an input without one: the signature stays positional in declaration order (ours may
    declare a socket after a widget with a default); `run_node` reports it missing."""

    def __repr__(self) -> str:
        return "<required>"


_MISSING = _Missing()


def _method(spec: NodeSpec, function: str) -> Callable[..., Any]:
    hidden = [HIDDEN_NAMES[h] for h in spec.hidden]
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(i.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 default=i.default if i.has_default else _MISSING) for i in spec.inputs]
    params += [inspect.Parameter(h, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for h in hidden]
    signature = inspect.Signature(params)

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{spec.name}.{function}(): {exc}") from None
        bound.apply_defaults()
        values = dict(bound.arguments)
        del values["self"]
        return run_node(spec, {k: v for k, v in values.items() if k not in HIDDEN_PARAMS},
                        {k: v for k, v in values.items() if k in HIDDEN_PARAMS})

    call.__name__ = call.__qualname__ = function
    call.__signature__ = signature  # type: ignore[attr-defined]
    call.__doc__ = spec.description
    return call


def run_node(spec: NodeSpec, values: dict[str, Any], hidden: dict[str, Any]) -> Any:
    """Run our node with `values` (every input, `_MISSING` for one not given) and return ComfyUI's result shape."""
    missing = [i.name for i in spec.inputs if i.required and values.get(i.name, _MISSING) is _MISSING]
    if missing:
        raise TypeError(f"{spec.name}: missing required input(s) {', '.join(missing)}")
    given = {k: v for k, v in values.items() if v is not _MISSING}
    parent = current_context() or standalone_context()
    extra = parent.extra_data
    if hidden.get("extra_pnginfo") is not None:
        extra = {**extra, "extra_pnginfo": hidden["extra_pnginfo"]}
    ctx = parent.derive(prompt=hidden.get("prompt"), extra_data=extra)
    outputs = spec.output_values(spec.cls.model_construct(**given).run(ctx))
    if spec.output_node or ctx.ui:
        return {"ui": ctx.ui, "result": outputs} if outputs else {"ui": ctx.ui}
    return outputs


def common_ksampler(model: Any, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
                    positive: Any, negative: Any, latent: dict[str, Any], denoise: float = 1.0,
                    disable_noise: bool = False, start_step: int | None = None, last_step: int | None = None,
                    force_full_denoise: bool = False) -> tuple[dict[str, Any]]:
    """ComfyUI's `nodes.common_ksampler`: KSampler / KSamplerAdvanced's sampling, returning `(latent,)`."""
    from nodes.builtin.sampling import run_sampler

    ctx = current_context() or standalone_context()
    return (run_sampler(ctx, model, latent, seed=seed, steps=steps, cfg=cfg, sampler_name=sampler_name,
                        scheduler=scheduler, positive=positive, negative=negative, denoise=denoise,
                        add_noise=not disable_noise, start_step=start_step, last_step=last_step,
                        force_full_denoise=force_full_denoise),)


def _environment() -> Environment:
    ctx = current_context()
    return ctx.env if ctx is not None else STATE.environment()


def standalone_context() -> Context:
    """For calls made outside a running node (at a pack's import, from its own thread)."""
    return Context(node_id="", prompt_id="", prompt={}, extra_data={}, env=STATE.environment())
