"""Secret guard (issue 24): credentials in memory text, by gitleaks rules and detect-secrets."""

from .scanner import MAX_SCAN_CHARS, Finding, Findings, Scanner

__all__ = ["MAX_SCAN_CHARS", "Finding", "Findings", "Scanner"]
