"""Secret guard: find credentials in memory text (issue 24), by the gitleaks rule set."""

from .scanner import MAX_SCAN_CHARS, Finding, Findings, Scanner

__all__ = ["MAX_SCAN_CHARS", "Finding", "Findings", "Scanner"]
