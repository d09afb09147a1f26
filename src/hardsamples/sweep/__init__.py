"""The sweep plumbing, one module per concern: gpus (the GPU a job claims), naming (its run directory's
name), job (one sweep job, its job.json and the sweep's progress) and summary (SweepSummary, the Hydra
callback around a whole sweep).

Importing the package registers the OmegaConf resolvers the configs use (${visible_gpus_or:2},
${gpu_job_slots:...}, ${sweep_subdir:}): a config composed after `import hardsamples.sweep`, or after any
of its modules, resolves them. The names below are the ones configs (hydra.callbacks:
hardsamples.sweep.SweepSummary), comments and other code name at the package.
"""

from hardsamples.sweep.gpus import claim_gpu
from hardsamples.sweep.job import SWEEP_ID_ENV, JobNote, bar_position, read_job_notes, sweep_job
from hardsamples.sweep.naming import SWEPT_ENV, run_dir_name
from hardsamples.sweep.summary import SweepSummary, summary_text

__all__ = ["SWEEP_ID_ENV", "SWEPT_ENV", "JobNote", "SweepSummary", "bar_position", "claim_gpu", "read_job_notes",
           "run_dir_name", "summary_text", "sweep_job"]
