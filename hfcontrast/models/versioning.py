"""Checkpoint config format version (copied into checkpoints: no hfcontrast imports)."""

from __future__ import annotations

CONFIG_FORMAT_VERSION = 1
SUPPORTED_CONFIG_VERSIONS = (1,)


def check_config_version(version: int | None, config_name: str) -> None:
    """Refuse checkpoints written with a config format this code cannot read, naming both versions."""
    if version is None or int(version) in SUPPORTED_CONFIG_VERSIONS:
        return
    raise ValueError(
        f"{config_name} has hfcontrast_config_version={version}, but this hfcontrast reads versions "
        f"{SUPPORTED_CONFIG_VERSIONS}; upgrade hfcontrast (pip install -U hfcontrast) to load this checkpoint"
    )
