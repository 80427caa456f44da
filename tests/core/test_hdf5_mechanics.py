"""The HDF5 mechanics the reader relies on (dyntrace.io.hdf5), against HDF5's own numbers."""

import os
import random
import subprocess
import sys
import textwrap

import h5py
import numpy as np

from dyntrace.io import hdf5

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fletcher32_loop(data: bytes) -> int:
    """HDF5's H5_checksum_fletcher32, line by line (the reference for the vectorised one)."""
    sum1 = sum2 = 0
    length, i = len(data) // 2, 0
    while length:
        block = min(length, 360)
        length -= block
        for _ in range(block):
            sum1 += (data[i] << 8) | data[i + 1]
            i += 2
            sum2 += sum1
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    if len(data) % 2:
        sum1 += data[i] << 8
        sum2 += sum1
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
    sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    return (sum2 << 16) | sum1


def test_fletcher32_equals_hdf5s_loop_on_any_length():
    rng = random.Random(3)
    cases = [b"", b"\x01", b"\xff\xff", b"\x00" * 1001, b"\xff" * 2000, bytes(range(256)) * 9]
    cases += [bytes(rng.randrange(256) for _ in range(n)) for n in (1, 2, 3, 719, 720, 721, 5000, 65537)]
    for data in cases:
        assert hdf5.fletcher32(data) == fletcher32_loop(data), len(data)


def test_fletcher32_equals_the_checksums_hdf5_stored(tmp_path):
    path = tmp_path / "f.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "a", data=rng.normal(size=(300, 7)), chunks=(64, 7), fletcher32=True, compression="gzip"
        )
        f.create_dataset("b", data=rng.integers(0, 9, size=999).astype("u1"), chunks=(100,), fletcher32=True)
    with h5py.File(path) as f, open(path, "rb") as raw:
        for name in ("a", "b"):
            for i in range(f[name].id.get_num_chunks()):
                info = f[name].id.get_chunk_info(i)
                raw.seek(info.byte_offset)
                chunk = raw.read(info.size)
                assert hdf5.fletcher32(chunk[:-4]) == int.from_bytes(chunk[-4:], "little")


def test_the_superblock_is_read_and_checked(tmp_path):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f["x"] = np.arange(10)
    block = hdf5.superblock(path)
    assert block.version == 3 and not block.open_for_write and block.eof == os.path.getsize(path)
    data = bytearray(path.read_bytes())
    data[20] ^= 1  # inside the base address
    path.write_bytes(bytes(data))
    try:
        hdf5.superblock(path)
    except hdf5.SuperblockError as exc:
        assert "checksum" in str(exc)
    else:
        raise AssertionError("a damaged superblock was accepted")


def test_a_swmr_open_of_damaged_metadata_fails_instead_of_retrying_for_an_hour(tmp_path):
    """The issue's hang, at its source: HDF5's SWMR reads retry a bad checksum 100 times with a
    backoff that adds up to about 40 minutes; open_swmr allows 20 attempts (about 1 ms)."""
    path = tmp_path / "d.h5"
    with h5py.File(path, "w", libver="latest") as f:
        for i in range(5):
            f.create_group(f"g{i}").create_dataset("x", data=np.arange(100), chunks=(10,))
        address = h5py.h5o.get_info(f["g3"].id).addr
    with open(path, "r+b") as fh:
        fh.seek(address + 16)
        fh.write(bytes(64))
    code = textwrap.dedent(
        f"""
        import sys
        from dyntrace.io import hdf5
        f = hdf5.open_swmr({str(path)!r})
        try:
            f.visit(lambda name: None)
        except RuntimeError as exc:
            print(exc)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert proc.returncode == 0 and "incorrect metadata checksum after all read attempts" in proc.stdout, (
        proc.stderr
    )


def test_many_landscape_slices_leave_a_valid_file(tmp_path):
    """Each slice rewrites the root's checksums, longer each time; HDF5 2.0 failed to close
    the file at the fifth slice of random_landscapes' full run when that was done in the
    opening that wrote the slice (the root's attributes in dense storage)."""
    import dyntrace
    from dyntrace.gallery import random_landscapes

    path = tmp_path / "slices.h5"
    random_landscapes._record("linear", dict(random_landscapes.CONFIG))(str(path))
    with dyntrace.open_run(path) as run:
        run.verify()
        assert run.notes == []
    with h5py.File(path) as f:
        assert sorted(f["landscape"]) == [f"net{k}" for k in range(random_landscapes.CONFIG["networks"])]
