"""Reads and validates the stack config the Pulumi engine hands the program."""

from __future__ import annotations

from pulumi.runtime import config as runtime_config

from stacks.config import from_flat_config
from stacks.schema import PlatformConfig


def load_platform_config() -> PlatformConfig:
    """Validate the whole stack config before any resource is declared (raises ConfigError)."""
    flat = dict(runtime_config.CONFIG.get()) or runtime_config.get_config_env()
    return from_flat_config(flat, source=f"stack config ({len(flat)} keys)")
