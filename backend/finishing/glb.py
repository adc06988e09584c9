"""The GLB format of our objects: its writer and its reader, together (glTF 2.0 JSON + one
binary buffer, written and read here with numpy).

Conventions (others depend on these):

* The mesh is in the OBJECT frame (``Reconstruction.vertices``): glTF +Y up, metres. The pose
  is NOT baked into the vertices and the single mesh node carries no transform.
* One scene, one node, one mesh, one primitive, one material named ``SAM3D_Material``
  (``pbrMetallicRoughness``: ``metallicFactor`` 0, ``roughnessFactor`` 1; its
  ``baseColorTexture`` when baked - an sRGB PNG, clamp-to-edge, trilinear - else the
  primitive's ``COLOR_0``, linear float RGB as glTF requires, converted from our sRGB).
* The mesh NODE's ``extras`` hold ``{"sam3d": {"pose": Pose.to_dict(), "intrinsics":
  Intrinsics.to_dict() | null, "stats": {...}, "engine": str | null}}``.
* Attributes: ``POSITION`` (float32, with min/max), ``NORMAL`` (float32 unit), and
  ``TEXCOORD_0`` (float32, (0, 0) = image top-left) or ``COLOR_0``; ``uint32`` indices.

``export_scene_glb`` combines finished object GLBs into one scene in the CAMERA frame
(glTF camera convention: looks down -Z, +Y up - the same as ``backend.reconstruction``).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from backend.reconstruction import Intrinsics, Pose

MATERIAL_NAME = "SAM3D_Material"
GENERATOR = "SAM 3D for Blender finishing"

_GLB_MAGIC = 0x46546C67  # b"glTF"
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942

# glTF enums
_FLOAT = 5126
_UINT = 5125
_ARRAY_BUFFER = 34962
_ELEMENT_ARRAY_BUFFER = 34963
_LINEAR = 9729
_LINEAR_MIPMAP_LINEAR = 9987
_CLAMP_TO_EDGE = 33071


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] -> linear [0, 1] (IEC 61966-2-1)."""
    c = np.clip(np.asarray(c, np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """Linear [0, 1] -> sRGB-encoded [0, 1]."""
    c = np.clip(np.asarray(c, np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


class _BufferBuilder:
    """Accumulates aligned bufferViews/accessors into one binary buffer."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.length = 0
        self.buffer_views: list[dict[str, Any]] = []
        self.accessors: list[dict[str, Any]] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        pad = (-self.length) % 4
        if pad:
            self.chunks.append(b"\x00" * pad)
            self.length += pad
        bv: dict[str, Any] = {"buffer": 0, "byteOffset": self.length, "byteLength": len(data)}
        if target is not None:
            bv["target"] = target
        self.chunks.append(data)
        self.length += len(data)
        self.buffer_views.append(bv)
        return len(self.buffer_views) - 1

    def accessor(self, array: np.ndarray, kind: str, target: int, minmax: bool = False) -> int:
        arr = np.ascontiguousarray(array)
        comp = _UINT if arr.dtype == np.uint32 else _FLOAT
        bv = self.view(arr.tobytes(), target)
        acc: dict[str, Any] = {
            "bufferView": bv,
            "componentType": comp,
            "count": int(arr.shape[0]) if kind != "SCALAR" else int(arr.size),
            "type": kind,
        }
        if minmax:
            flat = arr.reshape(arr.shape[0], -1)
            acc["min"] = [float(x) for x in flat.min(axis=0)]
            acc["max"] = [float(x) for x in flat.max(axis=0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def data(self) -> bytes:
        blob = b"".join(self.chunks)
        return blob + b"\x00" * ((-len(blob)) % 4)


def pack_glb(gltf: dict[str, Any], binary: bytes) -> bytes:
    """GLB container bytes for a glTF JSON dict and its BIN chunk (padded here)."""
    js = json.dumps(gltf, separators=(",", ":"), allow_nan=False).encode("utf-8")
    js += b" " * ((-len(js)) % 4)
    binary = binary + b"\x00" * ((-len(binary)) % 4)
    total = 12 + 8 + len(js) + (8 + len(binary) if binary else 0)
    out = [struct.pack("<III", _GLB_MAGIC, 2, total), struct.pack("<II", len(js), _CHUNK_JSON), js]
    if binary:
        out += [struct.pack("<II", len(binary), _CHUNK_BIN), binary]
    return b"".join(out)


def read_glb(path: Path | str) -> tuple[dict[str, Any], bytes]:
    """(glTF JSON dict, BIN chunk bytes) of a GLB file; raises ValueError if it is not one."""
    raw = Path(path).read_bytes()
    if len(raw) < 20:
        raise ValueError(f"{path}: too short for a GLB")
    magic, version, total = struct.unpack_from("<III", raw, 0)
    if magic != _GLB_MAGIC or version != 2:
        raise ValueError(f"{path}: not a glTF 2.0 binary")
    off = 12
    gltf: dict[str, Any] | None = None
    binary = b""
    while off + 8 <= min(total, len(raw)):
        length, ctype = struct.unpack_from("<II", raw, off)
        body = raw[off + 8 : off + 8 + length]
        if ctype == _CHUNK_JSON:
            gltf = json.loads(body.decode("utf-8"))
        elif ctype == _CHUNK_BIN:
            binary = bytes(body)
        off += 8 + length
    if gltf is None:
        raise ValueError(f"{path}: GLB has no JSON chunk")
    return gltf, binary


def _json_safe(x: Any) -> Any:
    """Recursively convert numpy scalars/arrays and non-finite floats into JSON values."""
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return _json_safe(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, (np.bool_,)):
        return bool(x)
    return x


def write_object_glb(
    out_path: Path | str,
    positions: np.ndarray,
    normals: np.ndarray,
    faces: np.ndarray,
    *,
    uv: np.ndarray | None = None,
    texture_png: bytes | None = None,
    colors_srgb: np.ndarray | None = None,
    extras: dict[str, Any] | None = None,
    name: str = "SAM3D_Object",
    double_sided: bool = False,
) -> int:
    """Write one textured (``uv`` + ``texture_png``) or vertex-coloured (``colors_srgb``) mesh.

    ``positions`` (n, 3) metres, object frame; ``normals`` (n, 3) unit; ``faces`` (m, 3)
    CCW; ``uv`` (n, 2) glTF texcoords; ``colors_srgb`` (n, 3) sRGB [0, 1]. Returns the file
    size in bytes.
    """
    pos = np.asarray(positions, np.float32)
    nrm = np.asarray(normals, np.float32)
    lens = np.linalg.norm(nrm, axis=1, keepdims=True)
    nrm = np.where(lens > 1e-6, nrm / np.maximum(lens, 1e-12), np.array([0, 1, 0], np.float32))
    nrm = nrm.astype(np.float32)
    idx = np.asarray(faces, np.uint32).reshape(-1)
    bb = _BufferBuilder()
    attributes: dict[str, int] = {
        "POSITION": bb.accessor(pos, "VEC3", _ARRAY_BUFFER, minmax=True),
        "NORMAL": bb.accessor(nrm, "VEC3", _ARRAY_BUFFER),
    }
    pbr: dict[str, Any] = {
        "baseColorFactor": [1.0, 1.0, 1.0, 1.0],
        "metallicFactor": 0.0,
        "roughnessFactor": 1.0,
    }
    gltf: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": GENERATOR},
        "scene": 0,
        "scenes": [{"name": "Scene", "nodes": [0]}],
    }
    if uv is not None and texture_png is not None:
        attributes["TEXCOORD_0"] = bb.accessor(np.asarray(uv, np.float32), "VEC2", _ARRAY_BUFFER)
        img_view = bb.view(texture_png)
        gltf["images"] = [
            {"name": f"{name}_basecolor", "bufferView": img_view, "mimeType": "image/png"}
        ]
        gltf["samplers"] = [
            {
                "magFilter": _LINEAR,
                "minFilter": _LINEAR_MIPMAP_LINEAR,
                "wrapS": _CLAMP_TO_EDGE,
                "wrapT": _CLAMP_TO_EDGE,
            }
        ]
        gltf["textures"] = [{"sampler": 0, "source": 0}]
        pbr["baseColorTexture"] = {"index": 0, "texCoord": 0}
    elif colors_srgb is not None:
        lin = srgb_to_linear(colors_srgb).astype(np.float32)
        attributes["COLOR_0"] = bb.accessor(lin, "VEC3", _ARRAY_BUFFER)
    index_acc = bb.accessor(idx, "SCALAR", _ELEMENT_ARRAY_BUFFER)
    gltf["materials"] = [
        {"name": MATERIAL_NAME, "pbrMetallicRoughness": pbr, "doubleSided": bool(double_sided)}
    ]
    gltf["meshes"] = [
        {
            "name": name,
            "primitives": [
                {"attributes": attributes, "indices": index_acc, "material": 0, "mode": 4}
            ],
        }
    ]
    node: dict[str, Any] = {"name": name, "mesh": 0}
    if extras is not None:
        node["extras"] = _json_safe(extras)
    gltf["nodes"] = [node]
    gltf["accessors"] = bb.accessors
    gltf["bufferViews"] = bb.buffer_views
    binary = bb.data()
    gltf["buffers"] = [{"byteLength": len(binary)}]
    blob = pack_glb(gltf, binary)
    Path(out_path).write_bytes(blob)
    return len(blob)


def _pose_trs(pose: Pose) -> dict[str, list[float]]:
    """glTF node TRS equal to the pose (T * R * S, as ``p_cam = R @ (s * p) + t``)."""
    q = np.asarray(pose.rotation, np.float64).reshape(4)
    q = q / np.linalg.norm(q)
    return {
        "translation": [float(x) for x in np.asarray(pose.translation, float).reshape(3)],
        "rotation": [float(q[1]), float(q[2]), float(q[3]), float(q[0])],  # glTF: x, y, z, w
        "scale": [float(x) for x in np.asarray(pose.scale, float).reshape(3)],
    }


def _offset_indices(obj: Any, key: str, offset: int) -> None:
    if isinstance(obj, dict) and key in obj and isinstance(obj[key], int):
        obj[key] += offset


def export_scene_glb(
    parts: list[tuple[str, Path]], camera: Intrinsics | None, camera_name: str, out_path: Path
) -> None:
    """Combine finished object GLBs ``(name, path)`` into one scene GLB in the CAMERA frame.

    Each part becomes one node named ``name`` carrying its mesh and extras, placed by the
    pose read from its GLB's node extras (``extras.sam3d.pose``; identity when absent).
    With ``camera`` a perspective camera node ``camera_name`` sits at the origin with no
    rotation (glTF cameras look down -Z with +Y up, as our camera frame does), ``yfov``
    from the vertical field of view and ``aspectRatio`` = width / height.
    """
    out: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": GENERATOR},
        "scene": 0,
        "scenes": [{"name": "Scene", "nodes": []}],
        "nodes": [],
    }
    lists = ["accessors", "bufferViews", "images", "samplers", "textures", "materials", "meshes"]
    for k in lists:
        out[k] = []
    blob = bytearray()
    for name, path in parts:
        g, binary = read_glb(path)
        pad = (-len(blob)) % 4
        blob += b"\x00" * pad
        base = len(blob)
        blob += binary
        off = {k: len(out[k]) for k in lists}
        for bv in g.get("bufferViews", []):
            bv = dict(bv)
            bv["buffer"] = 0
            bv["byteOffset"] = int(bv.get("byteOffset", 0)) + base
            out["bufferViews"].append(bv)
        for acc in g.get("accessors", []):
            acc = dict(acc)
            _offset_indices(acc, "bufferView", off["bufferViews"])
            out["accessors"].append(acc)
        for img in g.get("images", []):
            img = dict(img)
            _offset_indices(img, "bufferView", off["bufferViews"])
            out["images"].append(img)
        out["samplers"].extend(dict(s) for s in g.get("samplers", []))
        for tex in g.get("textures", []):
            tex = dict(tex)
            _offset_indices(tex, "sampler", off["samplers"])
            _offset_indices(tex, "source", off["images"])
            out["textures"].append(tex)
        for mat in g.get("materials", []):
            mat = json.loads(json.dumps(mat))
            for tex_key in ("baseColorTexture", "metallicRoughnessTexture"):
                _offset_indices(
                    mat.get("pbrMetallicRoughness", {}).get(tex_key), "index", off["textures"]
                )
            for tex_key in ("normalTexture", "occlusionTexture", "emissiveTexture"):
                _offset_indices(mat.get(tex_key), "index", off["textures"])
            out["materials"].append(mat)
        for mesh in g.get("meshes", []):
            mesh = json.loads(json.dumps(mesh))
            for prim in mesh.get("primitives", []):
                prim["attributes"] = {
                    k: v + off["accessors"] for k, v in prim["attributes"].items()
                }
                _offset_indices(prim, "indices", off["accessors"])
                _offset_indices(prim, "material", off["materials"])
            out["meshes"].append(mesh)
        src_nodes = g.get("nodes", [])
        roots = g.get("scenes", [{}])[g.get("scene", 0)].get("nodes", list(range(len(src_nodes))))
        for r in roots:
            src = src_nodes[r]
            extras = src.get("extras", {})
            pose_d = extras.get("sam3d", {}).get("pose") if isinstance(extras, dict) else None
            pose = Pose.from_dict(pose_d) if pose_d else Pose()
            node: dict[str, Any] = {"name": name if len(roots) == 1 else f"{name}_{r}"}
            if "mesh" in src:
                node["mesh"] = src["mesh"] + off["meshes"]
            node.update(_pose_trs(pose))
            if extras:
                node["extras"] = extras
            out["nodes"].append(node)
            out["scenes"][0]["nodes"].append(len(out["nodes"]) - 1)
    if camera is not None:
        out["cameras"] = [
            {
                "name": camera_name,
                "type": "perspective",
                "perspective": {
                    "yfov": float(math.radians(camera.fov_y_deg)),
                    "aspectRatio": float(camera.width) / float(camera.height),
                    "znear": 0.01,
                },
            }
        ]
        out["nodes"].append(
            {
                "name": camera_name,
                "camera": 0,
                "extras": {"sam3d": {"intrinsics": camera.to_dict()}},
            }
        )
        out["scenes"][0]["nodes"].append(len(out["nodes"]) - 1)
    for k in lists:
        if not out[k]:
            del out[k]
    binary = bytes(blob) + b"\x00" * ((-len(blob)) % 4)
    if binary:
        out["buffers"] = [{"byteLength": len(binary)}]
    Path(out_path).write_bytes(pack_glb(out, binary))


_NP_TYPES = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def read_accessor(gltf: dict[str, Any], binary: bytes, index: int) -> np.ndarray:
    """An accessor's data as a numpy array (count, components) (tightly packed views only)."""
    acc = gltf["accessors"][index]
    bv = gltf["bufferViews"][acc["bufferView"]]
    dtype = np.dtype(_NP_TYPES[acc["componentType"]])
    n = _NCOMP[acc["type"]]
    start = int(bv.get("byteOffset", 0)) + int(acc.get("byteOffset", 0))
    arr = np.frombuffer(binary, dtype=dtype, count=acc["count"] * n, offset=start)
    return arr.reshape(acc["count"], n) if n > 1 else arr


def read_object_glb(path: Path | str) -> dict[str, Any]:
    """The first primitive of a GLB written by ``write_object_glb``, as arrays.

    Keys: ``positions`` (n, 3), ``normals`` (n, 3), ``faces`` (m, 3), ``uv`` (n, 2) or None,
    ``colors_linear`` (n, 3) or None, ``texture`` (H, W, 3) uint8 sRGB or None, ``extras``
    (the node's extras), ``gltf`` (the JSON).
    """
    gltf, binary = read_glb(path)
    prim = gltf["meshes"][0]["primitives"][0]
    attrs = prim["attributes"]
    out: dict[str, Any] = {
        "gltf": gltf,
        "positions": read_accessor(gltf, binary, attrs["POSITION"]),
        "normals": read_accessor(gltf, binary, attrs["NORMAL"]) if "NORMAL" in attrs else None,
        "faces": read_accessor(gltf, binary, prim["indices"]).reshape(-1, 3).astype(np.int64),
        "uv": read_accessor(gltf, binary, attrs["TEXCOORD_0"]) if "TEXCOORD_0" in attrs else None,
        "colors_linear": read_accessor(gltf, binary, attrs["COLOR_0"])
        if "COLOR_0" in attrs
        else None,
        "texture": None,
        "extras": next((n.get("extras") for n in gltf.get("nodes", []) if "mesh" in n), None),
    }
    if gltf.get("images"):
        import io

        from PIL import Image

        bv = gltf["bufferViews"][gltf["images"][0]["bufferView"]]
        start = int(bv.get("byteOffset", 0))
        data = binary[start : start + int(bv["byteLength"])]
        out["texture"] = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return out
