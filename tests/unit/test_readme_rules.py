"""The README's rules example, run through the pipeline as the README says it behaves."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from pkgedge.edge.ruleset import Ruleset
from pkgedge.rules import compile_rules
from support.memory import get, make_pipeline

README = Path(__file__).resolve().parents[2] / "README.md"
PAGE = [("content-type", "text/html"), ("cache-control", "max-age=600")]


def example() -> str:
    text = README.read_text()
    section = text[text.index("## Rules") :]
    match = re.search(r"```vcl\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


def test_the_readme_example_does_what_the_readme_says(tmp_path: Path) -> None:
    pipeline, origin = make_pipeline(tmp_path)
    pipeline.use_rules(Ruleset(compile_rules(example(), name="README.md"), 2))
    origin.add("/simple/six/", headers=PAGE, body=b"<html>six</html>")
    origin.add("/pypi/six/json", headers=PAGE, body=b"{}")

    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["renamed"] = await get(pipeline, "/simple/sklearn/", pkgedge_trace="1")
        out["other"] = await get(pipeline, "/simple/six/")
        out["json"] = [(await get(pipeline, "/pypi/six/json"))[0] for _ in range(31)]
        return out

    out = asyncio.run(go())
    status, headers, _ = out["renamed"]
    assert status == 301 and headers["location"] == "/simple/scikit-learn/"
    assert headers["pkgedge-trace"].startswith("recv:rule@5(if); recv:rule@7(redirect)")
    status, headers, _ = out["other"]
    assert status == 200 and headers["x-note"] == "six is pinned to 1.16 here"
    assert out["json"] == [200] * 30 + [429]


def test_the_readme_example_passes_its_playground_file(capsys: object) -> None:
    from pkgedge.cli import main

    path = README.parent / "examples" / "readme-rules.playground.json"
    assert json.loads(path.read_text())["config"] == example()  # the same configuration
    assert main(["playground", "test", str(path)]) == 0
