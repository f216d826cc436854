"""Installs pip into an empty virtual environment without downloading a bootstrap script.

ansible-test creates its sanity-test virtual environments without pip and runs a
"get-pip" script from ~/.ansible/test/cache/ to install it. The script it would
download lives on a host this project does not reach; scripts/install-deps puts this
file there instead. Like get-pip, it runs `pip install ARGS` (ARGS: the pinned pip,
setuptools and wheel ansible-test asks for, fetched from PyPI), using the pip wheel
Debian ships in python3-pip-whl to do so.
"""
import glob
import runpy
import sys

wheels = sorted(glob.glob('/usr/share/python-wheels/pip-*.whl'))
if not wheels:
    sys.exit('get-pip: no pip wheel in /usr/share/python-wheels (apt-get install python3-pip-whl)')
sys.path.insert(0, wheels[-1])
sys.argv = ['pip', 'install'] + sys.argv[1:]
runpy.run_module('pip', run_name='__main__', alter_sys=True)
