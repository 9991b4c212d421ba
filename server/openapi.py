"""The OpenAPI 3.1 document (`/openapi.json`) and a self-contained page that renders it (`/docs`).

The document is generated from the route table (`server.api.Route`) and the pydantic models that validate each
request, so it cannot drift from what the server enforces. Every API path is listed twice, bare and under `/api`.
The page is plain HTML and JavaScript served from here: no CDN, no external request.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from server.api import API_PREFIX, PUBLIC, Route, json_response

REF = "#/components/schemas/{model}"
WEBSOCKET_NOTE = (
    "Text frames are JSON {type, data}: status (first, with sid), execution_start, execution_cached, executing, "
    "progress, executed, execution_success, execution_error, execution_interrupted, feature_flags. Binary "
    "frames carry previews: [u32 BE 1][u32 BE 1 = JPEG][image], or [u32 BE 4][u32 BE n][n bytes JSON][image] "
    "for clients that sent feature_flags {supports_preview_metadata: true} as their first message.")


class _Schemas:
    """Collects component schemas while turning models and types into references."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def of(self, tp: Any) -> dict[str, Any]:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            schema = tp.model_json_schema(ref_template=REF)
            self.components.update(schema.pop("$defs", {}))
            self.components[tp.__name__] = schema
            return {"$ref": REF.format(model=tp.__name__)}
        schema = TypeAdapter(tp).json_schema(ref_template=REF)
        self.components.update(schema.pop("$defs", {}))
        return schema


def _parameters(route: Route, schemas: _Schemas) -> list[dict[str, Any]]:
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in re.findall(r"{(\w+)", route.path)]
    if route.query is not None:
        schema = route.query.model_json_schema(ref_template=REF)
        schemas.components.update(schema.pop("$defs", {}))
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            params.append({"name": name, "in": "query", "required": name in required,
                           "description": prop.get("description", ""), "schema": prop})
    return params


def _operation(route: Route, schemas: _Schemas) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": route.summary, "tags": [route.tag],
                          "operationId": f"{route.method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', route.path)}"}
    params = _parameters(route, schemas)
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {"required": route.body_required,
                             "content": {"application/json": {"schema": schemas.of(route.body)}}}
    if route.form is not None:
        op["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": schemas.of(route.form)}}}
    if route.path == "/ws":
        op["description"] = WEBSOCKET_NOTE
    responses: dict[str, Any] = {}
    for status, (description, model) in sorted(route.responses.items()):
        response: dict[str, Any] = {"description": description}
        if model is not None:
            response["content"] = {"application/json": {"schema": schemas.of(model)}}
        elif status == 200 and route.content_type and route.content_type != "application/json":
            response["content"] = {route.content_type: {"schema": {"type": "string", "format": "binary"}}}
        responses[str(status)] = response
    op["responses"] = responses or {"200": {"description": "OK"}}
    return op


def build_document(routes: list[Route], version: str = "0.1.0") -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        op = _operation(route, schemas)
        paths.setdefault(route.path, {})[route.method.lower()] = op
        if route.alias:
            paths.setdefault(API_PREFIX + route.path, {})[route.method.lower()] = {
                **op, "operationId": op["operationId"] + "_api"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "latentloom", "version": version,
                 "description": "ComfyUI-compatible HTTP and websocket API. Every path is also served under "
                                "/api. Refusals use ComfyUI's envelope {error: {type, message, details, "
                                "extra_info}, node_errors}."},
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.components.items())),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "needed when the server has a token"}}},
    }


def add_openapi_routes(app: web.Application, routes: list[Route]) -> None:
    @lru_cache(maxsize=1)
    def document() -> dict[str, Any]:
        return build_document(routes)

    async def openapi_json(request: web.Request) -> web.Response:
        return json_response(document())

    async def docs(request: web.Request) -> web.Response:
        return web.Response(text=DOCS_PAGE, content_type="text/html")

    app.router.add_get("/openapi.json", openapi_json, name=PUBLIC + "openapi")
    app.router.add_get("/docs", docs, name=PUBLIC + "docs")


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>latentloom API</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#20232a;color:#fff;padding:1em 2em}header p{margin:.3em 0 0;color:#c8c8c8}
main{max-width:70em;margin:0 auto;padding:1em 2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
details{background:#fff;border:1px solid #ddd;border-radius:4px;margin:.4em 0}
summary{cursor:pointer;padding:.5em .8em;font-family:ui-monospace,monospace}
.m{display:inline-block;min-width:4.5em;font-weight:bold}.GET{color:#0a6}.POST{color:#c60}
.body{padding:0 1em 1em}pre{background:#f4f4f4;padding:.6em;overflow:auto;border-radius:3px}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .6em;text-align:left}
a{color:#0366d6}
</style></head><body>
<header><h1 id="title">latentloom API</h1><p id="desc"></p></header>
<main id="main">Loading <a href="openapi.json">openapi.json</a>…</main>
<script>
"use strict";
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
};
const json = (v) => el("pre", {}, JSON.stringify(v, null, 2));
function schemaView(schema) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return el("p", {}, "schema: ", el("a", {href: "#schema-" + name}, name));
  }
  return json(schema);
}
function operation(path, method, op) {
  const body = el("div", {class: "body"});
  if (op.description) body.append(el("p", {}, op.description));
  if (op.parameters) {
    const rows = op.parameters.map(p => el("tr", {}, el("td", {}, p.name), el("td", {}, p.in),
      el("td", {}, p.required ? "required" : ""), el("td", {}, JSON.stringify(p.schema))));
    body.append(el("h4", {}, "Parameters"), el("table", {}, ...rows));
  }
  if (op.requestBody) {
    for (const [type, c] of Object.entries(op.requestBody.content)) {
      body.append(el("h4", {}, "Request body (" + type + ")"), schemaView(c.schema));
    }
  }
  body.append(el("h4", {}, "Responses"));
  for (const [status, r] of Object.entries(op.responses)) {
    body.append(el("p", {}, el("b", {}, status), " " + r.description));
    for (const c of Object.values(r.content || {})) body.append(schemaView(c.schema));
  }
  return el("details", {}, el("summary", {}, el("span", {class: "m " + method.toUpperCase()},
    method.toUpperCase()), " " + path + " — " + (op.summary || "")), body);
}
function render(doc) {
  document.getElementById("title").textContent = doc.info.title + " " + doc.info.version;
  document.getElementById("desc").textContent = doc.info.description || "";
  const main = document.getElementById("main");
  main.textContent = "";
  const byTag = {};
  for (const [path, ops] of Object.entries(doc.paths)) {
    if (path.startsWith("/api/")) continue;  // the same operations again under /api
    for (const [method, op] of Object.entries(ops)) {
      (byTag[op.tags[0]] ||= []).push(operation(path, method, op));
    }
  }
  main.append(el("p", {}, "Every path below is also served under /api. ",
    el("a", {href: "openapi.json"}, "Download the OpenAPI document.")));
  for (const [tag, items] of Object.entries(byTag)) main.append(el("h2", {}, tag), ...items);
  main.append(el("h2", {}, "Schemas"));
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    main.append(el("details", {id: "schema-" + name}, el("summary", {}, name),
      el("div", {class: "body"}, json(schema))));
  }
}
fetch("openapi.json").then(r => r.json()).then(render).catch(e => {
  document.getElementById("main").textContent = "Could not load openapi.json: " + e;
});
</script></body></html>
"""
