"""Click-to-mask in the Image Editor: clicks and a box on the photo become a mask made by
the backend (``POST /masks``), shown as an overlay, accepted as the panel's mask.

* ``clicks``  - no bpy: one session's prompts, its request in a background thread, the
  answer; pixel frames stated there.
* ``overlay`` - bpy/gpu: drawing the mask, the clicks and the box over the photo.
* ``accept``  - bpy: a finished answer -> a Blender image; the panel's mask (or the photo
  to scene list).
* ``panel``   - bpy: the Image Editor's sidebar tab that starts the tool.
The modal operator is ``operators/masking.py`` (``bpy.ops.sam3d.click_mask``).
"""
