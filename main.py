"""latentloom command line: `serve`, `run`, `validate`, `nodes`, `reproduce`.

    python main.py serve [--listen 127.0.0.1] [--port 8188] [--data-dir data]
    python main.py --precision bf16 run WORKFLOW.json   # also --fp16-unet, --bf16-vae, --fp32-text-enc, …
    python main.py run WORKFLOW.json        # headless; exit 1 on invalid input, 2 on a failed run
    python main.py validate WORKFLOW.json   # prints the validation report; exit 1 when not clean
    python main.py nodes                    # node types with their inputs and outputs
    python main.py reproduce IMAGE.png      # re-run an image's embedded workflow; exit 3 when pixels differ
    python main.py models pull SOURCE       # download a model (https URL or Hugging Face org/repo/file), verified
    python main.py models list              # installed models with kinds, sizes and sha256

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
from nodes.precision import Precision, add_precision_arguments


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
    add_precision_arguments(parser, suppress=default is not None)
    parser.add_argument("--compile", action="store_const", const="inductor", default=pick(None),
                        help="torch.compile the UNet and the VAE decoder (the first image of each size compiles; "
                             "eager where compiling fails)")


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
    serve.add_argument("--allow-model-pull", action="store_true",
                       help="allow POST /models/pull beyond loopback (needs a token; always on for loopback)")
    serve.add_argument("--ray", default=None, metavar="ADDRESS",
                       help="run prompts on Ray worker actors: 'local' starts Ray here, else a cluster address "
                            "(needs the ray extra)")
    serve.add_argument("--ray-workers", type=int, default=None, metavar="N",
                       help="number of Ray workers (default: one per GPU; a CPU-only cluster needs N)")
    serve.add_argument("--ray-worker-data-dir", default=None, metavar="TEMPLATE",
                       help="each worker's data folder, '{worker}' replaced by its id (default: the head's for "
                            "'local', the worker's own default on a cluster)")
    serve.add_argument("--multi-user", action="store_true",
                       help="keep settings and user files per user, chosen by the Comfy-User header (ComfyUI's flag)")
    serve.add_argument("--front-end", choices=("latentloom", "official"), default="latentloom",
                       help="the page at /: our editor (default), or ComfyUI's frontend from the installed "
                            "comfyui-frontend-package (pip install 'latentloom[frontend]'); ours stays at /latentloom/")
    serve.add_argument("--front-end-root", default=None, metavar="DIR",
                       help="serve the frontend build in DIR at / (ComfyUI's flag); ours stays at /latentloom/")
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
    reproduce.add_argument("--pull", action="store_true", help="first download the missing models it records")
    add_models_parser(sub)
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

    return Environment(DataPaths(args.data_dir, extra_models(args.extra_model_paths)), allow_pickle=args.allow_pickle,
                       precision=Precision.from_args(args), compile=args.compile)


def precision_hint(precision: Precision) -> None:
    """Say once, at start, when this CPU would run faster in bf16 than in the fp32 it is about to use."""
    from nodes.precision import bf16_hint, cpu_flags
    from nodes.sd.devices import compute_device

    hint = bf16_hint(precision, compute_device().type, cpu_flags())
    if hint is not None:
        print(f"note: {hint}", file=sys.stderr)


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
    precision_hint(env.precision)
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


def add_models_parser(sub) -> None:
    from nodes.paths import MODEL_FOLDERS

    models = sub.add_parser("models", help="download and list models").add_subparsers(dest="models_command",
                                                                                      required=True)
    pull = models.add_parser("pull", help="download a model, or every missing model a workflow or PNG names")
    pull.add_argument("source", nargs="?", help="https URL, or Hugging Face org/repo/path/file (or org/repo "
                                                 "with --file)")
    pull.add_argument("--for", dest="for_file", type=Path, metavar="FILE",
                      help="a workflow JSON or PNG: pull every model it names that is missing and says where to get")
    pull.add_argument("--kind", choices=MODEL_FOLDERS, default="checkpoints", help="model folder (default checkpoints)")
    pull.add_argument("--name", help="file name in that folder (default: the source's file name)")
    pull.add_argument("--sha256", help="expected sha256: a download with another hash is refused")
    pull.add_argument("--file", help="the file in a Hugging Face repository")
    pull.add_argument("--revision", help="Hugging Face branch, tag or commit (default main)")
    pull.add_argument("--max-size", type=float, metavar="GB", help="refuse downloads larger than this")
    listing = models.add_parser("list", help="installed models with kinds, sizes and sha256")
    listing.add_argument("--kind", choices=MODEL_FOLDERS, action="append", help="only these folders")


def cmd_models(args: argparse.Namespace) -> int:
    return cmd_models_pull(args) if args.models_command == "pull" else cmd_models_list(args)


def cmd_models_pull(args: argparse.Namespace) -> int:
    """Exit 0 when every asked-for model is here, 1 when one could not be pulled."""
    from nodes.identity import model_hashes
    from nodes.pull import PullError, pull, resolve_source

    if (args.source is None) == (args.for_file is None):
        print("error: give either SOURCE or --for FILE", file=sys.stderr)
        return 1
    env = make_environment(args)
    max_bytes = None if args.max_size is None else int(args.max_size * 2**30)
    if args.for_file is not None:
        return pull_for(args.for_file, env, max_bytes)
    try:
        pulled = pull(env.paths, model_hashes(env), args.kind, resolve_source(args.source, args.file, args.revision),
                      name=args.name, sha256=args.sha256, max_bytes=max_bytes, progress=progress_bar(args.source))
    except PullError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{'present' if pulled.existed else 'pulled'}: {pulled.kind}/{pulled.name} sha256 {pulled.sha256}")
    return 0


def pull_for(path: Path, env, max_bytes: int | None = None) -> int:
    from executor.model_sources import pull_missing
    from nodes.identity import model_hashes

    try:
        outcomes = pull_missing(path, env.paths, model_hashes(env), max_bytes=max_bytes,
                                progress=lambda model: progress_bar(model.describe()))
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    for outcome in outcomes:
        if outcome.error is None:
            print(f"pulled: {outcome.model.describe()} sha256 {outcome.pulled.sha256}")
        else:
            print(f"error: {outcome.model.describe()}: {outcome.error}", file=sys.stderr)
    if not outcomes:
        print(f"ok: every model {path.name} names is here")
    return 1 if any(o.error for o in outcomes) else 0


def progress_bar(label: str):
    """A download progress line on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int | None) -> None:
        if total:
            bar = "#" * int(20 * done / total)
            print(f"\r\033[K{label} [{bar:.<20}] {done / 2**20:.1f}/{total / 2**20:.1f} MB", end="",
                  file=sys.stderr, flush=True)
            if done >= total:
                print(file=sys.stderr)
        else:
            print(f"\r\033[K{label} {done / 2**20:.1f} MB", end="", file=sys.stderr, flush=True)
    return show


def cmd_models_list(args: argparse.Namespace) -> int:
    from nodes.identity import model_hashes
    from nodes.paths import MODEL_FOLDERS

    env = make_environment(args)
    hashes = model_hashes(env)
    for kind in args.kind or MODEL_FOLDERS:
        folder = env.paths.models(kind)
        for name in env.paths.model_files(kind):
            path = folder / name
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else \
                path.stat().st_size
            print(f"{kind}\t{name}\t{size}\t{hashes.sha256(path)}")
    return 0


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
    precision_hint(Precision.from_args(args))
    return serve(args)


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Exit 0 when the pixels match, 3 when they differ, 2 when the run fails, 1 when the file is unusable."""
    from executor.reproduce import reproduce

    env = make_environment(args)
    if args.pull and pull_for(args.image, env) != 0:
        print("error: a model it needs could not be pulled", file=sys.stderr)
        return 1
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
            "demo-checkpoint": cmd_demo_checkpoint, "reproduce": cmd_reproduce, "models": cmd_models}

if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. `main.py nodes | head`
        sys.exit(0)
