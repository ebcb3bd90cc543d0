"""The Phase 3 configuration files exactly as the guide has them.

Operators' files carry comments; so do these, so that the migration has to
keep them. Paths point into the lab root; everything else is the guide's.
"""

from __future__ import annotations

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
    connection_string = connection_string or f"{lay.server_data}/datastore.sqlite3"
    return f'''# SPIRE Server configuration - Phase 3 (Kubernetes SPIRE integration)
# Managed by the platform team. Node attestation: join tokens.
{_section("server", bind_address="127.0.0.1", bind_port=port, socket_path=lay.server_socket,
           trust_domain=trust_domain, data_dir=lay.server_data, log_level="DEBUG", ca_ttl="168h",
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
            keys_path = "{lay.server_data}/keys.json"
        }}
    }}

    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
}}
'''


def agent_conf(lay: Layout, node: Node, trust_domain: str, port: int, docker_host: str) -> str:
    return f'''# SPIRE Agent configuration - Phase 3 (Kubernetes SPIRE integration)
# Node attestation: join token (passed in a 0600 file with -joinTokenFile at start).
{_section("agent", data_dir=node.agent_data, log_level="DEBUG", server_address="127.0.0.1",
           server_port=port, socket_path=node.agent_socket, trust_bundle_path=lay.bootstrap_bundle,
           trust_domain=trust_domain)}

plugins {{
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}

    KeyManager "disk" {{
        plugin_data {{
            directory = "{node.agent_data}"
        }}
    }}

    # Workloads are identified by the labels kubelet puts on their containers.
    WorkloadAttestor "docker" {{
        plugin_data {{
            docker_socket_path = "{docker_host}"
        }}
    }}
}}
'''
