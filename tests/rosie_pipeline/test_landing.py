"""Every landed file gets its own valid partition key and lake folder, whatever its name."""

import dagster as dg

from rosie_pipeline.ingest.landing import scan_landing
from rosie_pipeline.paths import RosieHome

NAMES = ["book.txt", "sub/dir.txt", "sub__dir.txt", "a" * 240 + ".txt", "three...dots.txt", "tab\there.txt",
         "new\nline.txt", "trailing.txt"]


def test_hard_file_names_get_distinct_valid_keys_and_folders(tmp_path):
    home = RosieHome(tmp_path / "home")
    folder = home.landing_dir("books")
    for name in NAMES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("Some text.\n")
    inputs = scan_landing(home, "books")
    assert len(inputs) == len(NAMES)  # none skipped
    assert len({i.key for i in inputs}) == len({i.folder_name for i in inputs}) == len(NAMES)  # none merged
    dg.DagsterInstance.ephemeral().add_dynamic_partitions("books", [i.key for i in inputs])  # Dagster takes them
    for landed in inputs:
        assert "/" not in landed.folder_name and len(landed.folder_name.encode()) <= 120
        (tmp_path / "lake" / landed.folder_name / ".tmp-part").mkdir(parents=True)  # the file system takes it
    assert {i.key for i in inputs if "~" not in i.key} >= {"book.txt", "sub/dir.txt", "sub__dir.txt", "trailing.txt"}
