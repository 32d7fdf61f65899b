"""The backend contract, over every registered backend (a new one is tested by registering it): its Options
refuse unknown fields and bad values in one line naming the field (through the devices-file loader), it
declares the measurement options it honours and refuses the others, check() says in one line why it cannot
run here, and where it runs its fingerprint is JSON with a stable key; timing_resource() is a string."""
import json

import onnxruntime as ort
import pytest
import torch
import yaml

from hwnas.errors import HwnasError
from hwnas.latency.devices import PROTOCOL_OPTIONS, Backend, backend_class, backend_names, fingerprint_key, get_device
from hwnas.latency.devices.base import BackendOptions
from tests.contract_helpers import one_line_error
from tests.latency.phone.fake_phone import fake_phone  # noqa: F401  (pytest fixture)
from tests.latency.test_agent import free_port

NAMES = backend_names()


def minimal(name) -> dict:
    """The fewest fields a device entry of this backend needs (a remote one points at a closed port)."""
    return {"remote": {"host": "127.0.0.1", "port": free_port(), "connect_timeout_s": 5.0, "timeout_s": 10.0},
            "farm": {"pool": ["cpu"]}}.get(name, {})


def devices_file(tmp_path, name, **fields):
    path = tmp_path / "contract-devices.yaml"
    path.write_text(yaml.safe_dump({"dev": {"backend": name, **minimal(name), **fields}}))
    return path


def device(tmp_path, name, **fields):
    return get_device("dev", devices_file(tmp_path, name, **fields))


def refused(tmp_path, name, field, value):
    """The loader's answer to `field: value`: one line naming the file, the device and the field."""
    return one_line_error(lambda: device(tmp_path, name, **{field: value}), "contract-devices.yaml", "'dev'",
                          f"field {field!r}")


@pytest.mark.parametrize("name", NAMES)
def test_a_minimal_entry_loads(name, tmp_path):
    cls = backend_class(name)
    assert issubclass(cls, Backend) and issubclass(cls.Options, BackendOptions) and cls.name == name
    assert isinstance(device(tmp_path, name).backend, cls)


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_field_is_one_line(name, tmp_path):
    refused(tmp_path, name, "no_such_field", 1)


def wrong_type(annotation):
    """A value YAML can hold that a field of this type must refuse."""
    if annotation is bool:
        return "maybe"
    if annotation in (int, float):
        return "many"
    return {"not": "this"}  # no str, list, Literal or Optional field takes a mapping


FIELDS = [pytest.param(n, f, id=f"{n}-{f}") for n in NAMES for f in backend_class(n).Options.model_fields]


@pytest.mark.parametrize("name,field", FIELDS)
def test_a_value_of_the_wrong_type_is_one_line(name, field, tmp_path):
    refused(tmp_path, name, field, wrong_type(backend_class(name).Options.model_fields[field].annotation))


NUMBERS = [(n, f) for n in NAMES for f, info in backend_class(n).Options.model_fields.items()
           if info.annotation in (int, float)]
@pytest.mark.parametrize("name,field", [pytest.param(n, f, id=f"{n}-{f}") for n, f in NUMBERS])
def test_a_negative_number_is_one_line(name, field, tmp_path):
    """Every number of a device entry is a count, a duration or a port."""
    refused(tmp_path, name, field, -1)


@pytest.mark.parametrize("name", NAMES)
def test_measurement_options_are_declared_and_the_others_refused(name, tmp_path):
    cls = backend_class(name)
    assert any("protocol_options" in vars(k) for k in cls.__mro__ if k is not Backend), \
        f"backend {name!r} does not say which measurement options it honours"
    dev = device(tmp_path, name)
    honoured = dev.backend.protocol_options
    assert isinstance(honoured, frozenset) and honoured <= PROTOCOL_OPTIONS
    for option in sorted(PROTOCOL_OPTIONS):
        asked = {} if option == "adaptive" else {option: 1}
        if option in honoured:
            dev.check_protocol(adaptive=option == "adaptive", **asked)
        else:
            one_line_error(lambda: dev.check_protocol(adaptive=option == "adaptive", **asked), "'dev'", option)


@pytest.mark.parametrize("name", NAMES)
def test_check_here_passes_or_is_one_line(name, tmp_path):
    dev = device(tmp_path, name)
    try:
        dev.check()
    except HwnasError as e:
        assert str(e) and "\n" not in str(e) and "'dev'" in str(e), str(e)


@pytest.mark.parametrize("name,fields", [
    pytest.param("onnxruntime", {"provider": "cuda"}, id="onnxruntime-cuda", marks=pytest.mark.skipif(
        "CUDAExecutionProvider" in ort.get_available_providers(), reason="onnxruntime has CUDA here")),
    pytest.param("onnxruntime", {"provider": "tensorrt"}, id="onnxruntime-tensorrt", marks=pytest.mark.skipif(
        "TensorrtExecutionProvider" in ort.get_available_providers(), reason="onnxruntime has TensorRT here")),
    pytest.param("torch", {"device": "cuda"}, id="torch-cuda", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="torch has CUDA here")),
    pytest.param("remote", {}, id="remote-without-agent"),
])
def test_a_device_that_cannot_run_here_fails_check_in_one_line(name, fields, tmp_path):
    one_line_error(lambda: device(tmp_path, name, **fields).check(), "'dev'")


def test_a_phone_that_is_not_attached_fails_check_in_one_line(fake_phone, tmp_path):  # noqa: F811
    fake_phone.remove_device()
    one_line_error(lambda: device(tmp_path, "adb").check(), "'dev'", "no Android phone attached")


@pytest.mark.parametrize("name", NAMES)
def test_timing_resource_is_a_string(name, tmp_path):
    resource = device(tmp_path, name).timing_resource()
    assert isinstance(resource, str) and resource


@pytest.mark.parametrize("name", NAMES)
def test_where_it_runs_the_fingerprint_is_json_with_a_stable_key(name, tmp_path):
    dev = device(tmp_path, name)
    try:
        dev.check()
    except HwnasError as e:
        pytest.skip(f"cannot run here ({e}); tests/latency/test_adb.py and test_agent.py fingerprint the emulated "
                    f"phone and a real agent")
    fp = dev.fingerprint()
    assert isinstance(fp, dict) and json.loads(json.dumps(fp, allow_nan=False)) == fp
    assert isinstance(fp["key"], str) and fp["key"] == fingerprint_key(fp)
    assert device(tmp_path, name).fingerprint()["key"] == fp["key"]
    assert dev.artifact_format in ("onnx", "tflite", "torch")
