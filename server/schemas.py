"""Request and response models of the HTTP API: they validate requests and generate the OpenAPI document.

Request models are lenient where ComfyUI is (unknown keys are kept or ignored, `front` is any truthy value) and
strict where a wrong type would only fail later. Response models describe ComfyUI's shapes; handlers build the
plain JSON themselves (the shapes are fixed by the protocol, not by these classes).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_ID_LENGTH = 256


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- requests ----------------------------------------------------------------------------------------------------
class PromptRequest(Lenient):
    """`POST /prompt`: an API-format workflow to queue."""

    prompt: dict[str, Any] | None = Field(None, description="API-format workflow: {node_id: {class_type, inputs}}")
    client_id: str | None = Field(None, max_length=MAX_ID_LENGTH,
                                  description="websocket sid that receives this prompt's events")
    prompt_id: str | int | None = Field(None, description="caller-chosen id (default: a new UUID4)")
    extra_data: dict[str, Any] = Field(default_factory=dict,
                                       description="kept with the prompt; extra_pnginfo goes into PNG files")
    front: Any = Field(False, description="truthy: queue at the front")
    number: float | None = Field(None, description="explicit queue priority (lower runs first)")
    partial_execution_targets: list[str] | None = Field(None, description="only run these output nodes")


class QueueAction(Lenient):
    """`POST /queue` and `POST /history`."""

    clear: bool = Field(False, description="remove everything (pending prompts / history entries)")
    delete: list[str] = Field(default_factory=list, description="prompt ids to remove")


class InterruptRequest(Lenient):
    """`POST /interrupt`; without `prompt_id` whatever runs is interrupted."""

    prompt_id: str | None = None


class FreeRequest(Lenient):
    """`POST /free`: applied after the running prompt (at once when idle)."""

    unload_models: bool = Field(False, description="move loaded models off the compute device")
    free_memory: bool = Field(False, description="also drop every cached node result")


SQLITE_INT_MAX = 2**63 - 1  # history windows reach the database as SQLite integers


class HistoryQuery(BaseModel):
    max_items: int | None = Field(None, ge=0, le=SQLITE_INT_MAX,
                                  description="the last N entries (N from `offset` when given)")
    offset: int | None = Field(None, ge=0, le=SQLITE_INT_MAX)


class ViewQuery(BaseModel):
    filename: str = Field(description="file name; may end with ' [output]', ' [input]' or ' [temp]'")
    type: Literal["output", "input", "temp"] = "output"
    subfolder: str = ""
    preview: str | None = Field(None, description="'webp;90' or 'jpeg;90': re-encode")
    channel: Literal["rgba", "rgb", "a"] = "rgba"


class UploadForm(BaseModel):
    """Multipart fields of `POST /upload/image` (the file part is `image`)."""

    image: bytes = Field(description="the file (multipart part with a filename)",
                         json_schema_extra={"format": "binary"})
    type: Literal["input", "temp", "output"] = "input"
    subfolder: str = ""
    overwrite: str = Field("false", description="'true' or '1' replaces an existing file of that name")


class FileRef(BaseModel):
    filename: str
    subfolder: str = ""
    type: Literal["input", "temp", "output"] = "input"


class MaskUploadForm(UploadForm):
    """`POST /upload/mask`: the uploaded image's alpha replaces the alpha of `original_ref`."""

    original_ref: str = Field(description='JSON {"filename", "subfolder", "type"} of the image being masked')


# --- responses ---------------------------------------------------------------------------------------------------
class CheckpointQuery(BaseModel):
    name: str = Field(min_length=1, description="a checkpoint of GET /models/checkpoints")


class CheckpointInfo(BaseModel):
    name: str
    family: str = Field(description="sd1, sd2 or sdxl")
    prediction: str = Field(description="eps or v")
    size: int = Field(description="the side of the square image the checkpoint suits (64 for tiny demo models)")


class ErrorObject(BaseModel):
    type: str
    message: str
    details: str = ""
    extra_info: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    """ComfyUI's error envelope (400 on an invalid prompt, and every other refusal here)."""

    error: ErrorObject
    node_errors: dict[str, Any] = Field(default_factory=dict)


class PromptResponse(BaseModel):
    prompt_id: str
    number: float
    node_errors: dict[str, Any]


class ExecInfo(BaseModel):
    queue_remaining: int


class PromptStatus(BaseModel):
    exec_info: ExecInfo


class QueueResponse(BaseModel):
    queue_running: list[list[Any]] = Field(description="[number, prompt_id, prompt, extra_data, outputs]")
    queue_pending: list[list[Any]]


class HistoryStatus(BaseModel):
    status_str: Literal["success", "error"]
    completed: bool
    messages: list[list[Any]]


class HistoryEntryModel(BaseModel):
    prompt: list[Any]
    outputs: dict[str, dict[str, Any]]
    status: HistoryStatus
    meta: dict[str, dict[str, Any]]


class UploadResponse(BaseModel):
    name: str
    subfolder: str
    type: str


class FeaturesResponse(BaseModel):
    supports_preview_metadata: bool
    max_upload_size: float


class SystemStatsResponse(BaseModel):
    system: dict[str, Any]
    devices: list[dict[str, Any]]


class WorkerInfo(BaseModel):
    id: str = Field(description="'local', or the Ray worker's id (w0, w1, …)")
    host: str
    device: str
    state: str = Field(description="starting, idle, busy, restarting or failed")
    models: list[str] = Field(description="'folder/name' of the models it has used since it last freed memory")
    prompts_run: int


HistoryResponse = dict[str, HistoryEntryModel]  # {prompt_id: entry} in completion order; {} when unknown
NodeInfoResponse = dict[str, dict[str, Any]]  # {class_type: NodeInfo}, ComfyUI's /object_info shape
