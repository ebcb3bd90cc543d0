"""The checklists that prove, changing nothing: pre- and post-migration, hardening, audit, diagnosis, PCRs; and the proofs of each migrate, rollback and finalize step."""
