"""hwnas: hardware-aware latency profiling, latency lookup tables, platform-aware NAS and NetAdapt.

Subpackages: hwnas.latency (devices, measurement, export, LUTs, prediction), hwnas.models (model zoo),
hwnas.search (spaces, rewards, strategies), hwnas.adapt (NetAdapt).
"""
__version__ = "0.1.0"
