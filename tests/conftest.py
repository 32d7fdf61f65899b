"""Test-wide settings: exported artifacts and LUTs go to a temporary folder, never to ~/.cache."""
import os
import tempfile

_TMP = tempfile.mkdtemp(prefix="hwnas-tests-")
os.environ.setdefault("HWNAS_CACHE", os.path.join(_TMP, "cache"))
os.environ.setdefault("HWNAS_HOME", os.path.join(_TMP, "home"))
os.environ.setdefault("HWNAS_NO_PROGRESS", "1")
os.environ.pop("HWNAS_DEVICES", None)
