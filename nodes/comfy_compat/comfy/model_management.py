"""`comfy.model_management`: devices and the interrupt, as packs ask for them (imported only under that name).

Devices are latentloom's: the compute device is the model manager's (CUDA > MPS > CPU), and models are offloaded
to, and intermediate results kept on, the CPU (ComfyUI's defaults); dtypes follow our per-device policy
(`nodes.sd.devices.dtype_policy`). Memory figures are the device's own (`torch.cuda.mem_get_info`, or the
machine's RAM for the CPU). `unload_all_models` sends the running environment's models back to RAM; ComfyUI's
`load_models_gpu` and model patchers do not exist here (our nodes move models themselves). The interrupt is the running node's: the flag
`POST /interrupt` sets. `InterruptProcessingException` is a `nodes.api.Interrupted`, so a pack raising it (or
`throw_exception_if_processing_interrupted`, or a `ProgressBar` update after an interrupt) ends the run as
interrupted (`execution_interrupted`), exactly like our own nodes' interrupt check. Outside a running V1 node
nothing is ever interrupted.
"""
from __future__ import annotations

import os

import torch

from nodes.api import Interrupted, ServiceKey
from nodes.comfy_compat import current_context
from nodes.sd.devices import ModelManager, compute_device, dtype_policy


class InterruptProcessingException(Interrupted):
    """Raised in a node to stop the run as interrupted."""


def get_torch_device() -> torch.device:
    """The device models run on: the running environment's model manager's, else the default compute device."""
    ctx = current_context()
    manager = ctx.env.services.get(_manager_key()) if ctx is not None else None
    return manager.device if manager is not None else compute_device()


def _manager_key() -> ServiceKey[ModelManager]:
    from nodes.sd.handles import MANAGER_KEY  # diffusers behind it; loaded by then whenever a node runs

    return MANAGER_KEY


def intermediate_device() -> torch.device:
    """Where nodes keep results between nodes (images, latents): the CPU."""
    return torch.device("cpu")


def unet_offload_device() -> torch.device:
    """Where models wait when not in use: RAM."""
    return torch.device("cpu")


def text_encoder_device() -> torch.device:
    return get_torch_device()


def vae_device() -> torch.device:
    return get_torch_device()


def unet_dtype(device: torch.device | None = None, *args: object, **kwargs: object) -> torch.dtype:
    return dtype_policy(device or get_torch_device()).unet


def text_encoder_dtype(device: torch.device | None = None) -> torch.dtype:
    return dtype_policy(device or get_torch_device()).text_encoder


def should_use_fp16(device: torch.device | None = None, *args: object, **kwargs: object) -> bool:
    return unet_dtype(device) == torch.float16


def should_use_bf16(device: torch.device | None = None, *args: object, **kwargs: object) -> bool:
    return unet_dtype(device) == torch.bfloat16


def is_device_cpu(device: torch.device | str) -> bool:
    return torch.device(device).type == "cpu"


def is_device_mps(device: torch.device | str) -> bool:
    return torch.device(device).type == "mps"


def is_device_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def get_total_memory(dev: torch.device | None = None, torch_total_too: bool = False) -> int | tuple[int, int]:
    """Bytes of memory of `dev` (default: the compute device); with `torch_total_too`, also what torch reserved."""
    dev = dev or get_torch_device()
    if dev.type == "cuda":
        total, reserved = torch.cuda.mem_get_info(dev)[1], torch.cuda.memory_reserved(dev)
    else:
        total, reserved = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), 0
    return (total, reserved) if torch_total_too else total


def get_free_memory(dev: torch.device | None = None, torch_free_too: bool = False) -> int | tuple[int, int]:
    """Bytes free on `dev` (default: the compute device); with `torch_free_too`, also torch's reserved-but-free."""
    dev = dev or get_torch_device()
    if dev.type == "cuda":
        free = torch.cuda.mem_get_info(dev)[0]
        torch_free = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
        free, torch_free = free + torch_free, torch_free
    else:
        free, torch_free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"), 0
    return (free, torch_free) if torch_free_too else free


def unload_all_models() -> None:
    """Send the running environment's models back to RAM."""
    from nodes.sd.handles import unload_models

    ctx = current_context()
    if ctx is not None:
        unload_models(ctx.env)


def soft_empty_cache(force: bool = False) -> None:
    """Return the accelerator's cached, unused memory to the driver."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()
    elif torch.backends.mps.is_available():
        torch.mps.empty_cache()


def processing_interrupted() -> bool:
    """Whether the run of the node calling this was interrupted."""
    ctx = current_context()
    return ctx is not None and ctx.interrupted


def interrupt_current_processing(value: bool = True) -> None:
    """Interrupt the run of the node calling this (`value=False`, ComfyUI's reset, leaves the flag to the run)."""
    ctx = current_context()
    if value and ctx is not None:
        ctx.request_interrupt()


def throw_exception_if_processing_interrupted() -> None:
    if processing_interrupted():
        ctx = current_context()
        raise InterruptProcessingException(f"interrupted in node {ctx.node_id if ctx else '?'}")


def __getattr__(name: str) -> object:
    raise AttributeError(f"latentloom's comfy.model_management has no {name}: ComfyUI's model loading "
                         "(load_models_gpu, model patchers, VRAM states) does not exist here")
