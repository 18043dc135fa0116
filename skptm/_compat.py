"""Everything skptm needs from Keras that Keras does not offer publicly, in one place.

Each helper uses the public API where there is one and says what it falls
back on; ``tests/test_compat.py`` fails when a Keras release changes any of
these behaviours, so that the change is seen here and nowhere else.
"""

from __future__ import annotations

import os
import re

#: Keras's words when ``load_weights`` skips parts of a file (it only warns,
#: and keeps those layers' random weights).
PARTIAL_LOAD_MESSAGE = re.compile(r"freshly-initialized|could not be loaded|Skipping|mismatch", re.I)

#: Keras's words when ``keras.utils.get_file`` cannot download: the file's
#: address is the first group.
DOWNLOAD_FAILURE_MESSAGE = re.compile(r"URL fetch failure on (\S+?)(?=: )")


#: Layers whose ``get_config`` holds keys their constructor refuses, so that
#: ``from_config(get_config())`` fails (KerasHub 0.32's ViT embedding stores
#: the derived patch and position counts); :func:`layer_config` drops them.
#: ``tests/test_compat.py`` says when KerasHub fixes it.
CONFIG_KEYS_REFUSED = {"ViTPatchingAndEmbedding": ("num_patches", "num_positions")}


def layer_config(layer) -> dict:
    """``layer.get_config()`` as its class's ``from_config`` accepts it."""
    config = layer.get_config()
    for key in CONFIG_KEYS_REFUSED.get(type(layer).__name__, ()):
        config.pop(key, None)
    return config


def keras_home() -> str:
    """Where Keras keeps its cache (``$KERAS_HOME``, default ``~/.keras``), as
    Keras resolved it when it was imported."""
    try:
        from keras.src.backend.config import keras_home as private_keras_home

        return private_keras_home()
    except ImportError:  # a Keras without the private accessor: its documented rule
        pass
    home = os.environ.get("KERAS_HOME")
    if home:
        return home
    base = os.path.expanduser("~")
    if not os.access(base, os.W_OK):
        base = "/tmp"
    return os.path.join(base, ".keras")


def is_download_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is Keras failing to download a file (offline, firewalled)."""
    return "URL fetch failure" in str(exc)


def downloaded_file_name(exc: BaseException) -> str | None:
    """The name of the file Keras failed to download, from its message."""
    match = DOWNLOAD_FAILURE_MESSAGE.search(str(exc))
    return os.path.basename(match.group(1)) if match else None


def all_layers(model) -> list:
    """Every layer inside ``model``, nested models' layers included, depth first,
    in a fixed order (the model itself excluded)."""
    return list(model._flatten_layers(include_self=False))
