"""The corpus of broken inputs: each gets a clear error naming the file and key at fault, and leaves nothing behind."""

import errno
import json
import zipfile

import numpy as np
import pytest
import torch
from conftest import tiny_config
from npz_factory import make_hybrid_params, make_official_params, write_npz

import hf_vit_port_tools.conversion.convert as convert_module
from hf_vit_port_tools.cli import main as conversion_main
from hf_vit_port import ViTPortConfig, ViTPortForImageClassification

BLOCK1 = "Transformer/encoderblock_1/"


def official():
    return make_official_params(num_classes=10)


def with_changes(**changes):
    def build():
        params = official()
        for key, value in changes.items():
            key = key.replace("__", "/")
            if value is None:
                params.pop(key)
            else:
                params[key] = value(params[key]) if callable(value) else value
        return params

    return build


def drop_block(index):
    def build():
        return {k: v for k, v in official().items() if not k.startswith(f"Transformer/encoderblock_{index}/")}

    return build


def write_raw(path, data: bytes):
    path.write_bytes(data)


def bfloat16_bits(array):
    return (array.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).view("V2")


# (name, how to make the file, expected message pattern)
REFUSED = [
    ("not_a_zip", lambda p: write_raw(p, b"this is not a zip archive" * 10), "not a readable .npz"),
    ("zero_bytes", lambda p: write_raw(p, b""), "empty"),
    ("truncated", lambda p: write_raw(p, _npz_bytes(official())[:3000]), "not a readable .npz|damaged"),
    ("corrupted_member", lambda p: write_raw(p, _flip_byte(_npz_bytes(official()))), "damaged|cannot be read"),
    ("single_npy", lambda p: np.save(open(p, "wb"), np.zeros(3, np.float32)), "single .npy array"),
    ("empty_archive", lambda p: zipfile.ZipFile(p, "w").close(), "holds no arrays"),
    ("missing_key", lambda p: write_npz(p, with_changes(**{"Transformer__encoder_norm__bias": None})()),
     "Transformer/encoder_norm/bias"),
    ("missing_embedding", lambda p: write_npz(p, with_changes(embedding__kernel=None)()), "embedding/kernel"),
    ("extra_unknown_key", lambda p: write_npz(p, {**official(), "MAPHead_0/probe": np.zeros((1, 1, 32), np.float32)}),
     "unknown keys MAPHead_0/probe"),
    ("misshaped_mlp", lambda p: write_npz(p, with_changes(**{BLOCK1 + "MlpBlock_3__Dense_0__kernel":
                                                            lambda a: np.zeros((32, 65), np.float32)})()),
     "Dense_0"),
    ("wrong_rank_query", lambda p: write_npz(p, with_changes(**{
        "Transformer__encoderblock_0__MultiHeadDotProductAttention_1__query__kernel":
            lambda a: a.reshape(32, 32)})()), "query/kernel"),
    ("heads_do_not_fit_width", lambda p: write_npz(p, with_changes(**{
        "Transformer__encoderblock_0__MultiHeadDotProductAttention_1__query__kernel":
            lambda a: np.zeros((32, 4, 4), np.float32)})()), "heads"),
    ("integer_dtype", lambda p: write_npz(p, with_changes(**{"Transformer__encoder_norm__scale":
                                                            lambda a: a.astype(np.int32)})()), "dtype int32"),
    ("bool_dtype", lambda p: write_npz(p, with_changes(cls=lambda a: a > 0)()), "dtype bool"),
    ("nan_values", lambda p: write_npz(p, with_changes(**{"head__bias": lambda a: np.where(a > 0, np.nan, a)})()),
     "NaN or infinite"),
    ("inf_values", lambda p: write_npz(p, with_changes(cls=lambda a: a + np.inf)()), "NaN or infinite"),
    ("object_array", lambda p: _write_object_npz(p), "Python objects"),
    ("missing_middle_block", lambda p: write_npz(p, drop_block(0)()), "encoderblock_0"),
    ("hybrid_resnet", lambda p: write_npz(p, make_hybrid_params()), "hybrid ResNet"),
    ("non_square_positions", lambda p: write_npz(p, with_changes(**{
        "Transformer__posembed_input__pos_embedding": lambda a: a[:, :-2]})()), "not a square grid"),
]


def _npz_bytes(params):
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **params)
    return buffer.getvalue()


def _flip_byte(data: bytes) -> bytes:
    position = len(data) // 2
    return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1:]


def _write_object_npz(path):
    params = official()
    params["cls"] = np.array([{"exploit": "pickle"}], dtype=object)
    with open(path, "wb") as handle:
        np.savez(handle, **params)


@pytest.mark.parametrize("name, make, message", REFUSED, ids=[case[0] for case in REFUSED])
def test_bad_npz_is_refused_naming_file_and_key_and_nothing_is_left(tmp_path, capsys, name, make, message):
    path = tmp_path / f"{name}.npz"
    make(path)
    out = tmp_path / "out" / "repo"
    code = conversion_main(["convert", "--npz", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    assert str(path) in err, err
    assert __import__("re").search(message, err), err
    assert not out.exists()
    assert not list((tmp_path / "out").glob(".*")) if (tmp_path / "out").exists() else True


def test_a_directory_is_refused(tmp_path, capsys):
    (tmp_path / "dir.npz").mkdir()
    assert conversion_main(["convert", "--npz", str(tmp_path / "dir.npz"), "--out", str(tmp_path / "r")]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_a_missing_file_is_refused(tmp_path, capsys):
    assert conversion_main(["convert", "--npz", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "r")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "dtype, convert_array",
    [
        ("float16", lambda a: a.astype(np.float16)),
        ("float64", lambda a: a.astype(np.float64)),
        ("bfloat16", bfloat16_bits),
    ],
)
def test_other_float_dtypes_are_converted_with_a_note(tmp_path, dtype, convert_array):
    params = official()
    params["head/kernel"] = convert_array(params["head/kernel"])
    model = ViTPortForImageClassification.from_npz(write_npz(tmp_path / "m.npz", params))
    summary = model._loading_summary
    assert any(dtype in note and "head/kernel" in note for note in summary.notes)
    assert model.classifier.weight.dtype == torch.float32


def test_optimizer_state_beside_opt_target_is_ignored_with_a_note(tmp_path):
    from npz_factory import to_opt_target_layout

    path = write_npz(tmp_path / "m.npz", to_opt_target_layout(official(), include_optimizer_state=True))
    model = ViTPortForImageClassification.from_npz(path)
    assert any("optimizer-state" in note for note in model._loading_summary.notes)


@pytest.mark.parametrize("failure", [KeyboardInterrupt(), OSError(errno.ENOSPC, "No space left on device")])
def test_interrupted_or_disk_full_conversion_leaves_no_partial_repo(tmp_path, monkeypatch, failure):
    path = write_npz(tmp_path / "m.npz", official())
    original = convert_module.converted_model_card

    def fail(**kwargs):
        original(**kwargs)
        raise failure

    monkeypatch.setattr(convert_module, "converted_model_card", fail)
    with pytest.raises(type(failure)):
        convert_module.convert(path, tmp_path / "out" / "repo")
    assert list((tmp_path / "out").iterdir()) == []
    monkeypatch.setattr(convert_module, "converted_model_card", original)
    convert_module.convert(path, tmp_path / "out" / "repo")  # the next run starts clean
    assert (tmp_path / "out" / "repo" / "model.safetensors").exists()


def test_staging_left_by_a_killed_conversion_is_cleaned_by_the_next_run(tmp_path):
    stale = tmp_path / ".repo.partial-abc123"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    convert_module.convert(write_npz(tmp_path / "m.npz", official()), tmp_path / "repo")
    assert not stale.exists() and (tmp_path / "repo" / "config.json").exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(hidden_size=30, num_attention_heads=4), "divisible by num_attention_heads"),
        (dict(image_size=20, patch_size=8), "not divisible by patch_size"),
        (dict(patch_size=-4), "positive"),
        (dict(intermediate_size=0), "positive"),
    ],
)
def test_impossible_configurations_are_refused_at_construction(kwargs, message):
    from huggingface_hub.errors import StrictDataclassError

    with pytest.raises(StrictDataclassError, match=message):
        ViTPortConfig(**kwargs)


def test_unknown_preset_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="Ti/16, S/16, S/32, B/8"):
        ViTPortConfig.from_preset("G/14")


@pytest.fixture
def saved(tmp_path):
    model = ViTPortForImageClassification(tiny_config())
    model.save_pretrained(tmp_path / "repo")
    return tmp_path / "repo", model


def test_pickled_bin_weights_are_not_read_unless_opted_in(saved):
    directory, model = saved
    (directory / "model.safetensors").unlink()
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
    with pytest.raises(OSError, match="use_safetensors=False"):
        ViTPortForImageClassification.from_pretrained(directory)
    assert ViTPortForImageClassification.from_pretrained(directory, use_safetensors=False) is not None


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"garbage", lambda b: b"\xff" * 8 + b[8:]])
def test_corrupted_safetensors_gives_a_clear_error(saved, damage):
    directory, _ = saved
    weights = directory / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(OSError, match="model.safetensors is corrupted") as error:
        ViTPortForImageClassification.from_pretrained(directory)
    assert str(directory) in str(error.value)


def test_newer_config_with_unknown_fields_loads_with_a_warning(saved, caplog):
    directory, _ = saved
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "register_tokens": 4}))
    with caplog.at_level("WARNING"):
        ViTPortForImageClassification.from_pretrained(directory)
    assert "register_tokens" in caplog.text
