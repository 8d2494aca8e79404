"""The contract between the Pants rule and the store: one JSON file the engine writes into the
sandbox and the store validates before it does anything."""

from __future__ import annotations

import json

TYPE_CHECKING = False  # typing is not imported at run time (store/__init__.py: start-up cost)
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Tuple

# Each field's allowed JSON types.
TYPES: Dict[str, Tuple[type, ...]] = {
    "scope": (str,), "dest": (str,), "manifest": (str,), "report": (str,), "policy": (str, type(None)),
    "policy_config": (dict,), "lock_timeout": (int, float), "max_size": (int,), "snapshot": (bool,),
    "describe": (str, type(None)),
}


class Spec:
    """Not a dataclass: dataclasses imports inspect, start-up cost in every store process."""

    __slots__ = tuple(TYPES)
    scope: str  # the scope directory, relative to the sandbox (through the named cache's link)
    dest: str  # the tool's private cache in the sandbox
    manifest: str  # what setup gave the tool (setup writes it, commit reads it)
    report: str  # what the run did (JSON, read by the rule)
    policy: Optional[str]  # the tool's policy module, a file in the sandbox
    policy_config: Dict[str, Any]  # given to the policy's `prepare`
    lock_timeout: float  # seconds a commit waits for the scope's lock
    max_size: int  # the scope's byte budget (0: unlimited)
    snapshot: bool  # keep the cache a sequence of whole runs (a tool judging by timestamps)
    describe: Optional[str]  # the scope's scope.json

    def __init__(
        self, scope: str, dest: str, manifest: str, report: str, policy: Optional[str] = None,
        policy_config: Optional[Dict[str, Any]] = None, lock_timeout: float = 60.0, max_size: int = 0,
        snapshot: bool = False, describe: Optional[str] = None,
    ) -> None:
        self.scope, self.dest, self.manifest, self.report = scope, dest, manifest, report
        self.policy, self.policy_config = policy, policy_config or {}
        self.lock_timeout, self.max_size, self.snapshot, self.describe = lock_timeout, max_size, snapshot, describe

    def dumps(self) -> bytes:
        return json.dumps({name: getattr(self, name) for name in TYPES}, sort_keys=True).encode()

    @classmethod
    def loads(cls, data: bytes) -> "Spec":
        """Parse and check every field's type; ValueError naming the first bad one."""
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("the store's spec is not a JSON object")
        unknown = sorted(set(raw) - set(TYPES))
        if unknown:
            raise ValueError(f"unknown field(s) in the store's spec: {', '.join(unknown)}")
        for name, value in raw.items():
            numeric = TYPES[name] in ((int,), (int, float))
            if not isinstance(value, TYPES[name]) or numeric and isinstance(value, bool):
                raise ValueError(f"bad value in the store's spec: {name} = {value!r:.80}")
        missing = [n for n in ("scope", "dest", "manifest", "report") if n not in raw]
        if missing:
            raise ValueError(f"missing field(s) in the store's spec: {', '.join(missing)}")
        if raw.get("lock_timeout", 0) < 0 or raw.get("max_size", 0) < 0:
            raise ValueError("lock_timeout and max_size must be >= 0")
        return cls(**raw)
