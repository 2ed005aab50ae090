from pathlib import Path

import pytest
import yaml

from minijet import config, config_limits
from minijet.errors import ConfigError

CONF = Path(__file__).resolve().parent.parent / "conf" / "minijet.yaml"


def test_documented_file_lists_every_key_with_its_default():
    data = yaml.safe_load(CONF.read_text())
    assert set(data) == set(config.SCHEMA)
    for section, keys in config.SCHEMA.items():
        assert set(data[section]) == set(keys), section
    assert config.from_dict(data).as_dict() == config.from_dict(None).as_dict()


def test_sizes_and_durations():
    assert config.parse_size("64MiB") == 64 * 1024 * 1024
    assert config.parse_size("1.5KiB") == 1536
    assert config.parse_size(4096) == 4096
    assert config.parse_size("2GB") == 2 * 10**9
    assert config.parse_duration("3s") == 3.0
    assert config.parse_duration("500ms") == 0.5
    assert config.parse_duration("2m") == 120.0
    assert config.parse_duration(1.5) == 1.5


@pytest.mark.parametrize("data, words", [
    ({"dfs": {"blocksize": 1}}, "dfs.blocksize"),
    ({"nosuch": {}}, "nosuch"),
    ({"dfs": {"block_size": "lots"}}, "dfs.block_size"),
    ({"nameserver": {"dead_timeout": "soon"}}, "nameserver.dead_timeout"),
    ({"dfs": {"replication": "three"}}, "dfs.replication"),
    ({"dataserver": {"fsync": "yes"}}, "dataserver.fsync"),
    ({"dfs": 3}, "dfs"),
    ({"security": {"admins": {"ops": 1}}}, "security.admins"),
    ({"security": {"admins": [["ops"]]}}, "security.admins"),
])
def test_bad_keys_and_values_name_the_key(data, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        config.from_dict(data)


def test_a_list_of_names_is_a_yaml_list_or_comma_separated():
    assert config.from_dict(None).get("security.admins") == []
    assert config.from_dict({"security": {"admins": ["ops", "root"]}}).get(
        "security.admins") == ["ops", "root"]
    assert config.load(None, config.parse_overrides(["security.admins=ops, root"])).get(
        "security.admins") == ["ops", "root"]
    assert config.load(None, config.parse_overrides(["security.admins="])).get(
        "security.admins") == []


def test_lookup_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINIJET_CONF", raising=False)
    assert config.load().source == "defaults"
    local = tmp_path / ".minijet" / "minijet.yaml"
    local.parent.mkdir()
    local.write_text("dfs: {replication: 2}\n")
    assert config.load().get("dfs.replication") == 2
    env = tmp_path / "env.yaml"
    env.write_text("dfs: {replication: 1}\n")
    monkeypatch.setenv("MINIJET_CONF", str(env))
    assert config.load().get("dfs.replication") == 1
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("")
    assert config.load(str(explicit)).get("dfs.replication") == 3


def test_overrides_and_bad_files(tmp_path):
    cfg = config.load(None,
                      config.parse_overrides(["dfs.block_size=1MiB", "node.host=host7"]))
    assert cfg.get("dfs.block_size") == 1024 * 1024
    assert cfg.host == "host7"
    with pytest.raises(ConfigError, match="key=value"):
        config.parse_overrides(["dfs.block_size"])
    with pytest.raises(ConfigError, match="unknown config key"):
        config.parse_overrides(["dfs.nope=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("dfs: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(str(bad))
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("data, words", [
    ({"rpc": {"retries": -1}}, "config key rpc.retries: -1 is not allowed; it must be at least 0"),
    ({"rpc": {"timeout": 0}}, "config key rpc.timeout: 0 is not allowed; it must be more than 0"),
    ({"dfs": {"checksum_chunk_size": 0}}, "config key dfs.checksum_chunk_size: 0"),
    ({"dfs": {"block_size": 100}}, "dfs.block_size: 100 is not allowed; it must be a multiple"),
    ({"dfs": {"block_size": "96KiB"}}, "dfs.block_size: 98304"),
    ({"dfs": {"replication": 0}}, "dfs.replication: 0 is not allowed; it must be from 1 to 1024"),
    ({"nameserver": {"safemode_threshold": 1.5}}, "nameserver.safemode_threshold: 1.5"),
    ({"taskserver": {"sort_buffer": "1KiB"}}, "taskserver.sort_buffer: 1024"),
    ({"dataserver": {"health_address": "host1"}}, "dataserver.health_address: host1 is not "
     "allowed; it must be host:port"),
    ({"dataserver": {"health_address": "host1:70000"}}, "dataserver.health_address: host1:70000"),
])
def test_values_out_of_range_name_key_value_and_what_is_allowed(data, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        config.from_dict(data)
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        (section, keys), = data.items()
        (key, value), = keys.items()
        config.from_dict(None).with_overrides({f"{section}.{key}": value})


def test_every_range_rule_names_a_key_and_zero_is_kept_where_it_means_something():
    for dotted in config_limits.RULES:
        section, key = dotted.split(".")
        assert key in config.SCHEMA[section], dotted
    cfg = config.from_dict({"nameserver": {"safemode_extension": 0},
                            "jobserver": {"locality_delay": "0s"},
                            "taskserver": {"slots": 0}, "dataserver": {"capacity": 0}})
    assert cfg.get("jobserver.locality_delay") == 0


def test_rack_of_asks_the_os_for_the_host_name_only_when_a_node_rack_is_set(monkeypatch):
    asked = []
    monkeypatch.setattr(config.socket, "gethostname", lambda: asked.append(1) or "me")
    cfg = config.from_dict({"topology": {"racks": {"h1": "/r1"}}})
    assert [cfg.rack_of(h) for h in ("h1", "me", "h2")] == ["/r1", "/default-rack",
                                                             "/default-rack"]
    assert asked == []
    assert config.from_dict({"node": {"rack": "/mine"}}).rack_of("me") == "/mine"


def test_the_shipped_config_reads_the_same_with_libyaml_as_with_the_python_loader():
    # the config is parsed by libyaml where PyYAML has it (3 ms less per TaskHost)
    text = CONF.read_text() + "extra:\n  when: 2026-11-30\n  size: 64M\n  off: no\n  list: [1, 2.5, ~]\n"
    assert config._parse_yaml(text) == yaml.safe_load(text)
    with pytest.raises(yaml.YAMLError):
        config._parse_yaml("a: [1, 2")
