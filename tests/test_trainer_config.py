"""Run configs: TOML tables, --set overrides, and which folder a relative path is relative to."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxflip.trainer.config import ConfigError, load_config, to_toml, with_manifest_absolute

REPO = Path(__file__).resolve().parents[1]


def test_paths_in_the_file_follow_the_file_and_paths_typed_follow_the_shell(tmp_path: Path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    config_file = folder / "run.toml"
    config_file.write_text('[data]\nmanifest = "../data/m.jsonl"\n[train]\ninit_from = "../runs/a.pt"\n'
                           'trainable = "duration"\n')
    config = load_config(config_file)
    assert config.manifest_path().resolve() == tmp_path / "data" / "m.jsonl"
    assert config.init_path().resolve() == tmp_path / "runs" / "a.pt"
    monkeypatch.chdir(tmp_path)
    typed = load_config(config_file, ['data.manifest="mine/m.jsonl"', 'train.init_from="runs/b.pt"'])
    assert typed.manifest_path() == tmp_path / "mine" / "m.jsonl"
    assert typed.init_path() == tmp_path / "runs" / "b.pt"
    saved = to_toml(with_manifest_absolute(typed))
    assert f'init_from = "{tmp_path / "runs" / "b.pt"}"' in saved


def test_the_shipped_configs_load():
    stage1 = load_config(REPO / "configs" / "s2s_flow.toml")
    stage2 = load_config(REPO / "configs" / "s2s_flow_duration.toml")
    assert stage1.model.duration_smoothing == 1 and stage2.model.duration_smoothing == 9
    assert stage2.train.trainable == "duration"
    assert stage2.init_path().name == f"step_{stage1.train.max_steps:08d}.pt"
    assert {k: v for k, v in stage1.model.to_dict().items() if k != "duration_smoothing"} == \
        {k: v for k, v in stage2.model.to_dict().items() if k != "duration_smoothing"}


@pytest.mark.parametrize("override, message", [
    ('train.trainable="flow"', "not one of all, duration"),
    ("model.duration_smoothing=4", "must be an odd number"),
    ("train.lr=0", "train.lr must be > 0"),
    ("nope.x=1", "unknown table"),
])
def test_bad_values_are_refused_in_one_line(override: str, message: str):
    with pytest.raises(ConfigError, match=message):
        load_config(REPO / "configs" / "tiny.toml", [override, 'train.init_from="x.pt"'])


def test_saved_config_escapes_strings_and_reads_back_the_same(tmp_path: Path):
    folder = tmp_path / 'odd "name" \\ with\ttab'
    folder.mkdir()
    config_file = folder / "run.toml"
    config_file.write_text('[data]\nmanifest = "m.jsonl"\n')
    config = with_manifest_absolute(load_config(config_file))
    saved = tmp_path / "saved.toml"
    saved.write_text(to_toml(config))
    again = load_config(saved)
    assert again.data.manifest == config.data.manifest == str(folder / "m.jsonl")
    assert again.train == config.train and again.model == config.model
