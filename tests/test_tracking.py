"""utils.tracking: an offline Weights & Biases run holds what was logged; without wandb nothing happens."""
import builtins
import json
import struct
import sys
import time

import pytest

from utils import tracking


def wandb_records(path):
    """The protobuf records of a run's .wandb file: a 7-byte header, then LevelDB's log format (32 KiB
    blocks of chunks, each with a 7-byte header: checksum, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    pos, block, chunks, pending = 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:              # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            chunks.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            chunks.append(pending + chunk)
    records = []
    for chunk in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        records.append(record)
    return records


def test_without_wandb_it_says_so_once_and_does_nothing(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb" or name.startswith("wandb."):
            raise ImportError("No module named 'wandb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setitem(sys.modules, "wandb", None)
    monkeypatch.setattr(builtins, "__import__", no_wandb)
    monkeypatch.setattr(tracking, "_said_missing", False)
    run = tracking.start("nothing")
    run.log(0, reward=1.0)
    run.table("samples", ["step", "text"], [[0, "hi"]])
    run.finish()
    again = tracking.start("nothing again")
    out = capsys.readouterr().out
    assert not run.active and not again.active and run.folder is None
    assert out.count("\n") == 1 and "not installed" in out


def test_offline_run_folder_holds_the_logged_metrics_and_table(tmp_path, monkeypatch, capsys):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)          # offline is the default
    run = tracking.start("test-run", config={"beta": 0.1}, folder=tmp_path)
    assert run.active, capsys.readouterr().out
    assert run._run.settings.mode == "offline"
    folder = run.folder
    for step in range(3):
        run.log(step, reward=0.5 * step, kl=0.1)
    run.table("samples", ["step", "text"], [[0, "my love"], [2, "sweet love"]], step=2)
    run.finish()
    assert "wandb sync" in capsys.readouterr().out and not run.active
    assert folder.is_dir() and folder.parent == tmp_path / "wandb" and folder.name.startswith("offline-run-")
    records = list(folder.glob("run-*.wandb"))
    assert len(records) == 1

    deadline = time.monotonic() + 60   # wandb's service may still be writing the file when finish() returns
    while True:
        history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
                   for r in wandb_records(records[0]) if r.WhichOneof("record_type") == "history"]
        rewards = [h["reward"] for h in history if "reward" in h]
        if len(rewards) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert rewards == [0.0, 0.5, 1.0]
    assert [h["_step"] for h in history if "reward" in h] == [0, 1, 2]
    assert any(key.split("/")[0] == "samples" for h in history for key in h), history
    tables = list(folder.glob("files/media/table/samples_*.table.json"))
    assert len(tables) == 1 and json.loads(tables[0].read_text())["data"] == [[0, "my love"], [2, "sweet love"]]


def test_disabled_mode_records_nothing(tmp_path):
    pytest.importorskip("wandb")
    run = tracking.start("off", mode="disabled", folder=tmp_path)
    run.log(0, reward=1.0)
    run.finish()
    assert not run.active and not (tmp_path / "wandb").exists()
