"""`JSONConfig`: the to/from-dict behaviour shared by every model config stored in checkpoints."""

from __future__ import annotations

from dataclasses import asdict, fields


class JSONConfig:
    """Mixin for dataclass configs: ``to_dict()`` for meta.json, ``from_dict()`` that names unknown keys."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown} (a checkpoint from another rnnkit version?)")
        return cls(**data)
