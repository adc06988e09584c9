"""Running jobs on a Ray cluster (``serve --executor ray``): the optional ``cluster`` extra.

The HTTP server stays the one place that owns jobs, the content-hash cache and the API;
``backend.cluster.pool.RayPool`` hands jobs to Ray actors (``backend.cluster.actor``) instead
of local worker processes, behind the interface of ``backend.pool.WorkerPool``. Only this
package imports ``ray``, and only ``serve --executor ray`` imports this package. See
docs/CLUSTER.md.
"""
