"""Resources: where the Rosie home is. Everything else an asset needs comes from its run config."""


import dagster as dg

from dagster_project.lake import Lake
from rosie_pipeline.paths import RosieHome


class RosieHomeResource(dg.ConfigurableResource):
    """The ``ROSIE_HOME`` folder (landing/, lake/, models/, …); empty means ``$ROSIE_HOME`` or ``./.rosie``."""

    path: str = ""

    @property
    def home(self) -> RosieHome:
        return RosieHome.from_env(self.path or None)

    @property
    def lake(self) -> Lake:
        return Lake(self.home)
