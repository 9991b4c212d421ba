"""Model-patch nodes: a MODEL in, a MODEL out that samples differently; the model given is never changed.

ComfyUI's names, inputs, defaults and categories (`comfy_extras.nodes_model_advanced`, `nodes_freelunch`,
`nodes_perpneg`, `nodes_sag`, `nodes_hypernetwork`). Each returns a new handle on the same UNet with new
`ModelOptions` (nodes/sd/model_options.py); the executor's cached input handle keeps sampling as before.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from nodes.api import Context, Environment, Input, Node, node
from nodes.builtin.loaders import file_fingerprint
from nodes.sd.freeu import FreeU as FreeUPatch
from nodes.sd.guidance import PerpNeg as PerpNegGuidance
from nodes.sd.guidance import RescaleCFG as RescaleCFGGuidance
from nodes.sd.hypernetwork import Hypernetwork, load_hypernetwork
from nodes.sd.sag import SelfAttentionGuidance as SagPatch
from nodes.sd.schedules import DistilledSchedule, sd_schedule
from nodes.types import Choices, Conditioning, Model

ADVANCED = "comfy_extras.nodes_model_advanced"
#: ModelSamplingDiscrete's choices → what the UNet predicts (`denoiser.PREDICTIONS`).
SAMPLING_PREDICTIONS = {"eps": "eps", "v_prediction": "v", "lcm": "lcm", "x0": "x0", "img_to_img": "img_to_img"}


@node(category="advanced/model", version="1.0.0", python_module=ADVANCED)
class ModelSamplingDiscrete(Node):
    """Sample the model as predicting noise, v, LCM-distilled noise, or the clean latent, optionally with its
    schedule rescaled to zero terminal SNR."""

    model: Model = Input()
    sampling: Literal[tuple(SAMPLING_PREDICTIONS)] = Input()  # type: ignore[valid-type]
    zsnr: bool = Input(False)

    def run(self, ctx: Context) -> Model:
        schedule = sd_schedule().zero_terminal_snr() if self.zsnr else sd_schedule()
        if self.sampling == "lcm":
            schedule = DistilledSchedule(schedule)
        return self.model.with_options(prediction=SAMPLING_PREDICTIONS[self.sampling], schedule=schedule)


@node(category="advanced/model", version="1.0.0", python_module=ADVANCED)
class RescaleCFG(Node):
    """Rescale the guided prediction's standard deviation towards the positive prediction's (less over-exposure
    at high cfg, mainly for v-prediction models)."""

    model: Model = Input()
    multiplier: float = Input(0.7, ge=0.0, le=1.0, step=0.01)

    def run(self, ctx: Context) -> Model:
        return self.model.with_options(cfg_function=RescaleCFGGuidance(self.multiplier))


@node(category="_for_testing", version="1.0.0", python_module="comfy_extras.nodes_perpneg",
      display_name="Perp-Neg (DEPRECATED by PerpNegGuider)", deprecated=True, experimental=True)
class PerpNeg(Node):
    """Perpendicular negative guidance: remove from the negative what it shares with the positive, relative to
    the empty prompt's prediction."""

    model: Model = Input()
    empty_conditioning: Conditioning = Input()
    neg_scale: float = Input(1.0, ge=0.0, le=100.0, step=0.01)

    def run(self, ctx: Context) -> Model:
        return self.model.with_options(cfg_function=PerpNegGuidance(self.empty_conditioning, self.neg_scale))


@node(category="_for_testing", version="1.0.0", python_module="comfy_extras.nodes_sag",
      display_name="Self-Attention Guidance")
class SelfAttentionGuidance(Node):
    """Guide away from a blurred copy of the prediction, blurred where the middle block's self-attention
    concentrates (the negative is evaluated even at cfg 1)."""

    model: Model = Input()
    scale: float = Input(0.5, ge=-2.0, le=5.0, step=0.01)
    blur_sigma: float = Input(2.0, ge=0.0, le=10.0, step=0.1)

    def run(self, ctx: Context) -> Model:
        sag = SagPatch(self.scale, self.blur_sigma)
        options = self.model.options
        return self.model.with_options(post_cfg_functions=options.post_cfg_functions + (sag,),
                                       disable_cfg1_optimization=True,
                                       unet_patches=options.unet_patches + (sag,))


def _factor(default: float):
    return Input(default, ge=0.0, le=10.0, step=0.01)


def _with_unet_patch(model, patch) -> Model:
    return model.with_options(unet_patches=model.options.unet_patches + (patch,))


@node(category="model_patches/unet", version="1.0.0", python_module="comfy_extras.nodes_freelunch")
class FreeU(Node):
    """FreeU: amplify the UNet decoder's backbone features (b1, b2) and damp the low frequencies of its skip
    connections (s1, s2)."""

    model: Model = Input()
    b1: float = _factor(1.1)
    b2: float = _factor(1.2)
    s1: float = _factor(0.9)
    s2: float = _factor(0.2)

    def run(self, ctx: Context) -> Model:
        return _with_unet_patch(self.model, FreeUPatch(self.b1, self.b2, self.s1, self.s2))


@node(category="model_patches/unet", version="1.0.0", python_module="comfy_extras.nodes_freelunch")
class FreeU_V2(Node):
    """FreeU v2: like FreeU, with the backbone amplified in proportion to each pixel's mean feature."""

    model: Model = Input()
    b1: float = _factor(1.3)
    b2: float = _factor(1.4)
    s1: float = _factor(0.9)
    s2: float = _factor(0.2)

    def run(self, ctx: Context) -> Model:
        return _with_unet_patch(self.model, FreeUPatch(self.b1, self.b2, self.s1, self.s2, adaptive=True))


@node(category="loaders", version="1.0.0", python_module="comfy_extras.nodes_hypernetwork")
class HypernetworkLoader(Node):
    """Apply an A1111 hypernetwork from `models/hypernetworks` (.pt, needs --allow-pickle) to the attention
    layers' keys and values."""

    model: Model = Input()
    hypernetwork_name: Annotated[str, Choices.model_files("hypernetworks")] = Input()
    strength: float = Input(1.0, ge=-10.0, le=10.0, step=0.01)

    def run(self, ctx: Context) -> Model:
        path = ctx.env.paths.model_path("hypernetworks", self.hypernetwork_name)
        networks = load_hypernetwork(path, allow_pickle=ctx.env.allow_pickle)
        return _with_unet_patch(self.model, Hypernetwork(networks, self.strength))

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        return file_fingerprint(env, "hypernetworks", inputs["hypernetwork_name"])
