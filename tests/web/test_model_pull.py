"""The editor offers to download a missing model that the workflow says where to get (`_meta.models`, ComfyUI's
`properties.models`), through POST /models/pull and its model_pull messages."""
from __future__ import annotations

import os

from tests.http_files import FileServer
from tests.web.editor_page import open_editor


def test_a_missing_model_with_a_source_is_offered_and_downloaded(page, data_dir):
    with FileServer() as files:
        files.files["fetched.safetensors"] = os.urandom(50_000)
        url = f"{files.url}/files/fetched.safetensors"
        workflow = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "fetched.safetensors"},
                          "_meta": {"pos": [40, 40], "models": [{"name": "fetched.safetensors", "url": url,
                                                                 "directory": "checkpoints"}]}},
                    "2": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["1", 2]},
                          "_meta": {"pos": [420, 40]}},
                    "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1},
                          "_meta": {"pos": [40, 260]}},
                    "4": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}, "_meta": {"pos": [700, 40]}}}
        page.allowed_errors.append("400")  # the refused POST /prompt
        open_editor(page, workflow)
        # the workflow keeps where its model comes from
        assert page.evaluate("app.toWorkflow()['1']._meta.models")[0]["url"] == url
        page.click("#queue-button")
        button = page.locator("#errors .ll-error-line button", has_text="Download")
        button.wait_for()
        assert "checkpoints/fetched.safetensors can be downloaded from 127.0.0.1" in page.locator("#errors").inner_text()
        button.click()
        page.locator("#notices", has_text="Downloaded checkpoints/fetched.safetensors").wait_for()
        assert (data_dir / "models" / "checkpoints" / "fetched.safetensors").read_bytes() == files.files[
            "fetched.safetensors"]
        # the definitions were reloaded: the loader's list now has the file
        page.wait_for_function("app.defs.CheckpointLoaderSimple.input.required.ckpt_name[0]"
                               ".includes('fetched.safetensors')")
