"""What the stages share (`BenchContext`: the suite, the data root, the models) and the sharding of their work
across processes (Accelerate's `PartialState`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...distributed import gather, process_state, shard  # noqa: F401  (the stages import them from here)
from .suites import Suite


@dataclass
class BenchContext:
    """What the stages share: the suite, the data root and the models (loaded on first use; tests pass tiny ones)."""

    suite: Suite
    data_root: str | None = None
    tokenizer_name: str = "cpu"
    llm_name: str = "smollm2-135m"
    adapter: str | None = None  # a LoRA adapter merged into the LLM of every stage (`--adapter`)
    codebook_folder: str | None = None  # a codebook other than the tokenizer's (its words; e.g. Table 5's variants)
    progress: bool = True
    models: dict = field(default_factory=dict)
    # Other tokenizers, label -> folder: the baselines (VQ-GAN+LLM, LQAE, SPAE) and Table 6's local-codebook
    # variants; a folder that is not there is a row marked "not built".
    others: dict = field(default_factory=dict)
    figures: Path | None = None  # where stages draw their figures (run_bench: <out>/figures); None: no figures
    previous: dict = field(default_factory=dict)  # a stage's earlier result that it may reuse parts of (run_bench)
    rows_dir: Path | None = None  # where the tokenizers stage keeps each finished row (run_bench: <out>/stages/rows)
    measured_inputs: dict | None = field(default=None, init=False, repr=False)  # `inputs()`, computed once

    def figure(self, name: str) -> Path | None:
        """The path of figure `name` if this process draws figures (the main one), else None."""
        return self.figures / name if self.figures is not None and process_state().is_main_process else None

    def __post_init__(self):
        self.given_tokenizer = "tokenizer" in self.models  # a model passed in (tests): known by its name alone

    def inputs(self) -> dict:
        """What every stage's numbers depend on beside the suite: the tokenizer (its name and the sha256 of its
        weights) and the LLM. A finished stage measured with other inputs is measured again."""
        if self.measured_inputs is None:
            from ...paths import file_sha256
            from ...tokenizer.image_tokenizer import resolve_checkpoint

            weights = None if self.given_tokenizer else resolve_checkpoint(self.tokenizer_name) / "model.safetensors"
            sha = file_sha256(weights) if weights else None
            self.measured_inputs = {
                "tokenizer": str(self.tokenizer_name),
                "tokenizer_sha256": sha,
                "llm": self.llm_name,
            }
            if self.codebook_folder is not None:  # recorded only when given: reports made before it stay current
                self.measured_inputs["codebook"] = self.codebook().global_sha256
            if self.adapter:  # likewise
                from ...backbones.adapters import WEIGHTS, adapter_folder

                self.measured_inputs["adapter"] = file_sha256(adapter_folder(self.adapter) / WEIGHTS)
        return self.measured_inputs

    def tokenizer(self):
        if "tokenizer" not in self.models:
            from ...tokenizer import ImageTokenizer

            self.models["tokenizer"] = ImageTokenizer.from_pretrained(self.tokenizer_name, progress=self.progress)
        return self.models["tokenizer"]

    def vl(self):
        return self.models.get("vl") or self.tokenizer().vl

    def codebook(self):
        if "codebook" not in self.models and self.codebook_folder is not None:
            from ...codebooks import Codebook

            self.models["codebook"] = Codebook.load(self.codebook_folder, vl=self.vl())
        return self.models.get("codebook") or self.tokenizer().codebook

    def lm(self):
        if "lm" not in self.models:
            from ...backbones import LanguageModel

            self.models["lm"] = LanguageModel.load(self.llm_name, progress=self.progress, adapter=self.adapter)
        return self.models["lm"]

    def tuned_lm(self, adapter: str):
        """The bench's LLM with a LoRA adapter merged in (the restoration stage); a second copy of the weights."""
        if "tuned_lm" not in self.models:
            from ...backbones import LanguageModel

            self.models["tuned_lm"] = LanguageModel.load(self.llm_name, progress=self.progress, adapter=adapter)
        return self.models["tuned_lm"]


def load_other(ctx: BenchContext, folder):
    """One of `ctx.others` (a run folder or its `final/`), with the bench's VL model."""
    from ...tokenizer import ImageTokenizer
    from ...tokenizer.image_tokenizer import resolve_checkpoint

    return ImageTokenizer.from_pretrained(resolve_checkpoint(folder), vl=ctx.vl(), progress=False)
