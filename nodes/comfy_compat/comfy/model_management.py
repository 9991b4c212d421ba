"""`comfy.model_management`: devices and the interrupt, as packs ask for them (imported only under that name).

Devices are latentloom's: the compute device is the model manager's (CUDA > MPS > CPU), and models are offloaded
to, and intermediate results kept on, the CPU (ComfyUI's defaults). The interrupt is the running node's: the flag
`POST /interrupt` sets. `InterruptProcessingException` is a `nodes.api.Interrupted`, so a pack raising it (or
`throw_exception_if_processing_interrupted`, or a `ProgressBar` update after an interrupt) ends the run as
interrupted (`execution_interrupted`), exactly like our own nodes' interrupt check. Outside a running V1 node
nothing is ever interrupted.
"""
from __future__ import annotations

import torch

from nodes.api import Interrupted, ServiceKey
from nodes.comfy_compat import current_context
from nodes.sd.devices import ModelManager, compute_device


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


def throw_exception_if_processing_interrupted() -> None:
    if processing_interrupted():
        ctx = current_context()
        raise InterruptProcessingException(f"interrupted in node {ctx.node_id if ctx else '?'}")
