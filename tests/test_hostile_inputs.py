"""Hostile inputs and faults: crafted files are refused from their headers before any data is read, overrides that
would change what weights compute are refused, repos are never lost, and downloads cannot hang forever."""

from __future__ import annotations

import http.server
import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from npz_factory import make_official_params, to_big_vision_layout, write_npz
from test_training import cli

from hf_vit_port import ViTPortConfig, ViTPortForImageClassification
from hf_vit_port.npz_format import NpzCheckpoint, NpzFormatError
from hf_vit_port_tools.conversion import publish as publish_module
from hf_vit_port_tools.conversion.convert import convert
from hf_vit_port_tools.conversion.download import DownloadError, download_checkpoint
from hf_vit_port_tools.conversion.registry import get_checkpoint

HEAD_KEY = "head/bias"


def _header_bytes(shape: tuple[int, ...], dtype: str) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def write_with_member(path: Path, params: dict, key: str, header: bytes, data_bytes: int, *, deflate: bool) -> Path:
    """An .npz of `params` where `key` is replaced by a member with `header` and `data_bytes` zero bytes."""
    compression = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in params.items():
            if name == key:
                continue
            with archive.open(name + ".npy", "w") as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
        info = zipfile.ZipInfo(key + ".npy")
        info.compress_type = compression
        with archive.open(info, "w", force_zip64=True) as member:
            member.write(header)
            chunk = bytes(16 << 20)
            left = data_bytes
            while left:
                member.write(chunk[: min(left, len(chunk))])
                left -= min(left, len(chunk))
    return path


@pytest.fixture
def reads(monkeypatch):
    """Counts the arrays whose data is read."""
    calls = []
    original = NpzCheckpoint._read

    def counting(self, raw_key, header):
        calls.append(raw_key)
        return original(self, raw_key, header)

    monkeypatch.setattr(NpzCheckpoint, "_read", counting)
    return calls


# -- resource exhaustion from tiny files -------------------------------------------------------------------------


def test_a_zip_bomb_under_a_real_key_is_refused_without_inflating_it(tmp_path, reads):
    params = make_official_params()
    # 10 floats promised by the header, 256 MiB of zeros in a member that deflates from about 256 KiB.
    path = write_with_member(tmp_path / "bomb.npz", params, HEAD_KEY, _header_bytes((10,), "<f4"), 256 << 20,
                             deflate=True)
    assert path.stat().st_size < 2 << 20
    start = time.perf_counter()
    with pytest.raises(NpzFormatError, match=f"{HEAD_KEY}.*declares 40 bytes.*truncated or forged"):
        ViTPortForImageClassification.from_npz(path)
    assert reads == [] and time.perf_counter() - start < 5


def test_a_bomb_whose_header_agrees_is_refused_by_the_architecture(tmp_path, reads):
    params = make_official_params()
    key = "Transformer/encoderblock_0/MlpBlock_3/Dense_0/bias"  # the architecture says (64,)
    path = write_with_member(tmp_path / "bomb.npz", params, key, _header_bytes((64 << 20,), "<f4"), 256 << 20,
                             deflate=True)
    with pytest.raises(NpzFormatError, match=r"Dense_0/bias' has shape \(67108864,\).*needs \(64,\)"):
        ViTPortForImageClassification.from_npz(path)
    assert reads == []


def test_a_forged_header_of_1e11_floats_names_the_file_and_key(tmp_path, reads):
    path = write_with_member(tmp_path / "forged.npz", make_official_params(), HEAD_KEY,
                             _header_bytes((10**11,), "<f4"), 64, deflate=False)
    with pytest.raises(NpzFormatError, match=f"forged.npz: key '{HEAD_KEY}' declares 400,000,000,000 bytes"):
        ViTPortForImageClassification.from_npz(path)
    assert reads == []


def test_data_shorter_than_its_header_is_called_truncated_not_pickled(tmp_path):
    path = write_with_member(tmp_path / "short.npz", make_official_params(), HEAD_KEY, _header_bytes((10,), "<f4"),
                             12, deflate=False)
    with pytest.raises(NpzFormatError, match="truncated or forged") as error:
        ViTPortForImageClassification.from_npz(path)
    assert "pickle" not in str(error.value)


def test_stored_members_are_read_exactly_and_a_flipped_byte_fails_the_crc(tmp_path):
    # Uncompressed members (the official files') are read straight into the array's buffer: same values as numpy's
    # reader, and the archive's CRC still guards them.
    path = tmp_path / "stored.npz"
    params = make_official_params()
    write_npz(path, params)
    with NpzCheckpoint(path) as checkpoint, np.load(path) as archive:
        assert all(np.array_equal(checkpoint[key], archive[key]) for key in archive.files if key in checkpoint)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel.npy")
        assert info.compress_type == zipfile.ZIP_STORED
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size - 8] ^= 0xFF  # array data
    path.write_bytes(bytes(data))
    with NpzCheckpoint(path) as checkpoint, pytest.raises(NpzFormatError, match="Dense_0/kernel.*CRC"):
        checkpoint["Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel"]


def test_a_stacked_layout_declaring_ten_million_blocks_is_refused_at_once(tmp_path, reads):
    params = to_big_vision_layout(make_official_params(), stacked=True)
    key = next(k for k in params if "encoderblock/" in k and k.endswith("Dense_0/bias"))
    path = write_with_member(tmp_path / "deep.npz", params, key, _header_bytes((10**7, 64), "<f4"), 0,
                             deflate=False)
    start = time.perf_counter()
    with pytest.raises(NpzFormatError):
        ViTPortForImageClassification.from_npz(path)
    assert reads == [] and time.perf_counter() - start < 5


def test_stacked_depth_is_bounded_even_when_the_data_is_there(tmp_path):
    params = to_big_vision_layout(make_official_params(), stacked=True)
    for key in [k for k in params if "encoderblock/" in k]:
        params[key] = np.repeat(params[key][:1], 2000, axis=0)
    with pytest.raises(NpzFormatError, match="depth of 2,000, beyond any ViT"):
        ViTPortForImageClassification.from_npz(write_npz(tmp_path / "deep.npz", params))


def test_a_config_with_absurd_sizes_is_refused_at_once(tmp_path):
    directory = tmp_path / "repo"
    ViTPortForImageClassification(ViTPortConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                                num_hidden_layers=1, image_size=16, patch_size=4)).save_pretrained(directory)
    config = json.loads((directory / "config.json").read_text())
    config["num_hidden_layers"] = 10**8
    (directory / "config.json").write_text(json.dumps(config))
    start = time.perf_counter()
    with pytest.raises(Exception, match="num_hidden_layers=100000000 is beyond any ViT"):
        ViTPortForImageClassification.from_pretrained(directory)
    assert time.perf_counter() - start < 10
    with pytest.raises(ValueError, match="num_labels=10000000 is beyond"):
        ViTPortConfig(num_labels=10**7)


# -- silently wrong ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [("num_attention_heads", 8), ("hidden_size", 64), ("intermediate_size", 32),
                                          ("layer_norm_eps", 1e-5), ("hidden_act", "gelu"), ("qkv_bias", False),
                                          ("classifier", "gap")])
def test_an_override_that_changes_what_the_weights_compute_is_refused(tmp_path, field, value):
    path = write_npz(tmp_path / "m.npz", make_official_params())
    with pytest.raises(ValueError, match=f"the checkpoint has {field}=.*would change what its weights compute"):
        ViTPortForImageClassification.from_npz(path, **{field: value})


def test_a_depth_change_is_allowed_and_reported(tmp_path):
    path = write_npz(tmp_path / "m.npz", make_official_params(layers=2))
    model = ViTPortForImageClassification.from_npz(path, num_hidden_layers=1)
    unused = [row for row in model.loading_summary(print_summary=False) if row["status"] == "unused in the file"]
    assert len(model.vit.layers) == 1 and unused and all("encoderblock_1" in row["name"] for row in unused)


def test_duplicate_and_malformed_label_names_are_refused(tmp_path, capsys):
    path = write_npz(tmp_path / "m.npz", make_official_params(num_classes=3))
    out = str(tmp_path / "repo")
    assert cli("convert", "--npz", path, "--out", out, "--set", 'id2label={"0": "cat", "1": "cat", "2": "dog"}') == 2
    assert "'cat' more than once" in capsys.readouterr().err
    assert cli("convert", "--npz", path, "--out", out, "--set", 'id2label={"a": "cat", "1": "b", "2": "c"}') == 2
    assert "'a' is not a class index" in capsys.readouterr().err
    assert not Path(out).exists()


# -- losing or corrupting repos ------------------------------------------------------------------------------------


@pytest.fixture
def npz(tmp_path):
    return write_npz(tmp_path / "m.npz", make_official_params())


def test_a_live_runs_staging_is_left_alone_and_a_dead_runs_removed(tmp_path, npz):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".repo.partial-{sleeper.pid}-abc"
        live.mkdir()
        dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                  text=True).stdout.strip()
        dead = tmp_path / f".repo.partial-{dead_pid}-xyz"
        dead.mkdir()
        convert(npz, tmp_path / "repo", verify_outputs=False)
        assert live.is_dir() and not dead.exists() and (tmp_path / "repo" / "model.safetensors").is_file()
    finally:
        sleeper.kill()


def test_a_repo_stranded_between_the_two_renames_is_restored_by_the_next_run(tmp_path, npz, monkeypatch):
    convert(npz, tmp_path / "repo", verify_outputs=False)
    original = (tmp_path / "repo" / "model.safetensors").read_bytes()
    monkeypatch.setattr(publish_module, "_exchange", lambda first, second: False)  # no renameat2 here
    real_rename = Path.rename

    def killed_after_the_first(self, target):
        if str(self).endswith(".old") is False and Path(target).name == "repo":
            raise KeyboardInterrupt  # stands in for SIGKILL between the renames
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", killed_after_the_first)
    monkeypatch.setattr(publish_module.shutil, "rmtree", lambda *a, **k: None)  # a killed run cleans nothing
    monkeypatch.setattr(os, "getpid", lambda: 999_999_999)  # the "killed" run's pid is gone
    with pytest.raises(KeyboardInterrupt):
        convert(npz, tmp_path / "repo", verify_outputs=False, overwrite=True)
    monkeypatch.undo()
    assert not (tmp_path / "repo").exists() and list(tmp_path.glob(".repo.partial-*.old"))
    with pytest.raises(Exception, match="already exists"):  # restored first thing, so it is there again
        convert(npz, tmp_path / "repo", verify_outputs=False)
    assert (tmp_path / "repo" / "model.safetensors").read_bytes() == original


def test_overwrite_replaces_atomically_and_leaves_no_debris(tmp_path, npz):
    convert(npz, tmp_path / "repo", verify_outputs=False)
    convert(npz, tmp_path / "repo", verify_outputs=False, overwrite=True, num_labels=4)
    assert json.loads((tmp_path / "repo" / "config.json").read_text())["id2label"].keys() == {"0", "1", "2", "3"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "repo"]


def test_overwrite_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path, npz):
    convert(npz, tmp_path / "real", verify_outputs=False)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    convert(npz, tmp_path / "link", verify_outputs=False, overwrite=True, num_labels=4)
    assert (tmp_path / "link").is_symlink() and os.readlink(tmp_path / "link") == str(tmp_path / "real")
    assert len(json.loads((tmp_path / "real" / "config.json").read_text())["id2label"]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "m.npz", "real"]


def test_a_regular_file_at_out_is_refused_even_with_overwrite(tmp_path, npz, capsys):
    (tmp_path / "notes.txt").write_text("keep me")
    assert cli("convert", "--npz", npz, "--out", tmp_path / "notes.txt", "--overwrite") == 2
    assert "is a file, not a repo directory" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_an_unwritable_or_full_destination_is_refused_before_any_work(tmp_path, npz, monkeypatch, reads):
    (tmp_path / "file").write_text("")
    with pytest.raises(Exception, match=f"{tmp_path / 'file' / 'sub'}: cannot create the output folder .Not a directory"):
        convert(npz, tmp_path / "file" / "sub" / "repo")
    monkeypatch.setattr(publish_module.shutil, "disk_usage", lambda path: type("U", (), {"free": 1000})())
    with pytest.raises(Exception, match=f"{tmp_path}: 0 MiB free, the repo needs about"):
        convert(npz, tmp_path / "repo")
    assert reads == [] and not (tmp_path / "repo").exists()


def test_a_converted_repo_respects_the_umask(tmp_path, npz):
    previous = os.umask(0o022)
    try:
        convert(npz, tmp_path / "repo", verify_outputs=False)
    finally:
        os.umask(previous)
    assert (tmp_path / "repo").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "repo" / "model.safetensors").stat().st_mode & 0o777 == 0o644


# -- downloads -----------------------------------------------------------------------------------------------------


class _Misbehaving(http.server.BaseHTTPRequestHandler):
    mode = "stall"
    length = 412_000_000  # a plausible size for the checkpoint asked for: only the pace is wrong

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        if self.mode == "stall":  # accept, never answer
            time.sleep(30)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(self.length))
        self.end_headers()
        try:
            for _ in range(600):  # trickle: a byte every 50 ms
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:  # the client gave up
            pass


@pytest.fixture
def misbehaving_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.mark.parametrize("mode", ["stall", "trickle"])
def test_a_stalling_or_trickling_server_fails_within_the_limits(tmp_path, misbehaving_server, mode):
    _Misbehaving.mode = mode
    checkpoint = get_checkpoint("imagenet21k/ViT-B_16")
    start = time.perf_counter()
    with pytest.raises(DownloadError) as error:
        download_checkpoint(checkpoint, base_url=f"http://127.0.0.1:{misbehaving_server.server_port}",
                            cache_dir=tmp_path, progress=False, retries=1, backoff=0.01, timeout=1.0,
                            min_speed=1024, deadline=6.0)
    assert time.perf_counter() - start < 12
    assert any(text in str(error.value) for text in ("no answer within 1 s", "below the minimum", "deadline"))


def test_two_downloads_of_one_checkpoint_take_turns(tmp_path, monkeypatch):
    """The second process waits for the first instead of writing into the same .partial file."""
    import fcntl

    checkpoint = get_checkpoint("imagenet21k/ViT-B_16")
    final = tmp_path / checkpoint.path
    final.parent.mkdir(parents=True)
    lock = open(final.with_name(final.name + ".lock"), "a+b")
    fcntl.flock(lock, fcntl.LOCK_EX)
    monkeypatch.setattr(checkpoint.__class__, "check_size", lambda self, size: True)

    def finish_then_release():
        time.sleep(1.0)
        final.write_bytes(b"PK" + bytes(100))  # the "other process" completes the file
        fcntl.flock(lock, fcntl.LOCK_UN)

    threading.Thread(target=finish_then_release).start()
    start = time.perf_counter()
    path = download_checkpoint(checkpoint, base_url="http://127.0.0.1:9", cache_dir=tmp_path, progress=False)
    assert path == final and time.perf_counter() - start >= 0.9
    lock.close()


# -- images --------------------------------------------------------------------------------------------------------


def test_max_pixels_can_raise_the_limit_above_pils_own(tmp_path):
    from PIL import Image

    from hf_vit_port.images import BadImageError, open_image

    path = tmp_path / "wide.png"
    Image.new("L", (20_000, 10_000)).save(path)  # 2e8 pixels: over twice PIL's 89,478,485
    with pytest.raises(BadImageError, match="exceeds the limit"):
        open_image(path)
    assert open_image(path, max_pixels=300_000_000).size == (20_000, 10_000)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # PIL's global limit is left as it was
