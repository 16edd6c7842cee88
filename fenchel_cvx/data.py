r"""Data sets: MNIST and CIFAR-10 readers, the shipped MNIST subset, and synthetic teacher data.

Nothing here downloads. Real data sets are read from a ``data_dir`` the user names; the one exception is the
small MNIST subset shipped inside the package (:func:`load_mnist_subset`), so the main job runs offline.

========================  =====================================================================================
entry point               what it gives
========================  =====================================================================================
:func:`load_dataset`      one door for ``"mnist-small"``, ``"mnist"``, ``"cifar10"`` and ``"synthetic"``
:func:`read_mnist`        the four standard IDX files (``.gz`` or raw) from ``data_dir`` or ``data_dir/mnist``
:func:`read_idx`          one IDX file, header and size checked
:func:`read_cifar10`      ``cifar-10-batches-py`` pickles (restricted unpickler) or the ``cifar10_*.npz`` layout
:func:`load_mnist_subset` the shipped class-balanced MNIST subset (10,000 train / 2,000 test)
:func:`teacher`           Appendix B regression data ``Y = phi(X W*^T + b*)`` with the teacher's weights
:func:`make_synthetic_    classification data labelled by the argmax of a random teacher network
classification`
========================  =====================================================================================

Layout convention. Inside the math (network internals, subproblems) a data matrix is ``(features, samples)``
as in the paper. Everything this module returns is **samples-first**, as PyTorch and scikit-learn expect:
stored images are ``(m, 28, 28)`` (MNIST) or ``(m, 32, 32, 3)`` (CIFAR-10, height-width-channel) ``uint8``
arrays, labels ``(m,)`` ``int64``. A :class:`Dataset` knows its image shape (:attr:`Dataset.image_shape`:
``(1, 28, 28)``, ``(3, 32, 32)``, or ``(n,)`` for feature vectors) and gives floats in two shapes, with the same
numbers: :meth:`Dataset.images` ``(m, C, H, W)`` (channels first, as torch's convolutions want) and
:meth:`Dataset.arrays` ``(m, C * H * W)``, each image flattened in ``(C, H, W)`` order (the order in which
:mod:`fenchel_cvx.layers` flattens images). Transpose once, at the boundary, when you hand them to the math
(``X.T``).

Scaling (:attr:`Dataset.scaling`). ``"unit"``: ``uint8`` pixels divided by 255, into ``[0, 1]``; features that
are already floats (synthetic data) are left as they are. This is MNIST's (and the shipped subset's).
``"channel"``: per-channel standardization, ``(x / 255 - mean_c) / std_c``, with the mean and the (population)
standard deviation of channel ``c`` over **every training image and pixel** as loaded -- the whole training split,
computed exactly once when the data set is read and kept by :meth:`Dataset.subsample` and
:meth:`Dataset.shuffled`, so train and test are scaled alike with training statistics only
(:attr:`Dataset.channel_stats`). This is CIFAR-10's default, the ``transforms.Normalize(mean, std)`` users of
torchvision expect (about ``(0.4914, 0.4822, 0.4465)`` and ``(0.2470, 0.2435, 0.2616)`` on the official
training set); ``load_dataset("cifar10", ..., scaling="unit")`` gives the ``[0, 1]`` pixels instead.

Every failure to read a file raises :class:`~fenchel_cvx.errors.DataFileError` (a
:class:`~fenchel_cvx.errors.FenchelError`) that names the file and says what to do.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import math
import pickle
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from struct import error as struct_error
from typing import Any

import numpy as np

from ._checks import check_choice, check_int, check_scalar
from .activations import Activation, get_activation
from .errors import ChoiceError, DataFileError, DomainError, LabelError, ShapeError, ValueRangeError
from .settings import DATASET_NAMES

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "MNIST_CLASSES",
    "SCALINGS",
    "Dataset",
    "Teacher",
    "channel_stats",
    "load_dataset",
    "load_mnist_subset",
    "make_synthetic_classification",
    "read_cifar10",
    "read_idx",
    "read_mnist",
    "safe_unpickle",
    "teacher",
    "to_float",
]

MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
CIFAR10_CLASSES: tuple[str, ...] = ("airplane", "automobile", "bird", "cat", "deer",
                                    "dog", "frog", "horse", "ship", "truck")
DATASETS: tuple[str, ...] = DATASET_NAMES  # defined once, with the settings that name them
#: How :meth:`Dataset.images` and :meth:`Dataset.arrays` scale the inputs (see the module docstring).
SCALINGS: tuple[str, ...] = ("unit", "channel")

_MNIST_FILES = {  # split -> (images stem, labels stem), the names LeCun's site and torchvision use
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
_SUBSET_FILE = "mnist_subset.npz"
_NO_DOWNLOAD = ("fenchel_cvx never downloads: put the files there yourself, or use "
                "load_dataset('mnist-small') for the MNIST subset shipped with the package")


# -- the container every loader returns --------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split, samples-first.

    Attributes
    ----------
    name : str
        ``"mnist-small"``, ``"mnist"``, ``"cifar10"``, ``"synthetic"`` or a name of your own.
    train_x : numpy.ndarray, shape (m_train, ...)
        Samples-first inputs as stored: ``uint8`` images ``(m, H, W)`` (one channel, e.g. MNIST ``(m, 28, 28)``)
        or ``(m, H, W, C)`` (channels last, e.g. CIFAR-10 ``(m, 32, 32, 3)``), or features ``(m, n)``.
    train_y : numpy.ndarray of int64, shape (m_train,)
        Class labels in ``0 .. len(classes) - 1``.
    test_x, test_y : numpy.ndarray
        The same for the test split.
    classes : tuple of str
        Class names, index = label.
    provenance : str
        Where the arrays came from (files and checksums, selection rule, seed), empty when unknown.
    scaling : {"unit", "channel"}, default "unit"
        How :meth:`images` and :meth:`arrays` scale the inputs: ``"unit"`` divides ``uint8`` pixels by 255 (floats
        are left alone); ``"channel"`` then standardizes each channel with :attr:`channel_stats` (the module
        docstring has the details). CIFAR-10's readers set ``"channel"``.
    channel_stats : ((float, ...), (float, ...)) or None
        Per-channel ``(mean, std)`` of the training images in ``[0, 1]`` pixel units, one entry per channel.
        Computed from ``train_x`` when the data set is built with ``scaling="channel"`` and none are given, then
        kept by :meth:`shuffled` and :meth:`subsample` (the statistics of the training set as loaded).

    Raises
    ------
    ChoiceError
        An unknown ``scaling``.
    ShapeError
        Inputs that are not ``(m, n)``, ``(m, H, W)`` or ``(m, H, W, C)``; images stored channels first
        (``(m, C, H, W)`` with ``C`` 1 or 3: transpose them to ``(m, H, W, C)``); train and test samples of
        different shapes; labels that are not ``(m,)`` with one label per sample. ``"channel"`` scaling of
        feature vectors or of an empty training split, or ``channel_stats`` that do not have one entry per
        channel.
    DomainError
        Inputs that are not real numbers (object, string, complex or bool arrays).
    LabelError
        Labels that are not of an integer dtype (floats are refused, not rounded), no ``classes``, or labels
        outside ``0 .. len(classes) - 1``.
    ValueRangeError
        A channel that is constant over the training set (standard deviation 0) under ``"channel"`` scaling.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]
    provenance: str = field(default="", repr=False)
    scaling: str = "unit"
    channel_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_choice(self.scaling, "scaling", SCALINGS)
        self._check_arrays()
        if self.scaling != "channel" and self.channel_stats is None:
            return
        shape = self.image_shape
        if len(shape) != 3:
            raise ShapeError(f"scaling: 'channel' standardizes the channels of images, but {self.name!r} holds "
                             f"feature vectors of shape {shape}; use scaling='unit'")
        if self.channel_stats is None and len(self.train_x) == 0:
            raise ShapeError(f"train_x: 'channel' scaling takes its statistics from the training images, but "
                             f"{self.name!r} has none (shape {self.train_x.shape}); pass channel_stats or use "
                             "scaling='unit'")
        stats = channel_stats(self.train_x) if self.channel_stats is None else self.channel_stats
        try:
            mean, std = (tuple(float(v) for v in part) for part in stats)
        except (TypeError, ValueError):
            raise ShapeError(f"channel_stats: expected (mean, std), one number per channel each, got {stats!r}") \
                from None
        if len(mean) != shape[0] or len(std) != shape[0]:
            raise ShapeError(f"channel_stats: expected {shape[0]} means and {shape[0]} standard deviations (one per "
                             f"channel), got {len(mean)} and {len(std)}")
        if self.scaling == "channel" and not all(math.isfinite(s) and s > 0 for s in std):
            c = next(i for i, s in enumerate(std) if not (math.isfinite(s) and s > 0))
            raise ValueRangeError(f"channel_stats: channel {c} of {self.name!r} ({self.provenance or 'no source'}) "
                                  f"has standard deviation {std[c]} over the training images, so it cannot be "
                                  "standardized (a constant channel: check the data files); or load it with "
                                  "load_dataset(..., scaling='unit') (the command line always standardizes)")
        object.__setattr__(self, "channel_stats", (mean, std))

    def _check_arrays(self) -> None:
        """Refuse inputs and labels that would otherwise be misread quietly; labels are stored as int64."""
        # a str has a length too, and would silently count its characters as classes
        n_classes = len(self.classes) if hasattr(self.classes, "__len__") and not isinstance(self.classes, str) else 0
        if n_classes == 0:
            raise LabelError(f"classes: expected a sequence of at least one class name, got {self.classes!r}")
        xs = {}
        for name in ("train_x", "test_x"):
            try:
                x = np.asarray(getattr(self, name))
            except (TypeError, ValueError) as exc:  # ragged nested lists
                raise ShapeError(f"{name}: expected an array of samples, got {type(getattr(self, name)).__name__} "
                                 f"({exc})") from None
            if x.dtype.kind not in "iuf":
                raise DomainError(f"{name}: expected real numbers (uint8 pixels or float features), got an array "
                                  f"of dtype {x.dtype}")
            if x.ndim not in (2, 3, 4):
                raise ShapeError(f"{name}: expected samples-first inputs (m, n), (m, H, W) or (m, H, W, C), got "
                                 f"shape {x.shape}")
            if x.ndim == 4:
                _, a, h, w = x.shape
                # Channels are few (1, 3, maybe 4): a few-channel axis 1 before a square or wide last axis is
                # torch's (m, C, H, W), which image_shape would read as C-by-H images with W channels.
                if a in (1, 3) and ((h == w and w > a) or w > 4):
                    raise ShapeError(f"{name}: expected images channels last, (m, H, W, C), got shape {x.shape}, "
                                     f"which looks channels first (m, C, H, W) with C = {a}; pass "
                                     f"{name}.transpose(0, 2, 3, 1)")
            xs[name] = x
            object.__setattr__(self, name, x)
        if xs["test_x"].shape[1:] != xs["train_x"].shape[1:]:
            raise ShapeError(f"test_x: expected samples of the training shape {xs['train_x'].shape[1:]}, got "
                             f"{xs['test_x'].shape[1:]} (test_x has shape {xs['test_x'].shape})")
        for name, x in (("train_y", xs["train_x"]), ("test_y", xs["test_x"])):
            y = np.asarray(getattr(self, name))
            if y.dtype.kind not in "iu":
                raise LabelError(f"{name}: expected integer class labels in 0..{n_classes - 1}, got an array of "
                                 f"dtype {y.dtype}; labels are never rounded, convert them with .astype(int) if "
                                 "they are whole numbers")
            if y.shape != (len(x),):
                raise ShapeError(f"{name}: expected shape ({len(x)},), one label per sample of "
                                 f"{name[:-1]}x {x.shape}, got {y.shape}")
            bad = (y < 0) | (y >= n_classes)
            if bad.any():
                i = int(np.argmax(bad))
                raise LabelError(f"{name}: expected labels in 0..{n_classes - 1} ({n_classes} classes), got "
                                 f"{y[i].item()!r} at {name}[{i}] ({int(bad.sum())} such labels)")
            object.__setattr__(self, name, y.astype(np.int64, copy=False))

    def __repr__(self) -> str:
        scaled = "" if self.scaling == "unit" else f", scaling={self.scaling!r}"
        return (f"Dataset({self.name!r}, train_x={self.train_x.dtype}{self.train_x.shape}, "
                f"test_x={self.test_x.dtype}{self.test_x.shape}, classes={self.n_classes}{scaled})")

    @property
    def image_shape(self) -> tuple[int, ...]:
        """One input's shape as the networks see it: ``(C, H, W)`` for images, ``(n,)`` for feature vectors.

        ``(1, 28, 28)`` for MNIST, ``(3, 32, 32)`` for CIFAR-10, ``(n_features,)`` for synthetic data. Stored
        arrays ``(m, H, W)`` have one channel; ``(m, H, W, C)`` are channels last.
        """
        s = tuple(int(v) for v in self.train_x.shape[1:])
        if len(s) == 1:
            return s
        if len(s) == 2:
            return (1, *s)
        if len(s) == 3:
            return (s[2], s[0], s[1])
        raise ShapeError(f"train_x: expected samples of shape (n,), (H, W) or (H, W, C), got {s}")

    @property
    def n_features(self) -> int:
        """Length of one flattened input, ``d`` (784 for MNIST, 3072 for CIFAR-10)."""
        return int(np.prod(self.train_x.shape[1:]))

    @property
    def n_classes(self) -> int:
        """Number of classes ``p``."""
        return len(self.classes)

    def _split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in ("train", "test"):
            raise ChoiceError(f"split: expected 'train' or 'test', got {split!r}")
        return (self.train_x, self.train_y) if split == "train" else (self.test_x, self.test_y)

    def images(self, split: str = "train", dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
        """Float inputs ``X`` of shape ``(m, C, H, W)`` (``(m, n)`` for feature vectors) and labels ``y`` ``(m,)``.

        Channels first, scaled as :attr:`scaling` says (CIFAR-10: standardized per channel with the training
        statistics; MNIST: ``[0, 1]``). ``X.reshape(m, -1)`` is :meth:`arrays`.

        Parameters
        ----------
        split : {"train", "test"}
        dtype : numpy dtype, default float64

        Returns
        -------
        X : numpy.ndarray, shape (m, C, H, W) or (m, n)
        y : numpy.ndarray of int64, shape (m,)
        """
        x, y = self._split(split)
        chw = _channels_first(x)
        flat = to_float(chw, dtype)
        if self.scaling == "channel":
            if np.may_share_memory(flat, x):  # float images come back as views: never scale the stored data
                flat = flat.copy()
            mean, std = (np.asarray(v, dtype=dtype) for v in self.channel_stats)
            # a view, standardized in place; sizes spelled out since -1 cannot be inferred from 0 samples
            per = flat.reshape(len(flat), len(mean), flat.shape[1] // len(mean))
            per -= mean[:, None]
            per /= std[:, None]
        return flat.reshape(chw.shape), y

    def arrays(self, split: str = "train", dtype: Any = np.float64, *,
               images: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Float inputs ``X`` of shape ``(m, d)`` (or ``(m, C, H, W)`` with ``images=True``) and labels ``(m,)``.

        Each image is flattened in ``(C, H, W)`` order, scaled as :attr:`scaling` says (MNIST: ``uint8`` divided
        by 255, into ``[0, 1]``; CIFAR-10: standardized per channel). Samples-first; the math wants ``X.T``
        (``(d, m)``). ``images=True`` is :meth:`images`.
        """
        X, y = self.images(split, dtype)
        return (X, y) if images else (X.reshape(len(X), math.prod(X.shape[1:])), y)

    def with_scaling(self, scaling: str) -> Dataset:
        """A copy scaled another way (``"unit"`` or ``"channel"``; the channel statistics are kept, or computed
        from this training split when there are none yet)."""
        return replace(self, scaling=scaling)

    def shuffled(self, seed: int = 0) -> Dataset:
        """A copy with each split in a random order drawn from ``numpy.random.default_rng(seed)``.

        Needed for the CIFAR-10 npz layout, whose samples are sorted by class.
        """
        rng = _rng(seed)
        p_train = rng.permutation(len(self.train_y))
        p_test = rng.permutation(len(self.test_y))
        return replace(self, train_x=self.train_x[p_train], train_y=self.train_y[p_train],
                       test_x=self.test_x[p_test], test_y=self.test_y[p_test])

    def subsample(self, n_train: int | None = None, n_test: int | None = None, *, seed: int = 0) -> Dataset:
        """A copy keeping ``n_train`` / ``n_test`` samples drawn without replacement (``None`` keeps all).

        The kept samples stay in their original relative order; each split is drawn with its own
        ``default_rng(seed)``, so the test samples depend on ``seed`` and ``n_test`` alone: runs of different
        ``n_train`` are scored on the same test samples. The channel statistics stay those of the training set as
        loaded.
        """
        def pick(n: int | None, total: int, arg: str) -> np.ndarray:
            n = check_int(n, arg, 1, optional=True, hint=f"the {arg[2:]} split's size, at most {total}")
            if n is None:
                return np.arange(total)
            if n > total:
                raise ValueRangeError(f"{arg}: expected at most {total} (the {arg[2:]} split's size), got {n}; pass "
                                      "None to keep them all")
            return np.sort(_rng(seed).choice(total, size=n, replace=False))

        i_train = pick(n_train, len(self.train_y), "n_train")
        i_test = pick(n_test, len(self.test_y), "n_test")
        return replace(self, train_x=self.train_x[i_train], train_y=self.train_y[i_train],
                       test_x=self.test_x[i_test], test_y=self.test_y[i_test])


def _channels_first(x: np.ndarray) -> np.ndarray:
    """Stored samples ``(m, n)``, ``(m, H, W)`` or ``(m, H, W, C)`` as ``(m, n)`` or ``(m, C, H, W)`` (C order)."""
    x = np.asarray(x)
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population standard deviation of images, in ``[0, 1]`` pixel units.

    Parameters
    ----------
    x : numpy.ndarray, shape (m, H, W) or (m, H, W, C)
        Samples-first images as stored (channels last); ``uint8`` pixels count as ``value / 255``.

    Returns
    -------
    mean, std : tuple of C floats
        Over every sample and pixel of each channel (``ddof=0``). For ``uint8`` the sums are exact (a histogram
        of the 256 values per channel), so the result does not depend on the order of the samples.

    Raises
    ------
    ShapeError
        Not images, or no samples.
    """
    x = np.asarray(x)
    if x.ndim not in (3, 4) or len(x) == 0:
        raise ShapeError(f"x: expected at least one image, (m, H, W) or (m, H, W, C), got shape {x.shape}")
    planes = x[..., None] if x.ndim == 3 else x
    means, stds = [], []
    for c in range(planes.shape[-1]):
        v = planes[..., c]
        if v.dtype == np.uint8:
            counts = np.bincount(v.ravel(), minlength=256).astype(np.float64)
            levels = np.arange(256, dtype=np.float64) / 255.0
            mean = float(counts @ levels / counts.sum())
            std = math.sqrt(float(counts @ (levels - mean) ** 2 / counts.sum()))
        else:
            f = v.astype(np.float64)
            mean, std = float(f.mean()), float(f.std())
        means.append(mean)
        stds.append(std)
    return tuple(means), tuple(stds)


def to_float(x: np.ndarray, dtype: Any = np.float64) -> np.ndarray:
    """Flatten samples-first inputs ``(m, ...)`` to ``(m, d)`` floats; ``uint8`` pixels are divided by 255.

    Parameters
    ----------
    x : numpy.ndarray, shape (m, ...)
        Images (``uint8``) or features (any real dtype).
    dtype : numpy dtype, default float64

    Returns
    -------
    numpy.ndarray, shape (m, d)
        Samples-first; pixels land in ``[0, 1]``. No samples give shape ``(0, d)``.

    Raises
    ------
    ValueRangeError
        A ``dtype`` that is not a floating type (an integer one would truncate the scaled values).
    """
    try:
        kind = np.dtype(dtype).kind
    except TypeError:
        kind = ""
    if kind != "f":
        raise ValueRangeError(f"dtype: expected a floating dtype (e.g. numpy.float32, numpy.float64), got {dtype!r}")
    x = np.asarray(x)
    if x.ndim < 1:
        raise ShapeError(f"x: expected an array with a leading sample axis (m, ...), got shape {x.shape}")
    flat = x.reshape(len(x), math.prod(x.shape[1:]))  # not -1: numpy cannot infer d from 0 samples
    if flat.dtype == np.uint8:
        return flat.astype(dtype) / np.asarray(255, dtype=dtype)
    return flat.astype(dtype, copy=False)


# -- IDX (MNIST) ---------------------------------------------------------------------------------------------------
def _read_bytes(path: Path) -> bytes:
    """Whole file content, transparently gunzipped for ``*.gz``; any read failure becomes DataFileError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFileError(f"{path}: file not found. {_NO_DOWNLOAD}") from None
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read ({exc}); check the path and its permissions") from None
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; a cut-off stream is EOFError
        raise DataFileError(f"{path}: not a readable gzip file ({type(exc).__name__}: {exc}); the file is "
                            "truncated or corrupt, copy it again (or gunzip it and pass the raw file)") from None


def read_idx(path: str | Path, magic: int | None = None) -> np.ndarray:
    """Read one IDX file of unsigned bytes (raw or ``.gz``), checking the header against the payload.

    Format (big-endian): ``0x00 0x00 0x08 ndim``, then ``ndim`` uint32 sizes, then ``prod(sizes)`` bytes.

    Parameters
    ----------
    path : str or Path
        The file; a ``.gz`` suffix means gzip-compressed.
    magic : int, optional
        Expected magic number (2051 for MNIST images, 2049 for labels).

    Returns
    -------
    numpy.ndarray of uint8, shape given by the header
        E.g. ``(60000, 28, 28)`` for ``train-images-idx3-ubyte``.

    Raises
    ------
    DataFileError
        Missing, unreadable, wrong magic number, non-``uint8`` data type, or a payload longer or shorter than
        the header says (a truncated file).
    """
    path = Path(path)
    buf = _read_bytes(path)
    if len(buf) < 4:
        raise DataFileError(f"{path}: expected an IDX header of at least 4 bytes, got {len(buf)} bytes; "
                            "the file is truncated, copy it again")
    got_magic = int.from_bytes(buf[:4], "big")
    if buf[0] != 0 or buf[1] != 0 or buf[2] != 0x08 or (magic is not None and got_magic != magic):
        want = f"magic number {magic}" if magic is not None else "an unsigned-byte IDX magic number (0x000008NN)"
        raise DataFileError(f"{path}: expected {want}, got {got_magic} (bytes {buf[:4].hex()}); this is not "
                            "the IDX file it is named after (images use 2051, labels 2049), or it is compressed "
                            "without a .gz suffix")
    ndim = buf[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(buf) < header:
        raise DataFileError(f"{path}: expected a header of {header} bytes for {ndim} dimensions, got "
                            f"{len(buf)} bytes; the file is truncated or malformed, copy it again")
    shape = tuple(int(s) for s in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(shape)  # exact: a numpy product of crafted sizes can wrap around
    if len(buf) - header != expected:
        kind = "truncated" if len(buf) - header < expected else "longer than its header says"
        raise DataFileError(f"{path}: header shape {shape} needs {expected} data bytes, got {len(buf) - header};"
                            f" the file is {kind}, copy it again")
    # Copied so the array is writable (torch.from_numpy warns on the read-only view of ``bytes``).
    return np.frombuffer(buf, dtype=np.uint8, offset=header).reshape(shape).copy()


def _mnist_candidates(folder: Path, stem: str) -> Path | None:
    """One MNIST file in ``folder``: ``.gz`` first, then raw, then the dotted name common on Kaggle."""
    for n in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / n).is_file():
            return folder / n
    return None


def _mnist_files(data_dir: Path) -> dict[str, Path]:
    """The four MNIST files by stem, from the first of ``data_dir``, its ``mnist/`` and torchvision's ``MNIST/raw``
    that holds all four: a split is never paired from two folders (two copies of other orders would pair
    silently)."""
    stems = [s for pair in _MNIST_FILES.values() for s in pair]
    found: dict[Path, dict[str, Path]] = {}
    for d in (data_dir, data_dir / "mnist", data_dir / "MNIST" / "raw"):
        found[d] = {s: path for s in stems if (path := _mnist_candidates(d, s)) is not None}
        if len(found[d]) == len(stems):
            return found[d]
    partial = [f"{d}: {', '.join(held)}" for d, held in found.items() if held]
    if partial:
        raise DataFileError(f"data_dir: expected the four MNIST files in one folder, found only parts of the set ("
                            f"{'; '.join(partial)}); put train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                            f"t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (.gz or raw) together. {_NO_DOWNLOAD}")
    raise DataFileError(f"data_dir: no MNIST files found in {data_dir} or {data_dir / 'mnist'}. "
                        f"Put the four standard IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                        f"t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, .gz or raw) there. {_NO_DOWNLOAD}")


def _mnist_split(files: dict[str, Path], split: str) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """One split's images and labels from ``files`` (:func:`_mnist_files`: all four, from one folder)."""
    img_path, lab_path = (files[stem] for stem in _MNIST_FILES[split])
    x = read_idx(img_path, _IDX_IMAGES_MAGIC)
    y = read_idx(lab_path, _IDX_LABELS_MAGIC)
    if x.shape[1:] != (28, 28):
        raise DataFileError(f"{img_path}: expected 28x28 images, got shape {x.shape}; is this MNIST?")
    if len(x) == 0:
        raise DataFileError(f"{img_path}: expected at least one image, got a header count of 0 (shape {x.shape}); "
                            "the file was cut or written empty, copy it again")
    if len(x) != len(y):
        raise DataFileError(f"{img_path} holds {len(x)} images but {lab_path} holds {len(y)} labels; the two "
                            "files must come from the same split and release")
    if y.size and int(y.max()) > 9:
        raise DataFileError(f"{lab_path}: expected labels in 0..9, got a maximum of {int(y.max())}")
    return x, y.astype(np.int64), [img_path, lab_path]


def read_mnist(data_dir: str | Path, *, expected_counts: tuple[int, int] | None = None) -> Dataset:
    """Read MNIST from the four standard IDX files in ``data_dir`` (or ``data_dir/mnist``).

    Each file may be gzip-compressed (``train-images-idx3-ubyte.gz``) or raw (``train-images-idx3-ubyte``);
    torchvision's ``data_dir/MNIST/raw`` is found too. Headers are checked (magic 2051 for images, 2049 for
    labels, sizes against the payload), images must be 28x28 and agree in number with their labels, and labels
    must lie in 0..9.

    Parameters
    ----------
    data_dir : str or Path
        Folder holding the files (or a ``mnist/`` folder holding them).
    expected_counts : (int, int), optional
        Require exactly this many (train, test) samples, e.g. ``(60000, 10000)`` for the full set; both positive.

    Returns
    -------
    Dataset
        ``train_x`` uint8 ``(m_train, 28, 28)``, ``train_y`` int64 ``(m_train,)``, ``test_x``, ``test_y``;
        samples-first, canonical file order.

    Raises
    ------
    DataFileError
        A file is missing (the message names it), truncated, malformed, holds no images, or the counts disagree.
    ValueRangeError
        ``expected_counts`` that is not a pair of positive integers.
    """
    counts = _expected_counts(expected_counts)
    data_dir = _existing_dir(data_dir, "mnist")
    files = _mnist_files(data_dir)
    x_tr, y_tr, p_tr = _mnist_split(files, "train")
    x_te, y_te, p_te = _mnist_split(files, "test")
    if counts is not None and (len(y_tr), len(y_te)) != counts:
        raise DataFileError(f"{data_dir}: expected {counts} (train, test) samples, got "
                            f"{(len(y_tr), len(y_te))}; the files are from another release or were cut")
    prov = "MNIST IDX files: " + ", ".join(str(p) for p in p_tr + p_te)
    return Dataset("mnist", x_tr, y_tr, x_te, y_te, MNIST_CLASSES, prov)


def _expected_counts(value: Any) -> tuple[int, int] | None:
    """``expected_counts`` of :func:`read_mnist` as a (train, test) pair of ints, checked before any file is read."""
    if value is None:
        return None
    ok = isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and len(value) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= 1 for v in value)
    if not ok:
        raise ValueRangeError(f"expected_counts: expected None or a pair of positive integers (train, test), e.g. "
                              f"(60000, 10000), got {value!r}")
    return int(value[0]), int(value[1])


def _existing_dir(data_dir: str | Path | None, name: str) -> Path:
    if data_dir is None:
        raise DataFileError(f"data_dir: data set {name!r} is read from files, got data_dir=None; pass the folder "
                            f"that holds them (the CLI's --data-dir). {_NO_DOWNLOAD}")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataFileError(f"data_dir: expected an existing folder for {name!r}, got {str(path)!r} (not found "
                            f"or not a folder). {_NO_DOWNLOAD}")
    return path


# -- restricted unpickling (CIFAR-10's official batches) ---------------------------------------------------------
def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """The one use of ``_codecs.encode`` in protocol-2 pickles: bytes written as latin-1 text."""
    if not isinstance(obj, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode is allowed only on str with latin-1, got "
                                     f"{type(obj).__name__} with {encoding!r}")
    return obj.encode("latin-1", errors)


def _safe_dtype(*args: Any) -> np.dtype:
    """``numpy.dtype`` that refuses object dtypes, whose payload would be arbitrary Python objects."""
    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError(f"numpy.dtype: object dtypes are not allowed in data files, got {dt}")
    return dt


# The callables a pickled dict of numpy arrays needs, and nothing else; both the numpy 1 (numpy.core) and numpy 2
# (numpy._core) module paths map to the functions numpy itself uses to pickle arrays, scalars and dtypes.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]
_FROMBUFFER = np.empty(1).__reduce_ex__(5)[0]
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _safe_dtype,
                                                ("_codecs", "encode"): _latin1_encode}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _RECONSTRUCT
    _ALLOWED_GLOBALS[(f"{_core}.multiarray", "scalar")] = _SCALAR
    _ALLOWED_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = _FROMBUFFER


class _Refused(pickle.UnpicklingError):
    """A pickle that names something outside the allowed types (not merely a damaged one)."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits plain containers, strings, numbers, bytes and numpy arrays; any other global is refused.

    A pickle runs code only through the callables its GLOBAL/STACK_GLOBAL opcodes name (``os.system`` via
    ``__reduce__`` is the classic attack); resolving every name through a closed allow-list removes that route.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"global {module}.{name} is not allowed") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("persistent ids are not allowed")


def safe_unpickle(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` admitting only plain containers, str, bytes, numbers and numpy arrays (no object dtype).

    Python 2 pickles (the official CIFAR-10 batches) are read with ``encoding="bytes"``, so their ``str`` keys
    come back as ``bytes`` (``b"data"``).

    Raises
    ------
    DataFileError
        When the pickle names any other callable (it is refused before anything runs), or is malformed.
        ``source`` (usually the file path) is named in the message.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _Refused as exc:
        raise DataFileError(f"{source}: refused to unpickle ({exc}). Only plain containers, strings, numbers and "
                            "numpy arrays are read from data files; this file is not a genuine CIFAR-10 batch "
                            "(it may be malicious), replace it with the official one") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, MemoryError,
            OverflowError, struct_error) as exc:
        raise DataFileError(f"{source}: not a readable pickle ({type(exc).__name__}: {exc}); the file is truncated "
                            "or corrupt, copy it again") from None


# -- CIFAR-10 ------------------------------------------------------------------------------------------------------
_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


def _get(d: dict, key: str) -> Any:
    """``d[key]`` for Python 3 pickles, ``d[b"key"]`` for Python 2 ones read with ``encoding="bytes"``."""
    if key in d:
        return d[key]
    return d.get(key.encode())


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> (images uint8 (N, 32, 32, 3), labels int64 (N,)), with consistency checks."""
    if not path.is_file():
        raise DataFileError(f"data_dir: CIFAR-10 batch {path.name} not found in {path.parent}. The official "
                            "'python version' folder cifar-10-batches-py holds data_batch_1..data_batch_5 and "
                            "test_batch. " + _NO_DOWNLOAD)
    batch = safe_unpickle(_read_bytes(path), str(path))
    if not isinstance(batch, dict):
        raise DataFileError(f"{path}: expected a pickled dict with 'data' and 'labels', got {type(batch).__name__}")
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataFileError(f"{path}: expected keys 'data' (numpy array) and 'labels', got keys "
                            f"{sorted(map(str, batch))}; is this a CIFAR-10 python batch?")
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise DataFileError(f"{path}: expected 'data' uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if len(data) == 0:
        raise DataFileError(f"{path}: expected at least one image, got 'data' of shape {data.shape}; the batch "
                            "is empty, copy the official file again")
    try:
        y = np.asarray(labels)  # no dtype: casting to int would truncate 2.7 to 2, and read "3" as 3
    except (TypeError, ValueError, OverflowError):
        raise DataFileError(f"{path}: expected 'labels' to be a list of integers, got {type(labels).__name__}") \
            from None
    if not np.issubdtype(y.dtype, np.integer):  # as the npz reader: floats are refused even when whole
        raise DataFileError(f"{path}: expected 'labels' to be integers in 0..9, got {type(labels).__name__} of "
                            f"dtype {y.dtype}; is this a CIFAR-10 python batch?")
    if y.shape != (len(data),):
        raise DataFileError(f"{path}: 'data' has {len(data)} rows but 'labels' has shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataFileError(f"{path}: expected labels in 0..9, got range [{y.min()}, {y.max()}]")
    # Each row is 1024 red, then 1024 green, then 1024 blue values, each plane row-major 32x32.
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), y.astype(np.int64, copy=False)


def _cifar_classes_from_meta(folder: Path) -> tuple[str, ...]:
    meta = folder / "batches.meta"
    if not meta.is_file():
        return CIFAR10_CLASSES
    obj = safe_unpickle(_read_bytes(meta), str(meta))
    names = _get(obj, "label_names") if isinstance(obj, dict) else None
    if not isinstance(names, list) or len(names) != 10:
        raise DataFileError(f"{meta}: expected 'label_names', a list of 10 names; remove or replace the file")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def _read_cifar_pickles(folder: Path) -> Dataset:
    parts = [_read_cifar_batch(folder / b) for b in _CIFAR_TRAIN_BATCHES]
    x_te, y_te = _read_cifar_batch(folder / "test_batch")
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    prov = f"CIFAR-10 python batches in {folder} (official batch order)"
    return Dataset("cifar10", x_tr, y_tr, x_te, y_te, _cifar_classes_from_meta(folder), prov, scaling="channel")


def _npz_arrays(path: Path, prefix: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    if not path.is_file():
        raise DataFileError(f"data_dir: CIFAR-10 file {path.name} not found in {path.parent}; the npz layout needs "
                            f"cifar10_train.npz and cifar10_test.npz. {_NO_DOWNLOAD}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if f"{prefix}_x" not in z.files or f"{prefix}_y" not in z.files:
                raise DataFileError(f"{path}: expected arrays {prefix}_x and {prefix}_y, got {z.files}")
            x, y = z[f"{prefix}_x"], z[f"{prefix}_y"]
            try:
                names = z["classes"] if "classes" in z.files else None
            except ValueError:  # stored with object dtype: we do not unpickle it, the standard names serve
                names = None
    except DataFileError:
        raise
    # BadZipFile (a cut or overwritten file) is no OSError; NotImplementedError: an unknown compression method
    except PermissionError as exc:
        raise DataFileError(f"{path}: cannot read it ({exc}); check the file's permissions") from None
    except (OSError, ValueError, EOFError, KeyError, zlib.error, zipfile.BadZipFile, NotImplementedError) as exc:
        # numpy calls a non-zip file (or an object array) pickled data, and suggests allow_pickle: not for data
        why = ("not a zip of plain arrays (numpy would read it as pickled data, which data files are not allowed "
               "to hold)" if "allow_pickle" in str(exc) else f"{type(exc).__name__}: {exc}")
        raise DataFileError(f"{path}: not a readable npz file ({why}); the file is truncated, corrupt or of "
                            "another format, copy it again") from None
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or x.dtype != np.uint8:
        raise DataFileError(f"{path}: expected {prefix}_x uint8 of shape (N, 32, 32, 3), got {x.dtype} {x.shape}")
    if len(x) == 0:
        raise DataFileError(f"{path}: expected at least one image in {prefix}_x, got shape {x.shape}; the split "
                            "is empty, rebuild the file")
    y = np.asarray(y)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise DataFileError(f"{path}: expected {prefix}_y integers of shape ({len(x)},), got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataFileError(f"{path}: expected labels in 0..9, got range [{y.min()}, {y.max()}]")
    if names is None:
        classes = CIFAR10_CLASSES
    elif names.ndim != 1 or len(names) != 10:
        raise DataFileError(f"{path}: expected 'classes' to hold 10 class names, got an array of shape "
                            f"{names.shape}; fix or drop the entry (the standard CIFAR-10 names are used without it)")
    else:
        # names saved as bytes (dtype 'S', e.g. straight from the pickled batches' meta) are text, not "b'cat'"
        classes = tuple(c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c) for c in names)
    return x, y.astype(np.int64), classes


def _read_cifar_npz(folder: Path) -> Dataset:
    x_tr, y_tr, classes = _npz_arrays(folder / "cifar10_train.npz", "train")
    x_te, y_te, _ = _npz_arrays(folder / "cifar10_test.npz", "test")
    prov = f"CIFAR-10 npz layout in {folder} (sorted by class and file name: shuffle before use)"
    return Dataset("cifar10", x_tr, y_tr, x_te, y_te, classes, prov, scaling="channel")


def read_cifar10(data_dir: str | Path) -> Dataset:
    """Read CIFAR-10 from ``data_dir`` in either of its two layouts.

    1. The official "python version": ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` (pickled dicts
       with ``data`` ``(N, 3072)`` uint8 and ``labels``) in ``data_dir``, ``data_dir/cifar-10-batches-py`` or
       ``data_dir/cifar10/cifar-10-batches-py``. They are read with a restricted unpickler
       (:func:`safe_unpickle`), so a crafted file cannot run code. Batch order is kept.
    2. The npz layout: ``cifar10_train.npz`` (``train_x`` uint8 ``(N, 32, 32, 3)``, ``train_y``) and
       ``cifar10_test.npz`` (``test_x``, ``test_y``) in ``data_dir`` or ``data_dir/cifar10``. **These are sorted
       by class**: call :meth:`Dataset.shuffled` (``load_dataset("cifar10", ...)`` does) before training.

    Counts are checked for consistency (rows of ``data`` == labels, 3072 columns, labels in 0..9), not against
    50,000 / 10,000, so tiny files in the same format read too.

    Returns
    -------
    Dataset
        ``train_x`` uint8 ``(m, 32, 32, 3)`` (height, width, RGB), ``train_y`` int64 ``(m,)``, same for test;
        ``image_shape`` ``(3, 32, 32)``; ``scaling="channel"`` with the per-channel mean and standard deviation
        of these training images (:attr:`Dataset.channel_stats`), so :meth:`Dataset.images` gives standardized
        ``(m, 3, 32, 32)`` floats (``.with_scaling("unit")`` for pixels in ``[0, 1]``).

    Raises
    ------
    DataFileError
        No layout found (the message lists the files looked for), a file is missing, truncated, malformed
        (labels that are not integers in 0..9, an npz ``classes`` entry that is not 10 names), holds no images,
        or is refused.
    """
    kind, folder = _locate_cifar10(_existing_dir(data_dir, "cifar10"))
    return _read_cifar_pickles(folder) if kind == "pickle" else _read_cifar_npz(folder)


def _locate_cifar10(data_dir: Path) -> tuple[str, Path]:
    """("pickle" or "npz", folder) of the first CIFAR-10 layout found under ``data_dir``."""
    for folder in (data_dir, data_dir / "cifar-10-batches-py", data_dir / "cifar10" / "cifar-10-batches-py",
                   data_dir / "cifar10"):
        if (folder / "data_batch_1").is_file() or (folder / "test_batch").is_file():
            return "pickle", folder
        if (folder / "cifar10_train.npz").is_file() or (folder / "cifar10_test.npz").is_file():
            return "npz", folder
    raise DataFileError(f"data_dir: CIFAR-10 not found in {data_dir}: looked for cifar-10-batches-py/data_batch_1 "
                        "(official python batches: data_batch_1..5, test_batch) and cifar10_train.npz / "
                        f"cifar10_test.npz, in {data_dir} and {data_dir / 'cifar10'}. {_NO_DOWNLOAD}")


# -- the shipped MNIST subset --------------------------------------------------------------------------------------
def load_mnist_subset() -> Dataset:
    """The class-balanced MNIST subset shipped in the package: 10,000 train / 2,000 test images.

    Provenance (also stored in the file, key ``provenance``; :attr:`Dataset.provenance` returns it):

    * Source: the four standard MNIST IDX files (canonical order, 60,000 train / 10,000 test), SHA-256 of the
      uncompressed files: train-images ``ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db``,
      train-labels ``65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5``, t10k-images
      ``0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7``, t10k-labels
      ``ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2`` (the canonical values).
    * Selection: ``rng = numpy.random.default_rng(0)``; for each class ``c = 0, ..., 9`` in turn,
      ``rng.choice(np.flatnonzero(train_y == c), 1000, replace=False)``; the 10,000 chosen indices are sorted
      ascending (so the subset keeps MNIST's class-interleaved order). Then the same for the test split with 200 per
      class, continuing with the same generator. The chosen source indices are stored as ``train_index`` and
      ``test_index`` (the file, not a re-run under another numpy, is the reference).
    * Fingerprint: SHA-256 of the bytes of ``train_x, train_y, test_x, test_y`` (uint8, as stored, C order)
      ``a37d6052617a61d971fe802663fd17e569b4bdf533e4adf10e9ce8e985af9331``; the npz is 1,973,878 bytes.
    * Generated by ``python scripts/make_mnist_subset.py --data-dir DIR`` (``DIR`` holding the four files); the
      script writes a byte-reproducible zip (fixed timestamps, deflate level 9).

    Returns
    -------
    Dataset
        ``name="mnist-small"``; ``train_x`` uint8 ``(10000, 28, 28)``, ``train_y`` int64 ``(10000,)`` with
        exactly 1,000 per class; ``test_x`` uint8 ``(2000, 28, 28)``, ``test_y`` with 200 per class.
        Samples-first; use :meth:`Dataset.arrays` for ``(m, 784)`` floats in ``[0, 1]``.
    """
    path = resources.files("fenchel_cvx").joinpath("_data", _SUBSET_FILE)
    try:
        with resources.as_file(path) as p, np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("train_x", "train_y", "test_x", "test_y", "provenance")}
    except (OSError, KeyError, ValueError, zlib.error, zipfile.BadZipFile, NotImplementedError) as exc:
        raise DataFileError(f"{path}: the shipped MNIST subset cannot be read ({type(exc).__name__}: {exc}); "
                            "reinstall fenchel-cvx, or regenerate it with scripts/make_mnist_subset.py") from None
    for split, m in (("train", 10_000), ("test", 2_000)):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.shape != (m, 28, 28) or x.dtype != np.uint8 or y.shape != (m,):
            raise DataFileError(f"{path}: expected {split}_x uint8 ({m}, 28, 28) and {split}_y ({m},), got "
                                f"{x.dtype} {x.shape} and {y.shape}; regenerate it with "
                                "scripts/make_mnist_subset.py")
    return Dataset("mnist-small", arrays["train_x"], arrays["train_y"].astype(np.int64), arrays["test_x"],
                   arrays["test_y"].astype(np.int64), MNIST_CLASSES, "\n".join(map(str, arrays["provenance"])))


def _sha256_arrays(*arrays: np.ndarray) -> str:
    """SHA-256 over the raw bytes of the given arrays in order (C order); used to fingerprint the subset."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# -- synthetic data ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Teacher:
    """Data generated by a teacher network, and the teacher itself.

    Attributes
    ----------
    X : numpy.ndarray, shape (m, n)
        Inputs, samples-first, i.i.d. standard normal.
    Y : numpy.ndarray, shape (m, p)
        Outputs, samples-first: ``Y = phi(X W*^T + b*)`` for one layer (Appendix B), or the same map applied
        layer after layer when the teacher has hidden layers. With ``noise > 0`` the noise is added to the
        pre-activations, so ``Y`` stays in the range of phi (where the penalty ``B`` is finite).
    W : list of numpy.ndarray
        The teacher's weights in the paper's layout, ``W[l]`` of shape ``(p_{l+1}, p_l)``; one entry without
        hidden layers (``W[0] = W*``, ``(p, n)``).
    b : list of numpy.ndarray
        Biases, ``b[l]`` of shape ``(p_{l+1},)`` (zeros when ``bias=False``).
    act : Activation
        phi, applied after every layer, output layer included.
    noise : float
        Standard deviation of the pre-activation noise.
    """

    X: np.ndarray
    Y: np.ndarray
    W: list[np.ndarray]
    b: list[np.ndarray]
    act: Activation
    noise: float = 0.0

    @property
    def W_star(self) -> np.ndarray:
        """``W*`` ``(p, n)`` of a one-layer teacher (Appendix B)."""
        self._one_layer("W_star")
        return self.W[0]

    @property
    def b_star(self) -> np.ndarray:
        """``b*`` ``(p,)`` of a one-layer teacher."""
        self._one_layer("b_star")
        return self.b[0]

    def _one_layer(self, attr: str) -> None:
        if len(self.W) != 1:
            raise ShapeError(f"{attr}: defined for a one-layer teacher, got {len(self.W)} layers; read .W and .b")


def _widths(hidden: int | Sequence[int] | None) -> list[int]:
    if hidden is None:
        return []
    widths = [hidden] if isinstance(hidden, (int, np.integer)) else list(hidden)
    return [check_int(h, f"hidden[{i}]", 1, hint="a layer width") for i, h in enumerate(widths)]


def _rng(seed: Any) -> np.random.Generator:
    """``numpy.random.default_rng(seed)`` for a seed that is an integer in ``0..2**63-1`` (named when not)."""
    return np.random.default_rng(check_int(seed, "seed", 0))


def teacher(n: int, p: int, m: int, *, act: str | Activation = "relu", seed: int = 0, noise: float = 0.0,
            hidden: int | Sequence[int] | None = None, bias: bool = True) -> Teacher:
    r"""Regression data from a random teacher network: the Appendix B setting ``Y = phi(W* X)``.

    Samples-first: ``Y = phi(X W*^T + b*)``, i.e. ``Y^T = phi(W* X^T + b* 1^T)`` in the paper's layout, where
    Appendix B shows ``W*`` is a global minimizer of the convex problem ``min_W B_phi(Y^T, W X^T)``.

    Parameters
    ----------
    n, p, m : int
        Input size, output size, number of samples.
    act : str or Activation, default "relu"
        phi, after every layer (so ``Y`` lies in phi's range).
    seed : int, default 0
        ``numpy.random.default_rng(seed)`` draws, in order, ``X`` ~ N(0, 1) ``(m, n)``, then for each layer
        ``W_l`` ~ N(0, 1/p_l) (unit-scale pre-activations) and ``b_l`` ~ N(0, 0.1^2), then the noise.
    noise : float, default 0
        Standard deviation of Gaussian noise added to each pre-activation (keeps ``Y`` in phi's range).
    hidden : int or sequence of int, optional
        Widths of hidden layers; ``None`` gives the one-layer teacher of Appendix B.
    bias : bool, default True
        ``False`` gives ``b* = 0`` exactly, as in Appendix B.

    Returns
    -------
    Teacher
        ``X`` ``(m, n)``, ``Y`` ``(m, p)``, ``W`` (list, ``W[l]`` ``(p_{l+1}, p_l)``), ``b``, ``act``; for one
        layer ``W_star`` ``(p, n)`` and ``b_star`` ``(p,)``.
    """
    n, p, m = check_int(n, "n", 1), check_int(p, "p", 1), check_int(m, "m", 1)
    noise = check_scalar(noise, "noise", nonneg=True)
    phi = get_activation(act)
    sizes = [n, *_widths(hidden), p]
    rng = _rng(seed)
    X = rng.standard_normal((m, n))
    W = [rng.standard_normal((q, r)) / np.sqrt(r) for r, q in itertools.pairwise(sizes)]
    b = [0.1 * rng.standard_normal(q) if bias else np.zeros(q) for q in sizes[1:]]
    H = X
    for W_l, b_l in zip(W, b, strict=True):
        U = H @ W_l.T + b_l
        if noise > 0:
            U = U + noise * rng.standard_normal(U.shape)
        H = phi.forward(U)
    return Teacher(X=X, Y=H, W=W, b=b, act=phi, noise=noise)


def make_synthetic_classification(m: int, n: int, classes: int, seed: int = 0, *, hidden: int | None = 32,
                                  act: str | Activation = "relu") -> tuple[np.ndarray, np.ndarray]:
    """Classification data labelled by a random teacher network: ``y = argmax(phi(X W0^T + b0) W1^T + b1)``.

    ``X`` ~ N(0, 1); the teacher is drawn as in :func:`teacher` (``hidden`` units, then a linear output). The
    output bias ``b1`` is set to minus the mean logit over the drawn sample, so no class is starved.

    Parameters
    ----------
    m, n, classes : int
        Samples, features, classes (``classes >= 2``).
    seed : int, default 0
    hidden : int or None, default 32
        Width of the teacher's hidden layer; ``None`` makes the teacher linear.
    act : str or Activation, default "relu"

    Returns
    -------
    X : numpy.ndarray of float64, shape (m, n)
        Samples-first inputs.
    y : numpy.ndarray of int64, shape (m,)
        Labels in ``0 .. classes - 1``.
    """
    m, n, classes = check_int(m, "m", 1), check_int(n, "n", 1), check_int(classes, "classes", 1)
    if classes < 2:
        raise ValueRangeError(f"classes: expected at least 2, got {classes}")
    phi = get_activation(act)
    rng = _rng(seed)
    X = rng.standard_normal((m, n))
    H = X
    if hidden is not None:
        h = check_int(hidden, "hidden", 1)
        H = phi.forward(X @ (rng.standard_normal((h, n)) / np.sqrt(n)).T + 0.1 * rng.standard_normal(h))
    logits = H @ (rng.standard_normal((classes, H.shape[1])) / np.sqrt(H.shape[1])).T
    y = np.argmax(logits - logits.mean(axis=0), axis=1).astype(np.int64)
    return X, y


# -- one door ------------------------------------------------------------------------------------------------------
def load_dataset(name: str, data_dir: str | Path | None = None, *, seed: int = 0, n_train: int = 1000,
                 n_test: int = 200, n_features: int = 20, classes: int = 10, scaling: str | None = None) -> Dataset:
    """Load a data set by name; samples-first arrays (see :class:`Dataset`).

    Parameters
    ----------
    name : {"mnist-small", "mnist", "cifar10", "synthetic"}
        ``"mnist-small"``: the shipped class-balanced MNIST subset (:func:`load_mnist_subset`), no files needed.
        ``"mnist"``: the four IDX files in ``data_dir`` (:func:`read_mnist`).
        ``"cifar10"``: either CIFAR-10 layout in ``data_dir`` (:func:`read_cifar10`); the npz layout, which is
        sorted by class, is shuffled with ``seed``.
        ``"synthetic"``: :func:`make_synthetic_classification` with ``n_train + n_test`` samples, split in order.
    data_dir : str or Path, optional
        Folder with the files, needed by ``"mnist"`` and ``"cifar10"``.
    seed : int, default 0
        Seed of the synthetic teacher and of the CIFAR-10 npz shuffle; other data sets keep their file order.
    n_train, n_test, n_features, classes : int
        Sizes of the synthetic data set (ignored by the others).
    scaling : {"unit", "channel"}, optional
        How :meth:`Dataset.images` / :meth:`Dataset.arrays` scale the inputs; ``None`` keeps the data set's own:
        ``"channel"`` (per-channel standardization with training statistics) for CIFAR-10, ``"unit"`` (pixels in
        ``[0, 1]``; synthetic features as drawn) for the others.

    Raises
    ------
    DataFileError
        ``data_dir`` missing or not a folder, a file missing or unreadable (the message names it).
    ChoiceError
        Unknown ``name`` or ``scaling``.
    ShapeError
        ``scaling="channel"`` for the synthetic feature vectors.
    """
    if scaling is not None:
        check_choice(scaling, "scaling", SCALINGS)
    ds = _load(name, data_dir, seed=seed, n_train=n_train, n_test=n_test, n_features=n_features, classes=classes)
    return ds if scaling is None or scaling == ds.scaling else ds.with_scaling(scaling)


def _load(name: str, data_dir: str | Path | None, *, seed: int, n_train: int, n_test: int, n_features: int,
          classes: int) -> Dataset:
    key = str(name).lower().replace("_", "-")
    if key == "mnist-small":
        return load_mnist_subset()
    if key == "mnist":
        return read_mnist(data_dir)
    if key == "cifar10":
        kind, folder = _locate_cifar10(_existing_dir(data_dir, "cifar10"))
        if kind == "pickle":
            return _read_cifar_pickles(folder)
        return _read_cifar_npz(folder).shuffled(seed)
    if key == "synthetic":
        n_train, n_test = check_int(n_train, "n_train", 1), check_int(n_test, "n_test", 1)
        X, y = make_synthetic_classification(n_train + n_test, n_features, classes, seed)
        prov = (f"make_synthetic_classification(m={n_train + n_test}, n={n_features}, classes={classes}, "
                f"seed={seed}); first {n_train} train, last {n_test} test")
        return Dataset("synthetic", X[:n_train], y[:n_train], X[n_train:], y[n_train:],
                       tuple(str(c) for c in range(classes)), prov)
    raise ChoiceError(f"name: expected one of {list(DATASETS)}, got {name!r}")
