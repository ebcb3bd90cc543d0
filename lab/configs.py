"""The Phase 3 configuration files exactly as the guide has them.

Operators' files carry comments; so do these, so that the migration has to
keep them. Paths point into the lab root; everything else is the guide's.
"""

from __future__ import annotations

from pathlib import Path

from .layout import Layout, Node


def _section(name: str, **settings: object) -> str:
    """The ``server`` or ``agent`` block: one quoted string setting a line, in the guide's order."""
    lines = "".join(f'    {key} = "{value}"\n' for key, value in settings.items())
    return f"{name} {{\n{lines}}}"


#: The DataStore "sql" database types the lab can give its server.
DATASTORES = ("sqlite3", "postgres")


def server_conf(lay: Layout, trust_domain: str, port: int, database_type: str = "sqlite3",
                connection_string: str | None = None) -> str:
    """The guide's server.conf; the datastore is the guide's sqlite file unless told otherwise."""
    return server_conf_at(lay.server_socket, lay.server_data, trust_domain, port, database_type,
                          connection_string)


def server_conf_at(socket: Path, data_dir: Path, trust_domain: str, port: int, database_type: str = "sqlite3",
                   connection_string: str | None = None, bind_address: str = "127.0.0.1") -> str:
    """server.conf with its socket and data folder at these paths, listening on ``bind_address``."""
    connection_string = connection_string or f"{data_dir}/datastore.sqlite3"
    return f'''# SPIRE Server configuration - Phase 3 (Kubernetes SPIRE integration)
# Managed by the platform team. Node attestation: join tokens.
{_section("server", bind_address=bind_address, bind_port=port, socket_path=socket,
           trust_domain=trust_domain, data_dir=data_dir, log_level="DEBUG", ca_ttl="168h",
           default_x509_svid_ttl="1h")}

plugins {{
    DataStore "sql" {{
        plugin_data {{
            database_type = "{database_type}"
            connection_string = "{connection_string}"
        }}
    }}

    KeyManager "disk" {{
        plugin_data {{
            keys_path = "{data_dir}/keys.json"
        }}
    }}

    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
}}
'''


def agent_conf(lay: Layout, node: Node, trust_domain: str, port: int, docker_host: str) -> str:
    return agent_conf_at(node.agent_data, node.agent_socket, lay.bootstrap_bundle, trust_domain, port,
                         DOCKER_ATTESTOR.format(docker_host=docker_host))


#: Workloads identified by the labels kubelet puts on their containers (the guide's).
DOCKER_ATTESTOR = '''    # Workloads are identified by the labels kubelet puts on their containers.
    WorkloadAttestor "docker" {{
        plugin_data {{
            docker_socket_path = "{docker_host}"
        }}
    }}'''
#: Workloads identified by the user they run as (a systemd unit's User=).
UNIX_ATTESTOR = '''    # Workloads are identified by the user their systemd unit runs them as.
    WorkloadAttestor "unix" {
        plugin_data {}
    }'''


def agent_conf_at(data_dir: Path, socket: Path, bundle: Path, trust_domain: str, port: int,
                  workload_attestor: str, server_address: str = "127.0.0.1",
                  join_token_file: Path | None = None) -> str:
    """agent.conf with its data, socket and bootstrap bundle at these paths; ``join_token_file``:
    the agent reads its join token there (SPIRE >= 1.13.3), so none goes on a command line."""
    token = {"join_token_file": join_token_file} if join_token_file else {}
    how = ("a 0600 file named by join_token_file" if join_token_file
           else "passed in a 0600 file with -joinTokenFile at start")
    return f'''# SPIRE Agent configuration - Phase 3 (Kubernetes SPIRE integration)
# Node attestation: join token ({how}).
{_section("agent", data_dir=data_dir, log_level="DEBUG", server_address=server_address,
           server_port=port, socket_path=socket, trust_bundle_path=bundle,
           trust_domain=trust_domain, **token)}

plugins {{
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}

    KeyManager "disk" {{
        plugin_data {{
            directory = "{data_dir}"
        }}
    }}

{workload_attestor}
}}
'''
