"""The benchmark scripts run and print their result lines (tiny configurations; no timing is asserted)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from npz_factory import make_official_params

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

# script -> (extra arguments, the result lines it must print)
SCRIPTS = {
    "inference": ([], ["inference_fp32_tiny_bs8", "inference_bf16_tiny_bs8", "inference_bf16_logits_error_tiny"]),
    "training": ([], ["train_step_tiny_bs8", "train_peak_rss_checkpointing_tiny_bs8"]),
    "converting": (["--work-dir", "{work}"], ["convert_noverify_tiny", "convert_verified_tiny",
                                               "convert_noverify_peak_rss_tiny"]),
    "loading": (["--work-dir", "{work}"], ["from_pretrained_tiny"]),
    "preprocessing": ([], ["preprocess_224_single", "preprocess_224_bs8"]),
    "gpu": (["--device", "cpu"], ["gpu_inference_bf16_tiny_bs4", "gpu_train_step_bf16_autocast_tiny_bs4"]),
    "startup": ([], ["import_hf_vit_port", "command_help", "command_list", "command_predict_missing_file"]),
}
LINE = re.compile(r"^(?P<name>\w+): .+ ratio (?P<ratio>[-\d.]+|nan|inf)")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """All scripts at once (they are independent), each with --tiny, so the whole module stays well under a minute."""
    work = tmp_path_factory.mktemp("bench")
    processes = {}
    for script, (extra, _) in SCRIPTS.items():
        command = [sys.executable, str(BENCH / f"{script}.py"), "--tiny", "--json-out", str(work / f"{script}.json")]
        command += [part.format(work=work / script) for part in extra]
        processes[script] = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                             text=True)
    outputs = {}
    for script, process in processes.items():
        stdout, _ = process.communicate(timeout=300)
        outputs[script] = (process.returncode, stdout, work / f"{script}.json")
    return outputs


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_script_runs_and_prints_its_result_lines(runs, script):
    returncode, stdout, json_path = runs[script]
    assert returncode == 0, stdout
    printed = {match["name"] for line in stdout.splitlines() if (match := LINE.match(line))}
    for name in SCRIPTS[script][1]:
        assert name in printed, f"{script} did not print {name}:\n{stdout}"
    figures = json.loads(json_path.read_text())["figures"]
    assert {figure["name"] for figure in figures} >= set(SCRIPTS[script][1])


def test_run_all_renders_a_results_table(runs, tmp_path):
    from run_all import render

    from common import machine_info

    results = [json.loads(runs[script][2].read_text()) for script in SCRIPTS]
    text = render("python bench/run_all.py --tiny", machine_info(), results, 1.0, tiny=True)
    assert "| Figure | Ours | Peer | Ratio | Target | Met |" in text
    for _, names in SCRIPTS.values():
        for name in names:
            assert f"`{name}`" in text


def test_synthetic_writer_matches_the_official_layout(tmp_path):
    """The benchmarks' files have the keys and shapes `npz_factory.make_official_params` (the tests' layout) has."""
    from synthetic import ensure_in21k_file

    path = ensure_in21k_file("tiny", tmp_path)
    expected = make_official_params(hidden=32, layers=2, heads=4, mlp=64, patch=4, image=16, num_classes=10,
                                    representation_size=32)
    with np.load(path) as archive:
        assert {key: archive[key].shape for key in archive.files} == {k: v.shape for k, v in expected.items()}
        assert all(archive[key].dtype == np.float32 for key in archive.files)
        assert not archive["head/kernel"].any()
