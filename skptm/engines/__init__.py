"""Engines: what runs a feature network's inference, behind one small interface.

An engine is an object with:

``name``
    What ``engine=`` takes.
``is_available()`` / ``require()``
    Whether its library is installed; ``require`` raises an ``ImportError``
    that says how to install it.
``version()``
    Its library's version (part of every cache key of its outputs).
``precisions(machine)``
    The precisions worth measuring on this machine.
``network_precision(precision)``
    The precision the Keras network must be built in for it.
``prepare(network, precision)``
    The network run by this engine: a :class:`~skptm.networks.FeatureNetwork`
    whose ``predict`` runs on it (converted and compiled on first use).
``is_prepared(network, precision)``
    Whether running it costs no conversion now.
``conversion_seconds(network, precision)`` (optional, for engines that convert)
    Seconds to convert and compile the network with no cache: what
    calibration records for deciding whether converting a fitted model pays.

:mod:`.tensorflow` and :mod:`.openvino` are the two shipped; another is one
module with an ``ENGINE`` object, listed in :data:`ENGINE_MODULES` or
registered by a package under the ``skptm.engines`` entry-point group.
Which engine and precision run a network is decided in one place,
:mod:`.decision`, from what :mod:`.calibration` measured on this machine.
"""

from __future__ import annotations

import functools
import importlib

#: The engines shipped with skptm, by name: module that defines ``ENGINE``.
ENGINE_MODULES = {
    "tensorflow": "skptm.engines.tensorflow",
    "openvino": "skptm.engines.openvino",
}

#: What ``engine=`` accepts: ``"auto"`` or an engine's name.
ENGINE_CHOICES = ("auto", *ENGINE_MODULES)

#: Precisions a network can compute in; ``precision=`` also takes ``"auto"``.
PRECISIONS = ("float32", "bfloat16", "float16")
PRECISION_CHOICES = (*PRECISIONS, "auto")


@functools.cache
def _plugins() -> dict:
    """Engines other packages register (entry-point group ``skptm.engines``)."""
    from importlib.metadata import entry_points

    return {entry.name: entry.value for entry in entry_points(group="skptm.engines")}


def engine_names() -> tuple:
    """Every engine's name: the shipped ones, then plug-ins."""
    return (*ENGINE_MODULES, *(name for name in _plugins() if name not in ENGINE_MODULES))


def get_engine(name: str):
    """The engine called ``name`` (see the module's docstring for its interface)."""
    target = ENGINE_MODULES.get(name) or _plugins().get(name)
    if target is None:
        raise ValueError(f"Unknown engine. Received: engine={name!r}; known: {', '.join(engine_names())}.")
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute or "ENGINE")


def prepare(network, engine: str, precision: str):
    """``network`` (built in ``get_engine(engine).network_precision(precision)``)
    run by ``engine`` in ``precision``."""
    return get_engine(engine).prepare(network, precision)
