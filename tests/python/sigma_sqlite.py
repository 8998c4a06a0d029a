#!/usr/bin/env python3
"""Independent Sigma reference: pySigma 2.x + its SQLite backend, over flattened JSON events.

Run it with the venv of scripts/pysigma-venv.sh (pySigma 2.0.1, pysigma-backend-sqlite 2.1.1,
pysigma-pipeline-windows 2.0.1, pysigma-pipeline-sysmon 2.0.0):

    PY=$(scripts/pysigma-venv.sh | tail -1)
    $PY tests/python/sigma_sqlite.py match   --rules PATH... --events FILE... [--out FILE]
    $PY tests/python/sigma_sqlite.py bench   --rules PATH... --events FILE... --repeat N
    $PY tests/python/sigma_sqlite.py convert --rules PATH...            (the SQL, one line a rule)

Nothing here shares code or data with the Rust engine: rule reading, logsource handling and
matching are pySigma's and SQLite's; only the event flattening below is written here, from
the conventions Sigma rules are written against.

Output (JSON Lines, to --out or stdout; a JSON summary goes to stderr)
---------------------------------------------------------------------
  {"type":"refused","file":F,"rule_id":ID,"title":T,"stage":S,"reason":R}
        a rule (or a whole YAML file, rule_id null) that could not be used. stage is one of
        parse (YAML or Sigma syntax), reference (a correlation names a rule that is absent or
        itself refused), convert (pySigma or the backend raised), execute (SQLite raised when
        running the query, e.g. a regex Python's re cannot compile). Never fatal.
  {"type":"match","rule_id":ID,"file":EVENTS_FILE,"event":N}
        detection rule ID matched event N (0-based ordinal of the event object in that file,
        see "Events"). One line per (rule, event), sorted by rule order, then events files in the order given, then event.
        A rule whose output a correlation disabled (generate: false, the default) is not
        reported, as Sigma says; --include-referenced reports it as well.
  {"type":"correlation","rule_id":ID,"correlation_type":K,"group":{field:value...},
   "window_start":S,"window_end":E,"metric":M,"events":[{"file":F,"event":N}...],
   "alert_id":A,"child_alerts":[A...]}
        one row of the backend's correlation SQL: group = its group_keys JSON (values are
        lower-cased text when the grouped value is text, see correlation.group_key),
        window_start/window_end = its window in Unix seconds (the occurrence time is
        window_end), metric = metric_value (count, distinct count, sum, average, percentile,
        or for temporal kinds the number of distinct referenced rules seen), events = the
        evidence event ids mapped back to (file, ordinal). For a correlation of correlations
        the evidence is the union of the children's events and child_alerts their alert ids.
  convert prints {"type":"query","rule_id","title","kind":"detection"|"correlation",
        "output":bool,"sql":[...]} instead of running anything.

Rules
-----
Each PATH is a YAML file or a directory searched recursively for *.yml. Every file may hold
several YAML documents (action: global/repeat/reset collections, correlation rules, filters).
All files are parsed first, merged into one SigmaCollection, then correlation references
(by rule name or id, in `rules:` or an extended condition) are resolved across all of them,
so a correlation may live in another file than the rules it names. Regexes are validated by
pySigma's default SafePolicy (RE2: no look-around, no backreferences); --trusted-regex
switches to Python's re (TrustedPolicy).

Events
------
Each FILE (or directory: *.json, *.jsonl, *.ndjson recursively) is read as UTF-8 and split
into top-level JSON values with a json.JSONDecoder().raw_decode loop, so JSON Lines, one
pretty-printed object and several concatenated pretty-printed objects all work; a top-level
array contributes each element in order. Only objects are events: the event index counts
objects only, in that order, from 0 within each file. A decode error stops that file
(reported on stderr); the events before it are kept.

Flattening, evtx-dump shape (an object with Event.System, or System at top level):
  * Event.System scalars by their own names: EventID, Version, Level, Task, Opcode,
    Keywords, EventRecordID, Channel, Computer, ...
  * XML attributes of a System child become <Child>_<Attribute>: Provider_Name,
    Provider_Guid, Provider_EventSourceName, TimeCreated_SystemTime, Execution_ProcessID,
    Execution_ThreadID, Security_UserID, Correlation_ActivityID, ...
  * an element with text and attributes ({"#attributes":{...},"#text":v}) is v under the
    element's name, plus its attributes as <Name>_<Attribute> (EventID with Qualifiers gives
    EventID and EventID_Qualifiers).
  * Event.EventData.* and Event.UserData.<Wrapper>.* at top level by their own names (the
    single wrapper element under UserData is dropped). Deeper objects inside them are joined
    with dots (A.B). EventData/UserData XML attributes are kept as EventData_<Attr> /
    <Wrapper>_<Attr>, except xmlns attributes, which are dropped everywhere.
  * When an EventData/UserData name equals a System name, System keeps the plain name and the
    data value is stored as EventData.<Name> / UserData.<Name>.
  * An EventData/UserData name with spaces (Defender's "Threat Name", "Source Name",
    "Process Name") is stored under that name and also with the spaces removed (ThreatName,
    SourceName, ProcessName), the spelling SigmaHQ's windefend rules use, unless the event
    already has a field of that name.
  * null values are absent fields (SQL NULL: the backend cannot tell them apart anyway).
Flat shape (any other object, e.g. OTRF/Logstash/NXLog exports, already Sigma-style names):
  * keys as they are; nested objects joined with dots (a.b.c).
Both shapes:
  * numbers stay numbers (INTEGER/REAL), strings stay strings; booleans become the text
    'true'/'false' (what Sigma rules compare with; the backend also accepts 1/0).
  * a list of scalars is stored as its elements' text joined by "\\n" (so |contains finds any
    element; plain equality with one element does not match a list of two); a list holding
    objects is flattened element-wise as name.0.x, name.1.x, ...
  * SQLite column names are case-insensitive, so field names differing only in case share a
    column (ProcessID and ProcessId); if one event has both, the later key in the event wins.

Table
-----
One table `logs`, one column per distinct (case-insensitive) field name of all events and
every field a converted rule names, declared WITHOUT a type (no affinity: numbers stay
numbers, text stays text) but COLLATE NOCASE, Zircolite's collation: the backend relies on
it for case-insensitive `=`, which Sigma requires (LIKE is case-insensitive anyway; ASCII
only). --column-type text gives Zircolite's exact layout (TEXT COLLATE NOCASE: numbers are
stored as text and compared as text), --column-type numeric NUMERIC COLLATE NOCASE.
Hidden columns (never reported): sigma_file, sigma_event (file and index), sigma_ts (Unix
seconds, for correlations: System.TimeCreated SystemTime, else the first of @timestamp,
TimeCreated, timestamp, EventTime, UtcTime that parses as ISO-8601 or epoch s/ms; events
without one are skipped by correlations) and sigma_fulltext (every flattened value's text,
joined by "\\n": the backend's fulltext_field, which keyword/fieldless detections search with
LIKE '%kw%'; --no-keywords leaves fulltext_field unset and keyword rules are then refused).
REGEXP is registered as Python re.search(pattern, str(value)), false for NULL. The backend
passes Sigma's |re flags as an inline prefix, (?i), (?m), (?s), which Python reads the same
way; without |i a regex is case-sensitive, as Sigma says.

Logsource pipelines (--pipeline)
--------------------------------
The SQLite backend alone ignores logsource. pysigma-pipeline-windows/-sysmon declare
pysigma<2 but work unchanged with pySigma 2.0.1 (installed --no-deps, as the backend's README
says). The logsource condition is ANDed in front of the rule: Channel='...' AND (EventID=..
AND (detection)).
  windows (default) = sysmon_pipeline() + windows_logsource_pipeline():
    category -> Channel 'Microsoft-Windows-Sysmon/Operational' AND EventID:
      process_creation 1, file_change 2, network_connection 3, sysmon_status 4|16,
      process_termination 5, driver_load 6, image_load 7, create_remote_thread 8,
      raw_access_thread 9, process_access 10, file_event 11, registry_add 12,
      registry_delete 12, registry_set 13, registry_rename 14, registry_event 12|13|14,
      create_stream_hash 15, pipe_created 17|18, wmi_event 19|20|21, dns_query 22,
      file_delete 23, clipboard_capture 24, process_tampering 25, file_delete_detected 26,
      file_block_executable 27, file_block_shredding 28, file_executable_detected 29,
      sysmon_error 255.
    ps_module EventID 4103 and ps_script 4104 on Channel 'Microsoft-Windows-PowerShell/
      Operational' OR 'PowerShellCore/Operational'; ps_classic_start 400,
      ps_classic_provider_start 600, ps_classic_script 800 on Channel 'Windows PowerShell'.
    service -> Channel only (pySigma's sigma.pipelines.common.windows_logsource_mapping),
      e.g. security 'Security', system 'System', application 'Application', sysmon
      'Microsoft-Windows-Sysmon/Operational', powershell (the two above), powershell-classic
      'Windows PowerShell', taskscheduler 'Microsoft-Windows-TaskScheduler/Operational',
      wmi 'Microsoft-Windows-WMI-Activity/Operational', windefend 'Microsoft-Windows-Windows
      Defender/Operational', applocker (4 AppLocker channels), bits-client, ntlm,
      codeintegrity-operational, dns-client, ... (70 services, see that module).
    Any other category (file_access, file_rename, ...) or service, or a non-windows product:
      no condition at all (the rule runs over every event). No field is renamed.
  windows-audit = windows_audit_pipeline() + windows_logsource_pipeline() (instead of Sysmon):
    process_creation -> Channel 'Security' AND EventID 4688; registry_event -> 4657 AND
    OperationType IN ('New registry value created','Existing registry value modified');
    registry_set -> 4657 AND 'Existing registry value modified'; registry_add -> 4657 AND
    'New registry value created'. Renames for every service-security rule: Image ->
    NewProcessName, ParentImage -> ParentProcessName, Details -> NewValue, LogonId ->
    SubjectLogonId; for the registry categories first Image -> ProcessName, TargetObject ->
    ObjectName, and EventType/NewName/User refuse the rule. Other categories as in windows
    minus Sysmon (no condition).
  none: no pipeline.

Correlations
------------
Converted by the backend's CorrelationCompiler into one `WITH ... SELECT` statement over
`logs` (all of event_count, value_count, value_sum, value_avg, value_median,
value_percentile, temporal, temporal_ordered, chains, aliases, extended temporal conditions).
Timestamps: sigma_ts with timestamp_format=unix; event ids: rowid. What the SQL does:
  * every matching event anchors a window [ts - timespan, ts] per group (event_count,
    value_sum, value_avg: a window function "RANGE BETWEEN timespan PRECEDING AND CURRENT
    ROW"; value_count: COUNT(DISTINCT v COLLATE NOCASE); value_median/value_percentile:
    linearly interpolated percentile of the numeric values; temporal: COUNT(DISTINCT rule)).
    So one alert row per qualifying window end: 4 failed logons with gte 3 give 2 rows.
  * group-by values are compared and reported lower-cased when text; an event missing a
    group-by field is left out. value_* fields are numeric only (JSON numbers or numeric
    text), other values are ignored.
  * temporal_ordered: each referenced rule's first match after the previous one's inside
    the window. Extended conditions ("a and not b"): windows for negated rules look forward,
    [ts, ts + timespan] from the positive anchor, and only count once the latest event time
    (the horizon) has passed the window end.
  * value_percentile needs `condition: {percentile: N, ...}`; without it (as in the
    specification's example) the backend refuses the rule.
  * a correlation with generate: false (the default) that another correlation references is
    not run on its own (convert prints it with "sql": []); its parent includes it.

bench
-----
Loads events and converts rules once (both timed and reported: load_seconds,
convert_seconds), then runs every converted query (detection and correlation) over the
whole table --repeat times. seconds = total wall time of those runs (time.perf_counter);
events_per_second = events * repeat / seconds, i.e. events fully evaluated against all
converted rules per second. detection_seconds / correlation_seconds split it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import sqlite3
import sys
import time
from functools import lru_cache
from pathlib import Path

TABLE = "logs"
FILE_COL = "sigma_file"
INDEX_COL = "sigma_event"
TS_COL = "sigma_ts"
FULLTEXT_COL = "sigma_fulltext"
HIDDEN = (FILE_COL, INDEX_COL, TS_COL, FULLTEXT_COL)
TIME_FIELDS = ("@timestamp", "TimeCreated", "timestamp", "EventTime", "UtcTime")
COLUMN_TYPES = {"none": "COLLATE NOCASE", "text": "TEXT COLLATE NOCASE",
                "numeric": "NUMERIC COLLATE NOCASE"}


def qident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------

def iter_json_values(text: str, path: str):
    """Top-level JSON values of a text, arrays spread; yields objects only."""
    decoder = json.JSONDecoder()
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t\r\n\ufeff":
            i += 1
        if i >= n:
            return
        try:
            value, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            print(json.dumps({"warning": "bad JSON, rest of file skipped", "file": path,
                              "offset": i, "reason": str(e)}), file=sys.stderr)
            return
        if isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    yield item
        elif isinstance(value, dict):
            yield value


def scalar(value):
    """A JSON scalar as stored: numbers and strings as they are, booleans as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def put(out: dict, name: str, value) -> None:
    """Store a flattened value (None = absent); lists per the module docstring."""
    if value is None:
        return
    if isinstance(value, dict):
        flatten_into(out, value, name + ".")
        return
    if isinstance(value, list):
        if any(isinstance(v, (dict, list)) for v in value):
            for i, v in enumerate(value):
                put(out, f"{name}.{i}", v)
            return
        items = [scalar(v) for v in value if v is not None]
        if items:
            out[name] = "\n".join(str(v) for v in items)
        return
    out[name] = scalar(value)


def flatten_into(out: dict, obj: dict, prefix: str = "") -> None:
    for key, value in obj.items():
        if key == "#attributes" and isinstance(value, dict):
            base = prefix[:-1] if prefix.endswith(".") else prefix
            for attr, v in value.items():
                if attr == "xmlns" or attr.startswith("xmlns:"):
                    continue
                put(out, f"{base}_{attr}" if base else attr, v)
            continue
        if key == "#text":
            put(out, prefix[:-1] if prefix.endswith(".") else (prefix or "#text"), value)
            continue
        put(out, prefix + key, value)


def flatten_xml_element(out: dict, name: str, value) -> None:
    """An element of System/EventData: attributes as Name_Attr, #text as Name."""
    if isinstance(value, dict):
        attrs = value.get("#attributes")
        if isinstance(attrs, dict):
            for attr, v in attrs.items():
                if attr == "xmlns" or attr.startswith("xmlns:"):
                    continue
                put(out, f"{name}_{attr}", v)
        if "#text" in value:
            put(out, name, value["#text"])
        rest = {k: v for k, v in value.items() if k not in ("#attributes", "#text")}
        if rest:
            flatten_into(out, rest, name + ".")
        return
    put(out, name, value)


def flatten_evtx(event: dict) -> dict:
    out: dict = {}
    system = event.get("System")
    if isinstance(system, dict):
        for key, value in system.items():
            if key == "#attributes":
                continue
            flatten_xml_element(out, key, value)
    system_names = {k.lower() for k in out}

    def data_block(block, label):
        if not isinstance(block, dict):
            if block is not None:
                put(data, label, block)
            return
        for key, value in block.items():
            if key == "#attributes":
                if isinstance(value, dict):
                    for attr, v in value.items():
                        if attr == "xmlns" or attr.startswith("xmlns:"):
                            continue
                        put(data, f"{label}_{attr}", v)
                continue
            if key == "#text":
                put(data, label, value)
                continue
            flatten_xml_element(data, key, value)

    def merge(label):
        names = {k.lower() for k in data}
        for key, value in data.items():
            out[label + "." + key if key.lower() in system_names else key] = value
        for key, value in data.items():  # "Threat Name" is also ThreatName
            alias = key.replace(" ", "")
            if alias != key and alias.lower() not in names and alias.lower() not in system_names:
                out[alias] = value

    data: dict = {}
    data_block(event.get("EventData"), "EventData")
    merge("EventData")
    user_data = event.get("UserData")
    if isinstance(user_data, dict):
        for wrapper, inner in user_data.items():
            data = {}
            if wrapper == "#attributes":
                continue
            data_block(inner, wrapper)
            merge("UserData")
    # anything else beside System/EventData/UserData (RenderingInfo, ProcessingErrorData...)
    for key, value in event.items():
        if key not in ("System", "EventData", "UserData", "#attributes"):
            put(out, key, value)
    return out


def parse_time(value):
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value / 1000.0 if value > 1e11 else float(value)
    if not isinstance(value, str):
        return None
    s = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return parse_time(float(s))
    s = s.replace(" ", "T", 1) if re.match(r"\d{4}-\d\d-\d\d \d", s) else s
    s = re.sub(r"(\.\d{6})\d+", r"\1", s)
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    try:
        t = _dt.datetime.fromisoformat(s)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.timestamp()


def flatten_event(obj: dict):
    """(flattened fields, Unix seconds or None)."""
    root = obj.get("Event") if isinstance(obj.get("Event"), dict) else obj
    if isinstance(root.get("System"), dict):
        fields = flatten_evtx(root)
        ts = parse_time(fields.get("TimeCreated_SystemTime"))
        if ts is not None:
            return fields, ts
    else:
        fields = {}
        flatten_into(fields, obj)
    for name in TIME_FIELDS:
        ts = parse_time(fields.get(name))
        if ts is not None:
            return fields, ts
    return fields, None


def event_paths(inputs):
    for p in inputs:
        path = Path(p)
        if path.is_dir():
            for sub in sorted(path.rglob("*")):
                if sub.is_file() and sub.suffix in (".json", ".jsonl", ".ndjson"):
                    yield str(sub)
        else:
            yield p


class EventTable:
    """The SQLite table of flattened events."""

    def __init__(self, column_type: str = "none"):
        self.db = sqlite3.connect(":memory:")
        self.db.create_function("regexp", 2, _regexp, deterministic=True)
        self.decl = COLUMN_TYPES[column_type]
        self.columns: dict[str, str] = {}  # lower-case name -> column name
        self.rows: list[tuple[str, int]] = []  # rowid-1 -> (file, index)
        self.files: list[str] = []

    def load(self, inputs) -> int:
        events = []
        for path in event_paths(inputs):
            self.files.append(path)
            with open(path, encoding="utf-8-sig", errors="replace") as f:
                text = f.read()
            for index, obj in enumerate(iter_json_values(text, path)):
                fields, ts = flatten_event(obj)
                fulltext = "\n".join(str(v) for v in fields.values())
                row = {}
                for name, value in fields.items():
                    low = name.lower()
                    self.columns.setdefault(low, name)
                    row[low] = value
                row[FILE_COL] = path
                row[INDEX_COL] = index
                row[TS_COL] = ts
                row[FULLTEXT_COL] = fulltext
                events.append(row)
                self.rows.append((path, index))
        for h in HIDDEN:
            self.columns.pop(h, None)
        names = list(self.columns.values())
        if len(names) + len(HIDDEN) > 1900:
            raise SystemExit(f"{len(names)} distinct field names: over SQLite's column limit")
        cols = [f"{qident(c)} {self.decl}" for c in names]
        cols += [f"{FILE_COL} TEXT", f"{INDEX_COL} INTEGER", f"{TS_COL} REAL",
                 f"{FULLTEXT_COL} TEXT"]
        self.db.execute(f"CREATE TABLE {TABLE} ({', '.join(cols)})")
        order = [n.lower() for n in names] + list(HIDDEN)
        sql = (f"INSERT INTO {TABLE} (rowid, {', '.join(qident(c) for c in names + list(HIDDEN))})"
               f" VALUES (?{', ?' * len(order)})")
        self.db.executemany(sql, ((i + 1, *(r.get(k) for k in order))
                                  for i, r in enumerate(events)))
        self.db.commit()
        return len(events)

    def ensure(self, fields) -> None:
        for field in fields:
            low = field.lower()
            if low in self.columns or low in HIDDEN or low == "rowid":
                continue
            self.db.execute(f"ALTER TABLE {TABLE} ADD COLUMN {qident(field)} {self.decl}")
            self.columns[low] = field

    def execute(self, sql: str, with_names: bool = False):
        """Run a query, adding a missing column (as NULL) when SQLite names one."""
        for _ in range(200):
            try:
                cur = self.db.execute(sql)
                rows = cur.fetchall()
                return ([d[0] for d in cur.description], rows) if with_names else rows
            except sqlite3.OperationalError as e:
                m = re.match(r"no such column: (.+)$", str(e))
                if not m or m.group(1).lower() in self.columns:
                    raise
                name = m.group(1).strip("`\"")
                self.ensure([name])
        raise RuntimeError("too many missing columns")

    def event(self, rowid: int) -> dict:
        path, index = self.rows[rowid - 1]
        return {"file": path, "event": index}


@lru_cache(maxsize=4096)
def _compile(pattern: str):
    return re.compile(pattern)


def _regexp(pattern, value):
    if value is None or pattern is None:
        return False
    return _compile(pattern).search(str(value)) is not None


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------

def rule_paths(inputs):
    for p in inputs:
        path = Path(p)
        if path.is_dir():
            yield from (str(s) for s in sorted(path.rglob("*.yml")))
        else:
            yield p


def rule_key(rule) -> str | None:
    if getattr(rule, "id", None):
        return str(rule.id)
    return getattr(rule, "name", None) or getattr(rule, "title", None)


def make_pipeline(name: str):
    if name == "none":
        return None
    from sigma.pipelines.windows import windows_audit_pipeline, windows_logsource_pipeline
    if name == "windows":
        from sigma.pipelines.sysmon import sysmon_pipeline
        return sysmon_pipeline() + windows_logsource_pipeline()
    return windows_audit_pipeline() + windows_logsource_pipeline()


class Converted:
    def __init__(self, rule, file, kind, sql, output):
        self.rule, self.file, self.kind, self.sql, self.output = rule, file, kind, sql, output
        self.rule_id = rule_key(rule)
        self.fields: list[str] = []  # fields the detection names (columns to add as NULL)


def load_and_convert(args, emit):
    """Parse every rule file, resolve references, convert. Returns [Converted]."""
    from sigma.backends.sqlite import sqliteBackend
    from sigma.collection import SigmaCollection
    from sigma.correlations import SigmaCorrelationRule, SigmaExtendedCorrelationCondition
    from sigma.exceptions import SigmaRuleLocation

    policy = None
    if args.trusted_regex:
        from sigma.policy.profiles import TrustedPolicy
        policy = TrustedPolicy

    def refuse(file, rule, stage, reason):
        emit({"type": "refused", "file": file, "rule_id": rule_key(rule) if rule else None,
              "title": getattr(rule, "title", None), "stage": stage,
              "reason": " ".join(str(reason).split())[:500]})

    items = []  # rules and filters, in file order
    file_of = {}
    for path in rule_paths(args.rules):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            coll = SigmaCollection.from_yaml(text, collect_errors=True,
                                             source=SigmaRuleLocation(Path(path)),
                                             collect_filters=True, resolve_references=False,
                                             policy=policy)
        except Exception as e:  # YAML syntax, alias bombs...
            refuse(path, None, "parse", f"{type(e).__name__}: {e}")
            continue
        attached = set()
        for rule in list(coll.rules) + list(coll.filters):
            if rule.errors:
                refuse(path, rule, "parse", f"{type(rule.errors[0]).__name__}: {rule.errors[0]}")
                attached.update(id(e) for e in rule.errors)
                continue
            file_of[id(rule)] = path
            items.append(rule)
        for e in coll.errors:
            if id(e) not in attached:
                refuse(path, None, "parse", f"{type(e).__name__}: {e}")

    # Drop correlations whose references cannot be resolved (repeat: they may be referenced).
    rules = [r for r in items if not _is_filter(r)]
    filters = [r for r in items if _is_filter(r)]
    while True:
        names = {}
        for r in rules:
            if r.id is not None:
                names[str(r.id)] = r
            if r.name is not None:
                names[r.name] = r
        bad = []
        for r in rules:
            if not isinstance(r, SigmaCorrelationRule):
                continue
            refs = [x.reference for x in (r.rules or [])]
            if r.rules is None and isinstance(r.condition, SigmaExtendedCorrelationCondition):
                refs = list(r.condition.get_referenced_rules())
            missing = [x for x in refs if x not in names and _norm_uuid(x) not in names]
            if missing:
                bad.append((r, missing))
        if not bad:
            break
        for r, missing in bad:
            refuse(file_of[id(r)], r, "reference",
                   f"referenced rule(s) not found or refused: {', '.join(missing)}")
            rules.remove(r)
    try:
        collection = SigmaCollection(rules + filters, resolve_references=True)
    except Exception as e:
        refuse(None, None, "reference", f"{type(e).__name__}: {e}")
        return [], None

    options = dict(table=TABLE, timestamp_field=TS_COL, timestamp_format="unix")
    if not args.no_keywords:
        options["fulltext_field"] = FULLTEXT_COL
    backend = sqliteBackend(make_pipeline(args.pipeline), **options)
    backend.init_processing_pipeline("default")
    converted = []
    for rule in collection.rules:
        path = file_of.get(id(rule))
        try:
            if isinstance(rule, SigmaCorrelationRule):
                sql = backend.convert_correlation_rule(rule, "default")
                converted.append(Converted(rule, path, "correlation", list(sql), rule._output))
            else:
                sql = backend.convert_rule(rule, "default")
                if not sql and not rule._output:
                    # Output disabled by a correlation: finalize its predicates ourselves.
                    states = rule.get_conversion_states()
                    sql = [backend.finalize_query(rule, q, i, states[i], "default")
                           for i, q in enumerate(rule.get_conversion_result())]
                converted.append(Converted(rule, path, "detection", list(sql), rule._output))
                converted[-1].fields = list(backend.required_fields(rule))
        except Exception as e:
            refuse(path, rule, "convert", f"{type(e).__name__}: {e}")
    return converted, backend


def _is_filter(rule) -> bool:
    from sigma.filters import SigmaFilter
    return isinstance(rule, SigmaFilter)


def _norm_uuid(x: str) -> str:
    return x.strip().lower()


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------

SELECT_PREFIX = f"SELECT * FROM {TABLE} WHERE "


def detection_sql(sql: str) -> str:
    if sql.startswith(SELECT_PREFIX):
        return f"SELECT rowid FROM {TABLE} WHERE " + sql[len(SELECT_PREFIX):]
    return f"SELECT rowid FROM ({sql})"


def run_rule(table: EventTable, conv: Converted):
    """Detection: sorted rowids. Correlation: the result rows as dicts."""
    if conv.kind == "detection":
        table.ensure(conv.fields)
        ids = set()
        for sql in conv.sql:
            ids.update(r[0] for r in table.execute(detection_sql(sql)))
        return sorted(ids)
    for group in conv.rule.group_by or []:
        table.ensure([group])
    rows = []
    for sql in conv.sql:
        names, result = table.execute(sql, with_names=True)
        rows.extend(dict(zip(names, r)) for r in result)
    return rows


def correlation_line(table: EventTable, conv: Converted, row: dict) -> dict:
    rowids, events = [], []
    for ident in json.loads(row["event_ids"] or "[]"):
        _, _, rid = str(ident).partition(":")  # "<source table>:<rowid>"
        try:
            rowids.append(int(rid))
        except ValueError:
            events.append({"id": ident})
    events = [table.event(r) for r in sorted(rowids)] + events
    return {"type": "correlation", "rule_id": conv.rule_id,
            "correlation_type": row["metric_name"],
            "group": json.loads(row["group_keys"] or "{}"),
            "window_start": row["window_start"], "window_end": row["window_end"],
            "metric": row["metric_value"], "events": events, "alert_id": row["alert_id"],
            "child_alerts": json.loads(row["child_alert_ids"] or "[]")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("match", "bench", "convert"):
        p = sub.add_parser(name)
        p.add_argument("--rules", nargs="+", required=True)
        if name != "convert":
            p.add_argument("--events", nargs="+", required=True)
        p.add_argument("--out")
        p.add_argument("--pipeline", choices=("windows", "windows-audit", "none"),
                       default="windows")
        p.add_argument("--trusted-regex", action="store_true",
                       help="validate |re with Python re (TrustedPolicy) instead of RE2")
        p.add_argument("--no-keywords", action="store_true",
                       help="no fulltext_field: keyword (fieldless) rules are refused")
        p.add_argument("--column-type", choices=tuple(COLUMN_TYPES), default="none")
        p.add_argument("--include-referenced", action="store_true",
                       help="also report matches of rules whose output a correlation disabled")
        if name == "bench":
            p.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)

    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    refused = []

    def emit(obj):
        if obj.get("type") == "refused":
            refused.append(obj)
        out.write(json.dumps(obj, ensure_ascii=False) + "\n")

    t0 = time.perf_counter()
    converted, _ = load_and_convert(args, emit)
    convert_seconds = time.perf_counter() - t0
    summary = {"rules_converted": len(converted),
               "detections": sum(c.kind == "detection" for c in converted),
               "correlations": sum(c.kind == "correlation" for c in converted),
               "convert_seconds": round(convert_seconds, 3)}

    if args.cmd == "convert":
        for c in converted:
            emit({"type": "query", "rule_id": c.rule_id, "title": c.rule.title, "kind": c.kind,
                  "output": c.output, "file": c.file, "sql": c.sql})
        summary["refused"] = len(refused)
        print(json.dumps(summary), file=sys.stderr)
        return 0

    table = EventTable(args.column_type)
    t0 = time.perf_counter()
    n_events = table.load(args.events)
    load_seconds = time.perf_counter() - t0
    summary.update(events=n_events, event_files=len(table.files), columns=len(table.columns),
                   load_seconds=round(load_seconds, 3))
    for c in converted:
        if c.kind == "detection":
            table.ensure(c.fields)

    if args.cmd == "match":
        matches = 0
        for c in converted:
            try:
                result = run_rule(table, c)
            except Exception as e:
                emit({"type": "refused", "file": c.file, "rule_id": c.rule_id,
                      "title": c.rule.title, "stage": "execute",
                      "reason": f"{type(e).__name__}: {e}"[:500]})
                continue
            if c.kind == "detection":
                if not (c.output or args.include_referenced):
                    continue
                hits = [table.event(r) for r in result]  # rowid order: files as given
                for h in hits:
                    emit({"type": "match", "rule_id": c.rule_id, **h})
                matches += len(hits)
            else:
                for row in result:
                    emit(correlation_line(table, c, row))
        summary.update(matches=matches, refused=len(refused))
        print(json.dumps(summary), file=sys.stderr)
        return 0

    # bench
    runnable = []
    for c in converted:  # one untimed pass: drops rules that fail, adds missing columns
        try:
            run_rule(table, c)
            runnable.append(c)
        except Exception as e:
            emit({"type": "refused", "file": c.file, "rule_id": c.rule_id,
                  "title": c.rule.title, "stage": "execute",
                  "reason": f"{type(e).__name__}: {e}"[:500]})
    det = [c for c in runnable if c.kind == "detection"]
    cor = [c for c in runnable if c.kind == "correlation"]
    det_s = cor_s = 0.0
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for c in det:
            run_rule(table, c)
        t1 = time.perf_counter()
        for c in cor:
            run_rule(table, c)
        t2 = time.perf_counter()
        det_s += t1 - t0
        cor_s += t2 - t1
    seconds = det_s + cor_s
    result = {"events": n_events, "rules": len(runnable), "detection_rules": len(det),
              "correlation_rules": len(cor), "repeat": args.repeat,
              "seconds": round(seconds, 6),
              "events_per_second": round(n_events * args.repeat / seconds, 3) if seconds else None,
              "detection_seconds": round(det_s, 6), "correlation_seconds": round(cor_s, 6),
              "rule_evaluations_per_second":
                  round(n_events * len(runnable) * args.repeat / seconds, 1) if seconds else None,
              "convert_seconds": round(convert_seconds, 3), "load_seconds": round(load_seconds, 3),
              "refused": len(refused), "pipeline": args.pipeline}
    out.write(json.dumps(result) + "\n")
    print(json.dumps(summary), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
