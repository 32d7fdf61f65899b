"""torch backend: eager (optionally torch.compile) modules on CPU or CUDA, same protocol.

On CUDA a call only queues kernels; the runner's sync (torch.cuda.synchronize) ends each timed window, so a
sample is the whole network's time on the GPU (hwnas.latency.measure's `sync`). Precision fp16/bf16 runs the
module and its inputs in that type (a copy: the caller's module is left as it was)."""
from __future__ import annotations

import copy
from typing import Literal

from pydantic import Field

from hwnas.errors import HwnasError
from hwnas.latency.devices.base import Artifact, HostBackend, HostOptions, OpTiming, Runner, pinned
from hwnas.latency.devices.registry import register_backend

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class TorchOptions(HostOptions):  # threads: torch.set_num_threads
    device: Literal["cpu", "cuda"] = "cpu"
    device_id: int = Field(0, ge=0)  # which GPU
    compile: bool = False            # torch.compile before timing
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"

    @property
    def torch_device(self) -> str:
        return f"cuda:{self.device_id}" if self.device == "cuda" else "cpu"


@register_backend
class TorchBackend(HostBackend):
    name = "torch"
    artifact_format = "torch"
    Options = TorchOptions

    def check(self) -> None:
        import torch
        if self.options.device != "cuda":
            return
        if not torch.cuda.is_available():
            build = (f"this torch ({torch.__version__}) is a CPU-only build" if torch.version.cuda is None
                     else "torch sees no CUDA device on this machine")
            raise HwnasError(f"device {self.device_name!r} needs CUDA: {build}")
        if self.options.device_id >= torch.cuda.device_count():
            raise HwnasError(f"device {self.device_name!r}: device_id {self.options.device_id}, but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")

    def fingerprint(self) -> dict:
        import torch
        fp = self.host_fingerprint()
        fp.update(backend=self.name, runtime="torch", runtime_version=torch.__version__,
                  provider=self.options.device, compile=self.options.compile)
        if self.options.precision != "fp32" or self.options.device == "cuda":
            fp["precision"] = self.options.precision  # absent on fp32 CPU devices: their keys stay as they were
        if self.options.device == "cuda":
            from hwnas.latency.devices.gpu import gpu_fingerprint
            fp.update(gpu_fingerprint(self.options.device_id))
            fp.update(gpu=torch.cuda.get_device_name(self.options.device_id), device_id=self.options.device_id,
                      cuda_runtime=torch.version.cuda, cudnn=torch.backends.cudnn.version())
        return fp

    @property
    def gpu_index(self) -> int | None:
        return self.options.device_id if self.options.device == "cuda" else None

    def open(self, artifact: Artifact):
        import torch
        if artifact.module is None:
            raise HwnasError(f"device {self.device_name!r} (torch) times torch modules; give a model name from "
                             f"`hwnas models`, not a {artifact.path.suffix if artifact.path else 'file'} file")
        torch.set_num_threads(self.threads)
        dev = torch.device(self.options.torch_device)
        dtype = getattr(torch, DTYPES[self.options.precision])
        model = artifact.module
        if dev.type != "cpu" or dtype != torch.float32:
            model = copy.deepcopy(model).to(device=dev, dtype=dtype)
        model = model.eval()
        if self.options.compile:
            model = torch.compile(model)
        inputs = [torch.randn(*s, device=dev, dtype=dtype) for s in artifact.input_shapes.values()]

        def run():
            with torch.inference_mode():
                return model(*inputs)
        if dev.type == "cuda":
            return Runner(run, lambda: torch.cuda.synchronize(dev))
        return run

    def profile_ops(self, artifact: Artifact, *, warmup: int = 5, runs: int = 20) -> list[OpTiming]:
        """Per-operator self time from torch.profiler (aten ops, summed over the runs, per run)."""
        from torch.profiler import ProfilerActivity, profile
        run = self.runner(artifact)
        with pinned(self.cores):
            for _ in range(warmup):
                run()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(runs):
                    run()
        rows = []
        for ev in prof.key_averages():
            if ev.count == 0 or not ev.key.startswith("aten::"):
                continue
            per_run_ms = ev.self_cpu_time_total / 1000.0 / runs
            if per_run_ms <= 0:
                continue
            rows.append(OpTiming(name=ev.key, op_type=ev.key.split("::", 1)[1], median_ms=per_run_ms,
                                 mean_ms=per_run_ms, count=ev.count))
        return sorted(rows, key=lambda r: -r.median_ms)
