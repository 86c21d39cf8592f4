"""Testing a backend: the pytest plugin (``plugin``, registered through the ``pytest11`` entry point:
``make_client``, ``assert_conformant``, the fake Label Studio, recorded LS requests in ``fixtures/``)
and OCR test pages (``ocr``: ``render_page``, ``cer``)."""
