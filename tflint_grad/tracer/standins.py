"""Stand-ins that let real scripts run offline in the traced child (child side only).

- Display-only modules that are not installed (``matplotlib``, ``seaborn``, ``IPython.display``,
  ``google.colab``...) import as inert stubs: every attribute is a callable that returns another
  stub, so ``plt.plot(...)``, ``plt.show()`` and ``display(df)`` do nothing. They never touch what
  the script computes.
- TF1's ``tensorflow.examples.tutorials.mnist.input_data`` (removed from TensorFlow 2) reads
  synthetic MNIST of the real shapes (55000/5000/10000 images of 784 floats in [0, 1]).
- ``tensorflow_datasets.load`` (stubbed when the package is missing, wrapped when a download
  fails) gives synthetic datasets of the real shapes for the common image datasets.
- ``keras.utils.get_file`` that cannot download returns an empty folder in the trace folder, and
  ``image_dataset_from_directory`` on a missing or empty folder yields synthetic images of the
  requested size.
- The script's project root (the nearest folder above it with ``pyproject.toml``, ``setup.py``,
  ``setup.cfg`` or ``.git``) is importable, so ``from mypackage import models`` works.

Each stand-in that the script actually used is named in ``used`` (the harness writes it to the
trace result as ``stand_ins``): the verdicts then say that the trace ran on stand-in data.
Nothing here decides a verdict: data shapes let the training step run; the events come from the
script's own model and loss.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np

DISPLAY_MODULES = (
    "matplotlib",
    "seaborn",
    "IPython",
    "google.colab",
    "plotly",
)
PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")

used: list[str] = []


def _use(what: str) -> None:
    if what not in used:
        used.append(what)


# -- inert display modules --------------------------------------------------------------------------


class _Inert:
    """Any attribute, call, item, iteration or context: does nothing and returns an inert value."""

    def __init__(self, name: str = "stub") -> None:
        self._name = name

    def __getattr__(self, attr: str) -> _Inert:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return _Inert(f"{self._name}.{attr}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._name.endswith(("subplots",)):
            return _Inert("figure"), _Inert("axes")
        return _Inert(self._name + "()")

    def __getitem__(self, key: Any) -> _Inert:
        return _Inert(self._name + "[]")

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0

    def __bool__(self) -> bool:
        return False

    def __enter__(self) -> _Inert:
        return self

    def __exit__(self, *exc: Any) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<tflint-grad stand-in {self._name}>"


class _InertModule(types.ModuleType):
    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return _Inert(f"{self.__name__}.{attr}")


class _InertLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        mod = _InertModule(spec.name)
        mod.__path__ = []  # a package: submodules (matplotlib.pyplot) import as stubs too
        return mod

    def exec_module(self, module: types.ModuleType) -> None:
        top = module.__name__.split(".")[0]
        _use(f"display module {top} stubbed (not installed)")


class _DisplayFinder(importlib.abc.MetaPathFinder):
    """Last on ``sys.meta_path``: only modules no other finder could find are stubbed."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if not any(fullname == m or fullname.startswith(m + ".") for m in DISPLAY_MODULES):
            return None
        parent = fullname.rpartition(".")[0]
        real_parent = parent and not isinstance(sys.modules.get(parent), _InertModule)
        if real_parent and parent.split(".")[0] != "google":
            return None  # a real parent package (IPython installed): its own submodules are real
        return importlib.machinery.ModuleSpec(fullname, _InertLoader(), is_package=True)


def install_display_stubs() -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")  # a real matplotlib draws nothing on screen
    sys.meta_path.append(_DisplayFinder())


# -- the project root -------------------------------------------------------------------------------


def project_root(origin_dir: str | None, limit: int = 8) -> str | None:
    """The nearest folder at or above ``origin_dir`` holding a project marker."""
    if not origin_dir:
        return None
    cur = os.path.abspath(origin_dir)
    for _ in range(limit):
        try:
            if any(os.path.exists(os.path.join(cur, m)) for m in PROJECT_MARKERS):
                return cur
        except OSError:
            return None
        parent = os.path.dirname(cur)
        if parent == cur:
            return None
        cur = parent
    return None


def add_project_root(origin_dir: str | None) -> str | None:
    root = project_root(origin_dir)
    if root and root not in sys.path:
        sys.path.append(root)  # after the script's folder: its own modules win
        src = os.path.join(root, "src")
        if os.path.isdir(src) and src not in sys.path:
            sys.path.append(src)
        return root
    return None


# -- synthetic data ---------------------------------------------------------------------------------

_RNG = np.random.default_rng(20261206)

# name -> (image shape, classes)
IMAGE_DATASETS: dict[str, tuple[tuple[int, ...], int]] = {
    "mnist": ((28, 28, 1), 10),
    "fashion_mnist": ((28, 28, 1), 10),
    "kmnist": ((28, 28, 1), 10),
    "emnist": ((28, 28, 1), 62),
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
    "svhn_cropped": ((32, 32, 3), 10),
    "tf_flowers": ((224, 224, 3), 5),
    "cats_vs_dogs": ((224, 224, 3), 2),
    "horses_or_humans": ((300, 300, 3), 2),
    "rock_paper_scissors": ((300, 300, 3), 3),
    "beans": ((500, 500, 3), 3),
    "oxford_flowers102": ((224, 224, 3), 102),
    "caltech101": ((224, 224, 3), 102),
}
SYNTHETIC_EXAMPLES = 512


class _MnistSplit:
    """What TF1's ``input_data.read_data_sets`` returned per split."""

    def __init__(self, n: int, one_hot: bool, reshape: bool, dtype_float: bool) -> None:
        images = _RNG.random((n, 784), dtype=np.float32)
        if not dtype_float:
            images = (images * 255).astype(np.uint8)
        self._images = images if reshape else images.reshape(n, 28, 28, 1)
        labels = _RNG.integers(0, 10, n)
        self._labels = np.eye(10, dtype=np.float32)[labels] if one_hot else labels.astype(np.uint8)
        self._num = n
        self._index = 0
        self._epochs = 0

    images = property(lambda self: self._images)
    labels = property(lambda self: self._labels)
    num_examples = property(lambda self: self._num)
    epochs_completed = property(lambda self: self._epochs)

    def next_batch(self, batch_size: int, fake_data: bool = False, shuffle: bool = True) -> tuple[Any, Any]:
        start = self._index
        if start + batch_size > self._num:
            self._epochs += 1
            start = 0
        self._index = start + batch_size
        return self._images[start : self._index], self._labels[start : self._index]


class _Datasets:
    def __init__(self, train: Any, validation: Any, test: Any) -> None:
        self.train, self.validation, self.test = train, validation, test


def read_data_sets(
    train_dir: Any = None,
    fake_data: bool = False,
    one_hot: bool = False,
    dtype: Any = None,
    reshape: bool = True,
    validation_size: int = 5000,
    seed: Any = None,
    source_url: Any = None,
) -> _Datasets:
    _use("synthetic MNIST (random 28x28 images) for input_data.read_data_sets")
    is_float = dtype is None or "uint8" not in str(dtype)
    return _Datasets(
        _MnistSplit(60000 - validation_size, one_hot, reshape, is_float),
        _MnistSplit(validation_size, one_hot, reshape, is_float),
        _MnistSplit(10000, one_hot, reshape, is_float),
    )


def install_tf1_mnist() -> None:
    """``tensorflow.examples.tutorials.mnist.input_data`` when TensorFlow no longer ships it."""
    name = "tensorflow.examples.tutorials.mnist.input_data"
    try:
        if importlib.util.find_spec(name) is not None:
            return
    except (ImportError, ValueError, AttributeError):
        pass
    parts = name.split(".")
    parent = sys.modules.get("tensorflow")
    for i in range(2, len(parts) + 1):
        full = ".".join(parts[:i])
        mod = sys.modules.get(full)
        if mod is None:
            mod = types.ModuleType(full)
            mod.__path__ = []
            sys.modules[full] = mod
            if parent is not None:
                try:
                    setattr(parent, parts[i - 1], mod)
                except Exception:
                    pass
        parent = mod
    leaf = sys.modules[name]
    leaf.read_data_sets = read_data_sets  # type: ignore[attr-defined]


def _tf() -> Any:
    return sys.modules.get("tensorflow")


def _image_dataset(tf: Any, name: str, shape: tuple[int, ...], classes: int, supervised: bool) -> Any:
    images = (_RNG.random((SYNTHETIC_EXAMPLES, *shape)) * 255).astype(np.uint8)
    labels = _RNG.integers(0, classes, SYNTHETIC_EXAMPLES).astype(np.int64)
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if not supervised:
        ds = ds.map(lambda x, y: {"image": x, "label": y})
    return ds


class _Info:
    def __init__(self, name: str, shape: tuple[int, ...], classes: int) -> None:
        label = types.SimpleNamespace(num_classes=classes, names=[f"class_{i}" for i in range(classes)])
        image = types.SimpleNamespace(shape=shape)
        self.name = name
        self.features = {"label": label, "image": image}
        split = types.SimpleNamespace(num_examples=SYNTHETIC_EXAMPLES)
        self.splits = {"train": split, "test": split, "validation": split}


def _tfds_load(original: Callable[..., Any] | None) -> Callable[..., Any]:
    def load(name: str, *args: Any, **kwargs: Any) -> Any:
        if original is not None:
            try:
                return original(name, *args, **kwargs)
            except Exception:
                if str(name).split("/")[0].split(":")[0] not in IMAGE_DATASETS:
                    raise
        base = str(name).split("/")[0].split(":")[0]
        if base not in IMAGE_DATASETS:
            raise ModuleNotFoundError(
                f"tensorflow_datasets is not installed (tflint-grad has synthetic stand-ins for "
                f"{', '.join(sorted(IMAGE_DATASETS))} only)"
            )
        tf = _tf()
        shape, classes = IMAGE_DATASETS[base]
        _use(f"synthetic {base} ({SYNTHETIC_EXAMPLES} random {'x'.join(map(str, shape))} images) for tfds.load")
        supervised = bool(kwargs.get("as_supervised", False))
        split = kwargs.get("split", args[0] if args else None)
        if isinstance(split, (list, tuple)):
            out: Any = tuple(_image_dataset(tf, base, shape, classes, supervised) for _ in split)
        elif split is None:
            out = {s: _image_dataset(tf, base, shape, classes, supervised) for s in ("train", "test")}
        else:
            out = _image_dataset(tf, base, shape, classes, supervised)
        batch = kwargs.get("batch_size")
        if batch and batch > 0:
            if isinstance(out, tuple):
                out = tuple(d.batch(batch) for d in out)
            elif isinstance(out, dict):
                out = {k: d.batch(batch) for k, d in out.items()}
            else:
                out = out.batch(batch)
        if kwargs.get("with_info"):
            return out, _Info(base, shape, classes)
        return out

    return load


def install_tfds() -> None:
    try:
        import tensorflow_datasets as tfds
    except Exception:
        mod = types.ModuleType("tensorflow_datasets")
        mod.load = _tfds_load(None)  # type: ignore[attr-defined]
        mod.__path__ = []
        sys.modules["tensorflow_datasets"] = mod
        return
    tfds = sys.modules["tensorflow_datasets"]
    try:
        tfds.load = _tfds_load(tfds.load)
    except Exception:
        pass


def _replace(old: Any, new: Any) -> None:
    from tflint_grad.tracer.shims import _replace_everywhere

    _replace_everywhere({id(old): new})


def _patch_get_file(mod: Any) -> None:
    """``get_file`` that cannot download: an empty folder in the trace folder, named like the file."""
    orig = getattr(mod, "get_file", None)
    if orig is None or getattr(orig, "_tflint_standin", False):
        return

    def get_file(fname: Any = None, origin: Any = None, *args: Any, **kwargs: Any) -> str:
        try:
            return orig(fname, origin, *args, **kwargs)
        except Exception:
            name = os.path.basename(str(fname or origin or "download")).split("?")[0]
            for ext in (".tar.gz", ".tgz", ".zip", ".tar"):
                if name.endswith(ext):
                    name = name[: -len(ext)]
            folder = os.path.join(os.getcwd(), ".tflint-standins", name or "download")
            os.makedirs(folder, exist_ok=True)
            _use(f"get_file({name!r}) could not download: an empty folder stands in")
            return folder

    get_file._tflint_standin = True  # type: ignore[attr-defined]
    mod.get_file = get_file
    _replace(orig, get_file)


def _synthetic_images(tf: Any, kwargs: dict[str, Any]) -> Any:
    size = tuple(kwargs.get("image_size") or (256, 256))
    channels = {"grayscale": 1, "rgba": 4}.get(str(kwargs.get("color_mode", "rgb")), 3)
    batch = kwargs.get("batch_size", 32)
    label_mode = kwargs.get("label_mode", "int")
    classes = 2
    n = 64
    images = (_RNG.random((n, *size, channels)) * 255).astype(np.float32)
    labels = _RNG.integers(0, classes, n)
    if label_mode == "categorical":
        ys: Any = np.eye(classes, dtype=np.float32)[labels]
    elif label_mode == "binary":
        ys = labels.astype(np.float32).reshape(n, 1)
    else:
        ys = labels.astype(np.int32)
    ds = tf.data.Dataset.from_tensor_slices(images if label_mode is None else (images, ys))
    if batch:
        ds = ds.batch(batch)
    try:
        ds.class_names = [f"class_{i}" for i in range(classes)]
    except Exception:
        pass
    _use(f"image_dataset_from_directory: no images found, synthetic {size[0]}x{size[1]}x{channels} images")
    return ds


def _patch_image_folders(mod: Any) -> None:
    """``image_dataset_from_directory`` on a missing or empty folder: synthetic images."""
    orig = getattr(mod, "image_dataset_from_directory", None)
    if orig is None or getattr(orig, "_tflint_standin", False):
        return

    def image_dataset_from_directory(directory: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return orig(directory, *args, **kwargs)
        except Exception:
            if os.path.isdir(str(directory)) and any(os.scandir(str(directory))):
                raise  # real images that failed to load: not ours to hide
            tf = _tf()
            if tf is None:
                raise
            return _synthetic_images(tf, kwargs)

    image_dataset_from_directory._tflint_standin = True  # type: ignore[attr-defined]
    mod.image_dataset_from_directory = image_dataset_from_directory
    _replace(orig, image_dataset_from_directory)


# Keras modules patched now if imported, else when the script imports them.
KERAS_HOOKS: dict[str, Callable[[Any], None]] = {
    "keras.src.utils.file_utils": _patch_get_file,
    "tf_keras.src.utils.data_utils": _patch_get_file,
    "keras.src.utils.image_dataset_utils": _patch_image_folders,
    "tf_keras.src.utils.image_dataset": _patch_image_folders,
}


def install_keras_hooks() -> None:
    from tflint_grad.tracer.probes import _PostImportFinder

    pending = {}
    for name, hook in KERAS_HOOKS.items():
        mod = sys.modules.get(name)
        if mod is not None:
            hook(mod)
        else:
            pending[name] = hook
    if pending:
        sys.meta_path.insert(0, _PostImportFinder(pending))


def install(origin_dir: str | None, notes: list[str], warnings: list[str]) -> None:
    """Everything above, after TensorFlow was imported and before the script runs. Never raises."""
    for what, fn in (
        ("display-module stubs", install_display_stubs),
        ("TF1 MNIST reader", install_tf1_mnist),
        ("tensorflow_datasets stand-in", install_tfds),
        ("get_file and image folder fallbacks", install_keras_hooks),
    ):
        try:
            fn()
        except Exception as e:
            warnings.append(f"tracer: could not install the {what}: {type(e).__name__}: {e}")
    try:
        root = add_project_root(origin_dir)
        if root:
            notes.append(f"project root on sys.path: {root}")
    except Exception as e:
        warnings.append(f"tracer: could not add the project root: {type(e).__name__}: {e}")
