"""asyncio adapters for the sans-IO SIP core: UDP/TCP transports and the endpoint driver."""
