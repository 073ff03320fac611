"""A home remembers the settings it was built with: the Launchpad's defaults, automation's runs and `rosie run`
all use them, a run's own config still wins, and settings that name nothing are refused with the fix."""

import dagster as dg
import pytest

from dagster_project.definitions import build_definitions
from dagster_project.settings import SettingsError, remember_settings, settings_path
from dagster_project.sizes import machine_sizes
from tests.dagster_project.test_rosie_run import _rosie


def launchpad_defaults(defs: dg.Definitions, asset: str) -> dict:
    """The config the Launchpad starts from for an asset: its schema's defaults."""
    job = defs.resolve_implicit_global_asset_job_def()
    ops = job.run_config_schema.config_type.fields["ops"].config_type
    return ops.fields[asset].config_type.fields["config"].default_value


def test_without_settings_the_bootstrap_phases_are_sized_for_this_machine(home):
    defs = build_definitions(str(home.root))
    sized = machine_sizes()  # minutes a phase on a CPU, not hours
    for asset in ("bootstrap_personality_model", "bootstrap_rosie_model"):
        defaults = launchpad_defaults(defs, asset)
        assert {k: defaults[k] for k in sized[asset]} == sized[asset]
    assert launchpad_defaults(defs, "rosie_tokenizer")["vocab_size"] != 4096


def test_the_homes_settings_are_the_defaults_and_a_runs_own_config_wins(home, instance):
    path = remember_settings(home, {"book_documents": {"min_text_chars": 10**9}, "rosie_tokenizer": {"vocab_size": 4096}})
    assert path == settings_path(home) and path.read_text().startswith("# What this Rosie home is built with")
    remember_settings(home, {"bootstrap_personality_model": {"steps": 7}})  # merged over what it said
    defs = build_definitions(str(home.root))
    assert launchpad_defaults(defs, "rosie_tokenizer")["vocab_size"] == 4096
    assert launchpad_defaults(defs, "bootstrap_personality_model")["steps"] == 7  # over the machine's sizes
    assert launchpad_defaults(defs, "book_documents")["min_text_chars"] == 10**9

    # a run without config of its own (what automation and the UI's Materialize launch) builds with the settings
    instance.add_dynamic_partitions("book_files", ["pg-rosie.txt"])
    plain = dg.materialize(defs.assets, selection=["book_documents"], partition_key="pg-rosie.txt",
                           instance=instance, resources=defs.resources)
    [check] = [c for c in plain.get_asset_check_evaluations() if c.check_name == "non_empty"]
    assert not check.passed  # every book is shorter than the home's min_text_chars
    # ... and a run's own config wins over them
    own = dg.materialize(defs.assets, selection=["book_documents"], partition_key="pg-rosie.txt", instance=instance,
                         resources=defs.resources,
                         run_config={"ops": {"book_documents": {"config": {"min_text_chars": 10}}}})
    assert all(c.passed for c in own.get_asset_check_evaluations() if c.check_name == "non_empty")


@pytest.mark.parametrize(("settings", "message"), [
    ({"no_such_asset": {"steps": 1}}, "no_such_asset, which no asset with settings is called"),
    ({"base_model": {"stepz": 1}}, "base_model has no setting stepz; its settings: "),
    ({"base_model": {"steps": "many"}}, "base_model.steps = 'many' is not a valid value"),
])
def test_settings_that_name_nothing_are_refused_with_the_fix(home, settings, message):
    remember_settings(home, settings)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        build_definitions(str(home.root))
    done = _rosie(home, "run", "key:book_documents")
    assert done.returncode == 2 and message in done.stderr and str(settings_path(home)) in done.stderr
