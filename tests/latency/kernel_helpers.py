"""A small kernel table, built once per test session (the `built` fixture in tests/conftest.py)."""
SMALL = {"samples": 100, "adaptive_rounds": 1, "adaptive_samples": 12}
FIT = 6  # fit networks of the mnasnet space (224x224) for the correction


def build_small(db):
    from hwnas.latency.lut.kernel_table import build_kernels
    from hwnas.search.spaces import get_space
    from tests.latency.lut_helpers import fast_protocol
    return build_kernels("cpu", db, protocol=fast_protocol(2, 3), show_progress=False, log=lambda m: None,
                         fit_space=get_space("mnasnet"), fit_networks=FIT, network_protocol=fast_protocol(2, 3),
                         **SMALL)


SMALL_LITERT = {"samples": 40, "adaptive_rounds": 1, "adaptive_samples": 8}
FIT_LITERT = 3  # fit networks of mnasnet-tiny (32x32): each a litert-torch conversion


def build_small_litert(db):
    from hwnas.latency.lut.kernel_table import build_kernels
    from hwnas.search.spaces import get_space
    from tests.latency.lut_helpers import fast_protocol
    return build_kernels("litert-cpu", db, protocol=fast_protocol(2, 3), show_progress=False, log=lambda m: None,
                         fit_space=get_space("mnasnet-tiny"), fit_networks=FIT_LITERT,
                         network_protocol=fast_protocol(2, 3), **SMALL_LITERT)
