"""Method-specific options: a typed dataclass per method, filled from ``TrainConfig.options``."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from workbench.errors import ConfigError
from workbench.fields import field_types, typed_value

__all__ = ["parse_options", "check_choice", "INPUTS", "BASELINE_INPUTS"]

#: how the modalities enter a single-modality method: one model per modality, or all as channels (MM-)
INPUTS = ("single", "both")
#: the semi-supervised baselines' inputs (MT, UA-MT, CPS): one model per modality, Semi-CML
#: Table 2's dual-encoder U-Net (``both``), or one U-Net on the modalities concatenated as
#: input channels (``concat``: how Meng et al. feed the single-modal baselines they compare)
BASELINE_INPUTS = ("single", "both", "concat")

T = TypeVar("T")


def parse_options(cls: type[T], values: dict[str, Any], method: str) -> T:
    """``cls(**values)`` with a one-line ConfigError naming an unknown key or a wrong type."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        choices = f"options: {', '.join(sorted(fields))}" if fields else "it takes no options"
        raise ConfigError(f"method {method!r} has no option {unknown[0]!r}; {choices}")
    hints = field_types(cls)
    return cls(**{k: typed_value(k, v, hints[k], prefix="option ") for k, v in values.items()})


def check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    """One-line ConfigError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"unknown {option} {value!r}; choose one of: {', '.join(choices)}")
