"""Fixtures of the streaming tests (helpers in stream_helpers.py)."""

import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("safetensors")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream_helpers import make_config, write_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def llama_ckpt(tmp_path_factory):
    config = make_config("llama")
    return write_checkpoint(str(tmp_path_factory.mktemp("llama") / "ckpt"), config), config
