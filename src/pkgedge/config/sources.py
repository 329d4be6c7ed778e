"""Where option values come from: the TOML file (its tables checked), the environment and the
flags, merged over the defaults (:func:`merge_options`); and the default upstream, the index
pip on this machine is configured to use (:func:`pip_index_url`)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from typing import Any

from pkgedge.config.options import Option
from pkgedge.errors import ConfigError


def pip_index_url() -> str:
    """The index pip on this machine is configured to use.

    Reads ``PIP_INDEX_URL``, then ``pip config get global.index-url``, then pip's own built-in
    default, so that no registry address is written in pkgedge itself.
    """
    env = os.environ.get("PIP_INDEX_URL")
    if env:
        return env
    for key in ("global.index-url", "install.index-url"):
        try:
            out = subprocess.run(
                [sys.executable, "-m", "pip", "config", "get", key],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            break
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    try:
        from pip._internal.models.index import PyPI  # pip's own default index

        return str(PyPI.simple_url)
    except Exception as exc:  # pip missing or its internals moved
        raise ConfigError("no --upstream given and pip's index could not be determined") from exc


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None


#: The tables of the TOML file: ``[edge]`` (:data:`EDGE_OPTIONS`), ``[origin]``
#: (``pkgedge.index.settings``) and ``[up]`` (``pkgedge.up``). Any other table is refused.
KNOWN_TABLES = ("edge", "origin", "up")


def _check_tables(data: Mapping[str, Any], config_file: str) -> None:
    unknown = sorted(k for k, v in data.items() if isinstance(v, dict) and k not in KNOWN_TABLES)
    if unknown:
        raise ConfigError(
            f"config file {config_file}: unknown table(s): {', '.join(unknown)} "
            f"(known: {', '.join(KNOWN_TABLES)})"
        )
    stray = sorted(k for k, v in data.items() if not isinstance(v, dict))
    if stray:
        raise ConfigError(
            f"config file {config_file}: key(s) outside any table: {', '.join(stray)} "
            f"(put them under [{'], ['.join(KNOWN_TABLES)}])"
        )


def merge_options(
    options: tuple[Option, ...],
    section: str,
    flags: Mapping[str, Any] | None,
    environ: Mapping[str, str],
    config_file: str | None,
) -> dict[str, Any]:
    """Values for ``options`` from defaults, the ``[section]`` table, environment and flags."""
    flags = dict(flags or {})
    file_values: dict[str, Any] = {}
    if config_file:
        data = read_toml(config_file)
        tables = any(isinstance(v, dict) for v in data.values())
        if tables:
            _check_tables(data, config_file)
        flat = section == "edge" and not tables
        table = data if flat else data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"config file {config_file}: [{section}] must be a table")
        file_values = table
        known = {o.name for o in options}
        unknown = sorted(
            k
            for k in (k.replace("-", "_") for k in file_values)
            if k not in known and not isinstance(file_values.get(k), dict)
        )
        if unknown:
            raise ConfigError(f"config file {config_file}: unknown option(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for opt in options:
        raw: Any = opt.default
        source = "default"
        fv = file_values.get(opt.name, file_values.get(opt.name.replace("_", "-")))
        if fv is not None:
            raw, source = fv, f"config file {config_file}"
        if environ.get(opt.env) not in (None, ""):
            raw, source = environ[opt.env], f"environment {opt.env}"
        if flags.get(opt.name) is not None:
            raw, source = flags[opt.name], f"flag {opt.flag}"
        if raw is None or source == "default":
            values[opt.name] = raw
            continue
        try:
            values[opt.name] = opt.parse(raw)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return values
