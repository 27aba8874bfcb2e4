"""Media plane: RTP/RTCP, G.711, RFC 4733 DTMF, prompts, players, recorder, mixing."""
