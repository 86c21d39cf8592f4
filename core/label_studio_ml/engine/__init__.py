"""Running a model class: the LS wire protocol parsed (``protocol``), the class found from a path
(``loader``), the per-project model instances with predict batching and fallbacks
(``runtime``: ``ModelRuntime``), where predict runs (``scheduling``), and the Redis queue that runs
training in worker processes (``queue``)."""
