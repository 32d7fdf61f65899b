"""Test-wide settings: exported artifacts and LUTs go to a temporary folder, never to ~/.cache."""
import os
import tempfile

_TMP = tempfile.mkdtemp(prefix="hwnas-tests-")
os.environ.setdefault("HWNAS_CACHE", os.path.join(_TMP, "cache"))
os.environ.setdefault("HWNAS_HOME", os.path.join(_TMP, "home"))
os.environ.setdefault("HWNAS_NO_PROGRESS", "1")
os.environ.pop("HWNAS_DEVICES", None)


import pytest  # noqa: E402 (the environment above is set before anything imports hwnas)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """(database, build report) of a small kernel table on the cpu device (cheap protocol), built once."""
    from tests.latency.kernel_helpers import build_small
    db = tmp_path_factory.mktemp("kernels") / "k.db"
    return db, build_small(db)


@pytest.fixture(scope="session")
def built_litert(tmp_path_factory):
    """(database, build report) of a small kernel table on the litert-cpu device (cheap protocol), built once."""
    pytest.importorskip("litert_torch")
    from tests.latency.kernel_helpers import build_small_litert
    db = tmp_path_factory.mktemp("kernels-litert") / "k.db"
    return db, build_small_litert(db)
