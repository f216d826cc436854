#!/usr/bin/python
# -*- coding: utf-8 -*-

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = r'''
---
module: status
short_description: Report the containers tupp runs on a host
description:
  - Returns C(tupp status --json) for all containers of an installation, or for the named ones.
  - Reads only; never reports C(changed).
version_added: 0.1.0
author:
  - tupp contributors (@tupp)
requirements:
  - tupp on the target host
options:
  name:
    description:
      - Container names. When empty, every container tupp recorded.
    type: list
    elements: str
    default: []
  state_dir:
    description:
      - tupp's state directory on the target (C(--state-dir)).
      - When omitted tupp uses C(TUPP_STATE_DIR) or C(/var/lib/tupp).
    type: path
  binary:
    description:
      - Path of the tupp executable on the target.
      - When omitted, C(tupp) is looked up in C(PATH) and C(/usr/local/bin).
    type: path
attributes:
  check_mode:
    description: Reads only, in check mode as otherwise.
    support: full
  diff_mode:
    description: Nothing changes, so there is nothing to show.
    support: none
seealso:
  - module: tupp.host.apply
'''

EXAMPLES = r'''
- name: Read the containers' state
  tupp.host.status:
  register: tupp

- name: Every container must be running
  ansible.builtin.assert:
    that: tupp.containers | rejectattr('state', 'equalto', 'running') | list | length == 0

- name: One container of an installation with its own state directory
  tupp.host.status:
    name: web
    state_dir: /srv/tupp/state
'''

RETURN = r'''
containers:
  description: One entry per container, as C(tupp status --json) prints it.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The container's name in the manifest.
      type: str
      returned: always
    state:
      description: C(running), C(exited), C(stopped), or the record's status while tupp works on it.
      type: str
      returned: always
    pid:
      description: The host pid of the container's command, when it has one.
      type: int
      returned: always
    uptime_seconds:
      description: Seconds since the command started, when running.
      type: float
      returned: always
    image:
      description: The image the container was made from.
      type: str
      returned: always
    address:
      description: The container's address with its prefix length.
      type: str
      returned: always
    restarts:
      description: How often the restart policy restarted the command.
      type: int
      returned: always
    last_exit:
      description: How the command last ended, when it did.
      type: str
      returned: always
  sample:
    - name: web
      state: running
      pid: 4242
      uptime_seconds: 12.5
      image: box
      address: 10.88.0.2/24
      restarts: 0
      last_exit: null
      last_exit_at: null
      error: null
'''

import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tupp.host.plugins.module_utils.tupp import command_error, status_command


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='list', elements='str', default=[]),
            state_dir=dict(type='path'),
            binary=dict(type='path'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    binary = p['binary'] or module.get_bin_path('tupp', required=True, opt_dirs=['/usr/local/bin'])
    argv = status_command(binary, state_dir=p['state_dir'], names=p['name'])
    rc, stdout, stderr = module.run_command(argv, environ_update={'NO_COLOR': '1'})
    if rc != 0:
        module.fail_json(msg=command_error(argv, rc, stdout, stderr), cmd=argv, rc=rc, stdout=stdout, stderr=stderr)
    try:
        containers = json.loads(stdout)
    except ValueError as e:
        module.fail_json(msg='tupp status --json printed no JSON (%s)' % e, cmd=argv, stdout=stdout, stderr=stderr)
    if not isinstance(containers, list):
        module.fail_json(msg='tupp status --json printed %s, not a list' % type(containers).__name__, cmd=argv, stdout=stdout)
    module.exit_json(changed=False, containers=containers)


if __name__ == '__main__':
    main()
