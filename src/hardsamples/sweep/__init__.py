"""The sweep plumbing, one module per concern: gpus (the GPU a job claims), naming (its run directory's
name), job (one sweep job, its job.json and the sweep's progress) and summary (SweepSummary, the Hydra
callback around a whole sweep).

Importing the package registers the OmegaConf resolvers the configs use (${visible_gpus_or:2},
${gpu_job_slots:...}, ${sweep_subdir:}): a config composed after `import hardsamples.sweep`, or after any
of its modules, resolves them. SweepSummary is named here because conf/config.yaml names it at the
package (hydra.callbacks: hardsamples.sweep.SweepSummary); code imports the rest from its module.
"""

from hardsamples.sweep import gpus, naming  # noqa: F401  register the resolvers the configs use
from hardsamples.sweep.summary import SweepSummary

__all__ = ["SweepSummary"]
