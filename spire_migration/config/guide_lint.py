"""Spot the guide's text in an operator's configs where real SPIRE would refuse it.

Each finding names the guide's line, what SPIRE does with it and the fix. The
migration's preflight refuses to start on one (before any change) unless step 4
fixes it anyway.

>>> from spire_migration.config.hclconfig import HclConfig
>>> agent = HclConfig.parse('plugins {\\n  WorkloadAttestor "docker" {\\n    plugin_data {\\n'
...                         '      docker_socket_path = "/var/run/docker.sock"\\n    }\\n  }\\n}\\n')
>>> [f.key for f in lint(None, agent)]
['docker_socket_path']
"""

from __future__ import annotations

from dataclasses import dataclass

from spire_migration.config.hclconfig import SpireConfig


@dataclass(frozen=True)
class Finding:
    key: str
    file: str
    text: str
    fix: str
    fixed_by_step4: bool = False


def lint(server: SpireConfig | None, agent: SpireConfig | None) -> list[Finding]:
    out: list[Finding] = []
    for name, cfg in (("server.conf", server), ("agent.conf", agent)):
        if cfg is None:
            continue
        tpm = cfg.plugins("NodeAttestor").get("tpm")
        if tpm is not None and "plugin_cmd" not in tpm:
            out.append(Finding("tpm_builtin", name,
                               'NodeAttestor "tpm" without plugin_cmd (the guide\'s): SPIRE has no built-in "tpm" '
                               "plugin and does not start with it",
                               'remove that block: the suite adds NodeAttestor "tpm_devid" (or set attestor.profile '
                               '= "tpm" with the spire-tpm-plugin binaries)'))
        if tpm is not None and "hash_algorithm" in (tpm.get("plugin_data") or {}):
            out.append(Finding("hash_algorithm", name, "hash_algorithm is no key of any SPIRE TPM attestor",
                               "remove hash_algorithm"))
    if agent is not None:
        attestors = sorted(agent.plugins("NodeAttestor"))
        if len(attestors) > 1:
            out.append(Finding("agent_attestors", "agent.conf",
                               f"{len(attestors)} NodeAttestors {attestors} (the guide's dual agent config): the agent "
                               'refuses to start ("expected exactly 1 but got %d")' % len(attestors),
                               "keep one; step 4 leaves exactly the TPM one", fixed_by_step4=True))
        docker = agent.plugins("WorkloadAttestor").get("docker")
        path = ((docker or {}).get("plugin_data") or {}).get("docker_socket_path")
        if isinstance(path, str) and "://" not in path:
            out.append(Finding("docker_socket_path", "agent.conf",
                               f'docker_socket_path = "{path}" (the guide\'s): the agent crashes with '
                               f'"unable to parse docker host `{path}`"',
                               f'write it as a URL: docker_socket_path = "unix://{path}"'))
    return out
