#!/usr/bin/env python3
"""Re-verify an export of PAI's audit log, outside PAI (Python 3, standard library only).

    pai audit export > audit.jsonl
    python3 docs/verify-audit.py audit.jsonl                 # key from PAI_ENCRYPTION_KEY
    python3 docs/verify-audit.py audit.jsonl --key-file ~/.config/pai/audit.key
    python3 docs/verify-audit.py audit.jsonl --no-key        # hash chain only

Exit 0 and one "ok" line when every row and the checkpoint check out; exit 1 and the
first bad row and why otherwise. The format is described in docs/audit.md.
"""

import hashlib
import hmac
import json
import os
import struct
import sys

GENESIS = "0" * 64
V2_COLUMNS = [
    "ts", "user", "session", "mode", "kind", "provider", "endpoint", "model", "locality",
    "prompt_tokens", "completion_tokens", "tokens_estimated", "duration_ms",
]


def cell(value):
    """The documented encoding of one stored value."""
    if value is None:
        return b"n;"
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return b"i%d;" % value
    if isinstance(value, float):
        return b"r" + struct.pack(">d", value).hex().encode() + b";"
    data = value.encode("utf-8")
    return b"t%d:" % len(data) + data + b";"


def row_hash(tag, prev_hash, cells):
    h = hashlib.sha256(prev_hash.encode() + tag)
    for c in cells:
        h.update(cell(c))
    return h.hexdigest()


def mac_hex(key, *parts):
    return hmac.new(key, b"".join(parts), hashlib.sha256).hexdigest()


def load_key(args):
    if "--no-key" in args:
        return None
    if "--key-file" in args:
        path = args[args.index("--key-file") + 1]
        with open(os.path.expanduser(path)) as f:
            return bytes.fromhex(f.read().strip())
    secret = os.environ.get("PAI_ENCRYPTION_KEY", "").strip()
    if not secret:
        sys.exit("no key: set PAI_ENCRYPTION_KEY, or give --key-file PATH, or --no-key")
    return hmac.new(secret.encode(), b"pai audit log MAC key v1", hashlib.sha256).digest()


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    key = load_key(argv[2:])
    with open(argv[1], encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    if not lines or lines[0].get("format") != "pai-audit-export/1":
        fail("not a pai audit export (first line must have format pai-audit-export/1)")
    header, rows = lines[0], lines[1:]
    if key is not None:
        key_id = mac_hex(key, b"pai audit key id v1")[:16]
        if header.get("key_id") != key_id:
            fail("the export was made with key id %s, this key's id is %s"
                 % (header.get("key_id"), key_id))

    prev_id = (header.get("first_id") or 1) - 1
    prev_hash, prev_mac = header["prev_hash"], header["prev_mac"]
    keyed = legacy = purged = 0
    seen_keyed = False
    for r in rows:
        rid = r["id"]
        if rid != prev_id + 1:
            fail("row %d: it is missing: it was deleted from the log" % (prev_id + 1))
        if r["prev_hash"] != prev_hash:
            fail("row %d: it does not follow the row stored before it" % rid)
        is_purged = r["purged"] != 0
        if is_purged:
            purged += 1
            if r["content"] != "":
                fail("row %d: its contents changed after it was written" % rid)
        if r["mac"] is not None:
            seen_keyed = True
            keyed += 1
            if not is_purged and hashlib.sha256(r["content"].encode()).hexdigest() != r["content_sha256"]:
                fail("row %d: its contents changed after it was written" % rid)
            cells = [r[c] for c in V2_COLUMNS] + [r["content_sha256"]]
            if row_hash(b"pai-audit/2\n", prev_hash, cells) != r["hash"]:
                fail("row %d: its contents changed after it was written" % rid)
            if key is not None:
                want = mac_hex(key, b"row\n", str(rid).encode(), b"\n",
                               prev_mac.encode(), b"\n", r["hash"].encode())
                if not hmac.compare_digest(want, r["mac"]):
                    fail("row %d: its MAC does not match: it was written or re-chained "
                         "without the audit key" % rid)
        else:
            if seen_keyed:
                fail("row %d: it carries no MAC, though keyed sealing began before it" % rid)
            legacy += 1
            if not is_purged:
                cells = [r[c] for c in V2_COLUMNS] + [r["content"]]
                if row_hash(b"pai-audit/1\n", prev_hash, cells) != r["hash"]:
                    fail("row %d: its contents changed after it was written" % rid)
        prev_id, prev_hash = rid, r["hash"]
        prev_mac = r["mac"] if r["mac"] is not None else r["hash"]

    head = header.get("head")
    if not head:
        fail("the log was never sealed (no head checkpoint): nothing proves it is complete")
    fields = head.split(" ")
    # Version 2 adds two fields before the MAC for pai's per-turn check (how far the log
    # was checked, the files' identity); a verifier needs neither.
    if not ((len(fields) == 8 and fields[0] == "pai-audit-head/1")
            or (len(fields) == 10 and fields[0] == "pai-audit-head/2")):
        fail("the head checkpoint does not parse")
    seq, h_hash, h_mac, cmac = fields[1], fields[2], fields[3], fields[-1]
    seq = int(seq)
    if key is not None:
        body = head[: head.rindex(" ")]
        if not hmac.compare_digest(mac_hex(key, b"head\n", body.encode()), cmac):
            fail("the head checkpoint does not check out under this key")
    if prev_id < seq:
        fail("the log ends at row %d but its checkpoint sealed row %d" % (prev_id, seq))
    if prev_id > seq:
        fail("rows %d-%d come after the last checkpoint (unsealed)" % (seq + 1, prev_id))
    if (prev_hash, prev_mac) != (h_hash, h_mac) and seq > 0:
        fail("the log no longer holds row %d as its checkpoint sealed it" % seq)

    print("ok: %d rows (%d keyed%s, %d legacy, %d without content), sealed through row %d"
          % (len(rows), keyed, "" if key is not None else ", MACs NOT checked", legacy,
             purged, seq))


if __name__ == "__main__":
    main(sys.argv)
