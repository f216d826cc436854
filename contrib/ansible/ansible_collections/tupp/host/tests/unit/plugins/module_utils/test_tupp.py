# -*- coding: utf-8 -*-
# Run: PYTHONPATH=contrib/ansible python3 -m unittest ansible_collections.tupp.host.tests.unit.plugins.module_utils.test_tupp

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json
import unittest

from ansible_collections.tupp.host.plugins.module_utils import tupp


def change(address, actions, before=None, after=None, restarts=False):
    kind, name = address.split('.', 1)
    return {'address': address, 'type': kind, 'name': name, 'actions': actions, 'restarts_process': restarts,
            'before': before, 'after': after, 'reasons': [], 'notes': []}


def plan_json(changes, drift=(), changes_flag=None, **extra):
    document = {
        'format_version': '1.0', 'tupp_version': '0.1.0', 'resource_drift': list(drift), 'resource_changes': changes,
        'summary': {'add': 0, 'change': 0, 'replace': 0, 'destroy': 0}, 'warnings': [], 'errors': [],
    }
    if changes_flag is not None:
        document['changes'] = changes_flag
    document.update(extra)
    return json.dumps(document)


class CommandLineTests(unittest.TestCase):
    def test_plan_passes_every_option_and_ends_options_before_paths(self):
        argv = tupp.plan_command('/usr/bin/tupp', ['/etc/tupp/a.yaml', '-odd.yaml'], state_dir='/srv/state',
                                 prune=False, destroy=True, out='/tmp/p.plan')
        self.assertEqual(argv, ['/usr/bin/tupp', 'plan', '--json', '--detailed-exitcode', '--state-dir', '/srv/state',
                                '--no-prune', '--destroy', '--out', '/tmp/p.plan', '--', '/etc/tupp/a.yaml', '-odd.yaml'])

    def test_plan_defaults_add_nothing(self):
        self.assertEqual(tupp.plan_command('tupp', ['m.yaml']), ['tupp', 'plan', '--json', '--detailed-exitcode', '--', 'm.yaml'])

    def test_apply_wait_and_lock_timeout(self):
        self.assertEqual(tupp.apply_command('tupp', 'p.plan', lock_timeout=120.0, wait=True),
                         ['tupp', 'apply', '--json', '--lock-timeout', '120', '--wait', '--', 'p.plan'])
        self.assertEqual(tupp.apply_command('tupp', 'p.plan', lock_timeout=2.5),
                         ['tupp', 'apply', '--json', '--lock-timeout', '2.5', '--', 'p.plan'])
        self.assertNotIn('--wait', tupp.apply_command('tupp', 'p.plan'))

    def test_destroy_include_storage(self):
        self.assertEqual(tupp.destroy_command('tupp', ['m.yaml'], state_dir='/s', include_storage=True),
                         ['tupp', 'destroy', '--json', '--state-dir', '/s', '--include-storage', '--', 'm.yaml'])

    def test_status_names(self):
        self.assertEqual(tupp.status_command('tupp', names=['web']), ['tupp', 'status', '--json', '--', 'web'])


class PlanTests(unittest.TestCase):
    def test_changed_follows_the_changes_field(self):
        self.assertTrue(tupp.plan_has_changes(tupp.parse_plan(plan_json([], changes_flag=True))))
        noop = [change('container.web', ['no-op'])]
        self.assertFalse(tupp.plan_has_changes(tupp.parse_plan(plan_json(noop, changes_flag=False))))

    def test_changed_from_actions_when_the_field_is_missing(self):
        self.assertFalse(tupp.plan_has_changes(tupp.parse_plan(plan_json([change('container.web', ['no-op'])]))))
        self.assertTrue(tupp.plan_has_changes(tupp.parse_plan(plan_json([change('container.web', ['delete', 'create'])]))))

    def test_unknown_fields_and_minor_versions_are_read(self):
        plan = tupp.parse_plan(plan_json([change('container.web', ['update'])], changes_flag=True,
                                         format_version='1.7', project='site', something_new={'a': 1}))
        self.assertEqual(tupp.plan_actions(plan), {'container.web': ['update']})

    def test_another_major_version_is_refused(self):
        with self.assertRaises(tupp.TuppOutputError) as caught:
            tupp.parse_plan(plan_json([], format_version='2.0'))
        self.assertIn('format_version 2.0', str(caught.exception))

    def test_text_that_is_not_a_plan_is_refused(self):
        for text in ('', 'No changes.', '[1, 2]', '{"summary": {}}'):
            with self.assertRaises(tupp.TuppOutputError):
                tupp.parse_plan(text)

    def test_actions_list_only_what_changes(self):
        plan = tupp.parse_plan(plan_json([change('pool.main', ['no-op']), change('container.web', ['delete', 'create']),
                                          change('container.old', ['delete'])]))
        self.assertEqual(tupp.plan_actions(plan), {'container.web': ['delete', 'create'], 'container.old': ['delete']})

    def test_summary_defaults_missing_counts_to_zero(self):
        self.assertEqual(tupp.plan_summary({'summary': {'add': 2}}), {'add': 2, 'change': 0, 'replace': 0, 'destroy': 0})


class DiffTests(unittest.TestCase):
    def test_one_pair_per_changed_resource(self):
        plan = tupp.parse_plan(plan_json([
            change('pool.main', ['no-op'], {'root': '/p'}, {'root': '/p'}),
            change('container.web', ['update'], {'hostname': 'hacked', 'image': 'box'}, {'hostname': 'web', 'image': 'box'}),
            change('container.db', ['create'], None, {'image': 'box'}),
            change('container.old', ['delete'], {'image': 'box'}, None),
        ]))
        diffs = tupp.plan_diff(plan)
        self.assertEqual([d['before_header'] for d in diffs], ['container.web', 'container.db', 'container.old'])
        web, db, old = diffs
        self.assertEqual(web['before'], 'hostname = "hacked"\nimage = "box"\n')
        self.assertEqual(web['after'], 'hostname = "web"\nimage = "box"\n')
        self.assertEqual(web['after_header'], 'container.web will be updated in place')
        self.assertEqual((db['before'], db['after']), ('', 'image = "box"\n'))
        self.assertEqual((old['before'], old['after']), ('image = "box"\n', ''))

    def test_drift_comes_first_and_a_restart_is_named(self):
        drift = [{'address': 'container.web', 'message': 'hostname changed outside tupp ("web" -> "hacked")', 'path': 'hostname'}]
        plan = tupp.parse_plan(plan_json([change('container.web', ['update'], {'command': ['a']}, {'command': ['b']}, restarts=True)],
                                         drift=drift))
        diffs = tupp.plan_diff(plan)
        self.assertIn('container.web: hostname changed outside tupp', diffs[0]['prepared'])
        self.assertTrue(diffs[1]['after_header'].endswith('(the process restarts)'))
        self.assertEqual(tupp.plan_drift(plan), ['container.web: hostname changed outside tupp ("web" -> "hacked")'])


class ApplyTests(unittest.TestCase):
    def events(self, summary, errored=()):
        lines = ['{"type":"planned","plan":{}}', 'not json', '{"type":"start","address":"container.web"}']
        lines += [json.dumps({'type': 'errored', 'address': a, 'error': e}) for a, e in errored]
        lines.append(json.dumps(dict(summary, type='summary')))
        return '\n'.join(lines) + '\n'

    def test_success_is_changed_when_something_was_applied(self):
        summary, errors = tupp.parse_apply_events(self.events({'succeeded': True, 'applied': ['container.web'], 'failed': [],
                                                               'not_attempted': [], 'warnings': []}))
        outcome = tupp.apply_outcome(summary)
        self.assertEqual((outcome['changed'], outcome['succeeded'], outcome['applied']), (True, True, ['container.web']))
        self.assertEqual(errors, {})

    def test_failure_lists_applied_failed_and_not_attempted(self):
        text = self.events({'succeeded': False, 'applied': ['network.net'],
                            'failed': [{'address': 'container.web', 'error': 'start: ENOENT'}],
                            'not_attempted': ['container.db']}, errored=[('container.web', 'start: ENOENT')])
        summary, errors = tupp.parse_apply_events(text)
        outcome = tupp.apply_outcome(summary)
        self.assertFalse(outcome['succeeded'])
        self.assertEqual(outcome['failed_resources'], [{'address': 'container.web', 'error': 'start: ENOENT'}])
        self.assertEqual(outcome['not_attempted'], ['container.db'])
        self.assertEqual(errors, {'container.web': 'start: ENOENT'})
        self.assertEqual(tupp.failure_message(outcome),
                         'tupp apply stopped: 1 applied, 1 failed, 1 not attempted. container.web: start: ENOENT '
                         'Running the task again converges.')

    def test_no_summary_when_apply_stopped_before_it(self):
        self.assertEqual(tupp.parse_apply_events(''), (None, {}))

    def test_command_error_keeps_tupps_words(self):
        message = tupp.command_error(['/usr/local/bin/tupp', 'plan', '--json'], 1, '',
                                     '/etc/tupp/m.yaml:3:5: error: unknown key "restrat"\n')
        self.assertEqual(message, 'tupp plan failed (exit 1): /etc/tupp/m.yaml:3:5: error: unknown key "restrat"')


if __name__ == '__main__':
    unittest.main()
