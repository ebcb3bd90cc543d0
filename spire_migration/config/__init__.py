"""Configs and the target: the target description, SPIRE's HCL/JSON configs and their editor, the TPM attestor profiles, what SPIRE would refuse."""
