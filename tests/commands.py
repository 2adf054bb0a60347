"""The console script as the tests run it."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

EXE = Path(sys.executable).with_name("dcube-edge")


def cli(*args, check: int | None = None) -> subprocess.CompletedProcess:
    """Run ``dcube-edge ARGS`` (wide terminal); with ``check``, assert that exit code."""
    env = {**os.environ, "COLUMNS": "200"}
    res = subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, timeout=600, env=env)
    if check is not None:
        assert res.returncode == check, res.stdout + res.stderr
    return res


# Prepended to a subprocess's code: any `import torch` there fails, as on a workstation without PyTorch.
WITHOUT_TORCH = textwrap.dedent("""
    import sys
    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
    sys.meta_path.insert(0, BlockTorch())
""")
