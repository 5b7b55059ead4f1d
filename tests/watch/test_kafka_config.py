"""`[source] kind = "kafka"`: the keys it takes, what it refuses, and that only watch reads it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from canvas_tui.config import ConfigError, load_config
from canvas_tui.records import InputError
from canvas_tui.sources import open_source


def test_a_topic_source(tmp_path: Path) -> None:
    config = load_config(
        _write(tmp_path, "kind = 'kafka'\nbrokers = 'k1:9092, k2:9092'\ntopic = 'sis.enrollments'"),
        env={},
    )
    spec = config.source
    assert (spec.kind, spec.brokers, spec.topic, spec.group) == (
        "kafka",
        ("k1:9092", "k2:9092"),
        "sis.enrollments",
        "canvas-tui",
    )
    # sync, plan and check read a file or a query: a stream is refused with the reason
    with pytest.raises(InputError, match="canvas-tui watch"):
        open_source(spec)


def _write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "canvas-tui.toml"
    path.write_text(f"[canvas]\nbase_url = 'https://canvas.example.edu'\n[source]\n{source}\n")
    return path


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("kind = 'kafka'\ntopic = 't'", "source.brokers"),
        ("kind = 'kafka'\nbrokers = ['k1:9092']", "source.topic"),
        ("kind = 'kafka'\nbrokers = ['k1']\ntopic = 't'", "host:port"),
        ("kind = 'kafka'\nbrokers = ['k1:9092']\ntopic = 'a b'", "topic name"),
        ("kind = 'csv'\npath = 'e.csv'\ntopic = 't'", 'unless kind = "kafka"'),
        ("kind = 'kafka'\nbrokers = ['k:1']\ntopic = 't'\npath = 'e.csv'", "no path"),
    ],
)
def test_what_a_topic_source_refuses(tmp_path: Path, source: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        load_config(_write(tmp_path, source), env={})


def test_without_the_kafka_extra_the_topic_source_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from canvas_tui.config import SourceConfig
    from canvas_tui.engine.topic import TopicPoller

    monkeypatch.setitem(sys.modules, "aiokafka", None)  # `import aiokafka` fails
    spec = SourceConfig(kind="kafka", brokers=("k:9092",), topic="t")
    with pytest.raises(InputError, match=r"pip install 'canvas-tui\[kafka\]'"):
        TopicPoller(spec)
