"""Synthetic generators and the op counter, checked against tflite-runtime and the seed's arithmetic."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from orchestrator.models.inspect import inspect_model
from orchestrator.models.opcount import count_ops
from orchestrator.models.synthetic import build_conv_stack, build_dense_stack

SHARED_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
SEED_OPS_PER_CONV_LAYER = 1_644_167_168  # SEEDS §2: 128·128·7·7·32·32·2


def interpreter(data: bytes):
    from tflite_runtime.interpreter import Interpreter

    it = Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    return it


def test_conv_stack_runs_in_tflite_runtime_with_the_seed_shapes():
    it = interpreter(build_conv_stack(2))
    (inp,) = it.get_input_details()
    assert list(inp["shape"]) == [1, 1, 1, 3] and inp["dtype"] == np.int8
    names = {d["name"]: d for d in it.get_tensor_details()}
    assert list(names["padded"]["shape"]) == [1, 128, 128, 3]
    assert list(names["conv2"]["shape"]) == [1, 128, 128, 32]
    assert list(names["conv2/weights"]["shape"]) == [32, 7, 7, 32]
    assert names["conv2/weights"]["dtype"] == np.int8
    it.set_tensor(inp["index"], np.full((1, 1, 1, 3), 100, dtype=np.int8))
    it.invoke()
    (out,) = it.get_output_details()
    assert out["dtype"] == np.int8 and list(out["shape"]) == [1, 1, 1, 32]


def test_dense_stack_is_int8_throughout_and_runs():
    data = build_dense_stack(5, units=100)
    it = interpreter(data)
    details = it.get_tensor_details()
    weights = [d for d in details if d["name"].endswith("/weights")]
    assert len(weights) == 5 and all(d["dtype"] == np.int8 and list(d["shape"]) == [100, 100] for d in weights)
    it.set_tensor(it.get_input_details()[0]["index"], np.arange(100, dtype=np.int8).reshape(1, 100))
    it.invoke()
    assert it.get_tensor(it.get_output_details()[0]["index"]).shape == (1, 100)


def test_same_parameters_give_the_same_bytes_and_others_do_not():
    assert hashlib.sha256(build_conv_stack(2)).digest() == hashlib.sha256(build_conv_stack(2)).digest()
    assert build_conv_stack(2) != build_conv_stack(2, seed=1)
    assert build_conv_stack(2) != build_conv_stack(3)
    assert build_dense_stack(3, units=100) != build_dense_stack(3, units=50)


def test_one_32_to_32_conv_layer_counts_the_seed_figure():
    # channels=32 makes the first layer the seed's 32→32 layer exactly.
    counted = count_ops(build_conv_stack(1, channels=32))
    assert counted.by_op["CONV_2D"] == SEED_OPS_PER_CONV_LAYER
    assert counted.uncounted["PAD"] == 1


def test_conv_ops_grow_by_one_seed_layer_per_layer():
    totals = [count_ops(build_conv_stack(n)).total for n in (1, 2, 3, 10)]
    assert totals[1] - totals[0] == SEED_OPS_PER_CONV_LAYER
    assert totals[2] - totals[1] == SEED_OPS_PER_CONV_LAYER
    assert totals[3] - totals[0] == 9 * SEED_OPS_PER_CONV_LAYER


def test_dense_ops_are_two_per_weight():
    assert count_ops(build_dense_stack(7, units=100)).total == 7 * 100 * 100 * 2


def test_generated_models_pass_the_registry_inspection():
    info = inspect_model(build_conv_stack(1))
    assert not info.needs_edgetpu


@pytest.mark.parametrize("kwargs", [{"layers": 0}, {"layers": -1}, {"layers": 2, "kernel": 0},
                                    {"layers": 2, "filters": 10**6}, {"layers": 1.5}, {"layers": True}])
def test_bad_parameters_are_refused_with_the_parameter_named(kwargs):
    with pytest.raises(ValueError) as excinfo:
        build_conv_stack(**kwargs)
    assert next(iter(k for k, v in kwargs.items() if k != "layers" or len(kwargs) == 1)) in str(excinfo.value)


def test_counter_refuses_what_is_not_tflite():
    with pytest.raises(ValueError, match="TFL3"):
        count_ops(b"not a model at all")
    # The graph tables sit at the front of the file: cutting into them is an error, not a count.
    data = build_conv_stack(1)
    with pytest.raises(ValueError):
        count_ops(data[:64])


@pytest.mark.skipif(not (SHARED_MODELS / "mobilenet_v1_0.25_128_quant.tflite").exists(), reason="shared models absent")
def test_published_mobilenet_count_matches_its_published_macs():
    # Published: MobileNet v1 0.25/128 has 14 million multiply-adds.
    counted = count_ops((SHARED_MODELS / "mobilenet_v1_0.25_128_quant.tflite").read_bytes())
    assert abs(counted.total / 2 - 14e6) / 14e6 < 0.05
    assert counted.operators["DEPTHWISE_CONV_2D"] == 13
