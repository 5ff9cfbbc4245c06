#!/usr/bin/env python3
"""Line coverage of asynccore/src in a coverage build dir, via gcovr; fails under the floor."""
import subprocess, sys, re, os

build, floor = sys.argv[1], float(sys.argv[2])
root = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
out = subprocess.run(['gcovr', '-r', root, '--filter', os.path.join(root, 'asynccore', 'src'),
                      '--exclude', '.*poller_kqueue.c', os.path.abspath(build)],
                     capture_output=True, text=True)
print(out.stdout)
m = re.search(r'^TOTAL\s+\d+\s+\d+\s+(\d+)%', out.stdout, re.M)
if not m:
    print('coverage: could not read gcovr output', out.stderr, file=sys.stderr)
    sys.exit(1)
pct = float(m.group(1))
print(f'asynccore line coverage: {pct:.0f}% (floor {floor:.0f}%)')
sys.exit(0 if pct >= floor else 1)
