"""Data-parallel training for real: `finetune` under torchrun with two CPU processes (gloo), against one process.

All three runs below see the same 12 examples at each optimiser step (one process with batch 12; two processes with
batch 6 each; one process with batch 6 and two accumulated batches), with the same augmentation draws (they depend
on the example, not on the process that makes the batch). So the logged loss and gradient norm must agree step by
step; before the loss honoured `num_items_in_batch`, the distributed and the accumulated runs logged twice the true
loss.
"""

import json
import os
import subprocess
import sys

import pytest

from test_training import cli, make_colour_folder, save_tiny_repo

TRAIN_EXAMPLES = 36  # 48 images, a quarter held out


def finetune_arguments(base, data, output, batch_size):
    return ["finetune", "--model", str(base), "--dataset", f"imagefolder:{data}", "--output", str(output),
            "--validation-fraction", "0.25", "--epochs", "1", "--batch-size", str(batch_size), "--logging-steps", "1",
            "--num-workers", "0", "--train-eval-samples", "0", "--precision", "fp32", "--learning-rate", "0.01",
            "--warmup", "0", "--seed", "3"]


def logged(output):
    """(per-step training losses, per-step gradient norms, final eval loss, global step) from trainer_state.json."""
    state = json.loads((output / "trainer_state.json").read_text())
    steps = [entry for entry in state["log_history"] if "loss" in entry]
    eval_loss = [entry["eval_loss"] for entry in state["log_history"] if "eval_loss" in entry][0]
    return [e["loss"] for e in steps], [e["grad_norm"] for e in steps], eval_loss, state["global_step"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    data = make_colour_folder(root / "colours", per_class=16)
    base = save_tiny_repo(root / "base")
    # Module-scoped, so set up before conftest's per-test isolation: isolate the Hugging Face home here.
    hub = {"HF_HOME": str(tmp_path_factory.mktemp("hf_home")), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "hf_vit_port_tools.cli", *finetune_arguments(base, data, root / "ddp", 6)]
    torchrun = subprocess.Popen(command, env={**os.environ, **hub, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    try:  # the single-process runs meanwhile, in this process
        with pytest.MonkeyPatch.context() as patch:
            for name, value in hub.items():
                patch.setenv(name, value)
            assert cli(*finetune_arguments(base, data, root / "single", 12)) == 0
            assert cli(*finetune_arguments(base, data, root / "accumulated", 6), "--gradient-accumulation-steps",
                       "2") == 0
    finally:
        printed, _ = torchrun.communicate(timeout=300)
    (root / "torchrun.log").write_text(printed)
    assert torchrun.returncode == 0, printed
    return {"printed": printed, **{name: logged(root / name) for name in ("single", "ddp", "accumulated")}}


def test_torchrun_trains_on_two_processes_with_half_the_steps(runs):
    assert "Training on 2 processes (cpu)." in runs["printed"]
    assert runs["printed"].count('"eval_accuracy"') == 1  # rank 0 alone prints the scores
    assert runs["printed"].count("LOAD REPORT") <= 1  # transformers' loading report, from rank 0 only
    assert "find_unused_parameters=True" not in runs["printed"]
    one_process_steps = TRAIN_EXAMPLES // 6
    assert runs["ddp"][3] == one_process_steps // 2 == runs["single"][3]


@pytest.mark.parametrize("run", ["ddp", "accumulated"])
def test_logged_loss_is_the_single_process_loss(runs, run):
    losses, grad_norms, eval_loss, _ = runs[run]
    single_losses, single_grad_norms, single_eval_loss, _ = runs["single"]
    assert losses == pytest.approx(single_losses, rel=1e-4)
    assert grad_norms == pytest.approx(single_grad_norms, rel=1e-3)
    assert eval_loss == pytest.approx(single_eval_loss, rel=1e-4)


def test_a_launch_that_is_not_distributed_says_so(monkeypatch, capsys, caplog):
    """`accelerate launch --cpu --num_processes 2` without MPI starts one process with MASTER_ADDR set and no
    WORLD_SIZE: the run trains on one process and says so."""
    from types import SimpleNamespace

    from hf_vit_port_tools.training.trainer import announce_processes

    trainer = SimpleNamespace(args=SimpleNamespace(world_size=1, device=SimpleNamespace(type="cpu")),
                              is_world_process_zero=lambda: True)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    announce_processes(trainer)
    assert capsys.readouterr().out == "Training on 1 process (cpu).\n" and "torchrun" not in caplog.text
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    with caplog.at_level("WARNING", logger="hf_vit_port_tools.training.trainer"):
        announce_processes(trainer)
    assert "started this one alone" in caplog.text and "use torchrun" in caplog.text
