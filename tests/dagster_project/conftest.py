import shutil

import dagster as dg
import pytest

from dagster_project.headless import prepare_instance
from rosie_pipeline.paths import RosieHome
from rosie_pipeline.samples import pywb_sample_warcs
from tests.fixtures import PROSE, comment, gutenberg_book, submission, zstd_ndjson


def land_sample(home: RosieHome) -> None:
    """One real WARC (pywb's iana.org capture), a Gutenberg-format book and a Reddit month."""
    home.create_layout()
    shutil.copy(pywb_sample_warcs() / "iana.warc.gz", home.landing_dir("common_crawl") / "iana.warc.gz")
    (home.landing_dir("books") / "pg-rosie.txt").write_text(
        gutenberg_book("Rosie Abroad", "J. Doe", [PROSE[:12], PROSE[12:]])
    )
    reddit = home.landing_dir("reddit")
    (reddit / "RS_2023-11.zst").write_bytes(zstd_ndjson([submission("s1", "Best cat toy?")], window_log=31))
    (reddit / "RC_2023-11.zst").write_bytes(zstd_ndjson([
        comment("c1", "s1", "t3_s1", " ".join(PROSE[:4]), "alice"),
        comment("c2", "s1", "t1_c1", " ".join(PROSE[4:8]), "bob"),
    ], window_log=31))


@pytest.fixture
def home(tmp_path, monkeypatch) -> RosieHome:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("ROSIE_HOME", raising=False)
    home = RosieHome.from_env(tmp_path / "rosie")
    land_sample(home)
    return home


@pytest.fixture
def instance(home, monkeypatch) -> dg.DagsterInstance:
    """A real, persistent Dagster instance under the temporary home's dagster/ folder."""
    monkeypatch.setenv("DAGSTER_HOME", str(home.dagster))  # undone after the test by monkeypatch
    instance = prepare_instance(home)
    # not `with instance:` — that sets a context variable which outlives this test's instance
    yield instance
    instance.dispose()
