"""The pack's nodes: a step loop that waits for the user at each step, a checkpoint report saved to output/, an
async node with sampler-style previews, and a "stop the workflow" switch."""
import asyncio
import os
import threading

import comfy.model_management
import comfy.utils
import folder_paths
import nodes
from nodes import MAX_RESOLUTION
from server import PromptServer

# The pack's own model folder, as packs add theirs.
folder_paths.add_model_folder_path("surface", os.path.join(folder_paths.models_dir, "surface"))
folder_paths.folder_names_and_paths["surface"] = (folder_paths.get_folder_paths("surface"), {".txt", ".bin"})

CONTINUE = threading.Event()  # set by POST /surface_pack/continue (the user's click in a real pack)
PACK_VERSION = "0.2.0"


class WaitForUser:
    """Each step: report progress, tell the browser it waits, then wait for the user (or an interrupt)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": ("INT", {"default": 3, "min": 1, "max": 100}),
                             "width": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8})},
                "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "wait"
    OUTPUT_NODE = True
    CATEGORY = "surface"

    def wait(self, steps, width, unique_id):
        server = PromptServer.instance
        bar = comfy.utils.ProgressBar(steps)
        for step in range(steps):
            server.send_sync("surface_pack.waiting", {"node": unique_id, "step": step}, server.client_id)
            while not CONTINUE.wait(0.01):
                if comfy.model_management.processing_interrupted():
                    break
            CONTINUE.clear()
            try:
                bar.update(1)  # raises InterruptProcessingException after an interrupt
            except comfy.model_management.InterruptProcessingException:
                server.send_sync("surface_pack.cancelled", {"node": unique_id, "step": step}, server.client_id)
                raise
        comfy.model_management.throw_exception_if_processing_interrupted()
        server.send_sync("surface_pack.done", {"node": unique_id, "steps": steps, "max": nodes.MAX_RESOLUTION})
        return {"ui": {"waited": [steps]}, "result": (steps,)}


class CheckpointReport:
    """Writes the size of a checkpoint into a numbered text file in the output folder."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (folder_paths.get_filename_list("checkpoints"),),
                             "label": ("STRING", {"default": "report"}),
                             "filename_prefix": ("STRING", {"default": "surface/report"})}}

    RETURN_TYPES = ()
    FUNCTION = "report"
    OUTPUT_NODE = True
    CATEGORY = "surface"

    def report(self, ckpt_name, label, filename_prefix):
        path = folder_paths.get_full_path_or_raise("checkpoints", ckpt_name)
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory())
        name = f"{filename}_{counter:05}_.txt"
        device = comfy.model_management.get_torch_device()
        with open(os.path.join(folder, name), "w") as out:
            out.write(f"{label}: {ckpt_name} {os.path.getsize(path)} bytes on {device.type}")
        return {"ui": {"files": [{"filename": name, "subfolder": subfolder, "type": "output"}]}}


class AsyncPreviews:
    """An async FUNCTION reporting each step with a preview, as samplers do: (format, PIL image, max size)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": ("INT", {"default": 2, "min": 1, "max": 10})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "surface"

    async def run(self, steps):
        from PIL import Image

        bar = comfy.utils.ProgressBar(steps)
        for step in range(steps):
            await asyncio.sleep(0)
            bar.update_absolute(step + 1, steps, ("JPEG", Image.new("RGB", (8, 4), (10 * step, 0, 0)), 512))
        return (steps,)


class StopWorkflow:
    """Passes a number on, or stops the whole run when `stop` is on (as "stop" switches in packs do)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0}), "stop": ("BOOLEAN", {"default": False})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "surface"

    def run(self, value, stop):
        if stop:
            raise comfy.model_management.InterruptProcessingException()
        return (value,)


def set_version(json_data):
    """On-prompt handler: fills in the pack version where a string input asks for it."""
    for node in json_data.get("prompt", {}).values():
        for key, value in node.get("inputs", {}).items():
            if isinstance(value, str) and "$PACK_VERSION" in value:
                node["inputs"][key] = value.replace("$PACK_VERSION", PACK_VERSION)
    return json_data


PromptServer.instance.add_on_prompt_handler(set_version)

NODE_CLASS_MAPPINGS = {"SurfaceWaitForUser": WaitForUser, "SurfaceCheckpointReport": CheckpointReport,
                       "SurfaceAsyncPreviews": AsyncPreviews, "SurfaceStopWorkflow": StopWorkflow}
NODE_DISPLAY_NAME_MAPPINGS = {"SurfaceWaitForUser": "Wait for user (surface)"}
