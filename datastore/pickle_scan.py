"""Read the reference's embedding pickles without unpickling them: ids plus a memory-mapped array.

The OpenScholar release stores each shard's vectors as ``pickle.dump((ids, array), f)`` (ids a list
of ints, array float16 (n, 768)). Unpickling runs code named by the file, and would load the whole
array (22 GB for shard 0) into RAM. This module instead walks the pickle opcodes itself, never
executing anything: it collects the ids into an int64 array, and for the array records the dtype,
shape and the byte offset of its raw data, so the vectors are ``np.memmap``-ed in place.

Large payloads (BINBYTES/BINBYTES8/BYTEARRAY8) are skipped by seeking past them, never read (unlike
``pickletools.genops``, which reads every payload whole). The three ways numpy pickles an array are
understood:

- protocol 5: ``numpy._core.numeric._frombuffer(<bytes>, dtype, shape, order)`` - data in place;
- protocols 3-4: ``_reconstruct(ndarray, (0,), b'b')`` then BUILD with ``(1, shape, dtype, fortran,
  <bytes>)`` - data in place;
- protocols 0-2: the same, but Python 3 writes the bytes as ``_codecs.encode(<latin-1 text>,
  'latin1')``: the payload is UTF-8 text, not the raw bytes, so it is decoded in a streaming pass into
  a scratch ``.npy`` (bounded memory) which is then mapped.

Only the globals numpy and ``_codecs`` use for this are accepted; anything else is refused.
"""

from __future__ import annotations

import codecs
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from datastore.errors import SourceError

SMALL_PAYLOAD = 1 << 20  # payloads up to this are read as values; larger ones are only located

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("__builtin__", "bytes"),  # protocols <= 2 write b"" as bytes()
    ("builtins", "bytes"),
}


class PickleFormatError(SourceError):
    """The file is not an embedding pickle of the reference's shape (ids, float array)."""


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


@dataclass(frozen=True)
class _Blob:
    """A byte or text payload of the file, located but (when large) not read."""

    offset: int
    length: int
    kind: Literal["bytes", "utf8"]
    value: bytes | None = None


@dataclass(frozen=True)
class _Call:
    func: Any
    args: tuple[Any, ...]


@dataclass(frozen=True)
class _Built:
    obj: Any
    state: Any


@dataclass(frozen=True)
class _Latin1:
    """``_codecs.encode(text, 'latin1')``: raw bytes stored as UTF-8 text of their latin-1 code points."""

    blob: _Blob


class _Mark:
    pass


class _IntList:
    """The ids list, gathered as numpy chunks (14.6M Python ints would be ~500 MB)."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []

    def extend(self, items: list[Any]) -> None:
        scalars: list[int] = []
        for item in items:
            if isinstance(item, np.ndarray):
                if scalars:
                    self.chunks.append(np.asarray(scalars, dtype=np.int64))
                    scalars = []
                self.chunks.append(item)
            elif isinstance(item, int) and not isinstance(item, bool):
                scalars.append(item)
            else:
                raise PickleFormatError(
                    f"the ids list holds a {type(item).__name__}, not ints",
                    hint="this is not an embedding pickle of the OpenScholar release (ids, vectors)",
                )
        if scalars:
            self.chunks.append(np.asarray(scalars, dtype=np.int64))

    def array(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class PickledArray:
    """What the scan found: the ids and where the (n, d) array's bytes are in the file."""

    path: Path
    ids: np.ndarray
    offset: int
    length: int
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran: bool
    encoding: Literal["raw", "latin1", "inline"]
    protocol: int
    inline: bytes | None = None

    def array(self, scratch: Path | None = None) -> np.ndarray:
        """The array, memory-mapped read-only. A latin-1 payload (protocols 0-2) is first decoded into
        ``scratch`` (a ``.npy`` path; default: next to the pickle) by a streaming pass."""
        order: Literal["C", "F"] = "F" if self.fortran else "C"
        if self.encoding == "inline":  # a small array of an old protocol, decoded during the scan
            return np.frombuffer(self.inline or b"", dtype=self.dtype).reshape(self.shape, order=order)
        if self.encoding == "raw":
            if int(np.prod(self.shape)) == 0:
                return np.zeros(self.shape, dtype=self.dtype)
            return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape, order=order)
        target = scratch or self.path.with_suffix(".decoded.npy")
        if not (target.is_file() and _npy_matches(target, self.dtype, self.shape, self.fortran)):
            _decode_latin1(self.path, self.offset, self.length, target, self.dtype, self.shape, self.fortran)
        return np.load(target, mmap_mode="r")


def _npy_matches(path: Path, dtype: np.dtype, shape: tuple[int, ...], fortran: bool) -> bool:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return arr.dtype == dtype and arr.shape == shape and bool(arr.flags.f_contiguous and not arr.flags.c_contiguous) == (
        fortran and len(shape) > 1
    )


def _decode_latin1(
    src: Path, offset: int, length: int, target: Path, dtype: np.dtype, shape: tuple[int, ...], fortran: bool
) -> None:
    """Stream-decode a UTF-8 payload of latin-1 code points back to raw bytes, into a ``.npy``."""
    tmp = target.with_name(target.name + ".partial")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape, fortran_order=fortran)
    raw = out.reshape(-1, order="A").view(np.uint8) if out.size else np.zeros(0, np.uint8)
    decoder = codecs.getincrementaldecoder("utf-8")()
    pos = 0
    with src.open("rb") as fh:
        fh.seek(offset)
        left = length
        while left > 0:
            block = fh.read(min(left, 16 << 20))
            if not block:
                raise PickleFormatError(f"{src} ends inside the array data", hint="the file is truncated: download it again")
            left -= len(block)
            data = decoder.decode(block, final=left == 0).encode("latin-1")
            raw[pos : pos + len(data)] = np.frombuffer(data, dtype=np.uint8)
            pos += len(data)
    if pos != raw.size:
        raise PickleFormatError(
            f"{src}: the array data decodes to {pos} bytes, its shape {shape} needs {raw.size}",
            hint="the file is damaged: download it again",
        )
    out.flush()
    del out, raw
    tmp.replace(target)


_INT_RUNS = {ord("K"): "<u1", ord("M"): "<u2", ord("J"): "<i4"}


class _Scanner:
    """A symbolic pickle machine: builds descriptions of objects, never the objects, never calls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stack: list[Any] = []
        self.memo: dict[int, Any] = {}
        self.protocol = 0

    def fail(self, what: str, pos: int) -> PickleFormatError:
        return PickleFormatError(
            f"{self.path}: {what} at byte {pos}",
            hint="this is not an embedding pickle of the OpenScholar release ((ids, float16 array)); "
            "use the .npy form (--vectors-format npy) or check the file",
        )

    def pop(self) -> Any:
        """The top logical item: an int run decoded vectorized gives up its last int."""
        top = self.stack[-1]
        if isinstance(top, np.ndarray):
            if len(top) > 2:
                self.stack[-1] = top[:-1]
            else:
                self.stack[-1] = int(top[0])
            return int(top[-1])
        return self.stack.pop()

    def top(self) -> Any:
        top = self.stack[-1]
        return int(top[-1]) if isinstance(top, np.ndarray) else top

    def pop_mark(self) -> list[Any]:
        for i in range(len(self.stack) - 1, -1, -1):
            if isinstance(self.stack[i], _Mark):
                items = self.stack[i + 1 :]
                del self.stack[i:]
                return items
        raise self.fail("a MARK is missing", -1)

    def run(self, buf: mmap.mmap) -> Any:
        size = len(buf)
        pos = 0
        unpack = struct.unpack_from
        stack = self.stack
        while pos < size:
            op = buf[pos]
            at = pos
            pos += 1
            if op in _INT_RUNS:  # a run of small ints (the ids list): decode vectorized
                width = np.dtype(_INT_RUNS[op]).itemsize + 1
                count = min((size - at) // width, 4096)
                if count == 0:
                    raise self.fail("the file ends inside an integer (truncated?)", at)
                rec = np.frombuffer(buf, dtype=np.dtype([("op", "u1"), ("v", _INT_RUNS[op])]), count=count, offset=at)
                bad = np.flatnonzero(rec["op"] != op)
                n = int(bad[0]) if len(bad) else count
                values = rec["v"][:n].astype(np.int64)
                stack.append(int(values[0]) if n == 1 else values)
                pos = at + n * width
                continue
            if op == 0x80:  # PROTO
                self.protocol = buf[pos]
                pos += 1
            elif op == 0x95:  # FRAME: frames only chunk the stream; opcodes continue across them
                pos += 8
            elif op == ord("."):  # STOP
                if len(stack) != 1:
                    raise self.fail("the stack does not hold one object at STOP", at)
                return stack[0]
            elif op == ord("("):
                stack.append(_Mark())
            elif op == ord(")"):
                stack.append(())
            elif op == ord("]"):
                stack.append(_IntList())
            elif op in (ord("a"), ord("e")):  # APPEND, APPENDS
                items = [self.pop()] if op == ord("a") else self.pop_mark()
                target = stack[-1]
                if not isinstance(target, _IntList):
                    raise self.fail("APPEND to something other than the ids list", at)
                target.extend(items)
            elif op == ord("t"):
                stack.append(_tuple(self.pop_mark()))
            elif op in (0x85, 0x86, 0x87):  # TUPLE1..3
                items = [self.pop() for _ in range(op - 0x84)][::-1]
                stack.append(tuple(items))
            elif op == ord("N"):
                stack.append(None)
            elif op in (0x88, 0x89):
                stack.append(op == 0x88)
            elif op == 0x8A:  # LONG1
                n = buf[pos]
                stack.append(int.from_bytes(buf[pos + 1 : pos + 1 + n], "little", signed=True))
                pos += 1 + n
            elif op == ord("c"):  # GLOBAL module\nname\n
                end1 = buf.find(b"\n", pos)
                end2 = buf.find(b"\n", end1 + 1)
                stack.append(self._global(buf[pos:end1].decode(), buf[end1 + 1 : end2].decode(), at))
                pos = end2 + 1
            elif op == 0x93:  # STACK_GLOBAL
                name = self.pop()
                module = self.pop()
                stack.append(self._global(_text(self, module, at), _text(self, name, at), at))
            elif op in (0x8C, ord("X"), 0x8D, ord("C"), ord("B"), 0x8E, 0x96, ord("U"), ord("T")):
                fmt = {0x8C: "<B", ord("X"): "<I", 0x8D: "<Q", ord("C"): "<B", ord("B"): "<I", 0x8E: "<Q", 0x96: "<Q",
                       ord("U"): "<B", ord("T"): "<I"}[op]
                (length,) = unpack(fmt, buf, pos)
                pos += struct.calcsize(fmt)
                kind: Literal["bytes", "utf8"] = "utf8" if op in (0x8C, ord("X"), 0x8D) else "bytes"
                if pos + length > size:
                    raise self.fail("a payload runs past the end of the file (truncated?)", at)
                value = bytes(buf[pos : pos + length]) if length <= SMALL_PAYLOAD else None
                if kind == "utf8" and value is not None:
                    stack.append(value.decode("utf-8"))
                else:
                    stack.append(_Blob(pos, length, kind, value))
                pos += length
            elif op == 0x94:  # MEMOIZE
                self.memo[len(self.memo)] = self.top()
            elif op in (ord("q"), ord("r")):  # BINPUT, LONG_BINPUT
                fmt = "<B" if op == ord("q") else "<I"
                (idx,) = unpack(fmt, buf, pos)
                pos += struct.calcsize(fmt)
                self.memo[idx] = self.top()
            elif op in (ord("h"), ord("j")):  # BINGET, LONG_BINGET
                fmt = "<B" if op == ord("h") else "<I"
                (idx,) = unpack(fmt, buf, pos)
                pos += struct.calcsize(fmt)
                if idx not in self.memo:
                    raise self.fail(f"memo {idx} read before it was written", at)
                stack.append(self.memo[idx])
            elif op == ord("R"):  # REDUCE: recorded, never called
                args = self.pop()
                func = self.pop()
                if func == _Global("_codecs", "encode"):
                    stack.append(self._latin1(args, at))
                elif isinstance(func, _Global) and func.name == "bytes" and args == ():
                    stack.append(_Blob(-1, 0, "bytes", b""))
                else:
                    stack.append(_Call(func, args if isinstance(args, tuple) else (args,)))
            elif op == ord("b"):  # BUILD
                state = self.pop()
                stack.append(_Built(self.pop(), state))
            elif op == ord("0"):
                self.pop()
            elif op == ord("1"):
                self.pop_mark()
            elif op == ord("2"):
                stack.append(self.top())
            elif op == 0x98:  # READONLY_BUFFER: no effect on a located payload
                pass
            elif op == 0x97:
                raise self.fail("an out-of-band buffer (NEXT_BUFFER)", at)
            else:
                raise self.fail(f"unexpected pickle opcode 0x{op:02x}", at)
        raise self.fail("no STOP opcode (truncated file?)", size)

    def _global(self, module: str, name: str, at: int) -> _Global:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise self.fail(f"the global {module}.{name} (only numpy arrays and a list of ids are expected)", at)
        return _Global(module, name)

    def _latin1(self, args: Any, at: int) -> Any:
        if not (isinstance(args, tuple) and len(args) == 2 and args[1] == "latin1"):
            raise self.fail("_codecs.encode with unexpected arguments", at)
        text = args[0]
        if isinstance(text, str):
            return _Blob(-1, len(text), "bytes", text.encode("latin-1"))
        if isinstance(text, _Blob) and text.kind == "utf8":
            return _Latin1(text)
        raise self.fail("_codecs.encode of something other than text", at)


def _text(scanner: _Scanner, value: Any, at: int) -> str:
    if not isinstance(value, str):
        raise scanner.fail("a global named by something other than text", at)
    return value


def _tuple(items: list[Any]) -> tuple[Any, ...]:
    """A tuple's items; int runs (decoded vectorized) become plain ints again."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, np.ndarray):
            out.extend(int(v) for v in item)
        else:
            out.append(item)
    return tuple(out)


def _dtype(scanner: _Scanner, obj: Any) -> np.dtype:
    if isinstance(obj, _Built) and isinstance(obj.obj, _Call) and obj.obj.func == _Global("numpy", "dtype"):
        typestr = obj.obj.args[0]
        state = obj.state
        order = state[1] if isinstance(state, tuple) and len(state) > 1 and isinstance(state[1], str) else "="
        if isinstance(typestr, str):
            dt = np.dtype(typestr)
            return dt.newbyteorder("<" if order == "<" else ">") if order in ("<", ">") else dt
    raise scanner.fail("the array's dtype is not a plain numpy dtype", -1)


Located = tuple[int, int, Literal["raw", "latin1", "inline"], bytes | None]


def _located(scanner: _Scanner, data: Any) -> Located:
    if isinstance(data, _Blob) and data.kind == "bytes":
        if data.offset < 0:  # a small array written as text (protocols <= 2): decoded already
            return -1, data.length, "inline", data.value
        return data.offset, data.length, "raw", None
    if isinstance(data, _Latin1):
        return data.blob.offset, data.blob.length, "latin1", None
    raise scanner.fail("the array's data is not a byte payload", -1)


def _array(scanner: _Scanner, obj: Any) -> tuple[Located, np.dtype, tuple[int, ...], bool]:
    # protocol 5: _frombuffer(data, dtype, shape, order)
    if isinstance(obj, _Call) and isinstance(obj.func, _Global) and obj.func.name == "_frombuffer":
        data, dtype, shape, order = obj.args
        return _located(scanner, data), _dtype(scanner, dtype), tuple(int(s) for s in shape), order == "F"
    # protocols 0-4: _reconstruct(ndarray, (0,), b'b') then BUILD (1, shape, dtype, fortran, data)
    if (
        isinstance(obj, _Built)
        and isinstance(obj.obj, _Call)
        and isinstance(obj.obj.func, _Global)
        and obj.obj.func.name == "_reconstruct"
        and isinstance(obj.state, tuple)
        and len(obj.state) == 5
    ):
        _version, shape, dtype, fortran, data = obj.state
        return _located(scanner, data), _dtype(scanner, dtype), tuple(int(s) for s in shape), bool(fortran)
    raise scanner.fail("the second item is not a numpy array", -1)


def scan_embedding_pickle(path: str | Path) -> PickledArray:
    """Ids and array location of a ``pickle.dump((ids, array))`` file, without unpickling it.

    Memory: the ids (8 bytes each) and the pickle's opcodes before the array; the array's payload is
    never read. Raises `PickleFormatError` for anything that is not of that shape.
    """
    path = Path(path)
    scanner = _Scanner(path)
    if path.stat().st_size == 0:
        raise scanner.fail("empty file", 0)
    with path.open("rb") as fh:
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        top = scanner.run(buf)
    finally:
        scanner.stack.clear()
        scanner.memo.clear()
        try:
            buf.close()
        except BufferError:  # a numpy view of it is still referenced (an error's traceback): let GC close it
            pass
    if not (isinstance(top, tuple) and len(top) == 2):
        raise scanner.fail("the pickled object is not a pair (ids, vectors)", -1)
    ids_obj, arr_obj = top
    if not isinstance(ids_obj, _IntList):
        raise scanner.fail("the first item is not a list of integer ids", -1)
    (offset, length, enc, inline), dtype, shape, fortran = _array(scanner, arr_obj)
    need = int(np.prod(shape)) * dtype.itemsize
    if enc != "latin1" and length != need:
        raise scanner.fail(f"the array data has {length} bytes, its shape {shape} needs {need}", offset)
    return PickledArray(path, ids_obj.array(), offset, length, dtype, shape, fortran, enc, scanner.protocol, inline)
