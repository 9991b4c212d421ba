"""Seed resolution: a workflow may ask for a fresh seed; the value is chosen when the prompt is queued.

The prompt that is stored (queue, history, the `prompt` PNG chunk) and run holds the number that ran, so a result
can be reproduced and a repeated submission never silently returns the cached image. Seeds are never chosen in
the browser.

Which inputs: INT inputs declared with `control_after_generate` (e.g. KSampler's `seed`, PrimitiveInt's
`value`). How a workflow asks, per node of the API-format prompt:

- the input's value is the string `"random"` (or `"randomize"`), or `-1` when the input's minimum is ≥ 0 (so a
  legitimate -1 is never taken): a random value in [max(min, 0), min(max, 2**50)] — never negative, so a random
  PrimitiveInt can feed KSampler's seed, and at most 2**50 so a browser shows it exactly (ComfyUI's editor caps
  the same way);
- `"_meta": {"control_after_generate": MODE}` — MODE is `"fixed"`, `"randomize"`, `"increment"` or
  `"decrement"` for every controlled input of the node, or `{"<input>": MODE}` per input; the mode the editor's
  control-after-generate widget shows:
  - `randomize`: a random value each time it is queued;
  - `increment` / `decrement`: the submitted value the first time, then one more (less) at each submission of
    the same stream — the same client, node id, input and submitted value — wrapping within [min, max]. The
    counter lives in the queue store, so it survives restarts.

A placeholder value wins over the mode. `_meta` is kept as it is: the stored prompt still says "randomize", so
opening it in the editor keeps the user's choice, while `main.py run` of the stored prompt reproduces the value.
Anything that is not a known node or a constant integer is left alone for validation to report.
"""
from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any, Callable, Mapping, Protocol

from executor.errors import ErrorInfo, PromptError, node_entry
from nodes.api import InputSpec
from nodes.registry import Registry

MODES = ("fixed", "randomize", "increment", "decrement")
PLACEHOLDERS = ("random", "randomize")
RANDOM_CAP = 2**50


class SeedError(PromptError):
    """A `control_after_generate` request that cannot be honoured (unknown mode or input), reported on its node."""

    def __init__(self, node_id: str, class_type: str, message: str, details: str) -> None:
        problem = ErrorInfo("invalid_seed_control", message, details)
        super().__init__("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                         f"{message}: {details}", node_errors={node_id: node_entry(class_type, [problem])})


class SeedCounters(Protocol):
    def advance_seed(self, stream: str, start: int, delta: int, lo: int, hi: int) -> int: ...


class FirstSubmission:
    """Counters for a one-off run (`main.py run`): an increment/decrement stream starts at the submitted value."""

    def advance_seed(self, stream: str, start: int, delta: int, lo: int, hi: int) -> int:
        return start


def controlled_inputs(registry: Registry, class_type: Any) -> dict[str, InputSpec]:
    """The INT inputs of a node type that carry `control_after_generate`."""
    spec = registry.get(class_type) if isinstance(class_type, str) else None
    if spec is None:
        return {}
    return {i.name: i for i in spec.inputs
            if i.type.name == "INT" and i.type.is_widget and i.options.get("control_after_generate")}


def random_seed(lo: int, hi: int, randbelow: Callable[[int], int] = secrets.randbelow) -> int:
    """A value in [max(lo, 0), min(hi, 2**50)] (the input's own range when it lies outside that window)."""
    bottom = max(lo, 0) if hi >= 0 else lo  # seeds are non-negative: a PrimitiveInt feeding KSampler must validate
    top = min(hi, RANDOM_CAP) if bottom <= RANDOM_CAP else hi
    return bottom + randbelow(top - bottom + 1)


def resolve_seeds(prompt: Mapping[str, Any], registry: Registry, counters: SeedCounters, *, client_id: str = "",
                  randbelow: Callable[[int], int] = secrets.randbelow) -> dict[str, Any]:
    """The prompt with every requested seed replaced by a number; nodes without changes are shared, not copied.

    Raises `SeedError` for an unknown mode or a mode naming an input that has no seed control.
    """
    resolved = dict(prompt)
    for nid, node in prompt.items():
        if not isinstance(node, Mapping) or not isinstance(node.get("inputs"), Mapping):
            continue
        controlled = controlled_inputs(registry, node.get("class_type"))
        modes = _modes(str(nid), node, controlled)
        changes: dict[str, int] = {}
        for name, inp in controlled.items():
            if name not in node["inputs"]:
                continue
            value = _resolve_one(node["inputs"][name], inp, modes.get(name, "fixed"), counters, randbelow,
                                 stream=[client_id, str(nid), name])
            if value is not None:
                changes[name] = value
        if changes:
            resolved[nid] = {**node, "inputs": {**node["inputs"], **changes}}
    return resolved


def _bounds(inp: InputSpec) -> tuple[int, int]:
    lo = int(inp.min) if inp.min is not None else 0
    hi = int(inp.max) if inp.max is not None else 2**64 - 1
    return lo, hi


def _resolve_one(value: Any, inp: InputSpec, mode: str, counters: SeedCounters,
                 randbelow: Callable[[int], int], stream: list[str]) -> int | None:
    lo, hi = _bounds(inp)
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(value, str) and value.strip().lower() in PLACEHOLDERS:
        return random_seed(lo, hi, randbelow)
    if is_int and value == -1 and lo >= 0:
        return random_seed(lo, hi, randbelow)
    if mode == "randomize":
        return random_seed(lo, hi, randbelow)
    if mode in ("increment", "decrement") and is_int and lo <= value <= hi:
        key = hashlib.sha256(json.dumps([*stream, str(value), mode]).encode()).hexdigest()
        return counters.advance_seed(key, value, 1 if mode == "increment" else -1, lo, hi)
    return None


def _modes(nid: str, node: Mapping[str, Any], controlled: dict[str, InputSpec]) -> dict[str, str]:
    meta = node.get("_meta")
    control = meta.get("control_after_generate") if isinstance(meta, Mapping) else None
    if control is None or isinstance(control, bool):  # the frontend's default graph stores a bare boolean
        return {}
    class_type = str(node.get("class_type"))
    if isinstance(control, str):
        control = {name: control for name in controlled}
    if not isinstance(control, Mapping):
        raise SeedError(nid, class_type, "Invalid control_after_generate",
                        "_meta.control_after_generate must be a mode or an object of modes per input")
    for name, mode in control.items():
        if mode not in MODES:
            raise SeedError(nid, class_type, "Invalid control_after_generate",
                            f"{name}: {mode!r} is not one of {', '.join(MODES)}")
        if name not in controlled:
            raise SeedError(nid, class_type, "Invalid control_after_generate",
                            f"{name}: not an input with a seed control")
    return dict(control)
