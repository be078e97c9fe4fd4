"""Calico's int-or-string value types: `Port` and `ProtocolValue`
(docs/calico-semantics.md#port-and-protocol-values).

Both decode the way Calico's `numorstring` package does, so that a manifest means the same
thing here as under calicoctl, and both encode back to the JSON Calico itself would write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

from felis.model.constants import CALICO_PROTOCOL_NUMBERS, PORT_PROTOCOL_NUMBERS, PORT_PROTOCOLS

# Go's regexp `\d` is ASCII-only; Python's is not, hence the explicit classes.
_ALL_DIGITS = re.compile(r"[0-9]+")
_PORT_RANGE = re.compile(r"([0-9]+):([0-9]+)")
_PORT_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,128}")

_UINT16_MAX = 65535
_UINT8_MAX = 255

# Calico also accepts the lower-case v1 spellings when deciding whether ports make sense.
_PORT_PROTOCOL_NAMES = frozenset(PORT_PROTOCOL_NUMBERS) | {n.upper() for n in PORT_PROTOCOL_NUMBERS}


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


@dataclass(frozen=True, slots=True)
class Port:
    """A single port, an inclusive range, or a named port (then both numbers are 0)."""

    min_port: int = 0
    max_port: int = 0
    name: str = ""

    @classmethod
    def single(cls, port: int) -> Port:
        return cls(port, port)

    @classmethod
    def range(cls, low: int, high: int) -> Port:
        return cls(low, high)

    @classmethod
    def named(cls, name: str) -> Port:
        return cls(0, 0, name)

    @property
    def is_named(self) -> bool:
        return self.name != ""

    @property
    def is_range(self) -> bool:
        return self.name == "" and self.min_port != self.max_port

    @classmethod
    def parse(cls, value: object) -> Port:
        """Decode a JSON value as Calico does; raises ValueError with Calico's wording."""
        if isinstance(value, Port):
            return value
        if isinstance(value, str):
            return cls._parse_string(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 <= value <= _UINT16_MAX:
                return cls(value, value)
            raise ValueError(f"port number {value} is out of range 0-65535")
        raise ValueError(f"port must be an integer or a string, not {_type_name(value)}")

    @classmethod
    def _parse_string(cls, text: str) -> Port:
        if _ALL_DIGITS.fullmatch(text):
            number = int(text)
            if number > _UINT16_MAX:
                raise ValueError(f"invalid port format ({text})")
            return cls(number, number)
        match = _PORT_RANGE.fullmatch(text)
        if match:
            low, high = int(match.group(1)), int(match.group(2))
            if low > _UINT16_MAX:
                raise ValueError(f"invalid minimum port number in range ({text})")
            if high > _UINT16_MAX:
                raise ValueError(f"invalid maximum port number in range ({text})")
            if low > high:
                raise ValueError(
                    f"minimum port number ({low}) is greater than maximum port number "
                    f"({high}) in port range"
                )
            return cls(low, high)
        if not _PORT_NAME.fullmatch(text):
            raise ValueError(f"invalid name for named port ({text})")
        return cls(0, 0, text)

    def to_json(self) -> int | str:
        if self.name:
            return self.name
        if self.min_port == self.max_port:
            return self.min_port
        return f"{self.min_port}:{self.max_port}"

    def __str__(self) -> str:
        return str(self.to_json())

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate_port,
            serialization=core_schema.plain_serializer_function_ser_schema(_port_to_json),
        )


def _validate_port(value: object) -> Port:
    if type(value) is Port:
        return value
    try:
        return Port.parse(value)
    except ValueError as exc:
        raise PydanticCustomError("port", "{reason}", {"reason": str(exc)}) from None


def _port_to_json(port: Port) -> int | str:
    return port.to_json()


@dataclass(frozen=True, slots=True)
class ProtocolValue:
    """An IP protocol as a number 0-255 or a name, kept exactly as decoded.

    A numeric string is decoded to its number (as Calico does); any other string is kept
    verbatim, so `tcp` stays `tcp` and is later rejected by validation.
    """

    value: int | str

    @classmethod
    def parse(cls, value: object) -> ProtocolValue:
        if isinstance(value, ProtocolValue):
            return value
        if isinstance(value, str):
            if _ALL_DIGITS.fullmatch(value) and int(value) <= _UINT8_MAX:
                return cls(int(value))
            return cls(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 <= value <= _UINT8_MAX:
                return cls(value)
            raise ValueError(f"protocol number {value} is out of range 0-255")
        raise ValueError(f"protocol must be an integer or a string, not {_type_name(value)}")

    @property
    def number(self) -> int | None:
        """The protocol number: the value itself, or the number of a known name."""
        if isinstance(self.value, int):
            return self.value
        return CALICO_PROTOCOL_NUMBERS.get(self.value)

    @property
    def supports_ports(self) -> bool:
        if isinstance(self.value, int):
            return self.value in PORT_PROTOCOLS
        return self.value in _PORT_PROTOCOL_NAMES

    def is_(self, name: str) -> bool:
        """True when this is protocol `name` given either by name or by number (CEL's test)."""
        return self.value == name or self.value == CALICO_PROTOCOL_NUMBERS[name]

    def invalid_reason(self) -> str | None:
        """Calico's protocol check: a number 1-255 or one of the exact-case names."""
        if isinstance(self.value, int):
            return "protocol number invalid" if self.value == 0 else None
        if self.value not in CALICO_PROTOCOL_NUMBERS:
            return "protocol name invalid"
        return None

    def to_json(self) -> int | str:
        return self.value

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate_protocol,
            serialization=core_schema.plain_serializer_function_ser_schema(_protocol_to_json),
        )


_PROTOCOL_CACHE: dict[object, ProtocolValue] = {}


def _validate_protocol(value: object) -> ProtocolValue:
    if type(value) is ProtocolValue:
        return value
    # Protocols repeat endlessly in real manifests; a tiny cache keeps decoding cheap.
    key = (type(value), value) if isinstance(value, int | str) else None
    if key is not None:
        cached = _PROTOCOL_CACHE.get(key)
        if cached is not None:
            return cached
    try:
        result = ProtocolValue.parse(value)
    except ValueError as exc:
        raise PydanticCustomError("protocol", "{reason}", {"reason": str(exc)}) from None
    if key is not None and len(_PROTOCOL_CACHE) < 1024:
        _PROTOCOL_CACHE[key] = result
    return result


def _protocol_to_json(protocol: ProtocolValue) -> int | str:
    return protocol.value
