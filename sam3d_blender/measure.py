"""Measuring imported objects against the photo (bpy): reprojection through the camera.

Each object's evaluated mesh is projected through a Blender camera with Blender's own
projection matrix and rasterised at pixel centres (``core/raster.py``), giving a
silhouette to compare with the object's mask (IoU). The batch report uses it; so do the
tests and benchmarks.

Pixels: u right, v down, origin at the image's top-left corner; depth in metres along the
camera's view axis.
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Vector

from .core.raster import rasterize_triangles


def camera_projection(
    context: bpy.types.Context, camera: bpy.types.Object
) -> tuple[np.ndarray, int, int]:
    """The 4x4 world -> clip matrix Blender itself uses for ``camera`` at the scene's render
    resolution, and that resolution (width, height) in pixels."""
    scene = context.scene
    r = scene.render
    w = int(r.resolution_x * r.resolution_percentage / 100)
    h = int(r.resolution_y * r.resolution_percentage / 100)
    depsgraph = context.evaluated_depsgraph_get()
    proj = camera.calc_matrix_camera(
        depsgraph, x=w, y=h, scale_x=r.pixel_aspect_x, scale_y=r.pixel_aspect_y
    )
    view = camera.matrix_world.inverted()
    return np.array(proj @ view, dtype=np.float64), w, h


def project_object(
    context: bpy.types.Context, obj: bpy.types.Object, camera: bpy.types.Object
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project ``obj``'s evaluated mesh (modifiers applied) through ``camera``.

    Returns (pixels (n, 2) float64 (u right, v down, origin at the image's top-left corner),
    triangles (m, 3) int64 vertex indices, depth (n,) metres along the camera's view axis).
    """
    depsgraph = context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(depsgraph)
    mesh = ev.to_mesh()
    try:
        mesh.calc_loop_triangles()
        n = len(mesh.vertices)
        co = np.empty(n * 3, dtype=np.float64)
        mesh.vertices.foreach_get("co", co)
        tris = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
        mesh.loop_triangles.foreach_get("vertices", tris)
    finally:
        ev.to_mesh_clear()
    co = co.reshape(n, 3)
    world = co @ np.array(obj.matrix_world, dtype=np.float64)[:3, :3].T + np.array(
        obj.matrix_world.translation
    )
    m, w, h = camera_projection(context, camera)
    hom = np.c_[world, np.ones(n)] @ m.T
    ndc = hom[:, :2] / hom[:, 3:4]
    px = np.stack([(ndc[:, 0] + 1) * 0.5 * w, (1 - ndc[:, 1]) * 0.5 * h], axis=1)
    view = np.array(camera.matrix_world.inverted(), dtype=np.float64)
    depth = -(np.c_[world, np.ones(n)] @ view.T)[:, 2]
    return px, tris.reshape(-1, 3), depth


def reprojected_silhouette(
    context: bpy.types.Context, obj: bpy.types.Object, camera: bpy.types.Object
) -> np.ndarray:
    """(H, W) bool, top row first, at the scene's render resolution: the pixels ``obj``
    covers seen through ``camera`` (its evaluated mesh, rasterised at pixel centres)."""
    px, tris, depth = project_object(context, obj, camera)
    r = context.scene.render
    w = int(r.resolution_x * r.resolution_percentage / 100)
    h = int(r.resolution_y * r.resolution_percentage / 100)
    front = (depth[tris] > 0).all(axis=1)  # triangles wholly in front of the camera
    return rasterize_triangles(px, tris[front], w, h)


def camera_depth(obj: bpy.types.Object, camera: bpy.types.Object) -> float:
    """Distance (metres) of ``obj``'s bounding-box centre along ``camera``'s view axis."""
    corners = [obj.matrix_world @ Vector(c) for c in obj.bound_box]
    centre = sum(corners, Vector()) / 8.0
    return -(camera.matrix_world.inverted() @ centre).z
