def test_import():
    import mmcv.ops  # noqa: F401
    import mmdet.apis  # noqa: F401
