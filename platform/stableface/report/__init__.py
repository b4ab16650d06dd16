"""Reports: the self-contained HTML audit report."""

from stableface.report.html import ReportData, encode_png, render_report

__all__ = ["ReportData", "encode_png", "render_report"]
