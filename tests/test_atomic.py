"""runtime.atomic (whole files or nothing, never over an input) and runtime.quiet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.atomic import (
    TMP_MARK,
    refuse_overwrite,
    remove_leftovers,
    scratch_dir,
    scratch_root,
    staged,
    temp_name,
    write_bytes,
    write_json,
    write_text,
)
from runtime.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def kill_mid_write(folder: Path, scratch: str = "work", name: str = "out.bin") -> list[Path]:
    """Start a writer that is SIGKILLed inside ``scratch_dir(scratch)`` and
    ``staged(folder / name)`` (a real process, so the names carry a process id that is
    gone); its leftovers."""
    before = set(scratch_root().iterdir())
    code = (
        "import os, signal, sys; from pathlib import Path\n"
        "from runtime.atomic import scratch_dir, staged\n"
        "with scratch_dir(sys.argv[2]) as d, staged(Path(sys.argv[1]) / sys.argv[3]) as t:\n"
        "    (d / 'part').write_bytes(b'x'); t.write_bytes(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(folder), scratch, name], cwd=REPO)
    assert proc.returncode == -9
    return sorted(folder.iterdir()) + sorted(set(scratch_root().iterdir()) - before)


def test_staged_replaces_only_on_success(tmp_path):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with staged(target) as tmp:
            tmp.write_bytes(b"half a mod")
            assert tmp.parent == tmp_path and tmp.name.endswith(".model.tflite")
            raise KeyboardInterrupt  # Ctrl-C mid-export
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]
    with staged(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and sorted(tmp_path.iterdir()) == [target]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()  # an ordinary file's mode


def test_a_rewrite_keeps_the_permissions_and_a_long_name_still_fits(tmp_path):
    target = tmp_path / "key.json"
    target.write_text("old")
    target.chmod(0o600)  # a private file stays private when it is rewritten
    write_json(target, {"new": 1})
    assert target.stat().st_mode & 0o777 == 0o600
    long = tmp_path / ("\u00e9" * 120 + ".weights.h5")  # 246 bytes: a valid name
    temp = temp_name(long)
    assert len(os.fsencode(temp.name)) <= 255 and temp.name.endswith("\u00e9.weights.h5")
    assert TMP_MARK in temp.name and temp.parent == tmp_path
    write_bytes(long, b"weights")  # the temporary name used to be too long to create
    assert long.read_bytes() == b"weights" and sorted(tmp_path.iterdir()) == [target, long]


def test_a_killed_writer_leaves_files_that_the_next_write_removes(tmp_path):
    left = kill_mid_write(tmp_path)
    assert len(left) == 2 and all(TMP_MARK in p.name for p in left), left
    assert not (tmp_path / "out.bin").exists()  # never a truncated output
    live = tmp_path / f".{os.getpid()}-0a1b2c3d{TMP_MARK}.other.bin"  # a write in progress
    live.write_bytes(b"busy")
    write_bytes(tmp_path / "out.bin", b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "out.bin"])
    with scratch_dir("work") as folder:
        assert folder.is_dir() and folder.parent == scratch_root()
        assert not any(p.exists() for p in left)  # the killed scratch folder went too
    assert not folder.exists()
    assert remove_leftovers(tmp_path) == 0  # nothing of a live writer is touched


def test_text_and_json_writers(tmp_path):
    write_json(tmp_path / "a.json", {"x": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2]}
    write_text(tmp_path / "b.csv", "a,b\r\n1,2\r\n", newline="")
    assert (tmp_path / "b.csv").read_bytes() == b"a,b\r\n1,2\r\n"


def test_an_output_that_is_an_input_is_refused(tmp_path):
    model = tmp_path / "run" / "model.keras"
    model.parent.mkdir()
    model.write_bytes(b"weights")
    data = tmp_path / "images"
    data.mkdir()
    (data / "a.jpg").write_bytes(b"jpeg")
    link = tmp_path / "link.keras"
    link.symlink_to(model)
    for out in (model, link, tmp_path / "run" / ".." / "run" / "model.keras"):
        with pytest.raises(UserError, match="would overwrite the input"):
            refuse_overwrite(out, [model])
    with pytest.raises(UserError, match="--save .* file of the input data"):
        refuse_overwrite([tmp_path / "ok.json", data / "a.jpg"], [], folders=[data], flag="--save")
    refuse_overwrite(data / "new.tflite", [model], folders=[data])  # a new file: allowed
    refuse_overwrite(tmp_path / "run" / "model_int8.tflite", [model])


def test_native_output_goes_to_the_debug_log(caplog):
    import logging

    from runtime.quiet import native_output_captured

    with caplog.at_level(logging.DEBUG, logger="runtime.quiet"):
        with native_output_captured():
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
            os.write(1, b"from C++ on stdout\n")
    assert "XNNPACK delegate" in caplog.text and "from C++ on stdout" in caplog.text


def test_quiet_tensorflow_start(tmp_path):
    """`import tensorflow` after quiet_tensorflow prints nothing (it prints its oneDNN and
    absl lines from C++ otherwise); with verbose it is left alone."""
    pytest.importorskip("tensorflow")
    code = "import sys; from runtime.quiet import quiet_tensorflow; " \
           "quiet_tensorflow(verbose=sys.argv[1] == 'v'); import tensorflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    runs = {
        mode: subprocess.run([sys.executable, "-c", code, mode], cwd=REPO, env=env,
                             capture_output=True, text=True)
        for mode in ("v", "q")
    }
    assert all(r.returncode == 0 for r in runs.values()), runs
    if not runs["v"].stderr:
        pytest.skip("this TensorFlow build prints nothing at import: nothing to silence")
    assert runs["q"].stdout + runs["q"].stderr == "", runs["q"].stderr


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
