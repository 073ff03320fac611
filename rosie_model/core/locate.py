"""Where a model folder is: a path, a downloaded MLflow model holding one, or a registry URI.

``models:/rosie@champion`` and ``models:/rosie/3`` are looked up in the home's MLflow store; artifacts
on local disk are read in place, remote ones fetched once into the home's model cache. Every reader of
a model (chat, server, evaluation, pyfunc) resolves its source here, so they all accept the same names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rosie_model.core.errors import ModelNotFound
from rosie_model.core.layout import ModelFolder, model_cache, tracking_uri


@dataclass(frozen=True)
class LocatedModel:
    folder: Path
    #: How to name it to a person: the registry URI with its version (``models:/rosie@champion (version 3)``)
    #: or the path as given.
    label: str
    #: The registry names it answers to (``rosie@champion``, ``rosie/3``); none for a path.
    registry_names: tuple[str, ...] = ()


def resolve_model(source: str | Path) -> LocatedModel:
    """The model folder of a path (a model folder, or a downloaded MLflow model holding one) or of a registry
    URI ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` of the home's MLflow store."""
    text = str(source)
    if text.startswith("models:/"):
        folder, name, version = _registry_folder(text)
        asked = text.removeprefix("models:/")
        label = text if asked == f"{name}/{version}" else f"{text} (version {version})"
        return LocatedModel(folder, label, tuple(dict.fromkeys((asked, f"{name}/{version}"))))
    folder = Path(text).expanduser()
    return LocatedModel(pyfunc_model_folder(folder) or folder, text)


def pyfunc_model_folder(root: Path) -> Path | None:
    """The Rosie model folder inside a logged MLflow chat model (its ``model_dir`` artifact), if any."""
    import yaml

    try:
        flavor = yaml.safe_load((root / "MLmodel").read_text(encoding="utf-8"))["flavors"]["python_function"]
        inner = root / flavor["artifacts"]["model_dir"]["path"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return inner if ModelFolder(inner).config.is_file() else None


def _registry_folder(uri: str) -> tuple[Path, str, str]:
    """(model folder, registered name, version) of a registry URI."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    match = re.fullmatch(r"models:/([^/@]+)(?:@([\w-]+)|/(\d+))", uri)
    if not match:
        raise ModelNotFound(f"{uri!r} is not a registry URI; use models:/NAME@ALIAS or models:/NAME/VERSION")
    name, alias, number = match.groups()
    # a client of its own, not mlflow.set_tracking_uri: that would also set MLFLOW_TRACKING_URI for the whole
    # process and every process it starts (a chat that starts a trainer would send it to this store)
    uri = tracking_uri()
    client = MlflowClient(uri)
    try:
        registered = client.get_registered_model(name)
    except MlflowException as exc:
        raise ModelNotFound(f"no registered model {name!r} in {uri} (train one with `make demo` "
                            "or `rosie run`)") from exc
    if alias and alias not in registered.aliases:
        known = ", ".join(f"@{a} (version {v})" for a, v in sorted(registered.aliases.items())) or "none"
        raise ModelNotFound(f"model {name!r} has no alias @{alias}; its aliases: {known}")
    version = registered.aliases[alias] if alias else number
    try:
        location = client.get_model_version_download_uri(name, str(version))
    except MlflowException as exc:
        raise ModelNotFound(f"model {name!r} has no version {version}") from exc
    found = pyfunc_model_folder(Path(location.removeprefix("file://")))
    if found is None:  # artifacts elsewhere (a server, object storage): fetched once into the home's cache
        cache = model_cache() / f"{name}-{version}"
        if pyfunc_model_folder(cache) is None:
            try:
                mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(cache), tracking_uri=uri)
            except MlflowException as exc:
                raise ModelNotFound(f"cannot fetch models:/{name}/{version} from {location}: {exc}") from exc
        found = pyfunc_model_folder(cache)
    if found is None:
        raise ModelNotFound(f"models:/{name}/{version} holds no Rosie model folder (not a Rosie chat model?)")
    return found, name, str(version)
