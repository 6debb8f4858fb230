"""One module per external system, the shared HTTP client, the role interfaces and sandbox emulators."""
