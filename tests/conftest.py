import importlib.util
import re

import pytest

from tests.cifar_fixtures import make_cifar_archive


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


# Backends that need an extra; their tests are skipped where it is not installed (CI
# installs both, so there they always run; a GPU machine without a registry may lack them).
EXTRA_MODULES = {"ffcv": "ffcv", "dali": "nvidia.dali"}


def _missing_extra(item) -> str | None:
    """The extra a test needs and this machine lacks: named by a `backend` parameter or a
    word of the test's name (test_dali_..., test_ffcv_and_native_...)."""
    words = set(re.findall(r"[a-z0-9]+", getattr(item, "originalname", None) or item.name))
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        words |= {v for v in callspec.params.values() if isinstance(v, str)}
    for backend, module in EXTRA_MODULES.items():
        if backend in words and not has_module(module):
            return backend
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config, items):
    import torch

    cuda = torch.cuda.is_available()
    for item in items:
        if "cuda" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        extra = _missing_extra(item)
        if extra:
            item.add_marker(pytest.mark.skip(reason=f"the {extra} extra is not installed"))


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory):
    """A small learnable CIFAR-10 (512 train, 128 test) prepared in every available format.

    Returns (data_dir, truth) with truth[split] = (images uint8 NHWC, labels int64).
    """
    from fastcifar.prepare import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("cifar")
    archive, truth = make_cifar_archive(root / "cifar-10-python.tar.gz", train_size=512,
                                        test_size=128, seed=7, learnable=True)
    formats = ["native"] + [f for f, m in EXTRA_MODULES.items() if has_module(m)]
    data_dir = root / "data"
    prepare(PrepareConfig(dataset="cifar10", source=str(archive), data_dir=str(data_dir),
                          formats=tuple(formats), checksum=False), log=lambda *_: None)
    return data_dir, truth
