#!/usr/bin/env python3
"""Runs a command on a new pty, as an interactive shell would: the pty is the command's
controlling terminal and its stdin, stdout and stderr.

Usage: under_pty.py CMD ARGS...

Prints JSON: {"status": exit status, "output": what the command wrote to the terminal,
"pending_input": what sits unread in the terminal's input once the command is done —
input pushed by someone else (TIOCSTI) that the next program reading the terminal,
the user's shell, would get}.
"""
import fcntl, json, os, select, sys, termios, tty

master, slave = os.openpty()
# Raw: every pushed byte is readable at once, none is echoed back as output.
tty.setraw(slave)
pid = os.fork()
if pid == 0:
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)

output = b""
status = None
while status is None:
    ready, _, _ = select.select([master], [], [], 0.05)
    if ready:
        try:
            output += os.read(master, 65536)
        except OSError:
            pass
    done, code = os.waitpid(pid, os.WNOHANG)
    if done == pid:
        status = os.waitstatus_to_exitcode(code)
while select.select([master], [], [], 0)[0]:
    try:
        chunk = os.read(master, 65536)
    except OSError:
        break
    if not chunk:
        break
    output += chunk

os.set_blocking(slave, False)
pending = b""
try:
    pending = os.read(slave, 65536)
except BlockingIOError:
    pass
print(json.dumps({"status": status, "output": output.decode(errors="replace"),
                  "pending_input": pending.decode(errors="replace")}))
