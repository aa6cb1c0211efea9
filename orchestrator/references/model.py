"""One reference time and the keys it is matched on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# What a reference's settings may name: v_results columns that tell two cells of one model and board apart.
SETTING_COLUMNS = ("threads", "power_mode", "usb_speed", "usb_port", "runtime_version", "libedgetpu")
INT_SETTINGS = ("threads", "usb_speed")


@dataclass(frozen=True)
class Reference:
    board: str
    model: str  # model_key(): file stem, as farm names an imported model
    delegate: str  # cpu | edgetpu
    value_ms: float
    source: str
    settings: dict[str, Any] = field(default_factory=dict)
    metric: str = "inference"  # inference | training
    dataset: str = ""
    stat: str = "mean"  # pycoral and SEEDS §1 publish means

    @property
    def setting_key(self) -> str:
        return ",".join(f"{k}={self.settings[k]}" for k in sorted(self.settings))


def model_key(name: str) -> str:
    """'dir/mobilenet_v1_1.0_224_quant_edgetpu.tflite' -> 'mobilenet_v1_1.0_224_quant_edgetpu'."""
    stem = name.replace("\\", "/").rsplit("/", 1)[-1]
    return stem.removesuffix(".tflite")


def delegate_of(model: str) -> str:
    """pycoral's convention: an Edge TPU model's file name ends in _edgetpu."""
    return "edgetpu" if model_key(model).endswith("_edgetpu") else "cpu"


def parse_setting(text: str) -> tuple[str, Any]:
    """'threads=4' -> ('threads', 4); the key must be a column a reference can be matched on."""
    from ..errors import FarmError

    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value:
        raise FarmError(f"--setting {text!r}: expected KEY=VALUE, e.g. usb_speed=5000 or threads=4")
    if key not in SETTING_COLUMNS:
        raise FarmError(f"--setting {text!r}: {key!r} is not a setting a reference can name; "
                        f"expected one of {', '.join(SETTING_COLUMNS)}")
    if key in INT_SETTINGS:
        try:
            return key, int(value)
        except ValueError:
            raise FarmError(f"--setting {text!r}: {key} must be a whole number") from None
    return key, value
