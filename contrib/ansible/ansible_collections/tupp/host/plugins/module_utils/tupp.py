# -*- coding: utf-8 -*-
"""What the tupp modules decide, apart from running commands.

Everything here is pure: command lines from options, and judgements from what
``tupp plan --json`` and ``tupp apply --json`` printed. The modules do the I/O.
The plan JSON is described in docs/plan-json.md of the tupp repository.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json

# The plan JSON major version this collection reads. Minor versions only add fields,
# which are ignored here.
SUPPORTED_FORMAT_MAJOR = 1


class TuppOutputError(Exception):
    """tupp printed something this collection cannot read."""


def _with_state_dir(argv, state_dir):
    if state_dir:
        argv.extend(['--state-dir', state_dir])
    return argv


def plan_command(binary, src, state_dir=None, prune=True, destroy=False, out=None):
    """``tupp plan --json --detailed-exitcode``: exit 0 no changes, 2 changes, 1 error."""
    argv = _with_state_dir([binary, 'plan', '--json', '--detailed-exitcode'], state_dir)
    if not prune:
        argv.append('--no-prune')
    if destroy:
        argv.append('--destroy')
    if out:
        argv.extend(['--out', out])
    # "--" keeps a manifest path that starts with "-" from reading as an option.
    return argv + ['--'] + list(src)


def apply_command(binary, plan_file, state_dir=None, lock_timeout=None, wait=False):
    """``tupp apply --json PLANFILE``: applies exactly the reviewed plan, or refuses it."""
    argv = _with_state_dir([binary, 'apply', '--json'], state_dir)
    if lock_timeout is not None:
        argv.extend(['--lock-timeout', _seconds(lock_timeout)])
    if wait:
        argv.append('--wait')
    return argv + ['--', plan_file]


def destroy_command(binary, src, state_dir=None, include_storage=False, lock_timeout=None):
    """``tupp destroy --json``: a saved plan cannot carry --include-storage, so destroy plans itself."""
    argv = _with_state_dir([binary, 'destroy', '--json'], state_dir)
    if include_storage:
        argv.append('--include-storage')
    if lock_timeout is not None:
        argv.extend(['--lock-timeout', _seconds(lock_timeout)])
    return argv + ['--'] + list(src)


def status_command(binary, state_dir=None, names=()):
    return _with_state_dir([binary, 'status', '--json'], state_dir) + ['--'] + list(names)


def _seconds(value):
    number = float(value)
    return str(int(number)) if number == int(number) else repr(number)


def parse_plan(text):
    """The plan document printed by ``tupp plan --json``.

    Fields this collection does not know are kept and ignored; a major format version
    it does not know is refused, since its meaning may have changed.
    """
    try:
        plan = json.loads(text)
    except ValueError as e:
        raise TuppOutputError('tupp plan --json printed no JSON plan (%s): %s' % (e, _excerpt(text)))
    if not isinstance(plan, dict) or 'format_version' not in plan:
        raise TuppOutputError('tupp plan --json printed JSON without format_version: %s' % _excerpt(text))
    version = str(plan['format_version'])
    major = version.split('.', 1)[0]
    if major != str(SUPPORTED_FORMAT_MAJOR):
        raise TuppOutputError('tupp plan JSON format_version %s is not supported by this collection (it reads %d.x); '
                              'install the collection that comes with this tupp' % (version, SUPPORTED_FORMAT_MAJOR))
    return plan


def _excerpt(text, limit=400):
    text = (text or '').strip()
    return text if len(text) <= limit else text[:limit] + '...'


def resource_changes(plan):
    return [c for c in plan.get('resource_changes') or [] if isinstance(c, dict)]


def is_actionable(change):
    """A resource change that apply would perform (anything but no-op)."""
    actions = change.get('actions') or []
    return bool(actions) and actions != ['no-op']


def plan_has_changes(plan):
    """Whether applying the plan would change the host: the ``changes`` field, or, from a
    plan that lacks it, any resource whose actions are not ``["no-op"]``."""
    changes = plan.get('changes')
    if isinstance(changes, bool):
        return changes
    return any(is_actionable(c) for c in resource_changes(plan))


def plan_summary(plan):
    summary = plan.get('summary') or {}
    return dict((key, int(summary.get(key, 0))) for key in ('add', 'change', 'replace', 'destroy'))


def plan_actions(plan):
    """address -> actions for every resource the plan changes, e.g. {"container.web": ["update"]}."""
    return dict((c.get('address'), list(c.get('actions') or [])) for c in resource_changes(plan) if is_actionable(c))


def plan_drift(plan):
    """The "changed outside tupp" lines: "container.web: hostname changed outside tupp (...)"."""
    return ['%s: %s' % (d.get('address'), d.get('message')) for d in plan.get('resource_drift') or [] if isinstance(d, dict)]


def plan_errors(plan):
    return [str(e) for e in plan.get('errors') or []]


def plan_warnings(plan):
    return [str(w) for w in plan.get('warnings') or []]


def render_attributes(attributes):
    """One ``path = value`` line per attribute, sorted, values as JSON: the text a unified diff compares."""
    if not attributes:
        return ''
    return ''.join('%s = %s\n' % (path, json.dumps(attributes[path], sort_keys=True, ensure_ascii=False))
                   for path in sorted(attributes))


_HEADLINES = {
    ('create',): 'will be created',
    ('update',): 'will be updated in place',
    ('delete', 'create'): 'must be replaced',
    ('delete',): 'will be destroyed',
}


def plan_diff(plan):
    """Ansible's diff: one before/after pair per changed resource, headed by its address.

    A created resource has an empty before, a destroyed one an empty after. What changed
    outside tupp (drift) comes first, as prepared text.
    """
    diffs = []
    drift = plan_drift(plan)
    if drift:
        diffs.append({'prepared': 'Changed outside tupp:\n' + ''.join('  ~ %s\n' % line for line in drift)})
    for change in resource_changes(plan):
        if not is_actionable(change):
            continue
        address = change.get('address')
        actions = tuple(change.get('actions') or [])
        headline = _HEADLINES.get(actions, ' '.join(actions))
        if change.get('restarts_process'):
            headline += ' (the process restarts)'
        before = None if actions == ('create',) else change.get('before')
        after = None if actions == ('delete',) else change.get('after')
        diffs.append({
            'before_header': '%s' % address,
            'after_header': '%s %s' % (address, headline),
            'before': render_attributes(before),
            'after': render_attributes(after),
        })
    return diffs


def parse_apply_events(text):
    """The JSON lines of ``tupp apply --json``: the summary event (None if apply stopped
    before it, e.g. a stale plan or the lock), and the errors by address."""
    summary = None
    errors = {}
    for line in (text or '').splitlines():
        line = line.strip()
        if not line.startswith('{'):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get('type') == 'summary':
            summary = event
        elif event.get('type') == 'errored':
            errors[event.get('address')] = event.get('error')
    return summary, errors


def apply_outcome(summary):
    """What the module returns from an apply summary: changed, succeeded and the three lists."""
    failed = []
    for item in summary.get('failed') or []:
        if isinstance(item, dict):
            failed.append({'address': item.get('address'), 'error': item.get('error')})
        else:
            failed.append({'address': item, 'error': None})
    applied = list(summary.get('applied') or [])
    return {
        'changed': bool(applied),
        'succeeded': bool(summary.get('succeeded')) and not failed,
        'applied': applied,
        'failed_resources': failed,
        'not_attempted': list(summary.get('not_attempted') or []),
        'warnings': [str(w) for w in summary.get('warnings') or []],
    }


def failure_message(outcome, operation='apply'):
    """"tupp apply stopped: 1 applied, 1 failed, 2 not attempted. container.web: <error>"."""
    text = 'tupp %s stopped: %d applied, %d failed, %d not attempted.' % (
        operation, len(outcome['applied']), len(outcome['failed_resources']), len(outcome['not_attempted']))
    for f in outcome['failed_resources']:
        text += ' %s: %s' % (f['address'], f['error'] or 'failed')
    return text + ' Running the task again converges.'


def command_error(argv, rc, stdout, stderr):
    """The message for a tupp command that failed before it could report in JSON: tupp's
    own words (manifest errors as FILE:LINE:COL with a caret), else its exit status."""
    command = 'tupp %s' % argv[1] if len(argv) > 1 else 'tupp'
    text = (stderr or '').strip() or _excerpt(stdout)
    return '%s failed (exit %s): %s' % (command, rc, text) if text else '%s failed (exit %s)' % (command, rc)
