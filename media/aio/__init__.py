"""asyncio adapters for the media plane: shared media clock and RTP endpoints."""
