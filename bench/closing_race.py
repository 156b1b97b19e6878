"""How often a close of vlhook's closes a file of the program's instead (docs/design.md, "A
close no thread of the program's can come between").

Each run is a child process with two threads. One plays vlhook: it opens a descriptor of its
own (non-blocking, as vlhook's are), looks at it (fstat) and closes it, again and again. The
other plays a program that closes every descriptor it did not open (a daemon's
`os.closerange(3, ...)`) and then opens a file, again and again: the file gets the lowest
free number, often the one vlhook holds. The program then checks that its file is still open
and still its file. Counted: the rounds in which it was not. Three ways to close:

- "a look, then os.close": what vlhook did before;
- "the look in the same call": os.get_blocking and os.close in one call from C;
- "as shipped": vlhook._sync.close_nonblocking (a yield first, then the same call).

Not a timing: a count of harms in a loop built to cause them, each run for the same time.

    PYTHONPATH=src python bench/closing_race.py [--seconds 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

CHILD = """
import os, sys, threading, time
from _collections import deque
from itertools import filterfalse
from vlhook._sync import close_nonblocking
way, seconds, path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
program_file = os.stat(path)
stop = False
harmed = rounds = 0

def identity(fd):
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    return info.st_dev, info.st_ino

def close(fd):
    if way == "a look, then os.close":
        os.close(fd)
    elif way == "the look in the same call":
        deque(map(os.close, filterfalse(os.get_blocking, (fd,))), 0)
    else:
        close_nonblocking(fd)

def vlhook():
    while not stop:
        fd = os.open(os.devnull, os.O_RDONLY | os.O_NONBLOCK)
        mine = identity(fd)
        if identity(fd) == mine:
            try:
                close(fd)
            except OSError:
                pass

def program():
    global harmed, rounds
    while not stop:
        os.closerange(3, 64)
        fd = os.open(path, os.O_RDONLY)
        for _ in range(3):  # calls that let vlhook's thread run, as a program's do
            seen = identity(fd)
        try:
            if seen != (program_file.st_dev, program_file.st_ino):
                raise OSError("not its file")
            os.close(fd)
        except OSError:
            harmed += 1
        rounds += 1

threads = [threading.Thread(target=vlhook), threading.Thread(target=program)]
for thread in threads:
    thread.start()
time.sleep(seconds)
stop = True
for thread in threads:
    thread.join()
print(harmed, rounds)
"""

WAYS = ["a look, then os.close", "the look in the same call", "as shipped"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each run (10)")
    parser.add_argument("--runs", type=int, default=3, help="of each way (3)")
    args = parser.parse_args()
    totals = {way: [0, 0] for way in WAYS}
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "program.txt")
        with open(path, "w") as out:
            out.write("the program's data\n")
        for _ in range(args.runs):  # interleaved: a busier machine in one run hits every way
            for way in WAYS:
                done = subprocess.run([sys.executable, "-c", CHILD, way, str(args.seconds), path],
                                      capture_output=True, text=True, check=True,
                                      timeout=args.seconds + 60)  # fmt: skip
                harmed, rounds = map(int, done.stdout.split())
                totals[way][0] += harmed
                totals[way][1] += rounds
    print("| way of closing | the program's file closed | in rounds | once in |")
    print("|---|---|---|---|")
    for way, (harmed, rounds) in totals.items():
        once = f"{rounds // harmed:,}" if harmed else f"none in {rounds:,}"
        print(f"| {way} | {harmed:,} | {rounds:,} | {once} |")


if __name__ == "__main__":
    main()
