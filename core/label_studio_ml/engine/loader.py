"""Finding a service's model class: ``DIR`` (its model.py), ``FILE.py`` or ``FILE.py:Class``."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

from ..model import LabelStudioMLBase


class ModelClassError(Exception):
    pass


def model_candidates(module: object) -> list[type[LabelStudioMLBase]]:
    return [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, LabelStudioMLBase)
        and obj is not LabelStudioMLBase
        and obj.__module__ == getattr(module, "__name__", None)
    ]


def split_target(target: str | Path) -> tuple[str, str | None]:
    """``FILE.py:Class`` -> (``FILE.py``, ``Class``); a path that exists as given keeps its colon."""
    text = str(target)
    if ":" in text and not Path(text).exists():
        path, class_name = text.rsplit(":", 1)
        return path, class_name
    return text, None


def model_file_of(path: Path) -> Path:
    """The file a target's path names: a folder's model.py, or the path itself."""
    return path / "model.py" if path.is_dir() else path


def load_model_class(target: str | Path) -> type[LabelStudioMLBase]:
    text, class_name = split_target(target)
    path = model_file_of(Path(text))
    if not path.is_file():
        raise ModelClassError(f"no model file at {path}: pass a service folder with model.py, or FILE.py[:Class]")
    folder = str(path.parent.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module_name = path.stem if path.stem not in sys.modules else f"_lsml_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelClassError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    candidates = model_candidates(module)
    if class_name:
        for cls in candidates:
            if cls.__name__ == class_name:
                return cls
        raise ModelClassError(
            f"{path} has no LabelStudioMLBase subclass named {class_name!r}; "
            f"found: {', '.join(c.__name__ for c in candidates) or 'none'}"
        )
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ModelClassError(f"{path} defines no LabelStudioMLBase subclass")
    names = ", ".join(c.__name__ for c in candidates)
    raise ModelClassError(f"{path} defines several model classes ({names}); pick one with {path}:<Class>")
