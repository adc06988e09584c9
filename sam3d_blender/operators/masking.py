"""``sam3d.click_mask``: click-to-mask in the Image Editor showing the photo.

A click adds a point on the object, Shift+click one on the background, a drag draws a
box; after each, the backend makes the mask (in a background thread, through the same
client for a local or a remote backend) and it is drawn over the photo. Enter accepts it
as the panel's mask (``target`` "PANEL") or adds it to the photo-to-scene list
("SCENE_LIST"); Esc or right-click cancels; Backspace or Ctrl+Z takes back the last
click. Accepting is one undo step; cancelling changes nothing. Navigation (wheel, middle
mouse) passes through.
"""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty

from .. import job_inputs, session, timer
from ..core.client import BackendClient
from ..core.messages import InputError, describe
from ..masking import accept as accepting
from ..masking.clicks import DRAG_PIXELS, ClickMask, view_to_pixel
from ..masking.overlay import OverlayState, draw

HINT = (
    "Click: object  ·  Shift+click: background  ·  Drag: box  ·  Backspace: undo click  ·  "
    "Enter: use mask  ·  Esc: cancel"
)

#: The running tool, for scripts and tests to look at (None when no tool runs).
active: SAM3D_OT_click_mask | None = None


def backend_client() -> BackendClient | None:
    """The backend's client once it is ready; starts it (without waiting) when needed.
    Main thread only."""
    backend = session.get().current_backend()
    c = backend.client()
    if c is None:
        backend.ensure_started()
        timer.ensure()
    return c


class SAM3D_OT_click_mask(bpy.types.Operator):
    """Click the object in the photo to make its mask (Shift+click: background, drag: box,
    Enter: use it, Esc: cancel)"""

    bl_idname = "sam3d.click_mask"
    bl_label = "Click to mask"
    bl_options = {"REGISTER", "UNDO"}

    target: EnumProperty(
        name="Use as",
        items=[
            ("PANEL", "Panel's mask", "The SAM 3D panel's image and mask"),
            ("SCENE_LIST", "Photo to scene", "One more mask of the photo-to-scene list"),
        ],
        default="PANEL",
    )
    engine: EnumProperty(
        name="Method",
        items=[
            ("auto", "Auto", "SAM 2 when the backend has it, else GrabCut"),
            ("grabcut", "GrabCut", "OpenCV GrabCut: no model weights, any machine"),
            ("sam2", "SAM 2", "Segment Anything 2 (backend with SAM 2 weights)"),
        ],
        default="auto",
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        space = context.space_data
        return (
            context.area is not None
            and context.area.type == "IMAGE_EDITOR"
            and space.image is not None
            and space.image.size[0] > 0
        )

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        global active
        photo = context.space_data.image
        try:
            data = job_inputs.image_bytes(photo)
        except InputError as exc:
            self.report({"ERROR"}, describe(exc.code, str(exc)))
            return {"CANCELLED"}
        self.photo_name = photo.name
        self.area = context.area
        self.region = next(r for r in context.area.regions if r.type == "WINDOW")
        self.clicks = ClickMask(data, tuple(photo.size), self.engine)
        self.overlay = OverlayState(self.area, tuple(photo.size))
        self.preview: bpy.types.Image | None = None
        self.press: tuple[float, float] | None = None
        self._handle = bpy.types.SpaceImageEditor.draw_handler_add(
            draw, (self.overlay,), "WINDOW", "POST_PIXEL"
        )
        self._timer = context.window_manager.event_timer_add(0.05, window=context.window)
        context.window_manager.modal_handler_add(self)
        context.workspace.status_text_set(HINT)
        self.area.header_text_set("SAM 3D click to mask: " + HINT)
        active = self
        return {"RUNNING_MODAL"}

    # -- events ---------------------------------------------------------------------------
    def _region_xy(self, event: bpy.types.Event) -> tuple[float, float] | None:
        r = self.region
        x, y = event.mouse_x - r.x, event.mouse_y - r.y
        if 0 <= x < r.width and 0 <= y < r.height:
            return (x, y)
        return None

    def _pixel(self, xy: tuple[float, float]) -> tuple[float, float]:
        u, v = self.region.view2d.region_to_view(*xy)
        return view_to_pixel(u, v, self.clicks.size)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        try:
            return self._modal(context, event)
        except Exception as exc:  # a modal that raises would stay half-finished
            self._finish(context)
            self.report({"ERROR"}, f"Click to mask stopped: {exc}")
            return {"CANCELLED"}

    def _modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        t, v = event.type, event.value
        if t == "TIMER":
            self.poll_backend()
            return {"PASS_THROUGH"}
        if t in {"ESC", "RIGHTMOUSE"} and v == "PRESS":
            self._finish(context)
            self.report({"INFO"}, "Click to mask cancelled.")
            return {"CANCELLED"}
        if t in {"RET", "NUMPAD_ENTER"} and v == "PRESS":
            return self._accept(context)
        if (t == "BACK_SPACE" or (t == "Z" and event.ctrl)) and v == "PRESS":
            if self.clicks.undo():
                self._prompts_changed()
            return {"RUNNING_MODAL"}
        if t == "LEFTMOUSE":
            xy = self._region_xy(event)
            if v == "PRESS" and xy is not None:
                self.press = xy
                return {"RUNNING_MODAL"}
            if v == "RELEASE" and self.press is not None:
                start, self.press = self.press, None
                self.overlay.drag = None
                end = xy or start
                if max(abs(end[0] - start[0]), abs(end[1] - start[1])) > DRAG_PIXELS:
                    changed = self.clicks.set_box(*self._pixel(start), *self._pixel(end))
                else:
                    changed = self.clicks.add_point(*self._pixel(start), not event.shift)
                if changed:
                    self._prompts_changed()
                return {"RUNNING_MODAL"}
        if t == "MOUSEMOVE" and self.press is not None:
            xy = self._region_xy(event) or self.press
            self.overlay.drag = (*self.press, *xy)
            self.area.tag_redraw()
            return {"RUNNING_MODAL"}
        return {"PASS_THROUGH"}

    def _prompts_changed(self) -> None:
        self.overlay.points = list(self.clicks.points)
        self.overlay.box = self.clicks.box
        if not self.clicks.has_prompt:
            self.overlay.set_rgba(None)
        self.poll_backend()
        self.area.tag_redraw()

    def poll_backend(self) -> None:
        """Advance the exchange; a new answer becomes the preview image and overlay."""
        if self.clicks.step(backend_client):
            if self.clicks.error is not None:
                e = self.clicks.error
                self.report({"WARNING"}, describe(e.code, e.message))
            elif self.clicks.shown is not None:
                self.preview = accepting.load_mask_image(self.clicks.shown, self.preview)
                self.overlay.set_rgba(accepting.overlay_rgba(accepting.mask_of(self.preview)))
            self.area.tag_redraw()

    def _accept(self, context: bpy.types.Context) -> set[str]:
        if self.preview is None or not self.clicks.has_prompt:
            self.report({"WARNING"}, "No mask yet: click the object first.")
            return {"RUNNING_MODAL"}
        photo = bpy.data.images.get(self.photo_name)
        preview, self.preview = self.preview, None
        self._finish(context)
        if photo is None:
            self.report({"ERROR"}, describe("no_image"))
            return {"CANCELLED"}
        mask = accepting.accept(context, preview, photo, self.target)
        where = "the SAM 3D panel's mask" if self.target == "PANEL" else "a photo-to-scene mask"
        self.report({"INFO"}, f"'{mask.name}' is now {where}.")
        return {"FINISHED"}

    def _finish(self, context: bpy.types.Context) -> None:
        global active
        active = None
        bpy.types.SpaceImageEditor.draw_handler_remove(self._handle, "WINDOW")
        context.window_manager.event_timer_remove(self._timer)
        context.workspace.status_text_set(None)
        self.area.header_text_set(None)
        if self.preview is not None and self.preview.name in bpy.data.images:
            bpy.data.images.remove(self.preview)
        self.preview = None
        self.clicks.close()
        self.area.tag_redraw()


classes = (SAM3D_OT_click_mask,)
