"""`fastcifar prepare` and `fastcifar.load`: exact round trips and every bad input."""
import codecs
import errno
import hashlib
import io
import json
import os
import pickle
import pickletools
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import fastcifar
from fastcifar.cli import main
from fastcifar.datasets import DATASETS
from fastcifar.errors import UserError
from fastcifar.prepare import PrepareConfig, prepare
from fastcifar.shard_writers import WRITERS, estimate_bytes
from fastcifar.storage import MANIFEST, dataset_dir
from tests.cifar_fixtures import (
    make_cifar_archive,
    make_cifar_folder,
    rewrite_as_python3_protocol2,
)

QUIET = dict(log=lambda *_: None)


def _prepare(source, data_dir, dataset="cifar10", **kw):
    kw.setdefault("checksum", False)
    return prepare(PrepareConfig(dataset=dataset, source=str(source), data_dir=str(data_dir), **kw),
                   **QUIET)


def _assert_loads(dataset, data_dir, truth):
    for split in ("train", "test"):
        images, labels = fastcifar.load(dataset, split, data_dir)
        assert images.dtype == np.uint8 and images.shape == truth[split][0].shape
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(images, truth[split][0])
        np.testing.assert_array_equal(labels, truth[split][1])


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
@pytest.mark.parametrize("layout", ["python", "binary"])
def test_archive_round_trip(tmp_path, dataset, layout):
    archive, truth = make_cifar_archive(tmp_path / "src.tar.gz", dataset, layout,
                                        train_size=230, test_size=70, seed=3)
    result = _prepare(archive, tmp_path / "data", dataset)
    assert not result.skipped and result.counts == {"train": 230, "test": 70}
    _assert_loads(dataset, tmp_path / "data", truth)
    manifest = json.loads((dataset_dir(dataset, tmp_path / "data") / MANIFEST).read_text())
    assert manifest["class_names"] == [f"class_{i}" for i in range(manifest["num_classes"])]
    assert manifest["source"]["layout"] == layout and manifest["source"]["md5"]


@pytest.mark.parametrize("layout", ["python", "binary"])
def test_extracted_folder_round_trip(tmp_path, layout):
    folder, truth = make_cifar_folder(tmp_path / "src", "cifar100", layout, 120, 40, seed=5)
    _prepare(folder, tmp_path / "data", "cifar100")
    _assert_loads("cifar100", tmp_path / "data", truth)
    _prepare(folder.parent, tmp_path / "data2", "cifar100")  # the folder above works too
    _assert_loads("cifar100", tmp_path / "data2", truth)


def test_webdataset_shard_holds_exact_records(tmp_path):
    archive, truth = make_cifar_archive(tmp_path / "a.tar.gz", train_size=20, test_size=10)
    _prepare(archive, tmp_path / "data", formats=("native", "dali"))
    with tarfile.open(dataset_dir("cifar10", tmp_path / "data") / "dali/test.tar") as tar:
        names = tar.getnames()
        assert names[:4] == ["000000.rgb", "000000.cls", "000001.rgb", "000001.cls"]
        for i in range(10):
            rgb = tar.extractfile(f"{i:06d}.rgb").read()
            cls = tar.extractfile(f"{i:06d}.cls").read()
            assert rgb == truth["test"][0][i].tobytes()
            assert np.frombuffer(cls, "<i8")[0] == truth["test"][1][i]


def test_ffcv_shard_is_written_and_listed(tmp_path):
    import torch
    from ffcv.reader import Reader

    archive, truth = make_cifar_archive(tmp_path / "a.tar.gz", train_size=50, test_size=20)
    threads = torch.get_num_threads()
    _prepare(archive, tmp_path / "data", formats=("ffcv",))
    assert torch.get_num_threads() == threads  # importing ffcv would set it to 1
    root = dataset_dir("cifar10", tmp_path / "data")
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["formats"] == ["native", "ffcv"]
    assert Reader(str(root / "ffcv/train.beton")).num_samples == 50
    assert Reader(str(root / "ffcv/test.beton")).num_samples == 20


def test_second_run_does_nothing_and_force_rewrites(tmp_path):
    archive, _ = make_cifar_archive(tmp_path / "a.tar.gz", train_size=30, test_size=10)
    _prepare(archive, tmp_path / "data")
    manifest = dataset_dir("cifar10", tmp_path / "data") / MANIFEST
    before = manifest.read_text()
    messages = []
    result = prepare(PrepareConfig(source=str(archive), data_dir=str(tmp_path / "data"),
                                   checksum=False), log=messages.append)
    assert result.skipped and "nothing to do" in messages[-1]
    assert manifest.read_text() == before
    assert not _prepare(archive, tmp_path / "data", force=True).skipped
    # Asking for a format not yet prepared prepares again, keeping the manifest valid.
    assert not _prepare(archive, tmp_path / "data", formats=("native", "dali")).skipped
    assert json.loads(manifest.read_text())["formats"] == ["native", "dali"]


def test_corrupted_shard_is_detected_on_load(tmp_path):
    archive, _ = make_cifar_archive(tmp_path / "a.tar.gz", train_size=30, test_size=10)
    _prepare(archive, tmp_path / "data")
    shard = dataset_dir("cifar10", tmp_path / "data") / "native/train_images.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(UserError, match="does not match its checksum.*--force"):
        fastcifar.load("cifar10", "train", tmp_path / "data")
    fastcifar.load("cifar10", "test", tmp_path / "data")  # the other split is still fine


def test_missing_dataset_names_the_command(tmp_path):
    with pytest.raises(UserError, match="run: fastcifar prepare --dataset cifar100"):
        fastcifar.load("cifar100", "train", tmp_path)


def test_checksum_mismatch_is_refused_unless_asked(tmp_path):
    archive, _ = make_cifar_archive(tmp_path / "a.tar.gz", train_size=30, test_size=10)
    with pytest.raises(UserError, match="not the official cifar10 archive.*--no-checksum"):
        _prepare(archive, tmp_path / "data", checksum=True)
    assert not (tmp_path / "data" / "cifar10").exists()


def test_extracted_member_md5_is_checked(tmp_path):
    folder, _ = make_cifar_folder(tmp_path / "src", "cifar10", "python", 30, 10)
    with pytest.raises(UserError, match="data_batch_1 has md5 .* not the official"):
        _prepare(folder, tmp_path / "data", checksum=True)


def test_truncated_and_corrupt_archives(tmp_path):
    archive, _ = make_cifar_archive(tmp_path / "a.tar.gz", train_size=200, test_size=50)
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(UserError, match="truncated|corrupt|not a readable"):
        _prepare(truncated, tmp_path / "data")
    for name, content in [("garbage.tar.gz", b"\x00not an archive" * 100),
                          ("page.tar.gz", b"<html>404 Not Found</html>\n")]:
        source = tmp_path / name
        source.write_bytes(content)
        with pytest.raises(UserError) as failure:
            _prepare(source, tmp_path / "data")
        assert str(failure.value) == f"{source} is not a readable .tar.gz archive"  # one line
    assert not (tmp_path / "data" / "cifar10").exists()


def test_truncated_binary_record(tmp_path):
    folder, _ = make_cifar_folder(tmp_path / "src", "cifar10", "binary", 30, 10)
    batch = folder / "data_batch_2.bin"
    batch.write_bytes(batch.read_bytes()[:-5])
    with pytest.raises(UserError, match="data_batch_2.bin: .* not a whole number of 3073-byte"):
        _prepare(folder, tmp_path / "data")


def test_wrong_dataset_for_archive(tmp_path):
    archive, _ = make_cifar_archive(tmp_path / "a.tar.gz", "cifar100", train_size=30, test_size=10)
    with pytest.raises(UserError, match="holds cifar100, not cifar10.*--dataset cifar100"):
        _prepare(archive, tmp_path / "data", "cifar10")


def test_label_out_of_range_is_refused(tmp_path):
    folder, _ = make_cifar_folder(tmp_path / "src", "cifar10", "binary", 30, 10)
    batch = folder / "test_batch.bin"
    data = bytearray(batch.read_bytes())
    data[0] = 42  # the first record's label
    batch.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"label outside \[0, 10\)"):
        _prepare(folder, tmp_path / "data")


def test_hostile_pickle_is_refused(tmp_path):
    folder, _ = make_cifar_folder(tmp_path / "src", "cifar10", "python", 30, 10)

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil()}, protocol=4))
    with pytest.raises(UserError, match="refused to load (posix|os).system"):
        _prepare(folder, tmp_path / "data")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_pickles_written_by_python3_with_protocol_2_are_read(tmp_path, dataset):
    folder, truth = make_cifar_folder(tmp_path / "src", dataset, "python", 60, 20, seed=2)
    rewrite_as_python3_protocol2(folder)
    test_file = DATASETS[dataset].python.test_files[0]
    globals_used = {arg for op, arg, _ in pickletools.genops((folder / test_file).read_bytes())
                    if op.name == "GLOBAL"}
    assert "_codecs encode" in globals_used  # the fixture goes through it
    _prepare(folder, tmp_path / "data", dataset)
    _assert_loads(dataset, tmp_path / "data", truth)
    manifest = json.loads((dataset_dir(dataset, tmp_path / "data") / MANIFEST).read_text())
    assert manifest["class_names"][:2] == ["class_0", "class_1"]


@pytest.mark.parametrize("call", [
    (codecs.encode, ("abc", "rot13")),  # _codecs.encode with another codec
    (codecs.encode, (b"abc", "latin1")),  # with bytes, not text
    (codecs.decode, ("abc", "latin1")),  # another function of the same module
])
def test_codecs_is_allowed_only_as_pickle_uses_it(tmp_path, call):
    folder, _ = make_cifar_folder(tmp_path / "src", "cifar10", "python", 30, 10)

    class Payload:
        def __reduce__(self):
            return call

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Payload()}, protocol=2))
    with pytest.raises(UserError, match="not a CIFAR pickle .*refused"):
        _prepare(folder, tmp_path / "data")


@pytest.mark.parametrize("name", ["../escape.txt", "/abs/escape.txt", "a/../../escape.txt"])
def test_escaping_tar_member_is_refused(tmp_path, name):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 1
        import io
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(UserError, match="would escape the target folder"):
        _prepare(archive, tmp_path / "data")


def test_missing_source(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        _prepare(tmp_path / "nope.tar.gz", tmp_path / "data")


def test_no_network_is_one_clear_error(tmp_path):
    # Port 9 (discard) on loopback refuses the connection at once: no traffic leaves.
    with pytest.raises(UserError, match="cannot download http://127.0.0.1:9/.*--source PATH"):
        _prepare("http://127.0.0.1:9/cifar-10-python.tar.gz", tmp_path / "data")


@pytest.mark.parametrize("code, message", [(errno.ENOSPC, "disk full"),
                                           (errno.EROFS, "not writable")])
def test_write_failures_leave_nothing_behind(tmp_path, monkeypatch, code, message):
    archive, _ = make_cifar_archive(tmp_path / "a.tar.gz", train_size=30, test_size=10)

    def failing_save(*args, **kwargs):
        raise OSError(code, "simulated")

    monkeypatch.setattr("fastcifar.shard_writers.np.save", failing_save)
    with pytest.raises(UserError, match=message):
        _prepare(archive, tmp_path / "data")
    assert list((tmp_path / "data").iterdir()) == []


def test_interrupted_prepare_keeps_the_previous_dataset(tmp_path, monkeypatch):
    archive, truth = make_cifar_archive(tmp_path / "a.tar.gz", train_size=30, test_size=10)
    _prepare(archive, tmp_path / "data")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("fastcifar.prepare.WRITERS", {"native": interrupted})
    with pytest.raises(KeyboardInterrupt):
        _prepare(archive, tmp_path / "data", force=True)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cifar10"]
    _assert_loads("cifar10", tmp_path / "data", truth)


def test_cli_prepare_prints_timings_and_one_line_errors(tmp_path):
    archive, _ = make_cifar_archive(tmp_path / "a.tar.gz", train_size=30, test_size=10)
    runner = CliRunner()
    ok = runner.invoke(main, ["prepare", "--source", str(archive), "--data-dir",
                              str(tmp_path / "data"), "--no-checksum"])
    assert ok.exit_code == 0, ok.output
    assert "prepared cifar10 (30 train, 10 test)" in ok.output and "native" in ok.output
    again = runner.invoke(main, ["prepare", "--source", str(archive), "--data-dir",
                                 str(tmp_path / "data"), "--no-checksum"])
    assert again.exit_code == 0 and "nothing to do" in again.output
    bad = runner.invoke(main, ["prepare", "--source", str(archive), "--data-dir",
                               str(tmp_path / "d2")])
    assert bad.exit_code == 2
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ")
    assert "Traceback" not in bad.output
    fmt = runner.invoke(main, ["prepare", "--formats", "native,parquet", "--source", str(archive)])
    assert fmt.exit_code == 2 and "unknown format parquet" in fmt.stderr


def test_sha256_in_manifest_matches_files(tmp_path):
    archive, _ = make_cifar_archive(tmp_path / "a.tar.gz", train_size=30, test_size=10)
    _prepare(archive, tmp_path / "data", formats=("native", "dali"))
    root = dataset_dir("cifar10", tmp_path / "data")
    manifest = json.loads((root / MANIFEST).read_text())
    assert len(manifest["shards"]) == 6
    for name, digest in manifest["shards"].items():
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest


# --- the target folder: only fastcifar's own files are ever replaced ---------------------

def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}


@pytest.mark.parametrize("force", [False, True])
def test_source_inside_the_target_is_refused(tmp_path, force):
    target = tmp_path / "data" / "cifar10"
    make_cifar_folder(target, "cifar10", "python", 30, 10)
    (target / "my_notes.txt").write_text("precious")
    before = _files(target)
    with pytest.raises(UserError, match="lies inside .*cifar10, which prepare replaces"):
        _prepare(target, tmp_path / "data", force=force)
    assert _files(target) == before
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cifar10"]


@pytest.mark.parametrize("foreign", ["my_notes.txt", "native/extra.npy", "ffcv/notes"])
def test_foreign_files_in_the_target_are_refused_even_with_force(tmp_path, foreign):
    archive, truth = make_cifar_archive(tmp_path / "a.tar.gz", train_size=30, test_size=10)
    _prepare(archive, tmp_path / "data")
    target = dataset_dir("cifar10", tmp_path / "data")
    (target / foreign).parent.mkdir(exist_ok=True)
    (target / foreign).write_text("precious")
    before = _files(target)
    for kw in (dict(force=True), dict(formats=("native", "dali"))):
        with pytest.raises(UserError, match=f"holds files fastcifar did not write \\({foreign}\\)"):
            _prepare(archive, tmp_path / "data", **kw)
    assert _files(target) == before
    _assert_loads("cifar10", tmp_path / "data", truth)


def test_a_target_of_fastcifar_outputs_without_manifest_is_replaced(tmp_path):
    archive, truth = make_cifar_archive(tmp_path / "a.tar.gz", train_size=30, test_size=10)
    _prepare(archive, tmp_path / "data", formats=("native", "dali"))
    target = dataset_dir("cifar10", tmp_path / "data")
    (target / MANIFEST).unlink()  # as after an older format version: our files, not valid
    assert not _prepare(archive, tmp_path / "data").skipped
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST, "native"]
    _assert_loads("cifar10", tmp_path / "data", truth)


def test_cli_refusal_is_one_line_and_keeps_the_files(tmp_path):
    target = tmp_path / "data" / "cifar10"
    make_cifar_folder(target, "cifar10", "python", 30, 10)
    before = _files(target)
    result = CliRunner().invoke(main, ["prepare", "--source", str(target), "--data-dir",
                                       str(tmp_path / "data"), "--no-checksum", "--force"])
    assert result.exit_code != 0 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.output
    assert _files(target) == before


def test_adding_ffcv_keeps_the_dali_shards(tmp_path):
    archive, truth = make_cifar_archive(tmp_path / "a.tar.gz", train_size=30, test_size=10)
    _prepare(archive, tmp_path / "data", formats=("dali",))
    _prepare(archive, tmp_path / "data", formats=("ffcv",))
    root = dataset_dir("cifar10", tmp_path / "data")
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["formats"] == ["native", "dali", "ffcv"]
    assert sorted(p.name for p in root.iterdir()) == ["dali", "ffcv", MANIFEST, "native"]
    for name, digest in manifest["shards"].items():
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest
    assert sum(n.startswith("dali/") for n in manifest["shards"]) == 2
    assert _prepare(archive, tmp_path / "data", formats=("dali",)).skipped
    _prepare(archive, tmp_path / "data", force=True)  # --force rewrites, still keeps them
    assert json.loads((root / MANIFEST).read_text())["formats"] == ["native", "dali", "ffcv"]


def test_stale_temp_folders_of_killed_runs_are_removed(tmp_path, monkeypatch):
    data = tmp_path / "data"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid now belongs to no process
    stale = [data / f".cifar10.tmp-{dead.pid}", data / f".cifar10.old-{dead.pid}",
             data / f".cifar10.tmp-{dead.pid + 10**7}"]
    kept = [data / f".cifar10.tmp-{os.getppid()}",  # a live process's: maybe still writing
            data / f".cifar100.tmp-{dead.pid}", data / "cifar10.tmp-1", data / ".cifar10.tmp-x"]
    for folder in stale + kept:
        folder.mkdir(parents=True)
        (folder / "shard").write_bytes(b"x")
    stuck = stale.pop()
    real_rmtree = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        if Path(path) == stuck:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr("fastcifar.atomic.shutil.rmtree", rmtree)
    archive, _ = make_cifar_archive(tmp_path / "a.tar.gz", train_size=30, test_size=10)
    messages = []
    prepare(PrepareConfig(source=str(archive), data_dir=str(data), checksum=False),
            log=messages.append)
    assert not any(folder.exists() for folder in stale)
    assert all(folder.exists() for folder in kept + [stuck])
    warnings = [m for m in messages if "could not remove" in m]
    assert len(warnings) == 1 and str(stuck) in warnings[0] and "\n" not in warnings[0]


# --- sources: what is verified, and unreadable or incomplete ones ------------------------

def test_extracted_binary_folder_is_refused_unless_no_checksum(tmp_path):
    folder, truth = make_cifar_folder(tmp_path / "src", "cifar10", "binary", 30, 10)
    with pytest.raises(UserError) as failure:
        _prepare(folder, tmp_path / "data", checksum=True)
    message = str(failure.value)
    assert "binary folder cannot be verified" in message and "--no-checksum" in message
    assert ".tar.gz" in message and "\n" not in message
    assert not (tmp_path / "data" / "cifar10").exists()
    _prepare(folder, tmp_path / "data", checksum=False)
    _assert_loads("cifar10", tmp_path / "data", truth)
    manifest = json.loads((dataset_dir("cifar10", tmp_path / "data") / MANIFEST).read_text())
    assert manifest["source"]["verified"] is False and manifest["source"]["md5"] is None


def _deny_reading(monkeypatch, denied):
    """Fail every open() under `denied` as for another user's mode-600 file: the tests run
    as root, who may read anything, so chmod would not do."""
    real_open = io.open

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file).resolve().is_relative_to(denied):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded_open)
    monkeypatch.setattr("io.open", guarded_open)


@pytest.mark.parametrize("packed", [True, False])
def test_unreadable_source_is_one_line(tmp_path, monkeypatch, packed):
    if packed:
        source, _ = make_cifar_archive(tmp_path / "a.tar.gz", train_size=30, test_size=10)
        unreadable = source
    else:
        source, _ = make_cifar_folder(tmp_path / "src", "cifar10", "python", 30, 10)
        unreadable = source / "data_batch_2"
    _deny_reading(monkeypatch, unreadable.resolve())
    with pytest.raises(UserError) as failure:
        _prepare(source, tmp_path / "data")
    assert str(failure.value) == f"{unreadable}: cannot read (Permission denied)"


def test_missing_member_in_a_folder_is_named(tmp_path):
    folder, _ = make_cifar_folder(tmp_path / "src", "cifar10", "python", 30, 10)
    (folder / "data_batch_3").unlink()
    with pytest.raises(UserError, match="member data_batch_3 is missing$"):
        _prepare(folder, tmp_path / "data")


def test_missing_source_is_an_error_even_when_prepared(tmp_path):
    archive, _ = make_cifar_archive(tmp_path / "a.tar.gz", train_size=30, test_size=10)
    _prepare(archive, tmp_path / "data")
    with pytest.raises(UserError, match="typo.tar.gz: no such file or folder"):
        _prepare(tmp_path / "typo.tar.gz", tmp_path / "data")


# --- disk space ---------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 37, 1000])
@pytest.mark.parametrize("fmt", ["native", "dali"])
def test_space_estimate_is_exact_or_just_above(tmp_path, fmt, count):
    images = np.zeros((count, 32, 32, 3), np.uint8)
    WRITERS[fmt](tmp_path, "train", images, np.zeros(count, np.int64))
    written = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert written <= estimate_bytes(fmt, count) <= written + 11 * 1024


@pytest.mark.parametrize("count", [10, 5000])
def test_space_estimate_bounds_ffcv_shards(tmp_path, count):
    images = np.zeros((count, 32, 32, 3), np.uint8)
    WRITERS["ffcv"](tmp_path, "train", images, np.zeros(count, np.int64))
    written = sum(p.stat().st_blocks * 512 for p in tmp_path.rglob("*") if p.is_file())
    assert written <= estimate_bytes("ffcv", count) <= 2 * written + (32 << 20)


@pytest.fixture
def small_disk(tmp_path):
    """mount(size_mb): a real tmpfs of that size; skipped where mounting is not allowed."""
    mounted = []

    def mount(size_mb):
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                               str(point)], capture_output=True) if os.geteuid() == 0 else None
        if done is None or done.returncode:
            pytest.skip("needs root and a mountable tmpfs")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=True)


def test_full_disk_is_refused_before_writing(tmp_path, small_disk):
    disk = small_disk(24)
    archive, truth = make_cifar_archive(tmp_path / "a.tar.gz", train_size=1500, test_size=500)
    full = r"^needs about 33 MB free in .*disk0, has 25 MB; free some space"
    with pytest.raises(UserError, match=full) as failure:
        _prepare(archive, disk, formats=("native", "dali"))  # 32.2 MB with the headroom
    assert "\n" not in str(failure.value)
    assert list(disk.iterdir()) == []
    _prepare(archive, disk)  # native alone (about 23 MB with headroom) fits
    _assert_loads("cifar10", disk, truth)


def test_short_write_on_a_full_disk_is_one_line(tmp_path, small_disk, monkeypatch):
    disk = small_disk(4)
    archive, _ = make_cifar_archive(tmp_path / "a.tar.gz", train_size=1500, test_size=500)
    monkeypatch.setattr("fastcifar.prepare.require_free_space", lambda *args: None)
    with pytest.raises(UserError, match="disk full while writing shards") as failure:
        _prepare(archive, disk)  # np.save's short write raises an OSError without errno
    assert "\n" not in str(failure.value)
    assert list(disk.iterdir()) == []


def test_a_split_without_images_is_one_line(tmp_path):
    archive, _ = make_cifar_archive(tmp_path / "a.tar.gz", train_size=20, test_size=0)
    with pytest.raises(UserError, match="the test split holds no images") as info:
        prepare(PrepareConfig(dataset="cifar10", source=str(archive),
                              data_dir=str(tmp_path / "d"), formats=("native", "dali"),
                              checksum=False), **QUIET)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "d" / "cifar10").exists()
