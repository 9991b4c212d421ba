"""The jobs API (protocol §8, newer ComfyUI): the queue and the history as one list of jobs, which newer releases
of ComfyUI's frontend read instead of `/queue` and `/history`.

A job is `{id, status, priority, create_time, execution_start_time, execution_end_time, execution_error,
outputs_count, previewable_outputs_count, preview_output, workflow_id}`; `GET /jobs/{id}` adds `outputs`,
`execution_status` and `workflow: {prompt, extra_data}`. Status: running → `in_progress`, queued → `pending`,
history `success` → `completed`, an `execution_interrupted` message → `cancelled`, else `failed`. Times are
milliseconds: `create_time` is `extra_data.create_time` where the prompt carries one (ComfyUI records it when queueing;
we do not yet), else the start of its run, else 0; start and end come from the `execution_*` messages kept with
the history entry.

`POST /jobs/{id}/cancel` and `POST /jobs/cancel` (`{job_ids}`), which the newest frontend sends from its queue
panel: a pending job leaves the queue, a running one is interrupted; finished or unknown ids are left alone
(404 for the single form).
"""
from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from executor.queue import QueueItem
from server.api import ApiError, Route, empty_ok, json_response, read_model, read_query
from server.state import HUB, STORE, WORKER

STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
PREVIEWABLE = ("images", "video", "audio")
END_MESSAGES = ("execution_success", "execution_error", "execution_interrupted")


class JobsQuery(BaseModel):
    status: str = Field(",".join(STATUSES), description="comma-separated statuses to list")
    sort_by: Literal["created_at", "execution_duration"] = "created_at"
    sort_order: Literal["asc", "desc"] = "desc"
    limit: int | None = Field(None, ge=1, description="at most this many jobs")
    offset: int = Field(0, ge=0)
    workflow_id: str | None = Field(None, description="only jobs of this UI workflow id")


class Job(BaseModel):
    id: str
    status: str
    priority: float
    create_time: int
    execution_start_time: int | None = None
    execution_end_time: int | None = None
    execution_error: dict[str, Any] | None = None
    outputs_count: int | None = None
    previewable_outputs_count: int | None = None
    preview_output: dict[str, Any] | None = None
    workflow_id: str | None = None


class JobsResponse(BaseModel):
    jobs: list[Job]
    pagination: dict[str, Any] = Field(description="{offset, limit, total, has_more}")


def _workflow_id(extra_data: dict[str, Any]) -> str | None:
    workflow = (extra_data.get("extra_pnginfo") or {}).get("workflow")
    wid = workflow.get("id") if isinstance(workflow, dict) else None
    return wid if isinstance(wid, str) else None


def _job(number: float, prompt_id: str, extra_data: dict[str, Any], status: str) -> dict[str, Any]:
    create_time = extra_data.get("create_time")
    return {"id": prompt_id, "status": status, "priority": number,
            "create_time": create_time if isinstance(create_time, int) else 0,
            "execution_start_time": None, "execution_end_time": None, "execution_error": None,
            "outputs_count": 0, "previewable_outputs_count": 0, "preview_output": None,
            "workflow_id": _workflow_id(extra_data)}


def queued_job(item: QueueItem, status: str) -> dict[str, Any]:
    return _job(item.number, item.prompt_id, item.to_comfy()[3], status)


def finished_job(entry: dict[str, Any], *, detail: bool = False) -> dict[str, Any]:
    """A job from a `GET /history` entry."""
    number, prompt_id, prompt, extra_data, _ = entry["prompt"]
    messages = {kind: data for kind, data in entry["status"].get("messages", [])}
    if entry["status"].get("status_str") == "success":
        status = "completed"
    else:
        status = "cancelled" if "execution_interrupted" in messages else "failed"
    job = _job(number, prompt_id, extra_data, status)
    job["execution_start_time"] = messages.get("execution_start", {}).get("timestamp")
    job["create_time"] = job["create_time"] or job["execution_start_time"] or 0
    job["execution_end_time"] = next((messages[m].get("timestamp") for m in END_MESSAGES if m in messages), None)
    job["execution_error"] = messages.get("execution_error")
    outputs = entry.get("outputs", {})
    previews = [(nid, kind, item) for nid, ui in outputs.items() for kind in PREVIEWABLE
                for item in ui.get(kind, []) if isinstance(item, dict)]
    job["outputs_count"] = sum(len(v) for ui in outputs.values() for v in ui.values() if isinstance(v, list))
    job["previewable_outputs_count"] = len(previews)
    if previews:
        nid, kind, item = previews[0]
        job["preview_output"] = {**item, "nodeId": nid, "mediaType": kind}
    if detail:
        job.update(outputs=outputs, execution_status=entry["status"],
                   workflow={"prompt": prompt, "extra_data": extra_data})
    return job


def all_jobs(store) -> list[dict[str, Any]]:
    return ([queued_job(i, "in_progress") for i in store.running()]
            + [queued_job(i, "pending") for i in store.pending()]
            + [finished_job(e) for e in store.history().values()])


def _duration(job: dict[str, Any]) -> int:
    start, end = job["execution_start_time"], job["execution_end_time"]
    return end - start if start is not None and end is not None else 0


async def list_jobs(request: web.Request) -> web.Response:
    query = read_query(request, JobsQuery)
    wanted = {s.strip() for s in query.status.split(",") if s.strip()}
    if not wanted <= set(STATUSES):
        raise ApiError(400, "invalid_request", "Invalid status",
                       f"unknown status {sorted(wanted - set(STATUSES))}; use {', '.join(STATUSES)}")
    jobs = [j for j in all_jobs(request.app[STORE]) if j["status"] in wanted
            and (query.workflow_id is None or j["workflow_id"] == query.workflow_id)]
    key = _duration if query.sort_by == "execution_duration" else (lambda j: j["create_time"])
    jobs.sort(key=key, reverse=query.sort_order == "desc")
    end = len(jobs) if query.limit is None else query.offset + query.limit
    page = jobs[query.offset:end]
    return json_response({"jobs": page, "pagination": {"offset": query.offset, "limit": query.limit,
                                                       "total": len(jobs), "has_more": end < len(jobs)}})


async def get_job(request: web.Request) -> web.Response:
    store, job_id = request.app[STORE], request.match_info["job_id"]
    entry = store.history_entry(job_id)
    if entry is not None:
        return json_response(finished_job(entry, detail=True))
    for status, items in (("in_progress", store.running()), ("pending", store.pending())):
        for item in items:
            if item.prompt_id == job_id:
                _, _, prompt, extra_data, _ = item.to_comfy()
                return json_response({**queued_job(item, status), "workflow": {"prompt": prompt,
                                                                               "extra_data": extra_data}})
    raise ApiError(404, "not_found", "Job not found", f"no job {job_id!r}")


class CancelJobs(BaseModel):
    job_ids: list[str] = Field(description="ids of pending or running jobs")


def cancel(app: web.Application, job_ids: list[str]) -> int:
    """Drop the pending ones, interrupt the running one; how many were found."""
    store = app[STORE]
    removed = store.delete_pending(job_ids)
    if removed:
        app[HUB].status(store.remaining())
    running = [i.prompt_id for i in store.running() if i.prompt_id in job_ids]
    for prompt_id in running:
        app[WORKER].interrupt(prompt_id)
    return removed + len(running)


async def cancel_job(request: web.Request) -> web.Response:
    job_id = request.match_info["job_id"]
    if not cancel(request.app, [job_id]):
        raise ApiError(404, "not_found", "Job not found", f"no pending or running job {job_id!r}")
    return empty_ok()


async def cancel_jobs(request: web.Request) -> web.Response:
    cancel(request.app, (await read_model(request, CancelJobs)).job_ids)
    return empty_ok()


ROUTES = [
    Route("GET", "/jobs", list_jobs, "Queued, running and finished prompts as jobs", "queue", query=JobsQuery,
          responses={200: ("jobs", JobsResponse), 400: ("unknown status", None)}),
    Route("GET", "/jobs/{job_id}", get_job, "One job with its outputs and workflow", "queue",
          responses={200: ("job", Job), 404: ("unknown job", None)}),
    Route("POST", "/jobs/{job_id}/cancel", cancel_job, "Cancel a pending or running job", "queue",
          responses={200: ("cancelled", None), 404: ("no pending or running job of that id", None)}),
    Route("POST", "/jobs/cancel", cancel_jobs, "Cancel pending or running jobs", "queue", body=CancelJobs,
          responses={200: ("done", None), 400: ("bad body", None)}),
]
