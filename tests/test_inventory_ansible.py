"""Ansible inventories read as they are: INI, YAML and ``ansible-inventory --list`` JSON.

The inventories are written the way Ansible's "How to build your inventory" shows
them; what farm makes of them is checked host by host, field by field.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import InputError
from orchestrator.inventory import Host, Inventory, load_inventory
from orchestrator.inventory.ansible import parse_if_ansible
from orchestrator.inventory.ansible.ranges import PatternError, expand, split_port
from orchestrator.inventory_writer import farm_yaml

# Ansible's documentation: two groups, group vars, children, a host range, inline host vars.
DOCS_INI = """\
mail.example.com

[webservers]
foo.example.com
bar.example.com

[dbservers]
one.example.com
two.example.com
three.example.com

[atlanta]
host1 http_port=80 maxRequestsPerChild=808
host2 http_port=303 maxRequestsPerChild=909 ansible_port=2201

[atlanta:vars]
ntp_server=ntp.atlanta.example.com
proxy=proxy.atlanta.example.com
ansible_user=atlanta-admin

[raleigh]
www[01:03].example.com ansible_port=5555 ansible_host=192.0.2.50

[southeast:children]
atlanta
raleigh

[southeast:vars]
some_server=foo.southeast.example.com
halon_system_timeout=30
self_destruct_countdown=60
escape_pods=2
ansible_user=southeast-admin
ansible_port=2222

[usa:children]
southeast
"""

# The docs' example of groups of groups, in both formats: the same inventory.
DOCS_GROUPS_INI = """\
mail.example.com

[webservers]
foo.example.com
bar.example.com

[dbservers]
one.example.com
two.example.com
three.example.com

[east]
foo.example.com
one.example.com
two.example.com

[west]
bar.example.com
three.example.com

[prod:children]
east

[test:children]
west
"""
DOCS_GROUPS_YAML = """\
ungrouped:
  hosts:
    mail.example.com:
webservers:
  hosts:
    foo.example.com:
    bar.example.com:
dbservers:
  hosts:
    one.example.com:
    two.example.com:
    three.example.com:
east:
  hosts:
    foo.example.com:
    one.example.com:
    two.example.com:
west:
  hosts:
    bar.example.com:
    three.example.com:
prod:
  children:
    east:
test:
  children:
    west:
"""

# What `ansible-inventory -i hosts --list` prints (group vars already merged into hostvars).
LIST_JSON = {
    "_meta": {"hostvars": {
        "nano-1": {"ansible_host": "192.0.2.11", "ansible_user": "farm", "farm_board": "jetson-nano",
                   "ansible_ssh_private_key_file": "~/.ssh/farm", "ansible_python_interpreter": "/usr/bin/python3"},
        "pi-1": {"ansible_host": "192.0.2.12", "ansible_port": 2222, "farm_board": "rpi4",
                 "farm_usb_ports": {"usb3-left": {"port": "2-1"}}},
        "bench-box": {"ansible_connection": "local"},
    }},
    "all": {"children": ["ungrouped", "edge"]},
    "edge": {"children": ["jetson", "pis"]},
    "jetson": {"hosts": ["nano-1"]},
    "pis": {"hosts": ["pi-1"]},
    "ungrouped": {"hosts": ["bench-box"]},
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def by_name(inventory: Inventory) -> dict[str, Host]:
    return {h.name: h for h in inventory.hosts}


def farm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          check=False, timeout=120, env={**os.environ, "COLUMNS": "250"})
    if check and done.returncode != 0:
        raise AssertionError(f"farm {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def test_the_docs_ini_inventory_gives_groups_as_tags_and_connection_fields(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path, "hosts.ini", DOCS_INI))
    assert inventory.kind == "Ansible INI inventory"
    hosts = by_name(inventory)
    assert list(hosts) == ["mail.example.com", "foo.example.com", "bar.example.com", "one.example.com",
                           "two.example.com", "three.example.com", "host1", "host2",
                           "www01.example.com", "www02.example.com", "www03.example.com"]
    mail = hosts["mail.example.com"]
    assert (mail.address, mail.port, mail.user, mail.tags) == ("mail.example.com", 22, None, ())
    assert hosts["foo.example.com"].tags == ("webservers",)
    # Nested groups flatten, innermost first; the child group's vars win over its parent's.
    host1 = hosts["host1"]
    assert (host1.address, host1.port, host1.user, host1.tags) == (
        "host1", 2222, "atlanta-admin", ("atlanta", "southeast", "usa"))
    # A host's own variable wins over every group's.
    assert hosts["host2"].port == 2201
    for number in ("01", "02", "03"):
        www = hosts[f"www{number}.example.com"]
        assert (www.address, www.port, www.user, www.tags) == (
            "192.0.2.50", 5555, "southeast-admin", ("raleigh", "southeast", "usa"))
    assert host1.source == f"{tmp_path / 'hosts.ini'}:13"


def test_variable_precedence_is_host_then_child_group_then_parent_then_all(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", """\
[all:vars]
ansible_user=everyone
farm_workdir=all-dir
farm_board=x86
ansible_python_interpreter=/usr/bin/python3

[parent:children]
child

[parent:vars]
ansible_user=parent-user
farm_workdir=parent-dir
farm_board=rpi4

[child]
h1 farm_board=rpi5
h2

[child:vars]
farm_workdir=child-dir
""")
    hosts = by_name(load_inventory(path))
    assert (hosts["h1"].user, hosts["h1"].workdir, hosts["h1"].board) == ("parent-user", "child-dir", "rpi5")
    assert (hosts["h2"].user, hosts["h2"].workdir, hosts["h2"].board) == ("parent-user", "child-dir", "rpi4")
    assert hosts["h2"].python == "/usr/bin/python3"


def test_ini_values_are_literals_on_host_lines_and_strings_in_vars(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", """\
[boards]
nano ansible_host=10.0.0.5 farm_board=jetson-nano farm_power_modes="{'MAXN': {'nvpmodel': 0, 'jetson_clocks': True}}"
pi:2200 ansible_host=10.0.0.6 farm_env="{'FARM_X': '1'}" farm_tags="['usb3']"

[boards:vars]
ansible_user='farm'
ansible_ssh_private_key_file=~/.ssh/farm lab key
ansible_python_interpreter=auto
farm_usb_ports={usb3-left: {port: 2-1, speed: 5000}}
""")
    hosts = by_name(load_inventory(path))
    nano, pi = hosts["nano"], hosts["pi"]
    assert nano.power_modes == {"MAXN": {"nvpmodel": 0, "jetson_clocks": True}}
    assert nano.usb_ports == {"usb3-left": {"port": "2-1", "speed": 5000}}
    # ":vars" values are whole lines of text (spaces and all); one pair of quotes is not part of them.
    assert (nano.user, nano.identity_file) == ("farm", "~/.ssh/farm lab key")
    assert nano.python == "python3", "interpreter discovery means farm's own default"
    assert (pi.address, pi.port, pi.env_dict, pi.tags) == ("10.0.0.6", 2200, {"FARM_X": "1"}, ("boards", "usb3"))


def test_the_docs_groups_example_reads_the_same_from_ini_and_yaml(tmp_path: Path) -> None:
    from_ini = load_inventory(write(tmp_path, "hosts.ini", DOCS_GROUPS_INI))
    from_yaml = load_inventory(write(tmp_path, "hosts.yaml", DOCS_GROUPS_YAML))
    assert from_yaml.kind == "Ansible YAML inventory"
    assert from_yaml.hosts == from_ini.hosts
    hosts = by_name(from_yaml)
    assert set(hosts["foo.example.com"].tags) == {"webservers", "east", "prod"}
    assert set(hosts["three.example.com"].tags) == {"dbservers", "west", "test"}
    assert hosts["mail.example.com"].tags == ()


def test_a_yaml_inventory_under_all_with_vars_ranges_and_ports(tmp_path: Path) -> None:
    path = write(tmp_path, "inventory.yml", """\
all:
  vars:
    ansible_user: farm
  hosts:
    mail.example.com:
  children:
    webservers:
      vars:
        farm_board: jetson-nano
      hosts:
        www[a:c].example.com:
          ansible_port: 2200
    dbservers:
      hosts:
        db.example.com:5309:
          ansible_host: 10.0.0.9
          farm_power_modes: {5W: {nvpmodel: 1, settle_seconds: 2}}
""")
    hosts = by_name(load_inventory(path))
    assert list(hosts) == ["mail.example.com", "wwwa.example.com", "wwwb.example.com", "wwwc.example.com",
                           "db.example.com"]
    www = hosts["wwwb.example.com"]
    assert (www.user, www.port, www.board, www.tags) == ("farm", 2200, "jetson-nano", ("webservers",))
    assert www.power_modes == {"10W": {"nvpmodel": 0}, "5W": {"nvpmodel": 1}}, "board defaults apply"
    db = hosts["db.example.com"]
    assert (db.address, db.port, db.power_modes) == ("10.0.0.9", 5309, {"5W": {"nvpmodel": 1, "settle_seconds": 2}})


def test_ansible_inventory_list_json_including_a_dynamic_scripts_bare_lists(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path, "inventory.json", json.dumps(LIST_JSON, indent=4)))
    assert inventory.kind == "ansible-inventory --list JSON"
    hosts = by_name(inventory)
    nano, pi, bench = hosts["nano-1"], hosts["pi-1"], hosts["bench-box"]
    assert (nano.address, nano.user, nano.identity_file, nano.python, nano.board, nano.tags) == (
        "192.0.2.11", "farm", "~/.ssh/farm", "/usr/bin/python3", "jetson-nano", ("jetson", "edge"))
    assert (pi.port, pi.usb_ports, pi.tags) == (2222, {"usb3-left": {"port": "2-1"}}, ("pis", "edge"))
    assert (bench.transport, bench.python, bench.tags) == ("local", sys.executable, ())
    assert nano.source == f"{tmp_path / 'inventory.json'}:4", "the line of its first mention"

    script = {"lab": ["a.example.com", "b.example.com"], "lab-vars": {"hosts": ["c"], "vars": {"ansible_user": "u"}}}
    hosts = by_name(load_inventory(write(tmp_path, "script.json", json.dumps(script))))
    assert [(h.name, h.tags, h.user) for h in hosts.values()] == [
        ("a.example.com", ("lab",), None), ("b.example.com", ("lab",), None), ("c", ("lab-vars",), "u")]


def test_farm_inventories_are_still_farms_own(tmp_path: Path) -> None:
    path = write(tmp_path, "farm.yaml", "hosts:\n  - name: a\n    address: b\n")
    assert load_inventory(path).kind == "farm inventory"
    assert load_inventory(None).kind == "farm inventory"


def test_a_plugin_config_or_inventory_script_is_refused_with_the_way_round_it(tmp_path: Path) -> None:
    script = write(tmp_path, "ec2.py", "#!/usr/bin/env python3\nprint('{}')\n")
    with pytest.raises(InputError, match=r"ec2.py: is a dynamic inventory script.*ec2.py --list > hosts.json"):
        load_inventory(script)
    plugin = write(tmp_path, "aws_ec2.yml", "# AWS\nplugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n")
    with pytest.raises(InputError, match=r"aws_ec2.yml:2: .*'amazon.aws.aws_ec2' inventory plugin.*--list"):
        load_inventory(plugin)


@pytest.mark.parametrize("name, text, line, variable, words", [
    ("h.ini", "[web]\nh1 ansible_port=70000\n", 2, "ansible_port", "port 70000 is out of range"),
    ("h.ini", "[web]\nh1\n[web:vars]\nansible_port=twenty\n", 4, "ansible_port", "got 'twenty'"),
    ("h.ini", "[web]\nh1 ansible_password=hunter2\n", 2, "ansible_password", "refuses passwords"),
    ("h.ini", "[web]\nh1\n[all:vars]\nansible_ssh_pass=hunter2\n", 4, "ansible_ssh_pass", "refuses passwords"),
    ("h.ini", "[web]\nh1\n\n[web:vars]\nfarm_bord=rpi4\n", 5, "farm_bord", "unknown farm variable"),
    ("h.ini", "[web]\nh1 ansible_connection=winrm\n", 2, "ansible_connection", "cannot reach a host over 'winrm'"),
    ("h.ini", "[web]\nh1 farm_transport=telnet\n", 2, "farm_transport", "unknown transport 'telnet'"),
    ("h.ini", "[web]\nh1 farm_power_modes=\"{5W: {nvpmodel: x}}\"\n", 2, "farm_power_modes.5W.nvpmodel", "got 'x'"),
    ("h.ini", "[web]\nh1 farm_env=\"{'A B': 1}\"\n", 2, "farm_env", "not a valid environment variable name"),
    ("h.ini", "[web]\nh$1\n", 2, None, "'h$1' is not a valid host name"),
    ("h.ini", "[web]\nh1\n[web:vars]\nx\n", 4, None, "expected key=value"),
    ("h.ini", "[web:vars]\nx=1\n", 1, None, "[web:vars] names the group 'web', which is never defined"),
    ("h.ini", "[web:children]\ndb\n", 2, None, "[web:children] names the group 'db', which is never defined"),
    ("h.ini", "[web:stuff]\nh1\n", 1, None, "section [web:stuff] has an unknown type"),
    ("h.ini", "[a:children]\nb\n[b:children]\na\n", 1, None, "is its own descendant"),
    ("h.ini", "[web]\nwww[01:5].example.com\n", 2, None, "same width"),
    ("h.ini", "[web]\nh[0:99999999]\n", 2, None, "stands for more than 10000 hosts"),
    ("h.ini", "[web]\nh1 'unclosed\n", 2, None, "No closing quotation"),
    ("h.ini", "[web]\n", 1, None, "defines no hosts"),
    ("h.yaml", "all:\n  children:\n    web:\n      hosts:\n        h1:\n          ansible_port: 0\n", 6,
     "ansible_port", "port 0 is out of range"),
    ("h.yaml", "all:\n  children:\n    web:\n      host:\n        h1:\n", 4, None, "unknown key 'host' in group 'web'"),
    ("h.yaml", "all:\n  hosts:\n    h1:\n      farm_usb_ports: {left: {speed: 5}}\n", 4,
     "farm_usb_ports.left.port", "needs its sysfs port path"),
    ("h.yaml", "all:\n  hosts:\n    h1:\n  vars:\n    ansible_user: [a]\n", 5, "ansible_user", "got ['a']"),
    ("h.json", '{"_meta": {"hostvars": {"h1": {"ansible_port": "x"}}},\n "web": {"hosts": "h1"}}', 2, None,
     "expected a list of host names"),
    ("h.json", '{"_meta": {"hostvars": {\n  "h1": {\n    "ansible_host": "a\\u0000b"}}}}', 3, "ansible_host",
     "control character"),
])
def test_errors_name_the_file_line_and_variable(tmp_path: Path, name: str, text: str, line: int,
                                                variable: str | None, words: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(InputError) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert message.split(": ")[1] in ("Ansible INI inventory", "Ansible YAML inventory",
                                      "ansible-inventory --list JSON"), message
    assert words in message, message
    if variable:
        assert f"variable '{variable}'" in message and caught.value.field == variable, message


def test_what_was_refused_before_is_now_read_and_said_so(tmp_path: Path) -> None:
    ini = write(tmp_path, "hosts.ini", DOCS_INI)
    yml = write(tmp_path, "hosts.yaml", "all:\n  hosts:\n    h1:\n")
    for path in (ini, yml):
        load_inventory(path)  # no "malformed YAML" and no "unknown top-level key"
    # A farm file with a typo is still a farm error.
    with pytest.raises(InputError, match="unknown top-level key"):
        load_inventory(write(tmp_path, "farm.yaml", "servers:\n  - name: a\n"))


@pytest.mark.parametrize("pattern, names", [
    ("www[01:50].example.com", [f"www{n:02d}.example.com" for n in range(1, 51)]),
    ("db-[a:f].example.com", [f"db-{c}.example.com" for c in "abcdef"]),
    ("www[1:9:4]", ["www1", "www5", "www9"]),
    ("rack[1:2]-node[a:b]", ["rack1-nodea", "rack1-nodeb", "rack2-nodea", "rack2-nodeb"]),
    ("[:2]x", ["0x", "1x", "2x"]),
    ("plain.example.com", ["plain.example.com"]),
])
def test_host_ranges_expand_as_ansible_documents(pattern: str, names: list[str]) -> None:
    assert expand(pattern) == names


@pytest.mark.parametrize("pattern", ["www[01:5]", "www[5:1]", "www[1:2:0]", "www[1:]", "w[x", "w[a:1]", "w[1:2:3:4]"])
def test_bad_host_ranges_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        expand(pattern)


def test_a_port_after_the_host_name() -> None:
    assert split_port("badwolf.example.com:5309") == ("badwolf.example.com", 5309)
    assert split_port("www[01:50].example.com") == ("www[01:50].example.com", None)
    assert split_port("www[1:3]:2222") == ("www[1:3]", 2222)
    assert split_port("fe80::1") == ("fe80::1", None)
    with pytest.raises(PatternError):
        split_port("host:ssh")


@pytest.mark.parametrize("name, text", [("hosts.ini", DOCS_INI), ("hosts.yaml", DOCS_GROUPS_YAML),
                                        ("inventory.json", json.dumps(LIST_JSON))])
def test_convert_writes_farm_yaml_that_loads_back_to_the_same_hosts(tmp_path: Path, name: str, text: str) -> None:
    original = load_inventory(write(tmp_path, name, text))
    converted = write(tmp_path, "farm.yaml", farm_yaml(original))
    again = load_inventory(converted)
    assert again.kind == "farm inventory"
    assert again.hosts == original.hosts
    assert [(h.power_modes, h.usb_ports) for h in again.hosts] == [(h.power_modes, h.usb_ports) for h in original.hosts]
    body = "".join(line for line in converted.read_text().splitlines(keepends=True) if not line.startswith("#"))
    assert "farm_" not in body and "ansible_" not in body


def test_convert_puts_what_every_host_shares_under_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", "[lab]\na ansible_host=10.0.0.1\nb ansible_host=10.0.0.2 ansible_port=2222\n"
                                        "[lab:vars]\nansible_user=farm\nfarm_board=rpi4\n")
    data = yaml.safe_load(farm_yaml(load_inventory(path)))
    assert data["defaults"] == {"user": "farm"}
    assert data["hosts"] == [{"name": "a", "address": "10.0.0.1", "board": "rpi4", "tags": ["lab"]},
                             {"name": "b", "address": "10.0.0.2", "port": 2222, "board": "rpi4", "tags": ["lab"]}]


def test_inventory_show_on_an_ansible_ini_inventory_lists_groups_addresses_users_ports(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", DOCS_INI)
    out = farm("inventory", "show", "-i", str(path)).stdout
    assert "(Ansible INI inventory)" in out
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[1:-1]]
            for line in out.splitlines() if line.startswith("│")}
    # columns: name, transport, address, port, user, board, python, tags
    assert rows["host1"][2:5] == ["host1", "2222", "atlanta-admin"]
    assert rows["host1"][7] == "atlanta, southeast, usa"
    assert rows["www02.example.com"][2:5] == ["192.0.2.50", "5555", "southeast-admin"]
    assert rows["foo.example.com"][7] == "webservers"
    assert len(rows) == 11


def test_inventory_convert_command_writes_a_file_and_will_not_overwrite_one(tmp_path: Path) -> None:
    source = write(tmp_path, "hosts.ini", DOCS_GROUPS_INI)
    out = tmp_path / "farm.yaml"
    done = farm("inventory", "convert", "-i", str(source), "-o", str(out))
    assert "Wrote 6 host(s)" in done.stdout and "Ansible INI inventory" in done.stdout
    assert load_inventory(out).hosts == load_inventory(source).hosts
    again = farm("inventory", "convert", "-i", str(source), "-o", str(out), check=False)
    assert again.returncode == 2 and "already exists; pass --force" in again.stderr
    farm("inventory", "convert", "-i", str(source), "-o", str(out), "--force")
    printed = farm("inventory", "convert", "-i", str(source)).stdout
    assert printed == out.read_text()


def test_a_cli_error_keeps_the_brackets_of_the_users_text(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", "[web:vars]\nx=1\n")
    done = farm("inventory", "show", "-i", str(path), check=False)
    assert done.returncode == 2
    assert "[web:vars] names the group 'web'" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr


# -- garbage in: an error that names the file, never a traceback ---------------------------------------------

FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HOSTILE_TEXT = ["$(reboot)", "`id`", "a;rm -rf ~", "a b", "it's", '"q"', "*", "~", "--help", "-oProxyCommand=x",
                "name\n", "\x00", "é", "名前", "\u202etxt", "$HOME", "{x}", "[", "]", "[1:9]", ":", "=", "#", ""]
hostile_text = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=20))
any_value = st.recursive(
    st.one_of(hostile_text, st.integers(-(10 ** 20), 10 ** 20), st.floats(), st.booleans(), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(hostile_text, inner, max_size=3)),
    max_leaves=6)
MAPPED = ["ansible_host", "ansible_port", "ansible_user", "ansible_ssh_private_key_file",
          "ansible_python_interpreter", "ansible_connection", "ansible_ssh_host", "ansible_ssh_port",
          "farm_board", "farm_transport", "farm_tags", "farm_env", "farm_workdir", "farm_power_modes",
          "farm_usb_ports", "farm_other", "ansible_password", "ansible_become_user"]
INI_LINES = ["[web]", "[db]", "[web:vars]", "[web:children]", "[all:vars]", "[x:bad]", "[", "db", "web",
             "h1", "h2 ansible_port=2222", "www[01:03].example.com", "h[a:c]:2200", "h1 farm_board=rpi4",
             "ansible_user=farm", "farm_env={A: 1}", "h3 farm_env=\"{'A': 'b'}\"", "; comment", "# comment",
             "h4 ansible_connection=local", "h5 x=[1,2", "h6 'a", "k=v=w", "=x"]


def assert_safe(inventory: Inventory) -> None:
    for host in inventory.hosts:
        for text in [host.name, host.address, host.python, host.workdir, *host.tags, *(v for _, v in host.env)]:
            assert not any(ord(c) < 32 or ord(c) == 127 for c in text), text
        assert 1 <= host.port <= 65535


@FEW
@given(lines=st.lists(st.one_of(st.sampled_from(INI_LINES), hostile_text), max_size=12))
def test_garbage_ini_gives_an_error_naming_the_file_or_safe_hosts(lines: list[str]) -> None:
    try:
        inventory = parse_if_ansible("[web]\n" + "\n".join(lines), "garbage.ini")
    except InputError as error:
        assert str(error).startswith("garbage.ini"), str(error)
        return
    assert inventory is not None
    assert_safe(inventory)


@FEW
@given(variable=st.sampled_from(MAPPED), value=any_value, in_group=st.booleans())
def test_a_hostile_variable_is_refused_by_name_or_accepted_safely(variable: str, value: object,
                                                                  in_group: bool) -> None:
    where = {"vars": {variable: value}, "hosts": {"h1": None}} if in_group else {"hosts": {"h1": {variable: value}}}
    text = yaml.safe_dump({"all": {"children": {"web": where}}}, allow_unicode=True)
    try:
        inventory = parse_if_ansible(text, "hostile.yaml")
    except InputError as error:
        message = str(error)
        assert message.startswith("hostile.yaml:") and "Ansible YAML inventory" in message, message
        if error.field is not None:
            assert error.field.split(".")[0] == variable, message
            assert f"variable '{error.field}'" in message
            assert error.line == (7 if in_group else 6), message  # the variable's own line
        return
    assert inventory is not None
    assert_safe(inventory)


@FEW
@given(data=st.data())
def test_a_truncated_or_mangled_ansible_inventory_never_crashes(data: st.DataObject) -> None:
    name, text = data.draw(st.sampled_from([("cut.ini", DOCS_INI), ("cut.yaml", DOCS_GROUPS_YAML),
                                            ("cut.json", json.dumps(LIST_JSON, indent=2))]))
    cut = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.sampled_from(["", ":", "- ", "[", "{", "]", "=", "&a [*a]", "\t", "'", "\x00", "[a:b]"]))
    try:
        inventory = parse_if_ansible(text[:cut] + junk, name)
    except InputError as error:
        assert str(error).startswith(name), str(error)
        return
    if inventory is not None:
        assert_safe(inventory)


def test_group_vars_and_host_vars_beside_the_inventory_with_ansibles_precedence(tmp_path: Path) -> None:
    ini = write(tmp_path, "hosts.ini", """\
[jetsons]
nano-1 ansible_host=10.0.0.1 ansible_user=from-host-line
nano-2 ansible_host=10.0.0.2

[jetsons:vars]
farm_workdir=from-inventory-group
ansible_port=2201

[edge:children]
jetsons
""")
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    (tmp_path / "host_vars").mkdir()
    write(tmp_path, "group_vars/all/10-login.yml", "ansible_user: from-group-vars-all\nfarm_board: x86\n")
    write(tmp_path, "group_vars/all/20-more.yaml", "ansible_ssh_private_key_file: ~/.ssh/farm\n")
    # A vault file holds secrets farm never reads; an inline !vault value farm does not need is ignored.
    write(tmp_path, "group_vars/all/vault.yml", "$ANSIBLE_VAULT;1.1;AES256\n6162636465\n")
    write(tmp_path, "group_vars/edge.yml", "farm_board: jetson-nano\nansible_become_password: !vault |\n"
                                           "  $ANSIBLE_VAULT;1.1;AES256\n  3132333435\n")
    write(tmp_path, "group_vars/jetsons", "ansible_port: 2222\n")
    write(tmp_path, "host_vars/nano-2.json", '{"ansible_user": "from-host-vars", "farm_workdir": "own"}')
    hosts = by_name(load_inventory(ini))
    one, two = hosts["nano-1"], hosts["nano-2"]
    # group_vars/* outrank the inventory's group vars; the inventory's host vars outrank group_vars.
    assert (one.user, one.port, one.workdir, one.board, one.identity_file) == (
        "from-host-line", 2222, "from-inventory-group", "jetson-nano", "~/.ssh/farm")
    assert (two.user, two.workdir) == ("from-host-vars", "own")

    write(tmp_path, "host_vars/nano-1.yml", "\n\nansible_port: 99999\n")
    with pytest.raises(InputError) as caught:
        load_inventory(ini)
    assert str(caught.value).startswith(f"{tmp_path / 'host_vars' / 'nano-1.yml'}:3: Ansible INI inventory: "
                                        "host 'nano-1': variable 'ansible_port': port 99999 is out of range")
    write(tmp_path, "host_vars/nano-1.yml", "ansible_user: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  3132\n")
    with pytest.raises(InputError, match="variable 'ansible_user': is encrypted with ansible-vault"):
        load_inventory(ini)
    write(tmp_path, "host_vars/nano-1.yml", "- a list\n")
    with pytest.raises(InputError, match="nano-1.yml:1: Ansible INI inventory: a vars file must be a mapping"):
        load_inventory(ini)


@pytest.mark.parametrize("text, expected", [
    ("mail.example.com\nfoo.example.com\n", [("mail.example.com", 22), ("foo.example.com", 22)]),
    ("h1 ansible_port=2200\n", [("h1", 2200)]),
    ("\ufeff[web]\r\nh1:2200\r\nh2\r\n", [("h1", 2200), ("h2", 22)]),
])
def test_an_ini_inventory_is_known_by_its_content_not_its_name(tmp_path: Path, text: str,
                                                               expected: list[tuple[str, int]]) -> None:
    inventory = load_inventory(write(tmp_path, "hosts", text))
    assert inventory.kind == "Ansible INI inventory"
    assert [(h.name, h.port) for h in inventory.hosts] == expected


# Each inventory beside its listing by ansible-core 2.19.14's own `ansible-inventory -i FILE --list`:
# what farm reads from the file is what Ansible itself makes of it.
ANSIBLE_LISTED = Path(__file__).resolve().parent / "ansible_inventories"


@pytest.mark.parametrize("source, listing", [
    ("docs.ini", "docs.list.json"), ("literals.ini", "literals.list.json"),
    ("precedence.ini", "precedence.list.json"), ("all.yml", "all.list.json"),
    ("vars_dirs/hosts", "vars_dirs.list.json"), ("directory", "directory.list.json"),
])
def test_farm_reads_an_inventory_as_ansible_itself_lists_it(source: str, listing: str) -> None:
    ours = load_inventory(ANSIBLE_LISTED / source)
    ansibles = by_name(load_inventory(ANSIBLE_LISTED / listing))
    assert sorted(h.name for h in ours.hosts) == sorted(ansibles)
    for host in ours.hosts:
        theirs = ansibles[host.name]
        # --list orders groups its own way: the same tags, maybe not in the same order.
        assert (host, host.power_modes, host.usb_ports) == (
            dataclasses.replace(theirs, tags=tuple(sorted(theirs.tags, key=host.tags.index))),
            theirs.power_modes, theirs.usb_ports), host.name


def test_an_inventory_directory_merges_its_files_and_reads_its_vars_directories(tmp_path: Path) -> None:
    inventory = tmp_path / "production"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "edge").mkdir()
    write(inventory, "01-jetsons.ini", "[jetsons]\nnano-1 ansible_host=10.0.0.1\n[jetsons:vars]\nansible_port=2201\n")
    write(inventory, "edge/02-pis.yml", "pis:\n  hosts:\n    pi-1:\n      ansible_host: 10.0.0.2\n"
                                       "edge:\n  children:\n    jetsons:\n    pis:\n")
    write(inventory, "group_vars/edge.yml", "ansible_user: farm\n")
    write(inventory, "README.md", "# not an inventory: Ansible skips .md files, and so does farm\n")
    write(inventory, "hosts.bak", "[old]\ngone\n")
    loaded = load_inventory(inventory)
    assert loaded.kind == "Ansible inventory directory"
    hosts = by_name(loaded)
    assert [(h.name, h.address, h.port, h.user, h.tags) for h in hosts.values()] == [
        ("nano-1", "10.0.0.1", 2201, "farm", ("jetsons", "edge")), ("pi-1", "10.0.0.2", 22, "farm", ("pis", "edge"))]
    assert hosts["pi-1"].source == f"{inventory / 'edge' / '02-pis.yml'}:3"

    write(inventory, "03-bad.ini", "[more]\nh1 ansible_port=0\n")
    with pytest.raises(InputError) as caught:
        load_inventory(inventory)
    assert str(caught.value).startswith(f"{inventory / '03-bad.ini'}:2: Ansible inventory directory: host 'h1': "
                                        "variable 'ansible_port': port 0 is out of range"), str(caught.value)
    (inventory / "03-bad.ini").unlink()
    write(inventory, "03-bad.yaml", "just: [a farm file]\n")
    with pytest.raises(InputError, match="03-bad.yaml: is in the inventory directory .* not an Ansible inventory"):
        load_inventory(inventory)
    (inventory / "group_vars" / "nothing-here").mkdir()
    with pytest.raises(InputError, match="holds no inventory files"):
        load_inventory(inventory / "group_vars" / "nothing-here")
