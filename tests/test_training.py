"""Fine-tuning and training from scratch, for real, on small image folders made by the tests (no downloads).

The helpers at the top (`make_colour_folder`, `save_tiny_repo`, ...) are also imported by the other training test
files; they are plain functions, not fixtures, so importing them does not duplicate tests.
"""

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hf_vit_port import ViTPortConfig, ViTPortForImageClassification
from hf_vit_port.processing import make_image_processor
from hf_vit_port_tools.options import DataOptions, FinetuneOptions

COLOURS = {
    "red": (200, 40, 40),
    "green": (40, 170, 50),
    "blue": (40, 50, 200),
    "yellow": (210, 200, 40),
    "magenta": (190, 40, 190),
    "cyan": (40, 190, 190),
    "grey": (128, 128, 128),
    "orange": (230, 130, 20),
}
TINY_TRAINING = dict(
    image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2
)


def make_colour_folder(root, classes=("red", "green", "blue"), per_class=60, size=32, noise=40.0, seed=0) -> Path:
    """An image folder of noisy solid colours: root/<class>/<i>.png."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.asarray(COLOURS[name], dtype=np.float64)[None, None] + rng.normal(0, noise, (size, size, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


def write_bad_images(folder) -> dict[str, Path]:
    """Unreadable files with image suffixes: truncated, empty, not an image, a decompression bomb."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "_whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    good.unlink()
    paths = {
        "truncated": folder / "truncated.png",
        "empty": folder / "empty.jpg",
        "text": folder / "notes.png",
        "bomb": folder / "bomb.png",
    }
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["empty"].write_bytes(b"")
    paths["text"].write_text("this is not an image\n")
    paths["bomb"].write_bytes(png_header_only(100_000, 100_000))
    return paths


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` pixels but holds no pixel data: a decompression-bomb stand-in."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def tiny_vit_config(**overrides) -> ViTPortConfig:
    labels = {} if "id2label" in overrides else {"num_labels": 5}
    return ViTPortConfig(**{**TINY_TRAINING, **labels, **overrides})


def save_tiny_repo(directory, *, seed=0, randomise_head=False, **overrides) -> Path:
    """A randomly initialised tiny ViTPort classifier saved with its image processor."""
    torch.manual_seed(seed)
    config = tiny_vit_config(**overrides)
    model = ViTPortForImageClassification(config)
    if randomise_head:
        with torch.no_grad():
            model.classifier.weight.normal_(0, 1.0)
            model.classifier.bias.normal_(0, 0.1)
    model.save_pretrained(directory)
    make_image_processor(config).save_pretrained(directory)
    return Path(directory)


def training_options(output_dir, **overrides):
    from hf_vit_port_tools.options import TrainingOptions

    values = dict(
        output_dir=str(output_dir),
        epochs=3,
        learning_rate=3e-3,
        batch_size=32,
        num_workers=0,
        warmup=0.1,
        logging_steps=2,
        train_eval_samples=48,
        disable_tqdm=True,
    )
    values.update(overrides)
    return TrainingOptions(**values)


def data_options(folder, **overrides) -> "DataOptions":
    return DataOptions(dataset=f"imagefolder:{folder}", **overrides)


def prepare_data(options, **kwargs):
    from hf_vit_port_tools.data import prepare_data

    return prepare_data(options, **kwargs)


def cli(*argv: str) -> int:
    """Run `hf-vit-port ARGV...` in-process, through the real entry point."""
    from hf_vit_port_tools.cli import main

    return main([str(a) for a in argv])


# --------------------------------------------------------------------------------------------------------------
# Metrics and data
# --------------------------------------------------------------------------------------------------------------


def test_local_metric_module_loads_offline_and_counts_top_k():
    import os

    from hf_vit_port_tools.metrics import ACCURACY_TOPK_PATH, load_accuracy_topk

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert Path(ACCURACY_TOPK_PATH).is_file()
    metric = load_accuracy_topk()
    logits = [[0.1, 0.5, 0.2, 0.0], [0.9, 0.05, 0.03, 0.02], [0.1, 0.2, 0.3, 0.4]]
    # Example 0: top-1 wrong (1 vs 2), in the top 2. Example 1: right. Example 2: label 0 ranks last.
    assert metric.compute(predictions=logits, references=[2, 0, 0], k=2) == {
        "accuracy": pytest.approx(1 / 3),
        "top2_accuracy": pytest.approx(2 / 3),
    }
    # More requested classes than exist: every reference is in the "top 5".
    assert metric.compute(predictions=logits, references=[2, 0, 0])["top5_accuracy"] == 1.0


def test_imagefolder_loads_offline_with_labels_columns_and_a_validation_split(tmp_path):
    make_colour_folder(tmp_path / "data", per_class=20)
    data = prepare_data(data_options(tmp_path / "data", validation_fraction=0.25), seed=0)
    assert (data.image_column, data.label_column) == ("image", "label")
    assert data.id2label == {0: "blue", 1: "green", 2: "red"}
    assert len(data.train) == 45 and len(data.validation) == 15 and data.test is None
    # Stratified: every class is in the validation split equally.
    assert sorted(data.validation["label"]) == [0] * 5 + [1] * 5 + [2] * 5
    assert data.skipped == []


def test_unreadable_images_are_dropped_with_a_warning_naming_them(tmp_path):
    make_colour_folder(tmp_path / "data", per_class=10)
    bad = write_bad_images(tmp_path / "data" / "red")
    with pytest.warns(UserWarning, match="Skipping 4 unreadable image") as record:
        data = prepare_data(data_options(tmp_path / "data", validation_fraction=0.2), seed=0)
    message = "\n".join(str(w.message) for w in record)
    for path in bad.values():
        assert path.name in message
    assert "decompression bomb" in message and "empty" in message and "truncated" in message
    assert len(data.skipped) == 4
    assert len(data.train) + len(data.validation) == 30


def test_columns_are_detected_and_string_labels_encoded():
    import datasets

    from hf_vit_port_tools.data import detect_columns, encode_labels

    cifar_like = datasets.Features(
        {
            "img": datasets.Image(),
            "fine_label": datasets.ClassLabel(names=["apple", "bee"]),
            "coarse_label": datasets.ClassLabel(names=["fruit"]),
        }
    )
    assert detect_columns(cifar_like) == ("img", "fine_label")
    assert detect_columns(cifar_like, label_column="coarse_label") == ("img", "coarse_label")
    with pytest.raises(ValueError, match="not in the dataset"):
        detect_columns(cifar_like, image_column="picture")
    strings = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"image": ["a", "b", "c"], "kind": ["dog", "cat", "dog"]}),
            "test": datasets.Dataset.from_dict({"image": ["d"], "kind": ["emu"]}),
        }
    )
    encoded = encode_labels(strings, "kind")
    assert encoded["train"].features["kind"].names == ["cat", "dog", "emu"]
    assert encoded["train"]["kind"] == [1, 0, 1] and encoded["test"]["kind"] == [2]


# --------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------


def test_finetuning_learns_and_writes_a_hub_ready_repo(tmp_path):
    from huggingface_hub import ModelCard
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from hf_vit_port_tools.training import prepare_finetuning, run_training

    data_dir = make_colour_folder(tmp_path / "colours", per_class=60)
    base = save_tiny_repo(tmp_path / "base")
    output = tmp_path / "run"
    run = prepare_finetuning(
        FinetuneOptions(model=str(base)), data_options(data_dir, validation_fraction=0.2),
        training_options(output, epochs=4),
    )
    before = run.trainer.evaluate()["eval_accuracy"]
    assert before == pytest.approx(1 / 3)  # the fresh head is all zeros: every image gets class 0
    metrics = run_training(run)
    assert metrics["eval_accuracy"] > 0.8
    assert run.trainer.state.best_metric == metrics["eval_accuracy"]

    scores = json.loads((output / "eval_results.json").read_text())
    assert scores["eval_accuracy"] == metrics["eval_accuracy"] and "eval_top5_accuracy" in scores
    assert json.loads((output / "all_results.json").read_text())["eval_accuracy"] == metrics["eval_accuracy"]
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"] is not None
    assert any("train_subset_accuracy" in entry for entry in state["log_history"])

    model = AutoModelForImageClassification.from_pretrained(output)
    assert model.config.id2label == {0: "blue", 1: "green", 2: "red"}
    assert AutoImageProcessor.from_pretrained(output).size == {"height": 32, "width": 32}
    card = ModelCard.load(output / "README.md")
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert results[("validation", "accuracy")] == pytest.approx(metrics["eval_accuracy"], abs=1e-4)
    assert ("validation", "top_5_accuracy") in results
    assert card.data.eval_results[0].dataset_name == "colours"
    assert "colours" in card.text and "Fine-tuned from" in card.text

    with Image.open(output / "training_curves.png") as curves:
        from hf_vit_port_tools.training.curves import CURVES_SIZE

        assert curves.format == "PNG" and curves.size == CURVES_SIZE


def test_resume_with_augmentation_is_exact(tmp_path, capsys):
    """Interrupted after step 3 (mid-epoch) and resumed, a run with random crops and flips ends with the same weights
    and losses as the same run made straight through: augmentation draws depend on (seed, epoch, example) only."""
    from safetensors.torch import load_file

    from hf_vit_port_tools.training import prepare_finetuning, run_training

    data = prepare_data(data_options(make_colour_folder(tmp_path / "colours", per_class=12)), seed=0)
    assert len(data.train) == 32  # 4 steps of 8 per epoch: the resumed part crosses into the second epoch
    model = FinetuneOptions(model=str(save_tiny_repo(tmp_path / "base")), crop_scale_min=0.3)
    assert model.augment and model.flip
    unused = DataOptions(dataset="unused")
    common = dict(max_steps=8, eval_strategy="steps", eval_steps=3, logging_steps=1, batch_size=8,
                  train_eval_samples=0, save_total_limit=None)

    def losses(run):
        return {e["step"]: e["loss"] for e in run.trainer.state.log_history if "loss" in e}

    straight = prepare_finetuning(model, unused, training_options(tmp_path / "straight", **common), data=data)
    run_training(straight)
    interrupted = tmp_path / "interrupted"
    shutil.copytree(tmp_path / "straight" / "checkpoint-3", interrupted / "checkpoint-3")
    resumed = prepare_finetuning(model, unused, training_options(interrupted, resume_from_checkpoint="last", **common),
                                 data=data)
    run_training(resumed)
    assert f"Resuming from {interrupted / 'checkpoint-3'}" in capsys.readouterr().out
    assert resumed.trainer.state.global_step == 8
    assert losses(resumed) == losses(straight) and len(losses(straight)) == 8
    final = [load_file(root / "checkpoint-8" / "model.safetensors") for root in (tmp_path / "straight", interrupted)]
    for name, tensor in final[0].items():
        torch.testing.assert_close(final[1][name], tensor, rtol=0, atol=0, msg=name)


def test_augmentation_draws_depend_on_seed_epoch_and_example_only():
    from hf_vit_port_tools.training.augment import AugmentationSeed, finetune_augmentation, keras_augmentation

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    crop = finetune_augmentation((16, 16), crop_scale=(0.1, 0.5))
    seed = AugmentationSeed(7)

    def crops(epoch, indices):
        seed.epoch = epoch
        return [np.asarray(crop(image, seed(index))) for index in indices]

    first = crops(0, range(6))
    torch.manual_seed(123)  # the global generator plays no part
    assert all(np.array_equal(a, b) for a, b in zip(first, crops(0, range(6))))
    assert len({a.tobytes() for a in first}) == 6  # every example its own draw
    assert not any(np.array_equal(a, b) for a, b in zip(first, crops(1, range(6))))  # and every epoch
    pixels = torch.rand(3, 12, 12)
    assert not torch.equal(keras_augmentation(flip=False)(pixels, seed(0)), pixels)
    torch.testing.assert_close(keras_augmentation(rotation=0.0, zoom=0.0, flip=False)(pixels, seed(0)), pixels)


def test_finetune_cli_linear_probe_trains_only_the_head(tmp_path, capsys):
    from transformers import AutoModelForImageClassification

    data_dir = make_colour_folder(tmp_path / "colours", per_class=12)
    base = save_tiny_repo(tmp_path / "base")
    output = tmp_path / "probe"
    assert (
        cli("finetune", "--model", base, "--dataset", f"imagefolder:{data_dir}", "--output", output, "--max-steps",
            "3", "--batch-size", "8", "--learning-rate", "0.01", "--linear-probe", "--num-workers", "0",
            "--eval-strategy", "steps", "--eval-steps", "3", "--train-eval-samples", "0", "--seed", "1",
            "--precision", "fp32", "--label-smoothing", "0.1", "--weight-decay", "0.01", "--warmup", "1",
            "--lr-scheduler", "linear")
        == 0
    )
    printed = capsys.readouterr().out
    assert '"eval_accuracy"' in printed and "initialised fresh" in printed
    tuned = AutoModelForImageClassification.from_pretrained(output)
    original = AutoModelForImageClassification.from_pretrained(base)
    for name, parameter in tuned.vit.named_parameters():
        torch.testing.assert_close(parameter, original.vit.get_parameter(name), rtol=0, atol=0)
    assert torch.count_nonzero(tuned.classifier.weight) > 0
    assert (output / "eval_results.json").is_file() and (output / "README.md").is_file()
    assert "Linear probe" in (output / "README.md").read_text()


def test_training_arguments_follow_the_options(tmp_path):
    from hf_vit_port_tools.options import TrainingOptions
    from hf_vit_port_tools.training.arguments import resolve_precision, training_arguments

    args = training_arguments(
        TrainingOptions(
            output_dir=str(tmp_path), warmup=0.1, gradient_accumulation_steps=4, label_smoothing=0.1, num_workers=0
        )
    )
    assert args.load_best_model_at_end and args.metric_for_best_model == "accuracy" and args.greater_is_better
    assert args.eval_strategy == args.save_strategy == "epoch"
    assert args.gradient_accumulation_steps == 4 and args.label_smoothing_factor == 0.1 and args.warmup_steps == 0.1
    assert args.remove_unused_columns is False and args.ddp_find_unused_parameters is False
    assert not args.torch_compile
    if not torch.cuda.is_available():
        assert resolve_precision("auto") == (False, False)
        with pytest.raises(ValueError, match="CUDA"):
            resolve_precision("fp16")
    assert resolve_precision("bf16") == (True, False)


def test_flags_of_the_training_commands_reach_the_trainer(tmp_path):
    """--metric-for-best-model, --torch-compile, --resume[-from-checkpoint], --training-arg, --no-flip, --eval-only."""
    from hf_vit_port_tools.cli import COMMANDS, build_parser
    from hf_vit_port_tools.cli.flags import build
    from hf_vit_port_tools.options import FinetuneOptions, ScratchOptions, TrainingOptions
    from hf_vit_port_tools.training.arguments import training_arguments

    def parsed(command, options_class, *argv):
        namespace = build_parser().parse_args([command, "--dataset", "d", "--output", str(tmp_path), *argv])
        return build(options_class, namespace, COMMANDS[command].defaults)

    options = parsed("finetune", TrainingOptions, "--model", "m", "--metric-for-best-model", "loss", "--torch-compile",
                     "--training-arg", "dataloader_drop_last=true", "--training-arg", "eval_delay=2", "--resume")
    assert options.extra_arguments == {"dataloader_drop_last": True, "eval_delay": 2}
    assert options.resume_from_checkpoint == "last" and not options.eval_only
    args = training_arguments(options)
    assert args.metric_for_best_model == "loss" and args.greater_is_better is False and args.torch_compile
    assert args.dataloader_drop_last is True and args.eval_delay == 2
    assert parsed("finetune", TrainingOptions, "--model", "m", "--resume-from-checkpoint", "runs/checkpoint-9",
                  "--eval-only").resume_from_checkpoint == "runs/checkpoint-9"
    assert parsed("finetune", TrainingOptions, "--model", "m").extra_arguments == {}
    recipe = parsed("train-from-scratch", ScratchOptions, "--no-flip")
    assert recipe.augment and not recipe.flip
    assert not parsed("finetune", FinetuneOptions, "--model", "m", "--no-augment").augment
    with pytest.raises(ValueError, match="--training-arg: TrainingArguments has no field 'learning_rat'"):
        training_arguments(TrainingOptions(output_dir=str(tmp_path), extra_arguments={"learning_rat": 1.0}))


def test_eval_only_scores_the_model_as_loaded_and_trains_nothing(tmp_path, capsys):
    data_dir = make_colour_folder(tmp_path / "colours", per_class=8)
    base = save_tiny_repo(tmp_path / "base", id2label={0: "blue", 1: "green", 2: "red"}, randomise_head=True)
    output = tmp_path / "scores"
    assert cli("finetune", "--model", base, "--dataset", f"imagefolder:{data_dir}", "--output", output, "--eval-only",
               "--num-workers", "0", "--train-eval-samples", "0") == 0
    printed = capsys.readouterr().out
    assert '"eval_accuracy"' in printed and "Saved the scores" in printed and "Training on" not in printed
    assert (output / "eval_results.json").is_file()
    assert not (output / "model.safetensors").exists() and not list(output.glob("checkpoint-*"))
    assert not (output / "train_results.json").exists()
    code = cli("finetune", "--model", base, "--dataset", f"imagefolder:{data_dir}", "--output", output,
               "--resume-from-checkpoint", tmp_path / "nowhere")
    assert code == 2 and "--resume-from-checkpoint" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------------
# From scratch
# --------------------------------------------------------------------------------------------------------------


def test_keras_recipe_matches_the_example():
    from hf_vit_port_tools.options import ScratchOptions
    from hf_vit_port_tools.training import recipe_data, recipe_options, scratch_config

    recipe = ScratchOptions()
    config = scratch_config(recipe, {i: f"class{i}" for i in range(100)})
    assert (config.image_size, config.patch_size, config.hidden_size) == (72, 6, 64)
    assert (config.num_hidden_layers, config.num_attention_heads, config.intermediate_size) == (8, 4, 128)
    assert config.grid_size == (12, 12) and config.num_labels == 100
    assert config.hidden_dropout_prob == config.attention_probs_dropout_prob == 0.1
    options = recipe_options("out")
    assert (options.learning_rate, options.weight_decay, options.batch_size, options.epochs) == (1e-3, 1e-4, 256, 100)
    assert options.lr_scheduler == "constant" and (recipe.rotation, recipe.zoom) == (0.02, 0.2)
    assert recipe_data().dataset == "uoft-cs/cifar100" and recipe_data().validation_fraction == 0.1


def test_from_scratch_recipe_runs_end_to_end(tmp_path, capsys):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    root = tmp_path / "cifar_like"
    make_colour_folder(root / "train", classes=("red", "green", "blue", "yellow"), per_class=24, seed=1)
    make_colour_folder(root / "test", classes=("red", "green", "blue", "yellow"), per_class=6, seed=2)
    output = tmp_path / "scratch"
    assert (
        cli("train-from-scratch", "--dataset", f"imagefolder:{root}", "--output", output, "--image-size", "32",
            "--patch-size", "8", "--hidden-size", "32", "--num-layers", "2", "--intermediate-size", "64",
            "--epochs", "2", "--batch-size", "32", "--num-workers", "0", "--train-eval-samples", "16")
        == 0
    )
    printed = capsys.readouterr().out
    assert '"test_accuracy"' in printed and '"test_top5_accuracy"' in printed
    test_scores = json.loads((output / "test_results.json").read_text())
    assert 0.0 <= test_scores["test_accuracy"] <= 1.0 and test_scores["test_top5_accuracy"] == 1.0  # 4 classes
    model = AutoModelForImageClassification.from_pretrained(output)
    assert model.config.hidden_act == "gelu" and model.config.hidden_dropout_prob == 0.1
    assert model.config.num_labels == 4 and model.config.image_size == 32
    processor = AutoImageProcessor.from_pretrained(output)
    # Normalised with the training set's own statistics, as the example's adapted Normalization layer.
    assert processor.image_mean != [0.5, 0.5, 0.5] and all(0 < s < 0.5 for s in processor.image_std)
    assert (output / "training_curves.png").is_file()
    assert "trained from scratch" in (output / "README.md").read_text()


# --------------------------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------------------------


def test_augmentations_keep_sizes_and_do_what_they_say():
    from hf_vit_port_tools.training.augment import (
        RandomHorizontalFlip,
        RandomResizedCrop,
        RandomRotationZoom,
        affine_transform,
        finetune_augmentation,
    )

    torch.manual_seed(0)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8))
    for _ in range(5):
        crop = RandomResizedCrop((24, 20))(image)
        assert crop.size == (20, 24)
        left, top, right, bottom = RandomResizedCrop((8, 8)).crop_box(50, 30)
        assert 0 <= left < right <= 50 and 0 <= top < bottom <= 30
    assert finetune_augmentation((16, 16))(image).size == (16, 16)
    flipped = RandomHorizontalFlip(p=1.0)(image)
    assert np.array_equal(np.asarray(flipped), np.asarray(image)[:, ::-1])

    pixels = torch.rand(3, 12, 12)
    torch.testing.assert_close(affine_transform(pixels, angle=0.0, zoom=(1.0, 1.0)), pixels)
    quarter = affine_transform(pixels, angle=np.pi / 2, zoom=(1.0, 1.0))
    assert any(torch.allclose(quarter, torch.rot90(pixels, k, dims=(1, 2)), atol=1e-5) for k in (1, -1))
    zoomed_out = affine_transform(pixels, angle=0.0, zoom=(2.0, 2.0))
    assert zoomed_out.shape == pixels.shape and zoomed_out.min() > 0  # reflected borders, no black fill
    augmented = RandomRotationZoom()(pixels)
    assert augmented.shape == pixels.shape and not torch.equal(augmented, pixels)
