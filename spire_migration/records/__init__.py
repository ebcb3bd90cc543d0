"""What a run leaves: the journal and its locks, the reports, the guide's traceability."""
