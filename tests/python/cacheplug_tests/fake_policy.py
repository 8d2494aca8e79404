"""faketool's cache policy (see cacheplug/store/policy.py): a module's meta and data travel
together, as mypy's do."""

import os


def group_of(relpath: str) -> str:
    head, base = os.path.split(relpath)
    return os.path.join(head, base.split(".")[0] or base)


COPIES = ("*.inplace",)  # files the tests write in place, as mypy writes `missing_stubs`
