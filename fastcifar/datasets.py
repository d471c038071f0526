"""Facts about CIFAR-10 and CIFAR-100: where they come from, their checksums, statistics.

Nothing here touches the disk or the network; sources.py reads archives, storage.py
writes and reads prepared shards.
"""
from __future__ import annotations

from dataclasses import dataclass

from fastcifar.errors import UserError

IMAGE_BYTES = 32 * 32 * 3


@dataclass(frozen=True)
class ArchiveSpec:
    """One official archive layout (python pickles or binary records)."""

    layout: str  # "python" or "binary"
    url: str
    md5: str
    folder: str  # top folder inside the tar
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    member_md5: dict  # file name -> md5 of the official member


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    python: ArchiveSpec
    binary: ArchiveSpec
    default_cutout: int
    class_names: tuple[str, ...]  # the official archive's meta file, in label order

    def archive(self, layout: str) -> ArchiveSpec:
        return self.python if layout == "python" else self.binary


_TORONTO = "https://www.cs.toronto.edu/~kriz/"

CIFAR10 = DatasetSpec(
    name="cifar10",
    num_classes=10,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    default_cutout=16,
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"),
    python=ArchiveSpec(
        layout="python",
        url=_TORONTO + "cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        meta_file="batches.meta",
        member_md5={
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "40351d587109b95175f43aff81a1287e",
            "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
        },
    ),
    binary=ArchiveSpec(
        layout="binary",
        url=_TORONTO + "cifar-10-binary.tar.gz",
        md5="c32a1d4ab5d03f1284b67883e8d87530",
        folder="cifar-10-batches-bin",
        train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        test_files=("test_batch.bin",),
        meta_file="batches.meta.txt",
        member_md5={},
    ),
)

CIFAR100 = DatasetSpec(
    name="cifar100",
    num_classes=100,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    default_cutout=8,
    class_names=tuple("""
        apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge
        bus butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud
        cockroach couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox
        girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man
        maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree
        pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray
        road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel
        streetcar sunflower sweet_pepper table tank telephone television tiger tractor train
        trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()),
    python=ArchiveSpec(
        layout="python",
        url=_TORONTO + "cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        meta_file="meta",
        member_md5={
            "train": "16019d7e3df5f24257cddd939b257f8d",
            "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
            "meta": "7973b15100ade9c7d40fb424638fde48",
        },
    ),
    binary=ArchiveSpec(
        layout="binary",
        url=_TORONTO + "cifar-100-binary.tar.gz",
        md5="03b5dce01913d631647c71ecec9e9cb8",
        folder="cifar-100-binary",
        train_files=("train.bin",),
        test_files=("test.bin",),
        meta_file="fine_label_names.txt",
        member_md5={},
    ),
)

DATASETS = {spec.name: spec for spec in (CIFAR10, CIFAR100)}
SPLITS = ("train", "test")


def get_dataset(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(
            f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}"
        ) from None
