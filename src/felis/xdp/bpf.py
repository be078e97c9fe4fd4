"""Reading the XDP program's per-CPU counters with the bpf(2) system call.

`bpftool map dump` prints every slot of the counter array (262,144 of them, each once per
CPU) as JSON: about 20 s of work for a few numbers, too slow for a scrape. One
`BPF_MAP_LOOKUP_BATCH` call copies the array's leading slots into a buffer instead. Needs the
privileges attaching needed (CAP_BPF or CAP_SYS_ADMIN). The layouts are the kernel's
`union bpf_attr` (linux/bpf.h), which only ever grows at its end.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from collections.abc import Iterable
from pathlib import Path

from felis.errors import FelisError

_SYSCALL = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
_MAP_LOOKUP_ELEM = 1
_MAP_GET_FD_BY_ID = 14
_OBJ_GET_INFO_BY_FD = 15
_MAP_LOOKUP_BATCH = 24
_CHUNK = 16384
"""Slots read per batch call: bounds the buffer at 128 KiB per CPU."""


class BpfError(FelisError):
    """A bpf(2) call failed (one line)."""


def _call(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    number = _SYSCALL.get(platform.machine())
    if number is None:
        raise BpfError(f"reading XDP counters: no bpf(2) number known for {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    result = int(
        libc.syscall(
            ctypes.c_long(number),
            ctypes.c_int(cmd),
            ctypes.cast(attr, ctypes.c_void_p),
            ctypes.c_uint(len(attr)),
        )
    )
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def possible_cpus(text: str | None = None) -> int:
    """How many slots a per-CPU value has: one per possible CPU (`0-3,8-11` → 8)."""
    if text is None:
        text = Path("/sys/devices/system/cpu/possible").read_text()
    count = 0
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        count += int(last or first) - int(first) + 1
    return count


def sum_percpu(buffer: bytes, slots: int, cpus: int) -> list[int]:
    """Per slot, its 64-bit per-CPU values (native order, each padded to 8 bytes) added up."""
    values = struct.unpack(f"={slots * cpus}Q", buffer[: slots * cpus * 8])
    return [sum(values[i * cpus : (i + 1) * cpus]) for i in range(slots)]


def _map_fd(map_id: int) -> int:
    attr = ctypes.create_string_buffer(struct.pack("=III", map_id, 0, 0), 128)
    return _call(_MAP_GET_FD_BY_ID, attr)


def _value_size(fd: int) -> tuple[int, int]:
    """(value size, max entries) of the map behind `fd` (struct bpf_map_info's head)."""
    info = ctypes.create_string_buffer(80)
    attr = ctypes.create_string_buffer(
        struct.pack("=IIQ", fd, len(info), ctypes.addressof(info)), 128
    )
    _call(_OBJ_GET_INFO_BY_FD, attr)
    _type, _id, _key, value_size, max_entries = struct.unpack("=IIIII", info.raw[:20])
    return value_size, max_entries


def _batch(fd: int, start: int, count: int, stride: int) -> bytes:
    keys = ctypes.create_string_buffer(4 * count)
    values = ctypes.create_string_buffer(stride * count)
    # The batch goes on after `in_batch` (the last key of the previous call), or from the
    # first slot without one.
    in_batch = ctypes.c_uint32(start - 1 if start else 0)
    out_batch = ctypes.c_uint32(0)
    head = struct.pack(
        "=QQQQII",
        ctypes.addressof(in_batch) if start else 0,
        ctypes.addressof(out_batch),
        ctypes.addressof(keys),
        ctypes.addressof(values),
        count,
        fd,
    )
    attr = ctypes.create_string_buffer(head, 128)
    try:
        _call(_MAP_LOOKUP_BATCH, attr)
    except OSError as err:
        # ENOENT: the end of the array was reached; what was read is still in the buffers.
        if err.errno != errno.ENOENT:
            raise
    (read,) = struct.unpack_from("=I", attr.raw, 32)
    if read != count:
        raise OSError(errno.EIO, f"read {read} of {count} counters")
    return values.raw


def _lookup(fd: int, key: int, stride: int) -> bytes:
    key_buf = ctypes.c_uint32(key)
    value = ctypes.create_string_buffer(stride)
    attr = ctypes.create_string_buffer(
        struct.pack("=IIQQQ", fd, 0, ctypes.addressof(key_buf), ctypes.addressof(value), 0), 128
    )
    _call(_MAP_LOOKUP_ELEM, attr)
    return value.raw


def percpu_sums(map_id: int, keys: Iterable[int]) -> dict[int, int]:
    """Of the per-CPU array `map_id`, the values at `keys`, each summed over CPUs."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    try:
        fd = _map_fd(map_id)
    except OSError as err:
        raise BpfError(f"reading XDP counter map {map_id}: {err.strerror}") from None
    try:
        value_size, max_entries = _value_size(fd)
        if value_size != 8:
            raise BpfError(f"XDP counter map {map_id} holds {value_size}-byte values, not 8")
        cpus = possible_cpus()
        stride = 8 * cpus
        slots = min(wanted[-1] + 1, max_entries)
        sums: list[int] = []
        try:
            for start in range(0, slots, _CHUNK):
                count = min(_CHUNK, slots - start)
                sums += sum_percpu(_batch(fd, start, count, stride), count, cpus)
        except OSError as err:
            if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            # A kernel without batch lookups (before 5.6): one call per key.
            return {
                key: sum_percpu(_lookup(fd, key, stride), 1, cpus)[0]
                for key in wanted
                if key < max_entries
            }
        return {key: sums[key] for key in wanted if key < slots}
    except OSError as err:
        raise BpfError(f"reading XDP counter map {map_id}: {err.strerror or err}") from None
    finally:
        os.close(fd)
