import re

import pytest
import torch

from fastcifar.backends import BACKENDS, SHARD_FORMATS, format_extra, missing_extra
from fastcifar.prepare import PrepareConfig, prepare
from tests.cifar_fixtures import make_cifar_archive

# Backends that need an extra; their tests are skipped where it is not installed (CI
# installs both, so there they always run; a GPU machine without a registry may lack them).
OPTIONAL_BACKENDS = tuple(name for name, backend in BACKENDS.items() if backend.extra)


def _optional_backend(item) -> str | None:
    """The optional backend a test uses: named by a `backend` parameter or a word of the
    test's name (test_dali_..., test_ffcv_and_native_...)."""
    words = set(re.findall(r"[a-z0-9]+", getattr(item, "originalname", None) or item.name))
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        words |= {v for v in callspec.params.values() if isinstance(v, str)}
    return next((backend for backend in OPTIONAL_BACKENDS if backend in words), None)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "slow: takes seconds (left out of `make test-fast`); "
                                       "tests of the ffcv and dali backends are marked too")


def pytest_collection_modifyitems(config, items):
    cuda = torch.cuda.is_available()
    for item in items:
        if "cuda" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        backend = _optional_backend(item)
        if backend and missing_extra(backend):
            item.add_marker(pytest.mark.skip(reason=f"the {backend} extra is not installed"))
        elif backend:
            # FFCV compiles its pipeline per loader (seconds), DALI builds one per epoch.
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory):
    """A small learnable CIFAR-10 (512 train, 128 test) prepared in every available format.

    Returns (data_dir, truth) with truth[split] = (images uint8 NHWC, labels int64).
    """
    root = tmp_path_factory.mktemp("cifar")
    archive, truth = make_cifar_archive(root / "cifar-10-python.tar.gz", train_size=512,
                                        test_size=128, seed=7, learnable=True)
    formats = [f for f in SHARD_FORMATS
               if format_extra(f) is None or not missing_extra(format_extra(f).name)]
    data_dir = root / "data"
    prepare(PrepareConfig(dataset="cifar10", source=str(archive), data_dir=str(data_dir),
                          formats=tuple(formats), checksum=False), log=lambda *_: None)
    return data_dir, truth


@pytest.fixture(scope="module")
def one_thread():
    """Train on one CPU thread (modules opt in with pytest.mark.usefixtures): on a shared
    2-core machine, OpenMP threads spinning against other processes made runs 3-4x slower
    (41 s vs 12 s for the resume test under load); one thread is also deterministic
    regardless of the core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
