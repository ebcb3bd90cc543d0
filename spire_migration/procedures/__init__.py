"""The procedures that change things: migrate, rollback, finalize, re-registration, the step runner and its crash points."""
