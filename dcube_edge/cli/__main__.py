"""``python -m dcube_edge.cli`` (torchrun starts training this way)."""
from . import main

main()
