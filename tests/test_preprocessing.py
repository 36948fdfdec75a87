"""ViTPortImageProcessor against the original evaluation preprocessing, as TensorFlow computed it on real photos
(tests/fixtures/preprocessing/: the photos ship inside the matplotlib and scikit-image wheels), and its place in
every repo: Auto classes, pipelines, trust_remote_code without the package, older repos, conversions."""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from npz_factory import make_in21k_params, make_official_params, write_npz
from PIL import Image
from transformers import AutoImageProcessor, pipeline

from hf_vit_port import ViTPortConfig, ViTPortForImageClassification, ViTPortModel
from hf_vit_port.image_processing_vit_port import ViTPortImageProcessor
from hf_vit_port.images import open_image, to_rgb
from hf_vit_port.processing import image_processor_for, make_image_processor
from hf_vit_port.stock import stock_image_processor
from hf_vit_port_tools.conversion.convert import convert

FIXTURES = Path(__file__).parent / "fixtures" / "preprocessing"
REFERENCE = dict(np.load(FIXTURES / "tf_reference.npz"))
PHOTOS = [str(name) for name in REFERENCE["photos"]]
SIZES = [int(size) for size in REFERENCE["sizes"]]


def photo_path(name: str) -> Path:
    """The sample file inside its installed package (found without importing the package)."""
    package, inside = REFERENCE[f"{name}.source"].item().split(":", 1)
    return Path(importlib.util.find_spec(package).submodule_search_locations[0]) / inside


def photo(name: str) -> Image.Image:
    path = photo_path(name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == REFERENCE[f"{name}.file_sha256"].item(), (
        f"{path} is not the file the TensorFlow reference was made from")
    return Image.open(path)


def hwc(pixels: torch.Tensor) -> np.ndarray:
    return pixels.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("name", PHOTOS)
def test_decoded_pixels_are_those_tensorflow_resized(name):
    # Tells a changed decoder or sample file apart from a wrong processor.
    rgb = np.ascontiguousarray(np.asarray(to_rgb(photo(name))))
    assert hashlib.sha256(rgb.tobytes()).hexdigest() == REFERENCE[f"{name}.rgb_sha256"].item()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", PHOTOS)
def test_processor_equals_tensorflow_on_real_photos(name, size):
    image = photo(name)
    assert image.mode == REFERENCE[f"{name}.mode"].item()
    pixels = ViTPortImageProcessor(size=size)(image, return_tensors="pt").pixel_values
    assert pixels.shape == (1, 3, size, size) and pixels.dtype == torch.float32
    rows, cols = REFERENCE[f"{name}.{size}.rows"], REFERENCE[f"{name}.{size}.cols"]
    np.testing.assert_allclose(hwc(pixels[0])[rows, cols], REFERENCE[f"{name}.{size}.values"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["grace_hopper", "logo2"])
def test_whole_output_equals_tensorflow(name):
    pixels = make_image_processor(ViTPortConfig(image_size=224))(photo(name), return_tensors="np").pixel_values
    np.testing.assert_allclose(pixels[0].transpose(1, 2, 0), REFERENCE[f"{name}.224.full"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", [(600, 512, 224, 224), (7, 5, 224, 3), (224, 224, 100, 300), (1, 1, 4, 4)])
def test_default_resize_agrees_with_torch_bilinear_at_any_geometry(shape):
    # Shrinking, growing, one pixel, non-square: the gather-and-lerp resize is the same bilinear as torch's.
    height, width, out_height, out_width = shape
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    ours = ViTPortImageProcessor(size=(out_height, out_width), do_rescale=False, do_normalize=False)
    expected = torch.nn.functional.interpolate(torch.from_numpy(pixels).permute(2, 0, 1)[None].float(),
                                               size=(out_height, out_width), mode="bilinear", align_corners=False)
    torch.testing.assert_close(ours(pixels, return_tensors="pt").pixel_values, expected, rtol=0, atol=5e-3)


def test_transformers_vit_processor_is_measurably_not_the_original():
    # Why the processor exists: PIL's antialiased bilinear filter moves edges far beyond float error.
    image = photo("grace_hopper")
    theirs = stock_image_processor(ViTPortConfig(image_size=224))(image, return_tensors="np").pixel_values[0]
    difference = np.abs(theirs.transpose(1, 2, 0) - REFERENCE["grace_hopper.224.full"])
    assert difference.max() > 0.3 and difference.mean() > 0.005


def test_antialias_option_comes_close_to_pil():
    image = photo("grace_hopper")
    pil_like = ViTPortImageProcessor(antialias=True)(image, return_tensors="np").pixel_values[0]
    theirs = stock_image_processor(ViTPortConfig(image_size=224))(image, return_tensors="np").pixel_values[0]
    assert np.abs(pil_like - theirs).mean() < 0.005


def grey_images() -> dict[str, Image.Image]:
    """One image per PIL mode a photo collection holds, all mid-grey, half of the RGBA one transparent."""
    rgba = np.full((30, 40, 4), 128, np.uint8)
    rgba[:, :, 3] = 255
    rgba[:, :20, 3] = 0
    palette = Image.new("RGB", (40, 30), (128, 128, 128)).convert("P", palette=Image.Palette.ADAPTIVE)
    transparent_palette = palette.copy()
    transparent_palette.info["transparency"] = 0
    return {
        "L": Image.new("L", (40, 30), 128),
        "LA": Image.new("LA", (40, 30), (128, 255)),
        "P": palette,
        "P+transparency": transparent_palette,
        "RGBA": Image.fromarray(rgba, "RGBA"),
        "CMYK": Image.new("CMYK", (40, 30), (0, 0, 0, 127)),
        "I;16": Image.fromarray(np.full((30, 40), 128 * 257, np.uint16)),
        "1": Image.new("1", (40, 30), 1),
    }


@pytest.mark.parametrize("mode", list(grey_images()))
def test_every_mode_becomes_rgb(mode):
    pixels = ViTPortImageProcessor(size=16)(grey_images()[mode], return_tensors="pt").pixel_values
    assert pixels.shape == (1, 3, 16, 16) and torch.isfinite(pixels).all()
    if mode == "RGBA":  # the transparent half is white, the opaque half grey
        assert pixels[0, :, :, :6].min() == 1.0 and pixels[0, :, :, -6:].abs().max() < 0.01
    elif mode == "P+transparency":
        assert pixels.min() == 1.0  # every pixel has the transparent palette index
    elif mode == "1":
        assert pixels.min() == 1.0
    else:  # 16-bit scaled to 8-bit, not clipped to white; CMYK and palette converted
        assert pixels.abs().max() < 0.02


def test_arrays_and_tensors_equal_pil_images():
    image = photo("chelsea")
    processor = ViTPortImageProcessor()
    expected = processor(image, return_tensors="pt").pixel_values
    array = np.asarray(image)
    for variant in (array, array.transpose(2, 0, 1), torch.from_numpy(array).permute(2, 0, 1),
                    torch.from_numpy(array).float()):
        torch.testing.assert_close(processor(variant, return_tensors="pt").pixel_values, expected, rtol=0, atol=0)
    grey = photo("cell")
    torch.testing.assert_close(processor(np.asarray(grey), return_tensors="pt").pixel_values,
                               processor(grey, return_tensors="pt").pixel_values, rtol=0, atol=0)
    sixteen = (np.asarray(grey).astype(np.uint16) * 257)
    torch.testing.assert_close(processor(sixteen, return_tensors="pt").pixel_values,
                               processor(grey, return_tensors="pt").pixel_values, rtol=0, atol=0)
    rgba = np.asarray(photo("logo2").convert("RGBA"))
    torch.testing.assert_close(processor(rgba, return_tensors="pt").pixel_values,
                               processor(photo("logo2"), return_tensors="pt").pixel_values, rtol=0, atol=0)


def test_a_batch_of_mixed_sizes_equals_one_image_at_a_time():
    images = [photo(name) for name in PHOTOS] + [photo("grace_hopper")]
    processor = ViTPortImageProcessor(size=(32, 48))
    batch = processor(images, return_tensors="pt").pixel_values
    assert batch.shape == (len(images), 3, 32, 48)
    for index, image in enumerate(images):
        torch.testing.assert_close(batch[index:index + 1], processor(image, return_tensors="pt").pixel_values,
                                   rtol=0, atol=0)
    listed = processor(images[:2]).pixel_values
    assert isinstance(listed, list) and listed[0].shape == (3, 32, 48)


def test_settings_are_checked_and_named():
    with pytest.raises(ValueError, match="resample"):
        ViTPortImageProcessor(resample="lanczos")
    with pytest.raises(ValueError, match="antialias"):
        ViTPortImageProcessor(resample="nearest", antialias=True)(photo("chelsea"))
    with pytest.raises(TypeError, match="crop_size"):
        ViTPortImageProcessor()(photo("chelsea"), crop_size=10)
    assert ViTPortImageProcessor(resample=3).resample == "bicubic"  # PIL's number for it, as ViTImageProcessor saves


# --- the processor in repos, pipelines and processes without the package ---------------------------------------


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A tiny classifier and a tiny feature extractor at 224 px, converted from synthetic official files."""
    root = tmp_path_factory.mktemp("converted")
    classifier = write_npz(root / "classifier.npz", make_official_params(image=224, patch=16, num_classes=10))
    features = write_npz(root / "features.npz", make_in21k_params(image=224, patch=16))
    convert(classifier, root / "classifier")
    convert(features, root / "features")
    return root


def reference_logits(directory: Path, name: str = "grace_hopper") -> torch.Tensor:
    model = ViTPortForImageClassification.from_pretrained(directory).eval()
    with torch.no_grad():
        return model(torch.from_numpy(REFERENCE[f"{name}.224.full"]).permute(2, 0, 1)[None]).logits[0]


REGISTERED = ("from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING\n"
              "print(IMAGE_PROCESSOR_MAPPING[hf_vit_port.ViTPortConfig]['pil'].__name__)\n")


@pytest.mark.parametrize("script", [
    # `import hf_vit_port` stays light: the processor is registered when transformers imports AutoImageProcessor.
    "import sys, hf_vit_port\nprint('transformers.image_processing_utils' in sys.modules)\n"
    "from transformers import AutoImageProcessor\n" + REGISTERED,
    "from transformers import AutoImageProcessor\nimport hf_vit_port\nprint(False)\n" + REGISTERED,
], ids=["package first", "transformers first"])
def test_registered_with_auto_image_processor_whichever_is_imported_first(script):
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "ViTPortImageProcessor"]


def test_converted_repo_carries_the_processor_and_its_code(converted):
    directory = converted / "classifier"
    assert type(AutoImageProcessor.from_pretrained(directory)) is ViTPortImageProcessor
    saved = json.loads((directory / "preprocessor_config.json").read_text())
    assert saved["auto_map"] == {"AutoImageProcessor": "image_processing_vit_port.ViTPortImageProcessor"}
    assert (directory / "image_processing_vit_port.py").is_file() and (directory / "images.py").is_file()


def test_conversion_writes_what_save_pretrained_writes(converted, tmp_path):
    # The conversion writes preprocessor_config.json from a plain dict (no image-processing stack imported).
    make_image_processor(ViTPortConfig(image_size=224)).save_pretrained(tmp_path)
    written = (converted / "classifier" / "preprocessor_config.json").read_text()
    assert written == (tmp_path / "preprocessor_config.json").read_text()
    for name in ("image_processing_vit_port.py", "images.py"):
        assert (tmp_path / name).read_bytes() == (converted / "classifier" / name).read_bytes()


def test_unverified_conversion_imports_no_image_processing_stack(tmp_path):
    source = write_npz(tmp_path / "ViT-T.npz", make_official_params())
    script = (f"import sys\nfrom hf_vit_port_tools.conversion.convert import convert\n"
              f"convert({str(source)!r}, {str(tmp_path / 'repo')!r}, verify_outputs=False)\n"
              "print('transformers.image_processing_utils' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False"]
    assert json.loads((tmp_path / "repo" / "preprocessor_config.json").read_text())["size"] == {"height": 16,
                                                                                               "width": 16}


def test_classification_pipeline_gives_the_model_on_the_original_input(converted):
    directory = converted / "classifier"
    expected = reference_logits(directory)
    classify = pipeline("image-classification", model=str(directory))
    assert type(classify.image_processor) is ViTPortImageProcessor
    path = str(photo_path("grace_hopper"))
    scores = {p["label"]: p["score"] for p in classify(path, top_k=10)}
    logits = {p["label"]: p["score"] for p in classify(path, top_k=10, function_to_apply="none")}
    labels = ViTPortConfig.from_pretrained(directory).id2label
    for index, probability in enumerate(expected.softmax(-1).tolist()):
        assert scores[labels[index]] == pytest.approx(probability, abs=1e-4)
        assert logits[labels[index]] == pytest.approx(expected[index].item(), abs=1e-4)


def test_the_test_can_fail_pil_resizing_moves_the_logits(converted):
    directory = converted / "classifier"
    model = ViTPortForImageClassification.from_pretrained(directory).eval()
    pixels = stock_image_processor(model.config)(photo("grace_hopper"), return_tensors="pt").pixel_values
    with torch.no_grad():
        assert (model(pixels).logits[0] - reference_logits(directory)).abs().max() > 1e-3


def test_feature_extraction_pipeline_gives_the_model_on_the_original_input(converted):
    directory = converted / "features"
    model = ViTPortModel.from_pretrained(directory).eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(REFERENCE["grace_hopper.224.full"]).permute(2, 0, 1)[None]).pooler_output
    extract = pipeline("image-feature-extraction", model=str(directory), pool=True)
    features = torch.tensor(extract(str(photo_path("grace_hopper"))))
    torch.testing.assert_close(features.reshape(expected.shape), expected, rtol=0, atol=1e-4)


def test_trust_remote_code_in_a_process_that_cannot_import_the_package(converted, tmp_path):
    directory, out = converted / "classifier", tmp_path / "out.npz"
    script = textwrap.dedent(
        f"""
        import sys

        class Blocked:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("hf_vit_port", "hf_vit_port_tools"):
                    raise ImportError("blocked: " + name)

        sys.meta_path.insert(0, Blocked())
        import numpy as np, torch
        from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

        processor = AutoImageProcessor.from_pretrained({str(directory)!r}, trust_remote_code=True)
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        model = AutoModelForImageClassification.from_pretrained({str(directory)!r}, trust_remote_code=True)
        classify = pipeline("image-classification", model={str(directory)!r}, trust_remote_code=True)
        path = {str(photo_path("grace_hopper"))!r}
        from PIL import Image
        pixels = processor(Image.open(path), return_tensors="pt").pixel_values
        with torch.no_grad():
            logits = model(pixels).logits[0]
        scores = classify(path, top_k=10, function_to_apply="none")
        by_label = {{p["label"]: p["score"] for p in scores}}
        pipeline_logits = [by_label[model.config.id2label[i]] for i in range(10)]
        np.savez({str(out)!r}, pixels=pixels.numpy(), logits=logits.numpy(), pipeline=np.array(pipeline_logits))
        print(type(processor).__name__, [m for m in sys.modules if m.startswith("hf_vit_port")])
        """
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["ViTPortImageProcessor", "[]"]
    got = np.load(out)
    np.testing.assert_allclose(got["pixels"][0].transpose(1, 2, 0), REFERENCE["grace_hopper.224.full"], atol=1e-5)
    expected = reference_logits(directory).numpy()
    np.testing.assert_allclose(got["logits"], expected, atol=1e-4)
    np.testing.assert_allclose(got["pipeline"], expected, atol=1e-4)


def test_repos_with_transformers_vit_processor_still_load(converted, tmp_path):
    # A repo converted before ViTPortImageProcessor: ViTImageProcessor's config, no processor code.
    old = tmp_path / "old"
    convert(converted / "classifier.npz", old)
    for name in ("preprocessor_config.json", "image_processing_vit_port.py", "images.py"):
        (old / name).unlink()
    config = ViTPortConfig.from_pretrained(old)
    stock_image_processor(config).save_pretrained(old)
    assert type(AutoImageProcessor.from_pretrained(old)).__name__.startswith("ViTImageProcessor")
    assert len(pipeline("image-classification", model=str(old))(photo("chelsea"), top_k=3)) == 3
    # The command line gives such repos the faithful processor.
    assert type(image_processor_for(old, config)) is ViTPortImageProcessor


def test_saved_processor_carries_its_code(tmp_path):
    # Trained repos: the Trainer saves the processor with save_pretrained.
    processor = make_image_processor(ViTPortConfig(image_size=32))
    processor.image_mean, processor.image_std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    processor.save_pretrained(tmp_path)
    again = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(again) is ViTPortImageProcessor and again.image_mean == [0.4, 0.5, 0.6]
    assert {"image_processing_vit_port.py", "images.py"} <= {p.name for p in tmp_path.iterdir()}
    image = photo("chelsea")
    scaled = again(image, do_normalize=False, return_tensors="pt").pixel_values  # resized, times 1/255
    mean, std = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    torch.testing.assert_close(again(image, return_tensors="pt").pixel_values, (scaled - mean) / std)


def test_open_image_is_what_the_processor_takes_from_a_path():
    processor = ViTPortImageProcessor()
    path = photo_path("logo2")
    torch.testing.assert_close(processor(str(path), return_tensors="pt").pixel_values,
                               processor(open_image(path), return_tensors="pt").pixel_values, rtol=0, atol=0)


# --- TensorFlow's default JPEG decode, opt-in ------------------------------------------------------------------


def test_tf_default_jpeg_decoder_is_tensorflows_decode_bit_for_bit():
    path = photo_path("grace_hopper")
    pixels = np.asarray(open_image(path, jpeg_decoder="tf-default"))
    digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
    assert digest == REFERENCE["grace_hopper.tf_default_decode.rgb_sha256"].item()
    rows, cols = REFERENCE["grace_hopper.tf_default_decode.rows"], REFERENCE["grace_hopper.tf_default_decode.cols"]
    np.testing.assert_array_equal(pixels[rows, cols], REFERENCE["grace_hopper.tf_default_decode.values"])
    accurate = np.asarray(open_image(path)).astype(int)
    assert np.abs(accurate - pixels).max() > 0  # the default (PIL's accurate DCT) is another decode
    with pytest.raises(ValueError, match="tf-default"):
        open_image(path, jpeg_decoder="fast")


def test_tf_default_jpeg_decoder_keeps_the_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: shown turned 90 degrees
    path = tmp_path / "rotated.jpg"
    photo("chelsea").save(path, exif=exif.tobytes(), quality=90)
    accurate, fast = open_image(path), open_image(path, jpeg_decoder="tf-default")
    assert accurate.size == fast.size == (300, 451)
    assert np.abs(np.asarray(accurate).astype(int) - np.asarray(fast)).mean() < 3


def test_predict_command_with_the_tf_default_decoder(converted, capsys):
    from test_training import cli

    directory, path = converted / "classifier", photo_path("grace_hopper")
    model = ViTPortForImageClassification.from_pretrained(directory).eval()
    processor = make_image_processor(model.config)
    with torch.no_grad():
        best, accurate = (model(processor(open_image(path, jpeg_decoder=decoder), return_tensors="pt").pixel_values)
                          .logits.softmax(-1).max().item() for decoder in ("tf-default", "pil"))
    assert abs(best - accurate) > 2e-4  # the printed score tells the decoders apart
    assert cli("predict", path, "--model", directory, "--top-k", "1", "--jpeg-decoder", "tf-default") == 0
    printed = capsys.readouterr().out.splitlines()
    assert float(printed[1].split()[0]) == pytest.approx(best, abs=1e-4)
