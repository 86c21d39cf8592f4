"""Pre-annotating a whole project: the bulk job (``bulk``: ``Preannotator``), where its predictions
come from (``predictors``: in process or a running backend), progress (``progress``), the jobs
started over HTTP (``server_jobs``) and the Redis-distributed job with its workers (``redis_queue``)."""
