"""deploy/Dockerfile builds the web map with a Node that the bundler accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()


def test_the_web_bundle_is_built_with_a_node_that_vite_supports():
    lock = json.loads((ROOT / "api" / "web" / "package-lock.json").read_text())
    engines = lock["packages"]["node_modules/vite"]["engines"]["node"]  # "^20.19.0 || >=22.12.0"
    stage = re.search(r"^FROM node:(\d+)\S*\s+AS\s+(\w+)", DOCKERFILE, re.MULTILINE)
    assert stage, "no Node build stage"
    major, name = int(stage[1]), stage[2]
    # A major-only tag (node:22) follows the newest release of that line, so a range that
    # names the major is met, and so is ">=" an older major.
    ranges = re.findall(r"(\^|>=)\s*(\d+)\.", engines)
    assert any(int(m) == major or (op == ">=" and int(m) < major) for op, m in ranges), (
        f"node:{major} is outside vite's engines {engines!r}"
    )
    assert f"COPY --from={name} " in DOCKERFILE, "the bundle is not copied into the image"
    assert "nodejs" not in DOCKERFILE, "Debian bookworm's Node 18 is too old for Vite 7"
