"""The model seen by a sampler: a diffusers UNet turned into denoised = D(x, σ), with CFG and inpainting masks.

Rules (reference §6.3, §6.6, §6.8), each chosen so that the UNet sees exactly what ComfyUI feeds it:

* Model sampling (`calculate_input`, `calculate_denoised`, `noise_scaling`): the UNet input is
  x / sqrt(σ² + 1) (x itself for `img_to_img`); its timestep is the **integer** t nearest to σ in log σ
  (`DiscreteSchedule.timestep`), passed as a float tensor; eps models give x0 = x − ε·σ, v models
  x0 = x/(σ² + 1) − v·σ/sqrt(σ² + 1), x0 models x0 = output, LCM x0 = c_out·(x − ε·σ) + c_skip·x with
  c_skip = σ_d²/((10t)² + σ_d²), c_out = 10t/sqrt((10t)² + σ_d²), σ_d = 0.5. The UNet runs in its own dtype and
  device; its output is cast to float32, and all sampling math stays float32.
* Conditioning (`prepare_conditioning`) takes ComfyUI's CONDITIONING value, a list of
  `[cond [1, T, D], {"pooled_output": …, …}]` entries. Each entry becomes one `ModelCond`: the cross-attention
  context, SDXL's added conditioning (`text_embeds` = pooled output, `time_ids` = [height, width, crop_h,
  crop_w, target_height, target_width] for the base model or [height, width, crop_h, crop_w, aesthetic_score]
  for the refiner, defaults 8 × the latent size, crops 0, aesthetic 6 / 2.5 on the negative side), and, for
  9-channel inpainting UNets, the concat channels [mask, masked-image latent] (defaults: mask 1 and the "blank"
  latent). `strength`, `start_percent`, `end_percent`, `area`, `mask`, `mask_strength` and `set_area_to_bounds`
  are honoured (areas and masks: `nodes.sd.regions`, reference §6.14); `control`, `gligen` and `hooks` are
  refused with `NotImplementedError` rather than ignored.
* Regions: an entry with an area is evaluated on its crop of the latent (its concat channels cropped alike);
  every entry with an area gets an equal on the other side (`match_opposite_areas`).
* CFG (`CFGDenoiser`): positive and negative entries run in **one** UNet batch (negative first, as ComfyUI
  orders it) when their crops have one size; token lengths that differ are repeated up to their least common
  multiple when that is at most 4× the shorter one, otherwise they run as separate calls. Each side's prediction
  is Σ prediction·mult / (1e-37 + Σ mult) per latent pixel, mult being the entry's strength or its per-pixel
  weight (mask, feathered area edges). result = uncond + (cond − uncond)·cfg on the *denoised* predictions; with
  cfg == 1 the negative is not evaluated. A MODEL's `ModelOptions` may replace that formula, adjust its result and
  keep the negative at cfg 1 (RescaleCFG, PerpNeg, SAG: nodes/sd/model_options.py).
* Inpainting (`MaskedDenoiser`, mask 1 = regenerate): before each model call x ← x·m + (noise·σ + latent)·(1 − m),
  after it x0 ← x0·m + latent·(1 − m).

Public API: `PREDICTIONS`, `calculate_input`, `calculate_denoised`, `noise_scaling`, `ModelCond`,
`prepare_conditioning(...)`, `sdxl_time_ids(...)`, `UNetModel(unet, prediction="eps", schedule=None)`,
`CFGDenoiser(model, positive, negative, cfg, options=None, prepare=None)`, `match_opposite_areas(sides)`,
`MaskedDenoiser(inner, mask, latent_image, noise)`, `prepare_mask(mask, shape)`, `repeat_to_batch_size(t, n)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import torch

from . import regions
from .model_options import CfgArgs, ModelOptions
from .samplers.common import DenoiseFn
from .schedules import DiscreteSchedule, sd_schedule

#: What the UNet predicts (ModelSamplingDiscrete's choices): noise, v, the clean latent (`x0`; `img_to_img` also
#: takes the latent unscaled), or LCM's noise with its boundary-condition scalings.
PREDICTIONS = ("eps", "v", "x0", "img_to_img", "lcm")
#: LCM's boundary condition (Luo et al. 2023): σ_data and the timestep scaling of c_skip / c_out.
LCM_SIGMA_DATA = 0.5
LCM_TIMESTEP_SCALING = 10.0

#: Latent of an all-zero (grey) image per channel, the default masked image of SD inpainting models (scaled space).
BLANK_INPAINT_LATENT = (0.8223, -0.6876, 0.6364, 0.1380)

_UNSUPPORTED_COND_KEYS = ("control", "gligen", "hooks")


def _view(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return sigma.reshape(sigma.shape[:1] + (1,) * (like.dim() - 1))


def calculate_input(sigma: torch.Tensor, x: torch.Tensor, prediction: str = "eps") -> torch.Tensor:
    """The UNet's input for latent x at noise level σ ([B]): x / sqrt(σ² + 1) (`img_to_img`: x itself)."""
    if prediction == "img_to_img":
        return x
    return x / (_view(sigma, x) ** 2 + 1.0) ** 0.5


def calculate_denoised(prediction: str, sigma: torch.Tensor, model_output: torch.Tensor, x: torch.Tensor,
                       timestep: torch.Tensor | None = None):
    """x0 from the UNet's output for latent x at noise level σ ([B]); `lcm` also needs the UNet's timestep ([B])."""
    sigma = _view(sigma, model_output)
    if prediction == "eps":
        return x - model_output * sigma
    if prediction == "v":
        return x * 1.0 / (sigma**2 + 1.0) - model_output * sigma * 1.0 / (sigma**2 + 1.0) ** 0.5
    if prediction in ("x0", "img_to_img"):
        return model_output
    if prediction == "lcm":
        if timestep is None:
            raise ValueError("the lcm prediction needs the timestep")
        scaled = _view(timestep, model_output) * LCM_TIMESTEP_SCALING
        c_skip = LCM_SIGMA_DATA**2 / (scaled**2 + LCM_SIGMA_DATA**2)
        c_out = scaled / (scaled**2 + LCM_SIGMA_DATA**2) ** 0.5
        return c_out * (x - model_output * sigma) + c_skip * x
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def noise_scaling(sigma: torch.Tensor, noise: torch.Tensor, latent: torch.Tensor, max_denoise: bool = False):
    """The noisy latent at σ: noise·sqrt(1 + σ²) (when starting from pure noise) or noise·σ, plus the latent."""
    sigma = _view(sigma.reshape(-1), noise)
    noise = noise * torch.sqrt(1.0 + sigma**2.0) if max_denoise else noise * sigma
    return noise + latent


def repeat_to_batch_size(tensor: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Truncate, or repeat whole, along dim 0 to `batch_size` items."""
    if tensor.shape[0] > batch_size:
        return tensor[:batch_size]
    if tensor.shape[0] < batch_size:
        reps = [math.ceil(batch_size / tensor.shape[0])] + [1] * (tensor.dim() - 1)
        return tensor.repeat(reps)[:batch_size]
    return tensor


def _resize_to_batch_size(tensor: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Pick evenly spaced items along dim 0 (ComfyUI's rule for concat latents and masks)."""
    n = tensor.shape[0]
    if n == batch_size:
        return tensor
    if batch_size <= 1:
        return tensor[:batch_size]
    if batch_size < n:
        scale = (n - 1) / (batch_size - 1)
        index = [min(round(i * scale), n - 1) for i in range(batch_size)]
    else:
        scale = n / batch_size
        index = [min(math.floor((i + 0.5) * scale), n - 1) for i in range(batch_size)]
    return tensor[index]


def _resize_hw(tensor: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(tensor.shape[-2:]) == tuple(hw):
        return tensor
    return torch.nn.functional.interpolate(tensor, size=hw, mode="bilinear")


def prepare_mask(mask: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """A noise mask ([H, W], [B, H, W] or [B, 1, H, W], any resolution) as `shape` ([B, C, h, w]), bilinearly."""
    mask = mask.reshape((-1, 1) + tuple(mask.shape[-2:])).to(torch.float32)
    mask = _resize_hw(mask, tuple(shape[2:]))
    if mask.shape[1] < shape[1]:
        mask = mask.repeat((1, shape[1], 1, 1))[:, : shape[1]]
    return repeat_to_batch_size(mask, shape[0])


@dataclass
class ModelCond:
    """One conditioning entry ready for the UNet, for a batch of B latents (tensors on the CPU, float32)."""

    context: torch.Tensor  # [B, T, D] cross-attention context
    text_embeds: torch.Tensor | None = None  # [B, P] SDXL pooled text embedding
    time_ids: torch.Tensor | None = None  # [B, n] SDXL size / crop / aesthetic conditioning
    concat: torch.Tensor | None = None  # [B, c, h, w] extra input channels (inpainting models)
    strength: float = 1.0
    sigma_start: float | None = None  # active only while σ ≤ sigma_start …
    sigma_end: float | None = None  # … and σ ≥ sigma_end
    area: regions.Area | None = None  # the entry's area as resolved (may reach past the latent)
    region: regions.Area | None = None  # the part of the latent the UNet sees for it (None: all of it)
    mult: torch.Tensor | None = None  # [B, 1, h, w] weight per pixel of the region (None: `strength` everywhere)

    def to(self, device: torch.device) -> "ModelCond":
        """A copy with its tensors on `device`."""
        move = lambda t: None if t is None else t.to(device)
        return replace(self, context=move(self.context), text_embeds=move(self.text_embeds),
                       time_ids=move(self.time_ids), concat=move(self.concat), mult=move(self.mult))

    def active(self, sigma: float) -> bool:
        if self.sigma_start is not None and sigma > self.sigma_start:
            return False
        return not (self.sigma_end is not None and sigma < self.sigma_end)

    def crop(self, tensor: torch.Tensor) -> torch.Tensor:
        """The entry's region of a latent-shaped tensor ([B, C, h, w]), as a view."""
        if self.region is None:
            return tensor
        h, w, y, x = self.region
        return tensor[:, :, y:y + h, x:x + w]

    def with_inputs_of(self, other: "ModelCond") -> "ModelCond":
        """This entry's place, weight and timestep range with `other`'s model inputs (text, size, concat)."""
        return replace(self, context=other.context, text_embeds=other.text_embeds, time_ids=other.time_ids,
                       concat=other.concat)


def sdxl_time_ids(unet_config: Any, extras: dict, pooled_dim: int, latent_hw, negative: bool) -> list[float]:
    """SDXL's size conditioning, diffusers' `added_cond_kwargs["time_ids"]` (the UNet computes the 256-dim
    sinusoidal embeddings itself): 6 values for the base model, 5 (with the aesthetic score) for the refiner."""
    count = (unet_config.projection_class_embeddings_input_dim - pooled_dim) // unet_config.addition_time_embed_dim
    height = extras.get("height", latent_hw[0] * 8)
    width = extras.get("width", latent_hw[1] * 8)
    crop = [extras.get("crop_h", 0), extras.get("crop_w", 0)]
    if count == 6:
        return [height, width] + crop + [extras.get("target_height", height), extras.get("target_width", width)]
    if count == 5:
        return [height, width] + crop + [extras.get("aesthetic_score", 2.5 if negative else 6.0)]
    raise ValueError(f"cannot tell SDXL base from refiner: {count} size embeddings in the UNet's added conditioning")


def _concat(unet_config, extras, batch, latent_hw, latent_scale, latent_image, noise_mask):
    """[mask, masked-image latent] for UNets with 4 + 5 input channels (ComfyUI's concat_cond)."""
    if unet_config.in_channels != 9:
        return None
    mask = extras.get("concat_mask", noise_mask)
    concat_latent = extras.get("concat_latent_image")
    # Built on the CPU like the rest of a ModelCond (the latent and mask may come from the UNet's device).
    if concat_latent is not None:
        concat_latent = concat_latent.to(torch.float32).cpu() * latent_scale
    else:
        concat_latent = latent_image.cpu()
    if mask is None:
        blank = torch.tensor(BLANK_INPAINT_LATENT, dtype=torch.float32).reshape(1, 4, 1, 1)
        return torch.cat([torch.ones((batch, 1) + latent_hw), blank.expand((batch, 4) + latent_hw)], dim=1)
    mask = mask.to(torch.float32).cpu()
    mask = (mask[:, :1] if mask.dim() == 4 else mask).reshape((-1, 1) + tuple(mask.shape[-2:]))
    mask = _resize_to_batch_size(_resize_hw(mask, latent_hw).round(), batch)
    concat_latent = _resize_to_batch_size(_resize_hw(concat_latent.to(torch.float32), latent_hw), batch)
    return torch.cat([mask, concat_latent], dim=1)


def prepare_conditioning(
    conditioning: Sequence[Sequence[Any]],
    unet_config: Any,
    *,
    batch_size: int,
    latent_hw: tuple[int, int],
    negative: bool = False,
    latent_scale: float = 0.18215,
    latent_image: torch.Tensor | None = None,
    noise_mask: torch.Tensor | None = None,
    schedule: DiscreteSchedule | None = None,
) -> list[ModelCond]:
    """ComfyUI CONDITIONING → one `ModelCond` per entry.

    `unet_config` is the UNet's diffusers config (it tells SDXL added conditioning and inpainting channels);
    `latent_image` is the *scaled* latent being sampled and `noise_mask` the prepared `[B, C, h, w]` mask, both
    used only for the concat channels of inpainting UNets.
    """
    schedule = schedule or sd_schedule()
    if latent_image is None:
        latent_image = torch.zeros((batch_size, 4) + tuple(latent_hw))
    out = []
    for entry in conditioning:
        cond, extras = entry[0], dict(entry[1]) if len(entry) > 1 else {}
        refused = [key for key in _UNSUPPORTED_COND_KEYS if key in extras]
        if refused:
            raise NotImplementedError(f"conditioning options not supported yet: {', '.join(refused)}")
        if cond.dim() != 3:
            raise ValueError(f"conditioning tensor must be [batch, tokens, features], got {tuple(cond.shape)}")
        if cond.shape[-1] != unet_config.cross_attention_dim:
            raise ValueError(
                f"conditioning of width {cond.shape[-1]} does not fit this model (context width "
                f"{unet_config.cross_attention_dim}): was the prompt encoded with another model's CLIP?"
            )
        item = ModelCond(repeat_to_batch_size(cond.to(torch.float32).cpu(), batch_size))
        item.strength = float(extras.get("strength", 1.0))
        if "start_percent" in extras:
            item.sigma_start = schedule.percent_to_sigma(extras["start_percent"])
        if "end_percent" in extras:
            item.sigma_end = schedule.percent_to_sigma(extras["end_percent"])
        if getattr(unet_config, "addition_embed_type", None) == "text_time":
            pooled = extras.get("pooled_output")
            if pooled is None:
                raise ValueError("SDXL UNets need a pooled_output in the conditioning")
            time_ids = sdxl_time_ids(unet_config, extras, pooled.shape[-1], latent_hw, negative)
            item.text_embeds = repeat_to_batch_size(pooled.to(torch.float32).cpu().reshape(-1, pooled.shape[-1]), batch_size)
            item.time_ids = torch.tensor([time_ids], dtype=torch.float32).repeat(batch_size, 1)
        item.concat = _concat(unet_config, extras, batch_size, tuple(latent_hw), latent_scale, latent_image, noise_mask)
        out.append(_place(item, extras, tuple(latent_hw), batch_size))
    return out


def _place(item: ModelCond, extras: dict, latent_hw: tuple[int, int], batch_size: int) -> ModelCond:
    """Set the entry's area, region and per-pixel weight from its `area` / `mask` options (`regions`)."""
    area = regions.resolve_area(extras["area"], latent_hw) if "area" in extras else None
    mask = regions.resolve_mask(extras["mask"], latent_hw) if "mask" in extras else None
    if mask is not None and extras.get("set_area_to_bounds", False):
        area = regions.mask_bounds(mask)
    if area is None and mask is None:
        return item
    item.area = area
    item.region = regions.clamp_area(area, latent_hw) if area is not None else (*latent_hw, 0, 0)
    if mask is not None:
        mask = repeat_to_batch_size(mask, batch_size)
    item.mult = regions.multiplier(item.region, latent_hw, batch_size, item.strength, mask,
                                   float(extras.get("mask_strength", 1.0)))
    return item


class UNetModel:
    """A diffusers `UNet2DConditionModel` with ComfyUI's model sampling: x0 predictions for batches of conds."""

    def __init__(self, unet, prediction: str = "eps", schedule: DiscreteSchedule | None = None):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.unet = unet
        self.prediction = prediction
        self.schedule = schedule or sd_schedule()

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, conds: Sequence[ModelCond]) -> torch.Tensor:
        """x0 for `x` ([N, C, h, w], N = batch × len(conds) stacked cond by cond, each cropped to its cond's
        region) in one UNet call."""
        context = _concat_contexts([c.context for c in conds]).to(self.device, self.dtype)
        added = None
        if conds[0].text_embeds is not None:
            added = {
                "text_embeds": torch.cat([c.text_embeds for c in conds]).to(self.device, self.dtype),
                "time_ids": torch.cat([c.time_ids for c in conds]).to(self.device),
            }
        xc = calculate_input(sigma, x, self.prediction)
        if conds[0].concat is not None:
            concat = torch.cat([c.crop(c.concat) for c in conds])
            xc = torch.cat([xc, concat.to(xc.device, xc.dtype)], dim=1)
        timestep = self.schedule.timestep(sigma).float()
        output = self.unet(
            xc.to(self.dtype), timestep, encoder_hidden_states=context, added_cond_kwargs=added, return_dict=False
        )[0]
        return calculate_denoised(self.prediction, sigma, output.float(), x, timestep)


def _concat_contexts(contexts: list[torch.Tensor]) -> torch.Tensor:
    """Stack contexts along the batch, repeating shorter token sequences up to the lcm of the lengths."""
    length = math.lcm(*(c.shape[1] for c in contexts))
    return torch.cat([c.repeat(1, length // c.shape[1], 1) if c.shape[1] < length else c for c in contexts])


def _can_batch(a: ModelCond, b: ModelCond) -> bool:
    if a.context.shape[2] != b.context.shape[2] or a.context.shape[0] != b.context.shape[0]:
        return False
    ta, tb = a.context.shape[1], b.context.shape[1]
    if math.lcm(ta, tb) // min(ta, tb) > 4:
        return False
    shapes = lambda c: tuple(None if t is None else tuple(t.shape) for t in (c.text_embeds, c.time_ids, c.concat))
    return shapes(a) == shapes(b)


class CFGDenoiser:
    """Classifier-free guidance on denoised predictions: D(x, σ) = uncond + (cond − uncond)·cfg.

    A MODEL's `options` may replace that formula (`cfg_function`) and adjust its result (`post_cfg_functions`);
    `prepare` turns a CONDITIONING into `ModelCond`s for the extra passes they may ask for (`CfgArgs.predict`).
    """

    def __init__(self, model: UNetModel, positive: Sequence[ModelCond], negative: Sequence[ModelCond], cfg: float,
                 options: ModelOptions | None = None,
                 prepare: Callable[[Any], list[ModelCond]] | None = None):
        self.model = model
        self.positive, self.negative = match_opposite_areas(
            [[c.to(model.device) for c in positive], [c.to(model.device) for c in negative]])
        self.cfg = float(cfg)
        self.options, self.prepare = options or ModelOptions(), prepare
        # cfg 1 makes the negative irrelevant; ComfyUI then skips it (its prediction counts as zeros).
        self.skip_negative = math.isclose(self.cfg, 1.0) and not self.options.disable_cfg1_optimization

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sides = [self.positive] if self.skip_negative else [self.positive, self.negative]
        cond_pred, *rest = self._predict(x, sigma, sides)
        uncond_pred = rest[0] if rest else torch.zeros_like(cond_pred)
        options = self.options
        if options.cfg_function is None and not options.post_cfg_functions:
            return uncond_pred + (cond_pred - uncond_pred) * self.cfg
        args = CfgArgs(x, sigma, cond_pred, uncond_pred, self.cfg,
                       predict=lambda conditioning: self._predict_other(x, sigma, conditioning),
                       predict_negative=lambda other_x: self._predict(other_x, sigma, [self.negative])[0])
        if options.cfg_function is None:
            result = uncond_pred + (cond_pred - uncond_pred) * self.cfg
        else:
            result = options.cfg_function(args)
        for adjust in options.post_cfg_functions:
            result = adjust(args, result)
        return result

    def _predict_other(self, x: torch.Tensor, sigma: torch.Tensor, conditioning: Any) -> torch.Tensor:
        if self.prepare is None:
            raise ValueError("this denoiser cannot prepare other conditioning for a guidance function")
        conds = [c.to(self.model.device) for c in self.prepare(conditioning)]
        return self._predict(x, sigma, [conds])[0]

    def _predict(self, x, sigma, sides: list[list[ModelCond]]) -> list[torch.Tensor]:
        """Each side's prediction: its entries' predictions on their regions, weighted per pixel by their `mult`
        (or strength) and divided by the summed weights; batches are shared across sides."""
        level = float(sigma[0])
        todo = [(s, c) for s, side in enumerate(sides) for c in side if c.active(level)]
        sums = [torch.zeros_like(x) for _ in sides]
        counts = [torch.full_like(x, 1e-37) for _ in sides]
        while todo:
            # Like ComfyUI: take everything compatible with the first pending entry, last entries first, so the
            # usual positive + negative pair runs as one batch [negative, positive].
            first = todo[0][1]
            group = [item for item in todo
                     if item[1].crop(x).shape == first.crop(x).shape and _can_batch(item[1], first)][::-1]
            todo = [item for item in todo if all(item is not g for g in group)]
            batch = len(group)
            crops = torch.cat([cond.crop(x) for _, cond in group])
            denoised = self.model.denoise(crops, torch.cat([sigma] * batch), [c for _, c in group])
            for (side, cond), pred in zip(group, denoised.chunk(batch)):
                mult = cond.strength if cond.mult is None else cond.mult
                cond.crop(sums[side]).add_(pred * mult)
                cond.crop(counts[side]).add_(mult)
        return [total / count for total, count in zip(sums, counts)]


def match_opposite_areas(sides: list[list[ModelCond]]) -> list[list[ModelCond]]:
    """Give every entry with an area an equal on each other side (ComfyUI's rule, so a regional positive meets a
    negative on the same crop): a copy of it (area, weight, timestep range) with the model inputs of that side's
    smallest entry containing its area (an entry without area contains every area), unless that entry already has
    exactly this area. Copies go to the end of the other side (and, having an equal there, get no copies)."""
    sides = [list(side) for side in sides]
    for k, side in enumerate(sides):
        for cond in side:
            if cond.area is None:
                continue
            for j, other in enumerate(sides):
                if j == k:
                    continue
                host = _smallest_container(cond.area, other)
                if host is not None and host.area != cond.area:
                    other.append(cond.with_inputs_of(host))
    return sides


def _smallest_container(area: regions.Area, entries: Sequence[ModelCond]) -> ModelCond | None:
    """The entry with the smallest area containing `area`, else the first entry without area, else None."""
    best = None
    for entry in entries:
        if entry.area is None:
            if best is None:
                best = entry
        elif regions.area_inside(area, entry.area) and (
                best is None or best.area is None or regions.area_size(best.area) > regions.area_size(entry.area)):
            best = entry
    return best


class MaskedDenoiser:
    """Inpainting: keep the unmasked region (mask 0) pinned to the input latent, noised to the current σ."""

    def __init__(self, inner: DenoiseFn, mask: torch.Tensor, latent_image: torch.Tensor, noise: torch.Tensor):
        self.inner, self.mask = inner, mask
        self.latent_image, self.noise = latent_image, noise

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        keep = 1.0 - self.mask
        x = x * self.mask + noise_scaling(sigma, self.noise, self.latent_image) * keep
        return self.inner(x, sigma) * self.mask + self.latent_image * keep
