"""Edit SPIRE configs (server.conf, agent.conf) in place, in the text.

python-hcl2 can read a config but ``hcl2.dumps`` drops comments and
reformats, so operators' files would lose their notes. Here every edit splices
the text at the exact span of a block or attribute, found by a small
tokenizer that knows strings, comments and heredocs; then the new text is
re-parsed with python-hcl2 and checked to hold the intended change and
nothing else.

>>> cfg = HclConfig.parse('''
... # join_token for now
... plugins {
...     NodeAttestor "join_token" {
...         plugin_data {}
...     }
... }
... ''', name="server.conf")
>>> cfg.plugins("NodeAttestor")
{'join_token': {'plugin_data': {}}}
>>> new = cfg.with_plugin("NodeAttestor", "tpm_devid",
...                       'plugin_data {\\n    devid_ca_path = "/x"\\n}')
>>> print(new.text)
<BLANKLINE>
# join_token for now
plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
<BLANKLINE>
    NodeAttestor "tpm_devid" {
        plugin_data {
            devid_ca_path = "/x"
        }
    }
}
<BLANKLINE>
>>> sorted(new.plugins("NodeAttestor"))
['join_token', 'tpm_devid']
>>> new.without_plugin("NodeAttestor", "tpm_devid").text == cfg.text
True
"""

from __future__ import annotations

import os

from spire_migration.config.hclconfig.base import SpireConfig, read_text
from spire_migration.config.hclconfig.editor import HclConfig
from spire_migration.config.hclconfig.jsonconfig import JsonConfig, looks_like_json

__all__ = ["HclConfig", "JsonConfig", "SpireConfig", "load_config", "parse_config"]


def parse_config(text: str, name: str = "agent.conf") -> SpireConfig:
    """The config in whichever form SPIRE would read it: JSON when the text is a JSON
    object (an HCL file cannot start with ``{``), HCL otherwise.

    >>> type(parse_config('{"agent": {}}')).__name__, type(parse_config('agent {}')).__name__
    ('JsonConfig', 'HclConfig')
    """
    return (JsonConfig if looks_like_json(text) else HclConfig).parse(text, name)


def load_config(path: str | os.PathLike[str]) -> SpireConfig:
    """Read ``path`` and parse it as :func:`parse_config` does."""
    return parse_config(read_text(path), str(path))
