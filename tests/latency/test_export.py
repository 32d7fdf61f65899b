import onnx
import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.latency.export import export_onnx, export_onnx_cached, model_hash


def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU6(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5))


@pytest.mark.parametrize("dynamo", [False, True])
def test_export_checks_and_matches_torch(tmp_path, dynamo):
    res = export_onnx(net(), (1, 3, 16, 16), tmp_path / "m.onnx", dynamo=dynamo)
    onnx.checker.check_model(str(res.path))
    assert res.dynamo is dynamo and res.max_abs_diff is not None and res.max_abs_diff < 1e-4


class Noisy(torch.nn.Module):
    def forward(self, x):
        return x + torch.rand_like(x)


def test_parity_failure_is_loud(tmp_path):
    with pytest.raises(HwnasError, match="disagrees with torch: max abs diff"):
        export_onnx(Noisy(), (1, 3, 8, 8), tmp_path / "n.onnx")


def test_dynamic_batch(tmp_path):
    import numpy as np
    import onnxruntime as ort
    res = export_onnx(net(), (1, 3, 16, 16), tmp_path / "b.onnx", dynamic_batch=True)
    out = ort.InferenceSession(str(res.path)).run(None, {"input": np.zeros((4, 3, 16, 16), np.float32)})[0]
    assert out.shape == (4, 5)


def test_cache_reuses_and_distinguishes_weights():
    a = net()
    p1 = export_onnx_cached(a, (1, 3, 16, 16)).path
    p2 = export_onnx_cached(a, (1, 3, 16, 16)).path
    assert p1 == p2
    b = net()
    with torch.no_grad():
        b[0].weight.add_(1.0)
    assert model_hash(a, (1, 3, 16, 16)) != model_hash(b, (1, 3, 16, 16))
    assert model_hash(a, (1, 3, 16, 16)) != model_hash(a, (1, 3, 32, 32))


@pytest.mark.tflite
def test_tflite_export_parity_and_cache(tmp_path):
    from hwnas.latency.tflite import export_tflite, export_tflite_cached
    path, diff = export_tflite(net(), (1, 3, 16, 16), tmp_path / "m.tflite")
    assert path.exists() and diff < 1e-4
    m = net()
    first = export_tflite_cached(m, (1, 3, 16, 16))
    mtime = first.stat().st_mtime_ns
    assert export_tflite_cached(m, (1, 3, 16, 16)) == first and first.stat().st_mtime_ns == mtime
