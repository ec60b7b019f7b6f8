"""A strict stand-in device for tests: numpy underneath, but behaving like cupy where host and
device meet, so that a host array leaking into training state fails here, on every machine.

- its arrays (`DeviceArray`) are not `numpy.ndarray`;
- `asarray` of a host array copies (as `cupy.asarray` does), so writing into the result never
  reaches the host array;
- implicit conversion to numpy raises `TypeError` (cupy's `__array__`), and so does mixing a
  host array into a device computation; the host sees values only through `to_numpy`.

Computation is numpy's on the wrapped arrays, so results are bit-identical to the numpy
backend. Not a user backend: tests register it as "standin"."""
from __future__ import annotations

import numpy as np

from core import backend as backends

NAME = "standin"


class DeviceArray:
    """An array 'on the device': a numpy array only this module unwraps."""
    __slots__ = ("_host",)
    __array_priority__ = 1000

    def __init__(self, array: np.ndarray):
        self._host = array

    # ---- what cupy refuses -----------------------------------------------------------------
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed (stand-in device); "
                        "use backend.to_numpy() explicitly")

    def __getattr__(self, name):
        if name.startswith("__") or name in ("ctypes", "data", "base", "tobytes"):
            raise AttributeError(name)  # no back door to host memory (__array_interface__ …)
        attr = getattr(self._host, name)
        return _wrapping(attr) if callable(attr) else attr

    # ---- numpy protocols: computations dispatch here and stay on the device ----------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        result = getattr(ufunc, method)(*[_unwrap(i) for i in inputs], **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    # ---- the ndarray surface the engine uses -------------------------------------------------
    @property
    def shape(self):
        return self._host.shape

    @property
    def dtype(self):
        return self._host.dtype

    @property
    def T(self):
        return DeviceArray(self._host.T)

    def __len__(self):
        return len(self._host)

    def __iter__(self):
        return (_wrap(x) for x in self._host)

    def __getitem__(self, index):
        return _wrap(self._host[_unwrap(index)])

    def __setitem__(self, index, value):
        self._host[_unwrap(index)] = _unwrap_for_copy(value)

    def __float__(self):
        return float(self._host)

    def __int__(self):
        return int(self._host)

    def __bool__(self):
        return bool(self._host)

    def get(self) -> np.ndarray:
        """The explicit device-to-host copy (cupy's `.get()`)."""
        return self._host.copy()

    def __repr__(self):
        return f"DeviceArray({self._host!r})"


def _operator(ufunc, reflected=False):
    if reflected:
        return lambda self, other: ufunc(other, self)
    return lambda self, other: ufunc(self, other)


def _inplace(ufunc):
    def op(self, other):
        ufunc(self, other, out=(self,))
        return self
    return op


for _name, _ufunc in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply),
                      ("truediv", np.true_divide), ("pow", np.power), ("matmul", np.matmul),
                      ("floordiv", np.floor_divide), ("mod", np.remainder)):
    setattr(DeviceArray, f"__{_name}__", _operator(_ufunc))
    setattr(DeviceArray, f"__r{_name}__", _operator(_ufunc, reflected=True))
    setattr(DeviceArray, f"__i{_name}__", _inplace(_ufunc))
for _name, _ufunc in (("lt", np.less), ("le", np.less_equal), ("gt", np.greater),
                      ("ge", np.greater_equal), ("eq", np.equal), ("ne", np.not_equal)):
    setattr(DeviceArray, f"__{_name}__", _operator(_ufunc))
DeviceArray.__neg__ = lambda self: np.negative(self)
DeviceArray.__abs__ = lambda self: np.absolute(self)
DeviceArray.__hash__ = None


def _unwrap(value):
    """Device arrays become their numpy array; a host array mixed in is refused, as cupy does."""
    if isinstance(value, DeviceArray):
        return value._host
    if isinstance(value, np.ndarray) and value.ndim > 0:
        raise TypeError(f"host numpy array {value.shape} {value.dtype} mixed into a stand-in "
                        f"device computation; move it with backend.asarray() first")
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _unwrap_for_copy(value):
    """Assignment from the host is an explicit copy (cupy accepts it too)."""
    return value._host if isinstance(value, DeviceArray) else value


def _wrap(value):
    if isinstance(value, np.ndarray):
        return DeviceArray(value)
    if isinstance(value, np.generic):  # cupy returns 0-d arrays, not numpy scalars
        return DeviceArray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _wrapping(function):
    def call(*args, **kwargs):
        return _wrap(function(*_unwrap(args), **_unwrap(kwargs)))
    return call


class _Ufunc:
    """A numpy ufunc that refuses host arrays (and keeps .reduce/.at/… on the device)."""

    def __init__(self, ufunc):
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args, **kwargs):
        return _device_ufunc_call(self._ufunc, args, kwargs)

    def __getattr__(self, method):
        bound = getattr(self._ufunc, method)
        return _wrapping(bound) if callable(bound) else bound


def _device_ufunc_call(ufunc, args, kwargs):
    out = kwargs.pop("out", None)
    if out is None:
        return _wrap(ufunc(*_unwrap(args), **_unwrap(kwargs)))
    out = out if isinstance(out, tuple) else (out,)
    if not all(isinstance(o, DeviceArray) for o in out):
        raise TypeError(f"{ufunc.__name__}: out= must be a device array on the stand-in device")
    ufunc(*_unwrap(args), **_unwrap(kwargs), out=tuple(o._host for o in out))
    return out[0] if len(out) == 1 else out


class _Random:
    def default_rng(self, seed=None):
        return _wrapping_object(np.random.default_rng(seed))


class _wrapping_object:
    def __init__(self, obj):
        self._obj = obj

    def __getattr__(self, name):
        attr = getattr(self._obj, name)
        return _wrapping(attr) if callable(attr) else attr


class StandinModule:
    """The stand-in's `xp`: numpy's namespace, with every array it hands out a DeviceArray."""
    __name__ = "standin"
    ndarray = DeviceArray
    random = _Random()

    def __getattr__(self, name):
        attr = getattr(np, name)
        if isinstance(attr, np.ufunc):
            return _Ufunc(attr)
        if callable(attr) and not isinstance(attr, type):
            return _wrapping(attr)
        return attr  # dtypes, constants (inf, newaxis)

    @staticmethod
    def asarray(value, dtype=None):
        if isinstance(value, DeviceArray):
            return value if dtype is None or value.dtype == dtype else DeviceArray(value._host.astype(dtype))
        return DeviceArray(np.array(value, dtype=dtype, copy=True))  # host -> device: a copy

    array = asarray


xp = StandinModule()


def to_numpy(value):
    """Device -> host copy; host values pass through (as with `cupy.asnumpy`)."""
    if isinstance(value, DeviceArray):
        return value.get()
    return np.asarray(value)


class HostCollectives:
    """The stand-in's collectives for data-parallel runs: MPI on the arrays underneath, in
    place (a GPU's are NCCL's). What a device backend goes through (Communicator.attach_device,
    Trainer._join_device), without a device."""

    def __init__(self, world):
        self.world = world
        self.calls = 0

    def iallreduce_sum(self, buffer):
        self.calls += 1
        return self.world.host_iallreduce_sum(_host_of(buffer))

    def allreduce_sum(self, buffer):
        self.calls += 1
        self.world.host_allreduce_sum(_host_of(buffer))


def _host_of(buffer):
    if not isinstance(buffer, DeviceArray):  # the step must hand its device buffers over
        raise TypeError(f"stand-in collectives got a {type(buffer).__name__}, not a device array")
    return buffer._host


def make_backend() -> backends.Backend:
    # its products are numpy's: on the same BLAS threads as the numpy backend's, same bits
    return backends.Backend(NAME, xp, to_numpy=to_numpy, collectives=HostCollectives, host_blas=True)


def is_device_array(value) -> bool:
    return isinstance(value, DeviceArray)


def register():
    """Make `--backend standin` / `Executor(backend="standin")` available (idempotent)."""
    if NAME not in backends.names():
        backends.register(NAME, make_backend)
