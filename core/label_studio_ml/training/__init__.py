"""Training in the background: jobs, their records and the per-process manager (``jobs``), and
the examples a project accumulates from annotations (``examples``: ``collect``)."""
