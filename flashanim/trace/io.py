"""Save and load traces as JSON (schema ``"flashanim.trace/1"``), validated.

A trace file is one JSON object::

    {
      "schema": "flashanim.trace/1",
      "meta": {"kernel": "fa2-fwd", "batch": 1, ..., "seed": 0},
      "programs": {"columns": ["program", "bh", "block", "n_events", "sm",
                               "start_ns", "end_ns", "launch"],
                   "rows": [[0, 0, 0, 12, null, null, null, "fwd"], ...]},
      "events": {"columns": ["program", "step", "op", "tensor", "row", "col",
                             "nbytes", "time_ns", "sm"],
                 "rows": [[0, 0, "load", "Q", 0, 0, 64, null, null], ...]},
      "values": [{"event": 0, "shape": [4, 4], "data": [[0.5, "-inf", ...], ...]}],
      "tensors": {"Q": {"shape": [1, 1, 16, 4], "data": [[[[...]]]]}, ...}
    }

Events are compact rows under a column list (a GPU trace has many); an event's
``index`` is its position and its ``bh`` that of its program. Floats that JSON
cannot hold are the strings ``"inf"``, ``"-inf"`` and ``"nan"``. A path ending in
``.gz`` is gzip-compressed (and a gzip file is recognised by its magic bytes when
loading). Writes are atomic: the file is written beside the target under a
temporary name and moved over it, so a good file is never replaced by half of one.

:func:`load_trace` reads JSON only (no pickle, no ``eval``) and checks everything:
schema, keys, types, ranges, names, step order and shapes. Any problem is a
:class:`~flashanim.trace.TraceFormatError` whose message names the file, the place
(``events.rows[12][4]``) and what was wrong.

Beyond the syntax, the semantics are checked (:func:`check_semantics`): block sizes
the kernels accept (powers of two, 1 .. 256), the kernel name consistent with the
programs' launches and the events' operations, every tile coordinate inside the
grid of blocks (``T_r`` Q blocks, ``T_c`` K/V blocks), every program's own block
inside its grid, and the run's input and output tensors finite.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import tempfile
import zlib
from dataclasses import fields, replace
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from ._protocol import TraceFormatError, ops, tensors
from .decode import K_AXIS, TILE_AXES
from .model import KERNELS, Event, Program, Trace, TraceMeta

__all__ = [
    "SCHEMA",
    "save_trace",
    "load_trace",
    "trace_to_dict",
    "trace_from_dict",
    "dumps_trace",
    "loads_trace",
    "check_semantics",
    "KERNEL_LAUNCHES",
    "KERNEL_OPS",
    "BLOCK_SIZES",
]

#: The schema tag every trace file starts with.
SCHEMA = "flashanim.trace/1"

PROGRAM_COLUMNS = (
    "program",
    "bh",
    "block",
    "n_events",
    "sm",
    "start_ns",
    "end_ns",
    "launch",
)
EVENT_COLUMNS = (
    "program",
    "step",
    "op",
    "tensor",
    "row",
    "col",
    "nbytes",
    "time_ns",
    "sm",
)
_TOP_KEYS = ("schema", "meta", "programs", "events", "values", "tensors")
_DTYPES = ("float32", "float16", "bfloat16")
_INT64 = 2**63 - 1
#: Largest decompressed file accepted (bytes): a guard against gzip bombs.
MAX_FILE_BYTES = 4 << 30
#: Largest number of elements in one array (value snapshot or tensor).
MAX_ARRAY_ELEMENTS = 1 << 28

_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}

#: Block sizes some backend of the kernels accepts (``kernels/_common.py``:
#: powers of two, 1 .. 128 in Triton's interpreter, 16 .. 256 on the GPU).
BLOCK_SIZES: tuple[int, ...] = tuple(1 << k for k in range(9))
#: The launches each kernel's recorder writes (``Program.launch``).
KERNEL_LAUNCHES: dict[str, frozenset[str]] = {
    "fa2-fwd": frozenset({"fwd"}),
    "fa2-bwd": frozenset({"preprocess", "dkdv", "dq"}),
    "fa1-fwd": frozenset({"fwd"}),
    "standard": frozenset({"qk", "softmax", "pv"}),
    "fa2-decode": frozenset({"split", "reduce"}),
}
#: The operations each kernel records (its trace calls).
KERNEL_OPS: dict[str, frozenset[str]] = {
    "fa2-fwd": frozenset(
        "load store qk mask rowmax exp alpha rowsum rescale pv normalize lse".split()
    ),
    "fa2-bwd": frozenset("load store qk mask recompute rowdot dp ds dv dk dq".split()),
    "fa1-fwd": frozenset("load store qk mask rowmax exp rowsum update".split()),
    "standard": frozenset("load store qk mask softmax pv".split()),
    "fa2-decode": frozenset(
        "load store qk mask rowmax exp alpha rowsum rescale pv normalize lse "
        "merge".split()
    ),
}
#: Meta fields only some kernels have: written only when set, required for them.
_KERNEL_META: dict[str, tuple[str, ...]] = {"fa2-decode": ("heads_kv", "num_splits")}
#: Tensors whose every entry must be finite (inputs and outputs of the run).
_FINITE_TENSORS = ("Q", "K", "V", "O", "dO", "dQ", "dK", "dV")


# --------------------------------------------------------------------------- save


def _float_out(x: float) -> float | str:
    if math.isfinite(x):
        return x
    if math.isnan(x):
        return "nan"
    return "inf" if x > 0 else "-inf"


def _array_out(a: np.ndarray) -> Any:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 0:
        return _float_out(float(a))
    if np.isfinite(a).all():
        return a.tolist()
    return [_array_out(x) for x in a]


def trace_to_dict(trace: Trace) -> dict[str, Any]:
    """The JSON-ready document of ``trace`` (see the module docstring)."""
    meta = {f.name: getattr(trace.meta, f.name) for f in fields(TraceMeta)}
    for k in ("heads_kv", "num_splits"):
        if meta[k] is None:
            del meta[k]
    if isinstance(meta["softmax_scale"], float):
        meta["softmax_scale"] = _float_out(meta["softmax_scale"])
    return {
        "schema": SCHEMA,
        "meta": meta,
        "programs": {
            "columns": list(PROGRAM_COLUMNS),
            "rows": [
                [
                    p.program,
                    p.bh,
                    p.block,
                    p.n_events,
                    p.sm,
                    p.start_ns,
                    p.end_ns,
                    p.launch,
                ]
                for p in trace.programs
            ],
        },
        "events": {
            "columns": list(EVENT_COLUMNS),
            "rows": [
                [
                    e.program,
                    e.step,
                    e.op,
                    e.tensor,
                    e.row,
                    e.col,
                    e.nbytes,
                    e.time_ns,
                    e.sm,
                ]
                for e in trace.events
            ],
        },
        "values": [
            {
                "event": e.index,
                "shape": list(np.shape(e.value)),
                "data": _array_out(e.value),
            }
            for e in trace.events
            if e.value is not None
        ],
        "tensors": {
            name: {"shape": list(np.shape(a)), "data": _array_out(a)}
            for name, a in trace.tensors.items()
        },
    }


def dumps_trace(trace: Trace) -> str:
    """``trace`` as a JSON string, checked to load back (raises if it would not)."""
    doc = trace_to_dict(trace)
    text = json.dumps(doc, allow_nan=False, separators=(",", ":"))
    trace_from_dict(doc, where="<trace being saved>")
    return text


def save_trace(trace: Trace, path: str | os.PathLike[str]) -> Path:
    """Write ``trace`` to ``path`` as JSON (gzip'ed when the name ends in ``.gz``).

    The document is built and checked before the file is touched, written to a
    temporary file in the same directory and moved over ``path`` with
    :func:`os.replace`; on any failure the old file (if any) is left as it was.

    Returns
    -------
    Path
        The path written.
    """
    path = Path(path)
    data = dumps_trace(trace).encode("utf-8")
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # as open() would create it
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- load


def _reject_constant(name: str) -> None:
    raise TraceFormatError(f"non-standard JSON constant {name!r}")


def loads_trace(text: str | bytes, where: str = "<string>") -> Trace:
    """Parse and validate a trace document from a JSON string (or gzip bytes)."""
    if isinstance(text, bytes | bytearray):
        raw = bytes(text)
        if raw[:2] == b"\x1f\x8b":
            try:
                d = zlib.decompressobj(wbits=31)
                raw = d.decompress(raw, MAX_FILE_BYTES)
                if d.unconsumed_tail:
                    raise TraceFormatError(
                        f"{where}: decompresses to more than {MAX_FILE_BYTES} bytes"
                    )
                if not d.eof:
                    raise TraceFormatError(
                        f"{where}: truncated gzip data (the file ends early)"
                    )
            except zlib.error as exc:
                raise TraceFormatError(
                    f"{where}: not valid gzip data ({exc})"
                ) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TraceFormatError(
                f"{where}: not a JSON trace (not UTF-8 text: {exc.reason} at byte "
                f"{exc.start})"
            ) from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except TraceFormatError as exc:
        raise TraceFormatError(f"{where}: {exc}") from None
    except json.JSONDecodeError as exc:
        # truncated: a document cut short (nothing after the failing place closes
        # a value or a list)
        rest = text[exc.pos :]
        cut = exc.pos >= len(text.rstrip()) or (
            text.lstrip().startswith(("{", "[")) and not any(c in rest for c in ",]}")
        )
        what = "truncated JSON" if cut else "invalid JSON"
        raise TraceFormatError(
            f"{where}: {what} ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise TraceFormatError(f"{where}: JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with too many digits
        raise TraceFormatError(f"{where}: unreadable JSON number ({exc})") from None
    return trace_from_dict(doc, where=where)


def load_trace(path: str | os.PathLike[str]) -> Trace:
    """Load and validate a trace file written by :func:`save_trace`.

    Raises
    ------
    TraceFormatError
        The file is not a valid ``flashanim.trace/1`` document; the message names
        the file, the place in it and the problem.
    OSError
        The file cannot be read.
    """
    path = Path(path)
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise TraceFormatError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    return loads_trace(data, where=str(path))


class _Checker:
    """Type and range checks that name the place of a problem."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, at: str, msg: str) -> TraceFormatError:
        return TraceFormatError(f"{self.where}: {at}: {msg}")

    def obj(self, x: Any, at: str, keys: tuple[str, ...], optional=()) -> dict:
        if not isinstance(x, dict):
            raise self.fail(at, f"expected an object, got {_kind(x)}")
        missing = [k for k in keys if k not in x and k not in optional]
        if missing:
            raise self.fail(at, f"missing key(s) {', '.join(map(repr, missing))}")
        extra = [k for k in x if k not in keys]
        if extra:
            raise self.fail(at, f"unexpected key(s) {', '.join(map(repr, extra))}")
        return x

    def list(self, x: Any, at: str, length: int | None = None) -> list:
        if not isinstance(x, list):
            raise self.fail(at, f"expected a list, got {_kind(x)}")
        if length is not None and len(x) != length:
            raise self.fail(at, f"expected {length} entries, got {len(x)}")
        return x

    def int(
        self,
        x: Any,
        at: str,
        lo: int = -_INT64 - 1,
        hi: int = _INT64,
        none: bool = False,
    ) -> int | None:
        if x is None and none:
            return None
        if not isinstance(x, int) or isinstance(x, bool):
            want = "an integer or null" if none else "an integer"
            raise self.fail(at, f"expected {want}, got {_kind(x)}")
        if not lo <= x <= hi:
            raise self.fail(at, f"{x} is out of range [{lo}, {hi}]")
        return x

    def bool(self, x: Any, at: str) -> bool:
        if not isinstance(x, bool):
            raise self.fail(at, f"expected true or false, got {_kind(x)}")
        return x

    def str(self, x: Any, at: str, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(x, str):
            raise self.fail(at, f"expected a string, got {_kind(x)}")
        if choices is not None and x not in choices:
            raise self.fail(at, f"unknown {x!r}; expected one of {', '.join(choices)}")
        return x

    def float(self, x: Any, at: str) -> float:
        if isinstance(x, str) and x in _NONFINITE:
            return _NONFINITE[x]
        if isinstance(x, bool) or not isinstance(x, int | float):
            raise self.fail(at, f"expected a number, got {_kind(x)}")
        try:
            f = float(x)
        except OverflowError:
            raise self.fail(at, "number too large for a float") from None
        if not math.isfinite(f):
            raise self.fail(at, f"number {x!r} too large (use the strings 'inf')")
        return f

    def shape(self, x: Any, at: str, ndim: int | None = None) -> tuple[int, ...]:
        dims = self.list(x, at, ndim)
        if len(dims) > 8:
            raise self.fail(at, f"{len(dims)} dimensions (at most 8)")
        shape = tuple(
            self.int(n, f"{at}[{i}]", 0, MAX_ARRAY_ELEMENTS) for i, n in enumerate(dims)
        )
        if math.prod(shape) > MAX_ARRAY_ELEMENTS:
            raise self.fail(at, f"{shape} has too many elements")
        return shape  # type: ignore[return-value]

    def array(self, x: Any, at: str, shape: tuple[int, ...]) -> np.ndarray:
        fast = _plain_array(x, shape)
        if fast is not None:
            return fast
        # something is off (or a non-finite string): walk it for the exact place
        out = np.empty(shape, dtype=np.float64)
        flat = out.reshape(-1)
        pos = 0

        def walk(node: Any, depth: int, place: str) -> None:
            nonlocal pos
            if depth == len(shape):
                flat[pos] = self.float(node, place)
                pos += 1
                return
            self.list(node, place, shape[depth])
            for i, child in enumerate(node):
                walk(child, depth + 1, f"{place}[{i}]")

        walk(x, 0, at)
        return out


def _plain_array(x: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """``x`` as a float64 array when it is exactly nested lists of ``shape`` whose
    leaves are all finite ints or floats (not booleans); else ``None``, and the
    checker's element-by-element walk says what is wrong. The common case of a
    valid trace, at C speed (the walk costs ~3 µs per number)."""
    if not isinstance(x, list):
        return None
    try:
        a = np.array(x)
    except (ValueError, OverflowError, TypeError):
        return None
    if a.shape != shape or a.dtype.kind not in "fi":
        return None
    leaves = x
    for _ in range(len(shape) - 1):
        leaves = list(chain.from_iterable(leaves))
    if not set(map(type, leaves)) <= {int, float}:
        return None  # booleans (numpy reads them as 0/1) or subclasses
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        return None
    return a


def _kind(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, str):
        return f"the string {x[:40]!r}"
    if isinstance(x, int | float):
        return f"the number {x!r}"[:60]
    return {dict: "an object", list: "a list"}.get(type(x), type(x).__name__)


def _meta(c: _Checker, x: Any) -> TraceMeta:
    names = tuple(f.name for f in fields(TraceMeta))
    optional = ("triton_version", "torch_version", "gpu_name", "created", "seed")
    optional += ("heads_kv", "num_splits")
    m = c.obj(x, "meta", names, optional)
    kw: dict[str, Any] = {}
    kw["kernel"] = c.str(m["kernel"], "meta.kernel", KERNELS)
    for k in ("batch", "heads", "seq_len_q", "seq_len_k", "head_dim"):
        kw[k] = c.int(m[k], f"meta.{k}", 1, 1 << 40)
    for k in ("block_m", "block_n"):
        kw[k] = c.int(m[k], f"meta.{k}", 1, 1 << 20)
    kw["causal"] = c.bool(m["causal"], "meta.causal")
    kw["dtype"] = c.str(m["dtype"], "meta.dtype", _DTYPES)
    kw["softmax_scale"] = c.float(m["softmax_scale"], "meta.softmax_scale")
    kw["device"] = c.str(m["device"], "meta.device")
    kw["values"] = c.bool(m["values"], "meta.values")
    for k in ("triton_version", "torch_version", "gpu_name", "created"):
        if k in m:
            kw[k] = c.str(m[k], f"meta.{k}")
    if "seed" in m:
        kw["seed"] = c.int(m["seed"], "meta.seed", none=True)
    need = _KERNEL_META.get(kw["kernel"], ())
    for k in ("heads_kv", "num_splits"):
        if k not in m:
            if k in need:
                raise c.fail(f"meta.{k}", f"required for kernel {kw['kernel']!r}")
            continue
        if k not in need:
            raise c.fail(f"meta.{k}", f"only kernel 'fa2-decode' has {k}")
        kw[k] = c.int(m[k], f"meta.{k}", 1, 1 << 40)
    if "heads_kv" in kw and kw["heads"] % kw["heads_kv"]:
        raise c.fail(
            "meta.heads_kv",
            f"{kw['heads_kv']} K/V heads do not divide {kw['heads']} query heads",
        )
    return TraceMeta(**kw)


def _table(c: _Checker, x: Any, at: str, columns: tuple[str, ...]) -> list:
    t = c.obj(x, at, ("columns", "rows"))
    cols = c.list(t["columns"], f"{at}.columns")
    if cols != list(columns):
        raise c.fail(f"{at}.columns", f"expected {list(columns)}, got {cols!r}"[:300])
    rows = c.list(t["rows"], f"{at}.rows")
    for i, r in enumerate(rows):
        c.list(r, f"{at}.rows[{i}]", len(columns))
    return rows


def _tensor_shapes(meta: TraceMeta) -> dict[str, tuple[int, ...]]:
    b, h, nq, nk, d = (
        meta.batch,
        meta.heads,
        meta.seq_len_q,
        meta.seq_len_k,
        meta.head_dim,
    )
    q, k = (b, h, nq, d), (b, meta.heads_kv or h, nk, d)
    return {
        "Q": q,
        "O": q,
        "dO": q,
        "dQ": q,
        "K": k,
        "V": k,
        "dK": k,
        "dV": k,
        "LSE": (b, h, nq),
        "D": (b, h, nq),
        "l": (b, h, nq),
        "m": (b, h, nq),
        "S": (b, h, nq, meta.seq_len_k),
        "P": (b, h, nq, meta.seq_len_k),
    }


def _check_value_shape(
    c: _Checker, at: str, e: Event, shape: tuple[int, ...], meta: TraceMeta
) -> None:
    """A snapshot must fit the tensor it shows (after the decoder's cropping)."""
    axes = TILE_AXES.get(e.tensor)
    if axes is None:
        return
    lim = {"q": meta.rows_q, "k": meta.seq_len_k}
    kinds = [k for k, _ in axes]
    if kinds == ["q", "k"]:
        ok = (shape[0] <= lim["q"] and shape[1] <= lim["k"]) or (
            shape[0] <= lim["k"] and shape[1] <= lim["q"]
        )
    else:
        want = {"d": (meta.head_dim,), "1": (1,)}
        ok = all(
            n <= lim[k] if k in lim else n in want[k]
            for n, k in zip(shape, kinds, strict=True)
        )
    if not ok:
        raise c.fail(
            at,
            f"a {list(shape)} snapshot does not fit event {e.index}'s tensor "
            f"{e.tensor} (N_q={meta.seq_len_q}, N_k={meta.seq_len_k}, "
            f"d={meta.head_dim})",
        )


def trace_from_dict(doc: Any, where: str = "<document>") -> Trace:
    """Validate a parsed trace document and build the :class:`Trace`.

    Raises
    ------
    TraceFormatError
        Anything out of place, with where it is.
    """
    c = _Checker(where)
    if isinstance(doc, dict) and "schema" in doc and doc["schema"] != SCHEMA:
        got = doc["schema"]
        raise c.fail(
            "schema",
            f"unsupported schema {got!r}"[:120] + f"; this version reads {SCHEMA!r}",
        )
    c.obj(doc, "the document", _TOP_KEYS)
    meta = _meta(c, doc["meta"])
    op_names, tensor_names = ops(), tensors()
    n_bh = meta.batch_heads
    tile_hi = max(meta.rows_q, meta.seq_len_k)

    programs: list[Program] = []
    for i, r in enumerate(_table(c, doc["programs"], "programs", PROGRAM_COLUMNS)):
        at = f"programs.rows[{i}]"
        prog = c.int(r[0], f"{at}[0] (program)", 0)
        if prog != i:
            raise c.fail(f"{at}[0] (program)", f"program {prog} where {i} was due")
        programs.append(
            Program(
                program=prog,
                bh=c.int(r[1], f"{at}[1] (bh)", 0, n_bh - 1),  # type: ignore[arg-type]
                block=c.int(r[2], f"{at}[2] (block)", -1, tile_hi),  # type: ignore[arg-type]
                n_events=c.int(r[3], f"{at}[3] (n_events)", 0),  # type: ignore[arg-type]
                sm=c.int(r[4], f"{at}[4] (sm)", 0, none=True),
                start_ns=c.int(r[5], f"{at}[5] (start_ns)", 0, none=True),
                end_ns=c.int(r[6], f"{at}[6] (end_ns)", 0, none=True),
                launch=c.str(r[7], f"{at}[7] (launch)"),
            )
        )

    events: list[Event] = []
    rows = _table(c, doc["events"], "events", EVENT_COLUMNS)
    expected = iter([(p.program, s) for p in programs for s in range(p.n_events)])
    for i, r in enumerate(rows):
        at = f"events.rows[{i}]"
        prog = c.int(r[0], f"{at}[0] (program)", 0)
        if prog >= len(programs):
            raise c.fail(
                f"{at}[0] (program)",
                f"program {prog} has no header (there are {len(programs)})",
            )
        step = c.int(r[1], f"{at}[1] (step)", 0)
        due = next(expected, None)
        if due != (prog, step):
            raise c.fail(
                at,
                f"event (program {prog}, step {step}) out of order; expected "
                + (
                    "no more events"
                    if due is None
                    else f"program {due[0]}, step {due[1]}"
                )
                + " (steps must be consecutive and match each program's n_events)",
            )
        op = c.str(r[2], f"{at}[2] (op)", op_names)
        nbytes = c.int(r[6], f"{at}[6] (nbytes)", 0)
        if op not in ("load", "store") and nbytes != 0:
            raise c.fail(f"{at}[6] (nbytes)", f"{op!r} moves no bytes, got {nbytes}")
        events.append(
            Event(
                index=i,
                program=prog,  # type: ignore[arg-type]
                step=step,  # type: ignore[arg-type]
                op=op,
                tensor=c.str(r[3], f"{at}[3] (tensor)", tensor_names),
                row=c.int(r[4], f"{at}[4] (row)", -1, tile_hi),  # type: ignore[arg-type]
                col=c.int(r[5], f"{at}[5] (col)", -1, tile_hi),  # type: ignore[arg-type]
                nbytes=nbytes,  # type: ignore[arg-type]
                bh=programs[prog].bh,  # type: ignore[index]
                time_ns=c.int(r[7], f"{at}[7] (time_ns)", 0, none=True),
                sm=c.int(r[8], f"{at}[8] (sm)", 0, none=True),
            )
        )
    left = next(expected, None)
    if left is not None:
        raise c.fail(
            "events.rows",
            f"ends before program {left[0]}'s step {left[1]} (its header promises "
            f"{programs[left[0]].n_events} events)",
        )

    values = c.list(doc["values"], "values")
    last = -1
    for i, v in enumerate(values):
        at = f"values[{i}]"
        c.obj(v, at, ("event", "shape", "data"))
        ev = c.int(v["event"], f"{at}.event", 0)
        if ev >= len(events):  # type: ignore[operator]
            raise c.fail(f"{at}.event", f"no event {ev} (there are {len(events)})")
        if ev <= last:  # type: ignore[operator]
            raise c.fail(
                f"{at}.event", f"event {ev} after event {last} (not ascending)"
            )
        last = ev  # type: ignore[assignment]
        shape = c.shape(v["shape"], f"{at}.shape", 2)
        e = events[ev]  # type: ignore[index]
        _check_value_shape(c, f"{at}.shape", e, shape, meta)
        events[ev] = replace(e, value=c.array(v["data"], f"{at}.data", shape))

    tensors_doc = c.obj(
        doc["tensors"], "tensors", tuple(tensor_names), optional=tuple(tensor_names)
    )
    expect = _tensor_shapes(meta)
    arrays: dict[str, np.ndarray] = {}
    for name, t in tensors_doc.items():
        at = f"tensors.{name}"
        c.obj(t, at, ("shape", "data"))
        shape = c.shape(t["shape"], f"{at}.shape")
        if name in expect and shape != expect[name]:
            raise c.fail(
                f"{at}.shape",
                f"{list(shape)} does not match the meta's {list(expect[name])}",
            )
        arrays[name] = c.array(t["data"], f"{at}.data", shape)
    trace = Trace(
        meta=meta, events=tuple(events), programs=tuple(programs), tensors=arrays
    )
    check_semantics(trace, where)
    return trace


def check_semantics(trace: Trace, where: str = "<trace>") -> None:
    """Refuse a well-formed trace that no kernel run could have written.

    Checks the block sizes (:data:`BLOCK_SIZES`), that the programs' launches and
    the events' operations belong to ``meta.kernel`` (:data:`KERNEL_LAUNCHES`,
    :data:`KERNEL_OPS`), that every tile coordinate lies inside the grid of blocks
    (``T_r`` for the query axis, ``T_c`` for the key axis), and that the tensors of
    :data:`_FINITE_TENSORS` are finite.

    Raises
    ------
    TraceFormatError
        Naming the file, the place and what is wrong.
    """
    c = _Checker(where)
    meta = trace.meta
    for k in ("block_m", "block_n"):
        b = getattr(meta, k)
        if b not in BLOCK_SIZES:
            raise c.fail(
                f"meta.{k}",
                f"{b} is not a block size the kernels accept (a power of two, "
                f"{BLOCK_SIZES[0]} .. {BLOCK_SIZES[-1]})",
            )
    kernel = meta.kernel
    launches = KERNEL_LAUNCHES[kernel]
    for p in trace.programs:
        if p.launch not in launches:
            raise c.fail(
                f"programs.rows[{p.program}][7] (launch)",
                f"launch {p.launch!r} is not one of the {kernel} kernel's "
                f"({', '.join(sorted(launches))}); is meta.kernel right?",
            )
    allowed = KERNEL_OPS[kernel]
    t_r, t_c = meta.t_r, meta.t_c
    decode = kernel == "fa2-decode"
    if decode:  # the split's slices and the reduce's packed rows
        splits = meta.num_splits or 1
        n_split = sum(p.launch == "split" for p in trace.programs)
        if n_split != meta.batch_heads * t_r * splits:
            raise c.fail(
                "programs",
                f"{n_split} split programs, but B*H_kv*T_r*num_splits = "
                f"{meta.batch_heads}*{t_r}*{splits}",
            )
    for e in trace.events:
        at = f"events.rows[{e.index}]"
        if e.op not in allowed:
            raise c.fail(
                f"{at}[2] (op)",
                f"the {kernel} kernel records no {e.op!r} events; is meta.kernel "
                f"right?",
            )
        names = ("T_r", "T_c")
        if decode and trace.programs[e.program].launch == "reduce":
            # one packed row r: tiles (r, 0)
            row_hi, col_hi, names = meta.rows_q, 1, ("packed rows G*N_q", "columns")
        elif decode and e.tensor in ("O_s", "LSE_s"):  # (i, s)
            row_hi, col_hi, names = t_r, splits, ("T_r", "num_splits")
        elif e.tensor in K_AXIS:
            row_hi, col_hi, names = t_c, t_c, ("T_c", "T_c")
        else:  # Q-like (i, 0); S, P, dP, dS: (i, j)
            row_hi, col_hi = t_r, t_c
        for name, pos, v, hi, grid in (
            ("row", 4, e.row, row_hi, names[0]),
            ("col", 5, e.col, col_hi, names[1]),
        ):
            if v >= hi:
                raise c.fail(
                    f"{at}[{pos}] ({name})",
                    f"tile {name} {v} of {e.tensor} is outside the grid: "
                    f"{grid} = {hi}{' blocks' if grid[:2] == 'T_' else ''} "
                    f"(N_q={meta.seq_len_q}, "
                    f"N_k={meta.seq_len_k}, BLOCK_M={meta.block_m}, "
                    f"BLOCK_N={meta.block_n})",
                )
    for p in trace.programs:
        hi = t_c if p.launch == "dkdv" else t_r
        if decode:  # split s, or the reduce's packed row r
            hi = splits if p.launch == "split" else meta.rows_q
        if p.block >= hi:
            raise c.fail(
                f"programs.rows[{p.program}][2] (block)",
                f"program block {p.block} is outside the grid of {hi} blocks",
            )
    for name in _FINITE_TENSORS:
        a = trace.tensors.get(name)
        if a is None:
            continue
        bad = ~np.isfinite(a)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise c.fail(
                f"tensors.{name}",
                f"{int(bad.sum())} non-finite entr{'y' if bad.sum() == 1 else 'ies'} "
                f"({a[first]} at {list(first)}): the run's tensors must be finite",
            )
