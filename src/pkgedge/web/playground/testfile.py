"""``pkgedge playground test FILE``: run an exported playground in CI.

FILE is a playground document (JSON, or TOML when it ends in ``.toml``; see
:mod:`pkgedge.web.playground.doc`). Each request is printed with its status, cache state and
origin fetches, then its assertions (``ok`` / ``FAIL`` with the value seen). The exit status
is 1 when the configuration does not compile (the diagnostics are printed with the offending
source line underlined) or an assertion fails, 0 otherwise; a file that cannot be read or
used is a one-line error (exit 2, from the command's error handling).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pkgedge.config import EdgeSettings
from pkgedge.web.playground.doc import PlaygroundError, loads
from pkgedge.web.playground.engine import run_doc

Out = Callable[[str], None]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "es" if word.endswith("h") else "s")


def report(result: dict[str, Any], out: Out, err: Out, events: bool = False) -> int:
    """Print a run's results; the exit status (1: a compile error or a failed assertion)."""
    if result["diagnostics"]:
        for d in result["diagnostics"]:
            err(d["text"])
        err(f"the configuration does not compile ({_plural(len(result['diagnostics']), 'error')})")
        return 1
    held = failed = 0
    for i, r in enumerate(result["results"], 1):
        req, resp = r["request"], r["response"]
        fetches = _plural(len(r["fetches"]), "origin fetch")
        out(f"{i} {req['method']} {req['path']} -> {resp['status']} {r['cache_state']} ({fetches})")
        if r["error"]:
            out(f"    ERROR {r['error']}")
            failed += 1
        if events:
            for e in r["events"]:
                why = f" ({e['why']})" if e["why"] else ""
                out(f"    {e['phase']:8} {e['decision']}{why}")
            for line in r["log"]:
                out(f"    log      {line}")
        for a in r["asserts"]:
            if a["ok"]:
                held += 1
                out(f"    ok    {a['expr']}")
            else:
                failed += 1
                seen = a["error"] or f"got {json.dumps(a['actual'])}"
                out(f"    FAIL  {a['expr']}  ({seen})")
    out(f"{_plural(held, 'assertion')} held, {failed} failed")
    return 1 if failed else 0


def run_file(
    path: str, settings: EdgeSettings | None, out: Out, err: Out, events: bool = False
) -> int:
    """Load ``path``, run it through an isolated edge, print the results."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise PlaygroundError(f"cannot read {path}: {exc.strerror or exc}") from None
    doc = loads(raw, path)
    if doc.origin == "upstream" and settings is None:
        raise PlaygroundError(
            f"{path} uses the configured upstream: give --upstream URL (or --config FILE)"
        )
    result = asyncio.run(run_doc(doc, settings))
    return report(result, out, err, events)
