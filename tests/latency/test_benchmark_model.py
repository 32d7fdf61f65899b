"""The benchmark_model parser on recorded outputs (tests/data/benchmark_model/, sources in its README)."""
from pathlib import Path

import pytest

from hwnas.latency.benchmark_model import parse

DATA = Path(__file__).resolve().parent.parent / "data" / "benchmark_model"


def load(name):
    return parse((DATA / name).read_text())


def test_old_format_e_notation_and_op_tables():
    out = load("riscv64_mobilenet_v1_op_profiling.txt")
    assert len(out.runs) == 2 and out.runs[0].count == 1 and out.runs[0].avg is None
    r = out.inference
    assert (r.count, r.first, r.min, r.max, r.std) == (50, 2990275, 2727568, 3189954, 109798)
    assert r.avg == pytest.approx(2.95034e6)
    assert out.init_us == 17187 and out.first_inference_us == 3512391
    assert out.warmup_avg_us == pytest.approx(3.51239e6) and out.inference_avg_us == pytest.approx(2.95034e6)
    assert out.init_session_ms == pytest.approx(17.187)
    # no median printed by this build: the median is the average, and the JSON says so
    m = out.to_measurement(warmup=1)
    assert out.median_source() == "avg"
    assert m.median == pytest.approx(2950.34) and m.mean == pytest.approx(2950.34)
    assert m.min == pytest.approx(2727.568) and m.max == pytest.approx(3189.954) and m.count == 50
    assert m.samples_ms == []
    # the initialization block is kept apart from the regular runs
    assert [o.node_type for o in out.init_run_order] == ["AllocateTensors"]
    assert len(out.run_order) == 31
    first = out.run_order[0]
    assert first.node_type == "CONV_2D" and first.name == "[MobilenetV1/MobilenetV1/Conv2d_0/Relu6]:0"
    assert first.avg_ms == pytest.approx(60.957) and first.start_ms == pytest.approx(0.066)
    assert out.run_order[-1].node_type == "SOFTMAX"
    by_type = {t.node_type: t for t in out.by_node_type}
    assert by_type["CONV_2D"].count == 15 and by_type["CONV_2D"].avg_ms == pytest.approx(2651.853)
    assert sum(o.avg_ms for o in out.run_order if o.node_type == "CONV_2D") == pytest.approx(2651.853, abs=0.01)
    # the profiler's "Timings (microseconds): count=50 ..." line is not taken for the benchmark's summary
    assert out.inference.curr == 2913402


def test_info_prefix_xnnpack_tables_without_start_column():
    out = load("arm_tc2_xnnpack_info_prefix_op_profiling.txt")
    assert [r.count for r in out.runs] == [67, 67]
    assert out.warmup.avg == pytest.approx(7514.93) and out.inference.avg == pytest.approx(7454.97)
    assert out.inference_avg_us == pytest.approx(7454.97)
    assert [o.node_type for o in out.init_run_order] == ["ModifyGraphWithDelegate", "AllocateTensors"]
    ops = out.run_order
    assert ops[0].node_type == "Convolution (NHWC, QU8) IGEMM" and ops[0].start_ms is None
    assert ops[0].name == "Delegate/Convolution (NHWC, QU8) IGEMM:0" and ops[0].avg_ms == pytest.approx(0.278)
    assert ops[-1].node_type == "TFLite_Detection_PostProcess" and ops[-1].avg_ms == pytest.approx(1.339)
    assert len(out.by_node_type) == 8
    assert out.by_node_type[0].node_type == "Convolution (NHWC, QU8) GEMM" and out.by_node_type[0].count == 54


def test_summary_only_output():
    out = load("xiaomi_mi11_yolov5s_cpu4.txt")
    assert out.warmup is None and out.inference.count == 50
    m = out.to_measurement()
    assert m.median == pytest.approx(249.684) and m.std == pytest.approx(1.442)
    assert out.run_order == [] and out.by_node_type == []


def test_logcat_prefix_with_median_fields():
    out = load("android_logcat_p5_median_p95.txt")
    assert out.warmup.count == 3 and out.inference.count == 25
    assert out.median_source() == "median"
    m = out.to_measurement(warmup=3)
    assert m.median == pytest.approx(141.253) and m.mean == pytest.approx(145.528)
    assert m.p10 == pytest.approx(140.545) and m.p95 == pytest.approx(187.533) and m.p99 == pytest.approx(195.121)


def test_glog_prefixed_tf_lines_and_only_timings_line():
    text = ("2018-09-10 13:35:11.172809: I tensorflow/tools/benchmark/benchmark_model.cc:361] "
            "count=231 first=41242 curr=43227 min=38544 max=49124 avg=43366.3 std=1377\n")
    assert parse(text).inference.avg == pytest.approx(43366.3)
    only = parse("INFO: Inference timings in us: Init: 5, First inference: 9, Warmup (avg): 8, Inference (avg): 1.2e+03\n")
    assert only.inference is None and only.to_measurement().median == pytest.approx(1.2)


def test_no_timings_is_an_error():
    with pytest.raises(ValueError):
        parse("ERROR: Could not open 'x.tflite'.\nFailed to construct interpreter\n").to_measurement()
