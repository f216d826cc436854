#!/usr/bin/python
# -*- coding: utf-8 -*-

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = r'''
---
module: apply
short_description: Make a host match its tupp manifests, or destroy what they declare
description:
  - Runs C(tupp plan --json --detailed-exitcode) against the live host and reports whether anything would change.
  - In check mode that is all it does. C(changed) is true exactly when the plan has changes.
  - Otherwise it saves the plan with C(tupp plan --out) and applies exactly that plan with C(tupp apply PLANFILE).
    tupp refuses the saved plan if the host or the manifests moved between the two commands.
  - With I(state=absent) it runs C(tupp destroy), which removes everything the manifests declare.
  - In diff mode each changed resource gets a before/after pair headed by its address (C(container.web)),
    after the resources that changed outside tupp (drift).
  - tupp needs root. Run the task with C(become) on hosts where the connecting user is not root.
version_added: 0.1.0
author:
  - tupp contributors (@tupp)
requirements:
  - tupp on the target host (C(tupp plan --json) with C(format_version) 1.x)
options:
  src:
    description:
      - Manifest files or directories on the target host. A directory's manifests are one desired state.
    type: list
    elements: path
    required: true
  state:
    description:
      - C(present) applies the manifests. C(absent) destroys everything they declare.
    type: str
    choices: [present, absent]
    default: present
  prune:
    description:
      - Remove resources tupp created that are no longer in the manifests.
      - C(false) passes C(--no-prune).
    type: bool
    default: true
  include_storage:
    description:
      - With I(state=absent), also delete the pool's image file and every byte in it (C(--include-storage)).
      - Check mode plans the destroy without it; the pool file is deleted only by the real run.
    type: bool
    default: false
  state_dir:
    description:
      - tupp's state directory on the target (C(--state-dir)). Several installations can live side by side.
      - When omitted tupp uses C(TUPP_STATE_DIR) or C(/var/lib/tupp).
    type: path
  wait:
    description:
      - Pass C(--wait) to C(tupp apply) so the task ends when the containers it started are running.
      - Needs a tupp whose apply has C(--wait).
    type: bool
    default: false
  lock_timeout:
    description:
      - Seconds apply or destroy waits for another apply on the host to finish (C(--lock-timeout)).
      - When omitted tupp's default applies.
    type: float
  binary:
    description:
      - Path of the tupp executable on the target.
      - When omitted, C(tupp) is looked up in C(PATH) and C(/usr/local/bin).
    type: path
attributes:
  check_mode:
    description: Plans only (C(tupp plan)); changes nothing on the host.
    support: full
  diff_mode:
    description: Shows each changed resource's attributes before and after, and what drifted.
    support: full
notes:
  - The plan JSON this module reads is documented in C(docs/plan-json.md) of the tupp repository.
seealso:
  - module: tupp.host.status
'''

EXAMPLES = r'''
- name: Converge the host to its manifests
  tupp.host.apply:
    src: /etc/tupp/site

- name: Converge an installation with its own state directory, keeping resources that left the manifest
  tupp.host.apply:
    src:
      - /srv/tupp/web.yaml
      - /srv/tupp/db.yaml
    state_dir: /srv/tupp/state
    prune: false
    lock_timeout: 120

- name: Remove everything the manifest declares, pool file included
  tupp.host.apply:
    src: /etc/tupp/site
    state: absent
    include_storage: true

- name: Fail the play when a host drifted (run with --check)
  tupp.host.apply:
    src: /etc/tupp/site
  check_mode: true
  register: drift
  failed_when: drift.changed
'''

RETURN = r'''
summary:
  description: The plan's counts of resources to add, change, replace and destroy.
  returned: always
  type: dict
  sample: {"add": 1, "change": 1, "replace": 0, "destroy": 0}
actions:
  description:
    - The actions planned for each resource that changes, by address.
    - A replacement is C(["delete", "create"]).
  returned: always
  type: dict
  sample: {"container.web": ["update"], "container.db": ["create"]}
drift:
  description: What changed on the host outside tupp, one line per finding.
  returned: always
  type: list
  elements: str
  sample: ['container.web: hostname changed outside tupp ("web" -> "hacked")']
plan:
  description: The whole plan as C(tupp plan --json) printed it (see docs/plan-json.md).
  returned: always
  type: dict
applied:
  description: Addresses of the resources the apply or destroy changed, in order.
  returned: when the host was changed or a change failed
  type: list
  elements: str
  sample: ["container.db", "container.web"]
failed_resources:
  description: The resources whose change failed, each with tupp's error.
  returned: when the host was changed or a change failed
  type: list
  elements: dict
  sample: [{"address": "container.web", "error": "start container web: ..."}]
not_attempted:
  description: Addresses of the changes apply did not attempt after a failure. Running the task again converges.
  returned: when the host was changed or a change failed
  type: list
  elements: str
  sample: ["container.api"]
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tupp.host.plugins.module_utils.tupp import (
    TuppOutputError, apply_command, apply_outcome, command_error, destroy_command, failure_message,
    parse_apply_events, parse_plan, plan_actions, plan_command, plan_diff, plan_drift, plan_errors,
    plan_has_changes, plan_summary, plan_warnings,
)

# tupp paints only on a terminal; NO_COLOR makes sure of it for tupp's messages.
ENVIRONMENT = {'NO_COLOR': '1'}


def run(module, argv):
    rc, stdout, stderr = module.run_command(argv, environ_update=ENVIRONMENT)
    return rc, stdout, stderr


def plan(module, binary, out=None):
    p = module.params
    argv = plan_command(binary, p['src'], state_dir=p['state_dir'], prune=p['prune'],
                        destroy=p['state'] == 'absent', out=out)
    rc, stdout, stderr = run(module, argv)
    document = None
    if stdout.strip().startswith('{'):
        try:
            document = parse_plan(stdout)
        except TuppOutputError as e:
            module.fail_json(msg=str(e), cmd=argv, rc=rc, stdout=stdout, stderr=stderr)
    if rc not in (0, 2) or document is None:
        errors = plan_errors(document) if document else []
        msg = 'tupp plan: ' + '; '.join(errors) if errors else command_error(argv, rc, stdout, stderr)
        module.fail_json(msg=msg, cmd=argv, rc=rc, stdout=stdout, stderr=stderr, plan=document, changed=False)
    return document


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type='list', elements='path', required=True),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            prune=dict(type='bool', default=True),
            include_storage=dict(type='bool', default=False),
            state_dir=dict(type='path'),
            wait=dict(type='bool', default=False),
            lock_timeout=dict(type='float'),
            binary=dict(type='path'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p['include_storage'] and p['state'] != 'absent':
        module.fail_json(msg='include_storage deletes the pool file and applies only with state=absent')
    binary = p['binary'] or module.get_bin_path('tupp', required=True, opt_dirs=['/usr/local/bin'])

    destroying = p['state'] == 'absent'
    plan_file = None
    if not module.check_mode and not destroying:
        plan_file = '%s/tupp.plan' % module.tmpdir
    document = plan(module, binary, out=plan_file)

    for warning in plan_warnings(document):
        module.warn('tupp: %s' % warning)
    changed = plan_has_changes(document)
    result = dict(
        changed=changed,
        summary=plan_summary(document),
        actions=plan_actions(document),
        drift=plan_drift(document),
        plan=document,
    )
    if module._diff:
        result['diff'] = plan_diff(document)
    if module.check_mode or not changed:
        module.exit_json(**result)

    if destroying:
        argv = destroy_command(binary, p['src'], state_dir=p['state_dir'], include_storage=p['include_storage'],
                               lock_timeout=p['lock_timeout'])
    else:
        argv = apply_command(binary, plan_file, state_dir=p['state_dir'], lock_timeout=p['lock_timeout'], wait=p['wait'])
    rc, stdout, stderr = run(module, argv)
    summary, errors = parse_apply_events(stdout)
    if summary is None:
        # Stopped before changing anything: a stale saved plan, the lock, a bad option.
        result['changed'] = False
        module.fail_json(msg=command_error(argv, rc, stdout, stderr), cmd=argv, rc=rc, stdout=stdout, stderr=stderr, **result)
    outcome = apply_outcome(summary)
    for failure in outcome['failed_resources']:
        if failure['error'] is None:
            failure['error'] = errors.get(failure['address'])
    for warning in outcome['warnings']:
        module.warn('tupp: %s' % warning)
    result.update(changed=outcome['changed'], applied=outcome['applied'], failed_resources=outcome['failed_resources'],
                  not_attempted=outcome['not_attempted'])
    if rc != 0 or not outcome['succeeded']:
        module.fail_json(msg=failure_message(outcome, 'destroy' if destroying else 'apply'), cmd=argv, rc=rc,
                         stderr=stderr, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
