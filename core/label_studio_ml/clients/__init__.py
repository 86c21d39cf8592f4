"""Calls that leave the process: Label Studio's REST API (``ls_client``: export, bulk predictions,
tokens), outbound HTTP with a wall-clock deadline and no link-local targets (``outbound``), and
bounded retry with backoff (``retrying``)."""
