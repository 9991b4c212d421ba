"""The one error type of checkpoint reading, detection and loading.

Every failure to read or understand a model file is a `CheckpointError` whose message names the file and the
reason, so the loader node can show it to the user as it is.
"""

from __future__ import annotations

from pathlib import Path


class CheckpointError(Exception):
    """A model file could not be read, recognised or loaded. `path` is the file, `reason` the why."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        # "<reason>: <path>", the shape of ComfyUI's "Could not detect model type of: <path>".
        super().__init__(f"{reason}: {self.path}")
