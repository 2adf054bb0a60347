"""Dataset folders (docs/architecture.md, the engine contract): ``<root>/<class>/*`` or ``<root>/{train,val[,test]}/<class>/*``.
Class order is the sorted folder names; a missing ``val/`` is carved from train, stratified and seeded.

Files are read by the runtime's reader (:mod:`dcube_edge.runtimes.reader`), as ``classify`` reads them: a DICOM
object gives one sample per view — every frame of a cine loop, every tissue region of an ultrasound object — with
its folder's label, and the views of one object always fall in the same split."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dcube_edge.errors import UserError
from dcube_edge.runtimes.images import DICOM_SUFFIXES, IMAGE_SUFFIXES, ImageError, is_dicom, is_image_file
from dcube_edge.runtimes.preprocess import PreprocessSpec, load_samples, source
from dcube_edge.runtimes.reader import View


class DataError(UserError):
    """A dataset layout problem, phrased for the user."""


@dataclass
class Split:
    """Samples: ``paths[i]`` with ``labels[i]``, read as ``views[i]`` (None: the file's one picture). An object of
    several views repeats its path, once per view, in reading order."""

    paths: list[Path]
    labels: np.ndarray
    views: list[View | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.views:
            self.views = [None] * len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def instances(self) -> tuple[list[Path], np.ndarray]:
        """(each file once, in order; its label): what ``classify`` takes and ``evaluate`` scores per object."""
        firsts = [i for i, p in enumerate(self.paths) if i == 0 or self.paths[i - 1] != p]
        return [self.paths[i] for i in firsts], self.labels[firsts]

    def counts(self, num_classes: int) -> list[int]:
        return np.bincount(self.labels, minlength=num_classes).tolist()

    def images_sha256(self, classes: list[str]) -> str:
        """sha256 over the sorted (class name, image content hash) pairs: the same labelled images give the same
        value wherever they lie, so an evaluation can tell it ran on the images an operating point was chosen on."""
        import hashlib

        from dcube_edge.runtimes.files import sha256

        pairs = sorted(f"{classes[int(y)]}\0{sha256(p)}" for p, y in zip(*self.instances()))
        return hashlib.sha256("\n".join(pairs).encode()).hexdigest()

    def load(self, spec: PreprocessSpec) -> np.ndarray:
        """Every sample preprocessed, (N, 1, S, S) float32; each file decoded once, frame by frame."""
        try:
            return load_samples(self.paths, self.views, spec)
        except ImageError as e:
            raise DataError(str(e)) from None


@dataclass
class Dataset:
    root: Path
    classes: list[str]
    train: Split
    val: Split
    val_source: str


def class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_split(folder: Path, classes: list[str] | None = None) -> tuple[list[str], Split]:
    """Read ``folder/<class>/*``; with ``classes`` given, its folders must be among them."""
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    found = class_folders(folder)
    if not found:
        raise DataError(f"{folder} has no class folders: expected {folder}/<class>/<image>.png")
    if classes is None:
        classes = found
    elif set(found) - set(classes):
        raise DataError(f"{folder} has classes {sorted(set(found) - set(classes))} that the model does not know "
                        f"(model classes: {', '.join(classes)})")
    paths, labels, views = [], [], []
    for name in found:
        files = sorted(p for p in (folder / name).iterdir()
                       if p.is_file() and not p.name.startswith(".") and is_image_file(p))
        if not files:
            raise DataError(f"class folder {folder / name} holds no images ({', '.join(IMAGE_SUFFIXES)} or DICOM)")
        for path in files:
            planned = views_of(path)
            paths += [path] * len(planned)
            labels += [classes.index(name)] * len(planned)
            views += planned
    return classes, Split(paths, np.asarray(labels, dtype=np.int64), views)


def views_of(path: Path) -> list[View | None]:
    """The views a file gives by its attributes (a DICOM object's frames and tissue regions), [None] for a file
    read as one picture; a file that cannot be read is kept as one sample, to fail where it is loaded, by name."""
    if not (path.suffix.lower() in DICOM_SUFFIXES or is_dicom(path)):
        return [None]
    try:
        views = source(path).views()
    except ImageError:
        return [None]
    return [None] if views == [View()] else list(views)


def stratified_split(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Hold out ``fraction`` of each class's files (at least one per class), deterministically; every view of a
    file goes where the file goes."""
    rng = np.random.default_rng(seed)
    files, labels = split.instances()
    keep, held = set(), set()
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = max(1, int(round(len(idx) * fraction))) if len(idx) > 1 else 0
        held |= {files[i] for i in idx[:n]}
        keep |= {files[i] for i in idx[n:]}

    def pick(chosen: set[Path]) -> Split:
        ids = [i for i, p in enumerate(split.paths) if p in chosen]
        return Split([split.paths[i] for i in ids], split.labels[ids], [split.views[i] for i in ids])

    return pick(keep), pick(held)


def discover(root: str | Path, val_fraction: float = 0.15, seed: int = 0) -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    if (root / "train").is_dir():
        classes, train = read_split(root / "train")
        if (root / "val").is_dir():
            val_classes, val = read_split(root / "val")
            if val_classes != classes:
                raise DataError(f"train classes {classes} and val classes {val_classes} differ")
            source = "val/"
        else:
            train, val = stratified_split(train, val_fraction, seed)
            source = f"stratified {val_fraction:.0%} of train/ (seed {seed})"
    else:
        classes, train = read_split(root)
        train, val = stratified_split(train, val_fraction, seed)
        source = f"stratified {val_fraction:.0%} of the class folders (seed {seed})"
    if len(classes) < 2:
        raise DataError(f"{root} has only one class ({classes[0]}): a classifier needs at least two class folders")
    if len(val) == 0:
        raise DataError(f"{root}: too few images to hold out a validation split; add images or a val/ folder")
    return Dataset(root, classes, train, val, source)


def audit(ds: Dataset) -> list[str]:
    """Warnings worth reading before training: identical files across splits, mixed image sizes,
    strong class imbalance. Reads file bytes and image headers only."""
    import hashlib

    from PIL import Image

    def digest(p: Path) -> str:
        return hashlib.sha1(p.read_bytes()).hexdigest()

    warnings = []
    train_hashes = {digest(p): p for p in ds.train.paths}
    dupes = [p for p in ds.val.paths if digest(p) in train_hashes]
    if dupes:
        warnings.append(f"{len(dupes)} validation image(s) are byte-identical to training images "
                        f"(e.g. {dupes[0].name} = {train_hashes[digest(dupes[0])].name}): validation scores will be optimistic")
    inner = len(ds.train.paths) - len(train_hashes)
    if inner:
        warnings.append(f"{inner} training image(s) are exact duplicates of other training images")
    sizes: dict[tuple[int, int], int] = {}
    for p in ds.train.paths + ds.val.paths:
        try:
            with Image.open(p) as img:
                sizes[img.size] = sizes.get(img.size, 0) + 1
        except OSError:
            pass  # unreadable files are reported when they are loaded
    if len(sizes) > 1:
        common = sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
        warnings.append(f"images come in {len(sizes)} sizes ({', '.join(f'{w}x{h}: {n}' for (w, h), n in common)}); "
                        "all are resized to the preset's size")
    counts = ds.train.counts(len(ds.classes))
    if min(counts) * 5 < max(counts):
        warnings.append(f"training classes are imbalanced {dict(zip(ds.classes, counts))}")
    return warnings


def same_classes(recorded: tuple[str, ...], found: list[str], data: str | Path) -> None:
    """A run resumed (its config records classes) continues on data with the same classes, or is refused; a fresh
    run records none."""
    if recorded and tuple(found) != tuple(recorded):
        raise DataError(f"{data} has classes {', '.join(found)}, but the run being resumed was trained on "
                        f"{', '.join(recorded)}: give it the dataset it was started on, or train into a new --out")


def fingerprint(root: Path) -> str:
    """sha256 over every file's relative path, size and content under ``root``, in sorted order: what a model card
    names as the data a model was trained on (a changed, added or removed image changes it)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(f"{path.relative_to(root)}\0{path.stat().st_size}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def record(cfg_data_root: str, classes: list[str], val_fraction: float, split_seed: int, image_size: int) -> dict:
    """The training data as a model card describes it: where, how many per class and split, and its fingerprint."""
    root = Path(cfg_data_root) if cfg_data_root else None
    if root is None or not root.is_dir():
        return {"source": cfg_data_root or "not recorded", "note": "the training data folder is not reachable here"}
    ds = discover(root, val_fraction, split_seed)
    k = len(classes)
    return {"source": root.name, "image_size": image_size, "validation": ds.val_source,
            "train_per_class": dict(zip(classes, ds.train.counts(k))), "val_per_class": dict(zip(classes, ds.val.counts(k))),
            "fingerprint_sha256": fingerprint(root)}
