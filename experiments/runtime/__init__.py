"""Process-level settings of torch work: thread counts (threads) and devices (device)."""
