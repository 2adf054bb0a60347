"""Device memory behind one small interface, for the TensorRT runner: CUDA streams, device and
pinned host buffers, async copies. Two implementations — cuda-python (``cuda.bindings``, what
NVIDIA's TensorRT samples use now) and pycuda — picked by what is installed."""
from __future__ import annotations

import ctypes
from abc import ABC, abstractmethod
from typing import Protocol, SupportsInt

import numpy as np

from dcube_edge.errors import BackendUnavailable


class DeviceMemory(ABC):
    name = ""

    @abstractmethod
    def stream(self) -> int: ...
    @abstractmethod
    def sync(self, stream: int) -> None: ...
    @abstractmethod
    def destroy_stream(self, stream: int) -> None: ...
    @abstractmethod
    def malloc(self, nbytes: int) -> int: ...
    @abstractmethod
    def free(self, ptr: int) -> None: ...
    @abstractmethod
    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray: ...
    @abstractmethod
    def htod(self, dst: int, src: np.ndarray, stream: int) -> None: ...
    @abstractmethod
    def dtoh(self, dst: np.ndarray, src: int, stream: int) -> None: ...


class CudaPython(DeviceMemory):
    name = "cuda-python"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            try:
                from cuda import cudart  # cuda-python < 12.6 layout
            except ImportError:
                raise BackendUnavailable("cuda-python is not installed: pip install 'dcube-edge[tensorrt]'") from None
        self.rt = cudart
        self._pinned: list[int] = []

    def _check(self, result: tuple[SupportsInt, ...] | SupportsInt) -> None:
        """Raise on a call's error code: cuda-python returns ``(cudaError_t, *values)``."""
        err = result[0] if isinstance(result, tuple) else result
        if int(err) != 0:
            _, msg = self.rt.cudaGetErrorString(err)
            raise RuntimeError(f"CUDA error {int(err)}: {msg.decode() if isinstance(msg, bytes) else msg}")

    def _value(self, result: tuple[SupportsInt, SupportsInt]) -> int:
        """The one value a call returns (a stream handle, a pointer) as an integer, its error code checked."""
        self._check(result)
        return int(result[1])

    def stream(self) -> int:
        return self._value(self.rt.cudaStreamCreate())

    def sync(self, stream: int) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream))

    def destroy_stream(self, stream: int) -> None:
        self._check(self.rt.cudaStreamDestroy(stream))

    def malloc(self, nbytes: int) -> int:
        return self._value(self.rt.cudaMalloc(max(1, nbytes)))

    def free(self, ptr: int) -> None:
        self._check(self.rt.cudaFree(ptr))

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = max(1, int(np.prod(shape)) * dtype.itemsize)
        ptr = self._value(self.rt.cudaMallocHost(nbytes))
        self._pinned.append(ptr)
        buf = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(memoryview(buf), dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def free_pinned(self) -> None:
        while self._pinned:
            self._check(self.rt.cudaFreeHost(self._pinned.pop()))

    def htod(self, dst: int, src: np.ndarray, stream: int) -> None:
        self._check(self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes,
                                            self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def dtoh(self, dst: np.ndarray, src: int, stream: int) -> None:
        self._check(self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes,
                                            self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))


class _Stream(Protocol):
    handle: int

    def synchronize(self) -> None: ...


class _Allocation(Protocol):
    def __int__(self) -> int: ...
    def free(self) -> None: ...


class PyCuda(DeviceMemory):
    name = "pycuda"

    def __init__(self) -> None:
        try:
            import pycuda.autoinit  # noqa: F401  (creates the context)
            import pycuda.driver as drv
        except ImportError:
            raise BackendUnavailable("pycuda is not installed: pip install pycuda") from None
        self.drv = drv
        self._streams: dict[int, _Stream] = {}  # pycuda's objects by the integer the interface hands out
        self._allocations: dict[int, _Allocation] = {}

    def stream(self) -> int:
        s: _Stream = self.drv.Stream()
        self._streams[int(s.handle)] = s
        return int(s.handle)

    def sync(self, stream: int) -> None:
        self._streams[stream].synchronize()

    def destroy_stream(self, stream: int) -> None:
        self._streams.pop(stream, None)

    def malloc(self, nbytes: int) -> int:
        mem: _Allocation = self.drv.mem_alloc(max(1, nbytes))
        self._allocations[int(mem)] = mem
        return int(mem)

    def free(self, ptr: int) -> None:
        self._allocations.pop(ptr).free()

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        buffer: np.ndarray = self.drv.pagelocked_empty(shape, dtype)
        return buffer

    def htod(self, dst: int, src: np.ndarray, stream: int) -> None:
        self.drv.memcpy_htod_async(dst, src, self._streams[stream])

    def dtoh(self, dst: np.ndarray, src: int, stream: int) -> None:
        self.drv.memcpy_dtoh_async(dst, src, self._streams[stream])


def device_memory(prefer: str | None = None) -> DeviceMemory:
    """cuda-python if importable (or asked for), else pycuda; a clear error when neither is."""
    order = [CudaPython, PyCuda] if prefer != "pycuda" else [PyCuda, CudaPython]
    errors = []
    for impl in order:
        try:
            return impl()
        except BackendUnavailable as e:
            errors.append(str(e))
    raise BackendUnavailable("no CUDA Python binding found: pip install 'dcube-edge[tensorrt]' (cuda-python) "
                             "or pip install pycuda")
