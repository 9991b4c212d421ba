"""nodes.images: saved files never overwrite each other, whoever else writes into the output folder."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from nodes.images import claim_file, output_names

ROOT = Path(__file__).resolve().parents[2]
WRITER = """
import sys
from pathlib import Path
from nodes.images import claim_file, output_names
folder, tag = Path(sys.argv[1]), sys.argv[2]
for _ in range(40):
    directory, base, counter = output_names(folder, "race/img", 8, 8)
    name, _ = claim_file(directory, lambda n: f"{base}_{n:05}_.png", counter)
    (directory / name).write_text(tag)
"""


def save(folder: Path, tag: str) -> str:
    """What SaveImage does for one image: find the next counter, claim the name, write the file."""
    directory, base, counter = output_names(folder, "race/img", 8, 8)
    name, _ = claim_file(directory, lambda n: f"{base}_{n:05}_.png", counter)
    (directory / name).write_text(tag)
    return name


def test_claim_skips_taken_names(tmp_path):
    (tmp_path / "a_00001_.png").write_text("kept")
    assert claim_file(tmp_path, lambda n: f"a_{n:05}_.png", 1) == ("a_00002_.png", 2)
    assert (tmp_path / "a_00001_.png").read_text() == "kept"


def test_threads_racing_for_names_never_overwrite(tmp_path):
    start = threading.Barrier(8)
    names: list[str] = []

    def writer(tag: str) -> None:
        start.wait()
        for i in range(25):
            names.append(save(tmp_path, f"{tag}-{i}"))

    threads = [threading.Thread(target=writer, args=(str(t),)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    files = sorted((tmp_path / "race").iterdir())
    assert len(names) == len(set(names)) == len(files) == 200
    assert len({f.read_text() for f in files}) == 200  # every write is still there


def test_two_processes_sharing_a_data_folder_never_overwrite(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), tag], cwd=ROOT) for tag in "ab"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    contents = [f.read_text() for f in (tmp_path / "race").iterdir()]
    assert sorted(contents) == ["a"] * 40 + ["b"] * 40
