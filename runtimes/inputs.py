"""Which files in the folders a user names are inputs, and why the others are passed over (torch-free)."""
from __future__ import annotations

from pathlib import Path

from dcube_edge.errors import UserError

from .images import DICOM_SUFFIXES, IMAGE_SUFFIXES, is_dicom


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (DICOM included)."""
    return scan(folder)[0]


def scan(folder: str | Path, recursive: bool = False) -> tuple[list[Path], list[tuple[Path, str]], list[Path]]:
    """(image files, [(skipped file, why)], sub-folders not entered) in ``folder``, sorted by name; with
    ``recursive`` every sub-folder is entered. Nothing in a folder is passed over without a reason."""
    images: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    subfolders: list[Path] = []
    for p in sorted(Path(folder).iterdir()):
        if p.name.startswith("."):
            continue  # hidden files and folders (.DS_Store, .partial writes) are not inputs
        try:
            if p.is_dir():
                if recursive:
                    sub = scan(p, recursive=True)
                    images += sub[0]
                    skipped += sub[1]
                else:
                    subfolders.append(p)
            elif not p.exists():
                skipped.append((p, "dangling symbolic link"))
            elif p.suffix.lower() in IMAGE_SUFFIXES + DICOM_SUFFIXES or is_dicom(p):
                images.append(p)
            else:
                skipped.append((p, f"not a supported image type ({p.suffix or 'no suffix'}; supported: "
                                   f"{', '.join(IMAGE_SUFFIXES + DICOM_SUFFIXES)} or DICOM by content)"))
        except OSError as e:
            skipped.append((p, f"cannot be read ({e.strerror or type(e).__name__})"))
    return images, skipped, subfolders


def expand(inputs: list[Path], recursive: bool = False) -> tuple[list[Path], list[tuple[Path, str]], list[Path]]:
    """(files to classify, [(file passed over, why)], sub-folders not entered): folders are listed
    (``recursive``: nested ones too); a name the OS refuses (too long, ...) is kept as a file, to fail on its
    own. Only sub-folders and no image at all is a UserError that says to pass --recursive."""
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    nested: list[Path] = []
    for p in inputs:
        try:
            is_dir = p.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            images, passed, subfolders = scan(p, recursive)
            files += images
            skipped += passed
            nested += subfolders
        else:
            files.append(p)
    if nested and not files:
        raise UserError(f"no images directly in the given folder(s), but sub-folders "
                        f"({', '.join(n.name for n in nested[:4])}{', ...' if len(nested) > 4 else ''}): "
                        "pass --recursive to classify them")
    if not files and not skipped:
        raise UserError("no images found in the given inputs")
    return files, skipped, nested
