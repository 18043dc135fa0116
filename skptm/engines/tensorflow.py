"""The TensorFlow engine: the Keras network itself, in the precision it was built in."""

from __future__ import annotations

NAME = "tensorflow"


class TensorFlowEngine:
    """Runs the Keras feature network as it is (``predict_on_batch``).

    Precision is a property of the Keras network (its dtype policy), so the
    network must be built in the precision asked for.
    """

    name = NAME

    def is_available(self) -> bool:
        return True

    def require(self) -> None:
        """TensorFlow is a dependency of skptm: always there."""

    def version(self) -> str:
        import tensorflow as tf

        return tf.__version__

    def precisions(self, machine) -> tuple:
        """Precisions worth measuring here: bfloat16 only where computed natively."""
        if machine.gpu:
            return ("float32", "bfloat16", "float16")
        return ("float32", "bfloat16") if machine.native_bfloat16 else ("float32",)

    def network_precision(self, precision: str) -> str:
        return precision

    def prepare(self, network, precision: str):
        if network.precision != precision:
            raise ValueError(f"TensorFlow runs the network in the precision it was built in ({network.precision}).")
        return network

    def is_prepared(self, network, precision: str) -> bool:
        return True


ENGINE = TensorFlowEngine()
