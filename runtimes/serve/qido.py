"""QIDO-RS (PS3.18 10.6) over the node's results: ``/studies``, ``/series``, ``/instances`` and their study- and
series-scoped forms, with the query parameters of PS3.18 8.3.4.

- Matching (:mod:`.matching`) on any attribute the results hold, at any level of the query (a relational query:
  ``/studies?SOPClassUID=…`` finds the studies holding such an instance), plus the computed Modalities in Study.
  An attribute that cannot be matched (a sequence without a path into it, a binary VR, the Number of … counts) is
  ignored and named in a ``Warning: 299`` header; a name that is no DICOM attribute, a malformed date or number,
  or a bad ``limit``/``offset`` is 400 with the reason.
- ``fuzzymatching=true``: not supported; literal matching is done and a Warning says so (PS3.18 8.3.4.2).
- ``includefield``: the attributes named (keywords or tags), or ``all`` (every attribute the results hold at that
  level, sequences excepted), beside those PS3.18 Tables 10.6.3-3 to -5 list and the matching keys.
- ``limit``/``offset`` page (8.3.4.4); at most :data:`MAX_RESULTS` rows per response, with a Warning naming how
  many more there are.
- Every row has an absolute Retrieve URL (0008,1190) of its own study, series or instance (10.6.3)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .matching import Attribute, QueryError, attribute, matchable, matcher, values_of

MAX_RESULTS = 1000
CONTROL = {"limit", "offset", "includefield", "fuzzymatching", "emptyvaluematching", "multiplevaluematching",
           "accept", "charset"}
# What each level returns (PS3.18 Tables 10.6.3-3, -4, -5), where the results hold it.
STUDY = ("StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability", "ModalitiesInStudy",
         "ReferringPhysicianName", "TimezoneOffsetFromUTC", "PatientName", "PatientID", "PatientBirthDate",
         "PatientSex", "StudyInstanceUID", "StudyID", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES = ("Modality", "TimezoneOffsetFromUTC", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
          "NumberOfSeriesRelatedInstances", "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime")
INSTANCE = ("SOPClassUID", "SOPInstanceUID", "InstanceAvailability", "TimezoneOffsetFromUTC", "InstanceNumber",
            "Rows", "Columns", "BitsAllocated", "NumberOfFrames")
RETURNED = {"studies": STUDY, "series": ("StudyInstanceUID", *SERIES),
            "instances": ("StudyInstanceUID", "SeriesInstanceUID", *INSTANCE)}
# What ``includefield=all`` adds at the study and series levels, beside the patient's attributes (group 0010):
# the attributes of the General Study and General Series / Equipment modules (PS3.3 C.7.2.1, C.7.3.1, C.7.5.1).
STUDY_ALL = {"StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName", "StudyID", "StudyDescription",
             "StudyInstanceUID"}
SERIES_ALL = {"Modality", "SeriesDate", "SeriesTime", "SeriesDescription", "SeriesNumber", "SeriesInstanceUID",
              "Manufacturer", "ManufacturerModelName", "StationName", "SoftwareVersions", "InstitutionName"}
COUNTS = {"NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "NumberOfSeriesRelatedInstances"}
KEY = {"studies": ("StudyInstanceUID",), "series": ("StudyInstanceUID", "SeriesInstanceUID"),
       "instances": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}


@dataclass
class Answer:
    rows: list  # pydicom Datasets, one per matching study, series or instance
    warnings: list[str] = field(default_factory=list)


@dataclass
class Query:
    """A parsed QIDO-RS request."""

    level: str  # studies | series | instances
    keys: list[tuple[Attribute, str]]
    include: set[int] | None  # tags to include beside the defaults; None: all
    limit: int = MAX_RESULTS
    offset: int = 0
    empty_matches: bool = False
    warnings: list[str] = field(default_factory=list)


def parse(level: str, params: list[tuple[str, str]], scope: dict[str, str | None]) -> Query:
    """The request's query parameters (in order) and its path's study/series scope as a Query; QueryError for
    what cannot be performed."""
    from pydicom.datadict import tag_for_keyword

    named: dict[str, str] = {}
    for name, value in params:
        if name in named and name != "includefield":
            raise QueryError(f"{name} is given twice; give each attribute once (a UID list as UID,UID)")
        named[name] = f"{named[name]},{value}" if name == "includefield" and name in named else value
    query = Query(level, [], set())
    limit = count(named.get("limit"), "limit")
    query.limit = MAX_RESULTS if limit is None else min(limit, MAX_RESULTS)
    query.offset = count(named.get("offset"), "offset") or 0
    query.empty_matches = flag(named.get("emptyvaluematching"), "emptyvaluematching")
    if flag(named.get("fuzzymatching"), "fuzzymatching"):
        query.warnings.append("The fuzzymatching parameter is not supported. Only literal matching has been performed.")
    if flag(named.get("multiplevaluematching"), "multiplevaluematching"):
        query.warnings.append("multiplevaluematching is not supported; a value list separated by \\ matches any of its "
                              "values")
    include = named.get("includefield")
    if include is not None:
        parts = [p.strip() for p in include.split(",") if p.strip()]
        query.include = None if "all" in parts else {attribute(p).tag for p in parts}
    for keyword, uid in (("StudyInstanceUID", scope.get("study")), ("SeriesInstanceUID", scope.get("series"))):
        if uid:
            query.keys.append((Attribute((tag_for_keyword(keyword),), "UI", keyword), uid))
    ignored = []
    for name, value in named.items():
        if name in CONTROL:
            continue
        attr = attribute(name)
        if not matchable(attr) or attr.path[0] in {tag_for_keyword(k) for k in COUNTS}:
            ignored.append(name)
            continue
        matcher(attr, value, query.empty_matches)  # a malformed value is refused now, not per row
        query.keys.append((attr, value))
    if ignored:
        query.warnings.append(f"The following attributes are not supported for matching and were ignored: "
                              f"{', '.join(ignored)}")
    return query


def count(text: str | None, name: str) -> int | None:
    """A ``uint`` query parameter (PS3.18 8.3.4.4), None where absent."""
    if text is None:
        return None
    if not text.isascii() or not text.isdigit():
        raise QueryError(f"{name}={text[:40]!r}: give a whole number (0 or more)")
    return int(text)


def flag(text: str | None, name: str) -> bool:
    if text is None:
        return False
    if text.lower() not in ("true", "false"):
        raise QueryError(f"{name}={text[:40]!r}: give true or false")
    return text.lower() == "true"


def search(results: Iterable, query: Query, base_url: str) -> Answer:
    """The rows of the query's level over ``results`` (the result datasets, oldest first)."""
    results = list(results)
    computed = derived(results)
    tests = [(attr, matcher(attr, value, query.empty_matches)) for attr, value in query.keys]
    groups: dict[tuple[str, ...], list] = {}
    for ds in results:
        extra = computed[str(ds.StudyInstanceUID)][0]
        if all(test(values_of(extra, attr.path) if attr.path[0] in extra else values_of(ds, attr.path))
               for attr, test in tests):
            groups.setdefault(tuple(str(ds.get(k, "")) for k in KEY[query.level]), []).append(ds)
    keys = list(groups)
    page = keys[query.offset:query.offset + query.limit]
    warnings = list(query.warnings)
    if (rest := len(keys) - query.offset - len(page)) > 0:
        warnings.append(f"There are {rest} additional results that can be requested (offset={query.offset + len(page)})")
    return Answer([row(groups[k][0], computed, query, base_url) for k in page], warnings)


def derived(results: list) -> dict:
    """Per study UID: the attributes computed over its results (PS3.4 C.3.4: Modalities in Study, Number of Study
    Related Series / Instances) and the number of instances of each of its series."""
    from pydicom.dataset import Dataset

    out: dict = {}
    for ds in results:
        study = out.setdefault(str(ds.StudyInstanceUID), {"modalities": [], "series": {}, "instances": 0})
        if str(ds.get("Modality", "")) and str(ds.Modality) not in study["modalities"]:
            study["modalities"].append(str(ds.Modality))
        series = str(ds.SeriesInstanceUID)
        study["series"][series] = study["series"].get(series, 0) + 1
        study["instances"] += 1
    computed = {}
    for uid, facts in out.items():
        extra = Dataset()
        extra.ModalitiesInStudy = facts["modalities"]
        extra.NumberOfStudyRelatedSeries = len(facts["series"])
        extra.NumberOfStudyRelatedInstances = facts["instances"]
        computed[uid] = (extra, facts["series"])
    return computed


def at_level(keyword: str, group: int, level: str) -> bool:
    """Whether an attribute belongs to the level of a search (for ``includefield=all``)."""
    study = group == 0x0010 or keyword in STUDY_ALL
    return level == "instances" or study or (level == "series" and keyword in SERIES_ALL)


def row(ds, computed: dict, query: Query, base_url: str):
    """One response item: the level's attributes (and those of the levels above where the query is not scoped
    to them), the matching keys, the included fields, the counts and the Retrieve URL."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataset import Dataset

    extra, series_counts = computed[str(ds.StudyInstanceUID)]
    out = Dataset()
    tags = {tag_for_keyword(k) for k in RETURNED[query.level]}
    scoped = {a.name for a, _ in query.keys if a.name in ("StudyInstanceUID", "SeriesInstanceUID")}
    if query.level != "studies" and "StudyInstanceUID" not in scoped:
        tags |= {tag_for_keyword(k) for k in STUDY}
    if query.level == "instances" and "SeriesInstanceUID" not in scoped:
        tags |= {tag_for_keyword(k) for k in SERIES}
    tags |= {attr.path[0] for attr, _ in query.keys}
    if query.include is None:
        tags |= {e.tag for e in ds if e.VR != "SQ" and e.tag.group != 0x0002 and at_level(e.keyword, e.tag.group,
                                                                                           query.level)}
    else:
        tags |= query.include
    for tag in sorted(tags):
        if tag in extra:
            out[tag] = extra[tag]
        elif tag in ds and tag != 0x00080005:
            out[tag] = ds[tag]
    if tag_for_keyword("NumberOfSeriesRelatedInstances") in tags:
        out.NumberOfSeriesRelatedInstances = series_counts[str(ds.SeriesInstanceUID)]
    if tag_for_keyword("InstanceAvailability") in tags:
        out.InstanceAvailability = "ONLINE"
    if any(e.VR in ("PN", "LO", "SH", "LT", "ST", "UT", "UC") and not str(e.value).isascii() for e in out):
        out.SpecificCharacterSet = "ISO_IR 192"  # DICOM JSON is UTF-8 (PS3.18 F.2)
    out.RetrieveURL = "/".join([f"{base_url}/studies/{ds.StudyInstanceUID}",
                                *([f"series/{ds.SeriesInstanceUID}"] if query.level != "studies" else []),
                                *([f"instances/{ds.SOPInstanceUID}"] if query.level == "instances" else [])])
    return out


__all__ = ["Answer", "Query", "QueryError", "parse", "search"]
