"""Running `finetune` and `train-from-scratch`: the training library called with the parsed options."""

from __future__ import annotations

import json
import logging

import transformers

from ..hub.push import check_repo_id
from ..options import DataOptions, FinetuneOptions, ScratchOptions, TrainingOptions
from ..training.arguments import check_training_options
from ..training.finetune import is_main_process, prepare_finetuning
from ..training.scratch import prepare_from_scratch
from ..training.trainer import TrainingRun, run_training


def finetune(finetuning: FinetuneOptions, data: DataOptions, options: TrainingOptions) -> int:
    _check_early(options)
    return _train(prepare_finetuning(finetuning, data, options))


def train_from_scratch(recipe: ScratchOptions, data: DataOptions, options: TrainingOptions) -> int:
    _check_early(options)
    return _train(prepare_from_scratch(recipe, data, options))


def _check_early(options: TrainingOptions) -> None:
    """A malformed --push-to-hub id or --training-arg is refused before loading and training, not after. The other
    ranks of a distributed launch report errors only: loading reports and warnings come once, from rank 0."""
    if not is_main_process():
        logging.getLogger("hf_vit_port").setLevel(logging.ERROR)
        transformers.logging.set_verbosity_error()
    check_training_options(options)
    if options.push_to_hub:
        check_repo_id(options.push_to_hub)


def _train(run: TrainingRun) -> int:
    metrics = run_training(run)
    if run.trainer.is_world_process_zero():
        shown = {k: v for k, v in metrics.items()
                 if k.endswith(("accuracy", "_loss")) and not k.startswith("train_subset")}
        print(json.dumps(shown, indent=2))
        if run.options.eval_only:
            print(f"Saved the scores (*_results.json) to {run.options.output_dir}")
        else:
            print(f"Saved the model, processor, scores (*_results.json), training_curves.png and README.md to "
                  f"{run.options.output_dir}")
    return 0
