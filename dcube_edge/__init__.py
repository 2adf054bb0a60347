"""dcube-edge: D-Cube diffusion hyper-feature classifiers, trained in PyTorch and run without it."""

__version__ = "0.1.0"
