#!/usr/bin/env python3
# The imports between src/'s top-level modules (code lines only), and the pairs that import
# each other. Run from the repository root: python3 .ci/modgraph.py
import os,re,sys
root='src'
mods={}
for dp,dn,fn in os.walk(root):
    for f in fn:
        if not f.endswith('.rs'): continue
        p=os.path.join(dp,f)
        top=os.path.relpath(p,root).split(os.sep)[0].replace('.rs','')
        if top in ('main','lib'): continue
        code='\n'.join(l for l in open(p).read().split('\n') if not l.strip().startswith('//'))
        for m in re.findall(r'crate::([a-z_0-9]+)',code):
            if m!=top: mods.setdefault(top,set()).add(m)
for k in sorted(mods): print(f"{k} -> {', '.join(sorted(mods[k]))}")
seen=set()
for a in mods:
    for b in mods[a]:
        if a in mods.get(b,()): seen.add(tuple(sorted((a,b))))
print("two-way:", ', '.join(f"{a}<->{b}" for a,b in sorted(seen)) or "none")
