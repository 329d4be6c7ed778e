"""Where the origin finds the edge it purges: configured, or recorded by ``pkgedge up``."""

from __future__ import annotations

import json
from pathlib import Path

from pkgedge.index.settings import OriginSettings

EDGE_FILE = "edge.json"  # written by `pkgedge up`: where the edge's admin API is


def locate_edge(data_dir: str) -> tuple[str, str] | None:
    """The edge admin (URL, token) that ``pkgedge up`` recorded in the data directory."""
    try:
        data = json.loads((Path(data_dir) / EDGE_FILE).read_text())
        return str(data["admin"]), str(data["token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def edge_link(settings: OriginSettings) -> OriginSettings:
    """Fill in the edge admin URL and token from ``DATA_DIR/edge.json`` when not configured."""
    if settings.edge_admin:
        return settings
    try:
        data = json.loads((Path(settings.data_dir) / EDGE_FILE).read_text())
    except (OSError, ValueError):
        return settings
    return settings.replace(edge_admin=data.get("admin"), edge_admin_token=data.get("token"))
