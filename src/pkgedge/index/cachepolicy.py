"""How the origin tells the edge to cache each response (pure).

Long edge TTLs in Surrogate-Control (with stale-while-revalidate and stale-if-error), short
client TTLs in Cache-Control, Surrogate-Key tags that purges name. Files are content-addressed:
their URLs never change, so they are immutable and never purged.
"""

from __future__ import annotations

ALL_PROJECTS = "all-projects"
FILE_HEADERS = {"Cache-Control": "max-age=31536000, immutable, public"}
NO_STORE = {"Cache-Control": "no-store"}


def project_key(project: str) -> str:
    return f"project/{project}"


def page_headers(edge_ttl: float, client_ttl: float, keys: list[str]) -> dict[str, str]:
    """Headers of an index page (simple API, JSON API, web page) tagged with ``keys``."""
    return {
        "Cache-Control": f"max-age={int(client_ttl)}, public",
        "Surrogate-Control": (
            f"max-age={int(edge_ttl)}, stale-while-revalidate=300, stale-if-error=86400"
        ),
        "Surrogate-Key": " ".join(keys),
    }


def keys_for_change(project: str) -> list[str]:
    """What to purge after any change to ``project``."""
    return [project_key(project), ALL_PROJECTS]
