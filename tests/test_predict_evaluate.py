"""`evaluate` against a hand computation, `predict` on files, folders and bad inputs, and the image conversions."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_training import COLOURS, cli, make_colour_folder, png_header_only, save_tiny_repo, write_bad_images

from hf_vit_port import ViTPortForImageClassification
from hf_vit_port.processing import make_image_processor
from hf_vit_port.images import BadImageError, open_image

CLASSES = tuple(sorted(COLOURS))  # 8 classes, so that top-5 is not trivially 1


@pytest.fixture
def classifier(tmp_path):
    """A tiny model with a random (non-zero) head whose labels are the colour names, in shuffled order."""
    shuffled = [CLASSES[i] for i in (3, 0, 7, 1, 5, 2, 6, 4)]
    return save_tiny_repo(tmp_path / "model", seed=3, randomise_head=True, id2label=dict(enumerate(shuffled)))


def hand_scores(model_dir, data_dir, k=5):
    """Logits of every image computed directly (PIL + processor + model), and the labels in the model's indices."""
    model = ViTPortForImageClassification.from_pretrained(model_dir).eval()
    processor = make_image_processor(model.config)
    logits, labels = [], []
    for name in CLASSES:
        for path in sorted((data_dir / name).glob("*.png")):
            pixels = processor(images=[Image.open(path).convert("RGB")], return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                logits.append(model(pixel_values=pixels).logits[0].numpy())
            labels.append(model.config.label2id[name])
    logits, labels = np.stack(logits), np.array(labels)
    top_k = np.argsort(-logits, axis=-1)[:, :k]
    return logits, labels, top_k


def test_evaluate_equals_a_hand_computation(tmp_path, classifier, capsys):
    data_dir = make_colour_folder(tmp_path / "data", classes=CLASSES, per_class=6, noise=90.0)
    output = tmp_path / "report.json"
    assert (
        cli(
            "evaluate",
            "--model",
            classifier,
            "--dataset",
            f"imagefolder:{data_dir}",
            "--output",
            output,
            "--batch-size",
            "7",
        )
        == 0
    )
    printed = capsys.readouterr().out
    report = json.loads(output.read_text())

    logits, labels, top_k = hand_scores(classifier, data_dir)
    predicted = logits.argmax(axis=-1)
    assert report["num_examples"] == len(labels) == 48
    assert report["accuracy"] == pytest.approx(float((predicted == labels).mean()))
    assert report["top5_accuracy"] == pytest.approx(float((top_k == labels[:, None]).any(axis=1).mean()))
    assert report["top5_accuracy"] > report["accuracy"]  # the comparison says something about top-5 too
    # The report lists the dataset's classes (sorted folder names); the model's indices are shuffled.
    model_label = {i: name for name, i in json.loads((classifier / "config.json").read_text())["label2id"].items()}
    expected = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
    for true, guess in zip(labels, predicted):
        expected[CLASSES.index(model_label[true]), CLASSES.index(model_label[guess])] += 1
    assert report["class_names"] == list(CLASSES)
    assert report["confusion_matrix"] == expected.tolist()
    for row, name in enumerate(CLASSES):
        assert report["per_class_accuracy"][name] == pytest.approx(expected[row, row] / expected[row].sum())
    assert f"accuracy: {report['accuracy']:.4f}" in printed and "top-5 accuracy" in printed
    assert "confusion matrix" in printed and "per-class accuracy" in printed


def test_evaluate_max_samples_draws_across_the_classes(tmp_path, classifier):
    """A folder is listed class by class: the first 16 of 48 files would be two classes of eight."""
    data_dir = make_colour_folder(tmp_path / "data", classes=CLASSES, per_class=6)
    reports = []
    for name in ("a.json", "b.json"):
        argv = ["evaluate", "--model", classifier, "--dataset", f"imagefolder:{data_dir}", "--max-samples", "16"]
        assert cli(*argv, "--output", tmp_path / name) == 0
        reports.append(json.loads((tmp_path / name).read_text()))
    assert reports[0]["num_examples"] == 16 and reports[0]["support"] == {name: 2 for name in CLASSES}
    assert reports[0] == reports[1]  # the same sample every time


def test_compute_report_handles_models_with_more_classes():
    from hf_vit_port_tools.inference.evaluate import compute_report, label_mapping

    mapping = label_mapping(["cat", "dog"], {0: "emu", 1: "dog", 2: "cat"})
    assert mapping.tolist() == [2, 1]
    logits = np.array([[0.0, 0.1, 0.9], [5.0, 0.1, 0.2], [0.0, 0.8, 0.1]])
    report = compute_report(logits, np.array([0, 1, 1]), ["cat", "dog"], mapping, k=2)
    assert report.accuracy == pytest.approx(2 / 3) and report.top_k_accuracy == pytest.approx(2 / 3)
    assert report.confusion_columns == ["cat", "dog", "(other)"]
    assert report.confusion_matrix == [[1, 0, 0], [0, 1, 1]]
    with pytest.raises(ValueError, match="cannot be matched"):
        label_mapping(["a", "b"], {0: "x", 1: "y", 2: "z"})


def test_evaluate_skips_bad_images(tmp_path, classifier, capsys):
    data_dir = make_colour_folder(tmp_path / "data", classes=CLASSES[:3], per_class=4)
    bad = write_bad_images(data_dir / CLASSES[0])
    with pytest.warns(UserWarning, match="unreadable"):
        assert cli("evaluate", "--model", classifier, "--dataset", f"imagefolder:{data_dir}") == 0
    printed = capsys.readouterr().out
    assert "examples: 12" in printed and "skipped 4 unreadable" in printed
    assert all(path.name in printed for path in bad.values())


def test_predict_prints_label_words_for_files_and_folders_and_skips_bad_ones(tmp_path, classifier, capsys):
    data_dir = make_colour_folder(tmp_path / "data", classes=("red", "blue"), per_class=2)
    bad = write_bad_images(tmp_path / "data" / "blue")
    single = data_dir / "red" / "0.png"
    code = cli(
        "predict", single, data_dir / "blue", "https://example.com/cat.jpg", "--model", classifier, "--top-k", "3"
    )
    assert code == 0
    captured = capsys.readouterr()
    assert captured.out.count(":\n") == 3  # the single file and the two good images of the folder
    assert f"{single}:" in captured.out and f"{data_dir / 'blue' / '1.png'}:" in captured.out
    lines = [line.split() for line in captured.out.splitlines() if line.startswith("  ")]
    assert len(lines) == 9 and all(words[1] in CLASSES for words in lines)
    scores = [float(words[0]) for words in lines[:3]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
    for path in bad.values():
        assert f"skipped {path}" in captured.err
    assert "offline mode" in captured.err and "https://example.com/cat.jpg" in captured.err


def test_predict_fails_when_no_image_is_readable(tmp_path, classifier, capsys):
    (tmp_path / "nope.jpg").write_text("not a jpeg")
    assert cli("predict", tmp_path / "nope.jpg", "--model", classifier) == 1
    assert "No image could be classified" in capsys.readouterr().err


def test_generic_labels_of_an_imagenet_head_become_words(tmp_path):
    from hf_vit_port_tools.inference.predict import label_words, predict_images

    assert label_words({0: "LABEL_0", 1: "LABEL_1"}, 2) == ["LABEL_0", "LABEL_1"]
    torch.manual_seed(0)
    model_dir = save_tiny_repo(tmp_path / "in1k", num_labels=1000, randomise_head=True)
    model = ViTPortForImageClassification.from_pretrained(model_dir)
    image = tmp_path / "x.png"
    Image.new("RGB", (40, 20), "orange").save(image)
    predictions, errors = predict_images([image], model, make_image_processor(model.config), top_k=2)
    assert not errors and len(predictions[0].top) == 2
    words = label_words(model.config.id2label, 1000)
    assert words[0] == "tench, Tinca tinca"
    assert all(label in words for label, _ in predictions[0].top)


# --------------------------------------------------------------------------------------------------------------
# Image conversions
# --------------------------------------------------------------------------------------------------------------


def test_unusual_modes_become_rgb(tmp_path):
    samples = {
        "gray.png": Image.new("L", (6, 4), 77),
        "rgba.png": Image.new("RGBA", (6, 4), (255, 0, 0, 0)),  # fully transparent: composited on white
        "bilevel.png": Image.new("1", (6, 4), 1),
        "cmyk.jpg": Image.new("CMYK", (6, 4), (0, 255, 255, 0)),
        "rgb.webp": Image.new("RGB", (6, 4), (10, 20, 30)),
    }
    palette = Image.new("P", (6, 4), 0)
    palette.putpalette([0, 0, 255] + [0] * 765)
    palette.info["transparency"] = 0
    samples["palette.png"] = palette
    for name, image in samples.items():
        image.save(tmp_path / name)
        opened = open_image(tmp_path / name)
        assert opened.mode == "RGB" and opened.size == (6, 4), name
    assert open_image(tmp_path / "gray.png").getpixel((0, 0)) == (77, 77, 77)
    assert open_image(tmp_path / "rgba.png").getpixel((0, 0)) == (255, 255, 255)
    assert open_image(tmp_path / "palette.png").getpixel((0, 0)) == (255, 255, 255)
    red = open_image(tmp_path / "cmyk.jpg").getpixel((0, 0))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as raw:
        assert raw.mode.startswith("I")
    opened = open_image(tmp_path / "deep.png")
    assert [opened.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (20, 10), "white")
    image.paste((255, 0, 0), (0, 0, 5, 10))  # red strip on the left, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    upright = open_image(tmp_path / "rotated.jpg")
    assert upright.size == (10, 20)
    top = upright.getpixel((5, 1))
    assert top[0] > 200 and top[1] < 80  # the stored left strip is on top once rotated


def test_unreadable_files_raise_a_clear_error_naming_them(tmp_path):
    bad = write_bad_images(tmp_path)
    expectations = {"truncated": "truncated", "empty": "empty", "text": "not an image", "bomb": "decompression bomb"}
    for key, reason in expectations.items():
        with pytest.raises(BadImageError, match=reason) as error:
            open_image(bad[key])
        assert str(bad[key]) in str(error.value)
    with pytest.raises(BadImageError, match="no such file"):
        open_image(tmp_path / "missing.png")
    Image.new("RGB", (50, 50)).save(tmp_path / "big.png")
    with pytest.raises(BadImageError, match="exceeds the limit of 1000"):
        open_image(tmp_path / "big.png", max_pixels=1000)
    (tmp_path / "moderate.png").write_bytes(png_header_only(20_000, 20_000))
    with pytest.raises(BadImageError, match="decompression bomb"):
        open_image(tmp_path / "moderate.png")


def test_urls_are_refused_offline():
    with pytest.raises(BadImageError, match="offline mode"):
        open_image("https://example.com/cat.png")
