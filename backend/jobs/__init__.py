"""Jobs: where a job goes, one module per step (see docs/ARCHITECTURE.md).

* ``intake``   - a photo and masks (uploaded, or files for the CLI) -> ``JobInputs``;
  ``images`` decodes and checks the pictures.
* ``request``  - ``JobRequest`` (``request.json``) and the job id (a content hash).
* ``job_dir``  - ``JobDir``: every file of a job folder, by name, in one place.
* ``store``    - ``JobStore``: the data folder, job folders built atomically, statuses.
* ``status``   - ``JobStatus``: where a job stands (``status.json``, ``GET /jobs/{id}``).
* ``run``      - one job from its folder: engine -> finishing -> result files (workers, CLI).
* ``owners``   - which server owns a job; ``recovery`` - unfinished jobs after a restart.

The queue and the worker processes are ``backend.pool`` and ``backend.worker``.
"""
