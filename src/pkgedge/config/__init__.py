"""Frozen, validated settings for the edge (and the pieces the origin's and ``up``'s share).

One table (:data:`EDGE_OPTIONS`, ``options.py``) declares every option once: its type, default
and a one-line doc. From it come the command-line flags, the ``PKGEDGE_*`` environment
variables, the keys of the ``[edge]`` table of the TOML file, and ``pkgedge config show``.
Precedence, highest first: flag, environment, file, default (``sources.py``). Value parsers
are in ``values.py``; :class:`EdgeSettings` and its cross-option checks in ``edge.py``.
"""

from pkgedge.config.edge import EdgeSettings, build_edge_settings
from pkgedge.config.options import EDGE_OPTIONS, Option
from pkgedge.config.sources import KNOWN_TABLES, merge_options, pip_index_url, read_toml
from pkgedge.config.values import (
    parse_backends,
    parse_bool,
    parse_duration,
    parse_float,
    parse_grace,
    parse_hostport,
    parse_int,
    parse_rate,
    parse_size,
    parse_str,
    parse_url,
)

__all__ = [
    "EDGE_OPTIONS",
    "KNOWN_TABLES",
    "EdgeSettings",
    "Option",
    "build_edge_settings",
    "merge_options",
    "parse_backends",
    "parse_bool",
    "parse_duration",
    "parse_float",
    "parse_grace",
    "parse_hostport",
    "parse_int",
    "parse_rate",
    "parse_size",
    "parse_str",
    "parse_url",
    "pip_index_url",
    "read_toml",
]
