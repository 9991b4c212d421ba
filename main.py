"""latentloom command line: `serve`, `run`, `validate`, `nodes`, `reproduce`.

    python main.py serve [--listen 127.0.0.1] [--port 8188] [--data-dir data]
    python main.py run WORKFLOW.json        # headless; exit 1 on invalid input, 2 on a failed run
    python main.py validate WORKFLOW.json   # prints the validation report; exit 1 when not clean
    python main.py nodes                    # node types with their inputs and outputs
    python main.py reproduce IMAGE.png      # re-run an image's embedded workflow; exit 3 when pixels differ

Workflows may be in the API format or ComfyUI's UI format (converted by executor.ui_format). Plugins from the
data folder's custom_nodes/ and installed packages are loaded unless --disable-plugins.
"""
from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

from nodes.paths import DATA_DIR_ENV


def global_options(parser: argparse.ArgumentParser, default: Any = None) -> None:
    """The options every command takes, before or after the command's name (`default`: argparse.SUPPRESS after
    it, so that a value given before the command is not reset)."""
    def pick(value: Any) -> Any:
        return value if default is None else default

    parser.add_argument("--data-dir", default=pick(None), help=f"data folder (default: ${DATA_DIR_ENV} or ./data)")
    parser.add_argument("--extra-model-paths", type=Path, default=pick(None), metavar="FILE",
                        help="more model folders from a ComfyUI extra_model_paths.yaml")
    parser.add_argument("--disable-plugins", action="store_true", default=pick(False),
                        help="load no plugins (custom_nodes/ and installed latentloom.nodes entry points)")
    parser.add_argument("--disk-cache", type=float, default=pick(0.0), metavar="GB",
                        help="also keep serialisable node outputs on disk, up to GB, so they survive restarts "
                             "(default 0: memory only)")
    parser.add_argument("--allow-pickle", action="store_true", default=pick(False),
                        help="let loaders read pickle model files (.ckpt, .pt): only for files you trust")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentloom", description=__doc__.splitlines()[0])
    global_options(parser)
    after = argparse.ArgumentParser(add_help=False)
    global_options(after, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", parents=[after], help="start the HTTP/websocket server and the editor")
    serve.add_argument("--listen", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8188)
    serve.add_argument("--preview", action="store_true", help="send live previews while sampling")
    serve.add_argument("--auth-token", default=None, help="token required when listening beyond loopback")
    serve.add_argument("--no-auth", action="store_true", help="waive the token on a non-loopback address")
    serve.add_argument("--max-upload-size", type=float, default=100.0, metavar="MB",
                       help="largest request body in MB; bigger ones get 413 (default 100)")
    serve.add_argument("--preview-size", type=int, default=512, help="largest preview side in pixels (default 512)")
    serve.add_argument("--interrupted-prompts", choices=("requeue", "fail"), default="requeue",
                       help="what a start does with a prompt that was running when the server died (default requeue)")
    serve.add_argument("--enable-cors-header", nargs="?", const="*", default=None, metavar="ORIGIN",
                       help="send CORS headers allowing ORIGIN (default *) instead of refusing other origins")
    serve.add_argument("--enable-compress-response-body", action="store_true",
                       help="gzip JSON and text responses for clients that accept it")
    serve.add_argument("--demo-if-empty", action="store_true",
                       help="write the tiny demo checkpoint when models/checkpoints has none")
    run = sub.add_parser("run", parents=[after], help="run a workflow headless and write its outputs")
    run.add_argument("workflow", type=Path)
    run.add_argument("--target", action="append", help="only run these output node ids")
    validate = sub.add_parser("validate", parents=[after], help="validate a workflow and print the report")
    validate.add_argument("workflow", type=Path)
    sub.add_parser("nodes", parents=[after], help="list node types with their inputs and outputs")
    reproduce = sub.add_parser("reproduce", parents=[after],
                               help="re-run the workflow embedded in an image and compare pixels")
    reproduce.add_argument("image", type=Path)
    reproduce.add_argument("--save", type=Path, default=None, help="also write the reproduced PNG here")
    sub.add_parser("demo-checkpoint", parents=[after],
                   help="write the tiny random-weight demo checkpoint (produces noise)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from nodes.model_paths import ModelPathsError

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ModelPathsError as exc:
        print(f"error: --extra-model-paths: {exc}", file=sys.stderr)
        return 1


def make_environment(args: argparse.Namespace):
    from nodes.api import Environment
    from nodes.paths import DataPaths
    from server.config import extra_models

    return Environment(DataPaths(args.data_dir, extra_models(args.extra_model_paths)), allow_pickle=args.allow_pickle)


def make_registry(args: argparse.Namespace, env):
    """Built-in nodes and plugins; a plugin that fails is named on stderr and the rest go on."""
    from nodes.builtin import full_registry

    registry, plugins = full_registry(env.paths, plugins=not getattr(args, "disable_plugins", False))
    for plugin in plugins.items:
        if plugin.status in ("failed", "partial"):
            problems = [plugin.error] if plugin.error else [f"{k}: {v}" for k, v in plugin.node_errors.items()]
            print(f"warning: plugin {plugin.name} {plugin.status}: {'; '.join(problems)}", file=sys.stderr)
    return registry


def admit_file(args: argparse.Namespace, env, stream, targets: list[str] | None = None):
    """Read and admit (executor.prepare.admit) the workflow file; None after printing why it is refused."""
    from executor.errors import PromptError
    from executor.prepare import admit
    from executor.seeds import FirstSubmission
    from executor.workflow import load_json

    try:
        text = args.workflow.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {args.workflow}: {exc.strerror}", file=sys.stderr)
        return None
    registry = make_registry(args, env)
    try:
        admitted = admit(load_json(text), registry, env, seeds=FirstSubmission(), targets=targets)
    except PromptError as exc:
        print_errors(exc.body(), stream)
        return None
    for note in admitted.notes:
        print(f"note: {note}", file=sys.stderr)
    return admitted


def print_errors(body: dict[str, Any], stream) -> None:
    """ComfyUI's `error` + `node_errors` envelope as text (executor.errors.format_errors)."""
    from executor.errors import format_errors

    for line in format_errors(body):
        print(line, file=stream)


def cmd_validate(args: argparse.Namespace) -> int:
    admitted = admit_file(args, make_environment(args), sys.stdout)
    if admitted is None:
        return 1
    report = admitted.report
    print_errors(report.to_comfy(), sys.stdout)
    if report.clean:
        print(f"ok: outputs {', '.join(report.outputs)}")
    return 0 if report.clean else 1


def cmd_run(args: argparse.Namespace) -> int:
    from executor.disk_cache import FOLDER as DISK_CACHE, output_cache
    from executor.run import DEFAULT_CACHE_BYTES, Executor

    env = make_environment(args)
    admitted = admit_file(args, env, sys.stderr, args.target)
    if admitted is None:
        return 1
    print_errors(admitted.report.to_comfy(), sys.stderr)
    executor = Executor(env, output_cache(DEFAULT_CACHE_BYTES, env.paths.root / DISK_CACHE,
                                          int(args.disk_cache * 2**30)))
    if sys.stderr.isatty():
        executor.subscribe(ProgressPrinter())
    result = executor.execute(admitted.report, prompt_id=str(uuid.uuid4()), prompt=admitted.prompt,
                              extra_data=admitted.extra_data)
    for nid, ui in result.outputs.items():
        for image in ui.get("images", []):
            folder = getattr(env.paths, image.get("type", "output"))
            print(folder / image.get("subfolder", "") / image["filename"])
        for text in ui.get("text", []):
            print(text)
    if result.error is not None:
        data = result.error.data()
        print(f"error: node {data['node_id']} ({data['node_type']}): "
              f"{data.get('exception_message', 'interrupted')}", file=sys.stderr)
        return 2
    return 0


class ProgressPrinter:
    """A one-line progress bar on stderr for `run`."""

    def __call__(self, event: Any) -> None:
        if event.type == "executing" and event.node is not None:
            print(f"\r\033[K[{event.node}] running", end="", file=sys.stderr, flush=True)
        elif event.type == "progress":
            done = int(20 * event.value / max(event.max, 1))
            print(f"\r\033[K[{event.node}] [{'#' * done}{'.' * (20 - done)}] {event.value}/{event.max}",
                  end="", file=sys.stderr, flush=True)
        elif event.type in ("execution_success", "execution_error", "execution_interrupted"):
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def cmd_nodes(args: argparse.Namespace) -> int:
    for spec in sorted(make_registry(args, make_environment(args)), key=lambda s: (s.category, s.name)):
        aliases = f" (also {', '.join(spec.aliases)})" if spec.aliases else ""
        print(f"{spec.name}{aliases} [{spec.category}] v{spec.version}")
        for inp in spec.inputs:
            flag = "" if inp.required else " (optional)"
            print(f"    in  {inp.name}: {inp.type.name}{flag}")
        for out in spec.outputs:
            print(f"    out {out.name}: {out.type}{' (list)' if out.is_list else ''}")
    return 0


DEMO_CHECKPOINT = "latentloom-demo-tiny.safetensors"
DEMO_INPUT = "example.png"


def cmd_demo_checkpoint(args: argparse.Namespace) -> int:
    """Write a tiny random-weight SD1.x checkpoint in the real single-file layout (it only makes noise), and an
    input image for the img2img example."""
    from nodes.sd.tiny import write_single_file

    paths = make_environment(args).paths
    target = paths.models("checkpoints") / DEMO_CHECKPOINT
    write_single_file("sd1", target, seed=0)
    print(target)
    example = paths.input / DEMO_INPUT
    if not example.exists():
        write_demo_image(example)
        print(example)
    return 0


def write_demo_image(path: Path) -> None:
    """A 64×64 test card (colour gradients) with a transparent disc in the middle: img2img uses the colours,
    the inpaint example repaints the disc (LoadImage's mask is 1 − alpha)."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:64, 0:64].astype(np.float32) / 63.0
    rgb = np.stack([x, y, 1.0 - (x + y) / 2.0], axis=-1)
    alpha = np.where((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.04, 0.0, 1.0)[..., None]
    Image.fromarray((np.concatenate([rgb, alpha], axis=-1) * 255).astype(np.uint8), "RGBA").save(path)


def cmd_serve(args: argparse.Namespace) -> int:
    from server.app import serve

    if args.demo_if_empty and not make_environment(args).paths.model_files("checkpoints"):
        cmd_demo_checkpoint(args)
    return serve(args)


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Exit 0 when the pixels match, 3 when they differ, 2 when the run fails, 1 when the file is unusable."""
    from executor.reproduce import reproduce

    env = make_environment(args)
    outcome = reproduce(args.image, make_registry(args, env), env)
    for note in outcome.notes:
        print(f"note: {note}", file=sys.stderr)
    if outcome.status in ("invalid", "failed"):
        print(f"error: {args.image}: {outcome.message}", file=sys.stderr)
        return 1 if outcome.status == "invalid" else 2
    if args.save is not None and outcome.reproduced is not None:
        args.save.write_bytes(outcome.reproduced)
    devices = f"made on {outcome.made_on or 'an unknown device'}, reproduced on {outcome.now_on}"
    print(f"{outcome.status}: {outcome.comparison.describe()} ({outcome.image}; {devices})")
    return 0 if outcome.status == "match" else 3


COMMANDS = {"serve": cmd_serve, "run": cmd_run, "validate": cmd_validate, "nodes": cmd_nodes,
            "demo-checkpoint": cmd_demo_checkpoint, "reproduce": cmd_reproduce}

if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. `main.py nodes | head`
        sys.exit(0)
