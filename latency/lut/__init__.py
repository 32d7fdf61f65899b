"""Latency lookup tables: the SQLite store and the builders."""
from hwnas.latency.lut.build import BuildReport, build_lut
from hwnas.latency.lut.store import LutStore, default_db_path

__all__ = ["BuildReport", "LutStore", "build_lut", "default_db_path"]
