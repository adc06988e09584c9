"""What several operators share: waiting here or letting the timer finish, and job options.

:class:`WaitOrTimer` makes the decision "wait here, or hand the work to the timer" once,
for every operator that starts something slow (a job, the backend, the installer), the
way Blender's Extensions add-on does it in ``_ExtCmdMixIn``: an operator says how to
:meth:`~WaitOrTimer.begin` and how to :meth:`~WaitOrTimer.end` after waiting; the mixin's
``execute`` does the rest. It waits in ``bpy.app.background`` (scripts, pipelines) or when
the caller passes ``blocking=True``; otherwise it returns at once and :mod:`..timer`
finishes the work.

:class:`JobOptionOverrides` are the operator properties that override the panel's job
options when a script sets them; :class:`AssetOverrides` do the same for "Mark as asset".
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, fields

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty

from .. import finish, session, timer
from ..core.asset_metadata import AssetSettings
from ..core.job_manager import run_to_completion
from ..core.jobs import Job, JobRequest
from ..core.messages import InputError
from ..core.options import JobOptions
from ..importing.asset import settings_from_preferences

SKIP = {"SKIP_SAVE"}


@dataclass
class Pending:
    """Work an operator has begun: ``wait`` blocks until it is over; ``started`` is the
    report when the timer finishes it instead; ``job`` the job it waits for, if any."""

    wait: Callable[[], object]
    started: str
    job: Job | None = None


class WaitOrTimer:
    """Mixin for operators with a ``blocking`` property (see the module docstring).

    Subclasses define :meth:`begin` and, unless they wait for a job (then the default
    brings it into the scene through :func:`..finish.deliver`), :meth:`end`.
    """

    def wait_here(self) -> bool:
        """The decision, made once: wait in background mode, or when ``blocking`` says so."""
        if self.properties.is_property_set("blocking"):
            return bool(self.blocking)
        return bool(bpy.app.background)

    def begin(self, context: bpy.types.Context) -> Pending | set[str]:
        """Start the work; a set ends the operator at once (e.g. bad input, reported)."""
        raise NotImplementedError

    def end(self, context: bpy.types.Context, pending: Pending) -> set[str]:
        """After waiting: bring the job into the scene and report how it went."""
        assert pending.job is not None
        return self.deliver(context, pending.job)

    def deliver(self, context: bpy.types.Context, job: Job) -> set[str]:
        """Bring the finished ``job`` into the scene (:func:`..finish.deliver`), tell the
        artist how it went."""
        undo_step = "UNDO" not in self.bl_options  # else Blender pushes one for us
        outcome = finish.deliver(context, job, undo_step=undo_step)
        session.get().notify(outcome.level, outcome.text)
        self.report({outcome.level}, _report_text(outcome.level, outcome.text))
        return {"FINISHED"} if outcome.ok else {"CANCELLED"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            pending = self.begin(context)
        except InputError as exc:
            self.report({"ERROR"}, exc.sentence())
            return {"CANCELLED"}
        if isinstance(pending, set):
            return pending
        if self.wait_here():
            pending.wait()
            return self.end(context, pending)
        timer.ensure()
        timer.tick()
        self.report({"INFO"}, pending.started)
        return {"FINISHED"}

    # -- for operators that wait for a job ---------------------------------------------------

    def submit(self, request: JobRequest, timeout: float | None) -> Pending:
        """Queue ``request`` with the session; waiting means stepping the job manager until
        it ends (``timeout`` seconds at most: then it is cancelled)."""
        job = session.get().submit(request, self.wait_here())
        return self.pending_job(job, f"SAM 3D: generating '{request.label}'...", timeout)

    def pending_job(self, job: Job, started: str, timeout: float | None) -> Pending:
        manager = session.get().manager
        return Pending(
            lambda: run_to_completion(manager, job, timeout=timeout, on_update=_print_status()),
            started,
            job,
        )


def _report_text(level: str, text: str) -> str:
    return text if level == "ERROR" else f"SAM 3D: {text}"


def _print_status() -> Callable[[Job], None]:
    """Prints a waiting job's status line when it changes (background mode's progress)."""
    last = [""]

    def show(job: Job) -> None:
        line = job.status_line()
        if not job.finished and line != last[0]:
            last[0] = line
            print(f"SAM 3D: {line}", file=sys.stdout, flush=True)

    return show


class JobOptionOverrides:
    """Operator properties that override the panel's job options when a script sets them
    (``bpy.ops.sam3d.generate(seed=3, target_faces=5000)``); unset ones keep the panel's."""

    engine: StringProperty(name="Engine", description="auto, sam3d or preview", options=SKIP)
    seed: IntProperty(name="Seed", min=0, max=2**31 - 1, options=SKIP)
    quality: StringProperty(name="Quality", description="fast, balanced or high", options=SKIP)
    target_faces: IntProperty(
        name="Target faces", description="0 keeps every face", min=0, options=SKIP
    )
    texture_size: IntProperty(name="Texture size", min=256, max=4096, options=SKIP)
    bake: BoolProperty(name="Bake texture", options=SKIP)

    def job_options(self, context: bpy.types.Context) -> JobOptions:
        """The panel's options with the ones this call sets."""
        given = {
            f.name: getattr(self, f.name)
            for f in fields(JobOptions)
            if self.properties.is_property_set(f.name)
        }
        return context.scene.sam3d.job_options().updated(given)


class AssetOverrides:
    """Operator properties that override the panel's "Mark as asset" and its catalog when
    a script sets them (``bpy.ops.sam3d.generate(mark_asset=True, asset_catalog="Props")``);
    author and previews come from the add-on preferences."""

    mark_asset: BoolProperty(
        name="Mark as asset",
        description="Make the new objects assets (preview, catalog, tags, metadata)",
        options=SKIP,
    )
    asset_catalog: StringProperty(
        name="Asset catalog",
        description="Catalog path, e.g. Props/Chairs (empty: the panel's, else the preferences')",
        options=SKIP,
    )

    def asset_settings(self, context: bpy.types.Context) -> AssetSettings | None:
        """How the new objects become assets; None when they don't."""
        s = context.scene.sam3d
        given = self.properties.is_property_set
        if not (self.mark_asset if given("mark_asset") else s.mark_asset):
            return None
        return settings_from_preferences(self.asset_catalog or s.asset_catalog)
