"""Traffic sources: everything `analyze`, `simulate`, `advise` and `export` read, loaded into the
one `traffic` table (thrifty.analysis.schema) in DuckDB.

One module per format (ledger, parquet, litellm, wire_log, token_trace), one detector
(detect.py), one entry point (`load`).
"""

from thrifty.analysis.sources.detect import detect
from thrifty.analysis.sources.load import SOURCES, formats, load, register
from thrifty.analysis.sources.report import LoadReport

__all__ = ["LoadReport", "SOURCES", "detect", "formats", "load", "register"]
