"""What this machine is, as far as the speed of a network depends on it.

Everything the engine decision keys its measurements by lives here: the CPU
model and the instruction-set extensions that change which kernels run
(AVX2, AVX-512, AVX-512 BF16, AMX, NEON...), less those above a cap set
with ``ONEDNN_MAX_CPU_ISA``, the usable cores, the GPU, and the versions of
the libraries that compute. Two machines with the same
:func:`machine_key` run the same kernels at comparable speeds; any
difference gives another key, and nothing measured under one key is applied
under another.
"""

from __future__ import annotations

import functools
import os
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


#: oneDNN's names for the instruction sets ``ONEDNN_MAX_CPU_ISA`` caps
#: TensorFlow's and OpenVINO's kernels at, lowest first, each with the flags
#: it adds to the one before (later aliases share their level).
_ISA_LEVELS = (
    (("SSE41",), frozenset()),
    (("AVX",), frozenset({"avx"})),
    (("AVX2",), frozenset({"avx2", "fma", "f16c"})),
    (("AVX2_VNNI", "AVX2_VNNI_2"), frozenset({"avx_vnni"})),
    (("AVX512_CORE",), frozenset({"avx512f", "avx512bw", "avx512vl"})),
    (("AVX512_CORE_VNNI",), frozenset({"avx512_vnni"})),
    (("AVX512_CORE_BF16",), frozenset({"avx512_bf16"})),
    (("AVX512_CORE_FP16", "AVX10_1_512"), frozenset({"avx512_fp16"})),
    (("AVX512_CORE_AMX", "AVX10_1_512_AMX"), frozenset({"amx_tile", "amx_bf16", "amx_int8"})),
    (("AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16"), frozenset({"amx_fp16"})),
)


def isa_cap() -> str | None:
    """The instruction set oneDNN is capped at in this process, or ``None``.

    ``ONEDNN_MAX_CPU_ISA`` (or its older name ``DNNL_MAX_CPU_ISA``), read by
    TensorFlow's and OpenVINO's oneDNN when they start, keeps their kernels
    to that instruction set: on an AVX-512 machine, ``AVX2`` makes them run
    as on an AVX2 one (bfloat16 then fails in both). ``ALL`` and
    ``DEFAULT`` cap nothing.
    """
    value = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    value = value.strip().upper()
    return None if value in ("", "ALL", "DEFAULT") else value


def capped_flags(flags, cap: str | None) -> frozenset:
    """``flags`` less those above the oneDNN instruction set ``cap``.

    An x86 cap oneDNN names (``"AVX2"``, ``"AVX512_CORE"``, ...) removes the
    x86 extensions above it; any other cap (an ARM one) removes nothing.

    Examples
    --------
    >>> sorted(capped_flags({"avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"}, "AVX2"))
    ['avx2', 'fma']
    >>> sorted(capped_flags({"avx2", "avx512f", "avx512_bf16"}, None))
    ['avx2', 'avx512_bf16', 'avx512f']
    """
    flags = frozenset(flags)
    level = next((i for i, (aliases, _) in enumerate(_ISA_LEVELS) if cap in aliases), None)
    if level is None:
        return flags
    return flags.difference(*(added for _, added in _ISA_LEVELS[level + 1 :]))


#: The CPU extensions that compute each reduced precision natively (x86, then ARM's BF16).
_NATIVE_PRECISION_FLAGS = {"bfloat16": {"avx512_bf16", "amx_bf16", "bf16"}, "float16": {"avx512_fp16", "amx_fp16"}}


def precision_hidden_by_cap(precision: str, flags=None, cap: str | None = None) -> bool:
    """Whether ``precision`` is native to this CPU but hidden from oneDNN by
    its instruction-set cap (:func:`isa_cap`).

    TensorFlow decides to compute it with oneDNN from the CPU's flags, and
    oneDNN then refuses, so the network fails; on a CPU without these
    instructions both libraries compute it another way, cap or not.
    ``flags`` and ``cap`` default to this CPU's and this process's.

    Examples
    --------
    >>> precision_hidden_by_cap("bfloat16", {"avx2", "avx512f", "avx512_bf16"}, "AVX2")
    True
    >>> precision_hidden_by_cap("bfloat16", {"avx2", "fma"}, "AVX2")
    False
    >>> precision_hidden_by_cap("float16", {"avx512f", "amx_fp16"}, "AVX512_CORE_AMX")
    True
    """
    flags = cpu_flags() if flags is None else frozenset(flags)
    cap = isa_cap() if cap is None else cap
    native = flags & _NATIVE_PRECISION_FLAGS.get(precision, set())
    return bool(native) and not capped_flags(native, cap)


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
    isa_cap : str or None
        The instruction set oneDNN's kernels are capped at (:func:`isa_cap`);
        ``flags`` then holds only the extensions under it.
    """

    architecture: str
    cpu_model: str
    flags: tuple
    cores: int
    gpu: str | None
    isa_cap: str | None = None

    @property
    def native_bfloat16(self) -> bool:
        """Whether the CPU computes bfloat16 natively (AVX-512 BF16, AMX, ARM BF16)."""
        return bool(set(self.flags) & _NATIVE_PRECISION_FLAGS["bfloat16"])

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
        instruction_set = self.instruction_set
        if self.isa_cap:
            instruction_set += f" under ONEDNN_MAX_CPU_ISA={self.isa_cap}"
        text = f"{self.cpu_model} ({self.architecture}, {instruction_set}), {self.cores} cores"
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
    cap = isa_cap()
    return Machine(
        architecture=platform.machine(),
        cpu_model=model,
        flags=tuple(sorted(capped_flags(flags & RELEVANT_FLAGS, cap))),
        cores=usable_cores(),
        gpu=f"{gpu[0]} (compute capability {'.'.join(map(str, gpu[1] or ()))})" if gpu else None,
        isa_cap=cap,
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
    # Without a cap the key is what it was before caps were known: earlier measurements stay valid.
    described = {key: value for key, value in asdict(machine).items() if key != "isa_cap" or value}
    parts = [f"{key}={value}" for key, value in sorted({**described, **versions}.items())]
    return content_hash(parts, length=20)
