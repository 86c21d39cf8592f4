"""The HTTP server: the Starlette app and its endpoints (``app``: ``create_app``), uvicorn start-up
(``serve``), the WSGI bridge (``wsgi``), the status page and its assets (``status_page``,
``status/``), OpenAPI (``openapi``), Prometheus metrics (``metrics``), logging and request logs
(``logs``), thread slots for slow I/O (``io_wait``) and webhooks kept while Redis is down (``spool``)."""
