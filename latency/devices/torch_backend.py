"""torch backend: eager (optionally torch.compile) modules on CPU or CUDA, same protocol."""
from __future__ import annotations

from typing import Literal

from hwnas.errors import HwnasError
from hwnas.latency.devices.base import Artifact, HostBackend, HostOptions, OpTiming, pinned
from hwnas.latency.devices.registry import register_backend


class TorchOptions(HostOptions):  # threads: torch.set_num_threads
    device: Literal["cpu", "cuda"] = "cpu"
    compile: bool = False            # torch.compile before timing


@register_backend
class TorchBackend(HostBackend):
    name = "torch"
    artifact_format = "torch"
    Options = TorchOptions

    def check(self) -> None:
        import torch
        if self.options.device == "cuda" and not torch.cuda.is_available():
            raise HwnasError(f"device {self.device_name!r} needs CUDA, which torch does not see on this machine")

    def fingerprint(self) -> dict:
        import torch
        fp = self.host_fingerprint()
        fp.update(backend=self.name, runtime="torch", runtime_version=torch.__version__,
                  provider=self.options.device, compile=self.options.compile)
        if self.options.device == "cuda":
            fp["gpu"] = torch.cuda.get_device_name(0)
        return fp

    def open(self, artifact: Artifact):
        import torch
        if artifact.module is None:
            raise HwnasError(f"device {self.device_name!r} (torch) times torch modules; give a model name from "
                             f"`hwnas models`, not a {artifact.path.suffix if artifact.path else 'file'} file")
        torch.set_num_threads(self.threads)
        dev = torch.device(self.options.device)
        model = artifact.module.to(dev).eval()
        if self.options.compile:
            model = torch.compile(model)
        inputs = [torch.randn(*s, device=dev) for s in artifact.input_shapes.values()]
        sync = torch.cuda.synchronize if self.options.device == "cuda" else (lambda: None)

        def run():
            with torch.inference_mode():
                model(*inputs)
            sync()
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
