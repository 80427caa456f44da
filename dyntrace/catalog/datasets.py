"""Data sets that work offline: scikit-learn's bundled digits and seeded synthetic problems.

``make_dataset(name, seed=0, **options) -> Dataset``. Every data set is split into train /
validation / test (default 70 / 15 / 15 %, stratified by class for classification) with the
same seed, so a seed names one exact data set. Inputs are float32 (N, n_features); targets
are int64 class indices (N,) for classification, float32 (N, n_outputs) for regression.
"""

from dataclasses import dataclass

import numpy as np
import torch

from dyntrace.catalog import ConfigError, lookup

__all__ = [
    "Dataset",
    "DATASETS",
    "make_dataset",
    "digits",
    "two_spirals",
    "blobs",
    "teacher_student",
    "deep_linear",
]


@dataclass
class Dataset:
    """Train / validation / test tensors and what they are.

    Attributes:
        name: catalog name.
        X_train, X_val, X_test: float32 inputs (N, n_features).
        y_train, y_val, y_test: int64 labels (N,) or float32 targets (N, n_outputs).
        task: ``"classification"`` or ``"regression"``.
        n_features: input size.
        n_outputs: number of classes (classification) or target size (regression).
        image_shape: (C, H, W) the flat inputs reshape to, or None.
    """

    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    task: str
    n_features: int
    n_outputs: int
    image_shape: tuple[int, int, int] | None = None


def _split(name, X, y, *, task, seed, val_fraction, test_fraction, limit=None, image_shape=None) -> Dataset:
    """Seeded (stratified) train/val/test split of numpy arrays into a Dataset."""
    from sklearn.model_selection import train_test_split  # sklearn is slow to import: only when used

    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"Invalid split: val_fraction={val_fraction!r}, test_fraction={test_fraction!r} "
            "(each in (0, 1), sum < 1)"
        )
    classify = task == "classification"
    X_rest, X_test, y_rest, y_test = train_test_split(
        X, y, test_size=test_fraction, random_state=seed, stratify=y if classify else None
    )
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest,
        y_rest,
        test_size=val_fraction / (1 - test_fraction),
        random_state=seed,
        stratify=y_rest if classify else None,
    )
    if limit is not None and limit < len(X_train):
        if limit < 1:
            raise ConfigError(f"Invalid limit: {limit!r} (>= 1 training examples)")
        X_train, _, y_train, _ = train_test_split(
            X_train,
            y_train,
            train_size=limit,
            random_state=seed,
            stratify=y_train if classify and limit >= len(np.unique(y_train)) else None,
        )

    def x(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float32))

    def t(a):
        return torch.as_tensor(np.asarray(a, dtype=np.int64 if classify else np.float32))

    n_outputs = int(y.max()) + 1 if classify else y.shape[1]
    return Dataset(
        name,
        x(X_train),
        t(y_train),
        x(X_val),
        t(y_val),
        x(X_test),
        t(y_test),
        task=task,
        n_features=X.shape[1],
        n_outputs=n_outputs,
        image_shape=image_shape,
    )


def digits(
    seed: int = 0, *, limit: int | None = None, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> Dataset:
    """scikit-learn's bundled handwritten digits: 1797 images 8×8, pixels / 16 ∈ [0, 1], 10 classes.

    The offline stand-in for MNIST. ``limit`` keeps that many training examples (stratified;
    validation and test unchanged), e.g. the book's 300-example overfitting runs.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    return _split(
        "digits",
        data.data / 16.0,
        data.target,
        task="classification",
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        limit=limit,
        image_shape=(1, 8, 8),
    )


def two_spirals(
    seed: int = 0,
    *,
    n: int = 1000,
    turns: float = 1.5,
    noise: float = 0.05,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> Dataset:
    """Two interleaved spirals in 2-D, n points in all (half per class).

    Class c at t ~ U(0, 1): r = t, angle 2π·turns·t + cπ, plus N(0, noise²) on each coordinate.
    """
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 2
    t = np.sqrt(rng.uniform(size=n))  # √U: uniform density along the spiral's area
    angle = 2 * np.pi * turns * t + np.pi * label
    X = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) + rng.normal(0, noise, size=(n, 2))
    return _split(
        "two_spirals",
        X,
        label,
        task="classification",
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )


def blobs(
    seed: int = 0,
    *,
    n: int = 1000,
    centers: int = 3,
    n_features: int = 2,
    std: float = 1.0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> Dataset:
    """Isotropic Gaussian blobs (``sklearn.datasets.make_blobs``): ``centers`` classes, centres in
    [−10, 10]^n_features, standard deviation ``std``.
    """
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=n, centers=centers, n_features=n_features, cluster_std=std, random_state=seed)
    return _split(
        "blobs",
        X,
        y,
        task="classification",
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )


def teacher_student(
    seed: int = 0,
    *,
    n: int = 2000,
    n_features: int = 10,
    n_outputs: int = 1,
    teacher_width: int = 32,
    noise: float = 0.1,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> Dataset:
    """Regression on a random teacher network: x ~ N(0, I),
    y = tanh(x W₁ / √n_features) W₂ / √teacher_width + N(0, noise²), W₁, W₂ ~ N(0, 1).
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    W1 = rng.normal(size=(n_features, teacher_width))
    W2 = rng.normal(size=(teacher_width, n_outputs))
    y = np.tanh(X @ W1 / np.sqrt(n_features)) @ W2 / np.sqrt(teacher_width)
    y = y + rng.normal(0, noise, size=y.shape)
    return _split(
        "teacher_student",
        X,
        y,
        task="regression",
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )


def deep_linear(
    seed: int = 0,
    *,
    n: int = 1000,
    n_features: int = 8,
    n_outputs: int = 8,
    singular_values: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5),
    noise: float = 0.0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> Dataset:
    """Linear targets y = W x (+ noise) from a low-rank teacher W = U diag(s) Vᵀ, x ~ N(0, I).

    U, V are random orthonormal (n_outputs × r, n_features × r), s = ``singular_values``
    (r of them). A deep linear network from small weights learns one mode per stage, the
    strongest first, with a plateau before each: Saxe, McClelland & Ganguli, "Exact solutions
    to the nonlinear dynamics of learning in deep linear neural networks", ICLR 2014.
    """
    s = np.asarray(singular_values, dtype=float)
    if len(s) > min(n_features, n_outputs):
        raise ConfigError(
            f"Invalid singular_values: {len(s)} values (at most min(n_features, n_outputs) = "
            f"{min(n_features, n_outputs)})"
        )
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.normal(size=(n_outputs, len(s))))[0]
    V = np.linalg.qr(rng.normal(size=(n_features, len(s))))[0]
    W = U @ np.diag(s) @ V.T
    X = rng.normal(size=(n, n_features))
    y = X @ W.T + rng.normal(0, noise, size=(n, n_outputs))
    return _split(
        "deep_linear",
        X,
        y,
        task="regression",
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )


DATASETS = {
    "digits": digits,
    "two_spirals": two_spirals,
    "blobs": blobs,
    "teacher_student": teacher_student,
    "deep_linear": deep_linear,
}


def make_dataset(name: str, *, seed: int = 0, **options) -> Dataset:
    """The data set called ``name``, generated and split with ``seed``."""
    return lookup("dataset", DATASETS, name)(seed, **options)
