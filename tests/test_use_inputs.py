"""What eval and predict read from disk: test sets in their released layouts (npy pair,
CIFAR-format archive, CIFAR-10-C folder), image files, and one line for each mistake."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from fastcifar.errors import UserError
from fastcifar.use.evaluation import EvalRequest
from fastcifar.use.images import image_paths, read_image
from fastcifar.use.testsets import (
    corruption_files,
    load_archive_test_split,
    load_corruption,
    load_npy_pair,
)
from tests.cifar_fixtures import make_cifar_archive, make_images


def save_pair(folder, images, labels):
    np.save(folder / "data.npy", images)
    np.save(folder / "labels.npy", labels)
    return folder / "data.npy", folder / "labels.npy"


def test_npy_pair_in_the_cifar10_1_layout(tmp_path):
    images, labels = make_images(10, 12, seed=0, learnable=False)
    loaded = load_npy_pair(*save_pair(tmp_path, images, labels), num_classes=10)
    np.testing.assert_array_equal(loaded.images, images)
    assert loaded.labels.dtype == np.int64
    np.testing.assert_array_equal(loaded.labels, labels)


@pytest.mark.parametrize("images, labels, message", [
    (np.zeros((4, 32, 32, 3), np.float32), np.zeros(4, np.int64),
     r"images must be uint8 \[N, 32, 32, 3\] RGB, got float32 \[4, 32, 32, 3\]"),
    (np.zeros((4, 3, 32, 32), np.uint8), np.zeros(4, np.int64), "channels-first"),
    (np.zeros((4, 28, 28, 3), np.uint8), np.zeros(4, np.int64), r"got uint8 \[4, 28, 28, 3\]"),
    (np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64), "holds no images"),
    (np.zeros((4, 32, 32, 3), np.uint8), np.zeros(3, np.int64), "3 labels for 4 images"),
    (np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.float32), "labels must be integers"),
    (np.zeros((4, 32, 32, 3), np.uint8), np.zeros((4, 1), np.int64), "labels must be integers"),
    (np.zeros((4, 32, 32, 3), np.uint8), np.array([0, 1, 10, 2]),
     r"label 10 is outside \[0, 10\)"),
    (np.zeros((4, 32, 32, 3), np.uint8), np.array([0, -1, 1, 2]), r"label -1 is outside"),
])
def test_malformed_npy_pairs_are_one_line(tmp_path, images, labels, message):
    with pytest.raises(UserError, match=message) as error:
        load_npy_pair(*save_pair(tmp_path, images, labels), num_classes=10)
    assert "\n" not in str(error.value)


def test_npy_files_that_are_not_plain_arrays_are_refused(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "pair.npz", x=np.zeros(2))
    (tmp_path / "text.npy").write_text("not numpy")
    labels = tmp_path / "labels.npy"
    np.save(labels, np.zeros(2, np.int64))
    with pytest.raises(UserError, match="holds Python objects"):
        load_npy_pair(tmp_path / "objects.npy", labels, 10)
    with pytest.raises(UserError, match="an .npz archive"):
        load_npy_pair(tmp_path / "pair.npz", labels, 10)
    with pytest.raises(UserError, match="not an .npy file"):
        load_npy_pair(tmp_path / "text.npy", labels, 10)
    truncated = (tmp_path / "labels.npy").read_bytes()[:-4]
    (tmp_path / "truncated.npy").write_bytes(truncated)
    np.save(tmp_path / "images.npy", np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(UserError, match="truncated.npy: not a readable .npy file"):
        load_npy_pair(tmp_path / "images.npy", tmp_path / "truncated.npy", 10)
    with pytest.raises(UserError, match="no such file"):
        load_npy_pair(tmp_path / "missing.npy", labels, 10)


def test_cifar_format_archive_gives_its_test_split(tmp_path):
    archive, truth = make_cifar_archive(tmp_path / "c100.tar.gz", "cifar100", "binary",
                                        train_size=20, test_size=15, seed=4)
    loaded = load_archive_test_split(archive, "cifar100")
    np.testing.assert_array_equal(loaded.images, truth["test"][0])
    np.testing.assert_array_equal(loaded.labels, truth["test"][1])
    with pytest.raises(UserError, match="holds cifar100, not cifar10"):
        load_archive_test_split(archive, "cifar10")


def write_corruptions(folder, per_severity=6, names=("fog", "brightness"), tile=True):
    folder.mkdir()
    labels = np.arange(per_severity) % 10
    for index, name in enumerate(names):
        images, _ = make_images(10, 5 * per_severity, seed=index, learnable=False)
        np.save(folder / f"{name}.npy", images)
    np.save(folder / "labels.npy", np.tile(labels, 5).astype(np.uint8) if tile else labels)
    return labels


@pytest.mark.parametrize("tile", [True, False])
def test_corruption_folder_splits_each_file_into_five_severities(tmp_path, tile):
    labels = write_corruptions(tmp_path / "c10c", tile=tile)
    files = corruption_files(tmp_path / "c10c")
    assert [name for name, _ in files] == ["brightness", "fog"]
    severities = load_corruption(files[1][1], num_classes=10)
    everything = np.load(tmp_path / "c10c" / "fog.npy")
    assert [s.name for s in severities] == [f"fog severity {s}" for s in range(1, 6)]
    for s, subset in enumerate(severities):
        np.testing.assert_array_equal(subset.images, everything[6 * s:6 * (s + 1)])
        np.testing.assert_array_equal(subset.labels, labels)


def test_malformed_corruption_folders_are_one_line(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        corruption_files(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="labels.npy is missing"):
        corruption_files(tmp_path / "empty")
    np.save(tmp_path / "empty" / "labels.npy", np.zeros(10, np.int64))
    with pytest.raises(UserError, match="no <corruption>.npy files"):
        corruption_files(tmp_path / "empty")
    write_corruptions(tmp_path / "c", per_severity=4)
    np.save(tmp_path / "c" / "fog.npy", np.zeros((19, 32, 32, 3), np.uint8))
    with pytest.raises(UserError, match="19 images do not split into 5 severities"):
        load_corruption(tmp_path / "c" / "fog.npy", 10)
    np.save(tmp_path / "c" / "fog.npy", np.zeros((25, 32, 32, 3), np.uint8))
    with pytest.raises(UserError, match="labels.npy: 20 labels for 25 images"):
        load_corruption(tmp_path / "c" / "fog.npy", 10)


def test_eval_takes_one_test_set():
    with pytest.raises(UserError, match="--images and --labels go together"):
        EvalRequest(run_dir="r", images="x.npy")
    with pytest.raises(UserError, match="give one test set, not --images/--labels and --source"):
        EvalRequest(run_dir="r", images="x.npy", labels="y.npy", source="s")
    with pytest.raises(UserError, match="--backend and --data-dir apply to the prepared"):
        EvalRequest(run_dir="r", corruptions="c", backend="native")
    assert EvalRequest(run_dir="r").test_set_kind == "prepared"
    assert EvalRequest(run_dir="r", corruptions="c").test_set_kind == "corruptions"


@pytest.mark.parametrize("size, mode", [((32, 32), "RGB"), ((200, 120), "RGB"),
                                        ((45, 77), "RGBA"), ((17, 23), "L"), ((64, 64), "P")])
def test_images_are_resized_like_torchvision_resize_and_center_crop(tmp_path, size, mode):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    image.save(tmp_path / "x.png")
    got = read_image(tmp_path / "x.png")
    reference = v2.Compose([v2.PILToTensor(), v2.Resize(32, antialias=True), v2.CenterCrop(32)])
    expected = reference(image.convert("RGB")).permute(1, 2, 0).numpy()
    assert got.dtype == np.uint8 and got.shape == (32, 32, 3)
    np.testing.assert_array_equal(got, expected)
    if size == (32, 32):
        np.testing.assert_array_equal(got, pixels)  # a CIFAR-sized image is untouched


def test_jpeg_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, :40] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    upright = torch.from_numpy(read_image(tmp_path / "photo.jpg")).float()
    assert upright[:12].mean() > 200 and upright[-12:].mean() < 50  # white on top


def test_image_arguments_and_bad_files(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("b.png", "a.JPG"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / name, format="PNG")
    (folder / "notes.txt").write_text("not an image")
    assert image_paths([folder]) == [folder / "a.JPG", folder / "b.png"]
    with pytest.raises(UserError, match="no such file or folder"):
        image_paths([tmp_path / "missing.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no image files"):
        image_paths([tmp_path / "empty"])
    with pytest.raises(UserError, match="notes.txt: not a readable image"):
        read_image(folder / "notes.txt")
