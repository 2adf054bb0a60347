"""Device memory through cuda-python (runtimes/cuda_mem.py), where a CUDA GPU is present."""
import numpy as np
import pytest


def test_cuda_memory_interface_roundtrip():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    from dcube_edge.runtimes.cuda_mem import device_memory

    mem = device_memory()
    stream = mem.stream()
    src = mem.pinned((4, 5), np.float32)
    src[:] = np.arange(20, dtype=np.float32).reshape(4, 5)
    dst = mem.pinned((4, 5), np.float32)
    ptr = mem.malloc(src.nbytes)
    mem.htod(ptr, src, stream)
    mem.dtoh(dst, ptr, stream)
    mem.sync(stream)
    assert (dst == src).all()
    mem.free(ptr)
    mem.destroy_stream(stream)
