"""Regenerate the PDF and DOCX files of examples/docs (run from the repository root)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from docgen import make_docx, make_pdf  # noqa: E402

DOCS = Path(__file__).resolve().parent / "docs"

OCEAN = [
    "The Pacific Ocean is the largest and deepest of Earth's five oceans. It covers about "
    "165 million square kilometres, more than all the land on Earth put together.",
    "The deepest known point of the ocean is the Challenger Deep in the Mariana Trench, in the "
    "western Pacific. Its depth is about 10,935 metres. In 1960 Jacques Piccard and Don Walsh "
    "reached the bottom in the bathyscaphe Trieste.",
    "Coral reefs cover less than one percent of the ocean floor but shelter about a quarter of "
    "all marine species. The Great Barrier Reef off Queensland, Australia, is the largest reef "
    "system in the world.",
]

COFFEE = [
    "Coffee is brewed from the roasted seeds of the Coffea plant. The two most widely grown "
    "species are Coffea arabica and Coffea canephora, known as robusta.",
    "According to legend, coffee was discovered in Ethiopia by a goat herder named Kaldi. "
    "By the 15th century coffee was being grown in Yemen, and coffee houses later spread "
    "across the Middle East and Europe.",
    "Brazil is the largest coffee producer in the world, followed by Vietnam.",
]

if __name__ == "__main__":
    (DOCS / "ocean-report.pdf").write_bytes(
        make_pdf(OCEAN, header="Ocean Facts - Annual Report", title="Ocean Facts"))
    (DOCS / "coffee.docx").write_bytes(
        make_docx(COFFEE, title="A short history of coffee",
                  table=[["Species", "Share of production"], ["Arabica", "about 60%"],
                         ["Robusta", "about 40%"]]))
    print("wrote", sorted(p.name for p in DOCS.iterdir()))
