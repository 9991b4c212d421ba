"""`--compile`: the UNet's forward and the VAE's decode through `torch.compile`, with a fallback to eager.

Keyed by model, dtype and shape: the compiled function belongs to the module object (the loader's output, which the
executor caches across prompts, so a second prompt with the same model reuses it), and `torch.compile` guards each
graph on its inputs' dtypes and shapes (`dynamic=False`: a new image size or batch compiles a graph of its own,
a size seen before reuses its graph; LoRA patches replace parameter tensors, which the graph reads as inputs, so
they recompile nothing). A module compiled once is never wrapped twice.

Compilation happens on the first call with a new shape and can fail (no C++ compiler, an unsupported operator, a
backend bug); then that module runs eagerly from then on and one warning says why. An error of the model itself
(e.g. out of memory) shows again in the eager call and propagates as it would without `--compile`.

Public API: `compile_model(module, method="forward", backend="inductor")`, `is_compiled(module, method)`.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from torch._dynamo.exc import BackendCompilerFailed

log = logging.getLogger(__name__)


class CompiledCall:
    """A module method through `torch.compile`, falling back to the eager method (logged once) if compiling fails."""

    def __init__(self, eager: Callable[..., Any], label: str, backend: Any):
        self.eager = eager
        self.label = label
        self.compiled: Callable[..., Any] | None = torch.compile(eager, backend=backend, dynamic=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any compiler failure means: run eagerly
                log.warning("torch.compile failed for %s, running it eagerly from now on: %s", self.label,
                            _reason(exc))
                self.compiled = None
        return self.eager(*args, **kwargs)


def _reason(exc: Exception) -> str:
    """The failure in one line: the backend's own error rather than dynamo's wrapper around it."""
    if isinstance(exc, BackendCompilerFailed):
        exc = exc.inner_exception
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def compile_model(module: torch.nn.Module, method: str = "forward", backend: Any = "inductor") -> None:
    """Route `module.<method>` through `torch.compile` (once per module; later calls do nothing)."""
    if is_compiled(module, method):
        return
    label = f"{type(module).__name__}.{method}"
    setattr(module, method, CompiledCall(getattr(module, method), label, backend))


def is_compiled(module: torch.nn.Module, method: str = "forward") -> bool:
    return isinstance(module.__dict__.get(method), CompiledCall)
