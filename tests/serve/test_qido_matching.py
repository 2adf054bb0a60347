"""QIDO-RS matching (PS3.18 8.3.4, PS3.4 C.2.2.2) and content negotiation (PS3.18 8.7) on their own: every kind
of matching on datasets built here, and the Accept header against what a resource offers. The node answering over
HTTP is tested in test_dicomweb_standard.py."""
from __future__ import annotations

import pytest

pydicom = pytest.importorskip("pydicom", reason="matching reads pydicom datasets (the `serve` extra)")

from dcube_edge.runtimes.serve import qido  # noqa: E402
from dcube_edge.runtimes.serve.matching import QueryError, attribute, matcher, values_of  # noqa: E402
from dcube_edge.runtimes.serve.negotiation import Offer, choose  # noqa: E402


def entity(**attrs):
    from pydicom.dataset import Dataset

    ds = Dataset()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def matches(ds, name: str, value: str, empty: bool = False) -> bool:
    attr = attribute(name)
    return matcher(attr, value, empty)(values_of(ds, attr.path))


PATIENT = dict(PatientName="Doe^Jane=ドウ^ジェーン", PatientID="P-1", StudyDate="20261126", StudyTime="120530.25",
               AcquisitionDateTime="20261126120530", SeriesNumber=990, SliceThickness="2.50", Modality="SR",
               StudyInstanceUID="1.2.3.4", ImageType=["ORIGINAL", "PRIMARY"], AccessionNumber="A1")


@pytest.mark.parametrize("name, value, expected", [
    ("PatientID", "P-1", True), ("PatientID", "p-1", False), ("00100020", "NOBODY", False),  # single value
    ("PatientID", "", True), ("PatientID", "*", True),  # universal
    ("PatientID", "P-?", True), ("PatientID", "Q*", False), ("Modality", "S*", True),  # wild cards
    ("PatientName", "doe^jane", True), ("PatientName", "DOE*", True), ("PatientName", "Nobody", False),  # PN: case
    ("PatientName", "ドウ^ジェーン", True),  # a component group (ideographic)
    ("StudyDate", "20261126", True), ("StudyDate", "20261101-20261130", True), ("StudyDate", "-20261125", False),
    ("StudyDate", "20261126-", True), ("StudyDate", "20261127-", False),  # ranges
    ("StudyTime", "12", True), ("StudyTime", "1205", True), ("StudyTime", "1206", False),  # a partial time's span
    ("StudyTime", "120000-121000", True), ("StudyTime", "-1200", False),
    ("AcquisitionDateTime", "202611-202612", True), ("AcquisitionDateTime", "20261127-", False),
    ("StudyInstanceUID", "1.2.9,1.2.3.4", True), ("StudyInstanceUID", "1.2.9\\1.2.8", False),  # UID lists
    ("SeriesNumber", "990", True), ("SeriesNumber", "0990", True), ("SliceThickness", "2.5", True),  # numbers
    ("ImageType", "PRIMARY", True), ("ImageType", "DERIVED", False),  # any value of a multi-valued attribute
    ("Modality", "CT\\SR", True), ("Modality", "CT\\MR", False),  # a value list matches any of its values
    ("AccessionNumber", "A1", True), ("PatientWeight", "70", False),  # held nowhere: no match
])
def test_each_kind_of_matching(name, value, expected):
    assert matches(entity(**PATIENT), name, value) is expected


def test_empty_value_matching_and_sequence_paths():
    from pydicom.dataset import Dataset

    request = Dataset()
    request.RequestedProcedureID = "RP7"
    ds = entity(RequestAttributesSequence=[request])
    assert matches(ds, "RequestAttributesSequence.RequestedProcedureID", "RP7")
    assert matches(ds, "00400275.00401001", "RP*")  # tags as well as keywords, a wild card in the item
    assert not matches(ds, "RequestAttributesSequence.RequestedProcedureID", "RP8")
    assert not matches(ds, "PatientID", "P-1") and matches(ds, "PatientID", "P-1", empty=True)


@pytest.mark.parametrize("name, value, says", [
    ("Foo", "1", "not a DICOM attribute"), ("StudyDate", "2026-11-26", "not a date"), ("StudyTime", "25h", "not a time"),
    ("SeriesNumber", "9*", "give a number"), ("StudyInstanceUID", "1.2.x", "a UID is digits and dots"),
    ("PatientID.PatientName", "x", "only a sequence"), ("StudyDate", "-", "'-' alone"),
])
def test_what_cannot_be_matched_is_refused_with_the_reason(name, value, says):
    with pytest.raises(QueryError, match=says):
        matcher(attribute(name), value)(["x"])


def query(params: list[tuple[str, str]], level: str = "studies", scope: dict | None = None):
    return qido.parse(level, params, scope or {})


@pytest.mark.parametrize("params, says", [
    ([("limit", "abc")], "limit='abc'"), ([("offset", "-1")], "offset='-1'"), ([("limit", "1e3")], "limit"),
    ([("fuzzymatching", "maybe")], "true or false"), ([("PatientID", "1"), ("PatientID", "2")], "twice"),
    ([("includefield", "NotAnAttribute")], "not a DICOM attribute"),
])
def test_bad_query_parameters_are_refused(params, says):
    with pytest.raises(QueryError, match=says):
        query(params)


def test_unsupported_parameters_are_named_in_warnings_not_dropped_silently():
    q = query([("ContentSequence", "x"), ("NumberOfStudyRelatedInstances", "3"), ("fuzzymatching", "true"),
               ("PatientID", "P-1"), ("limit", "5000")])
    assert q.limit == qido.MAX_RESULTS and [a.name for a, _ in q.keys] == ["PatientID"]
    assert any("ContentSequence, NumberOfStudyRelatedInstances" in w for w in q.warnings)
    assert any("fuzzymatching" in w for w in q.warnings)


def results():
    """Two studies of two patients: one with two SR series, one with one."""
    out = []
    for study, patient, series in (("1.2.1", "P-1", ("1.2.1.1", "1.2.1.1", "1.2.1.2")), ("1.2.2", "P-2", ("1.2.2.1",))):
        for i, s in enumerate(series):
            out.append(entity(StudyInstanceUID=study, SeriesInstanceUID=s, SOPInstanceUID=f"{s}.{i}", PatientID=patient,
                              Modality="SR", SOPClassUID="1.2.840.10008.5.1.4.1.1.88.33", StudyDate="20261126",
                              ContentDate="20261127"))
    return out


def test_search_levels_counts_paging_and_retrieve_urls():
    base = "http://node:8080/dicomweb"
    studies = qido.search(results(), query([]), base).rows
    assert [str(r.StudyInstanceUID) for r in studies] == ["1.2.1", "1.2.2"]
    assert studies[0].NumberOfStudyRelatedSeries == 2 and studies[0].NumberOfStudyRelatedInstances == 3
    assert studies[0].to_json_dict()["00080061"]["Value"] == ["SR"] and studies[0].RetrieveURL == f"{base}/studies/1.2.1"
    assert qido.search(results(), query([("ModalitiesInStudy", "CT")]), base).rows == []
    assert [str(r.PatientID) for r in qido.search(results(), query([("00100020", "P-2")]), base).rows] == ["P-2"]
    series = qido.search(results(), query([], "series", {"study": "1.2.1"}), base).rows
    assert [r.NumberOfSeriesRelatedInstances for r in series] == [2, 1] and "PatientID" not in series[0]
    every = qido.search(results(), query([], "series"), base).rows
    assert len(every) == 3 and every[2].PatientID == "P-2"  # unscoped: the study's attributes come along
    page = qido.search(results(), query([("limit", "2"), ("offset", "1")], "instances"), base)
    assert [str(r.SOPInstanceUID) for r in page.rows] == ["1.2.1.1.1", "1.2.1.2.2"] and "1 additional" in page.warnings[0]
    row = page.rows[0]
    assert row.RetrieveURL == f"{base}/studies/1.2.1/series/1.2.1.1/instances/1.2.1.1.1"
    assert "ContentDate" not in row
    assert "ContentDate" in qido.search(results(), query([("includefield", "ContentDate")], "instances"), base).rows[0]
    assert "ContentDate" in qido.search(results(), query([("includefield", "all")], "instances"), base).rows[0]
    every_study_attribute = qido.search(results(), query([("includefield", "all")]), base).rows[0]
    assert "PatientID" in every_study_attribute and "ContentDate" not in every_study_attribute  # not a study's
    relational = qido.search(results(), query([("SOPInstanceUID", "1.2.2.1.0")]), base).rows
    assert [str(r.StudyInstanceUID) for r in relational] == ["1.2.2"]


@pytest.mark.parametrize("accept, chosen", [
    (None, "multipart/related"), ("*/*", "multipart/related"), ('multipart/related; type="application/dicom"', "multipart/related"),
    ("multipart/related; type=application/dicom; transfer-syntax=*", "multipart/related"),
    ("multipart/related", "multipart/related"),  # no type: the resource's default part type
    ('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1', "multipart/related"),
    ('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50', None),
    ("application/dicom+json", None), ("text/html", None), ('multipart/related; type="application/dicom+xml"', None),
    ("text/html, */*;q=0.1", "multipart/related"), ("*/*;q=0", None),
])
def test_accept_against_what_an_instance_resource_offers(accept, chosen):
    offers = [Offer("multipart/related", {"type": "application/dicom", "transfer-syntax": "1.2.840.10008.1.2.1"})]
    found = choose(accept, offers, default_type="application/dicom")
    assert (found.media if found else None) == chosen


def test_accept_prefers_by_weight_and_honours_explicit_refusals():
    offers = [Offer("application/dicom+json"), Offer("application/json")]
    assert choose("application/json, application/dicom+json;q=0.5", offers).media == "application/json"
    assert choose("application/*, application/dicom+json;q=0", offers).media == "application/json"
    assert choose('multipart/related; type="application/dicom+xml"', offers) is None


def test_a_warning_header_is_one_quoted_latin_1_string():
    from dcube_edge.runtimes.serve.wsgi import warning

    name, value = warning('instance 1.2.3: modality "CT" not accepted \\ for 山田\nsecond line')
    assert name == "Warning" and value.startswith('299 dcube-edge "') and value.endswith('"')
    assert value.isascii() and "\n" not in value and '\\"CT\\"' in value


@pytest.mark.parametrize("path, expected", [
    ("/dicomweb/studies", ("search", "studies", {})), ("/dicomweb/series/", ("search", "series", {})),
    ("/dicomweb/studies/1.2/instances", ("search", "instances", {"study": "1.2"})),
    ("/dicomweb/studies/1.2/series/3.4/instances", ("search", "instances", {"study": "1.2", "series": "3.4"})),
    ("/dicomweb/studies/1.2/series/3.4/instances/5.6", ("retrieve", None, {"study": "1.2", "series": "3.4", "instance": "5.6"})),
    ("/dicomweb/studies/1.2/series/3.4/metadata", ("metadata", None, {"study": "1.2", "series": "3.4"})),
    ("/dicomweb/studies/1.2/instances/5.6", None), ("/dicomweb/studies/1.2/rendered", None), ("/dicomweb/workitems", None),
])
def test_the_studies_service_resources(path, expected):
    from dcube_edge.runtimes.serve.dicomweb import resolve

    assert resolve(path) == expected
