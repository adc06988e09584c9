"""``python -m backend install``: the backend venv, from a pinned ordered plan.

``plan`` holds the pins and the order (pure data), ``platform`` the refusals made before
anything is installed, ``runner`` the execution (STEP/OK/SKIP/FAIL lines, logs, the import
check), ``cli`` the subcommand.
"""
