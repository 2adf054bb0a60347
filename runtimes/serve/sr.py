"""The result as a DICOM Structured Report referencing the classified image (``highdicom``)."""
from __future__ import annotations


def structured_report(source_path: str, label: str, probs: dict, engine_hash: str):
    """A Comprehensive SR (highdicom) with the label and per-class probabilities, referencing the source
    image; its UIDs derive from the source and the engine, so a retried send is the same document."""
    from highdicom.sr import (
        CodeContentItem,
        CodedConcept,
        ComprehensiveSR,
        ContainerContentItem,
        ContentSequence,
        ImageContentItem,
        NumContentItem,
        RelationshipTypeValues,
    )
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    src = dcmread(source_path, stop_before_pixels=True)
    scheme, contains = "99DCUBE", RelationshipTypeValues.CONTAINS
    root = ContainerContentItem(CodedConcept("report", scheme, "dcube-edge classification"))
    items = [CodeContentItem(CodedConcept("label", scheme, "Predicted class"),
                             CodedConcept(label, scheme, label), relationship_type=contains)]
    items += [NumContentItem(CodedConcept(f"p-{c}", scheme, f"Probability of {c}"), float(p),
                             CodedConcept("1", "UCUM", "no units"), relationship_type=contains)
              for c, p in probs.items()]
    items.append(ImageContentItem(CodedConcept("source", scheme, "Classified image"), src.SOPClassUID,
                                  src.SOPInstanceUID, relationship_type=contains))
    root.ContentSequence = ContentSequence(items, is_root=False)
    seed = [str(src.SOPInstanceUID), engine_hash]
    return ComprehensiveSR([src], root, generate_uid(entropy_srcs=[*seed, "series"]), 990,
                           generate_uid(entropy_srcs=[*seed, "sr"]), 1, manufacturer="dcube-edge",
                           is_complete=True)
