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

from ._write import write_atomic
from .editor import HclConfig

__all__ = ["HclConfig", "write_atomic"]
