"""The cost model (issue: paper scale): FLOPs, peak memory and wall time of the paper's jobs for any LLM and VL model,
on named GPUs (data-sheet peaks × stated efficiencies) and on this CPU (calibrated by measured runs).

    from v2l.plan import plan
    rows = plan("llama2-7b", "clip-vit-l14", suite="paper")
"""

from .calibrate import calibrate, count_train_step, cpu_hardware, measure_llm, token_stats
from .costs import Job, TokenStats, TrainStep, Work, captioning_job, codebook_job, table1_job, table4_job, training_job
from .plans import PLAN_SUITES, plan, plan_table
from .specs import GPUS, Hardware, Transformer, VisionLanguage, llm_config, llm_spec, vl_spec

__all__ = [
    "GPUS",
    "PLAN_SUITES",
    "Hardware",
    "Job",
    "TokenStats",
    "TrainStep",
    "Transformer",
    "VisionLanguage",
    "Work",
    "calibrate",
    "captioning_job",
    "codebook_job",
    "count_train_step",
    "cpu_hardware",
    "llm_config",
    "llm_spec",
    "measure_llm",
    "plan",
    "plan_table",
    "table1_job",
    "table4_job",
    "token_stats",
    "training_job",
    "vl_spec",
]
