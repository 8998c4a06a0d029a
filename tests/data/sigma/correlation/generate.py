#!/usr/bin/env python3
# Generates tests/data/sigma/correlation/events.jsonl: for each correlation
# type of the specification examples, groups that must alert and groups that
# must not (just under the threshold, or spread wider than the timespan).
import json, datetime
base = datetime.datetime(2024, 5, 1, 8, 0, 0, tzinfo=datetime.timezone.utc)
out = []
def ev(minutes, channel, eid, **f):
    t = base + datetime.timedelta(seconds=int(minutes * 60))
    e = {"@timestamp": t.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "Channel": channel, "EventID": eid}
    e.update(f); out.append(e)
SEC, SYS = "Security", "Microsoft-Windows-Sysmon/Operational"
# event_count (gte 100 per ComputerName in 1h) and value_count (>= 100
# distinct User per ComputerName+WorkstationName in 1d).
for i in range(120): ev(i * 0.4, SEC, 4625, ComputerName="PC1", WorkstationName="WS1", User=f"user{i}")
for i in range(60): ev(i * 0.5, SEC, 4625, ComputerName="PC2", WorkstationName="WS2", User=f"user{i % 50}")
for i in range(100): ev(i * 2, SEC, 4625, ComputerName="PC3", WorkstationName="WS3", User="same")
# temporal / temporal_ordered (a, b, c within 5m per ComputerName+User).
cmd = {"a": "cmd.exe /c whoami /all", "b": "net user administrator", "c": "ipconfig /all"}
def proc(m, host, user, k): ev(m, SYS, 1, ComputerName=host, User=user, Image="C:\\Windows\\System32\\cmd.exe", CommandLine=cmd[k])
for m, k in ((300, "c"), (301, "a"), (302, "b")): proc(m, "H1", "alice", k)     # any order
for m, k in ((310, "a"), (311, "b"), (314, "c")): proc(m, "H2", "bob", k)       # in order
for m, k in ((320, "a"), (321, "b"), (331, "c")): proc(m, "H3", "carol", k)     # too slow
for m, k in ((340, "b"), (341, "a"), (342, "a"), (343, "c")): proc(m, "H4", "dan", k)  # order in a longer run
# value_avg (BytesOut average > 500 per SourceIP+User in 24h), value_sum
# (bytes_sent > 1,000,000 per SourceIP+User in 1h).
for m, b in ((400, 600), (410, 700), (420, 800)): ev(m, SYS, 3, SourceIP="10.0.0.1", User="alice", Direction="out", BytesOut=b)
for m, b in ((400, 100), (410, 200)): ev(m, SYS, 3, SourceIP="10.0.0.2", User="bob", Direction="out", BytesOut=b)
for m in (500, 510, 520): ev(m, SYS, 3, SourceIP="10.0.0.3", User="carol", **{"cs-method": "POST"}, bytes_sent=400000)
for m in (500, 600, 700): ev(m, SYS, 3, SourceIP="10.0.0.4", User="dave", **{"cs-method": "POST"}, bytes_sent=400000)
out.sort(key=lambda e: e["@timestamp"])
with open(__import__("os").path.join(__import__("os").path.dirname(__file__), "events.jsonl"), "w") as f:
    f.write("".join(json.dumps(e) + "\n" for e in out))
print(len(out))
