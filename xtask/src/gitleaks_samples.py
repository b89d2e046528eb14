"""The literal true- and false-positive samples in gitleaks' rule definitions, as JSON lines
`{"file", "label": "tps"|"fps", "text"}` for crates/pai-policy/examples/secret_eval.rs.

Usage: python3 gitleaks_samples.py <gitleaks checkout>/cmd/generate/config/rules > samples.jsonl

gitleaks (MIT) builds most of its samples with Go code (random secrets of each format); only
the literal strings in its `tps`/`fps` lists are taken here: real-world shapes somebody
chose by hand, which is what makes them a fair test of another tool's rules.
"""
import json, re, sys, pathlib
root = pathlib.Path(sys.argv[1])
elem = re.compile(r'^\s*(`[^`]*`|"(?:[^"\\]|\\.)*")\s*,?\s*(?://.*)?$')
start = re.compile(r'\b(tps|fps)\s*(?::=|=)\s*(?:\[\]string\{|append\(\s*(?:tps|fps)\s*,)\s*(.*)$')
for f in sorted(root.rglob('*.go')):
    label = None
    for line in f.read_text().splitlines():
        m = start.search(line)
        if m:
            label = m.group(1)
            rest = m.group(2)
            mm = re.match(r'\s*(`[^`]*`|"(?:[^"\\]|\\.)*")\s*[,})]', rest)
            if mm:
                emit = mm.group(1)
            else:
                continue
        elif label:
            if re.match(r'^\s*[})]', line):
                label = None
                continue
            mm = elem.match(line)
            if not mm:
                continue
            emit = mm.group(1)
        else:
            continue
        if emit.startswith('`'):
            text = emit[1:-1]
        else:
            try:
                text = json.loads(emit)
            except Exception:
                continue
        if text.strip():
            print(json.dumps({"file": f.stem, "label": label, "text": text}))
