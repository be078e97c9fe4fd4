"""Hostile and broken input: every case fails fast with exactly one clear error line."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import yaml
from model_docs import hep

from felis.model import Limits, ManifestError, load_documents, load_file, read_bounded

BILLION_LAUGHS = b"""apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: lol
  labels: &l0 {a: b}
x1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]
x2: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]
x3: &l3 [*l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2]
x4: &l4 [*l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3]
x5: &l5 [*l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4]
x6: &l6 [*l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5]
x7: &l7 [*l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6]
x8: &l8 [*l7, *l7, *l7, *l7, *l7, *l7, *l7, *l7, *l7, *l7]
x9: &l9 [*l8, *l8, *l8, *l8, *l8, *l8, *l8, *l8, *l8, *l8]
spec:
  nets: *l9
"""


def _one_line_error(data: bytes, source: str = "bad.yaml", **kwargs: object) -> str:
    with pytest.raises(ManifestError) as info:
        load_documents(data, source, **kwargs)  # type: ignore[arg-type]
    error = info.value
    assert len(error.errors) == 1, error.lines()
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"{source}: ")
    return message


@pytest.mark.timeout(10)
def test_billion_laughs_is_rejected_quickly() -> None:
    message = _one_line_error(BILLION_LAUGHS)
    assert "aliases expand to more than 100000" in message
    assert "document 1" in message


@pytest.mark.timeout(10)
def test_wide_alias_bomb_in_one_list_is_rejected() -> None:
    anchors = (
        b"a: &x [" + b",".join([b"1"] * 1000) + b"]\nb: [" + b",".join([b"*x"] * 1000) + b"]\n"
    )
    assert "aliases expand" in _one_line_error(anchors)


@pytest.mark.timeout(10)
def test_modest_alias_use_is_fine() -> None:
    data = b"""- apiVersion: projectcalico.org/v3
  kind: HostEndpoint
  metadata: {name: h, labels: &l {a: b}}
  spec: {node: n1, interfaceName: eth0}
- apiVersion: projectcalico.org/v3
  kind: GlobalNetworkSet
  metadata: {name: s, labels: *l}
  spec: {nets: ["10.0.0.0/8"]}
"""
    resources = load_documents(data, "ok.yaml")
    assert resources[1].metadata.labels == {"a": "b"}
    # Anchors do not reach across documents.
    with pytest.raises(ManifestError, match="undefined alias"):
        load_documents(b"a: &x 1\n---\nb: *x\n", "two.yaml")


@pytest.mark.timeout(10)
def test_recursive_alias_is_rejected() -> None:
    assert "recursive YAML alias" in _one_line_error(b"a: &x [1, *x]\n")


@pytest.mark.timeout(10)
def test_hundred_megabyte_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as handle:
        handle.truncate(100 * 1024 * 1024)  # sparse: cheap to make, huge to read
    with pytest.raises(ManifestError) as info:
        load_file(path)
    message = str(info.value)
    assert message == (f"{path}: input is 104857600 bytes, more than the limit of 10485760 bytes")


@pytest.mark.timeout(10)
def test_oversized_stream_without_size_is_cut_at_the_limit() -> None:
    class Unsized(io.BytesIO):
        def fileno(self) -> int:
            raise io.UnsupportedOperation("no fileno")

    stream = Unsized(b"x" * 5000)
    with pytest.raises(ManifestError, match="input is more than the limit of 1024 bytes"):
        read_bounded(stream, "-", 1024)
    assert stream.tell() == 1025  # read the limit plus one byte, not the rest


@pytest.mark.timeout(10)
def test_pipe_is_read_only_up_to_the_limit() -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"y" * 4096)
        with (
            os.fdopen(read_end, "rb", closefd=False) as stream,
            pytest.raises(ManifestError, match="more than the limit of 100 bytes"),
        ):
            read_bounded(stream, "<stdin>", 100)
    finally:
        os.close(write_end)
        os.close(read_end)


@pytest.mark.timeout(10)
def test_size_limit_applies_to_bytes_input_before_parsing() -> None:
    data = yaml.safe_dump(hep()).encode() * 10
    message = _one_line_error(data, max_bytes=100)
    assert f"input is {len(data)} bytes, more than the limit of 100 bytes" in message
    assert len(load_documents(yaml.safe_dump(hep()).encode(), "fine.yaml", max_bytes=1000)) == 1


@pytest.mark.timeout(10)
def test_binary_junk() -> None:
    junk = bytes(range(256)) * 64
    message = _one_line_error(junk, "junk.bin")
    assert "NUL byte at offset 0" in message


@pytest.mark.timeout(10)
def test_binary_junk_without_nul() -> None:
    junk = bytes(range(1, 256)) * 64
    assert "not valid UTF-8" in _one_line_error(junk, "junk.bin")


@pytest.mark.timeout(10)
def test_control_characters() -> None:
    assert "invalid YAML" in _one_line_error(b"kind: \x07bell\n")


@pytest.mark.timeout(10)
def test_invalid_utf8() -> None:
    data = yaml.safe_dump(hep()).encode() + b"# caf\xe9\n"
    message = _one_line_error(data, "latin1.yaml")
    assert "not valid UTF-8 (byte 0xe9 at offset" in message


@pytest.mark.timeout(10)
@pytest.mark.parametrize("depth", [100, 900, 10_000, 1_000_000])
def test_deeply_nested_flow_lists(depth: int) -> None:
    data = b"[" * depth + b"]" * depth
    message = _one_line_error(data, "deep.yaml")
    assert "nesting" in message or "invalid YAML" in message


@pytest.mark.timeout(10)
def test_deeply_nested_block_sequences() -> None:
    data = b"- " * 10_000 + b"x\n"
    message = _one_line_error(data, "deep.yaml")
    assert "nesting" in message or "invalid YAML" in message


@pytest.mark.timeout(10)
def test_deeply_nested_json_objects() -> None:
    data = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    message = _one_line_error(data, "deep.json")
    assert "nesting" in message or "invalid YAML" in message


@pytest.mark.timeout(10)
def test_nesting_limit_is_configurable() -> None:
    doc = json.dumps(hep()).encode()
    with pytest.raises(ManifestError, match="nesting deeper than 1 levels"):
        load_documents(doc, "x.json", limits=Limits(max_depth=1))
    with pytest.raises(ManifestError, match="nesting deeper than 1 levels"):
        load_documents(yaml.safe_dump(hep()).encode(), "x.yaml", limits=Limits(max_depth=1))
    assert len(load_documents(doc, "x.json", limits=Limits(max_depth=2))) == 1


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"kind: HostEndpoint\nmetadata: {name: x}\n", "apiVersion is missing"),
        (b"apiVersion: projectcalico.org/v3\nmetadata: {name: x}\n", "kind is missing"),
        (b"apiVersion: v1\nkind: HostEndpoint\n", "apiVersion 'v1' is not supported"),
        (b"apiVersion: projectcalico.org/v3\nkind: Pod\n", "resource type 'Pod' is not supported"),
        (b"just a string\n", "document must be a mapping"),
        (b"[1, 2]\n", "a resource must be an object, not a number"),
        (b'{"apiVersion": NaN}', "invalid"),
        (b"a: 1\n  b: 2\n", "invalid YAML"),
        (b"\xef\xbb\xbfkind: [\n", "invalid YAML"),
    ],
)
def test_broken_documents_give_one_line(data: bytes, fragment: str) -> None:
    with pytest.raises(ManifestError) as info:
        load_documents(data, "broken.yaml")
    for line in info.value.lines():
        assert "\n" not in line
        assert line.startswith("broken.yaml: ")
    assert fragment in str(info.value)


@pytest.mark.timeout(10)
def test_error_lines_escape_control_characters_from_input() -> None:
    doc = hep(name="evil\nname")
    doc["spec"] = {"node": "n1", "interfaceName": "bad\rname"}
    with pytest.raises(ManifestError) as info:
        load_documents(json.dumps(doc).encode(), "esc.json")
    for line in info.value.lines():
        assert "\n" not in line and "\r" not in line
    assert "evil\\nname" in info.value.lines()[0]
