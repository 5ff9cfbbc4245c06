#!/usr/bin/env python3
"""The include rules of doc/ARCHITECTURE.md, checked on every quoted #include.

Every file belongs to a wing (its folder under daemon/, the core for daemon/
itself, asynccore/ and config/ below them). An include is an arrow from the
including file's wing to the included header's wing; the table below lists
the arrows each wing may draw. Also: no include loop between modules (a module
is NAME.c with NAME.h), and no header the tree cannot resolve.
Run from anywhere: python3 tests/ops/include_rules.py [ROOT]
"""
import os
import re
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                       os.path.join(os.path.dirname(__file__), '..', '..'))
LEAVES = {'proto', 'log', 'tls', 'dns'}
BASE = {'asynccore', 'config'}
# wing -> wings whose headers it may include (its own always).
ALLOWED = {
    'asynccore': set(),
    'config': set(),
    'proto': {'config'},                      # parsers: libc and config's types only
    'log': {'config', 'asynccore'},           # imports nothing from the daemon
    'tls': {'config', 'log'},                 # TLS material from the configuration
    'dns': {'config', 'log', 'asynccore'},    # the resolver
    'core': BASE | LEAVES,
    'proxy': BASE | LEAVES | {'core'},
    'servers': BASE | LEAVES | {'core'},
    'acme': BASE | LEAVES | {'core'},
    'lifecycle': BASE | LEAVES | {'core', 'proxy', 'servers', 'acme'},
    'control': BASE | LEAVES | {'core', 'lifecycle'},  # the operator's surface: reload, upgrade
    'main': BASE | LEAVES | {'core', 'proxy', 'servers', 'control', 'lifecycle', 'acme'},
}
MAINS = {'daemon/main.c', 'daemon/ferryctl.c'}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def wing_of(rel):
    parts = rel.split('/')
    if rel in MAINS:
        return 'main'
    if parts[0] == 'asynccore':
        return 'asynccore'
    if parts[0] == 'config':
        return 'config'
    if parts[0] == 'daemon':
        return parts[1] if len(parts) > 2 else 'core'
    return None


def sources():
    for top in ('asynccore', 'config', 'daemon'):
        for dirpath, _, names in os.walk(os.path.join(ROOT, top)):
            for n in names:
                if n.endswith(('.c', '.h')):
                    yield os.path.relpath(os.path.join(dirpath, n), ROOT)


def resolve(rel, inc):
    """The file an include names: next to the includer, else on the include path."""
    here = os.path.dirname(rel)
    for base in (here, 'daemon', 'config', 'asynccore/include', 'asynccore/src'):
        cand = os.path.normpath(os.path.join(base, inc))
        if os.path.exists(os.path.join(ROOT, cand)):
            return cand
    return None


def module(rel):
    m = os.path.splitext(rel)[0]
    return m[:-4] if m.endswith('_int') else m  # an internal header is its module's


def main():
    errors = []
    arrows = {}
    files = sorted(sources())
    for rel in files:
        src_wing = wing_of(rel)
        text = open(os.path.join(ROOT, rel), encoding='utf-8').read()
        for inc in INCLUDE.findall(text):
            target = resolve(rel, inc)
            if target is None:
                errors.append(f'{rel}: #include "{inc}" names no file of the tree')
                continue
            dst_wing = wing_of(target)
            if dst_wing != src_wing and dst_wing not in ALLOWED[src_wing]:
                errors.append(f'{rel}: #include "{inc}": {src_wing} may not include {dst_wing}')
            if module(target) != module(rel):
                arrows.setdefault(module(rel), set()).add(module(target))
    # include loops between modules (NAME.c + NAME.h)
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(arrows.get(m, ())):
            if state.get(n) == 1:
                errors.append('include loop: ' + ' -> '.join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(arrows):
        if m not in state:
            visit(m)
    narrows = sum(len(v) for v in arrows.values())
    if errors:
        print('\n'.join(errors))
        print(f'include rules: {len(errors)} violation(s) in {len(files)} files')
        return 1
    print(f'include rules: {len(files)} files, {narrows} arrows between modules, no violation, no loop')
    return 0


if __name__ == '__main__':
    sys.exit(main())
