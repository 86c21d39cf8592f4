"""``create`` and ``deploy`` commands (filled in by the CLI issue)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    return None
