"""Ansible's YAML inventory format and the JSON of ``ansible-inventory --list``, from parsed data.

YAML::

    all:
      hosts: {mail.example.com: }
      children:
        webservers:
          hosts: {foo.example.com: , bar.example.com: {ansible_port: 5555}}
          vars: {ntp_server: ntp.example.com}

``--list`` (also what a dynamic inventory script prints)::

    {"_meta": {"hostvars": {"foo": {"ansible_host": "10.0.0.1"}}},
     "all": {"children": ["ungrouped", "webservers"]},
     "webservers": {"hosts": ["foo"], "vars": {}}}
"""

from __future__ import annotations

from typing import Any

from ...yamlfile import YamlDocument
from .ranges import PatternError, expand, split_port
from .tree import AnsibleTree, Var

YAML_KIND = "Ansible YAML inventory"
LIST_KIND = "ansible-inventory --list JSON"
GROUP_KEYS = ("hosts", "vars", "children")


def read_yaml_inventory(doc: YamlDocument) -> AnsibleTree:
    tree = AnsibleTree(doc.path, YAML_KIND)
    for name, body in doc.data.items():
        _yaml_group(tree, doc, (name,), name, body, parent=None)
    return tree


def _yaml_group(tree: AnsibleTree, doc: YamlDocument, location: tuple, name: Any, body: Any,
                parent: str | None) -> None:
    line = doc.line(location)
    if not isinstance(name, str) or not name:
        raise tree.error(f"group name {name!r} is not text", line)
    tree.group(name, line)
    if parent is not None:
        tree.add_child(parent, name, line)
    if body is None:
        return
    if not isinstance(body, dict):
        raise tree.error(f"group '{name}' must be a mapping of hosts, vars and children, got {body!r}", line)
    for key in body:
        if key not in GROUP_KEYS:
            raise tree.error(f"unknown key {key!r} in group '{name}'", doc.line(location + (key,)),
                             expected="hosts, vars or children")
    hosts = _mapping(tree, doc, location + ("hosts",), body.get("hosts"), f"hosts of group '{name}'")
    for pattern, host_vars in hosts.items():
        where = location + ("hosts", pattern)
        variables = _variables(tree, doc, where, host_vars, f"vars of host {pattern!r}")
        for host, port in _host_names(tree, pattern, doc.line(where)):
            tree.add_host(name, host, ([Var("ansible_port", port, doc.line(where))] if port else []) + variables,
                          doc.line(where))
    for var in _variables(tree, doc, location + ("vars",), body.get("vars"), f"vars of group '{name}'"):
        tree.group(name, line).vars[var.name] = var
    children = _mapping(tree, doc, location + ("children",), body.get("children"), f"children of group '{name}'")
    for child, child_body in children.items():
        _yaml_group(tree, doc, location + ("children", child), child, child_body, parent=name)


def _host_names(tree: AnsibleTree, pattern: Any, line: int | None) -> list[tuple[str, int | None]]:
    if not isinstance(pattern, str) or not pattern:
        raise tree.error(f"host name {pattern!r} is not text", line)
    try:
        base, port = split_port(pattern)
        return [(name, port) for name in expand(base)]
    except PatternError as exc:
        raise tree.error(str(exc), line) from None


def _mapping(tree: AnsibleTree, doc: YamlDocument, location: tuple, value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise tree.error(f"the {what} must be a mapping, got {value!r}", doc.line(location))
    return value


def _variables(tree: AnsibleTree, doc: YamlDocument, location: tuple, value: Any, what: str) -> list[Var]:
    variables = []
    for key, item in _mapping(tree, doc, location, value, what).items():
        if not isinstance(key, str) or not key:
            raise tree.error(f"variable name {key!r} in the {what} is not text", doc.line(location + (key,)))
        variables.append(Var(key, item, doc.line(location + (key,))))
    return variables


def read_list_json(doc: YamlDocument) -> AnsibleTree:
    tree = AnsibleTree(doc.path, LIST_KIND)
    for name, body in doc.data.items():
        if name == "_meta":
            continue
        location = (name,)
        line = doc.line(location)
        if not isinstance(name, str) or not name:
            raise tree.error(f"group name {name!r} is not text", line)
        tree.group(name, line)
        if isinstance(body, list):  # a dynamic inventory script may list a group's hosts and nothing else
            body = {"hosts": body}
        body = _mapping(tree, doc, location, body, f"group '{name}'")
        for key in body:
            if key not in GROUP_KEYS:
                raise tree.error(f"unknown key {key!r} in group '{name}'", doc.line(location + (key,)),
                                 expected="hosts, vars or children")
        for index, host in enumerate(_names(tree, doc, location + ("hosts",), body.get("hosts"), "host")):
            tree.add_host(name, host, [], doc.line(location + ("hosts", index)))
        for var in _variables(tree, doc, location + ("vars",), body.get("vars"), f"vars of group '{name}'"):
            tree.group(name, line).vars[var.name] = var
        for index, child in enumerate(_names(tree, doc, location + ("children",), body.get("children"), "group")):
            tree.add_child(name, child, doc.line(location + ("children", index)))
    meta = _mapping(tree, doc, ("_meta",), doc.data.get("_meta"), "_meta")
    hostvars = _mapping(tree, doc, ("_meta", "hostvars"), meta.get("hostvars"), "_meta.hostvars")
    for host, host_vars in hostvars.items():
        where = ("_meta", "hostvars", host)
        if not isinstance(host, str) or not host:
            raise tree.error(f"host name {host!r} is not text", doc.line(where))
        tree.set_host_vars(host, _variables(tree, doc, where, host_vars, f"hostvars of '{host}'"), doc.line(where))
    return tree


def _names(tree: AnsibleTree, doc: YamlDocument, location: tuple, value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise tree.error(f"expected a list of {what} names, got {value!r}", doc.line(location))
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise tree.error(f"{what} name {item!r} is not text", doc.line(location + (index,)))
    return value
