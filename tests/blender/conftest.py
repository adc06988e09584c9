"""The real-Blender tier: fixtures that provision Blender through ``scripts/blender.sh``,
build the extension zip with Blender's own CLI and install it the way an artist does.

When Blender cannot run here (not root, no chroot, ...), ``scripts/blender.sh`` exits
with 77 and says why; every test of this tier is then skipped with that reason (shown in
pytest's summary, ``-ra``), never silently.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.blender.blender_run import (
    IN_BLENDER,
    REPO,
    UNAVAILABLE,
    provision,
    run_blender,
    screenshots_dir,
)


@pytest.fixture(scope="session")
def real_blender() -> dict:
    """Provision (once, cached outside the checkout) and return ``{"version": (4, 3, 2),
    "line": ...}``; skip the tier with the script's reason when Blender cannot run here."""
    rc, out, err, seconds = provision()
    if rc == UNAVAILABLE:
        reason = next(
            (ln for ln in err.splitlines() if "unavailable:" in ln), err.strip() or "unavailable"
        )
        print(f"\nreal-Blender tier skipped: {reason}")
        pytest.skip(reason)
    assert rc == 0, f"scripts/blender.sh --provision failed ({rc}):\n{err[-3000:]}"
    line = next(ln for ln in out.splitlines() if "ready:" in ln)
    version = tuple(int(x) for x in line.split("Blender ", 1)[1].split()[0].split("."))
    print(f"\n{line.strip()} (provisioning/check took {seconds:.1f} s)")
    return {"version": version, "line": line}


@pytest.fixture(scope="session")
def extension_zip(real_blender, tmp_path_factory) -> Path:
    """The extension zip, built and validated by Blender's own CLI from this checkout."""
    dist = tmp_path_factory.mktemp("dist")
    proc = run_blender(
        ["--command", "extension", "build", "--source-dir", str(REPO), "--output-dir", str(dist)],
        log=dist / "build.log",
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    zips = list(dist.glob("*.zip"))
    assert len(zips) == 1, (zips, proc.stdout[-2000:])
    proc = run_blender(["--command", "extension", "validate", str(zips[0])], log=dist / "v.log")
    assert proc.returncode == 0 and "Success" in proc.stdout, proc.stdout[-3000:]
    return zips[0]


@pytest.fixture(scope="session")
def installed(extension_zip, tmp_path_factory) -> dict:
    """A Blender user folder with the zip installed by Blender (Get Extensions > Install
    from Disk) and saved preferences. Returns the install's facts plus ``user_dir``."""
    user = tmp_path_factory.mktemp("blender-user")
    result = user.parent / f"{user.name}-install.json"
    proc = run_blender(
        [
            "--background",
            "--python-exit-code",
            "3",
            "--python",
            str(IN_BLENDER / "install.py"),
            "--",
            "--zip",
            str(extension_zip),
            "--result",
            str(result),
        ],
        user_dir=user,
        log=user.parent / f"{user.name}-install.log",
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    facts = json.loads(result.read_text())
    assert "error" not in facts, facts["error"]
    with zipfile.ZipFile(extension_zip) as z:
        facts["zip_names"] = z.namelist()
    facts["user_dir"] = str(user)
    return facts


@pytest.fixture
def user_dir(installed, tmp_path) -> Path:
    """A copy of the installed user folder for one test (its own add-on cache and prefs)."""
    dest = tmp_path / "blender-user"
    shutil.copytree(installed["user_dir"], dest, symlinks=True)
    return dest


@pytest.fixture
def shots(request) -> Path:
    """``out/blender/<test name>/``, emptied: the test's screenshots and logs for people."""
    return screenshots_dir(request.node.name)
