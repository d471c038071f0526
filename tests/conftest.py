import importlib.util

import pytest

from tests.cifar_fixtures import make_cifar_archive


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory):
    """A small learnable CIFAR-10 (512 train, 128 test) prepared in every available format.

    Returns (data_dir, truth) with truth[split] = (images uint8 NHWC, labels int64).
    """
    from fastcifar.prepare import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("cifar")
    archive, truth = make_cifar_archive(root / "cifar-10-python.tar.gz", train_size=512,
                                        test_size=128, seed=7, learnable=True)
    formats = ["native"] + [f for f, m in (("ffcv", "ffcv"), ("dali", "nvidia.dali"))
                            if has_module(m.split(".")[0]) and has_module(m)]
    data_dir = root / "data"
    prepare(PrepareConfig(dataset="cifar10", source=str(archive), data_dir=str(data_dir),
                          formats=tuple(formats), checksum=False), log=lambda *_: None)
    return data_dir, truth
