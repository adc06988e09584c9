"""One intake path for the server and the CLI: a photo and its masks -> a job's inputs.

``POST /jobs`` (``backend.api.submission``) hands it the uploaded bytes;
``python -m backend generate`` hands it files read by :func:`read_input_file` and
:func:`read_mask_folder`. Either way a :class:`Submission` is hashed into its job id, then
decoded and checked (``backend.jobs.images``) into :class:`~backend.jobs.job_dir.JobInputs`
- the request and the inputs as PNGs - which a job folder is built from.
"""

from __future__ import annotations

import hashlib
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from backend.errors import BackendError
from backend.jobs.images import (
    MAX_UPLOAD_BYTES,
    MAX_WORK_PIXELS,
    alpha_mask,
    bad_input,
    check_mask_coverage,
    decode_photo,
    encode_png,
    mask_at,
    mask_bool,
    mask_fraction,
    open_inputs,
)
from backend.jobs.job_dir import JobInputs
from backend.jobs.request import InputFacts, JobKind, JobRequest, job_id_for
from backend.memory import trim_heap
from backend.options import JobOptions
from backend.parallel import ordered_map

#: Masks of one scene job at most.
MAX_SCENE_MASKS = 32
#: Masks decoded at a time by one submission (at most the CPUs this process may use).
INTAKE_THREADS = 2
#: What counts as a mask file in a folder of masks: named by its object's index (``0.png,
#: 1.jpg, ...``) with one of these suffixes - the add-on's rule too (a test holds the two
#: together). A type the backend cannot decode (EXR) is refused with ``bad_mask``.
MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".exr")


def check_mask_count(count: int) -> None:
    if count > MAX_SCENE_MASKS:
        raise BackendError("bad_mask", f"A scene takes at most {MAX_SCENE_MASKS} masks.")


@dataclass
class Submission:
    """A request as a client sent it: the photo's bytes, the masks' bytes (one mask: an
    object job; a list: a scene job; None: the image's alpha is the mask), the options with
    the engine already resolved (never ``auto``), and the working resolution in pixels."""

    image: bytes
    masks: bytes | list[bytes] | None
    options: JobOptions
    max_pixels: int = MAX_WORK_PIXELS

    @property
    def kind(self) -> JobKind:
        return "scene" if isinstance(self.masks, list) else "object"

    @cached_property
    def job_id(self) -> str:
        """The content hash of the request (``backend.jobs.request.job_id_for``)."""
        masks = self.masks if isinstance(self.masks, list) else []
        if isinstance(self.masks, bytes):
            masks = [self.masks]
        options = {**self.options.model_dump(mode="json"), "max_pixels": self.max_pixels}
        return job_id_for(self.image, masks, self.options.engine, options, self.options.seed)

    def prepare(self) -> JobInputs:
        """Decode, check and store the inputs (raises ``BackendError`` for bad input).

        The photo is decoded once; then the masks are decoded and checked
        ``INTAKE_THREADS`` at a time (Pillow releases the GIL while it decodes) while the
        working-size photo is written as PNG beside them. Each mask is kept as the bytes
        the job stores and its coverage - never as a whole-frame array - and an upload
        that is already an 8-bit grey or 1-bit PNG at the photo's size is stored as it
        was sent (``images.mask_at``); the worker reads either the same way
        (``backend.jobs.run.read_mask``). The photo itself is stored as sent when it is
        an RGB PNG used at its own size with no EXIF."""
        try:
            opened = open_inputs(self.image, self.masks)
            rgb, alpha = decode_photo(opened, self.max_pixels)
            work = (int(rgb.shape[1]), int(rgb.shape[0]))

            def photo_png() -> bytes:
                return self.image if opened.photo_as_sent else encode_png(rgb, 1)

            def mask_png(i: int) -> tuple[bytes, float]:
                """Mask ``i`` as the job stores it, and its coverage; the task after the
                last mask writes the photo's PNG."""
                if i == len(opened.masks):
                    return photo_png(), 0.0
                channel, as_sent = mask_at(opened, i, work, self.max_pixels)
                frac = mask_fraction(channel)
                if not opened.scene:
                    check_mask_coverage(frac)
                if as_sent:
                    sent = self.masks[i] if isinstance(self.masks, list) else self.masks
                    assert isinstance(sent, bytes)
                    return sent, frac
                return encode_png(mask_bool(channel), 1), frac

            if self.masks is None:
                mask = alpha_mask(alpha)
                frac = check_mask_coverage(float(mask.mean()))
                stored = [(encode_png(mask, 1), frac), (photo_png(), 0.0)]
            else:
                n = len(opened.masks)
                stored = ordered_map(mask_png, n + 1, INTAKE_THREADS, name="intake")
            request = JobRequest(
                id=self.job_id,
                kind=self.kind,
                engine=self.options.engine,
                seed=self.options.seed,
                options=self.options,
                parts=len(stored) - 1,
                input=InputFacts(
                    image_sha256=hashlib.sha256(self.image).hexdigest(),
                    original_size=list(opened.size),
                    size=list(work),
                    orientation=opened.orientation,
                    mask_coverage=[frac for _, frac in stored[:-1]],
                ),
            )
            return JobInputs(
                request=request,
                image_png=stored[-1][0],
                mask_pngs=[png for png, _ in stored[:-1]],
                warnings=opened.notes,
            )
        finally:
            trim_heap()  # a big decode freed memory glibc would otherwise keep


def read_input_file(path: str | Path, what: str) -> bytes:
    """An input file's bytes (``what``: "image" or "mask"), or a coded error saying truly
    what is wrong with it: missing, a folder, a device, unreadable, too large."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise bad_input(what, f"The {what} file {p} does not exist.") from None
    except OSError as exc:
        raise bad_input(what, f"The {what} file {p} cannot be read: {exc.strerror}.") from None
    if stat.S_ISDIR(st.st_mode):
        raise bad_input(what, f"The {what} {p} is a folder; give an image file.")
    if not stat.S_ISREG(st.st_mode):
        raise bad_input(
            what, f"The {what} {p} is not a regular file (a device or a pipe); give an image file."
        )
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_UPLOAD_BYTES + 1)
    except OSError as exc:
        raise bad_input(what, f"The {what} file {p} cannot be read: {exc.strerror}.") from None
    if len(data) > MAX_UPLOAD_BYTES:
        raise BackendError(
            "upload_too_large",
            f"The {what} file {p} is over {MAX_UPLOAD_BYTES // 2**20} MB; save it smaller.",
        )
    return data


def mask_files_in(folder: str | Path) -> list[Path]:
    """The mask files of a folder of masks in object order (numeric names, sorted as
    numbers); ``bad_mask`` when the folder is missing or holds none."""
    d = Path(folder)
    if not d.is_dir():
        raise BackendError("bad_mask", f"The mask folder {d} does not exist.")
    files = [p for p in d.iterdir() if p.suffix.lower() in MASK_SUFFIXES and p.stem.isdigit()]
    if not files:
        raise BackendError("bad_mask", f"No mask files named 0.png, 1.png, ... in {d}.")
    return sorted(files, key=lambda p: int(p.stem))


def read_mask_folder(folder: str | Path) -> list[bytes]:
    """The bytes of every mask in a folder of masks, in object order (a scene job)."""
    files = mask_files_in(folder)
    check_mask_count(len(files))
    return [read_input_file(p, "mask") for p in files]
