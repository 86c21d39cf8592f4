"""What a backend keeps between requests: per-project key/value state in files or Redis
(``storage``: ``Store``, ``FileStore``, ``RedisStore``, ``atomic_write``) and the model versions
each project has trained (``versions``)."""
