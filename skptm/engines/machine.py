"""What this machine is, as far as the speed of a network depends on it.

Everything the engine decision keys its measurements by lives here: the CPU
model and the instruction-set extensions that change which kernels run
(AVX2, AVX-512, AVX-512 BF16, AMX, NEON...), the usable cores, the GPU, and
the versions of the libraries that compute. Two machines with the same
:func:`machine_key` run the same kernels at comparable speeds; any
difference gives another key, and nothing measured under one key is applied
under another.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import asdict, dataclass

from .._io import content_hash
from .._threads import usable_cores

#: Instruction-set extensions that change which kernels oneDNN and OpenVINO
#: run (x86 flags of ``/proc/cpuinfo``, ARM features of ``Features``).
RELEVANT_FLAGS = frozenset(
    {
        "avx", "avx2", "fma", "f16c", "avx_vnni",
        "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
        "amx_tile", "amx_bf16", "amx_int8",
        "asimd", "asimdhp", "sve", "sve2", "bf16", "i8mm",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Machine:
    """This machine as the engine decision sees it.

    Attributes
    ----------
    architecture : str
        ``platform.machine()``: ``x86_64``, ``aarch64``, ``arm64``...
    cpu_model : str
        The CPU's model name (``/proc/cpuinfo``; ``platform.processor()``
        elsewhere).
    flags : tuple of str
        The :data:`RELEVANT_FLAGS` the CPU has, sorted.
    cores : int
        Cores this process may use.
    gpu : str or None
        The first GPU TensorFlow sees, with its compute capability; ``None``
        without one (checked only once TensorFlow is imported).
    """

    architecture: str
    cpu_model: str
    flags: tuple
    cores: int
    gpu: str | None

    @property
    def native_bfloat16(self) -> bool:
        """Whether the CPU computes bfloat16 natively (AVX-512 BF16, AMX, ARM BF16)."""
        return bool(set(self.flags) & {"avx512_bf16", "amx_bf16", "bf16"})

    @property
    def instruction_set(self) -> str:
        """The widest vector extension, in words: ``"AMX"``, ``"AVX-512 BF16"``,
        ``"AVX-512"``, ``"AVX2"``, ``"NEON"``, ..."""
        flags = set(self.flags)
        for flag, words in (
            ("amx_bf16", "AMX"),
            ("avx512_bf16", "AVX-512 BF16"),
            ("avx512f", "AVX-512"),
            ("avx2", "AVX2"),
            ("sve", "SVE"),
            ("asimd", "NEON"),
        ):
            if flag in flags:
                return words
        return "baseline"

    def describe(self) -> str:
        """One line: ``AMD EPYC (x86_64, AVX2), 2 cores``, with the GPU if any."""
        text = f"{self.cpu_model} ({self.architecture}, {self.instruction_set}), {self.cores} cores"
        return f"{text}, GPU {self.gpu}" if self.gpu else text


def cpu_flags() -> frozenset:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    return _cpuinfo()[1]


@functools.cache
def _cpuinfo() -> tuple[str, frozenset]:
    model, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model name", "cpu model") and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = frozenset(value.split())
    except OSError:
        pass
    return model or platform.processor() or "unknown CPU", flags


def gpu_compute_capability():
    """The first GPU's compute capability ``(major, minor)``, or ``None`` (no GPU)."""
    details = _gpu_details()
    return details[1] if details else None


@functools.cache
def _gpu_details():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return details.get("device_name", gpus[0].name), details.get("compute_capability")


def this_machine() -> Machine:
    """This machine, now (cores can change with the process's CPU affinity)."""
    model, flags = _cpuinfo()
    gpu = _gpu_details()
    return Machine(
        architecture=platform.machine(),
        cpu_model=model,
        flags=tuple(sorted(flags & RELEVANT_FLAGS)),
        cores=usable_cores(),
        gpu=f"{gpu[0]} (compute capability {'.'.join(map(str, gpu[1] or ()))})" if gpu else None,
    )


def library_versions() -> dict:
    """The versions of the libraries whose kernels a measurement timed."""
    import keras
    import tensorflow as tf

    from . import openvino

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "openvino": openvino.version()}


def machine_key(machine: Machine | None = None) -> str:
    """A key of everything a speed measurement depends on besides the network:
    the machine and the libraries' versions."""
    machine = machine or this_machine()
    versions = library_versions()
    parts = [f"{key}={value}" for key, value in sorted({**asdict(machine), **versions}.items())]
    return content_hash(parts, length=20)
