"""One training run as data: `TrainJob` holds everything `v2l train` needs (the model, its codebook, the data, the
training settings and the run folder), and `run_job` runs it. The CLI's options and a recipe's stage
(`v2l.training.recipe`) both become a `TrainJob`, so there is one way from settings to a trained run.

    job = TrainJob(out="runs/mine", train=TrainConfig(steps=1000), model=get_config("cpu"))
    check_job(job)   # every setting and the run folder, before any model or data loads
    run_job(job)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..backbones.language_model import DEFAULT_LLM
from ..backbones.vision_language import DEFAULT_VL
from ..errors import ConfigError
from ..tokenizer.config import TokenizerConfig
from .config import TrainConfig

# The settings of the training data (not part of TrainConfig: a run can be resumed on another copy of the data).
DATA_FIELDS = ("data", "split", "classes", "per_class")


@dataclass
class TrainJob:
    """A training run: where it goes, what it trains, on what."""

    out: Path
    train: TrainConfig = field(default_factory=TrainConfig)
    model: TokenizerConfig | None = None  # None: from `train.init`'s folder (a fine-tune)
    llm: str = DEFAULT_LLM
    vl: str = DEFAULT_VL
    codebook: str | None = None  # a codebook folder; None: the cached/shipped one for llm/vl
    data: str = "tiny-imagenet-200"  # a data set under the data root, or an image folder
    split: str | None = "train"
    classes: str = "train"  # train (v2l's 160 classes), heldout or all
    per_class: int = 0  # images per class (0 = all)
    data_root: str | None = None
    resume: bool = False
    allow_nonempty: bool = False
    stop_after: int | None = None
    record: dict = field(default_factory=dict)  # written as the run's stage.json (a recipe's stage and settings)

    def data_settings(self) -> dict:
        return {k: getattr(self, k) for k in DATA_FIELDS}


def init_model_config(init: str, given: dict | None = None) -> TokenizerConfig:
    """The model config of an `--init` folder (or `cpu`); a model option given beside it must agree."""
    from ..tokenizer.image_tokenizer import read_checkpoint_config, resolve_checkpoint

    _, cfg, _ = read_checkpoint_config(resolve_checkpoint(init))
    for name, value in (given or {}).items():
        if value is not None and getattr(cfg, name) != value:
            raise ConfigError(
                f"--{name.replace('_', '-')} {value!r}: the model of --init {init} has "
                f"{getattr(cfg, name)!r}; leave the option out (it comes from --init)."
            )
    return cfg


def check_job(job: TrainJob) -> TrainJob:
    """Everything that can be checked without loading a model or data: the perceptual loss's weights, the run
    folder (new, or a run to resume), and the model config of `--init`."""
    from .losses import resolve_perceptual
    from .trainer import check_run_folder

    if job.model is None:
        if not job.train.init:
            raise ConfigError("A training job needs a model config or an init folder.")
        job.model = init_model_config(job.train.init)
    resolve_perceptual(job.train.perceptual)  # `lpips` without its weights fails now, not after the data is embedded
    job.out = check_run_folder(job.out, resume=job.resume, allow_nonempty=job.allow_nonempty)
    return job


def run_job(job: TrainJob, say: Callable[[str], None] = print) -> list[dict]:
    """Load the VL model, the codebook and the data, then train (or resume) the run; returns the logged rows."""
    from ..backbones import load_vl
    from ..codebooks import Codebook, ensure_local_embeddings, find_codebook
    from ..tokenizer import local_codebook_for, local_tokens_for
    from .data import training_data
    from .trainer import run_codebook, train

    check_job(job)
    cfg, model_cfg, out = job.train, job.model, job.out
    llm, vl, key = job.llm, job.vl, None
    if job.resume and job.codebook is None and (run := run_codebook(out)) is not None:
        llm, vl, key = run  # the run's own codebook, even if the default has changed since it started
    if cfg.init:  # the model's own VL model and codebook, checked as `from_pretrained` checks them
        from ..tokenizer import ImageTokenizer

        start = ImageTokenizer.from_pretrained(cfg.init, codebook=job.codebook)
        vl_model, cb = start.vl, start.codebook
    else:
        vl_model = load_vl(vl)
        cb = Codebook.load(job.codebook or find_codebook(llm, vl, vl=vl_model, key=key), vl=vl_model)
        cb = ensure_local_embeddings(cb, vl_model)
    train_set = training_data(
        vl_model,
        cb,
        model_cfg.resolution,
        model_cfg.num_global,
        data=job.data,
        split=job.split or None,
        classes=job.classes,
        per_class=job.per_class,
        data_root=job.data_root,
    )
    say(f"v2l: training on {len(train_set)} images of {job.data}/{job.split} ({job.classes} classes)")
    if job.record:
        from ..machine import machine
        from ..paths import write_json_atomic

        record = {**job.record, "data": job.data_settings(), "images": len(train_set)}
        record["machines"] = [*_earlier_machines(out), machine()]  # every machine a resumed run ran on
        write_json_atomic(out / "stage.json", record)
    return train(
        cfg,
        model_cfg,
        cb,
        train_set,
        out,
        resume=job.resume,
        stop_after=job.stop_after,
        exclude=local_tokens_for(model_cfg, cb)[0],
        local_codebook=local_codebook_for(model_cfg, cb),
        allow_nonempty=job.allow_nonempty,
    )


def _earlier_machines(out: Path) -> list[dict]:
    path = out / "stage.json"
    if not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text()).get("machines", []))
    except (OSError, ValueError, AttributeError):
        return []
