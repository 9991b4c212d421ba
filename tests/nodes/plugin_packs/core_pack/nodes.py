import comfy.model_management
import comfy.samplers
import comfy.utils
import latent_preview
import node_helpers
import torch
import nodes
from comfy_extras.nodes_mask import GrowMask, composite
from nodes import MAX_RESOLUTION, EmptyLatentImage, ImageScale, SaveImage, common_ksampler


class SaveInverted(SaveImage):
    """Saves the negative of the images, under the prefix plus a suffix."""

    @classmethod
    def INPUT_TYPES(cls):
        types = super().INPUT_TYPES()
        types["required"]["suffix"] = ("STRING", {"default": "_neg"})
        return types

    FUNCTION = "save_inverted"
    CATEGORY = "core_pack"

    def save_inverted(self, images, filename_prefix, suffix, prompt=None, extra_pnginfo=None):
        return self.save_images(1.0 - images, filename_prefix + suffix, prompt, extra_pnginfo)


class HalfSize(ImageScale):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "upscale_method": ImageScale.INPUT_TYPES()["required"]["upscale_method"]}}

    FUNCTION = "half"
    CATEGORY = "core_pack"

    def half(self, image, upscale_method):
        return super().upscale(image, upscale_method, image.shape[2] // 2, image.shape[1] // 2, "disabled")


class SquareLatent(EmptyLatentImage):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"size": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8})}}

    FUNCTION = "square"

    def square(self, size):
        return self.generate(size, size, 1)


class QuickSampler:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",), "positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
            "latent_image": ("LATENT",), "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff}),
            "sampler_name": (comfy.samplers.KSampler.SAMPLERS,),
            "scheduler": (comfy.samplers.KSampler.SCHEDULERS, {"default": "karras"}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = "core_pack"

    def sample(self, model, positive, negative, latent_image, seed, sampler_name, scheduler, strength):
        positive = node_helpers.conditioning_set_values(positive, {"strength": strength})
        return common_ksampler(model, seed, 2, 5.0, sampler_name, scheduler, positive, negative, latent_image)


class MaskPaste:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"destination": ("IMAGE",), "source": ("IMAGE",), "mask": ("MASK",),
                             "grow": ("INT", {"default": 1, "min": 0, "max": 16})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "paste"
    CATEGORY = "core_pack"

    def paste(self, destination, source, mask, grow):
        (grown,) = GrowMask().expand_mask(mask, grow, False)
        out = composite(destination.movedim(-1, 1), source.movedim(-1, 1), 0, 0, grown, 1)
        return (out.movedim(1, -1),)


class PreviewSteps:
    """Reports `steps` sampler-like steps through latent_preview's callback; stops the run at `stop_at`."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": ("INT", {"default": 3, "min": 1, "max": 20}),
                             "stop_at": ("INT", {"default": 0, "min": 0, "max": 20})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "run"
    CATEGORY = "core_pack"

    def run(self, steps, stop_at):
        x0 = {}
        callback = latent_preview.prepare_callback(None, steps, x0)
        for step in range(steps):
            if step + 1 == stop_at:
                comfy.model_management.interrupt_current_processing()
            callback(step, torch.full((1, 4, 2, 2), float(step)), None, steps)
        return ({"samples": x0["x0"]},)


NODE_CLASS_MAPPINGS = {"CorePreviewSteps": PreviewSteps, "CoreSaveInverted": SaveInverted, "CoreHalfSize": HalfSize, "CoreSquareLatent": SquareLatent,
                       "CoreQuickSampler": QuickSampler, "CoreMaskPaste": MaskPaste,
                       "CoreLoraLoader": type("CoreLoraLoader", (nodes.LoraLoader,), {"CATEGORY": "core_pack"})}
NODE_DISPLAY_NAME_MAPPINGS = {"CoreSaveInverted": "Save inverted"}
