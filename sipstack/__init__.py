"""SIP: messages, SDP, transactions, dialogs, digest auth (sans-IO) and asyncio transports."""
