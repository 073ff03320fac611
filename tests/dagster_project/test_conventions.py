"""The Dagster conventions on every asset the code location serves: a code version that follows the source
the asset runs, the columns of each Parquet asset, freshness where the nightly refresh promises it, and a
maximum runtime for runs so a hung trainer cannot hold the gpu pool forever."""

import dagster as dg

from dagster_project.conventions import COLUMN_SCHEMAS, GROUP_SOURCES, source_digest
from dagster_project.definitions import build_definitions
from dagster_project.headless import prepare_instance
from rosie_pipeline.paths import RosieHome


def _specs(tmp_path):
    return {s.key.to_user_string(): s for s in build_definitions(str(tmp_path)).resolve_all_asset_specs()}


def test_every_asset_has_its_groups_code_version(tmp_path):
    specs = _specs(tmp_path)
    assert {s.group_name for s in specs.values()} == set(GROUP_SOURCES)
    by_group = {}
    for spec in specs.values():
        assert spec.code_version and len(spec.code_version) == 12
        by_group.setdefault(spec.group_name, set()).add(spec.code_version)
    assert all(len(versions) == 1 for versions in by_group.values())  # one per group ...
    assert len({v for versions in by_group.values() for v in versions}) == len(by_group)  # ... and groups differ


def test_the_code_version_follows_the_source(tmp_path):
    package = tmp_path / "package"
    package.mkdir()
    (package / "step.py").write_text("def run(): return 1\n")
    (package / "rules.yaml").write_text("min_words: 50\n")
    before = source_digest([package])
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "step.cpython-311.pyc").write_bytes(b"\0compiled")
    assert source_digest([package]) == before  # compiled files are not source
    (package / "rules.yaml").write_text("min_words: 40\n")
    assert source_digest([package]) != before


def test_parquet_assets_declare_their_columns_and_fresh_ones_their_freshness(tmp_path):
    specs = _specs(tmp_path)
    for name, spec in specs.items():
        if name in COLUMN_SCHEMAS:
            columns = [c.name for c in spec.metadata["dagster/column_schema"].columns]
            assert "text" in columns or "turns" in columns, (name, columns)
        elif "parquet" in spec.kinds:  # the token shards report theirs when written
            assert name.endswith("shards"), name
    fresh = {name for name, spec in specs.items() if spec.freshness_policy is not None}
    assert fresh == {"cc_documents", "book_documents", "reddit_threads", "registered_model", "bootstrap_registered_model"}


def test_the_home_instance_fails_runs_that_hang(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("ROSIE_HOME", raising=False)
    instance = prepare_instance(RosieHome(tmp_path / "home"))
    assert isinstance(instance, dg.DagsterInstance)
    assert instance.run_monitoring_enabled and instance.run_monitoring_max_runtime_seconds == 86400
