"""The dashboard: an aiohttp app and its one page, for ``oracle-sidecar dashboard``."""

from sidecar.dashboard.app import Settings, create_app

__all__ = ["Settings", "create_app"]
