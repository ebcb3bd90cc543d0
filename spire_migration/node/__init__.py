"""The node and what runs on it: the Node facade and its views, SPIRE's CLIs and processes, the TPM, the workload runtimes, SPIRE's logs."""
