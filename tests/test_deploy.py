"""docs/deploy.md's recipes: their flags exist, and their commands run a network on loopback.

What this proves and what it does not is said at the top of docs/deploy.md. No systemd, docker
or Kubernetes here: the commands are taken out of the recipes and run from the checkout, with
every address, port and path swapped for a local one.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from gossip.http import command

from .nodeproc import PASSWORD, ROOT, Cluster, NodeProc, free_port, wait_for

DEPLOY = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
#: Flags whose documented value is kept as is when a recipe is run here.
KEEP = {"--timer", "--max-peers", "--log-level", "--max-body"}


def _block(section: str, lang: str) -> str:
    """The first ```lang block under ``## section``."""
    body = DEPLOY.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(rf"```{lang}\n(.*?)```", body, flags=re.S)
    assert match, f"no {lang} block under {section}"
    return match.group(1)


def _node_args(argv: list[str]) -> list[str]:
    """The arguments of ``python -m gossip.http``, checked to be that command."""
    assert Path(argv[0]).name in ("python", "python3", "python3.11") and argv[1:3] == ["-m", "gossip.http"], argv
    return argv[3:]


def systemd_args() -> list[str]:
    [line] = [line for line in _block("systemd", "ini").splitlines() if line.startswith("ExecStart=")]
    return _node_args(shlex.split(line.removeprefix("ExecStart=")))


def container_file() -> dict[str, str]:
    """The container file's instructions, by keyword (each used once)."""
    found: dict[str, str] = {}
    for line in _block("Container", "dockerfile").splitlines():
        if line.strip() and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            assert keyword not in found, keyword
            found[keyword] = rest
    return found


def container_args() -> tuple[list[str], list[str]]:
    """(ENTRYPOINT + CMD, ENTRYPOINT + the arguments of the documented ``docker run``)."""
    found = container_file()
    entry, cmd = json.loads(found["ENTRYPOINT"]), json.loads(found["CMD"])
    shell = _block("Container", "sh").replace("\\\n", " ")
    [run] = [line for line in shell.splitlines() if line.startswith("docker run ")]
    words = shlex.split(run)
    image = words.index("--config") - 1  # docker's own options, the image, then the node's arguments
    assert words[image] == "gossip" and words[image - 1] != "--env-file"
    return _node_args(entry + cmd), _node_args(entry + words[image + 1:])


def statefulset_args() -> list[str]:
    yaml = _block("Kubernetes", "yaml")
    lines = yaml.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "args:")
    indent = len(lines[start + 1]) - len(lines[start + 1].lstrip())
    args: list[str] = []
    for line in lines[start + 1:]:
        if len(line) - len(line.lstrip()) != indent or not line.lstrip().startswith("- "):
            break
        args.append(line.strip()[2:].strip('"'))
    return args


def _options() -> set[str]:
    return {opt for action in command._parser()._actions for opt in action.option_strings}


def localise(args: list[str], *, name: str, config: Path, port: int, joins: list[str], password_file: Path | None = None) -> list[str]:
    """A recipe's arguments with local values; every flag must be one the node has. The n-th
    ``--join`` becomes ``joins[n]``; ``--listen 0.0.0.0`` (never bound in tests) 127.0.0.1."""
    parser = command._parser()
    local = {"--name": name, "--config": str(config), "--port": str(port), "--ip": "127.0.0.1", "--listen": "127.0.0.1"}
    out: list[str] = []
    words = iter(args)
    join_index = 0
    for flag in words:
        assert flag in _options(), f"docs/deploy.md uses {flag}, which python -m gossip.http --help does not list"
        out.append(flag)
        if parser._option_string_actions[flag].nargs == 0:
            continue
        value = next(words)
        if flag == "--join":
            out.append(joins[join_index])
            join_index += 1
        elif flag == "--password-file":
            assert password_file is not None, "a recipe with --password-file needs a local file"
            out.append(str(password_file))
        elif flag in local:
            out.append(local[flag])
        else:
            assert flag in KEEP, f"add a local value for {flag} {value} to this test"
            out.append(value)
    assert join_index == len(joins), (args, joins)
    return out


def test_every_flag_of_every_recipe_is_one_the_node_has() -> None:
    options = _options()
    cmd, run = container_args()
    for args in (systemd_args(), cmd, run, statefulset_args()):
        flags = [word for word in args if word.startswith("--")]
        assert flags and set(flags) <= options, set(flags) - options
    assert "--retry-join" in systemd_args() and "--retry-join" in statefulset_args() and "--retry-join" in run


def test_the_recipes_keep_the_password_out_of_the_command_line_and_the_data_on_a_volume() -> None:
    for args in (systemd_args(), *container_args(), statefulset_args()):
        assert "--password" not in args
    assert "--password-file" in systemd_args() and "LoadCredential=password:" in _block("systemd", "ini")
    yaml = _block("Kubernetes", "yaml")
    assert re.search(r"- name: GOSSIP_PASSWORD\n\s+valueFrom:\n\s+secretKeyRef:", yaml)
    args = statefulset_args()
    for variable in re.findall(r"\$\((\w+)\)", " ".join(args)):  # each $(VAR) is set in env
        assert f"- name: {variable}\n" in yaml, variable
    assert "volumeClaimTemplates:" in yaml and "mountPath: /data" in yaml
    assert args[args.index("--config") + 1].startswith("/data/")
    # the join target is the headless Service, by name
    assert "clusterIP: None" in yaml and "serviceName: gossip" in yaml
    assert args[args.index("--join") + 1] == "gossip:8470"


def test_the_container_file_copies_what_exists_and_installs_nothing() -> None:
    found = container_file()
    assert found["FROM"] == "python:3.11-slim"
    source, target = found["COPY"].split()
    assert (ROOT / source / "__init__.py").is_file() and (ROOT / source / "http" / "__main__.py").is_file()
    assert f"PYTHONPATH={Path(target).parent}" in found["ENV"]
    assert "pip" not in found["RUN"]
    cmd, _ = container_args()
    assert cmd[cmd.index("--config") + 1].startswith(found["VOLUME"] + "/")


def test_the_recipes_commands_form_a_network_on_loopback(cluster: Cluster, tmp_path: Path) -> None:
    """The StatefulSet's command starts before any seed and retries; then a seed; then the
    systemd unit's (one target down, password from a file) and the container's; all converge."""
    seed_port = free_port()
    seed_address = f"127.0.0.1:{seed_port}"

    def start(name: str, args: list[str], *, joins: list[str], **kw: object) -> NodeProc:
        port = free_port()
        local = localise(args, name=name, config=tmp_path / f"{name}.json", port=port, joins=joins,
                         password_file=kw.pop("password_file", None))  # type: ignore[arg-type]
        return cluster.start(name, *local, port=port, **kw)  # type: ignore[arg-type]

    pod = start("pod", statefulset_args(), joins=[seed_address])  # it serves while it retries
    seed = cluster.start("seed", "--name", "seed", port=seed_port)
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    # the environment's password is wrong: the file's must be the one used
    unit = start("unit", systemd_args(), joins=[f"127.0.0.1:{free_port()}", seed_address],
                 password_file=secret, password="not the password")
    unit.password = PASSWORD
    cmd, run = container_args()
    box = start("box", run, joins=[seed_address])
    lone = start("lone", cmd, joins=[])  # the image's default command: a node of its own
    assert lone.guids() == set()

    members = [pod, seed, unit, box]
    wait_for(lambda: {p["guid"] for p in seed.peers()} == {n.node_guid for n in (pod, unit, box)}, 60,
             "every recipe to join the seed")
    made = {pod.create("from the pod"), unit.create("from the unit"), box.create("from the box")}
    wait_for(lambda: all(made <= node.guids() for node in members), 30, "every member to hold every gossip")
    for node in [*members, lone]:
        assert node.stop() == 0
    err = pod.proc.stderr.read() if pod.proc.stderr else ""
    assert f"could not join network default yet (round 1): {seed_address}: " in err and "Traceback" not in err
