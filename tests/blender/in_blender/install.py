"""Install the extension zip the way Blender's "Install from Disk..." does, into the
``user_default`` repository of this Blender user folder, and save the preferences.

    blender --background --python install.py -- --zip sam3d-X.zip --result R.json
"""

from __future__ import annotations

import os
import sys

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ADDON, Facts, parse_args, run_background  # noqa: E402


def install(facts: Facts, zip_path: str) -> None:
    result = bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True
    )
    facts["install_result"] = sorted(result)
    prefs = bpy.context.preferences
    facts["enabled"] = ADDON in prefs.addons
    facts["addons"] = sorted(a.module for a in prefs.addons)
    facts["operators"] = sorted(name for name in dir(bpy.ops.sam3d))
    mod = sys.modules.get(ADDON)
    facts["installed_at"] = os.path.dirname(mod.__file__) if mod else None
    if facts["installed_at"]:
        root = facts["installed_at"]
        facts["installed_files"] = sorted(
            os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
        )
    # The splash screen would cover the view in the GUI tests: the artist's own preference.
    prefs.view.show_splash = False
    bpy.ops.wm.save_userpref()


def main() -> None:
    args = parse_args(lambda p: p.add_argument("--zip", required=True))
    facts = Facts(args.result)
    run_background(lambda f: install(f, args.zip), facts)


main()
