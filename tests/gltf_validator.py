"""Run the Khronos glTF validator (npm package ``gltf-validator``) from pytest.

``validate(path)`` returns the validator's JSON report; ``assert_valid(path)`` fails the test
with the listed errors when ``numErrors`` > 0. The package is installed on demand with npm
into ``tests/.node/`` (git-ignored); the test is skipped, with the reason, only when node or
npm is missing or the install fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

NODE_DIR = Path(__file__).resolve().parent / ".node"
PACKAGE = "gltf-validator@2.0.0-dev.3.10"

_SCRIPT = r"""
const fs = require('fs');
const validator = require('gltf-validator');
const path = process.argv[2];
const bytes = new Uint8Array(fs.readFileSync(path));
validator.validateBytes(bytes, {maxIssues: 200, writeTimestamp: false})
  .then((report) => { process.stdout.write(JSON.stringify(report)); })
  .catch((err) => { process.stderr.write(String(err)); process.exit(2); });
"""


def _ensure_installed() -> Path:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("the glTF validator needs node and npm (not found on PATH)")
    module = NODE_DIR / "node_modules" / "gltf-validator"
    if not module.exists():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR), PACKAGE],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0 or not module.exists():
            pytest.skip(f"npm could not install {PACKAGE}: {proc.stderr.strip()[-500:]}")
    script = NODE_DIR / "validate.js"
    if not script.exists() or script.read_text() != _SCRIPT:
        script.write_text(_SCRIPT)
    return script


def validate(path: Path | str) -> dict[str, Any]:
    """The Khronos validator's report (dict) for the glTF/GLB file at ``path``."""
    script = _ensure_installed()
    proc = subprocess.run(
        [shutil.which("node") or "node", str(script), str(Path(path).resolve())],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=NODE_DIR,
    )
    if proc.returncode != 0:
        raise AssertionError(f"glTF validator failed to run on {path}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def assert_valid(path: Path | str, allow_warnings: bool = True) -> dict[str, Any]:
    """Fail unless the validator reports zero errors (and zero warnings if not allowed)."""
    report = validate(path)
    issues = report.get("issues", {})
    bad = [m for m in issues.get("messages", []) if m.get("severity") == 0]
    if not allow_warnings:
        bad += [m for m in issues.get("messages", []) if m.get("severity") == 1]
    if issues.get("numErrors", 0) or bad:
        lines = [f"{m.get('code')}: {m.get('message')} at {m.get('pointer')}" for m in bad[:30]]
        raise AssertionError(f"glTF validator found problems in {path}:\n" + "\n".join(lines))
    return report
