"""NetAdapt: shrink a trained network group by group until its latency measured on a device meets a budget.

    from hwnas.adapt import AdaptConfig, adapt
    summary = adapt(AdaptConfig("mobilenet_v2", budget_ms=2.0, device="cpu", data="digits"))
"""
from hwnas.adapt.netadapt import AdaptConfig, NetAdapt, adapt

__all__ = ["AdaptConfig", "NetAdapt", "adapt"]
