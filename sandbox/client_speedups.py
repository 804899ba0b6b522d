"""Building AWS clients faster in the sandbox's processes, with the same result.

The Amazon provider's hooks cost about 0.6 s of CPU per client here (40 s of a 30-task `dag.test()`):
- each hook builds a new boto3 session, and each session a new botocore Loader, which parses the
  service model, endpoints and partitions JSON again. One boto3 session with many clients shares
  one Loader; ``_shared_loader`` does that across sessions (the files do not change while a process
  runs);
- for its user agent, each hook finds the operator that called it with ``inspect.stack()``, which
  builds source context for every frame of a deep pytest stack. ``_find_operator_class_name``
  walks the same frames without it and returns the same class name.

Only the sandbox's processes (the tests' and the demo's) install these; a deployment's task
processes are short-lived, shallow and build a handful of clients each.
"""

from __future__ import annotations

import sys
from typing import Any

import botocore.loaders
import botocore.session

_ORIGINAL_CREATE_LOADER = botocore.loaders.create_loader
_SHARED: dict[Any, botocore.loaders.Loader] = {}


def _shared_loader(search_path_string: Any = None) -> botocore.loaders.Loader:
    if search_path_string not in _SHARED:
        _SHARED[search_path_string] = _ORIGINAL_CREATE_LOADER(search_path_string)
    return _SHARED[search_path_string]


def _find_operator_class_name(target_function_name: str) -> str | None:
    """AwsBaseHook's: the class of `self` in the innermost frame running `target_function_name`."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == target_function_name:
            return type(frame.f_locals["self"]).__name__
        frame = frame.f_back
    return None


def install() -> None:
    """Idempotent. botocore.session imported create_loader by name, so that is the name replaced."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook

    botocore.session.create_loader = _shared_loader
    AwsGenericHook._find_operator_class_name = staticmethod(_find_operator_class_name)
