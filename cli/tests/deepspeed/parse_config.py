"""Reads a DeepSpeed config with DeepSpeed's own parser (deepspeed.runtime.config) for a
given data-parallel world size and prints what DeepSpeed understood, as JSON on a line
starting `CONFIG ` (DeepSpeed logs to stdout too), and with a step count the rates its
scheduler gives on a line starting `RATES `. Used by
cli/tests/deepspeed.rs when `import deepspeed` works (pip install deepspeed; CPU is enough).

    python3 parse_config.py ds_config.json DATA_PARALLEL_SIZE [STEPS]
"""
import json
import sys

import deepspeed.runtime.config as ds_config
from deepspeed.runtime.config import DeepSpeedConfig


class DataParallel:
    """The one thing DeepSpeedConfig asks a model-parallel unit: the data-parallel size."""

    def __init__(self, n):
        self.n = n

    def get_data_parallel_world_size(self):
        return self.n


# No process group here: rank 0, and the data-parallel size from the unit above.
ds_config.dist.get_rank = lambda: 0
cfg = DeepSpeedConfig(sys.argv[1], mpu=DataParallel(int(sys.argv[2])))
print("CONFIG " + json.dumps({
    "train_batch_size": cfg.train_batch_size,
    "train_micro_batch_size_per_gpu": cfg.train_micro_batch_size_per_gpu,
    "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
    "gradient_clipping": cfg.gradient_clipping,
    "zero_stage": cfg.zero_optimization_stage,
    "fp16": cfg.float16_config.enabled,
    "bf16": cfg.bfloat16_config.enabled,
    "fp16_config": cfg.float16_config.model_dump() if cfg.float16_config.enabled else None,
    "optimizer": cfg.optimizer_name,
    "optimizer_params": cfg.optimizer_params,
    "scheduler": cfg.scheduler_name,
    "scheduler_params": cfg.scheduler_params,
}, default=str))

# With a step count: the learning rate DeepSpeed's scheduler gives at each of those steps.
if len(sys.argv) > 3 and cfg.scheduler_name:
    import torch
    from deepspeed.runtime import lr_schedules

    weights = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([weights], lr=cfg.optimizer_params["lr"])
    sched = getattr(lr_schedules, cfg.scheduler_name)(opt, **cfg.scheduler_params)
    lrs = []
    for _ in range(int(sys.argv[3])):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    print("RATES " + json.dumps(lrs))
