"""Who may ask /mcp, and how much: admission control (in-flight slots, per-caller rate limits)."""
