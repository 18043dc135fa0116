"""The engine decision: measured where it runs, fixed once, never a first-call cliff.

The rules are tested with measurements written here (the shape
:func:`skptm.engines.calibration.measure` returns), so that each case says
what it checks whatever machine runs the suite; one test measures for real.
"""

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from skptm import FineTunedClassifier, PretrainedFeatureTransformer
from skptm.cli.calibrate import describe
from skptm.engines import ENGINE_MODULES, calibration, decision, get_engine
from skptm.engines.machine import Machine, machine_key, precision_hidden_by_cap, this_machine
from skptm.exceptions import CalibrationWarning

from .conftest import LIGHT, SIZE

has_openvino = get_engine("openvino").is_available()
needs_openvino = pytest.mark.skipif(not has_openvino, reason="OpenVINO is not installed (the test extra has it)")


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty skptm cache folder and no decision taken yet in this process."""
    monkeypatch.setenv("SKPTM_CACHE_DIR", str(tmp_path))
    decision.clear()
    yield tmp_path
    decision.clear()


def rate(median, spread=0.05):
    return {"median": median, "low": median * (1 - spread), "high": median * (1 + spread)}


def measurement(name=LIGHT, size=SIZE, rates=None, cosine=None, conversion=2.0):
    """A measurement as calibration.measure returns it."""
    rates = rates or {"tensorflow/float32": rate(100), "openvino/float32": rate(200)}
    return {
        "format": calibration.FORMAT_VERSION,
        "backbone": name,
        "size_class": calibration.size_class((size, size)),
        "input_size": [size, size],
        "rates": rates,
        "cosine": cosine or dict.fromkeys(rates, 0.999999),
        "conversion_seconds": {"openvino": conversion},
    }


# -- the rules ------------------------------------------------------------------------------------


def test_without_a_measurement_auto_is_tensorflow_float32(fresh):
    for precision in ("auto", "float32"):
        choice = decision.choose("auto", precision, "convnext_tiny", (SIZE, SIZE))
        assert (choice.engine, choice.precision) == ("tensorflow", "float32")
        assert "not measured" in choice.reason
    if not precision_hidden_by_cap("bfloat16"):  # else a clear error: see the cap's test below
        assert decision.choose("tensorflow", "bfloat16", "vgg16").precision == "bfloat16"  # asked: kept


def test_a_clearly_faster_measured_engine_is_chosen():
    entry = measurement()
    assert decision.best_measured(entry, "auto", "float32").label == "openvino/float32"
    assert decision.best_measured(entry, "tensorflow", "float32").label == "tensorflow/float32"


def test_overlapping_rounds_or_a_small_gain_keep_tensorflow():
    overlapping = measurement(rates={"tensorflow/float32": rate(100, 0.3), "openvino/float32": rate(125, 0.1)})
    assert decision.best_measured(overlapping, "auto", "float32").label == "tensorflow/float32"
    small = measurement(rates={"tensorflow/float32": rate(100, 0.001), "openvino/float32": rate(103, 0.001)})
    assert decision.best_measured(small, "auto", "float32").label == "tensorflow/float32"


def test_paired_rounds_see_through_load_that_drifts():
    """Rounds alternate, so a round compares both under the same load: a
    machine whose load drifts gives overlapping ranges but clear ratios."""
    tensorflow = [100.0, 60.0, 100.0, 70.0, 95.0]  # another process came and went
    openvino = [130.0, 80.0, 128.0, 90.0, 125.0]
    entry = measurement(
        rates={
            "tensorflow/float32": {"median": 95.0, "low": 60.0, "high": 100.0},
            "openvino/float32": {"median": 125.0, "low": 80.0, "high": 130.0},
        }
    )
    entry["round_rates"] = {"tensorflow/float32": tensorflow, "openvino/float32": openvino}
    assert decision.best_measured(entry, "auto", "float32").label == "openvino/float32"
    entry["round_rates"]["openvino/float32"] = [130.0, 55.0, 128.0, 90.0, 125.0]  # slower in one round: still
    assert decision.best_measured(entry, "auto", "float32").label == "openvino/float32"
    entry["round_rates"]["openvino/float32"] = [130.0, 55.0, 90.0, 90.0, 125.0]  # slower in two: not clearly
    assert decision.best_measured(entry, "auto", "float32").label == "tensorflow/float32"


def test_inaccurate_configurations_are_never_chosen():
    entry = measurement(cosine={"tensorflow/float32": 1.0, "openvino/float32": 0.999})
    assert decision.best_measured(entry, "auto", "float32").label == "tensorflow/float32"


def test_precision_limits_the_candidates():
    rates = {
        "tensorflow/float32": rate(100),
        "tensorflow/bfloat16": rate(150),
        "openvino/float32": rate(120),
        "openvino/bfloat16": rate(300),
    }
    entry = measurement(rates=rates)
    assert decision.best_measured(entry, "auto", "float32").label == "openvino/float32"
    assert decision.best_measured(entry, "auto", "auto").label == "openvino/bfloat16"
    assert decision.best_measured(entry, "auto", "bfloat16").label == "openvino/bfloat16"
    assert decision.best_measured(entry, "tensorflow", "auto").label == "tensorflow/bfloat16"
    no_bfloat16 = measurement()  # an AVX2 machine measures float32 only
    assert decision.best_measured(no_bfloat16, "auto", "bfloat16").label == "tensorflow/bfloat16"  # as asked


def test_machines_of_other_kinds_never_share_measurements():
    here = this_machine()
    other_flags = tuple(sorted({*here.flags} ^ {"avx512f"}))
    others = [
        Machine(here.architecture, here.cpu_model, other_flags, here.cores, here.gpu),
        Machine(here.architecture, here.cpu_model, here.flags, here.cores + 1, here.gpu),
        Machine(here.architecture, "another CPU", here.flags, here.cores, here.gpu),
        Machine(here.architecture, here.cpu_model, here.flags, here.cores, "a GPU"),
    ]
    keys = {machine_key(here), *(machine_key(machine) for machine in others)}
    assert len(keys) == 5
    assert machine_key(here) == machine_key(this_machine())


def test_an_instruction_set_cap_makes_a_machine_of_its_own(monkeypatch):
    """ONEDNN_MAX_CPU_ISA keeps TensorFlow's and OpenVINO's kernels to an
    instruction set: measured under it, and measuring no bfloat16 there."""
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    here = this_machine()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    capped = this_machine()
    assert not {"avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16"} & set(capped.flags)
    assert set(capped.flags) <= set(here.flags)
    assert not capped.native_bfloat16 or here.architecture not in ("x86_64", "AMD64")
    assert "under ONEDNN_MAX_CPU_ISA=AVX2" in capped.describe()
    assert machine_key(capped) != machine_key(here)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert this_machine() == here and machine_key() == machine_key(here)


def test_a_reduced_precision_the_cap_hides_is_a_clear_error(fresh, monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert precision_hidden_by_cap("bfloat16", {"avx2", "avx512f", "amx_bf16"})
    assert not precision_hidden_by_cap("bfloat16", {"avx2", "fma"})  # computed another way: runs
    assert not precision_hidden_by_cap("float32", {"avx2", "avx512f", "amx_bf16"})
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert not precision_hidden_by_cap("bfloat16", {"avx2", "avx512f", "amx_bf16"})

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    if not precision_hidden_by_cap("bfloat16"):
        return  # this CPU has no native bfloat16: nothing is hidden, and bfloat16 runs as it always does
    with pytest.raises(ValueError, match="ONEDNN_MAX_CPU_ISA=AVX2 hides its bfloat16 instructions"):
        PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE, precision="bfloat16").transform(
            np.zeros((1, SIZE, SIZE, 3), np.uint8)
        )


class _EngineThatCannotRun:
    """An engine plug-in whose kernels fail on this machine when first run."""

    name = "cannot_run"

    def is_available(self):
        return True

    def require(self):
        pass

    def version(self):
        return "1"

    def precisions(self, machine):
        return ("float32",)

    def network_precision(self, precision):
        return "float32"

    def prepare(self, network, precision):
        def run(batch):
            raise RuntimeError("Graph execution error:\n\n[[{{node conv}}]]\nno kernel for this instruction set")

        return dataclasses.replace(network, engine=self.name, runner=run)

    def is_prepared(self, network, precision):
        return False


CANNOT_RUN = _EngineThatCannotRun()


def test_a_configuration_that_cannot_run_here_is_measured_as_failed(fresh, monkeypatch):
    monkeypatch.setitem(ENGINE_MODULES, "cannot_run", f"{__name__}:CANNOT_RUN")
    configs = ["tensorflow/float32", "cannot_run/float32"]
    with pytest.warns(CalibrationWarning, match="cannot_run/float32 could not run .* never choose it"):
        entry = calibration.measure(LIGHT, weights=None, input_size=SIZE, rounds=1, round_seconds=0.01, configs=configs)
    assert entry["failed"] == {"cannot_run/float32": "RuntimeError: no kernel for this instruction set"}
    assert set(entry["rates"]) == set(entry["cosine"]) == {"tensorflow/float32"}
    assert decision.best_measured(entry, "auto", "auto").label == "tensorflow/float32"
    assert "cannot_run/float32 failed here (RuntimeError: no kernel" in describe(entry)


def test_the_prior_is_never_applied_to_another_instruction_set():
    from skptm.engines.prior import expected_speedups, tables

    for table in tables():
        measured_on = table["machine"]
        assert measured_on["cpu_model"] and measured_on["instruction_set"] and measured_on["cores"]
        other = Machine(measured_on["architecture"], "x", ("sse2",), 2, None)
        assert expected_speedups("resnet50", other) is None


def test_the_prior_scales_a_rate_from_the_size_it_was_measured_at():
    """A network that runs at one size only (CLIP at 224 px) is measured at
    it, and its table says so: the rate scales from there, not from 160 px."""
    from skptm.engines.prior import PRIOR_SIZE, table_rate

    table = {
        "input_size": {"clip_vit_base_patch32": [224, 224]},
        "images_per_second": {
            "resnet50": {"tensorflow/float32": {"median": 100.0}},
            "clip_vit_base_patch32": {"tensorflow/float32": {"median": 20.0}},
        },
    }
    assert table_rate(table, "resnet50", (PRIOR_SIZE, PRIOR_SIZE)) == 100.0
    assert table_rate(table, "resnet50", (2 * PRIOR_SIZE, PRIOR_SIZE)) == 50.0
    assert table_rate(table, "clip_vit_base_patch32", (224, 224)) == 20.0
    assert table_rate(table, "clip_vit_base_patch32", (112, 224)) == 40.0
    assert table_rate(table, "dinov2_small", (224, 224)) is None


def test_a_network_one_machine_lacks_is_estimated_from_its_speed_at_the_anchor(monkeypatch):
    """The transformers were measured on a fast CPU only: on a machine kind
    that ran ResNet50 four times slower, they are expected four times slower."""
    from skptm.engines import prior

    def table(rates):
        return {"images_per_second": {name: {"tensorflow/float32": {"median": rate}} for name, rate in rates.items()}}

    fast, slow = table({"resnet50": 40.0, "dinov2_small": 20.0}), table({"resnet50": 10.0})
    monkeypatch.setattr(prior, "tables", lambda: (fast, slow))
    size = (prior.PRIOR_SIZE, prior.PRIOR_SIZE)
    assert prior.tensorflow_rate("dinov2_small", size) == 5.0
    assert prior.tensorflow_rate("resnet50", size) == 10.0
    assert prior.tensorflow_rate("vgg16", size) is None


def test_the_prior_knows_every_network_of_the_registry():
    """``engine="auto"`` measures a network here only when the prior says a
    job would take long enough on TensorFlow: a network the prior does not
    know would never be measured, whatever the job."""
    from skptm import list_backbones
    from skptm.engines.prior import tensorflow_rate

    unknown = [
        backbone["name"]
        for backbone in list_backbones()
        if tensorflow_rate(backbone["name"], (backbone["input_size"], backbone["input_size"])) is None
    ]
    assert not unknown, f"no prior rate for {unknown}: run benchmarks/engine_table.py for them"


# -- measured where it runs, once ------------------------------------------------------------------


@needs_openvino
def test_backbones_engines_looks_up_the_size_measured(fresh, capsys):
    """``skptm backbones --engines --input-size`` reads the measurement that
    ``skptm calibrate --input-size`` made; without it, the native size's."""
    from skptm.cli import main

    calibration.save(measurement())

    def row(*arguments):
        code = main(["backbones", "--engines", *arguments])
        assert code == 0
        return next(line for line in capsys.readouterr().out.splitlines() if line.split()[0] == LIGHT)

    assert "not measured" in row()
    assert "openvino float32 (2.0x, measured)" in row("--input-size", str(SIZE))
    assert main(["backbones", "--input-size", str(SIZE)]) == 2
    assert "--input-size goes with --engines" in capsys.readouterr().err


@needs_openvino
def test_a_measurement_here_decides_and_is_kept_for_the_process(fresh):
    size = (SIZE, SIZE)
    assert decision.choose("auto", "float32", LIGHT, size).engine == "tensorflow"
    calibration.save(measurement())
    # Decided once per process: a measurement made meanwhile changes nothing here...
    assert decision.choose("auto", "float32", LIGHT, size).engine == "tensorflow"
    decision.clear()
    # ... and decides for the next process.
    assert decision.choose("auto", "float32", LIGHT, size).label == "openvino/float32"


@needs_openvino
def test_calibrate_measures_once_with_real_photos(fresh, monkeypatch):
    monkeypatch.setattr(calibration, "ROUNDS", 3)
    monkeypatch.setattr(calibration, "ROUND_SECONDS", 0.05)
    [entry] = calibration.calibrate([LIGHT], weights=None, input_size=32, verbose=0)
    assert set(entry["rates"]) == set(calibration.configurations())
    for config, measured in entry["rates"].items():
        assert 0 < measured["low"] <= measured["median"] <= measured["high"], config
        assert len(entry["round_rates"][config]) == calibration.ROUNDS
    assert entry["cosine"]["openvino/float32"] >= 0.9999
    assert entry["conversion_seconds"]["openvino"] > 0
    stored = list((fresh / "calibration").rglob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text()) == entry
    assert calibration.calibrate([LIGHT], weights=None, input_size=32, verbose=0) == [entry]  # not again

    # Measured again, with the converted model now on disk and in memory: the
    # conversion recorded is still a whole one, what a fitted model costs.
    from skptm.engines import openvino as openvino_engine

    conversions = openvino_engine.cache_info()["conversions"]
    [again] = calibration.calibrate([LIGHT], weights=None, input_size=32, verbose=0, force=True)
    assert openvino_engine.cache_info()["conversions"] == conversions + 1
    assert again["conversion_seconds"]["openvino"] > 0


def test_cosines_have_no_floor():
    tiny = np.array([[1e-13, 2e-13, 0.0]], np.float32)
    assert calibration.cosines(tiny, tiny)[0] == pytest.approx(1.0)
    assert calibration.cosines(tiny, -tiny)[0] == pytest.approx(-1.0)
    assert calibration.cosines(np.zeros((1, 3)), np.zeros((1, 3)))[0] == 1.0
    assert calibration.cosines(np.zeros((1, 3)), tiny)[0] == 0.0


@needs_openvino
def test_a_large_first_job_measures_the_machine_first(fresh, monkeypatch):
    monkeypatch.setattr(decision, "AUTO_CALIBRATION_SECONDS", 0.0)
    monkeypatch.setattr(calibration, "ROUNDS", 2)
    monkeypatch.setattr(calibration, "ROUND_SECONDS", 0.05)
    choice = decision.choose("auto", "float32", LIGHT, (SIZE, SIZE), weights=None, n_items=10_000)
    assert calibration.load(LIGHT, (SIZE, SIZE)) is not None
    assert "measured here" in choice.reason


# -- the same numbers whatever the history ------------------------------------------------------------


@pytest.fixture
def openvino_measured(fresh):
    """A machine where OpenVINO was measured faster for the light network."""
    if not has_openvino:
        pytest.skip("OpenVINO is not installed")
    calibration.save(
        measurement(rates={"tensorflow/float32": rate(100), "openvino/float32": rate(300)}, conversion=0.1)
    )
    return fresh


def test_transform_does_not_depend_on_earlier_calls(openvino_measured):
    X = np.random.default_rng(0).integers(0, 256, (40, SIZE, SIZE, 3), dtype=np.uint8)
    transformer = PretrainedFeatureTransformer(LIGHT, weights=None, input_size=SIZE)
    before = transformer.transform(X[:5])
    transformer.transform(X)  # a large call
    np.testing.assert_array_equal(transformer.transform(X[:5]), before)
    assert transformer._network().engine == "openvino"
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(transformer)).transform(X[:5]), before)


def test_a_fitted_model_keeps_its_engine(openvino_measured, colours):
    X, y = colours
    clf = FineTunedClassifier(LIGHT, weights=None, input_size=32, unfreeze=0, random_state=0).fit(X[:12], y[:12])
    assert (clf.engine_, clf.precision_) == ("tensorflow", "float32")  # 12 images never repay 0.1 s
    before = clf.predict_proba(X[:5])
    big = np.concatenate([X] * 20)
    clf.predict_proba(big)  # a large call converts nothing and switches nothing
    np.testing.assert_array_equal(clf.predict_proba(X[:5]), before)
    restored = pickle.loads(pickle.dumps(clf))
    assert (restored.engine_, restored.precision_) == (clf.engine_, clf.precision_)
    np.testing.assert_array_equal(restored.predict_proba(X[:5]), before)
    many = FineTunedClassifier(LIGHT, weights=None, input_size=32, unfreeze=0, random_state=0)
    many.fit(np.concatenate([X] * 4), np.concatenate([y] * 4))
    assert many.engine_ == "openvino"  # 96 images repay the (measured) 0.1 s conversion
    np.testing.assert_array_equal(many.predict_proba(X[:5]), many.predict_proba(X[:5]))


FIRST_CALL = """
import json, sys, time
import numpy as np
start = time.perf_counter()
from skptm import PretrainedFeatureTransformer
from skptm.engines import openvino
X = np.random.default_rng(0).integers(0, 256, (32, 48, 48, 3), dtype=np.uint8)
transformer = PretrainedFeatureTransformer("{backbone}", weights=None, input_size=48)
transformer.transform(X)
print(json.dumps({{"engine": transformer._network().engine, "conversions": openvino.cache_info()["conversions"]}}))
"""


@pytest.mark.exhaustive  # slow (a real process pool or a fresh process): in the second tier, which .ci/run also runs
def test_a_first_call_in_a_fresh_process_converts_nothing(tmp_path):
    """No first-call cliff: with an empty cache folder nothing is converted
    (benchmarks/first_call.py times it against TensorFlow alone)."""
    script = textwrap.dedent(FIRST_CALL.format(backbone="resnet50"))
    env = {**os.environ, "SKPTM_CACHE_DIR": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.splitlines()[-1]) == {"engine": "tensorflow", "conversions": 0}


@pytest.mark.parametrize("input_size", [(0, 0), -5, "48", True])
def test_calibrate_refuses_an_input_size_that_is_not_one(input_size):
    with pytest.raises(ValueError, match="input_size must be an int >= 1"):
        calibration.calibrate([LIGHT], weights=None, input_size=input_size, verbose=0)
