"""Scale-out pieces that need no Ray: the routing rule, what travels with a prompt, and writing results back."""
from __future__ import annotations

from executor.scale_out import WorkerState, choose_worker, input_files, write_output
from nodes.paths import DataPaths


def worker(wid, state="idle", models=(), keys=(), runs=0):
    return WorkerState(wid, "host", "cpu", state, list(models), runs, set(keys))


def test_routing_prefers_the_model_holder_then_the_warmest_cache_else_the_least_loaded():
    a = worker("a", models=["checkpoints/x"], keys={"k1"}, runs=5)
    b = worker("b", models=["checkpoints/x", "loras/y"], keys={"k1", "k2"}, runs=9)
    c = worker("c", runs=0)
    assert choose_worker([a, b, c], {"checkpoints/x"}, ["k1", "k2", "k3"]) is b      # most keys
    assert choose_worker([a, b, c], {"checkpoints/x"}, ["k9"]) is a                  # tie on keys: fewer runs
    assert choose_worker([a, b, c], {"loras/y", "checkpoints/x"}, []) is b           # holds every model
    assert choose_worker([a, b, c], {"checkpoints/z"}, []) is c                      # nobody holds it: least loaded
    assert choose_worker([a, b, c], set(), []) is c
    b.state = "busy"
    assert choose_worker([a, b, c], {"loras/y"}, []) is c                            # the holder is busy
    assert choose_worker([worker("d", "restarting")], set(), []) is None


def test_input_files_travel_by_the_names_the_prompt_uses(tmp_path):
    paths = DataPaths(tmp_path)
    (paths.input / "sub").mkdir()
    (paths.input / "sub" / "a.png").write_bytes(b"A")
    (paths.input / "b.png").write_bytes(b"B")
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "sub/a.png"}},
              "2": {"class_type": "LoadImageMask", "inputs": {"image": "b.png [input]", "channel": "alpha"}},
              "3": {"class_type": "X", "inputs": {"text": "../../etc/passwd", "other": ["1", 0], "n": 3}}}
    assert input_files(prompt, paths) == {"sub/a.png": b"A", "b.png": b"B"}


def test_results_never_overwrite_a_file_of_the_head(tmp_path):
    paths = DataPaths(tmp_path)
    assert write_output(paths.output, "", "img_00001_.png", b"1", paths) == "img_00001_.png"
    assert write_output(paths.output, "", "img_00001_.png", b"2", paths) == "img_00001__2.png"
    assert write_output(paths.output, "sub", "img_00001_.png", b"3", paths) == "img_00001_.png"
    assert (paths.output / "img_00001_.png").read_bytes() == b"1"
    assert (paths.output / "img_00001__2.png").read_bytes() == b"2"
    assert (paths.output / "sub" / "img_00001_.png").read_bytes() == b"3"
