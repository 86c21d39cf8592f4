"""A task's media as local files: fetching LS uploads, local files, cloud URIs and URLs into a
cache (``fetch``: ``MediaFetcher``, ``is_media_reference``) and opening images (``images``)."""
