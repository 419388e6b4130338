"""pasta_lens.io: a failed write leaves the old file intact and no temporary file behind."""

import os
import stat

import pytest
import torch

from pasta_lens.io import atomic_write, atomic_write_text


def test_writes_text_readable_by_everyone(tmp_path):
    path = atomic_write_text(tmp_path / "sub" / "a.json", "{}\n")
    assert path.read_text() == "{}\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(path.parent) == ["a.json"]


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot serialise this")


def test_a_serialiser_that_fails_midway_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({"old": 1}, path)
    before = path.read_bytes()
    state = {"tensor": torch.arange(10_000), "bad": Unpicklable()}  # the tensor is written before the failure

    def write(tmp):
        torch.save(state, tmp)

    with pytest.raises(RuntimeError, match="cannot serialise"):
        atomic_write(path, write)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["state.pt"]


def test_a_writer_that_wrote_part_then_raised_leaves_no_temp(tmp_path):
    path = atomic_write_text(tmp_path / "table.md", "old\n")

    def write(tmp):
        with open(tmp, "w") as f:
            f.write("half a ta")
        raise KeyboardInterrupt  # Ctrl-C mid-write: also cleaned up

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, write)
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["table.md"]


def test_a_replace_that_fails_leaves_no_temp(tmp_path):
    target = tmp_path / "out"
    (target / "inside").mkdir(parents=True)  # os.replace cannot put a file over a non-empty folder
    with pytest.raises(OSError):
        atomic_write_text(target, "text")
    assert sorted(os.listdir(tmp_path)) == ["out"] and os.listdir(target) == ["inside"]
