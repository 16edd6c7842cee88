"""Data readers, the shipped MNIST subset and the synthetic generators (fenchel_cvx.data).

Every file read here is written by the test itself (tmp_path); nothing needs the full data sets.
"""

from __future__ import annotations

import gzip
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from fenchel_cvx import data
from fenchel_cvx.activations import get_activation
from fenchel_cvx.errors import (
    ChoiceError,
    DataFileError,
    DomainError,
    FenchelError,
    LabelError,
    ShapeError,
    ValueRangeError,
)

MNIST_STEMS = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


# -- helpers that write tiny files in the real formats ------------------------------------------------------------
def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + arr.tobytes()


def write_mnist(folder: Path, rng: np.random.Generator, m_train: int = 7, m_test: int = 5,
                compress: bool = True) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (m_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, m_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (m_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, m_test, dtype=np.uint8),
    }
    for stem, arr in arrays.items():
        raw = idx_bytes(arr)
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return arrays


def cifar_batch(rng: np.random.Generator, n: int, *, py2_keys: bool = True) -> tuple[dict, np.ndarray, list]:
    x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    k = (lambda s: s.encode()) if py2_keys else (lambda s: s)
    batch = {k("batch_label"): b"fake batch", k("data"): x, k("labels"): labels,
             k("filenames"): [f"img_{i}.png".encode() for i in range(n)]}
    return batch, x, labels


def write_cifar_pickles(folder: Path, rng: np.random.Generator, n: int = 4) -> dict[str, tuple]:
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch, x, labels = cifar_batch(rng, n)
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))  # the official files are protocol-2 pickles
        written[name] = (x, labels)
    return written


# -- IDX / MNIST ---------------------------------------------------------------------------------------------------
def test_mnist_files_are_never_paired_across_folders(tmp_path):
    """A stray train-images file in DIR beside a full set in DIR/mnist: the set in DIR/mnist is read, whole (the
    stray images were paired with DIR/mnist's labels); a set split between the folders is refused, naming both."""
    arrays = write_mnist(tmp_path / "mnist", np.random.default_rng(1))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.random.default_rng(2).integers(0, 256, (7, 28, 28), dtype=np.uint8))))
    ds = data.read_mnist(tmp_path)
    np.testing.assert_array_equal(ds.train_x, arrays["train-images-idx3-ubyte"])
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").rename(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataFileError, match="expected the four MNIST files in one folder, found only parts"):
        data.read_mnist(tmp_path)


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("sub", ["", "mnist"], ids=["flat", "mnist-subdir"])
def test_mnist_round_trip(tmp_path, compress, sub):
    arrays = write_mnist(tmp_path / sub if sub else tmp_path, np.random.default_rng(1), compress=compress)
    ds = data.read_mnist(tmp_path)
    np.testing.assert_array_equal(ds.train_x, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.train_y, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(ds.test_x, arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.test_y, arrays["t10k-labels-idx1-ubyte"])
    assert ds.train_y.dtype == np.int64 and ds.train_x.dtype == np.uint8
    X, _y = ds.arrays("test", dtype=np.float32)
    assert X.shape == (5, 784) and X.dtype == np.float32
    np.testing.assert_allclose(X, arrays["t10k-images-idx3-ubyte"].reshape(5, -1) / 255.0, rtol=1e-6)


def test_read_idx_header_shape_and_magic(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(arr))
    out = data.read_idx(tmp_path / "a.idx", magic=2051)
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable
    with pytest.raises(DataFileError, match=r"a\.idx.*magic number 2049.*got 2051"):
        data.read_idx(tmp_path / "a.idx", magic=2049)


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_truncated_idx_names_the_file(tmp_path, compress):
    write_mnist(tmp_path, np.random.default_rng(2), compress=compress)
    name = "train-images-idx3-ubyte" + (".gz" if compress else "")
    path = tmp_path / name
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFileError, match=re.escape(name)) as err:
        data.read_mnist(tmp_path)
    assert "truncated" in str(err.value)


def test_idx_longer_than_header_is_rejected(tmp_path):
    (tmp_path / "x").write_bytes(idx_bytes(np.zeros(3)) + b"\x00")
    with pytest.raises(DataFileError, match="longer than its header"):
        data.read_idx(tmp_path / "x")


@pytest.mark.parametrize("missing", MNIST_STEMS)
def test_missing_mnist_file_is_named(tmp_path, missing):
    write_mnist(tmp_path, np.random.default_rng(3))
    (tmp_path / f"{missing}.gz").unlink()
    with pytest.raises(DataFileError, match=re.escape(missing)) as err:
        data.read_mnist(tmp_path)
    assert "never downloads" in str(err.value)
    assert isinstance(err.value, FenchelError)


def test_wrong_magic_labels_swapped(tmp_path):
    write_mnist(tmp_path, np.random.default_rng(4), compress=False)
    # A labels file put where the images belong: its magic is 2049, not 2051.
    (tmp_path / "train-images-idx3-ubyte").write_bytes((tmp_path / "train-labels-idx1-ubyte").read_bytes())
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte.*2051.*got 2049"):
        data.read_mnist(tmp_path)


def test_mnist_inconsistent_counts_and_labels(tmp_path):
    rng = np.random.default_rng(5)
    write_mnist(tmp_path, rng, compress=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4)))  # 5 images, 4 labels
    with pytest.raises(DataFileError, match="5 images but .* 4 labels"):
        data.read_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(5, 12)))
    with pytest.raises(DataFileError, match="labels in 0..9"):
        data.read_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5)))
    with pytest.raises(DataFileError, match=r"expected \(60000, 10000\)"):
        data.read_mnist(tmp_path, expected_counts=(60000, 10000))


def test_not_gzip_with_gz_suffix(tmp_path):
    (tmp_path / "t.gz").write_bytes(b"definitely not gzip")
    with pytest.raises(DataFileError, match=r"t\.gz.*gzip"):
        data.read_idx(tmp_path / "t.gz")


# -- CIFAR-10 ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sub", ["", "cifar-10-batches-py"])
def test_cifar_pickle_round_trip(tmp_path, sub):
    written = write_cifar_pickles(tmp_path / sub if sub else tmp_path, np.random.default_rng(6))
    ds = data.read_cifar10(tmp_path)
    assert ds.train_x.shape == (20, 32, 32, 3) and ds.test_x.shape == (4, 32, 32, 3)
    x1, l1 = written["data_batch_1"]
    # Row layout: 1024 red, 1024 green, 1024 blue, each plane row-major; check pixels one by one.
    for i, (r, c) in enumerate([(0, 0), (5, 17), (31, 31)]):
        for ch in range(3):
            assert ds.train_x[i, r, c, ch] == x1[i, ch * 1024 + r * 32 + c]
    np.testing.assert_array_equal(ds.train_y[:4], l1)
    np.testing.assert_array_equal(ds.train_y[-4:], written["data_batch_5"][1])
    np.testing.assert_array_equal(ds.test_y, written["test_batch"][1])
    assert ds.classes == data.CIFAR10_CLASSES
    # load_dataset keeps the official batch order.
    np.testing.assert_array_equal(data.load_dataset("cifar10", tmp_path, seed=3).train_y, ds.train_y)


def test_cifar_python3_pickle_and_meta(tmp_path):
    rng = np.random.default_rng(7)
    write_cifar_pickles(tmp_path, rng)
    batch, _x, labels = cifar_batch(rng, 3, py2_keys=False)
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch, protocol=5))
    names = [f"c{i}".encode() for i in range(10)]
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    ds = data.read_cifar10(tmp_path)
    np.testing.assert_array_equal(ds.test_y, labels)
    assert ds.classes == tuple(f"c{i}" for i in range(10))


def test_cifar_inconsistent_batch(tmp_path):
    rng = np.random.default_rng(8)
    write_cifar_pickles(tmp_path, rng)
    batch, _, _ = cifar_batch(rng, 4)
    batch[b"labels"] = batch[b"labels"][:3]
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataFileError, match=r"data_batch_3.*4 rows.*\(3,\)"):
        data.read_cifar10(tmp_path)
    batch, _, _ = cifar_batch(rng, 4)
    batch[b"data"] = batch[b"data"][:, :3000]
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataFileError, match=r"data_batch_3.*\(N, 3072\)"):
        data.read_cifar10(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DataFileError, match="data_batch_3 not found"):
        data.read_cifar10(tmp_path)


def test_cifar_truncated_pickle(tmp_path):
    write_cifar_pickles(tmp_path, np.random.default_rng(9))
    raw = (tmp_path / "test_batch").read_bytes()
    (tmp_path / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFileError, match="test_batch") as err:
        data.read_cifar10(tmp_path)
    # damaged, not hostile: pickle raises one error type for both, the message must not call it malicious
    assert "truncated or corrupt" in str(err.value) and "malicious" not in str(err.value)


class _Evil:
    """Unpickling this runs ``os.system`` with the command it carries -- the classic attack."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os
        return (os.system, (self.command,))


class _EvilEval:
    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return (eval, (self.code,))


@pytest.mark.parametrize("protocol", [2, 5])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, protocol):
    write_cifar_pickles(tmp_path, np.random.default_rng(10))
    marker = tmp_path / "pwned"
    batch, _, _ = cifar_batch(np.random.default_rng(11), 4)
    batch[b"batch_label"] = _Evil(f"touch {marker}")
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=protocol))
    with pytest.raises(FenchelError, match=r"data_batch_2.*(posix|os|nt)\.system is not allowed"):
        data.read_cifar10(tmp_path)
    assert not marker.exists()
    # Sanity check of the test itself: the same bytes do run the command under the plain unpickler.
    pickle.loads((tmp_path / "data_batch_2").read_bytes())
    assert marker.exists()


def test_safe_unpickle_refuses_builtins_and_object_arrays(tmp_path):
    marker = tmp_path / "m"
    payload = pickle.dumps(_EvilEval(f"open({str(marker)!r}, 'w')"), protocol=4)
    with pytest.raises(DataFileError, match="builtins.eval is not allowed"):
        data.safe_unpickle(payload, "payload")
    assert not marker.exists()
    with pytest.raises(DataFileError, match="object dtypes are not allowed"):
        data.safe_unpickle(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2))
    # What the readers need does come through: arrays (numpy's own pickling paths), scalars, containers.
    obj = {b"a": np.arange(6, dtype=np.uint8).reshape(2, 3), "s": np.int64(3), "l": [1.5, b"x", ("t",)]}
    for protocol in (2, 4, 5):
        out = data.safe_unpickle(pickle.dumps(obj, protocol=protocol))
        np.testing.assert_array_equal(out[b"a"], obj[b"a"])
        assert out["s"] == 3 and out["l"] == [1.5, b"x", ("t",)]


def test_cifar_npz_layout(tmp_path):
    rng = np.random.default_rng(12)
    folder = tmp_path / "cifar10"
    folder.mkdir()
    y_tr = np.repeat(np.arange(10, dtype=np.uint8), 3)  # sorted by class, as the shared npz files are
    x_tr = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    y_te = np.arange(10, dtype=np.uint8)
    x_te = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    np.savez_compressed(folder / "cifar10_train.npz", train_x=x_tr, train_y=y_tr,
                        classes=np.array(data.CIFAR10_CLASSES))
    np.savez_compressed(folder / "cifar10_test.npz", test_x=x_te, test_y=y_te)
    ds = data.read_cifar10(tmp_path)
    np.testing.assert_array_equal(ds.train_x, x_tr)
    np.testing.assert_array_equal(ds.train_y, y_tr)
    assert ds.classes == data.CIFAR10_CLASSES
    # load_dataset shuffles this layout with the seed: same pairs, new order, reproducible.
    a = data.load_dataset("cifar10", tmp_path, seed=1)
    b = data.load_dataset("cifar10", tmp_path, seed=1)
    np.testing.assert_array_equal(a.train_y, b.train_y)
    assert not np.array_equal(a.train_y, y_tr)
    for i in range(len(a.train_y)):
        j = int(np.flatnonzero((x_tr == a.train_x[i]).all(axis=(1, 2, 3)))[0])
        assert y_tr[j] == a.train_y[i]
    np.savez_compressed(folder / "cifar10_test.npz", test_x=x_te[:, :16], test_y=y_te)
    with pytest.raises(DataFileError, match=r"cifar10_test\.npz.*\(N, 32, 32, 3\)"):
        data.read_cifar10(tmp_path)
    (folder / "cifar10_test.npz").unlink()
    with pytest.raises(DataFileError, match=r"cifar10_test\.npz not found"):
        data.read_cifar10(tmp_path)


def test_cifar_nothing_there(tmp_path):
    with pytest.raises(DataFileError, match="CIFAR-10 not found.*data_batch_1.*cifar10_train.npz"):
        data.read_cifar10(tmp_path)


# -- the shipped subset --------------------------------------------------------------------------------------------
def test_shipped_subset():
    ds = data.load_mnist_subset()
    assert ds.name == "mnist-small"
    assert ds.train_x.shape == (10000, 28, 28) and ds.test_x.shape == (2000, 28, 28)
    assert ds.train_x.dtype == np.uint8 and ds.train_y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(ds.train_y, minlength=10), np.full(10, 1000))
    np.testing.assert_array_equal(np.bincount(ds.test_y, minlength=10), np.full(10, 200))
    # Real digits, not noise or blanks: MNIST's mean pixel is about 0.13 and most pixels are background.
    X, _ = ds.arrays()
    assert X.shape == (10000, 784) and 0.10 < X.mean() < 0.16 and (X == 0).mean() > 0.7
    assert len({row.tobytes() for row in ds.train_x}) == 10000  # no duplicated images
    # Provenance: source checksums, rule, seed, and a fingerprint that matches the arrays.
    prov = ds.provenance
    assert "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db" in prov  # canonical train-images
    assert "default_rng(0)" in prov and "seed: 0" in prov
    stored = re.search(r"arrays sha256 .*: ([0-9a-f]{64})", prov).group(1)
    u8 = [a.astype(np.uint8) for a in (ds.train_x, ds.train_y, ds.test_x, ds.test_y)]
    assert data._sha256_arrays(*u8) == stored
    assert stored in data.load_mnist_subset.__doc__
    path = Path(data.__file__).parent / "_data" / "mnist_subset.npz"
    assert path.stat().st_size <= 3_000_000
    with np.load(path, allow_pickle=False) as z:
        idx = z["train_index"].astype(int)
    assert len(np.unique(idx)) == 10000 and np.all(np.diff(idx) > 0) and idx.max() < 60000
    assert data.load_dataset("mnist-small").train_x.shape == (10000, 28, 28)


# -- synthetic -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_teacher_is_phi_of_affine(act):
    t = data.teacher(6, 3, 50, act=act, seed=1)
    phi = get_activation(act)
    assert t.X.shape == (50, 6) and t.Y.shape == (50, 3)
    assert t.W_star.shape == (3, 6) and t.b_star.shape == (3,)
    np.testing.assert_allclose(t.Y, phi.forward(t.X @ t.W_star.T + t.b_star), rtol=0, atol=0)
    # Paper layout (Appendix B): B(Y^T, W* X^T + b*) = 0, and a perturbed W gives a positive penalty.
    assert phi.B_sum(t.Y.T, t.W_star @ t.X.T + t.b_star[:, None]) <= 1e-10
    assert phi.B_sum(t.Y.T, (t.W_star + 0.1) @ t.X.T + t.b_star[:, None]) > 1e-3
    # Seeded: the same seed gives the same data, another seed other data.
    np.testing.assert_array_equal(data.teacher(6, 3, 50, act=act, seed=1).Y, t.Y)
    assert not np.allclose(data.teacher(6, 3, 50, act=act, seed=2).Y, t.Y)


def test_teacher_variants():
    t = data.teacher(5, 2, 40, hidden=[4, 3], seed=0, bias=False)
    assert [W.shape for W in t.W] == [(4, 5), (3, 4), (2, 3)]
    assert all(not b.any() for b in t.b)
    H = t.X
    for W in t.W:
        H = np.maximum(H @ W.T, 0)
    np.testing.assert_allclose(t.Y, H)
    with pytest.raises(ShapeError, match="W_star"):
        _ = t.W_star
    noisy = data.teacher(5, 2, 40, seed=0, noise=0.5)
    clean_pre = noisy.X @ noisy.W_star.T + noisy.b_star
    assert (noisy.Y >= 0).all() and not np.allclose(noisy.Y, np.maximum(clean_pre, 0))
    with pytest.raises(ValueRangeError, match="noise"):
        data.teacher(5, 2, 40, noise=-1.0)
    with pytest.raises(ValueRangeError, match="m: expected an integer >= 1"):
        data.teacher(5, 2, 0)


def test_synthetic_classification():
    X, y = data.make_synthetic_classification(600, 8, 4, seed=3)
    assert X.shape == (600, 8) and y.shape == (600,) and y.dtype == np.int64
    counts = np.bincount(y, minlength=4)
    assert counts.min() > 0.05 * 600, counts  # the centred output bias keeps every class present
    X2, y2 = data.make_synthetic_classification(600, 8, 4, seed=3)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    ds = data.load_dataset("synthetic", seed=3, n_train=50, n_test=20, n_features=8, classes=4)
    assert ds.train_x.shape == (50, 8) and ds.test_x.shape == (20, 8) and ds.n_classes == 4
    assert ds.arrays()[0].dtype == np.float64 and ds.n_features == 8
    with pytest.raises(ValueRangeError, match="classes: expected at least 2"):
        data.make_synthetic_classification(10, 3, 1)


# -- the one door and Dataset helpers ------------------------------------------------------------------------------
def test_load_dataset_errors(tmp_path):
    for name in ("mnist", "cifar10"):
        with pytest.raises(DataFileError, match="data_dir.*got data_dir=None"):
            data.load_dataset(name)
        with pytest.raises(DataFileError, match="expected an existing folder"):
            data.load_dataset(name, tmp_path / "nope")
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte"):
        data.load_dataset("mnist", tmp_path)
    with pytest.raises(ChoiceError, match=r"name: expected one of .*'mnist-small'.*got 'imagenet'"):
        data.load_dataset("imagenet")


def test_the_test_subsample_does_not_depend_on_n_train():
    """Runs of different --n-train with the same seed and --n-test are scored on the same test samples (the test
    draw came after the train draw from one generator: 200 vs 500 training samples shared 3 of 100 test rows)."""
    ds = data.load_dataset("synthetic", seed=0, n_train=600, n_test=300, n_features=3, classes=3)
    tests = [ds.subsample(n, 100, seed=4).test_x for n in (None, 200, 500, 600)]
    assert all(np.array_equal(tests[0], t) for t in tests[1:])
    assert not np.array_equal(tests[0], ds.subsample(None, 100, seed=5).test_x)  # the seed still draws them


def test_subsample_sizes_are_checked_like_every_integer():
    """n_train / n_test go through _checks.check_int (bools, floats, values < 1 refused in its words), and the
    split's size bounds them from above."""
    ds = data.load_dataset("synthetic", seed=0, n_train=30, n_test=10, n_features=3, classes=3)
    for bad in (True, np.bool_(False), -1, 0, 2.0, "5"):
        with pytest.raises(ValueRangeError, match=rf"^n_train: expected an integer >= 1 and <= {2 ** 63 - 1} or "
                                                  rf"None, got {re.escape(repr(bad))}; the train split's size, at "
                                                  r"most 30$"):
            ds.subsample(bad)
    with pytest.raises(ValueRangeError, match=r"^n_test: expected an integer >= 1 .*got 1\.5; the test split's"):
        ds.subsample(None, 1.5)
    with pytest.raises(ValueRangeError, match=r"^n_test: expected at most 10 \(the test split's size\), got 11; "):
        ds.subsample(None, 11)
    assert ds.subsample(np.int64(30), None).train_x.shape == (30, 3)


def test_dataset_shuffle_subsample():
    ds = data.load_dataset("synthetic", seed=0, n_train=30, n_test=10, n_features=3, classes=3)
    sh = ds.shuffled(4)
    order = np.argsort(sh.train_x[:, 0])
    np.testing.assert_array_equal(sh.train_y[order], ds.train_y[np.argsort(ds.train_x[:, 0])])
    sub = ds.subsample(12, 5, seed=1)
    assert sub.train_x.shape == (12, 3) and sub.test_x.shape == (5, 3)
    rows = [int(np.flatnonzero((ds.train_x == r).all(axis=1))[0]) for r in sub.train_x]
    assert rows == sorted(rows) and np.array_equal(ds.train_y[rows], sub.train_y)
    with pytest.raises(ValueRangeError, match="n_train"):
        ds.subsample(31)
    with pytest.raises(ChoiceError, match="split"):
        ds.arrays("val")
    with pytest.raises(ShapeError):
        data.to_float(np.float64(1.0))


# -- image shapes, channels-first floats, per-channel scaling ------------------------------------------------------
def write_cifar_npz(folder: Path, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray) -> None:
    """The layout /work/shared/data/build_cifar10.py writes: uint8 images and labels, file names, class names."""
    folder.mkdir(parents=True, exist_ok=True)
    classes = np.array(data.CIFAR10_CLASSES)
    for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        names = np.array([f"{data.CIFAR10_CLASSES[c]}/{i:04d}.png" for i, c in enumerate(y)])
        np.savez_compressed(folder / f"cifar10_{split}.npz", **{f"{split}_x": x, f"{split}_y": y.astype(np.uint8),
                                                                f"{split}_filenames": names, "classes": classes})


def _hwc(rows: np.ndarray) -> np.ndarray:
    """CIFAR-10 rows (1024 red, 1024 green, 1024 blue) as (N, 32, 32, 3) images, the npz layout."""
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def test_mnist_images_are_the_arrays_and_the_arrays_are_unchanged(tmp_path):
    arrays = write_mnist(tmp_path, np.random.default_rng(13))
    ds = data.read_mnist(tmp_path)
    assert ds.image_shape == (1, 28, 28) and ds.scaling == "unit" and ds.channel_stats is None
    X, y = ds.arrays("train")
    # bit for bit what the flat reader always gave: uint8 / 255 in float64, row-major
    assert np.array_equal(X, data.to_float(arrays["train-images-idx3-ubyte"])) and X.shape == (7, 784)
    imgs, y2 = ds.images("train")
    assert imgs.shape == (7, 1, 28, 28) and np.array_equal(imgs.reshape(7, -1), X) and np.array_equal(y, y2)
    imgs32, _ = ds.arrays("test", np.float32, images=True)
    assert imgs32.dtype == np.float32 and imgs32.shape == (5, 1, 28, 28)
    assert np.array_equal(imgs32[:, 0], arrays["t10k-images-idx3-ubyte"].astype(np.float32) / np.float32(255))
    sub = data.load_mnist_subset()
    assert sub.image_shape == (1, 28, 28) and sub.images("test")[0].shape == (2000, 1, 28, 28)


def test_synthetic_data_are_vectors():
    ds = data.load_dataset("synthetic", seed=0, n_train=10, n_test=4, n_features=6, classes=3)
    assert ds.image_shape == (6,) and ds.images()[0].shape == (10, 6)
    assert np.array_equal(ds.images()[0], ds.arrays()[0]) and np.array_equal(ds.arrays()[0], ds.train_x)
    with pytest.raises(ShapeError, match="scaling: 'channel' standardizes the channels of images"):
        data.load_dataset("synthetic", scaling="channel")
    with pytest.raises(ChoiceError, match="scaling: expected one of 'unit', 'channel'"):
        data.load_dataset("synthetic", scaling="minmax")


@pytest.mark.parametrize("layout", ["pickle", "npz"])
def test_cifar_images_channels_first_and_standardized_with_training_statistics(tmp_path, layout):
    rng = np.random.default_rng(14)
    if layout == "pickle":
        written = write_cifar_pickles(tmp_path / "cifar-10-batches-py", rng)
        rows = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
        test_rows = written["test_batch"][0]
    else:
        rows = rng.integers(0, 256, (12, 3072), dtype=np.uint8)
        test_rows = rng.integers(0, 256, (5, 3072), dtype=np.uint8)
        write_cifar_npz(tmp_path / "cifar10", _hwc(rows), np.arange(12) % 10, _hwc(test_rows), np.arange(5))
    ds = data.read_cifar10(tmp_path)
    assert ds.image_shape == (3, 32, 32) and ds.scaling == "channel" and "scaling='channel'" in repr(ds)
    # the statistics are those of the training pixels in [0, 1], channel by channel (population std)
    planes = rows.reshape(-1, 3, 1024).transpose(1, 0, 2).reshape(3, -1) / 255.0
    mean, std = ds.channel_stats
    np.testing.assert_allclose(mean, planes.mean(axis=1), rtol=1e-13)
    np.testing.assert_allclose(std, planes.std(axis=1), rtol=1e-12)
    imgs, _ = ds.images("train")
    assert imgs.shape == (len(rows), 3, 32, 32) and imgs.dtype == np.float64
    # channels first: images[i, c, r, k] is row i's value c * 1024 + r * 32 + k, standardized
    want = (rows.reshape(-1, 3, 32, 32) / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(imgs, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(imgs.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(imgs.std(axis=(0, 2, 3)), 1.0, rtol=1e-12)
    # the test split uses the training statistics, and arrays() is the same numbers flattened in (C, H, W) order
    test_imgs, _ = ds.images("test")
    want_test = (test_rows.reshape(-1, 3, 32, 32) / 255.0 - np.array(mean)[:, None, None]) / \
        np.array(std)[:, None, None]
    np.testing.assert_allclose(test_imgs, want_test, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ds.arrays("test")[0], test_imgs.reshape(len(test_rows), -1))
    # shuffling and subsampling keep the statistics of the training set as loaded
    assert ds.shuffled(1).channel_stats == ds.channel_stats
    assert ds.subsample(3, 2, seed=0).channel_stats == ds.channel_stats
    if layout == "npz":
        assert data.load_dataset("cifar10", tmp_path, seed=2).channel_stats == ds.channel_stats
    # scaling="unit" gives the plain [0, 1] pixels
    unit = data.load_dataset("cifar10", tmp_path, scaling="unit")
    assert unit.scaling == "unit"
    np.testing.assert_array_equal(np.sort(unit.arrays("test")[0].ravel()), np.sort(test_rows.ravel() / 255.0))
    f32, _ = ds.images("test", np.float32)
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, want_test, rtol=1e-5, atol=1e-5)


def test_channel_scaling_checks_its_statistics():
    x = np.random.default_rng(15).integers(0, 256, (4, 5, 5, 2), dtype=np.uint8)
    y = np.zeros(4, dtype=np.int64)
    ds = data.Dataset("toy", x, y, x[:2], y[:2], ("a",), scaling="channel")
    assert ds.image_shape == (2, 5, 5) and len(ds.channel_stats[0]) == 2
    mean, std = data.channel_stats(x)
    np.testing.assert_allclose(mean, (x / 255.0).mean(axis=(0, 1, 2)), rtol=1e-13)
    np.testing.assert_allclose(std, (x / 255.0).std(axis=(0, 1, 2)), rtol=1e-12)
    fx = x.astype(np.float64)  # float images are scaled as they are, and never in place
    fds = data.Dataset("toy", fx, y, fx[:2], y[:2], ("a",), scaling="channel")
    out = fds.images()[0]
    assert np.array_equal(fds.train_x, x.astype(np.float64)) and abs(out.mean()) < 1e-12
    flat = x.copy()
    flat[..., 1] = 7
    with pytest.raises(ValueRangeError, match=r"channel 1 of 'toy' \(no source\) has standard deviation 0.0 over the "
                                              r"training images.*scaling='unit'.*command line always standardizes"):
        data.Dataset("toy", flat, y, flat, y, ("a",), scaling="channel")
    with pytest.raises(ShapeError, match="channel_stats: expected 2 means"):
        data.Dataset("toy", x, y, x, y, ("a",), scaling="channel", channel_stats=((0.5,), (0.2,)))
    with pytest.raises(ChoiceError, match="scaling"):
        data.Dataset("toy", x, y, x, y, ("a",), scaling="zscore")
    assert ds.with_scaling("unit").images()[0].max() <= 1.0


# -- bad input is refused with a typed error that names the file or argument ----------------------------------------
def _cifar_npz_folder(folder: Path, rng: np.random.Generator, m_train: int = 6, m_test: int = 4) -> Path:
    write_cifar_npz(folder, rng.integers(0, 256, (m_train, 32, 32, 3), dtype=np.uint8), np.arange(m_train) % 10,
                    rng.integers(0, 256, (m_test, 32, 32, 3), dtype=np.uint8), np.arange(m_test) % 10)
    return folder


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("cut", ["half", "header", "garbage", "not-zip"])
def test_truncated_cifar_npz_names_the_file(tmp_path, split, cut):
    folder = _cifar_npz_folder(tmp_path, np.random.default_rng(20))
    path = folder / f"cifar10_{split}.npz"
    raw = path.read_bytes()
    path.write_bytes({"half": raw[: len(raw) // 2], "header": raw[:10], "garbage": b"PK\x03\x04" + bytes(200),
                      "not-zip": b"not a zip"}[cut])
    with pytest.raises(DataFileError, match=re.escape(f"cifar10_{split}.npz")) as err:
        data.read_cifar10(tmp_path)
    assert "truncated, corrupt or of another format" in str(err.value) and "allow_pickle" not in str(err.value)


def test_truncated_shipped_subset_is_a_data_file_error(tmp_path, monkeypatch):
    (tmp_path / "_data").mkdir()
    raw = (Path(data.__file__).parent / "_data" / "mnist_subset.npz").read_bytes()
    (tmp_path / "_data" / "mnist_subset.npz").write_bytes(raw[: len(raw) // 2])
    monkeypatch.setattr(data.resources, "files", lambda _package: tmp_path)
    with pytest.raises(DataFileError, match=r"mnist_subset\.npz.*BadZipFile"):
        data.load_mnist_subset()


@pytest.mark.parametrize("labels", [[0.4, 2.7, 9.9], np.array([0.5, 1.5, 2.5]), [0.0, 1.0, 2.0], ["1", "2", "3"],
                                    [True, False, True]],
                         ids=["fractional", "float-array", "whole-floats", "strings", "bools"])
def test_cifar_pickle_labels_must_be_integers(tmp_path, labels):
    rng = np.random.default_rng(21)
    write_cifar_pickles(tmp_path, rng)
    batch, _, _ = cifar_batch(rng, 3)
    batch[b"labels"] = labels
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataFileError, match=r"data_batch_1: expected 'labels' to be integers"):
        data.read_cifar10(tmp_path)


def test_cifar_integer_label_arrays_still_read_and_npz_float_labels_are_refused_too(tmp_path):
    rng = np.random.default_rng(22)
    write_cifar_pickles(tmp_path / "pk", rng)
    batch, _, _ = cifar_batch(rng, 3)
    batch[b"labels"] = np.array([7, 0, 9], dtype=np.uint8)
    (tmp_path / "pk" / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    ds = data.read_cifar10(tmp_path / "pk")
    assert ds.train_y.dtype == np.int64 and list(ds.train_y[:3]) == [7, 0, 9]
    # the npz layout refuses whole-number floats as well: the two readers agree
    folder = _cifar_npz_folder(tmp_path / "npz", rng)
    np.savez(folder / "cifar10_train.npz", train_x=np.zeros((3, 32, 32, 3), np.uint8), train_y=np.array([0., 1., 2.]))
    with pytest.raises(DataFileError, match=r"cifar10_train\.npz: expected train_y integers"):
        data.read_cifar10(folder)


@pytest.mark.parametrize("stem", ["train-images-idx3-ubyte", "t10k-images-idx3-ubyte"])
def test_empty_mnist_split_names_the_file(tmp_path, stem):
    write_mnist(tmp_path, np.random.default_rng(23), compress=False)
    labels = stem.replace("images-idx3", "labels-idx1")
    (tmp_path / stem).write_bytes(idx_bytes(np.zeros((0, 28, 28))))  # a valid header whose count is 0
    (tmp_path / labels).write_bytes(idx_bytes(np.zeros(0)))
    with pytest.raises(DataFileError, match=re.escape(stem) + r": expected at least one image.*\(0, 28, 28\)"):
        data.read_mnist(tmp_path)
    with pytest.raises(DataFileError, match=re.escape(stem)):
        data.load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("split", ["train", "test"])
def test_empty_cifar_npz_split_names_the_file(tmp_path, split):
    rng = np.random.default_rng(24)
    folder = _cifar_npz_folder(tmp_path, rng)
    np.savez(folder / f"cifar10_{split}.npz", **{f"{split}_x": np.zeros((0, 32, 32, 3), np.uint8),
                                               f"{split}_y": np.zeros(0, np.uint8)})
    for load in (data.read_cifar10, lambda d: data.load_dataset("cifar10", d)):
        with pytest.raises(DataFileError, match=rf"cifar10_{split}\.npz: expected at least one image"):
            load(tmp_path)


def test_empty_cifar_pickle_batch_names_the_file(tmp_path):
    rng = np.random.default_rng(25)
    write_cifar_pickles(tmp_path, rng)
    batch, _, _ = cifar_batch(rng, 0, py2_keys=False)
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch, protocol=5))
    with pytest.raises(DataFileError, match=r"test_batch: expected at least one image"):
        data.read_cifar10(tmp_path)


def test_zero_samples_give_empty_floats_not_a_raw_error():
    assert data.to_float(np.zeros((0, 28, 28), np.uint8)).shape == (0, 784)
    assert data.to_float(np.zeros((0, 32, 32, 3)), np.float32).dtype == np.float32
    x = np.random.default_rng(26).integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)
    y = np.array([0, 1, 0, 1])
    for scaling in ("unit", "channel"):
        ds = data.Dataset("toy", x, y, x[:0], y[:0], ("a", "b"), scaling=scaling)
        assert ds.images("test")[0].shape == (0, 3, 6, 6) and ds.arrays("test")[0].shape == (0, 108)
    with pytest.raises(ShapeError, match="train_x: 'channel' scaling takes its statistics"):
        data.Dataset("toy", x[:0], y[:0], x, y, ("a", "b"), scaling="channel")


@pytest.mark.parametrize("counts", [5, (7,), (7, 5, 1), "75", (7.0, 5), (True, 5), (0, 5), (7, -1), None],
                         ids=["int", "one", "three", "str", "float", "bool", "zero", "negative", "none"])
def test_read_mnist_checks_expected_counts(tmp_path, counts):
    write_mnist(tmp_path, np.random.default_rng(27))
    if counts is None:
        assert len(data.read_mnist(tmp_path, expected_counts=counts).train_y) == 7
        assert len(data.read_mnist(tmp_path, expected_counts=[np.int64(7), 5]).test_y) == 5
        return
    with pytest.raises(ValueRangeError, match=r"expected_counts: expected None or a pair of positive integers"):
        data.read_mnist(tmp_path, expected_counts=counts)


_X3 = np.zeros((3, 8, 8), np.uint8)
_Y3 = np.array([0, 1, 2])


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"train_y": np.array([0, 1, 12])}, LabelError, r"train_y: expected labels in 0\.\.2 .*got 12 at train_y\[2\]"),
    ({"test_y": np.array([0, -1, 2])}, LabelError, r"test_y: expected labels in 0\.\.2 .*got -1 at test_y\[1\]"),
    ({"train_y": np.array([0, 1])}, ShapeError, r"train_y: expected shape \(3,\).*got \(2,\)"),
    ({"train_y": np.array([[0], [1], [2]])}, ShapeError, r"train_y: expected shape \(3,\)"),
    ({"train_y": np.array([0.0, 1.0, 2.0])}, LabelError, r"train_y: expected integer class labels.*float64"),
    ({"test_y": np.array([True, False, True])}, LabelError, r"test_y: expected integer class labels.*bool"),
    ({"train_x": np.zeros((3, 3, 8, 8), np.uint8), "test_x": np.zeros((3, 3, 8, 8), np.uint8)}, ShapeError,
     r"train_x: expected images channels last.*\(3, 3, 8, 8\).*channels first"),
    ({"train_x": np.zeros((3, 1, 28, 28)), "test_x": np.zeros((3, 1, 28, 28))}, ShapeError, "channels first"),
    ({"train_x": np.zeros((3, 3, 32, 28), np.uint8)}, ShapeError, "channels first"),
    ({"test_x": np.zeros((3, 9, 9), np.uint8)}, ShapeError, r"test_x: expected samples of the training shape"),
    ({"train_x": np.zeros(3), "test_x": np.zeros(3)}, ShapeError, r"train_x: expected samples-first inputs"),
    ({"train_x": np.array([["a"] * 4] * 3), "test_x": np.array([["a"] * 4] * 3)}, DomainError,
     r"train_x: expected real numbers"),
    ({"classes": ()}, LabelError, r"classes: expected a sequence of at least one class name"),
    ({"classes": "abc"}, LabelError, r"classes: expected a sequence"),
    ({"train_x": [[0, 1], [2]]}, ShapeError, r"train_x: expected an array of samples"),
])
def test_dataset_refuses_misread_inputs(kwargs, error, pattern):
    args = {"name": "mine", "train_x": _X3, "train_y": _Y3, "test_x": _X3, "test_y": _Y3, "classes": ("a", "b", "c")}
    with pytest.raises(error, match=pattern):
        data.Dataset(**{**args, **kwargs})


def test_dataset_accepts_what_it_documents():
    y = np.array([0, 1, 2], dtype=np.uint8)  # any integer dtype, stored as int64
    ds = data.Dataset("mine", _X3, y, _X3, y, ("a", "b", "c"))
    assert ds.train_y.dtype == np.int64 and ds.image_shape == (1, 8, 8)
    hwc = np.zeros((3, 32, 32, 3), np.uint8)
    assert data.Dataset("mine", hwc, y, hwc, y, ("a", "b", "c")).image_shape == (3, 32, 32)
    odd = np.zeros((3, 5, 5, 2), np.uint8)  # two channels, last
    assert data.Dataset("mine", odd, y, odd, y, ("a", "b", "c")).image_shape == (2, 5, 5)
    feats = np.zeros((3, 4))
    ds = data.Dataset("mine", feats, y, feats[:1], y[:1], ("a", "b", "c"))
    assert ds.shuffled(0).subsample(2, 1).train_x.shape == (2, 4)


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("names", [np.array(["a", "b", "c"]), np.array([data.CIFAR10_CLASSES]), np.array("cat")],
                         ids=["three", "2-D", "scalar"])
def test_cifar_npz_classes_of_the_wrong_length_are_refused(tmp_path, split, names):
    rng = np.random.default_rng(28)
    folder = _cifar_npz_folder(tmp_path, rng)
    x = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    np.savez(folder / f"cifar10_{split}.npz", **{f"{split}_x": x, f"{split}_y": np.arange(4), "classes": names})
    with pytest.raises(DataFileError, match=rf"cifar10_{split}\.npz: expected 'classes' to hold 10 class names"):
        data.read_cifar10(tmp_path)
    own = np.array([f"k{i}" for i in range(10)])
    np.savez(folder / f"cifar10_{split}.npz", **{f"{split}_x": x, f"{split}_y": np.arange(4), "classes": own})
    want = tuple(own) if split == "train" else data.CIFAR10_CLASSES  # the names come from the training file
    assert data.read_cifar10(tmp_path).classes == want
    # names stored as bytes read as the same text
    np.savez(folder / f"cifar10_{split}.npz", **{f"{split}_x": x, f"{split}_y": np.arange(4),
                                                 "classes": np.char.encode(own)})
    assert data.read_cifar10(tmp_path).classes == want
