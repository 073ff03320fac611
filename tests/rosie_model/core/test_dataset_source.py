"""Shard folders go to MLflow as dataset sources without MLflow's "interpreted in multiple ways" notice."""

import warnings

from rosie_model.core.reporting import dataset_source


def test_a_shard_folder_is_one_local_source_and_says_nothing(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the notice a bare resolve prints would fail here
        source = dataset_source(tmp_path / "shards" / "train")
    assert source._get_source_type() == "local"
    assert source.to_dict()["uri"] == str((tmp_path / "shards" / "train").resolve())
