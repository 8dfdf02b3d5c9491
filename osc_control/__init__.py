"""OSC control of a running engine: server, address space, parameter store."""
