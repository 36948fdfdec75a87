"""The commands as a new user meets them (issue 16): head-less models, feature extraction and `embed`, one-line errors
before anything loads, quiet output, `demo --out` / `synthetic`, `list`, model cards, attention pictures and 16-bit
PNGs. Everything goes through the real command (`main`) or `pipeline`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from test_training import cli, make_colour_folder, save_tiny_repo

import hf_vit_port  # noqa: F401  (registers vit_port with the pipelines)
from hf_vit_port import ViTPortModel
from hf_vit_port.images import open_image
from hf_vit_port.processing import make_image_processor

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def in21k_repo(tmp_path_factory) -> Path:
    """The README's first conversion, offline: a 2020 imagenet21k-layout file (all-zero head) converted by the CLI."""
    work = tmp_path_factory.mktemp("in21k")
    npz = work / "ViT-Ti_16.npz"
    assert cli("synthetic", npz, "--release", "imagenet21k", "--variant", "Ti/16", "--image-size", "32") == 0
    assert cli("convert", "--npz", npz, "--out", work / "vit-ti16-in21k") == 0
    return work / "vit-ti16-in21k"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A few images of different sizes and modes, one in a sub-folder."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for index in range(5):
        pixels = rng.integers(0, 255, (30 + 7 * index, 41, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    (folder / "sub").mkdir()
    Image.fromarray(rng.integers(0, 255, (50, 20), dtype=np.uint8), mode="L").save(folder / "sub" / "gray.jpg")
    return folder


def pooled(repo: Path, paths: list[str]) -> np.ndarray:
    """The model's own pooled output (pre-logits) for `paths`, computed directly."""
    model = ViTPortModel.from_pretrained(repo).eval()
    processor = make_image_processor(model.config)
    pixels = processor(images=[open_image(path) for path in paths], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        return model(pixel_values=pixels).pooler_output.numpy()


# -- head-less models ----------------------------------------------------------------------------------------------


def test_a_zero_head_file_converts_to_a_feature_extractor_whose_pipeline_says_so(in21k_repo, photos):
    from transformers import pipeline

    assert not json.loads((in21k_repo / "config.json").read_text()).get("id2label")
    image = open_image(photos / "0.png")
    with pytest.raises(ValueError, match="no classification head.*image-feature-extraction"):
        pipeline("image-classification", model=str(in21k_repo))(image)
    features = pipeline("image-feature-extraction", model=str(in21k_repo), pool=True)(image)
    expected = pooled(in21k_repo, [str(photos / "0.png")])
    assert np.asarray(features).shape == expected.shape == (1, 192)
    np.testing.assert_allclose(np.asarray(features), expected, atol=1e-5)
    tokens = pipeline("image-feature-extraction", model=str(in21k_repo))(image)
    assert np.asarray(tokens).shape == (1, 1 + 2 * 2, 192)  # every token: CLS and the 2 x 2 patches


def test_predict_on_a_headless_model_points_to_embed(in21k_repo, photos, capsys):
    assert cli("predict", photos, "--model", in21k_repo) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no classification head" in error and "hf-vit-port embed" in error


def test_plot_attention_needs_no_head(in21k_repo, photos, tmp_path, capsys):
    assert cli("plot-attention", photos / "1.png", "--model", in21k_repo, "--output", tmp_path / "a.png") == 0
    assert Image.open(tmp_path / "a.png").size == (1350, 450)


# -- embed ---------------------------------------------------------------------------------------------------------


def test_embed_writes_each_images_pooled_output_and_cls_token(in21k_repo, photos, tmp_path, capsys):
    output = tmp_path / "features.parquet"
    assert cli("embed", photos, "--model", in21k_repo, "--output", output, "--batch-size", "2", "--cls-token") == 0
    table = pq.read_table(output)
    paths = table.column("path").to_pylist()
    assert paths == [str(p) for p in sorted(photos.rglob("*")) if p.is_file()]
    embeddings = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(embeddings, pooled(in21k_repo, paths), atol=1e-5)
    model = ViTPortModel.from_pretrained(in21k_repo).eval()
    pixels = make_image_processor(model.config)(images=[open_image(p) for p in paths], return_tensors="pt")
    with torch.no_grad():
        cls = model(**pixels).last_hidden_state[:, 0].numpy()
    np.testing.assert_allclose(np.array(table.column("cls").to_pylist()), cls, atol=1e-5)
    assert not output.with_name(output.name + ".parts").exists()
    assert "6 row(s)" in capsys.readouterr().out


def test_embed_resumes_and_skips_what_is_written(in21k_repo, photos, tmp_path, monkeypatch):
    """A part left by an interrupted run is kept as it is (its vector is not recomputed); the rest is embedded."""
    from hf_vit_port_tools.inference.embed import write_part

    output = tmp_path / "features.parquet"
    done = str(photos / "0.png")
    marker = np.full((1, 192), 7.0, dtype=np.float32)
    write_part(output.with_name(output.name + ".parts"), 0, [done], marker, None)
    assert cli("embed", photos, "--model", in21k_repo, "--output", output) == 0
    rows = dict(zip(*(pq.read_table(output).column(c).to_pylist() for c in ("path", "embedding"))))
    assert len(rows) == 6 and rows[done] == marker[0].tolist()
    other = str(photos / "3.png")
    np.testing.assert_allclose(rows[other], pooled(in21k_repo, [other])[0], atol=1e-5)
    # A later run with new images embeds only those; a run with the other --cls-token choice is refused first.
    assert cli("embed", photos, "--model", in21k_repo, "--output", output) == 0
    assert pq.read_table(output).num_rows == 6
    assert cli("embed", photos, "--model", in21k_repo, "--output", output, "--cls-token") == 2


def test_embed_under_torchrun_with_two_processes(in21k_repo, photos, tmp_path):
    output = tmp_path / "distributed.parquet"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "hf_vit_port_tools.cli",
               "embed", str(photos), "--model", str(in21k_repo), "--output", str(output), "--batch-size", "1",
               "--rows-per-part", "1"]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    table = pq.read_table(output)
    paths = table.column("path").to_pylist()
    assert paths == [str(p) for p in sorted(photos.rglob("*")) if p.is_file()]  # one file, in the source's order
    np.testing.assert_allclose(np.array(table.column("embedding").to_pylist()), pooled(in21k_repo, paths), atol=1e-5)
    assert "Embedded 6 image(s)" in result.stdout and result.stdout.count("Embedded") == 1


# -- errors: one line, exit 2, before anything loads ---------------------------------------------------------------


def run_main(*argv: str) -> subprocess.CompletedProcess:
    """`hf-vit-port ARGV` in a fresh interpreter that also reports whether torch got imported."""
    code = ("import sys\nfrom hf_vit_port_tools.cli import main\ncode = main(sys.argv[1:])\n"
            "print('torch imported:', 'torch' in sys.modules)\nsys.exit(code)")
    return subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


@pytest.mark.parametrize("argv, message", [
    (("predict", "nosuch.jpg", "--model", "{photos}"), "IMAGE nosuch.jpg: no such file or folder"),
    (("predict", "{photos}", "--model", "nosuchdir"), "--model nosuchdir: no such directory or file"),
    (("plot-attention", "{photos}/0.png", "--model", "runs/x/checkpoint-999", "--output", "a.png"),
     "--model runs/x/checkpoint-999: no such directory or file"),
    (("plot-patches", "{photos}/0.png", "--patch-size", "15", "--output", "p.png"), "--patch-size 15 does not divide"),
    (("evaluate", "--model", "{photos}", "--dataset", "imagefolder:nowhere"), "--dataset imagefolder:nowhere: no such"),
    (("embed", "{photos}", "--model", "nosuchdir", "--output", "f.parquet"), "--model nosuchdir"),
])
def test_inputs_are_checked_before_torch_is_imported(argv, message, photos, tmp_path):
    result = run_main(*(a.format(photos=photos) for a in argv))
    assert result.returncode == 2 and result.stderr.startswith(f"error: {message}"), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "torch imported: False" in result.stdout


def test_evaluate_on_an_empty_folder_and_an_offline_hub_name(tmp_path, capsys):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    model = save_tiny_repo(tmp_path / "model")
    capsys.readouterr()  # what saving the model printed
    assert cli("evaluate", "--model", model, "--dataset", f"imagefolder:{tmp_path / 'empty'}") == 2
    assert "holds no image files" in capsys.readouterr().err
    assert cli("evaluate", "--model", model, "--dataset", "someone/no-such-dataset") == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and "no-such-dataset" in error


def test_evaluate_lists_unmatched_classes_and_takes_a_label_map(tmp_path, capsys):
    classes = ("red", "green", "blue")
    data = make_colour_folder(tmp_path / "data", classes=classes, per_class=2)
    (data / "blue").rename(data / "azure")  # a folder name the model does not know
    model = save_tiny_repo(tmp_path / "model", id2label=dict(enumerate(classes)))
    capsys.readouterr()  # what saving the model printed
    assert cli("evaluate", "--model", model, "--dataset", f"imagefolder:{data}") == 2
    error = capsys.readouterr().err
    assert "azure" in error and "--label-map" in error and error.count("\n") == 1
    assert cli("evaluate", "--model", model, "--dataset", f"imagefolder:{data}", "--label-map", "azure=blue") == 0
    assert "examples: 6" in capsys.readouterr().out


def test_debug_shows_the_traceback(photos):
    with pytest.raises(ValueError, match="no such directory"):
        cli("--debug", "predict", photos, "--model", "nosuchdir")


# -- output --------------------------------------------------------------------------------------------------------


def test_conversion_is_quiet_and_warns_once(tmp_path, capfd):
    npz = tmp_path / "in21k.npz"
    assert cli("synthetic", npz, "--release", "imagenet21k", "--variant", "Ti/16", "--image-size", "32") == 0
    assert cli("convert", "--npz", npz, "--out", tmp_path / "repo") == 0
    out, err = capfd.readouterr()
    everything = out + err
    assert "Loading weights" not in everything and "Writing" not in everything.replace("Wrote", "")
    assert "\x1b[" not in everything and "LOAD REPORT" not in everything
    assert everything.count("classification head is all zeros") == 1


def test_evaluate_on_a_local_folder_shows_no_download_bars(tmp_path, capfd):
    data = make_colour_folder(tmp_path / "data", classes=("red", "green"), per_class=2)
    model = save_tiny_repo(tmp_path / "model", id2label={0: "green", 1: "red"})
    capfd.readouterr()  # what saving the model printed
    assert cli("evaluate", "--model", model, "--dataset", f"imagefolder:{data}") == 0
    err = capfd.readouterr().err
    assert "Downloading" not in err and "Generating" not in err and "%|" not in err


def test_demo_out_keeps_the_npz_and_the_repo(tmp_path, capsys):
    assert cli("demo", "--image-size", "32", "--out", tmp_path / "demo") == 0
    assert (tmp_path / "demo" / "ViT-Ti_16.npz").is_file()
    assert (tmp_path / "demo" / "vit-ti_16" / "model.safetensors").is_file()
    assert "# vit-ti_16" in (tmp_path / "demo" / "vit-ti_16" / "README.md").read_text()


def test_synthetic_writes_an_official_layout_file(tmp_path, capsys):
    path = tmp_path / "augreg.npz"
    assert cli("synthetic", path, "--release", "augreg", "--variant", "S/16", "--image-size", "32") == 0
    with np.load(path) as arrays:
        assert "Transformer/encoderblock_11/MlpBlock_3/Dense_1/kernel" in arrays.files
        assert arrays["head/kernel"].shape == (384, 21843) and arrays["head/kernel"].any()


def test_list_has_a_header_filters_and_json(capsys):
    assert cli("list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["checkpoint", "release", "model"] and "top-1" in lines[0]
    assert any("imagenet21k+imagenet2012/ViT-B_16-224 " in line and "81.2%" in line for line in lines)
    assert cli("list", "--release", "augreg", "--json") == 0
    entries = json.loads(capsys.readouterr().out)
    assert entries and {entry["collection"] for entry in entries} == {"augreg"}
    assert any(entry["top1"] for entry in entries)
    assert cli("list", "--release", "nope") == 2


def test_cards_of_unknown_files_and_adapted_conversions(tmp_path, capsys):
    npz = tmp_path / "mystery.npz"
    assert cli("synthetic", npz, "--variant", "Ti/16", "--image-size", "32") == 0
    assert cli("convert", "--npz", npz, "--out", tmp_path / "my-vit", "--image-size", "48") == 0
    card = (tmp_path / "my-vit" / "README.md").read_text()
    assert "# my-vit" in card and "license: other" in card
    assert "released by Google under the Apache" not in card and "not one of the official checkpoints" in card
    assert "the file's own size" in card and "image size 32 px -> 48 px" in card
    assert 'pipeline("image-feature-extraction"' in card and "pool=True" in card  # classifiers say it too


def test_attention_picture_has_colorbars_and_the_images_aspect(tmp_path, monkeypatch):
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from hf_vit_port_tools.inference.pictures import plot_attention

    colorbars, extents = [], []
    real_colorbar, real_imshow = Figure.colorbar, Axes.imshow
    monkeypatch.setattr(Figure, "colorbar", lambda self, *a, **k: colorbars.append(k) or real_colorbar(self, *a, **k))
    monkeypatch.setattr(Axes, "imshow", lambda self, x, *a, **k: extents.append(k.get("extent")) or real_imshow(self, x, *a, **k))
    image = Image.new("RGB", (300, 100), (10, 20, 30))
    plot_attention(image, np.random.default_rng(0).random((2, 2)), tmp_path / "a.png")
    assert len(colorbars) == 2
    assert (0, 300, 100, 0) in extents  # the 2 x 2 grid drawn over the image's 3:1 shape


def test_pipeline_on_a_16_bit_png_through_open_image(tmp_path):
    """transformers' own loader turns 16-bit PNGs white; the package's `open_image` (the README's workaround) keeps
    them, so the pipeline sees what an 8-bit copy of the picture gives."""
    from transformers import pipeline

    deep = np.full((32, 32), 0x8000, dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    Image.fromarray(np.full((32, 32), 0x80, dtype=np.uint8)).save(tmp_path / "flat.png")
    assert np.asarray(open_image(tmp_path / "deep.png")).max() == 128
    model = save_tiny_repo(tmp_path / "model", num_labels=0, representation_size=24)
    extractor = pipeline("image-feature-extraction", model=str(model), pool=True)
    np.testing.assert_allclose(extractor(open_image(tmp_path / "deep.png")),
                               extractor(open_image(tmp_path / "flat.png")), atol=1e-6)


# -- finetune: a short loading summary, and a failed push that says where the model is --------------------------


def finetune_argv(tmp_path, *extra: str) -> list:
    data = make_colour_folder(tmp_path / "data", classes=("red", "green"), per_class=4, size=32)
    base = save_tiny_repo(tmp_path / "base")
    return ["finetune", "--model", base, "--dataset", f"imagefolder:{data}", "--output", tmp_path / "run",
            "--max-steps", "1", "--batch-size", "4", "--num-workers", "0", "--train-eval-samples", "0",
            "--no-check-images", *extra]


def test_finetune_prints_a_short_loading_summary_and_all_of_it_with_v(tmp_path, capsys):
    argv = finetune_argv(tmp_path)
    capsys.readouterr()
    assert cli(*argv) == 0
    short = capsys.readouterr().out
    assert "Loaded " in short and "classifier.weight: initialised fresh" in short
    before_logs = short.split("{", 1)[0].splitlines()  # what comes before the Trainer's logs
    loading = [line for line in before_logs if not line.startswith("Training on ")]  # the world-size line
    assert "vit.layers.0.attention" not in short and len(loading) == 3
    assert cli("-v", *argv, "--max-steps", "1") == 0
    assert "vit.layers.0.attention" in capsys.readouterr().out  # the full table


def test_a_failed_finetune_push_is_one_line_naming_the_saved_model(tmp_path, monkeypatch, capsys):
    from hub_server import READ_TOKEN, HubServer, patch_hf_client

    with HubServer(tokens={READ_TOKEN: "read"}) as hub:
        patch_hf_client(monkeypatch, hub.url, token=READ_TOKEN, hf_home=tmp_path / "hf_home")
        argv = finetune_argv(tmp_path, "--push-to-hub", "test-user/tuned")
        capsys.readouterr()
        assert cli(*argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and "Traceback" not in error
    assert f"hf-vit-port push {tmp_path / 'run'} test-user/tuned" in error
    assert (tmp_path / "run" / "model.safetensors").is_file()
